//! inventory-updater: reserve stock when an order is placed or created, give it back when the
//! order is cancelled or its payment fails (the saga's compensation), and publish each decision
//! onto the order stream for the rest of the saga.
//!
//! - this file: what it reads ([`InventoryEvent`]), its rule ([`InventoryRule`]), its settings
//!   and its wiring ([`Updater`]);
//! - [`lifecycle`]: what each event does to an order, given what is recorded: one decision, which
//!   the store and its fake both make;
//! - [`saga`]: the decisions it publishes, and their derived ids;
//! - [`ports`]: what it needs, an [`InventoryStore`], and what it answers;
//! - [`dynamodb`]: the store over DynamoDB; `fakes`: an in-memory store, for tests.
//!
//! Everything else (decoding, the batch engine, the ledger, the dead-letter queue, the runtime) is
//! the engine's, in `shared`; the stream's writer is the producer library's.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod dynamodb;
#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
pub mod lifecycle;
pub mod ports;
pub mod saga;

use orders::{OrderId, OrderLines};
use producer::ports::{Kinesis, StreamWriter};
use serde::{Deserialize, Serialize};
use shared::input::envelope::LooseText;
use shared::runtime::{Function, Wiring};
use shared::{Consumer, EffectError, Env, Event, Outcome, Problems};

pub use dynamodb::DynamoInventory;
use lifecycle::{Customer, Decided, Ending};
pub use ports::{Held, InventoryStore, Placement, ReleaseOutcome, ReserveOutcome};
use saga::{About, Decision, Decisions};

/// What inventory-updater reads, by event type: of a placement or creation, the order and its
/// lines (and, passed on unchecked to its decision, who ordered); of a cancellation or a failed
/// payment, the order. Nothing else of a payload is read, nor checked.
#[derive(Debug, Deserialize, Serialize)]
pub enum InventoryEvent<'a> {
    /// `ORDER_PLACED` or `ORDER_CREATED`: reserve the lines.
    #[serde(rename = "ORDER_PLACED", alias = "ORDER_CREATED", borrow)]
    Reserve(OrderToReserve<'a>),
    /// `ORDER_CANCELLED`: release what the order holds.
    #[serde(rename = "ORDER_CANCELLED", borrow)]
    Release(Cancellation<'a>),
    /// `PAYMENT_FAILED`: the saga's compensation, release what the order holds.
    #[serde(rename = "PAYMENT_FAILED", borrow)]
    PaymentFailed(Cancellation<'a>),
}

/// What a placement or creation must carry to reserve stock; and what its decision passes on.
///
/// Only the order and its lines are hashed for payload validation (what decides the effect): the
/// parts passed on are not, so hashes stored before they were read still match.
#[derive(Debug, Deserialize, Serialize)]
pub struct OrderToReserve<'a> {
    /// The order.
    #[serde(rename = "orderId", borrow)]
    pub order_id: OrderId<'a>,
    /// What to reserve.
    #[serde(borrow)]
    pub items: OrderLines<'a>,
    /// The customer, passed on as written.
    #[serde(rename = "userId", default, borrow, skip_serializing)]
    pub user_id: LooseText<'a>,
    /// The contact address, passed on as written (its reader checks it).
    #[serde(default, borrow, skip_serializing)]
    pub email: LooseText<'a>,
    /// The total, passed on as written.
    #[serde(default, borrow, skip_serializing)]
    pub total: LooseText<'a>,
}

impl OrderToReserve<'_> {
    /// Who ordered, as the placement said.
    fn customer(&self) -> Customer {
        let text = |t: &LooseText<'_>| t.0.as_deref().map(str::to_owned);
        Customer {
            user_id: text(&self.user_id),
            email: text(&self.email),
            total: text(&self.total),
        }
    }
}

/// What a cancellation or a failed payment must carry.
#[derive(Debug, Deserialize, Serialize)]
pub struct Cancellation<'a> {
    /// The order.
    #[serde(rename = "orderId", borrow)]
    pub order_id: OrderId<'a>,
}

