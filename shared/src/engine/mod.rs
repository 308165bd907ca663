//! The engine: Lambda's delivery rules, applied to any consumer. It reads its input through
//! [`crate::input`] and logs through [`crate::platform`]; it knows records, keys, sequence numbers
//! and outcomes, never what an event means.
//!
//! - [`consumer`]: the consumer API: [`Consumer`], the [`Event`] it handles, the [`Outcome`] it
//!   answers, and where records that can never succeed go ([`PoisonSink`]);
//! - [`batch_engine`]: the [`BatchEngine`] that runs a batch through a consumer, and its settings;
//! - [`idempotency`]: each effect once under at-least-once delivery;
//! - [`error`]: what failed, and whether a retry can succeed;
//! - [`stats`]: what an invocation did, counted.

pub mod batch_engine;
pub mod consumer;
pub mod error;
pub mod idempotency;
pub mod stats;

pub use batch_engine::{BatchEngine, BatchOutcome, EngineConfig, EventTypeSet};
pub use consumer::{
    Consumer, Event, EventTypes, Outcome, PoisonCause, PoisonRecord, PoisonSink, RecordContext,
};
pub use error::{EffectError, ErrorClass};
pub use stats::BatchStats;
