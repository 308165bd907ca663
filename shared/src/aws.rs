//! The AWS SDK configuration, loaded once at init.
//!
//! The SDK reads the region, credentials and `AWS_ENDPOINT_URL` from the environment as usual, so
//! the same binary talks to AWS or to a local AWS-API server with no code path of its own.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;

/// Loads the shared SDK configuration from the environment: see [`loader`].
pub async fn sdk_config() -> aws_config::SdkConfig {
    loader().load().await
}

/// The SDK configuration loader every client uses: adaptive retry (client-side rate limiting on
/// throttling), three attempts, and timeouts short enough to leave the batch engine time before
/// the deadline. Region, credentials and endpoint come from the environment unless set on it.
pub fn loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::adaptive().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(12))
                .build(),
        )
}
