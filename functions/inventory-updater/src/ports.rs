//! What inventory-updater needs: a store that reserves and releases stock ([`InventoryStore`]),
//! and what it answers. The real one is over DynamoDB ([`crate::dynamodb`]); the fake keeps it
//! in memory. Both decide by [`crate::lifecycle`].

use std::collections::BTreeMap;
use std::future::Future;

use orders::{OrderId, Quantity};
use shared::idempotency::EffectKey;
use shared::EffectError;

/// What reserving an order's stock came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Every line was reserved.
    Reserved,
    /// The event was already applied, or the order was already reserved or rejected: nothing
    /// changed.
    AlreadyRecorded,
    /// The order could not be reserved (out of stock, unknown product, cancelled before it was
    /// placed); nothing was reserved and the rejection was recorded.
    Rejected(String),
}

/// What releasing an order's stock came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The reserved stock was given back.
    Released,
    /// The event was already applied, or the order was already released: nothing changed.
    AlreadyReleased,
    /// The order had nothing reserved (it was rejected).
    NothingReserved,
    /// The order was never placed here: it is recorded as cancelled (a tombstone), so a placement
    /// that arrives later takes no stock.
    CancelledFirst,
}

/// Reserves and releases stock, all lines of an order or none.
pub trait InventoryStore: Sync {
    /// Reserves every line, so that no product's stock goes below zero, once per `event`, and
    /// once per order, as [`crate::lifecycle`] decides. An event whose key was applied with another
    /// payload fails permanently (`shared::idempotency::PAYLOAD_REUSED`).
    fn reserve(
        &self,
        event: &EffectKey<'_>,
        order_id: &OrderId<'_>,
        lines: &BTreeMap<&str, Quantity>,
    ) -> impl Future<Output = Result<ReserveOutcome, EffectError>> + Send;

    /// Gives back what the order reserved, once per `event`, as [`crate::lifecycle`] decides; an
    /// order not placed yet is recorded as cancelled.
    fn release(
        &self,
        event: &EffectKey<'_>,
        order_id: &OrderId<'_>,
    ) -> impl Future<Output = Result<ReleaseOutcome, EffectError>> + Send;
}
