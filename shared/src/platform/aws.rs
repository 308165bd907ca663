//! The AWS SDK configuration, loaded once at init.
//!
//! The SDK reads the region, credentials and `AWS_ENDPOINT_URL` from the environment as usual, so
//! the same binary talks to AWS or to a local AWS-API server with no code path of its own.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority,
};

/// Loads the shared SDK configuration from the environment: see [`loader`].
pub async fn sdk_config() -> aws_config::SdkConfig {
    loader().load().await
}

/// The SDK configuration loader every client uses: adaptive retry (client-side rate limiting on
/// throttling), three attempts, and timeouts short enough to leave the batch engine time before
/// the deadline. Region, credentials and endpoint come from the environment unless set on it.
pub fn loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .retry_config(RetryConfig::adaptive().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(12))
                .build(),
        )
}

/// The HTTPS client every SDK client shares: hyper and rustls with ring, the platform's root
/// certificates. The SDK crates are built without their default client (which would add aws-lc and
/// a second TLS stack to the binary). The connector and the roots are built on first use, not at
/// init, so they do not lengthen a cold start.
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Forbids retrying a request that may have been processed (timed out, or its answer lost).
///
/// The SDK retries a request that timed out or whose answer was lost, which for an effect that is
/// not idempotent (sending an email) can repeat it: the service may have accepted the first
/// attempt. A client with this classifier lets throttling, 5xx and connection failures retry as
/// usual, and forbids the retry of the others, so the caller can record the outcome as unknown
/// instead (see [`crate::idempotency::once`]).
#[derive(Debug, Clone, Copy)]
pub struct NoRetryWhenMaybeProcessed;

impl ClassifyRetry for NoRetryWhenMaybeProcessed {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        match ctx.output_or_error() {
            Some(Err(err)) if err.is_timeout_error() || err.is_response_error() => {
                RetryAction::RetryForbidden
            }
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "NoRetryWhenMaybeProcessed"
    }

    fn priority(&self) -> RetryClassifierPriority {
        // Run after the SDK's transient-error classifier, which would retry timeouts.
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}
