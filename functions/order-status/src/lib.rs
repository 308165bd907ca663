//! order-status: the saga's read side. It reads every order event and keeps, per order, where
//! the order stands, its lines, total and reason, and the events seen for it; a read API serves
//! that behind a Lambda function URL.
//!
//! - this file: what the projector reads ([`OrderEvent`]), its rule ([`Projector`]: each event
//!   becomes a [`status::Fact`] for the store), its settings and its wiring ([`OrderStatus`]);
//! - [`status`]: how the events seen make an order's status, whatever order they came in: one
//!   pure rule, which the store and its fake both apply;
//! - [`ports`]: what it needs, a [`StatusStore`] to record and a [`StatusReader`] to read back;
//! - [`dynamodb`]: both over DynamoDB; `fakes`: both in memory, for tests;
//! - [`api`]: the read API (`GET /orders/{orderId}`), the `order-status-api` binary's.
//!
//! Everything else of the projector (decoding, the batch engine, the dead-letter queue, the
//! runtime) is the engine's, in `shared`. It needs no idempotency ledger of its own: an event's
//! item in the table is its marker (see [`dynamodb`]).

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod dynamodb;
#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
pub mod ports;
pub mod status;

use std::borrow::Cow;

use orders::{Money, OrderId, OrderLine, OrderLines, ReasonCode, UserId};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use shared::runtime::{Function, Wiring};
use shared::{Consumer, EffectError, Env, Event, Outcome, Problems};

pub use dynamodb::DynamoStatus;
pub use ports::{StatusReader, StatusStore};
pub use status::{OrderView, Status};

use status::{Details, EventKind, Fact, HistoryEntry, Line};

/// What order-status reads: every order event type, each with what the rule uses of it. The
/// order id is required; lines, total, customer and reasons are read when present; nothing else
/// is read, nor checked.
#[derive(Debug, Deserialize, Serialize)]
pub enum OrderEvent<'a> {
    /// `ORDER_PLACED` or `ORDER_CREATED`: placed (rank 1); its details win.
    #[serde(rename = "ORDER_PLACED", alias = "ORDER_CREATED", borrow)]
    Placed(OrderFacts<'a>),
    /// `ORDER_CANCELLED`: cancelled (rank 5).
    #[serde(rename = "ORDER_CANCELLED", borrow)]
    Cancelled(OrderFacts<'a>),
    /// `INVENTORY_RESERVED`: reserved (rank 2).
    #[serde(rename = "INVENTORY_RESERVED", borrow)]
    Reserved(OrderFacts<'a>),
    /// `INVENTORY_REJECTED`: rejected (rank 6), with why.
    #[serde(rename = "INVENTORY_REJECTED", borrow)]
    Rejected(Refusal<'a>),
    /// `INVENTORY_RELEASED`: a payment failure (rank 4) when its `reasonCode` is
    /// `PAYMENT_FAILED`, else a cancellation (rank 5), with why.
    #[serde(rename = "INVENTORY_RELEASED", borrow)]
    Released(Refusal<'a>),
    /// `PAYMENT_CAPTURED`: paid (rank 3).
    #[serde(rename = "PAYMENT_CAPTURED", borrow)]
    Captured(OrderFacts<'a>),
    /// `PAYMENT_FAILED`: the payment failed (rank 4), with why if it says.
    #[serde(rename = "PAYMENT_FAILED", borrow)]
    PaymentFailed(Refusal<'a>),
}

/// What any order event may carry that the read side keeps: the order, and, when present, its
/// lines, total and customer.
#[derive(Debug, Deserialize, Serialize)]
pub struct OrderFacts<'a> {
    /// The order.
    #[serde(rename = "orderId", borrow)]
    pub order_id: OrderId<'a>,
    /// Its lines, when the event lists them (an empty list is none).
    #[serde(
        default,
        borrow,
        deserialize_with = "lines_if_any",
        skip_serializing_if = "Option::is_none"
    )]
    pub items: Option<OrderLines<'a>>,
    /// Its total.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub total: Option<Money<'a>>,
    /// Its customer.
    #[serde(
        rename = "userId",
        default,
        borrow,
        skip_serializing_if = "Option::is_none"
    )]
    pub user_id: Option<UserId<'a>>,
}

/// A refusal (inventory's rejection or release, a failed payment): the order's facts, and why.
#[derive(Debug, Deserialize, Serialize)]
pub struct Refusal<'a> {
    /// The order.
    #[serde(rename = "orderId", borrow)]
    pub order_id: OrderId<'a>,
    /// Its lines, when the event lists them (an empty list is none).
    #[serde(
        default,
        borrow,
        deserialize_with = "lines_if_any",
        skip_serializing_if = "Option::is_none"
    )]
    pub items: Option<OrderLines<'a>>,
    /// Its total.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub total: Option<Money<'a>>,
    /// Its customer.
    #[serde(
        rename = "userId",
        default,
        borrow,
        skip_serializing_if = "Option::is_none"
    )]
    pub user_id: Option<UserId<'a>>,
    /// Why, in words.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Cow<'a, str>>,
    /// Why, as a code (inventory's decisions): it tells a release for a failed payment from a
    /// cancellation.
    #[serde(
        rename = "reasonCode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub reason_code: Option<ReasonCode>,
}

