//! The inventory-updater Lambda function.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::runtime::main::<inventory_updater::Updater>().await
}
