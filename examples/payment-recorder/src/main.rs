//! The payment-recorder Lambda function.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::runtime::main::<payment_recorder::Recorder<payment_recorder::DynamoBook>>().await
}
