//! Error classification, done once for every function and adapter.
//!
//! | what failed | class | why |
//! |---|---|---|
//! | SDK timeout, dispatch failure (connect, DNS, TLS), unreadable response | retryable | the request may not even have arrived |
//! | HTTP 5xx, HTTP 429 | retryable | the service's fault, or load |
//! | throttling codes (`Throttling*`, `ProvisionedThroughputExceeded`, `RequestLimitExceeded`, `TooManyRequests`, `LimitExceeded`, `TransactionInProgress`, `TransactionConflict`, ...) | retryable | load |
//! | `ValidationException`, `SerializationException`, `InvalidParameterValue`, `InvalidParameterCombination`, `MissingParameter`, `MessageRejected` | permanent | the request built from this record is invalid: it will fail the same way every time |
//! | a request the SDK could not even build | permanent | the same |
//! | any other service error (access denied, missing table or template, unverified sender, ...) | retryable | the environment is wrong, not the record: fix it and the record succeeds; the iterator-age alarm fires meanwhile |
//!
//! Business outcomes (an order that cannot be reserved, an event already applied) are not errors at
//! all: the adapters turn them into outcomes before they reach this table.

use std::error::Error as StdError;
use std::fmt;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// A boxed error that keeps its `source()` chain.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Whether retrying the same record can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// A later attempt may succeed: report the record for retry and stop its key.
    Retryable,
    /// The record can never succeed: capture it as poison and move on.
    Permanent,
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorClass::Retryable => "Retryable",
            ErrorClass::Permanent => "NonRetryable",
        })
    }
}

/// A failed side effect, with its class and its cause.
#[derive(thiserror::Error)]
#[error("{class} error: {message}")]
pub struct EffectError {
    class: ErrorClass,
    ambiguous: bool,
    bad_data: bool,
    message: String,
    #[source]
    source: Option<BoxError>,
}

impl EffectError {
    /// A failure that may succeed on retry.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Retryable, message, None)
    }

    /// A failure that will never succeed for this record.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Permanent, message, None)
    }

    /// A permanent failure whose cause is the event's data (it conflicts with what was applied,
    /// or breaks a rule of the function): redriven as it is, it fails again.
    pub fn bad_data(message: impl Into<String>) -> Self {
        let mut err = Self::permanent(message);
        err.bad_data = true;
        err
    }

    /// Whether the event's data is the cause ([`Self::bad_data`]).
    pub fn is_bad_data(&self) -> bool {
        self.bad_data
    }

    /// A failure with its cause.
    pub fn new(class: ErrorClass, message: impl Into<String>, source: Option<BoxError>) -> Self {
        Self {
            class,
            ambiguous: false,
            bad_data: false,
            message: message.into(),
            source,
        }
    }

    /// Classifies an SDK error with [`classify_sdk_error`] and keeps it as the cause.
    pub fn from_sdk<E>(operation: &str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let class = classify_sdk_error(&err);
        let ambiguous = may_have_been_processed(&err);
        let message = match err.code() {
            Some(code) => format!("{operation} failed: {code}"),
            None if ambiguous => format!("{operation} got no answer: it may have been processed"),
            None => format!("{operation} failed"),
        };
        Self {
            ambiguous,
            ..Self::new(class, message, Some(Box::new(err)))
        }
    }

    /// A request the SDK could not even build: it will fail the same way every time.
    pub fn unbuildable(err: aws_smithy_types::error::operation::BuildError) -> Self {
        Self::new(
            ErrorClass::Permanent,
            "could not build the request",
            Some(Box::new(err)),
        )
    }

    /// Marks the failure as one whose outcome is unknown (see [`EffectError::is_ambiguous`]).
    pub fn set_ambiguous(&mut self) {
        self.ambiguous = true;
    }

    /// Whether the request may have been processed although it failed: it timed out, or its
    /// answer could not be read. Retrying such a request repeats an effect that is not idempotent.
    pub fn is_ambiguous(&self) -> bool {
        self.ambiguous
    }

    /// Whether a retry can succeed.
    pub fn class(&self) -> ErrorClass {
        self.class
    }
}

impl fmt::Debug for EffectError {
    // The whole cause chain, so a log line says why, not just what.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        if let Some(cause) = self.source.as_deref() {
            write!(f, ": {}", chain(cause))?;
        }
        Ok(())
    }
}

/// An error and its `source()` chain on one line (`a: b: c`): the SDK's own message is only the
/// top line ("service error", "dispatch failure").
pub fn chain(err: &dyn StdError) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

/// Classifies any AWS SDK error by the table in this module's documentation.
pub fn classify_sdk_error<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> ErrorClass {
    match err {
        SdkError::ConstructionFailure(_) => ErrorClass::Permanent,
        SdkError::ServiceError(service) => {
            classify_service_error(service.err().code(), service.raw().status().as_u16())
        }
        // Timeouts, dispatch failures, unreadable responses and any future variant.
        _ => ErrorClass::Retryable,
    }
}

/// Whether a failed request may have been processed by the service: it was sent and timed out,
/// or its answer could not be read.
pub fn may_have_been_processed<E, R>(err: &SdkError<E, R>) -> bool {
    matches!(err, SdkError::TimeoutError(_) | SdkError::ResponseError(_))
}

/// Classifies a service error by its code and HTTP status.
pub fn classify_service_error(code: Option<&str>, status: u16) -> ErrorClass {
    const PERMANENT: &[&str] = &[
        "ValidationException",
        "ValidationError",
        "SerializationException",
        "InvalidParameterValue",
        "InvalidParameterValueException",
        "InvalidParameterCombination",
        "MissingParameter",
        "MessageRejected",
    ];
    if status >= 500 || status == 429 {
        return ErrorClass::Retryable;
    }
    match code {
        Some(code) if PERMANENT.contains(&code) => ErrorClass::Permanent,
        _ => ErrorClass::Retryable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table: throttling and 5xx retry, our validation errors are permanent, unknown retries.
    #[test]
    fn classification_table() {
        use ErrorClass::*;
        assert_eq!(
            classify_service_error(Some("ThrottlingException"), 400),
            Retryable
        );
        assert_eq!(
            classify_service_error(Some("ProvisionedThroughputExceededException"), 400),
            Retryable
        );
        assert_eq!(
            classify_service_error(Some("InternalServerError"), 500),
            Retryable
        );
        assert_eq!(classify_service_error(None, 503), Retryable);
        assert_eq!(classify_service_error(None, 429), Retryable);
        assert_eq!(
            classify_service_error(Some("ValidationException"), 400),
            Permanent
        );
        assert_eq!(
            classify_service_error(Some("MessageRejected"), 400),
            Permanent
        );
        assert_eq!(
            classify_service_error(Some("AccessDeniedException"), 400),
            Retryable
        );
        assert_eq!(
            classify_service_error(Some("TemplateDoesNotExist"), 400),
            Retryable
        );
    }

    /// The Debug form walks the whole cause chain.
    #[test]
    fn debug_prints_cause_chain() {
        let inner = std::io::Error::other("connection reset");
        let err = EffectError::new(
            ErrorClass::Retryable,
            "SendTemplatedEmail failed",
            Some(Box::new(inner)),
        );
        let text = format!("{err:?}");
        assert!(text.contains("SendTemplatedEmail failed"), "{text}");
        assert!(text.contains("connection reset"), "{text}");
        assert_eq!(err.class(), ErrorClass::Retryable);
    }
}
