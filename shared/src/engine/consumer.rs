//! The consumer API: what a function declares and does, and what the engine hands it.
//!
//! A consumer is declared once, by its [`Consumer::Payload`]: an enum with one variant per event
//! type it handles, named by the type, each holding that type's payload schema. The engine reads
//! each wanted record into the variant of its type and calls [`Consumer::handle`] with the
//! [`Event`]. The enum's variants are the types it supports ([`EventTypes`]): the settings check,
//! the reader and the template's test all take them from there.

use std::borrow::Cow;
use std::future::Future;

use serde::{Deserialize, Serialize};

use super::error::EffectError;
use crate::input::envelope::declared_types;

/// A consumer: what it reads, and its rule. The engine brings everything else (decoding, KPL,
/// ordering, poison capture, idempotency keys, the deadline).
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use shared::{Consumer, EffectError, Event, Outcome};
///
/// /// What this consumer reads: one variant per event type, named by the type.
/// #[derive(Deserialize, Serialize)]
/// enum Payment {
///     #[serde(rename = "PAYMENT_CAPTURED")]
///     Captured { #[serde(rename = "amountCents")] amount_cents: u64 },
/// }
///
/// struct Payments;
///
/// impl Consumer for Payments {
///     type Payload<'a> = Payment;
///
///     async fn handle(&self, event: &Event<'_, Self>) -> Result<Outcome, EffectError> {
///         let Payment::Captured { amount_cents } = event.payload;
///         println!("{} captured {amount_cents}", event.idempotency_key());
///         Ok(Outcome::Applied)
///     }
/// }
///
/// assert_eq!(shared::EventTypes::of::<Payments>().declared(), ["PAYMENT_CAPTURED"]);
/// ```
pub trait Consumer: Sync {
    /// A wanted event's payload: an enum whose variants are the event types this consumer
    /// handles, each named by the type's wire name (`#[serde(rename = "ORDER_PLACED")]`, with
    /// `alias` for a second name read alike) and holding that type's schema, usually a
    /// `#[derive(Deserialize)]` struct borrowing from the record's data. A payload that breaks its
    /// schema makes the record poison, with the error (naming the field) as its reason.
    ///
    /// Its `Serialize` (derived with the same attributes) is what payload validation hashes: the
    /// payload as the rule read it (`Event::effect_key`, in [`crate::idempotency`]).
    type Payload<'a>: Deserialize<'a> + Serialize + Send + Sync;

    /// The declared types this consumer handles only when `EVENT_TYPES` names them.
    const OFF_BY_DEFAULT: &'static [&'static str] = &[];

    /// Performs the event's effect.
    fn handle(
        &self,
        event: &Event<'_, Self>,
    ) -> impl Future<Output = Result<Outcome, EffectError>> + Send;
}

/// The event types a consumer declares (its payload's variants), and of those the ones it handles
/// by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTypes {
    declared: Vec<&'static str>,
    defaults: Vec<&'static str>,
}

impl EventTypes {
    /// The types `C` declares, in alphabetical order. Empty when its payload is not an enum read
    /// by its variants' names.
    pub fn of<C: Consumer + ?Sized>() -> Self {
        let mut declared = declared_types::<C::Payload<'static>>();
        declared.sort_unstable();
        declared.dedup();
        let defaults = declared
            .iter()
            .copied()
            .filter(|t| !C::OFF_BY_DEFAULT.contains(t))
            .collect();
        Self { declared, defaults }
    }

    /// Every type the consumer has a rule for.
    pub fn declared(&self) -> &[&'static str] {
        &self.declared
    }

    /// The types it handles unless `EVENT_TYPES` says otherwise.
    pub fn defaults(&self) -> &[&'static str] {
        &self.defaults
    }
}

/// What a rule did with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The effect took place.
    Applied,
    /// The effect had already taken place (a redelivery): nothing was done.
    Duplicate,
    /// The business said no (for example out of stock). Recorded, and not retried.
    Rejected(String),
    /// There was nothing to do (for example cancelling an order that holds no stock).
    NoEffect(String),
}

/// Where a record is in the batch: its identity in the stream.
#[derive(Debug, Clone, Copy)]
pub struct RecordContext<'a> {
    /// The Kinesis partition key.
    pub partition_key: &'a str,
    /// The Kinesis sequence number, the identifier failures are reported under (for a KPL user
    /// record, its parent's).
    pub sequence_number: &'a str,
    /// For a KPL user record, its position in the aggregate.
    pub sub_sequence_number: Option<u64>,
    /// The shard, when the record's `eventID` names it.
    pub shard_id: Option<&'a str>,
}

impl RecordContext<'_> {
    /// The record's identity in the stream: see [`stream_identity`].
    pub fn stream_identity(&self) -> String {
        stream_identity(
            self.shard_id,
            self.sequence_number,
            self.sub_sequence_number,
        )
    }
}

/// A record's identity in the stream, `<shard>:<sequence number>[:<sub-sequence number>]`
/// (`shard` when the shard is not known): the idempotency key of an event with no `eventId`, and
/// the key a poison record is captured once under.
pub fn stream_identity(shard: Option<&str>, sequence_number: &str, sub: Option<u64>) -> String {
    let shard = shard.unwrap_or("shard");
    match sub {
        None => format!("{shard}:{sequence_number}"),
        Some(sub) => format!("{shard}:{sequence_number}:{sub}"),
    }
}

