//! The batch engine: Lambda's Kinesis delivery rules, applied to one invocation.
//!
//! The rules (from `esm-semantics.md`):
//! - records of one partition key run one after another, in sequence order; different keys run
//!   concurrently, at most `max_concurrency` at a time;
//! - a retryable failure is reported under the record's sequence number and stops its key, so no
//!   later record of that key takes effect before it; Lambda checkpoints at the lowest reported
//!   sequence number and redelivers everything after it;
//! - a record that can never succeed is handed to the [`PoisonSink`] with its payload and is not
//!   reported, so it never blocks the shard; if the sink fails, the record is reported instead;
//! - unwanted event types are skipped as success and counted;
//! - near the deadline no record is started, records still running are abandoned, and all of them
//!   are reported, so the invocation returns in time instead of timing out.
//!
//! When every record fails, the response lists them all, and the invocation succeeds: Lambda
//! retries from the first. We do not return a function error as Powertools does, because bisecting
//! only helps find a poison record, and poison never reaches the retry path here: a batch where
//! everything fails is an outage downstream, and bisecting it only multiplies the invocations.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_lambda_events::event::streams::KinesisEventResponse;
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use tokio::time::Instant;

use crate::telemetry::{in_record, logging, RecordIdentity};

use crate::batch::{compare_sequence_numbers, DataFault, KinesisBatch, RecordView};
use crate::error::{EffectError, ErrorClass};
use crate::event::{Envelope, Malformed, Read, RecordData};
use crate::idempotency::{EffectKey, PayloadHash};
use crate::kpl::{self, UserRecord};
use crate::ports::{Consumer, PoisonCause, PoisonRecord, PoisonSink};

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

/// One wanted event, its payload read by its type's schema, ready for a rule.
#[derive(Debug)]
pub struct Event<'a, P> {
    /// The event type's wire name.
    pub event_type: &'a str,
    /// The producer's id of the event, when it sent one.
    pub event_id: Option<&'a str>,
    /// The payload, as the consumer's schema for this type read it.
    pub payload: P,
    /// Where the record sits in the stream.
    pub record: RecordContext<'a>,
}

impl<P> Event<'_, P> {
    /// The key that identifies this event for idempotency: its `eventId`, or, when the producer
    /// sent none, the record's identity in the stream (shard, sequence number and, for a KPL user
    /// record, sub-sequence number).
    pub fn idempotency_key(&self) -> Cow<'_, str> {
        let shard = self.record.shard_id.unwrap_or("shard");
        match (self.event_id, self.record.sub_sequence_number) {
            (Some(id), _) if !id.is_empty() => Cow::Borrowed(id),
            (_, None) => Cow::Owned(format!("{shard}:{}", self.record.sequence_number)),
            (_, Some(sub)) => Cow::Owned(format!("{shard}:{}:{sub}", self.record.sequence_number)),
        }
    }
}

impl<P: Serialize> Event<'_, P> {
    /// The event as its effect is keyed: [`Self::idempotency_key`], and the hash of the payload as
    /// the rule read it, which a later delivery of the same key must match
    /// ([`crate::idempotency`]).
    pub fn effect_key(&self) -> Result<EffectKey<'_>, EffectError> {
        Ok(EffectKey {
            key: self.idempotency_key(),
            payload_hash: Some(PayloadHash::of(&self.payload)?),
        })
    }
}

/// The set of event types a function handles, by wire name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTypeSet(Vec<Box<str>>);

impl EventTypeSet {
    /// A set of the given names.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut v: Vec<Box<str>> = names.into_iter().map(Box::from).collect();
        v.sort();
        v.dedup();
        Self(v)
    }

    /// Whether the set holds this name.
    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|t| **t == *name)
    }

    /// The names, in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|t| &**t)
    }
}

