//! The library both kinesis-fanout functions stand on.
//!
//! - [`batch`]: the Lambda Kinesis event, read leniently in one pass; [`kpl`]: KPL aggregates;
//! - [`event`]: the event envelope, generic over event types, and its one reader;
//! - [`engine`]: the batch engine that applies Lambda's delivery rules to any [`Consumer`];
//! - [`order`]: the order domain both functions share (event types, validated values);
//! - [`error`]: error classification (retryable or permanent), once for all;
//! - [`idempotency`]: each effect once under at-least-once delivery;
//! - [`ports`]: every trait the engine and the functions go through; [`adapters`]: SES,
//!   DynamoDB and SQS; `fakes`: in-memory versions, for tests (feature `fakes`);
//! - [`config`], [`telemetry`], [`aws`], [`runtime`]: start-up and the Lambda entry point;
//! - [`time`]: timestamps as AWS writes them.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod adapters;
pub mod aws;
pub mod batch;
pub mod config;
pub mod engine;
pub mod error;
pub mod event;
#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
pub mod idempotency;
pub mod json;
pub mod kpl;
pub mod metrics;
pub mod order;
pub mod ports;
pub mod runtime;
pub mod telemetry;
pub mod time;

pub use batch::KinesisBatch;
pub use config::{ConfigError, ConfigErrors, Env};
pub use engine::{
    BatchEngine, BatchOutcome, BatchStats, EngineConfig, Event, EventTypeSet, Outcome,
};
pub use error::{EffectError, ErrorClass};
pub use event::Malformed;
pub use ports::{no_rule, Consumer, PoisonRecord, PoisonSink};

/// Re-exported so the functions need no direct dependency on them.
pub use {
    aws_config, aws_lambda_events, aws_sdk_dynamodb, aws_sdk_ses, aws_sdk_sqs, lambda_runtime,
};
