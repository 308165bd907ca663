//! The inventory-updater Lambda function.

use shared::runtime::{serve, start_up};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::telemetry::init();
    let config = start_up(inventory_updater::Config::from_env(&shared::Env::process()));
    let aws = shared::aws::sdk_config().await;
    serve(inventory_updater::engine(config, &aws)).await
}
