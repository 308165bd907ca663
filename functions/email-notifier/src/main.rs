//! The email-notifier Lambda function.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::runtime::main::<email_notifier::Notifier>().await
}
