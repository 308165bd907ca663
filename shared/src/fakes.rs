//! In-memory fakes of the ports, with the same semantics as the real adapters, and failures and
//! delays that tests can plan.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::engine::{Event, Outcome};
use crate::error::{EffectError, ErrorClass};
use crate::idempotency::{EffectKey, Lease, PAYLOAD_REUSED};
use crate::order::{OrderId, PlacedOrder, Quantity};
use crate::ports::Consumer;
use crate::ports::{Claim, IdempotencyStore, Mark};
use crate::ports::{
    Confirmation, EmailSender, InventoryStore, ReleaseOutcome, Reservation, ReservationStatus,
    ReserveOutcome, CANCELLED_BEFORE_PLACED,
};
use crate::ports::{PoisonRecord, PoisonSink};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Planned failures: the next `n` calls for an order fail with a class.
#[derive(Debug, Default)]
struct FailurePlan(Mutex<HashMap<String, (ErrorClass, usize)>>);

impl FailurePlan {
    fn plan(&self, order_id: &str, class: ErrorClass, times: usize) {
        lock(&self.0).insert(order_id.to_owned(), (class, times));
    }

    fn take(&self, order_id: &str) -> Result<(), EffectError> {
        let mut plans = lock(&self.0);
        match plans.get_mut(order_id) {
            Some((class, left)) if *left > 0 => {
                *left -= 1;
                Err(EffectError::new(
                    *class,
                    format!("planned failure for order {order_id}"),
                    None,
                ))
            }
            _ => Ok(()),
        }
    }
}

/// One email the fake sender accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentEmail {
    /// The recipient.
    pub to: String,
    /// The order.
    pub order_id: String,
    /// The template data.
    pub template_data: String,
}

/// An [`EmailSender`] that records what it sends.
#[derive(Debug, Default)]
pub struct FakeEmailSender {
    sent: Mutex<Vec<SentEmail>>,
    failures: FailurePlan,
    delay: Option<Duration>,
}

impl FakeEmailSender {
    /// A sender that answers after `delay` (on the tokio clock).
    pub fn with_delay(delay: Duration) -> Self {
        Self {
            delay: Some(delay),
            ..Self::default()
        }
    }

    /// The next `times` sends for `order_id` fail with `class`.
    pub fn fail_order(&self, order_id: &str, class: ErrorClass, times: usize) {
        self.failures.plan(order_id, class, times);
    }

    /// What was sent, in order.
    pub fn sent(&self) -> Vec<SentEmail> {
        lock(&self.sent).clone()
    }
}

impl EmailSender for FakeEmailSender {
    async fn send_confirmation(&self, c: &Confirmation<'_>) -> Result<String, EffectError> {
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        self.failures.take(c.order_id.as_str())?;
        let mut sent = lock(&self.sent);
        sent.push(SentEmail {
            to: c.to.as_str().to_owned(),
            order_id: c.order_id.as_str().to_owned(),
            template_data: c.template_data.clone(),
        });
        Ok(format!("fake-message-{}", sent.len()))
    }
}

#[derive(Debug, Default)]
struct InventoryState {
    stock: BTreeMap<String, u64>,
    reservations: BTreeMap<String, Reservation>,
    /// The applied events' keys, with their payloads' hashes.
    markers: HashMap<String, Option<String>>,
}

/// An [`InventoryStore`] in memory: all lines of an order or none, stock never below zero.
#[derive(Debug, Default)]
pub struct FakeInventory {
    state: Mutex<InventoryState>,
    failures: FailurePlan,
}

impl FakeInventory {
    /// A store with this stock per SKU.
    pub fn with_stock<'a>(stock: impl IntoIterator<Item = (&'a str, u64)>) -> Self {
        let fake = Self::default();
        lock(&fake.state).stock = stock.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        fake
    }

    /// The next `times` calls for `order_id` fail with `class`, changing nothing.
    pub fn fail_order(&self, order_id: &str, class: ErrorClass, times: usize) {
        self.failures.plan(order_id, class, times);
    }

    /// The stock of one SKU.
    pub fn stock(&self, sku: &str) -> Option<u64> {
        lock(&self.state).stock.get(sku).copied()
    }

    /// The reservation of one order.
    pub fn reservation(&self, order_id: &str) -> Option<Reservation> {
        lock(&self.state).reservations.get(order_id).cloned()
    }
}