/// The function's own settings.
///
/// | variable | meaning |
/// |---|---|
/// | `INVENTORY_TABLE` | the DynamoDB table of stock and reservations |
/// | `STREAM_NAME` | the order stream its decisions go to (a name or an ARN) |
#[derive(Debug, Clone)]
pub struct InventorySettings {
    /// `INVENTORY_TABLE`.
    pub table: String,
    /// `STREAM_NAME`.
    pub stream: String,
}

/// The rule: reserve on placed or created, release on cancelled or payment failed; each decision
/// published.
#[derive(Debug)]
pub struct InventoryRule<S, W> {
    store: S,
    decisions: Decisions<W>,
}

impl<S: InventoryStore, W: StreamWriter> InventoryRule<S, W> {
    /// A rule over `store`, publishing through `stream`.
    pub fn new(store: S, stream: W) -> Self {
        Self {
            store,
            decisions: Decisions::new(stream),
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The stream its decisions go to.
    pub fn stream(&self) -> &W {
        self.decisions.writer()
    }

    /// Publishes `decision`, if there is one, and logs its id.
    async fn publish(&self, decision: Option<Decision>) -> Result<(), EffectError> {
        if let Some(decision) = decision {
            let event_id = self.decisions.publish(&decision).await?;
            tracing::info!(%event_id, event_type = decision.event_type, "decision published");
        }
        Ok(())
    }

    async fn reserve(
        &self,
        key: &shared::idempotency::EffectKey<'_>,
        order: &OrderToReserve<'_>,
    ) -> Result<Outcome, EffectError> {
        let lines = order.items.quantities().map_err(EffectError::bad_data)?;
        let placement = Placement {
            order_id: &order.order_id,
            lines,
            customer: order.customer(),
        };
        let outcome = self.store.reserve(key, &placement).await?;
        let held: Vec<(&str, u64)> = placement
            .lines
            .iter()
            .map(|(sku, q)| (*sku, q.get()))
            .collect();
        let about = About {
            order_id: order.order_id.as_str(),
            lines: &held,
            customer: &placement.customer,
            cause: &key.key,
        };
        let (decided, outcome) = match outcome {
            ReserveOutcome::Reserved => (Some(Decided::Reserved), Outcome::Applied),
            ReserveOutcome::Rejected(r) => {
                let reason = r.reason.clone();
                (Some(Decided::Rejected(r)), Outcome::Rejected(reason))
            }
            ReserveOutcome::AlreadyRecorded(decided) => (decided, Outcome::Duplicate),
        };
        let decision = decided.map(|d| match d {
            Decided::Reserved => Decision::reserved(about),
            Decided::Rejected(r) => Decision::rejected(about, &r),
        });
        self.publish(decision).await?;
        Ok(outcome)
    }

    async fn release(
        &self,
        key: &shared::idempotency::EffectKey<'_>,
        order_id: &OrderId<'_>,
        ending: Ending,
    ) -> Result<Outcome, EffectError> {
        let (held, outcome) = match self.store.release(key, order_id, ending).await? {
            ReleaseOutcome::Released(held) => (Some(held), Outcome::Applied),
            ReleaseOutcome::AlreadyReleased(held) => (held, Outcome::Duplicate),
            ReleaseOutcome::NothingReserved => {
                let why = "nothing reserved for this order";
                return Ok(Outcome::NoEffect(why.into()));
            }
            ReleaseOutcome::EndedFirst => {
                return Ok(Outcome::NoEffect(format!(
                    "{} before it was placed: recorded, so a late placement takes no stock",
                    ending.reason()
                )))
            }
        };
        let decision = held.map(|held| {
            let lines: Vec<(&str, u64)> =
                held.lines.iter().map(|(s, q)| (s.as_str(), *q)).collect();
            Decision::released(
                About {
                    order_id: order_id.as_str(),
                    lines: &lines,
                    customer: &held.customer,
                    cause: &key.key,
                },
                ending,
            )
        });
        self.publish(decision).await?;
        Ok(outcome)
    }
}

impl<S: InventoryStore, W: StreamWriter> Consumer for InventoryRule<S, W> {
    type Payload<'a> = InventoryEvent<'a>;

    async fn handle(&self, event: &Event<'_, Self>) -> Result<Outcome, EffectError> {
        let key = event.effect_key()?;
        match &event.payload {
            InventoryEvent::Reserve(order) => self.reserve(&key, order).await,
            InventoryEvent::Release(cancel) => {
                self.release(&key, &cancel.order_id, Ending::Cancelled)
                    .await
            }
            InventoryEvent::PaymentFailed(failed) => {
                self.release(&key, &failed.order_id, Ending::PaymentFailed)
                    .await
            }
        }
    }
}

/// The function as it is deployed: the rule over DynamoDB, publishing to Kinesis.
pub type Updater = InventoryRule<DynamoInventory, Kinesis>;

impl Function for Updater {
    const NAME: &'static str = env!("CARGO_PKG_NAME");
    type Settings = InventorySettings;

    fn settings(env: &Env, problems: &mut Problems) -> InventorySettings {
        InventorySettings {
            table: problems.required(env, "INVENTORY_TABLE"),
            stream: problems.required(env, "STREAM_NAME"),
        }
    }

    fn wire(settings: InventorySettings, wiring: &Wiring<'_>) -> Self {
        let client = wiring.dynamodb.clone();
        let stream = Kinesis::new(producer::kinesis_client(wiring.sdk), settings.stream);
        InventoryRule::new(
            DynamoInventory::new(client, settings.table, wiring.markers()),
            stream,
        )
    }
}

#[cfg(test)]
mod tests {
    use shared::idempotency::PayloadHash;

    use super::*;

    /// The types it reads, all by default; what it hashes of each is the payload it read, as it
    /// was before the payload was an enum (hashes are stored).
    #[test]
    fn its_types_and_its_hashes() {
        let types = shared::EventTypes::of::<Updater>();
        assert_eq!(
            types.declared(),
            [
                "ORDER_CANCELLED",
                "ORDER_CREATED",
                "ORDER_PLACED",
                "PAYMENT_FAILED"
            ]
        );
        assert_eq!(types.defaults(), types.declared());
        let placed = r#"{"orderId":"o-1","items":[{"productId":"p","quantity":2}]}"#;
        let order: OrderToReserve<'_> = serde_json::from_str(placed).unwrap();
        let alone = PayloadHash::of(&order).unwrap();
        let read = InventoryEvent::Reserve(serde_json::from_str(placed).unwrap());
        assert_eq!(PayloadHash::of_variant(&read).unwrap(), alone);
        // What is passed on, unchecked, is not hashed: the hash is the one stored before.
        let with_customer = r#"{"orderId":"o-1","items":[{"productId":"p","quantity":2}],"userId":7,"email":"not checked","total":{"x":1}}"#;
        let read: OrderToReserve<'_> = serde_json::from_str(with_customer).unwrap();
        assert_eq!(
            read.customer(),
            Customer {
                user_id: Some("7".into()),
                email: Some("not checked".into()),
                total: None
            }
        );
        let read = InventoryEvent::Reserve(read);
        assert_eq!(PayloadHash::of_variant(&read).unwrap(), alone);
        let cancel: Cancellation<'_> = serde_json::from_str(r#"{"orderId":"o-1"}"#).unwrap();
        let alone = PayloadHash::of(&cancel).unwrap();
        let read = InventoryEvent::Release(serde_json::from_str(r#"{"orderId":"o-1"}"#).unwrap());
        assert_eq!(PayloadHash::of_variant(&read).unwrap(), alone);
    }
}
