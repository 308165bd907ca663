//! Logging: structured, JSON when Lambda's log format is JSON.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. The level comes from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`,
/// else `info`; the format is JSON when `AWS_LAMBDA_LOG_FORMAT=JSON`. Calling it twice is harmless.
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let filter =
        EnvFilter::try_new(level.to_lowercase()).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false);
    // An error means a subscriber is already installed, which is fine.
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
}
