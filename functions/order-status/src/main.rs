//! The order-status Lambda function: the projector, which the event source mapping invokes with
//! batches of order events.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::runtime::main::<order_status::OrderStatus>().await
}
