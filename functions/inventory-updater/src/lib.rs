//! inventory-updater: reserve stock when an order is placed or created, release it when the order
//! is cancelled.
//!
//! - this file: what it reads ([`InventoryEvent`]), its rule ([`InventoryRule`]), its settings
//!   and its wiring ([`Updater`]);
//! - [`lifecycle`]: what each event does to an order, given what is recorded: one decision, which
//!   the store and its fake both make;
//! - [`ports`]: what it needs, an [`InventoryStore`], and what it answers;
//! - [`dynamodb`]: the store over DynamoDB; `fakes`: an in-memory store, for tests.
//!
//! Everything else (decoding, the batch engine, the ledger, the dead-letter queue, the runtime) is
//! the engine's, in `shared`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod dynamodb;
#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
pub mod lifecycle;
pub mod ports;

use orders::{OrderId, OrderLines};
use serde::{Deserialize, Serialize};
use shared::runtime::{Function, Wiring};
use shared::{Consumer, EffectError, Env, Event, Outcome, Problems};

pub use dynamodb::DynamoInventory;
pub use ports::{InventoryStore, ReleaseOutcome, ReserveOutcome};

/// What inventory-updater reads, by event type: of a placement or creation, the order and its
/// lines; of a cancellation, the order. Nothing else of a payload (the address, the total) is
/// read, nor checked.
#[derive(Debug, Deserialize, Serialize)]
pub enum InventoryEvent<'a> {
    /// `ORDER_PLACED` or `ORDER_CREATED`: reserve the lines.
    #[serde(rename = "ORDER_PLACED", alias = "ORDER_CREATED", borrow)]
    Reserve(OrderToReserve<'a>),
    /// `ORDER_CANCELLED`: release what the order holds.
    #[serde(rename = "ORDER_CANCELLED", borrow)]
    Release(Cancellation<'a>),
}

/// What a placement or creation must carry to reserve stock.
#[derive(Debug, Deserialize, Serialize)]
pub struct OrderToReserve<'a> {
    /// The order.
    #[serde(rename = "orderId", borrow)]
    pub order_id: OrderId<'a>,
    /// What to reserve.
    #[serde(borrow)]
    pub items: OrderLines<'a>,
}

/// What a cancellation must carry.
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
#[derive(Debug, Clone)]
pub struct InventorySettings {
    /// `INVENTORY_TABLE`.
    pub table: String,
}

/// The rule: reserve on placed or created, release on cancelled.
#[derive(Debug)]
pub struct InventoryRule<S> {
    store: S,
}

impl<S: InventoryStore> InventoryRule<S> {
    /// A rule over `store`.
    pub fn new(store: S) -> Self {
        Self { store }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }
}

impl<S: InventoryStore> Consumer for InventoryRule<S> {
    type Payload<'a> = InventoryEvent<'a>;

    async fn handle(&self, event: &Event<'_, Self>) -> Result<Outcome, EffectError> {
        let key = event.effect_key()?;
        Ok(match &event.payload {
            InventoryEvent::Reserve(order) => {
                let lines = order.items.quantities().map_err(EffectError::bad_data)?;
                match self.store.reserve(&key, &order.order_id, &lines).await? {
                    ReserveOutcome::Reserved => Outcome::Applied,
                    ReserveOutcome::AlreadyRecorded => Outcome::Duplicate,
                    ReserveOutcome::Rejected(reason) => Outcome::Rejected(reason),
                }
            }
            InventoryEvent::Release(cancel) => {
                match self.store.release(&key, &cancel.order_id).await? {
                    ReleaseOutcome::Released => Outcome::Applied,
                    ReleaseOutcome::AlreadyReleased => Outcome::Duplicate,
                    ReleaseOutcome::NothingReserved => {
                        Outcome::NoEffect("nothing reserved for this order".into())
                    }
                    ReleaseOutcome::CancelledFirst => Outcome::NoEffect(
                        "cancelled before it was placed: recorded, so a late placement takes no \
                         stock"
                            .into(),
                    ),
                }
            }
        })
    }
}

/// The function as it is deployed: the rule over DynamoDB.
pub type Updater = InventoryRule<DynamoInventory>;

impl Function for Updater {
    const NAME: &'static str = env!("CARGO_PKG_NAME");
    type Settings = InventorySettings;

    fn settings(env: &Env, problems: &mut Problems) -> InventorySettings {
        InventorySettings {
            table: problems.required(env, "INVENTORY_TABLE"),
        }
    }

    fn wire(settings: InventorySettings, wiring: &Wiring<'_>) -> Self {
        let client = wiring.dynamodb.clone();
        InventoryRule::new(DynamoInventory::new(
            client,
            settings.table,
            wiring.markers(),
        ))
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
            ["ORDER_CANCELLED", "ORDER_CREATED", "ORDER_PLACED"]
        );
        assert_eq!(types.defaults(), types.declared());
        let placed = r#"{"orderId":"o-1","items":[{"productId":"p","quantity":2}]}"#;
        let order: OrderToReserve<'_> = serde_json::from_str(placed).unwrap();
        let alone = PayloadHash::of(&order).unwrap();
        let read = InventoryEvent::Reserve(serde_json::from_str(placed).unwrap());
        assert_eq!(PayloadHash::of_variant(&read).unwrap(), alone);
        let cancel: Cancellation<'_> = serde_json::from_str(r#"{"orderId":"o-1"}"#).unwrap();
        let alone = PayloadHash::of(&cancel).unwrap();
        let read = InventoryEvent::Release(serde_json::from_str(r#"{"orderId":"o-1"}"#).unwrap());
        assert_eq!(PayloadHash::of_variant(&read).unwrap(), alone);
    }
}
