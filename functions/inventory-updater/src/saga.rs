//! What inventory tells the rest of the order's saga: each decision it makes (reserved, rejected,
//! released) goes onto the order stream as an event, `INVENTORY_RESERVED`, `INVENTORY_REJECTED`
//! or `INVENTORY_RELEASED` (payload [`orders::InventoryDecision`]), under the partition key
//! `orderId`, through the producer library.
//!
//! ## Never an effect without its event, never an event twice
//! The decision is committed first (one DynamoDB transaction), then published. If the publish
//! fails, the record fails and is retried; the retry finds its decision recorded (the store says
//! which event decided what: `placedBy`, `releasedBy`) and publishes it again. The event's id is
//! derived from its cause, the causing event's idempotency key and the step ([`event_id`]), so
//! every publish of one decision carries the same id and every reader drops the copy. Why this
//! and not a transactional outbox: `docs/saga.md`.

use orders::{DecisionLine, InventoryDecision, ReasonCode};
use producer::envelope::{OrderEvent, PartitionKey};
use producer::ports::StreamWriter;
use producer::publisher::{Config, Publisher, Retry};
use shared::EffectError;
use uuid::Uuid;

use crate::lifecycle::{Customer, Ending, Rejection};

/// The namespace of the derived event ids (a UUID of our own, fixed forever: changing it would
/// give a retried decision a new id).
const NAMESPACE: Uuid = Uuid::from_u128(0x6b1f_04c2_9a3e_4d1b_8f52_3c7e_a0d4_91e6);

/// The id of the event that the event of idempotency key `cause` publishes at `step` (an event
/// type): a name-based UUID (version 5), the same on every retry.
pub fn event_id(cause: &str, step: &str) -> String {
    Uuid::new_v5(&NAMESPACE, format!("{cause}\u{1f}{step}").as_bytes()).to_string()
}

/// One decision, ready to publish: its event type and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// `INVENTORY_RESERVED`, `INVENTORY_REJECTED` or `INVENTORY_RELEASED`.
    pub event_type: &'static str,
    /// What it says.
    pub payload: InventoryDecision,
}

/// What a decision is about: the order, its lines and who ordered.
#[derive(Debug, Clone, Copy)]
pub struct About<'a> {
    /// The order.
    pub order_id: &'a str,
    /// Its lines, per SKU.
    pub lines: &'a [(&'a str, u64)],
    /// Who ordered.
    pub customer: &'a Customer,
    /// The idempotency key of the event that caused it.
    pub cause: &'a str,
}

impl Decision {
    fn new(event_type: &'static str, about: About<'_>, why: Option<(String, ReasonCode)>) -> Self {
        let (reason, reason_code) = why.unzip();
        Self {
            event_type,
            payload: InventoryDecision {
                order_id: about.order_id.to_owned(),
                user_id: about.customer.user_id.clone(),
                email: about.customer.email.clone(),
                items: about
                    .lines
                    .iter()
                    .map(|(sku, quantity)| DecisionLine {
                        product_id: (*sku).to_owned(),
                        quantity: *quantity,
                    })
                    .collect(),
                total: about.customer.total.clone(),
                reason,
                reason_code,
                causation_id: about.cause.to_owned(),
            },
        }
    }

    /// Every line held.
    pub fn reserved(about: About<'_>) -> Self {
        Self::new(orders::INVENTORY_RESERVED, about, None)
    }

    /// Refused, for `rejection`.
    pub fn rejected(about: About<'_>, rejection: &Rejection) -> Self {
        let why = (rejection.reason.clone(), rejection.code);
        Self::new(orders::INVENTORY_REJECTED, about, Some(why))
    }

    /// Given back, because of `ending`.
    pub fn released(about: About<'_>, ending: Ending) -> Self {
        let why = (ending.reason().to_owned(), ending.code());
        Self::new(orders::INVENTORY_RELEASED, about, Some(why))
    }

    /// Its id: derived from its cause and its type.
    pub fn event_id(&self) -> String {
        event_id(&self.payload.causation_id, self.event_type)
    }

