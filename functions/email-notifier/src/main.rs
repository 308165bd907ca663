//! The email-notifier Lambda function.

use shared::runtime::{serve, start_up};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::telemetry::init();
    let config = start_up(email_notifier::Config::from_env(&shared::Env::process()));
    let aws = shared::aws::sdk_config().await;
    serve(email_notifier::engine(config, &aws)).await
}
