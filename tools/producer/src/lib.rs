//! The producer: publishes order events to a Kinesis stream, for a team's own services, the
//! `producer` CLI and the local demo.
//!
//! - [`envelope`]: the event envelope and the partition-key strategy;
//! - [`publisher`]: `PutRecords` within the limits, retries of failed entries with backoff and
//!   full jitter, per-key order kept while retrying, one outcome per record;
//! - [`aggregate`]: KPL aggregation by shard, with `ExplicitHashKey`;
//! - [`generate`]: a realistic mix of events (cancellations, duplicates, poison);
//! - [`ports`]: the Kinesis port, its SDK adapter, and an in-memory fake (feature `fakes`).
//!
//! ```no_run
//! # async fn example() {
//! use producer::{envelope::{OrderEvent, PartitionKey}, ports::Kinesis, publisher::{Config, Publisher}};
//! let sdk = shared::aws::sdk_config().await;
//! let kinesis = Kinesis::new(producer::kinesis_client(&sdk), "order-events");
//! let publisher = Publisher::new(kinesis, Config::default());
//! let event = OrderEvent::new("ORDER_PLACED", serde_json::json!({"orderId": "o-1"}));
//! let report = publisher.publish(&[producer::record(&event, &PartitionKey::OrderId)]).await;
//! println!("{}", report.summary);
//! # }
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod aggregate;
pub mod envelope;
pub mod generate;
pub mod ports;
pub mod publisher;

use envelope::{OrderEvent, PartitionKey};
use publisher::Record;

/// The record of `event`: its envelope, under the key `strategy` picks.
pub fn record(event: &OrderEvent, strategy: &PartitionKey) -> Record {
    Record {
        partition_key: strategy.of(event),
        data: event.to_bytes(),
    }
}

/// The stream when `STREAM_NAME` names none: the one `template.yaml` and the local stack create.
pub const DEFAULT_STREAM: &str = "order-events";

/// A Kinesis client for the producer: the shared SDK settings, with the SDK's own retries left to
/// whole-request failures (the publisher retries failed entries itself, keeping order).
pub fn kinesis_client(sdk: &aws_config::SdkConfig) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(sdk)
}