    /// The event as it goes on the stream.
    pub fn event(&self) -> OrderEvent {
        // A struct of strings and numbers always serialises.
        let payload = serde_json::to_value(&self.payload).unwrap_or_default();
        OrderEvent::new(self.event_type, payload).with_id(self.event_id())
    }
}

/// Publishes decisions to the order stream, each as one record under the key `orderId`.
#[derive(Debug)]
pub struct Decisions<W> {
    publisher: Publisher<W>,
}

/// How hard a publish is tried before the record is failed and left to the event source mapping's
/// retry: a few quick attempts, well inside a batch's time.
fn config() -> Config {
    Config {
        retry: Retry {
            max_attempts: 3,
            base: std::time::Duration::from_millis(25),
            cap: std::time::Duration::from_millis(400),
        },
        ..Config::default()
    }
}

impl<W: StreamWriter> Decisions<W> {
    /// Publishes through `writer`.
    pub fn new(writer: W) -> Self {
        Self {
            publisher: Publisher::new(writer, config()),
        }
    }

    /// The stream's writer.
    pub fn writer(&self) -> &W {
        self.publisher.writer()
    }

    /// Puts `decision` on the stream; its event id once written. A failure may be retried.
    pub async fn publish(&self, decision: &Decision) -> Result<String, EffectError> {
        let event = decision.event();
        let record = producer::record(&event, &PartitionKey::OrderId);
        let report = self.publisher.publish(std::slice::from_ref(&record)).await;
        match report.outcomes.into_iter().next() {
            Some(Ok(_)) => Ok(event.event_id),
            Some(Err(e)) => Err(EffectError::retryable(format!(
                "publishing {} failed: {e}",
                decision.event_type
            ))),
            None => Err(EffectError::retryable(format!(
                "publishing {} came to no outcome",
                decision.event_type
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The id is a function of the cause and the step: the same on a retry, another for another
    /// step or another cause.
    #[test]
    fn derived_event_ids() {
        let reserved = event_id("evt-1", orders::INVENTORY_RESERVED);
        assert_eq!(reserved, event_id("evt-1", orders::INVENTORY_RESERVED));
        assert_ne!(reserved, event_id("evt-1", orders::INVENTORY_REJECTED));
        assert_ne!(reserved, event_id("evt-2", orders::INVENTORY_RESERVED));
        // No two (cause, step) pairs run together: the separator is not text.
        assert_ne!(event_id("a/b", "c"), event_id("a", "b/c"));
        let parsed = Uuid::parse_str(&reserved).unwrap();
        assert_eq!(parsed.get_version_num(), 5);
        // Pinned: a new id for a recorded decision would publish it twice.
        assert_eq!(
            event_id("evt-1", "INVENTORY_RESERVED"),
            Uuid::new_v5(&NAMESPACE, b"evt-1\x1fINVENTORY_RESERVED").to_string()
        );
    }

    /// A decision carries what its readers need, and its envelope the derived id.
    #[test]
    fn a_decision_as_published() {
        let customer = Customer {
            user_id: Some("u-1".into()),
            email: Some("a@b.co".into()),
            total: Some("9.50".into()),
        };
        let about = About {
            order_id: "o-1",
            lines: &[("p", 2), ("q", 1)],
            customer: &customer,
            cause: "evt-1",
        };
        let d = Decision::released(about, Ending::PaymentFailed);
        let event = d.event();
        assert_eq!(event.event_type, "INVENTORY_RELEASED");
        assert_eq!(event.event_id, event_id("evt-1", "INVENTORY_RELEASED"));
        assert_eq!(
            event.payload,
            serde_json::json!({"orderId": "o-1", "userId": "u-1", "email": "a@b.co",
                "items": [{"productId": "p", "quantity": 2}, {"productId": "q", "quantity": 1}],
                "total": "9.50", "reason": "the payment failed", "reasonCode": "PAYMENT_FAILED",
                "causationId": "evt-1"})
        );
        let bare = Decision::reserved(About {
            customer: &Customer::default(),
            ..about
        });
        assert_eq!(
            serde_json::to_value(&bare.payload).unwrap(),
            serde_json::json!({"orderId": "o-1",
                "items": [{"productId": "p", "quantity": 2}, {"productId": "q", "quantity": 1}],
                "causationId": "evt-1"})
        );
    }
}
