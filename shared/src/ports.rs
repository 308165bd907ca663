//! The ports: one small trait per capability a function uses. Each has a real adapter (in
//! [`crate::adapters`]) and an in-memory fake (in [`crate::fakes`]).

use std::collections::BTreeMap;
use std::future::Future;

use crate::error::EffectError;
use crate::order::{Email, OrderId, Quantity};

/// An order confirmation to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Confirmation<'a> {
    /// The recipient.
    pub to: &'a Email<'a>,
    /// The order it confirms.
    pub order_id: &'a OrderId<'a>,
    /// The template's data, as a JSON object.
    pub template_data: String,
}

/// Sends order confirmations.
pub trait EmailSender: Sync {
    /// Sends one confirmation and returns the provider's message id.
    fn send_confirmation(
        &self,
        confirmation: &Confirmation<'_>,
    ) -> impl Future<Output = Result<String, EffectError>> + Send;
}

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
    /// Reserves every line, so that no product's stock goes below zero, once per `event_key`, and
    /// once per order; an order recorded as cancelled is rejected.
    fn reserve(
        &self,
        event_key: &str,
        order_id: &OrderId<'_>,
        lines: &BTreeMap<&str, Quantity>,
    ) -> impl Future<Output = Result<ReserveOutcome, EffectError>> + Send;

    /// Gives back what the order reserved, once per `event_key`; an order not placed yet is
    /// recorded as cancelled.
    fn release(
        &self,
        event_key: &str,
        order_id: &OrderId<'_>,
    ) -> impl Future<Output = Result<ReleaseOutcome, EffectError>> + Send;
}

/// Where an order's reservation stands, as the inventory store records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationStatus {
    /// Stock is held for the order.
    Reserved,
    /// The order could not be reserved; nothing is held.
    Rejected,
    /// The order was cancelled and its stock given back.
    Released,
    /// The order was cancelled before it was placed here: a tombstone, holding nothing.
    Cancelled,
}

impl ReservationStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Reserved => "RESERVED",
            ReservationStatus::Rejected => "REJECTED",
            ReservationStatus::Released => "RELEASED",
            ReservationStatus::Cancelled => "CANCELLED",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RESERVED" => Some(ReservationStatus::Reserved),
            "REJECTED" => Some(ReservationStatus::Rejected),
            "RELEASED" => Some(ReservationStatus::Released),
            "CANCELLED" => Some(ReservationStatus::Cancelled),
            _ => None,
        }
    }
}

/// An order's reservation as the inventory store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Where it stands.
    pub status: ReservationStatus,
    /// What is held, per SKU (empty when rejected).
    pub lines: BTreeMap<String, u64>,
    /// Why it was rejected.
    pub reason: Option<String>,
    /// The event that cancelled the order before it was placed (a tombstone's, or a rejection's
    /// that followed one).
    pub cancelled_by: Option<String>,
}

/// Why a placement of an order that was cancelled first is rejected.
pub const CANCELLED_BEFORE_PLACED: &str = "cancelled before it was placed";
