//! The input: what an invocation brings, read into the engine's terms. Nothing here knows the
//! engine above it.
//!
//! - [`batch`]: the Lambda Kinesis event, read leniently in one pass (on a small JSON cursor, the
//!   one hand-written reader, for the one big and hot input);
//! - [`kpl`]: KPL aggregates, opened into their user records;
//! - [`envelope`]: the event envelope `{eventId, eventType, timestamp, payload}` and its one
//!   reader, which reads a payload into the variant of its type.

pub mod batch;
pub mod envelope;
mod json;
pub mod kpl;
