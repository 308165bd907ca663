//! The order-status-api Lambda function: the read API (`GET /orders/{orderId}`) behind a function
//! URL (see `order_status::api`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    order_status::api::main().await
}
