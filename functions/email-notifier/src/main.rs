//! The email-notifier Lambda function.

use shared::runtime::{run, start_up};

#[tokio::main]
async fn main() -> Result<(), shared::lambda_runtime::Error> {
    shared::telemetry::init();
    let config = start_up(email_notifier::Config::from_env(&shared::Env::process()))?;
    let aws = shared::aws::sdk_config().await;
    run(email_notifier::engine(config, &aws)).await
}