/// `items` when it lists lines: absent, `null` and `[]` are no lines; a line that is wrong is an
/// error naming its field.
fn lines_if_any<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<OrderLines<'a>>, D::Error> {
    match Option::<Vec<OrderLine<'a>>>::deserialize(deserializer)? {
        Some(lines) if !lines.is_empty() => {
            OrderLines::new(lines).map(Some).map_err(de::Error::custom)
        }
        _ => Ok(None),
    }
}

/// The details an event carries, its lines one per product (summed) in product order.
fn details(
    items: Option<&OrderLines<'_>>,
    total: Option<&Money<'_>>,
    user_id: Option<&UserId<'_>>,
) -> Result<Details, EffectError> {
    let lines = match items {
        None => None,
        Some(items) => {
            let quantities = items.quantities().map_err(EffectError::bad_data)?;
            Some(
                quantities
                    .into_iter()
                    .map(|(sku, q)| Line {
                        product_id: sku.to_owned(),
                        quantity: q.get(),
                    })
                    .collect(),
            )
        }
    };
    Ok(Details {
        lines,
        total: total.map(|t| t.as_str().to_owned()),
        user_id: user_id.map(|u| u.as_str().to_owned()),
    })
}

impl OrderFacts<'_> {
    /// Its details.
    fn details(&self) -> Result<Details, EffectError> {
        details(
            self.items.as_ref(),
            self.total.as_ref(),
            self.user_id.as_ref(),
        )
    }
}

impl Refusal<'_> {
    /// Why, in words, when it said.
    fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// Its details.
    fn details(&self) -> Result<Details, EffectError> {
        details(
            self.items.as_ref(),
            self.total.as_ref(),
            self.user_id.as_ref(),
        )
    }
}

impl OrderEvent<'_> {
    /// What it says happened, and of which order, with its reason and details.
    fn read(&self) -> Result<(EventKind, &str, Option<&str>, Details), EffectError> {
        use EventKind as K;
        Ok(match self {
            OrderEvent::Placed(o) => (K::Placed, o.order_id.as_str(), None, o.details()?),
            OrderEvent::Cancelled(o) => (K::Cancelled, o.order_id.as_str(), None, o.details()?),
            OrderEvent::Reserved(o) => (K::Reserved, o.order_id.as_str(), None, o.details()?),
            OrderEvent::Captured(o) => (K::Captured, o.order_id.as_str(), None, o.details()?),
            OrderEvent::Rejected(r) => (K::Rejected, r.order_id.as_str(), r.reason(), r.details()?),
            OrderEvent::Released(r) => {
                let kind = K::Released(r.reason_code);
                (kind, r.order_id.as_str(), r.reason(), r.details()?)
            }
            OrderEvent::PaymentFailed(r) => {
                let kind = K::PaymentFailed;
                (kind, r.order_id.as_str(), r.reason(), r.details()?)
            }
        })
    }
}

/// What `event` says about its order: its kind, reason and details, and its place in the order's
/// history (its type, its idempotency key, its producer's timestamp).
pub fn fact_of<S: StatusStore>(event: &Event<'_, Projector<S>>) -> Result<Fact, EffectError> {
    let (kind, order_id, reason, details) = event.payload.read()?;
    let entry = HistoryEntry {
        event_type: event.event_type().to_owned(),
        event_id: event.idempotency_key().into_owned(),
        time: event.timestamp().map(str::to_owned),
    };
    Ok(Fact::new(
        order_id,
        entry,
        kind,
        reason.map(str::to_owned),
        details,
    ))
}

