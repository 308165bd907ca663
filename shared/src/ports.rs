//! The ports: one small trait per capability a function uses. Each has a real adapter (in
//! [`crate::adapters`]) and an in-memory fake (in [`crate::fakes`]).

use std::collections::BTreeMap;
use std::future::Future;

use crate::error::EffectError;
use crate::event::{Email, OrderId, Quantity};

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
    /// The order could not be reserved (out of stock, unknown product); nothing was reserved and
    /// the rejection was recorded.
    Rejected(String),
}

/// What releasing an order's stock came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The reserved stock was given back.
    Released,
    /// The event was already applied, or the order was already released: nothing changed.
    AlreadyReleased,
    /// The order had nothing reserved (never placed here, or rejected).
    NothingReserved,
}

/// Reserves and releases stock, all lines of an order or none.
pub trait InventoryStore: Sync {
    /// Reserves every line, so that no product's stock goes below zero, once per `event_key`.
    fn reserve(
        &self,
        event_key: &str,
        order_id: &OrderId<'_>,
        lines: &BTreeMap<&str, Quantity>,
    ) -> impl Future<Output = Result<ReserveOutcome, EffectError>> + Send;

    /// Gives back what the order reserved, once per `event_key`.
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
}

impl ReservationStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Reserved => "RESERVED",
            ReservationStatus::Rejected => "REJECTED",
            ReservationStatus::Released => "RELEASED",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RESERVED" => Some(ReservationStatus::Reserved),
            "REJECTED" => Some(ReservationStatus::Rejected),
            "RELEASED" => Some(ReservationStatus::Released),
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
}
