//! The order event as it goes on the stream: the envelope `{eventId, eventType, timestamp,
//! payload}`, and the partition key that decides its shard.
//!
//! ## Which partition key
//! Kinesis keeps order per partition key within a shard, and the consumers keep it per key while
//! running different keys concurrently. The key is therefore the unit of order the consumers
//! need: one order's events (placed, then cancelled) must stay in order, so the default key is the
//! **`orderId`**. `userId` keeps all of one customer's orders in order too, at the cost of fewer
//! distinct keys (less concurrency, hotter shards for busy customers).
//!
//! Some write-ups key records by `f"{user_id}#{md5(user_id) % shard_count}"`. That adds nothing:
//! Kinesis already takes the MD5 of the whole key to pick the shard, so a suffix that is itself a
//! function of `user_id` spreads the keys no better than `user_id` alone; it only ties the keys to
//! today's shard count (a reshard changes the suffix of new records, so one user's events end up
//! under two keys, and their order is no longer kept).

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

/// How an event's partition key is chosen.
#[derive(Clone, Default)]
pub enum PartitionKey {
    /// The payload's `orderId` (the default): one order's events stay in order.
    #[default]
    OrderId,
    /// The payload's `userId`: all of one customer's events stay in order.
    UserId,
    /// A function of the event.
    With(Arc<dyn Fn(&OrderEvent) -> String + Send + Sync>),
}

impl std::fmt::Debug for PartitionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::OrderId => "OrderId",
            Self::UserId => "UserId",
            Self::With(_) => "With(fn)",
        })
    }
}

impl PartitionKey {
    /// The key of `event`: the chosen payload field (a string, or a number as written), or the
    /// event's id when the payload has no such field.
    pub fn of(&self, event: &OrderEvent) -> String {
        let field = match self {
            Self::OrderId => "orderId",
            Self::UserId => "userId",
            Self::With(f) => return f(event),
        };
        match event.payload.get(field) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => event.event_id.clone(),
        }
    }
}

/// One order event, as the envelope carries it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderEvent {
    /// Its unique id: the consumers' idempotency key.
    pub event_id: String,
    /// Its type, for example `ORDER_PLACED`.
    pub event_type: String,
    /// When it happened (RFC 3339).
    pub timestamp: String,
    /// The type's payload.
    pub payload: Value,
}

impl OrderEvent {
    /// A new event of `event_type`: a fresh UUID for its id, and now for its timestamp.
    pub fn new(event_type: impl Into<String>, payload: Value) -> Self {
        Self {
            event_id: uuid::Uuid::new_v4().to_string(),
            event_type: event_type.into(),
            timestamp: now(),
            payload,
        }
    }

    /// The same event with the id `event_id`.
    pub fn with_id(mut self, event_id: impl Into<String>) -> Self {
        self.event_id = event_id.into();
        self
    }

    /// The envelope's JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // A struct of strings and a `Value` always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Now, in RFC 3339 with milliseconds (`2026-11-30T04:24:16.123Z`).
pub fn now() -> String {
    shared::time::iso_millis(shared::time::now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys() {
        let e = OrderEvent::new("ORDER_PLACED", json!({"orderId": "o-1", "userId": 42}));
        assert_eq!(PartitionKey::OrderId.of(&e), "o-1");
        assert_eq!(PartitionKey::UserId.of(&e), "42");
        let custom = PartitionKey::With(Arc::new(|e: &OrderEvent| e.event_type.clone()));
        assert_eq!(custom.of(&e), "ORDER_PLACED");
        let no_order = OrderEvent::new("X", json!({})).with_id("evt-1");
        assert_eq!(PartitionKey::OrderId.of(&no_order), "evt-1");
    }

    #[test]
    fn envelope() {
        let e = OrderEvent::new("ORDER_PLACED", json!({"orderId": "o-1"}));
        let v: Value = serde_json::from_slice(&e.to_bytes()).unwrap();
        assert_eq!(v["eventType"], "ORDER_PLACED");
        assert_eq!(v["payload"]["orderId"], "o-1");
        assert!(uuid::Uuid::parse_str(v["eventId"].as_str().unwrap()).is_ok());
        let ts = v["timestamp"].as_str().unwrap();
        assert!(ts.ends_with('Z') && ts.len() == 24, "{ts}");
    }
}
