//! The platform: what every program here stands on, and knows nothing of the engine above.
//!
//! - [`config`]: the settings toolkit: where settings come from ([`config::Env`]) and every
//!   problem found at once ([`config::Problems`]); each setting struct is read beside its type;
//! - [`telemetry`]: the log lines, their one writer, and the per-record buffers;
//! - [`metrics`]: CloudWatch metrics in the Embedded Metric Format;
//! - [`aws`]: the SDK's configuration, loaded once;
//! - [`time`]: timestamps as AWS writes them.

pub mod aws;
pub mod config;
pub mod metrics;
pub mod telemetry;
pub mod time;