/// How the engine runs a batch.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The function's name, recorded with each poison record.
    pub function: String,
    /// The event types the function handles; others are skipped.
    pub event_types: EventTypeSet,
    /// At most this many partition keys are in progress at once (at least 1).
    pub max_concurrency: usize,
    /// No record starts, and running ones are abandoned, this long before the deadline.
    pub deadline_margin: Duration,
    /// The CloudWatch namespace of the per-invocation EMF metrics (`METRICS_NAMESPACE`).
    pub metrics_namespace: String,
    /// How many finished records a warm container remembers, so that their redelivery costs no
    /// call (`IDEMPOTENCY_CACHE_SIZE`; 0: none).
    pub completed_cache: usize,
}

/// The counts of one invocation.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchStats {
    /// Records in the batch.
    pub received: u64,
    /// Effects applied.
    pub applied: u64,
    /// Events already applied before (redeliveries).
    pub duplicates: u64,
    /// Of the duplicates, records this warm container had finished itself: known without a call.
    pub remembered: u64,
    /// Business rejections, recorded and not retried.
    pub rejected: u64,
    /// Events that called for no effect.
    pub no_effect: u64,
    /// Unwanted event types, by type.
    pub skipped: BTreeMap<String, u64>,
    /// Records that can never succeed, captured and acknowledged.
    pub poison: u64,
    /// Records that failed retryably (reported).
    pub failed: u64,
    /// Records not run because an earlier record of their key failed (redelivered after it).
    pub blocked: u64,
    /// Records not started, or abandoned, because the deadline drew near (reported).
    pub unstarted: u64,
    /// Log lines the records' buffers dropped (full): see [`crate::telemetry`].
    pub log_lines_dropped: u64,
}

/// The result of one invocation: the response for Lambda, and what happened.
#[derive(Debug, Clone)]
pub struct BatchOutcome {
    /// The `batchItemFailures` response.
    pub response: KinesisEventResponse,
    /// The counts.
    pub stats: BatchStats,
}

impl BatchOutcome {
    /// The reported sequence numbers.
    pub fn failed_sequence_numbers(&self) -> Vec<&str> {
        self.response
            .batch_item_failures
            .iter()
            .filter_map(|f| f.item_identifier.as_deref())
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    InFlight,
    Done,
    Failed,
    Blocked,
}

/// Counts an event of a type the function does not handle.
fn count_skipped(stats: &mut BatchStats, event_type: Cow<'_, str>) {
    match stats.skipped.get_mut(&*event_type) {
        Some(count) => *count += 1,
        None => {
            stats.skipped.insert(event_type.into_owned(), 1);
        }
    }
}

/// What processing one record came to.
enum Step<'a> {
    Done(Outcome),
    /// Of a type the function does not handle.
    Skipped(Cow<'a, str>),
    Poisoned,
    Failed,
}

struct Tally {
    state: Vec<State>,
    stats: BatchStats,
}

/// Runs batches through a consumer, following Lambda's delivery rules. Built once, at init.
pub struct BatchEngine<C, P> {
    consumer: C,
    poison: P,
    config: EngineConfig,
    completed: Completed,
}

/// The records this warm container finished (applied, found duplicate, rejected, with no effect,
/// or captured as poison), by their identity in the stream, the most recent `capacity` of them.
///
/// Lambda redelivers every record after the lowest reported failure, and retries whole batches
/// after an error; most of what comes again was finished by this very container a moment ago.
/// Such a record is a duplicate without asking the ledger: no DynamoDB call. The ledger stays the
/// truth across containers, and for a record seen again after this memory forgot it.
///
/// The identity is the stream's (source ARN, shard, sequence number, sub-sequence number), which
/// only a redelivery repeats: a producer's duplicate is a new record and still goes to the
/// ledger. It is kept as a 128-bit hash (16 bytes a record).
struct Completed {
    capacity: usize,
    seen: Mutex<(HashSet<u128>, VecDeque<u128>)>,
}

impl Completed {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: Mutex::new((
                HashSet::with_capacity(capacity.min(1 << 16)),
                VecDeque::new(),
            )),
        }
    }

    fn contains(&self, id: u128) -> bool {
        self.capacity > 0
            && self
                .seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .0
                .contains(&id)
    }

    fn insert(&self, id: u128) {
        if self.capacity == 0 {
            return;
        }
        let mut guard = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let (set, order) = &mut *guard;
        if set.insert(id) {
            order.push_back(id);
            while order.len() > self.capacity {
                if let Some(old) = order.pop_front() {
                    set.remove(&old);
                }
            }
        }
    }
}