/// One wanted event, its payload read by its type's schema, ready for a rule.
pub struct Event<'a, C: Consumer + ?Sized> {
    event_type: Cow<'a, str>,
    event_id: Option<Cow<'a, str>>,
    timestamp: Option<Cow<'a, str>>,
    /// The payload, read into the variant of its type.
    pub payload: C::Payload<'a>,
    /// Where the record sits in the stream.
    pub record: RecordContext<'a>,
}

impl<'a, C: Consumer + ?Sized> Event<'a, C> {
    /// An event of `event_type` (its wire name), with the producer's `event_id` if it sent one.
    pub fn new(
        event_type: Cow<'a, str>,
        event_id: Option<Cow<'a, str>>,
        payload: C::Payload<'a>,
        record: RecordContext<'a>,
    ) -> Self {
        Self {
            event_type,
            event_id,
            timestamp: None,
            payload,
            record,
        }
    }

    /// The same event, with the `timestamp` its producer wrote.
    pub fn with_timestamp(mut self, timestamp: Option<Cow<'a, str>>) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// When the producer says the event happened, as it wrote it (never checked).
    pub fn timestamp(&self) -> Option<&str> {
        self.timestamp.as_deref()
    }

    /// The event type's wire name.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The producer's id of the event, when it sent one.
    pub fn event_id(&self) -> Option<&str> {
        self.event_id.as_deref()
    }

    /// The key that identifies this event for idempotency: its `eventId`, or, when the producer
    /// sent none, the record's identity in the stream ([`stream_identity`]).
    pub fn idempotency_key(&self) -> Cow<'_, str> {
        match self.event_id() {
            Some(id) if !id.is_empty() => Cow::Borrowed(id),
            _ => Cow::Owned(self.record.stream_identity()),
        }
    }
}

/// A record that can never succeed, with everything needed to look at it or replay it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoisonRecord {
    /// The function that gave up on it.
    pub function: String,
    /// The scope of that function's idempotency entries (its crate's name, which Lambda's name
    /// for it may not be): where a redrive forgets an outcome that was never known. Empty in a
    /// record captured before it was kept: the function's name is then the scope.
    #[serde(default)]
    pub scope: String,
    /// The stream's ARN, when the event named it.
    #[serde(default)]
    pub event_source_arn: Option<String>,
    /// The shard.
    #[serde(default)]
    pub shard_id: Option<String>,
    /// The partition key.
    #[serde(default)]
    pub partition_key: Option<String>,
    /// The sequence number.
    #[serde(default)]
    pub sequence_number: Option<String>,
    /// For a user record of a KPL aggregate, its position in the aggregate.
    #[serde(default)]
    pub sub_sequence_number: Option<u64>,
    /// The record's data, base64, exactly as it was delivered (for a KPL user record: its own
    /// data, which redriving puts back on the stream as a plain record). Empty in a message that
    /// points to the whole record elsewhere (see the dead-letter queue's adapter).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data: String,
    /// Why it can never succeed.
    pub reason: String,
    /// Whether its data is what is wrong ([`PoisonCause::Data`]: redriven as it is, it fails
    /// again) or its effect failed for good ([`PoisonCause::Effect`]).
    #[serde(default)]
    pub cause: PoisonCause,
    /// When it was captured, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub captured_at_ms: u64,
}

impl PoisonRecord {
    /// The scope of its function's idempotency entries.
    pub fn scope(&self) -> &str {
        if self.scope.is_empty() {
            &self.function
        } else {
            &self.scope
        }
    }

    /// The idempotency key its event had: the `eventId` in its data, else its identity in the
    /// stream. `None` when it has no sequence number and its data names no `eventId`.
    pub fn idempotency_key(&self) -> Option<String> {
        let data = base64_simd::STANDARD.decode_to_vec(&self.data).ok();
        let envelope = data.as_deref().and_then(|data| {
            use crate::input::envelope::{Envelope, Read, RecordData};
            match Envelope::<serde::de::IgnoredAny>::read(RecordData::Bytes(data), |_| true) {
                Ok(Read::Wanted(e)) => e.event_id.map(Cow::into_owned),
                _ => None,
            }
        });
        envelope.filter(|id| !id.is_empty()).or_else(|| {
            let seq = self.sequence_number.as_deref()?;
            Some(stream_identity(
                self.shard_id.as_deref(),
                seq,
                self.sub_sequence_number,
            ))
        })
    }
}

/// What made a record poison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoisonCause {
    /// The record's data: not an event, a payload that breaks its schema, an `eventId` reused for
    /// another payload. Put back as it is, it fails again the same way.
    Data,
    /// Its effect failed for good (an address SES refuses, an outcome nobody knows): put back after
    /// the cause is fixed, it may succeed.
    Effect,
    /// Not recorded: a record captured before poison records said why. Nothing says it would fail
    /// again, so a redrive puts it back (and says its cause was not recorded).
    #[default]
    #[serde(other)]
    Unknown,
}

/// Where poison records go. A record counts as handled only once the sink has accepted it.
pub trait PoisonSink: Sync {
    /// Keeps the record. An error means it was not kept, and the record is reported for retry.
    fn capture(
        &self,
        record: &PoisonRecord,
    ) -> impl Future<Output = Result<(), EffectError>> + Send;
}