impl InventoryStore for FakeInventory {
    async fn reserve(
        &self,
        event: &EffectKey<'_>,
        order_id: &OrderId<'_>,
        lines: &BTreeMap<&str, Quantity>,
    ) -> Result<ReserveOutcome, EffectError> {
        self.failures.take(order_id.as_str())?;
        let mut s = lock(&self.state);
        if applied_before(&s.markers, event)? {
            return Ok(ReserveOutcome::AlreadyRecorded);
        }
        if let Some(existing) = s.reservations.get_mut(order_id.as_str()) {
            if existing.status != ReservationStatus::Cancelled {
                return Ok(ReserveOutcome::AlreadyRecorded);
            }
            // Cancelled before it was placed: rejected, taking no stock.
            existing.status = ReservationStatus::Rejected;
            existing.reason = Some(CANCELLED_BEFORE_PLACED.into());
            mark(&mut s.markers, event);
            return Ok(ReserveOutcome::Rejected(CANCELLED_BEFORE_PLACED.into()));
        }
        mark(&mut s.markers, event);
        let shortage = lines.iter().find_map(|(sku, q)| match s.stock.get(*sku) {
            None => Some(format!("unknown product {sku}")),
            Some(have) if *have < q.get() => Some(format!("insufficient stock for {sku}")),
            Some(_) => None,
        });
        let (status, reason) = match shortage {
            Some(reason) => (ReservationStatus::Rejected, Some(reason)),
            None => {
                for (sku, q) in lines {
                    if let Some(have) = s.stock.get_mut(*sku) {
                        *have -= q.get();
                    }
                }
                (ReservationStatus::Reserved, None)
            }
        };
        let held = match status {
            ReservationStatus::Reserved => lines
                .iter()
                .map(|(k, q)| ((*k).to_owned(), q.get()))
                .collect(),
            _ => BTreeMap::new(),
        };
        s.reservations.insert(
            order_id.as_str().to_owned(),
            Reservation {
                status,
                lines: held,
                reason: reason.clone(),
                cancelled_by: None,
            },
        );
        Ok(match reason {
            Some(reason) => ReserveOutcome::Rejected(reason),
            None => ReserveOutcome::Reserved,
        })
    }

    async fn release(
        &self,
        event: &EffectKey<'_>,
        order_id: &OrderId<'_>,
    ) -> Result<ReleaseOutcome, EffectError> {
        self.failures.take(order_id.as_str())?;
        let mut s = lock(&self.state);
        if applied_before(&s.markers, event)? {
            return Ok(ReleaseOutcome::AlreadyReleased);
        }
        let InventoryState {
            stock,
            reservations,
            markers,
        } = &mut *s;
        let Some(reservation) = reservations.get_mut(order_id.as_str()) else {
            reservations.insert(
                order_id.as_str().to_owned(),
                Reservation {
                    status: ReservationStatus::Cancelled,
                    lines: BTreeMap::new(),
                    reason: None,
                    cancelled_by: Some(event.key.clone().into_owned()),
                },
            );
            mark(markers, event);
            return Ok(ReleaseOutcome::CancelledFirst);
        };
        match reservation.status {
            ReservationStatus::Rejected => Ok(ReleaseOutcome::NothingReserved),
            ReservationStatus::Released | ReservationStatus::Cancelled => {
                Ok(ReleaseOutcome::AlreadyReleased)
            }
            ReservationStatus::Reserved => {
                for (sku, q) in &reservation.lines {
                    *stock.entry(sku.clone()).or_default() += q;
                }
                reservation.status = ReservationStatus::Released;
                mark(markers, event);
                Ok(ReleaseOutcome::Released)
            }
        }
    }
}