/// A record's identity in the stream, hashed: `None` without a sequence number.
fn identity(batch: &KinesisBatch, unit: &Unit<'_>) -> Option<u128> {
    let seq = unit.sequence_number?;
    let parts = (
        batch.event_source_arn(),
        unit.view.shard_id(),
        seq,
        unit.sub_sequence_number,
    );
    let hash = |seed| foldhash::quality::FixedState::with_seed(seed).hash_one(parts);
    Some(u128::from(hash(0x6b69_6e65_7369_7331)) << 64 | u128::from(hash(0x6661_6e6f_7574_3230)))
}

impl<C: Consumer, P: PoisonSink> BatchEngine<C, P> {
    /// An engine for this consumer and poison sink.
    pub fn new(consumer: C, poison: P, mut config: EngineConfig) -> Self {
        config.max_concurrency = config.max_concurrency.max(1);
        Self {
            consumer,
            poison,
            completed: Completed::new(config.completed_cache),
            config,
        }
    }

    /// The consumer.
    pub fn consumer(&self) -> &C {
        &self.consumer
    }

    /// The poison sink.
    pub fn poison_sink(&self) -> &P {
        &self.poison
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Processes a batch. `deadline` is when Lambda cuts the invocation off (`None`: never).
    pub async fn process(&self, batch: &KinesisBatch, deadline: Option<Instant>) -> BatchOutcome {
        let (mut outcome, dropped) =
            crate::telemetry::in_invocation(self.process_batch(batch, deadline)).await;
        outcome.stats.log_lines_dropped = dropped;
        outcome
    }

    async fn process_batch(&self, batch: &KinesisBatch, deadline: Option<Instant>) -> BatchOutcome {
        // KPL aggregates are opened first; their user records live here while the batch runs.
        let aggregates: Vec<Option<Vec<UserRecord>>> = batch
            .records()
            .map(|r| r.data().ok().and_then(kpl::deaggregate))
            .collect();
        let units = units(batch, &aggregates);
        let state = vec![State::Pending; units.len()];
        let stats = BatchStats {
            received: batch.len() as u64,
            ..BatchStats::default()
        };
        // Longest keys first: with more keys than slots, a long key started last would finish
        // alone after all the others (the makespan of list scheduling).
        let mut groups = group_by_key(&units);
        groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
        let tally = Mutex::new(Tally { state, stats });
        let cutoff = deadline.map(|d| {
            d.checked_sub(self.config.deadline_margin)
                .unwrap_or_else(Instant::now)
        });

        let run_all = stream::iter(groups)
            .map(|group| self.run_key(batch, &units, group, &tally, cutoff))
            .buffer_unordered(self.config.max_concurrency)
            .for_each(|()| async {});
        let cut_short = match cutoff {
            Some(cutoff) => tokio::time::timeout_at(cutoff, run_all).await.is_err(),
            None => {
                run_all.await;
                false
            }
        };
        if cut_short {
            tracing::warn!("deadline near: abandoned the records still running");
        }

        let Tally { state, mut stats } = tally.into_inner().unwrap_or_else(PoisonError::into_inner);
        // A record is reported when any of its units is not done: failed, cut off or never
        // started. Lambda replays from the lowest reported record, so one mention is enough.
        let mut report = vec![false; batch.len()];
        for (unit, state) in units.iter().zip(state) {
            match state {
                State::Done | State::Blocked => {}
                State::Failed => report[unit.record] = true,
                State::Pending | State::InFlight => {
                    stats.unstarted += 1;
                    report[unit.record] = true;
                }
            }
        }
        let mut response = KinesisEventResponse::default();
        for record in batch.records().filter(|r| report[r.index()]) {
            match record.sequence_number() {
                Some(seq) if !seq.is_empty() => response.add_failure(seq),
                // An empty identifier would fail the whole batch; such a record was captured
                // as poison or, if even that failed, logged as lost.
                _ => {}
            }
        }
        BatchOutcome { response, stats }
    }

    /// Runs one key's units in order, stopping at its first failure or at the cutoff.
    async fn run_key(
        &self,
        batch: &KinesisBatch,
        units: &[Unit<'_>],
        group: Vec<usize>,
        tally: &Mutex<Tally>,
        cutoff: Option<Instant>,
    ) {
        let lock = || tally.lock().unwrap_or_else(PoisonError::into_inner);
        let mut group = group.into_iter();
        while let Some(index) = group.next() {
            if cutoff.is_some_and(|c| Instant::now() >= c) {
                return; // the rest stay Pending, and are reported
            }
            let unit = &units[index];
            let id = (self.completed.capacity > 0)
                .then(|| identity(batch, unit))
                .flatten();
            if id.is_some_and(|id| self.completed.contains(id)) {
                let mut t = lock();
                t.stats.duplicates += 1;
                t.stats.remembered += 1;
                t.state[index] = State::Done;
                continue;
            }
            lock().state[index] = State::InFlight;
            let step = self.run_unit(batch, unit).await;
            if let (Some(id), Step::Done(_) | Step::Poisoned) = (id, &step) {
                self.completed.insert(id);
            }
            let mut t = lock();
            match step {
                Step::Done(outcome) => {
                    match outcome {
                        Outcome::Applied => t.stats.applied += 1,
                        Outcome::Duplicate => t.stats.duplicates += 1,
                        Outcome::Rejected(_) => t.stats.rejected += 1,
                        Outcome::NoEffect(_) => t.stats.no_effect += 1,
                    }
                    t.state[index] = State::Done;
                }
                Step::Poisoned => {
                    t.stats.poison += 1;
                    t.state[index] = State::Done;
                }
                Step::Skipped(event_type) => {
                    count_skipped(&mut t.stats, event_type);
                    t.state[index] = State::Done;
                }
                Step::Failed => {
                    t.stats.failed += 1;
                    t.state[index] = State::Failed;
                    for later in group {
                        t.state[later] = State::Blocked;
                        t.stats.blocked += 1;
                    }
                    return;
                }
            }
        }
    }

    /// The record's identity, for its log lines: what it logs is kept and written only if it logs
    /// at WARN or above (see [`crate::telemetry`]). Skipped records log nothing and get none.
    fn identity<T>(unit: &Unit<'_>, envelope: Option<&Envelope<'_, T>>) -> RecordIdentity {
        RecordIdentity {
            sequence_number: unit.sequence_number.map(str::to_owned),
            sub_sequence_number: unit.sub_sequence_number,
            partition_key: unit.partition_key.map(str::to_owned),
            event_id: envelope
                .and_then(|e| e.event_id.as_deref())
                .map(str::to_owned),
            event_type: envelope.map(|e| e.event_type.to_string()),
        }
    }

    /// Whether the function handles the type.
    fn wanted(&self, event_type: &str) -> bool {
        self.config.event_types.contains(event_type)
    }

    /// The unit's envelope and, of a type the function handles, its payload.
    fn read<'u>(&self, unit: &Unit<'u>) -> Result<Read<'u, C::Payload<'u>>, Malformed> {
        let why = match (unit.partition_key, unit.sequence_number) {
            (Some(_), Some(_)) => None,
            _ if !unit.view.is_object() => Some("the record is not an object"),
            (None, _) => Some("kinesis.partitionKey is missing or not a string"),
            (_, None) => Some("kinesis.sequenceNumber is missing or not a string"),
        };
        if let Some(why) = why {
            return Err(Malformed::Record(why.into()));
        }
        Envelope::read(unit.record_data()?, &self.consumer, |t| self.wanted(t))
    }

    async fn run_unit<'u>(&self, batch: &KinesisBatch, unit: &Unit<'u>) -> Step<'u> {
        let envelope = match self.read(unit) {
            Ok(Read::Wanted(envelope)) => envelope,
            Ok(Read::Unwanted(event_type)) => return Step::Skipped(event_type),
            // Until the envelope is read, a bad record is captured under its stream identity.
            Err(why) => {
                return in_record(
                    logging().then(|| Self::identity::<()>(unit, None)),
                    self.capture(batch, unit, &why, PoisonCause::Data),
                )
                .await
            }
        };
        let identity = logging().then(|| Self::identity(unit, Some(&envelope)));
        let event = Event {
            event_type: &envelope.event_type,
            event_id: envelope.event_id.as_deref(),
            payload: envelope.payload,
            record: RecordContext {
                partition_key: unit.partition_key.unwrap_or_default(),
                sequence_number: unit.sequence_number.unwrap_or_default(),
                sub_sequence_number: unit.sub_sequence_number,
                shard_id: unit.view.shard_id(),
            },
        };
        let handled = async {
            match self.consumer.handle(&event).await {
                Ok(outcome) => {
                    if let Outcome::Rejected(reason) = &outcome {
                        tracing::info!(%reason, "event rejected");
                    }
                    Step::Done(outcome)
                }
                Err(err) if err.class() == ErrorClass::Permanent => {
                    let cause = if err.is_bad_data() {
                        PoisonCause::Data
                    } else {
                        PoisonCause::Effect
                    };
                    self.capture(batch, unit, &err, cause).await
                }
                Err(err) => {
                    tracing::warn!(reason = %err, error = ?err, "record failed; stopping its partition key");
                    Step::Failed
                }
            }
        };
        in_record(identity, handled).await
    }

    async fn capture(
        &self,
        batch: &KinesisBatch,
        unit: &Unit<'_>,
        reason: &(dyn std::fmt::Display + Sync),
        cause: PoisonCause,
    ) -> Step<'static> {
        let data = match (unit.sub_sequence_number, unit.data) {
            (Some(_), Ok(user_data)) => base64_simd::STANDARD.encode_to_string(user_data),
            _ => unit.view.data_base64(),
        };
        let poison = PoisonRecord {
            function: self.config.function.clone(),
            event_source_arn: batch.event_source_arn().map(str::to_owned),
            shard_id: unit.view.shard_id().map(str::to_owned),
            partition_key: unit.partition_key.map(str::to_owned),
            sequence_number: unit.sequence_number.map(str::to_owned),
            sub_sequence_number: unit.sub_sequence_number,
            data,
            reason: reason.to_string(),
            cause,
            captured_at_ms: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        match self.poison.capture(&poison).await {
            Ok(()) => Step::Poisoned,
            Err(err) => {
                if unit.sequence_number.is_none_or(str::is_empty) {
                    tracing::error!(error = ?err, reason = %poison.reason,
                        "could not capture a record that has no sequence number: it cannot be retried");
                } else {
                    tracing::warn!(error = ?err, reason = %poison.reason,
                        "could not capture a poison record; stopping its partition key");
                }
                Step::Failed
            }
        }
    }
}

