//! The engine the kinesis-fanout functions stand on: Lambda's Kinesis delivery rules for any
//! consumer, and no event's meaning. Its folders are its layers; each imports only those below it.
//!
//! - [`runtime`]: the Lambda entry point: a function's `main` ([`runtime::main`]), its shared
//!   settings and wiring, the runtime loop (feature `runtime`);
//! - [`adapters`]: what every function needs over AWS: the dead-letter queue (SQS, S3) and the
//!   idempotency ledger (DynamoDB) (feature `adapters`);
//! - [`engine`]: the consumer API ([`Consumer`], [`Event`], [`Outcome`]), the [`BatchEngine`],
//!   idempotency, errors, the counts;
//! - [`input`]: the Lambda event, KPL aggregates and the event envelope, each with its one reader;
//! - [`platform`]: settings, logs, metrics, the SDK's configuration, time.
//!
//! Beside them: `fakes`, in-memory ports for tests (feature `fakes`), and `cli`, what only the
//! local tools need (feature `cli`). `docs/architecture.md` walks through adding a consumer.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

#[cfg(feature = "adapters")]
pub mod adapters;
#[cfg(feature = "cli")]
pub mod cli;
pub mod engine;
#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
pub mod input;
pub mod platform;
#[cfg(feature = "runtime")]
pub mod runtime;

pub use engine::{
    error, idempotency, BatchEngine, BatchOutcome, BatchStats, Consumer, EffectError, EngineConfig,
    ErrorClass, Event, EventTypeSet, EventTypes, Outcome, PoisonCause, PoisonRecord, PoisonSink,
};
pub use input::batch::KinesisBatch;
pub use input::kpl;
pub use platform::config::{ConfigError, ConfigErrors, Env, Problems};
pub use platform::{aws, time};
