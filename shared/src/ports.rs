//! The ports: every trait the engine and the functions go through, one small trait per
//! capability. Each has a real adapter (in [`crate::adapters`]) and an in-memory fake (in
//! `crate::fakes`, compiled for tests).
//!
//! - [`Consumer`]: what a function reads and does (the engine calls it);
//! - [`PoisonSink`]: where records that can never succeed go, with their payload;
//! - [`IdempotencyStore`]: the ledger of claims around an effect;
//! - [`EmailSender`], [`InventoryStore`]: the functions' effects.

use std::collections::BTreeMap;
use std::future::Future;

use serde::{Deserializer, Serialize};

use crate::engine::{Event, Outcome};
use crate::error::EffectError;
use crate::idempotency::{EffectKey, Lease};
use crate::order::{Email, OrderId, Quantity};

/// A consumer: the event types it reads, the schema of each one's payload, and its rule. The
/// engine brings everything else (decoding, KPL, ordering, poison capture, the deadline).
///
/// Which types reach it is the engine's [`EngineConfig::event_types`]: the others are skipped,
/// read no further than their type.
pub trait Consumer: Sync {
    /// A wanted event's payload as this consumer reads it: usually an enum with one variant per
    /// event type, each a `#[derive(Deserialize)]` struct borrowing from the record's data.
    type Payload<'a>: Send + Sync;

    /// Reads the payload of a wanted event of `event_type` by that type's schema, from any serde
    /// deserializer at the payload: usually `PlacedOrder::deserialize(payload)` for a derived
    /// `PlacedOrder`, and `Err(serde::de::Error::custom(..))` for a type it has no rule for. An
    /// error makes the record poison, with the error (naming the field) as its reason.
    fn read<'a, D: Deserializer<'a>>(
        &self,
        event_type: &str,
        payload: D,
    ) -> Result<Self::Payload<'a>, D::Error>;

    /// Performs the event's effect. (Implementations write the parameter as
    /// `&Event<'_, Self::Payload<'_>>`, as here: naming the payload's type instead does not match
    /// the trait's lifetimes.)
    fn handle(
        &self,
        event: &Event<'_, Self::Payload<'_>>,
    ) -> impl Future<Output = Result<Outcome, EffectError>> + Send;
}

/// The error a [`Consumer::read`] answers for an event type it has no rule for (its
/// configuration names a type its code does not read): the record is poison, and says so.
pub fn no_rule<E: serde::de::Error>(event_type: &str) -> E {
    E::custom(format!("this function has no rule for {event_type}"))
}

/// A record that can never succeed, with everything needed to look at it or replay it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoisonRecord {
    /// The function that gave up on it.
    pub function: String,
    /// The stream's ARN, when the event named it.
    pub event_source_arn: Option<String>,
    /// The shard.
    pub shard_id: Option<String>,
    /// The partition key.
    pub partition_key: Option<String>,
    /// The sequence number.
    pub sequence_number: Option<String>,
    /// For a user record of a KPL aggregate, its position in the aggregate.
    pub sub_sequence_number: Option<u64>,
    /// The record's data, base64, exactly as it was delivered (for a KPL user record: its own
    /// data, which redriving puts back on the stream as a plain record).
    pub data: String,
    /// Why it can never succeed.
    pub reason: String,
    /// Whether its data is what is wrong ([`PoisonCause::Data`]: redriven as it is, it fails
    /// again) or its effect failed for good ([`PoisonCause::Effect`]).
    pub cause: PoisonCause,
    /// When it was captured, in milliseconds since the Unix epoch.
    pub captured_at_ms: u64,
}

/// What made a record poison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PoisonCause {
    /// The record's data: not an event, a payload that breaks its schema, an `eventId` reused for
    /// another payload. Put back as it is, it fails again the same way.
    Data,
    /// Its effect failed for good (an address SES refuses, an outcome nobody knows): put back after
    /// the cause is fixed, it may succeed.
    Effect,
}

/// Where poison records go. A record counts as handled only once the sink has accepted it.
pub trait PoisonSink: Sync {
    /// Keeps the record. An error means it was not kept, and the record is reported for retry.
    fn capture(
        &self,
        record: &PoisonRecord,
    ) -> impl Future<Output = Result<(), EffectError>> + Send;
}

/// What claiming an event came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The event is ours to perform.
    Claimed(Lease),
    /// The effect was already performed.
    AlreadyDone,
    /// Another delivery holds an unexpired claim: it may be performing the effect right now.
    InProgress,
    /// The key was claimed for another payload: the producer reused its `eventId`.
    Reused,
}

/// How a claim ends when its effect did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The effect happened (`DONE`).
    Done,
    /// Nobody knows whether it happened: the request got no answer (`UNKNOWN`). It is not
    /// repeated; the record goes to the dead-letter queue for a person to check.
    Unknown,
}

impl Mark {
    /// The stored status.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mark::Done => "DONE",
            Mark::Unknown => "UNKNOWN",
        }
    }
}

/// The ledger of claims around effects.
pub trait IdempotencyStore: Sync {
    /// Claims `event`'s key with a new lease, unless it is done or held by an unexpired lease, or
    /// was claimed for another payload ([`Claim::Reused`]). The claim keeps the payload's hash.
    fn claim(
        &self,
        event: &EffectKey<'_>,
    ) -> impl Future<Output = Result<Claim, EffectError>> + Send;

    /// Ends the claim on `key` with `mark` and a note (for example the message id), if `lease`
    /// still holds it. Either mark makes later claims answer [`Claim::AlreadyDone`].
    fn complete(
        &self,
        key: &str,
        lease: &Lease,
        mark: Mark,
        note: &str,
    ) -> impl Future<Output = Result<(), EffectError>> + Send;

    /// Gives up the claim on `key` after a failed effect, so a retry can claim it at once.
    fn release(
        &self,
        key: &str,
        lease: &Lease,
    ) -> impl Future<Output = Result<(), EffectError>> + Send;
}

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
    /// Reserves every line, so that no product's stock goes below zero, once per `event`, and
    /// once per order; an order recorded as cancelled is rejected. An event whose key was applied
    /// with another payload fails permanently ([`crate::idempotency::PAYLOAD_REUSED`]).
    fn reserve(
        &self,
        event: &EffectKey<'_>,
        order_id: &OrderId<'_>,
        lines: &BTreeMap<&str, Quantity>,
    ) -> impl Future<Output = Result<ReserveOutcome, EffectError>> + Send;

    /// Gives back what the order reserved, once per `event`; an order not placed yet is
    /// recorded as cancelled.
    fn release(
        &self,
        event: &EffectKey<'_>,
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