/// The unit of work: a plain record, or one user record of a KPL aggregate. Units of one
/// partition key run in order; failures are reported under the parent record's sequence number.
struct Unit<'a> {
    record: usize,
    view: RecordView<'a>,
    partition_key: Option<&'a str>,
    sequence_number: Option<&'a str>,
    sub_sequence_number: Option<u64>,
    data: Result<&'a [u8], DataFault>,
    /// The data, when the batch already knows it for UTF-8.
    text: Option<&'a str>,
}

impl<'a> Unit<'a> {
    /// The data, as text when the batch knows it for UTF-8 (it is not checked again).
    fn record_data(&self) -> Result<RecordData<'a>, DataFault> {
        match self.text {
            Some(text) => Ok(RecordData::Text(text)),
            None => self.data.map(RecordData::Bytes),
        }
    }
}

/// The batch's units, in delivery order (an aggregate's user records in their own order).
fn units<'a>(batch: &'a KinesisBatch, aggregates: &'a [Option<Vec<UserRecord>>]) -> Vec<Unit<'a>> {
    let mut units = Vec::with_capacity(batch.len());
    for (view, aggregate) in batch.records().zip(aggregates) {
        let plain = Unit {
            record: view.index(),
            view,
            partition_key: view.partition_key(),
            sequence_number: view.sequence_number(),
            sub_sequence_number: None,
            data: view.data(),
            text: view.data_str(),
        };
        match aggregate {
            // Without a sequence number the parent cannot be reported: keep it whole, as poison.
            Some(users) if plain.sequence_number.is_some() => {
                units.extend(users.iter().map(|u| Unit {
                    partition_key: Some(u.partition_key.as_str()),
                    sub_sequence_number: Some(u.sub_sequence_number),
                    data: Ok(u.data.as_slice()),
                    text: None,
                    ..plain
                }))
            }
            _ => units.push(plain),
        }
    }
    units
}