/// Whether `event` was applied before, as its marker says; an error if with another payload.
fn applied_before(
    markers: &HashMap<String, Option<String>>,
    event: &EffectKey<'_>,
) -> Result<bool, EffectError> {
    match markers.get(&*event.key) {
        None => Ok(false),
        Some(stored) if event.reused(stored.as_deref()) => {
            Err(EffectError::bad_data(PAYLOAD_REUSED))
        }
        Some(_) => Ok(true),
    }
}

/// The hash an entry for `event` keeps, as the table keeps it (hex text).
fn stored_hash(event: &EffectKey<'_>) -> Option<String> {
    event.payload_hash.map(|h| h.to_string())
}

/// Writes `event`'s marker.
fn mark(markers: &mut HashMap<String, Option<String>>, event: &EffectKey<'_>) {
    markers.insert(event.key.clone().into_owned(), stored_hash(event));
}

/// A [`PoisonSink`] that keeps what it captures, and can be told to refuse.
#[derive(Debug, Default)]
pub struct FakePoisonSink {
    captured: Mutex<Vec<PoisonRecord>>,
    refuse: Mutex<bool>,
}

impl FakePoisonSink {
    /// From now on, every capture fails retryably (or succeeds again).
    pub fn refuse(&self, refuse: bool) {
        *lock(&self.refuse) = refuse;
    }

    /// What was captured, in order.
    pub fn captured(&self) -> Vec<PoisonRecord> {
        lock(&self.captured).clone()
    }
}

impl PoisonSink for FakePoisonSink {
    async fn capture(&self, record: &PoisonRecord) -> Result<(), EffectError> {
        if *lock(&self.refuse) {
            return Err(EffectError::retryable("the poison sink refused the record"));
        }
        lock(&self.captured).push(record.clone());
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LedgerEntry {
    InProgress { token: String, expired: bool },
    Done { mark: Mark, note: String },
}

/// An [`IdempotencyStore`] in memory, whose leases expire when a test says so.
#[derive(Debug, Default)]
pub struct FakeLedger {
    entries: Mutex<HashMap<String, LedgerEntry>>,
    /// The payload hash each key was claimed with.
    hashes: Mutex<HashMap<String, Option<String>>>,
}

impl FakeLedger {
    /// Every claim now held has outlived its lease (as if its holder crashed long ago).
    pub fn expire_leases(&self) {
        for entry in lock(&self.entries).values_mut() {
            if let LedgerEntry::InProgress { expired, .. } = entry {
                *expired = true;
            }
        }
    }

    /// The mark of a settled key.
    pub fn mark(&self, key: &str) -> Option<Mark> {
        match lock(&self.entries).get(key) {
            Some(LedgerEntry::Done { mark, .. }) => Some(*mark),
            _ => None,
        }
    }

    /// The note of a done key.
    pub fn done_note(&self, key: &str) -> Option<String> {
        match lock(&self.entries).get(key) {
            Some(LedgerEntry::Done { note, .. }) => Some(note.clone()),
            _ => None,
        }
    }

    /// Whether a key is claimed and not done.
    pub fn is_in_progress(&self, key: &str) -> bool {
        matches!(
            lock(&self.entries).get(key),
            Some(LedgerEntry::InProgress { .. })
        )
    }
}

impl IdempotencyStore for FakeLedger {
    async fn claim(&self, event: &EffectKey<'_>) -> Result<Claim, EffectError> {
        let key = &*event.key;
        let mut entries = lock(&self.entries);
        let mut hashes = lock(&self.hashes);
        if entries.contains_key(key) && event.reused(hashes.get(key).and_then(Option::as_deref)) {
            return Ok(Claim::Reused);
        }
        match entries.get(key) {
            Some(LedgerEntry::Done { .. }) => return Ok(Claim::AlreadyDone),
            Some(LedgerEntry::InProgress { expired: false, .. }) => return Ok(Claim::InProgress),
            _ => {}
        }
        let lease = Lease::new();
        hashes.insert(key.to_owned(), stored_hash(event));
        entries.insert(
            key.to_owned(),
            LedgerEntry::InProgress {
                token: lease.token.clone(),
                expired: false,
            },
        );
        Ok(Claim::Claimed(lease))
    }

    async fn complete(
        &self,
        key: &str,
        lease: &Lease,
        mark: Mark,
        note: &str,
    ) -> Result<(), EffectError> {
        let mut entries = lock(&self.entries);
        match entries.get(key) {
            Some(LedgerEntry::InProgress { token, .. }) if *token == lease.token => {
                entries.insert(
                    key.to_owned(),
                    LedgerEntry::Done {
                        mark,
                        note: note.to_owned(),
                    },
                );
                Ok(())
            }
            _ => Err(EffectError::retryable("the claim is no longer ours")),
        }
    }

    async fn release(&self, key: &str, lease: &Lease) -> Result<(), EffectError> {
        let mut entries = lock(&self.entries);
        if matches!(entries.get(key), Some(LedgerEntry::InProgress { token, .. }) if *token == lease.token)
        {
            entries.remove(key);
        }
        Ok(())
    }
}

/// A Lambda Kinesis event of one shard, as the event source mapping writes it: one record per
/// item of `data`, in order, each under its own partition key (`k0`, `k1`, …), for tests.
pub fn kinesis_event<'a>(data: impl IntoIterator<Item = &'a str>) -> crate::KinesisBatch {
    let records: Vec<serde_json::Value> = data
        .into_iter()
        .enumerate()
        .map(|(i, data)| {
            let sequence_number = format!("{i:056}");
            serde_json::json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": format!("k{i}"),
                    "sequenceNumber": sequence_number,
                    "data": base64_simd::STANDARD.encode_to_string(data),
                },
                "eventSource": "aws:kinesis",
                "eventID": format!("shardId-000000000000:{sequence_number}"),
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/test",
            })
        })
        .collect();
    let body = serde_json::json!({ "Records": records }).to_string();
    crate::KinesisBatch::from_slice(body.as_bytes()).unwrap_or_default()
}

