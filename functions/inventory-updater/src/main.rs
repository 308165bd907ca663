//! The inventory-updater Lambda function.

use shared::runtime::{run, start_up};

#[tokio::main]
async fn main() -> Result<(), shared::lambda_runtime::Error> {
    shared::telemetry::init();
    let config = start_up(inventory_updater::Config::from_env(&shared::Env::process()))?;
    let aws = shared::aws::sdk_config().await;
    run(inventory_updater::engine(config, &aws)).await
}