/// Groups the units by partition key, each group in sequence order. A unit with no partition key
/// or sequence number forms a group of its own: it will be captured as poison.
fn group_by_key(units: &[Unit<'_>]) -> Vec<Vec<usize>> {
    // At most one group per unit: sized once, never grown (and copied) while filled.
    let mut groups: Vec<Vec<usize>> = Vec::with_capacity(units.len());
    // foldhash: randomly seeded (a producer cannot pick colliding keys), and far cheaper than
    // SipHash on short keys.
    let mut by_key: HashMap<&str, usize, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(units.len(), Default::default());
    for (index, unit) in units.iter().enumerate() {
        match (unit.partition_key, unit.sequence_number) {
            (Some(key), Some(_)) => {
                let next = groups.len();
                let slot = *by_key.entry(key).or_insert(next);
                if slot == next {
                    groups.push(Vec::new());
                }
                groups[slot].push(index);
            }
            _ => groups.push(vec![index]),
        }
    }
    for group in &mut groups {
        // The event source mapping delivers a shard in order; sorting is a guard, and stable.
        group.sort_by(|&a, &b| {
            let seq = |i: usize| units[i].sequence_number.unwrap_or("");
            compare_sequence_numbers(seq(a), seq(b)).then(
                units[a]
                    .sub_sequence_number
                    .cmp(&units[b].sub_sequence_number),
            )
        });
    }
    groups
}

/// Converts the runtime API's deadline (`Lambda-Runtime-Deadline-Ms`) into a monotonic instant.
///
/// Lambda sends milliseconds since the Unix epoch. Some local emulators (`cargo lambda watch`)
/// send the function's timeout instead, a value far too small to be a date; it is read as a
/// duration from now, so a local run gets the same deadline behaviour as the real service.
pub fn deadline_from_runtime_ms(deadline_ms: u64) -> Instant {
    // 2001-09-09 in epoch milliseconds: no real deadline is earlier.
    const EARLIEST_EPOCH_MS: u64 = 1_000_000_000_000;
    let now = Instant::now();
    if deadline_ms < EARLIEST_EPOCH_MS {
        return now + Duration::from_millis(deadline_ms);
    }
    let deadline = SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_ms);
    match deadline.duration_since(SystemTime::now()) {
        Ok(left) => now + left,
        Err(_) => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An epoch deadline becomes the time left; a small value is read as a timeout from now.
    #[tokio::test(start_paused = true)]
    async fn deadline_conversion() {
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let left = deadline_from_runtime_ms(now_ms + 30_000) - Instant::now();
        assert!(
            left > Duration::from_secs(29) && left <= Duration::from_secs(30),
            "{left:?}"
        );
        assert_eq!(deadline_from_runtime_ms(now_ms - 5_000), Instant::now());
        assert_eq!(
            deadline_from_runtime_ms(600_000) - Instant::now(),
            Duration::from_secs(600)
        );
    }
}