/// The payload the tests' consumers read, of every type: the whole order.
pub type Order<'a> = PlacedOrder<'a>;

/// What a test does with each order event: the rule of an [`Orders`] consumer.
pub trait OrderRule: Sync {
    /// The effect of one event.
    fn apply(
        &self,
        event: &Event<'_, Order<'_>>,
    ) -> impl Future<Output = Result<Outcome, EffectError>> + Send;
}

/// Every event applied, with no effect.
impl OrderRule for () {
    async fn apply(&self, _: &Event<'_, Order<'_>>) -> Result<Outcome, EffectError> {
        Ok(Outcome::Applied)
    }
}

/// A consumer that reads every wanted type as an [`Order`] and hands it to its rule (which it
/// derefs to, for the tests to look at).
#[derive(Debug, Default)]
pub struct Orders<R>(pub R);

impl<R> std::ops::Deref for Orders<R> {
    type Target = R;
    fn deref(&self) -> &R {
        &self.0
    }
}

impl<R: OrderRule> Consumer for Orders<R> {
    type Payload<'a> = Order<'a>;

    fn read<'a, D: Deserializer<'a>>(&self, _: &str, payload: D) -> Result<Order<'a>, D::Error> {
        Order::deserialize(payload)
    }

    async fn handle(&self, event: &Event<'_, Self::Payload<'_>>) -> Result<Outcome, EffectError> {
        self.0.apply(event).await
    }
}

/// A log writer that keeps what is written, for tests of the logs: clones share one buffer.
#[derive(Debug, Clone, Default)]
pub struct CapturedLog(std::sync::Arc<Mutex<Vec<u8>>>);

impl CapturedLog {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&lock(&self.0)).into_owned()
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        lock(&self.0).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