/// The rule: each event recorded in the store, as the fact it is.
#[derive(Debug)]
pub struct Projector<S> {
    store: S,
}

impl<S: StatusStore> Projector<S> {
    /// A projector into `store`.
    pub fn new(store: S) -> Self {
        Self { store }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }
}

impl<S: StatusStore> Consumer for Projector<S> {
    type Payload<'a> = OrderEvent<'a>;

    async fn handle(&self, event: &Event<'_, Self>) -> Result<Outcome, EffectError> {
        let fact = fact_of(event)?;
        self.store.record(&fact).await
    }
}

/// The function's own settings.
///
/// | variable | meaning |
/// |---|---|
/// | `STATUS_TABLE` | the DynamoDB table of order statuses (`pk`, `sk`) |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSettings {
    /// `STATUS_TABLE`.
    pub table: String,
}

impl StatusSettings {
    /// Reads them, keeping each problem in `problems`.
    pub fn read(env: &Env, problems: &mut Problems) -> Self {
        Self {
            table: problems.required(env, "STATUS_TABLE"),
        }
    }
}

/// The projector as it is deployed: over DynamoDB.
pub type OrderStatus = Projector<DynamoStatus>;

impl Function for OrderStatus {
    const NAME: &'static str = env!("CARGO_PKG_NAME");
    type Settings = StatusSettings;

    fn settings(env: &Env, problems: &mut Problems) -> StatusSettings {
        StatusSettings::read(env, problems)
    }

    fn wire(settings: StatusSettings, wiring: &Wiring<'_>) -> Self {
        Projector::new(DynamoStatus::new(wiring.dynamodb.clone(), settings.table))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// It declares every order event type, all handled by default.
    #[test]
    fn its_types() {
        let types = shared::EventTypes::of::<OrderStatus>();
        assert_eq!(
            types.declared(),
            [
                "INVENTORY_REJECTED",
                "INVENTORY_RELEASED",
                "INVENTORY_RESERVED",
                "ORDER_CANCELLED",
                "ORDER_CREATED",
                "ORDER_PLACED",
                "PAYMENT_CAPTURED",
                "PAYMENT_FAILED",
            ]
        );
        assert_eq!(types.defaults(), types.declared());
        for name in [
            orders::ORDER_PLACED,
            orders::ORDER_CREATED,
            orders::ORDER_CANCELLED,
            orders::INVENTORY_RESERVED,
            orders::INVENTORY_REJECTED,
            orders::INVENTORY_RELEASED,
            orders::PAYMENT_CAPTURED,
            orders::PAYMENT_FAILED,
        ] {
            assert!(types.declared().contains(&name), "{name}");
        }
    }

    /// Lines are read when present: none, `null` and `[]` are no lines; a bad line names its
    /// field; unknown fields are passed over.
    #[test]
    fn lines_when_present() {
        let read = |json: &'static str| serde_json::from_str::<OrderFacts<'_>>(json);
        for none in [
            r#"{"orderId":"o-1"}"#,
            r#"{"orderId":"o-1","items":null}"#,
            r#"{"orderId":"o-1","items":[],"coupon":"X"}"#,
        ] {
            assert!(read(none).unwrap().items.is_none(), "{none}");
        }
        let some = read(r#"{"orderId":"o-1","items":[{"productId":"b","quantity":1},{"productId":"a","quantity":2},{"productId":"b","quantity":3}],"total":"9.50"}"#).unwrap();
        let d = details(some.items.as_ref(), some.total.as_ref(), None).unwrap();
        let lines: Vec<(&str, u64)> = d
            .lines
            .iter()
            .flatten()
            .map(|l| (l.product_id.as_str(), l.quantity))
            .collect();
        assert_eq!(lines, [("a", 2), ("b", 4)]);
        assert_eq!(d.total.as_deref(), Some("9.50"));
        let err = read(r#"{"orderId":"o-1","items":[{"productId":"a","quantity":0}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("quantity"), "{err}");
        assert!(read(r#"{"items":[]}"#)
            .unwrap_err()
            .to_string()
            .contains("orderId"));
    }
}
