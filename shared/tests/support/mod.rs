//! Helpers to build Lambda Kinesis events in tests.
#![allow(dead_code)]

use std::path::PathBuf;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// What the tests' consumers read: of each order type the samples hold, the order's id. The
/// engine knows no order; to it these are a consumer's event types like any other.
#[derive(Debug, Deserialize, Serialize)]
pub enum TestEvent {
    /// An order event: its id (the rest of the payload is not read).
    #[serde(
        rename = "ORDER_PLACED",
        alias = "ORDER_CREATED",
        alias = "ORDER_CANCELLED"
    )]
    Order {
        /// The order.
        #[serde(rename = "orderId")]
        order_id: String,
    },
}

impl TestEvent {
    /// The order's id.
    pub fn order_id(&self) -> &str {
        let TestEvent::Order { order_id } = self;
        order_id
    }
}

/// The sequence number of the `i`th record: 56 digits, like Kinesis's.
pub fn seq(i: u64) -> String {
    format!("4959033827149025660855969253836157109592157598913{i:07}")
}

/// An order event envelope.
pub fn order_event(event_type: &str, order_id: &str) -> Value {
    json!({
        "eventId": format!("evt-{order_id}-{event_type}"),
        "eventType": event_type,
        "timestamp": "2026-11-21T10:00:00Z",
        "payload": {
            "orderId": order_id,
            "userId": "user-1",
            "email": "user-1@example.com",
            "items": [{"productId": "sku-1", "quantity": 1}],
            "total": "9.99"
        }
    })
}

/// One ESM record with JSON data.
pub fn record(key: &str, i: u64, data: &Value) -> Value {
    raw_record(
        key,
        i,
        &base64::engine::general_purpose::STANDARD.encode(data.to_string()),
    )
}

/// One ESM record with the given base64 text as data.
pub fn raw_record(key: &str, i: u64, data_b64: &str) -> Value {
    json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": key,
            "sequenceNumber": seq(i),
            "data": data_b64,
            "approximateArrivalTimestamp": 1795000000.123
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("shardId-000000000001:{}", seq(i)),
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/r",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/order-events"
    })
}

/// The event JSON of these records.
pub fn event(records: Vec<Value>) -> Vec<u8> {
    json!({ "Records": records }).to_string().into_bytes()
}

/// A file of the repository's `events/` folder.
pub fn sample(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}
