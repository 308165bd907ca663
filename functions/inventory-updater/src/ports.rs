//! What inventory-updater needs: a store that reserves and releases stock ([`InventoryStore`]),
//! and what it answers; and a stream its decisions go to (the producer's
//! `producer::ports::StreamWriter`, see [`crate::saga`]). The real store is over DynamoDB
//! ([`crate::dynamodb`]); the fake keeps it in memory. Both decide by [`crate::lifecycle`].

use std::collections::BTreeMap;
use std::future::Future;

use orders::{OrderId, Quantity};
use shared::idempotency::EffectKey;
use shared::EffectError;

use crate::lifecycle::{Customer, Decided, Ending, Rejection};

/// A placement to reserve: the order, its quantity per SKU, and who ordered (kept for its
/// release's decision).
#[derive(Debug, Clone)]
pub struct Placement<'a> {
    /// The order.
    pub order_id: &'a OrderId<'a>,
    /// The quantity per SKU.
    pub lines: BTreeMap<&'a str, Quantity>,
    /// Who ordered.
    pub customer: Customer,
}

/// What reserving an order's stock came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Every line was reserved, now.
    Reserved,
    /// The order could not be reserved (out of stock, unknown product, ended before it was
    /// placed); nothing was reserved and the rejection was recorded, now.
    Rejected(Rejection),
    /// Nothing changed: the event was applied before, or the order was already decided. `Some`
    /// when this very event decided it before (a retry): what it decided, to publish again.
    AlreadyRecorded(Option<Decided>),
}

/// What an order held, as its release gives it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The lines given back, per SKU.
    pub lines: BTreeMap<String, u64>,
    /// Who ordered.
    pub customer: Customer,
}

/// What releasing an order's stock came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The reserved stock was given back, now.
    Released(Held),
    /// Nothing changed: the event was applied before, or the order was already released. `Some`
    /// when this very event released it before (a retry): what it gave back, to publish again.
    AlreadyReleased(Option<Held>),
    /// The order had nothing reserved (it was rejected).
    NothingReserved,
    /// The order was never placed here: it is recorded as ended (a tombstone), so a placement
    /// that arrives later takes no stock.
    EndedFirst,
}

/// Reserves and releases stock, all lines of an order or none.
pub trait InventoryStore: Sync {
    /// Reserves every line, so that no product's stock goes below zero, once per `event`, and
    /// once per order, as [`crate::lifecycle`] decides. An event whose key was applied with another
    /// payload fails permanently (`shared::idempotency::PAYLOAD_REUSED`).
    fn reserve(
        &self,
        event: &EffectKey<'_>,
        placement: &Placement<'_>,
    ) -> impl Future<Output = Result<ReserveOutcome, EffectError>> + Send;

    /// Gives back what the order reserved, once per `event`, as [`crate::lifecycle`] decides; an
    /// order not placed yet is recorded as ended, for `ending`.
    fn release(
        &self,
        event: &EffectKey<'_>,
        order_id: &OrderId<'_>,
        ending: Ending,
    ) -> impl Future<Output = Result<ReleaseOutcome, EffectError>> + Send;
}
