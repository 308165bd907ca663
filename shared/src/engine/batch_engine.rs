//! The batch engine: Lambda's Kinesis delivery rules, applied to one invocation of any
//! [`Consumer`]. (`docs/esm-semantics.md` states the rules in full.)
//!
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
//! When every record fails, the response reports the first failure of each key, and the
//! invocation succeeds: Lambda retries from the first. We do not return a function error as
//! Powertools does, because bisecting only helps find a poison record, and poison never reaches
//! the retry path here: a batch where everything fails is an outage downstream, and bisecting it
//! only multiplies the invocations.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use aws_lambda_events::event::streams::KinesisEventResponse;
use futures_util::stream::{self, StreamExt};
use tokio::time::Instant;

use super::consumer::{
    stream_identity, Consumer, Event, EventTypes, Outcome, PoisonCause, PoisonRecord, PoisonSink,
    RecordContext,
};
use super::error::ErrorClass;
use super::stats::BatchStats;
use crate::input::batch::{compare_sequence_numbers, DataFault, KinesisBatch, RecordView};
use crate::input::envelope::{Envelope, Malformed, Read, RecordData};
use crate::input::kpl::{self, UserRecord};
use crate::platform::config::{ConfigError, Env, Problems};
use crate::platform::telemetry::{in_record, logging, RecordIdentity};
use crate::platform::time;

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
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `EVENT_TYPES` | the consumer's defaults | comma-separated event types to handle, of those it declares |
/// | `MAX_CONCURRENCY` | 64 | partition keys in progress at once (1 to 1024) |
/// | `DEADLINE_MARGIN_MS` | 1000 | stop starting records this long before the deadline |
/// | `IDEMPOTENCY_CACHE_SIZE` | 10000 | finished records a warm container remembers (0: none) |
/// | `AWS_LAMBDA_FUNCTION_NAME` | the function's name | recorded with poison records (set by Lambda) |
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The function's name, recorded with each poison record.
    pub function: String,
    /// The scope of its idempotency entries (its crate's name), recorded with each poison record.
    pub scope: String,
    /// The event types the function handles; others are skipped.
    pub event_types: EventTypeSet,
    /// At most this many partition keys are in progress at once (at least 1).
    pub max_concurrency: usize,
    /// No record starts, and running ones are abandoned, this long before the deadline.
    pub deadline_margin: Duration,
    /// How many finished records a warm container remembers, so that their redelivery costs no
    /// call (`IDEMPOTENCY_CACHE_SIZE`; 0: none).
    pub completed_cache: usize,
}

impl EngineConfig {
    /// The settings of consumer `C`, named `function` (also the scope of its idempotency
    /// entries), with nothing set: its default types, and every default.
    pub fn defaults<C: Consumer>(function: &str) -> Self {
        let env = Env::from_pairs([]);
        Self::read::<C>(&env, function, &mut Problems::default())
    }

    /// Reads the settings of consumer `C`, keeping each problem in `problems`. Every type
    /// `EVENT_TYPES` names must be one `C` declares ([`EventTypes`]).
    pub fn read<C: Consumer>(env: &Env, function: &str, problems: &mut Problems) -> Self {
        let types = EventTypes::of::<C>();
        if types.declared().is_empty() {
            problems.push(ConfigError::Invalid {
                name: "EVENT_TYPES",
                value: String::new(),
                reason: "the function declares no event type: its Payload must be an enum \
                         with one variant per type, named by the type"
                    .into(),
            });
        }
        let defaults = || EventTypeSet::new(types.defaults().iter().copied());
        let event_types = match env.optional("EVENT_TYPES") {
            None => defaults(),
            Some(list) => {
                let named: Vec<&str> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .collect();
                let expected = format!(
                    "expected a comma-separated list of event types from: {}",
                    types.declared().join(", ")
                );
                let unknown = named.iter().find(|t| !types.declared().contains(t));
                let why = match unknown {
                    _ if named.is_empty() => Some(expected),
                    Some(unknown) => Some(format!(
                        "this function has no rule for {unknown}; {expected}"
                    )),
                    None => None,
                };
                match why {
                    Some(reason) => {
                        problems.push(ConfigError::Invalid {
                            name: "EVENT_TYPES",
                            value: list.clone(),
                            reason,
                        });
                        defaults()
                    }
                    None => EventTypeSet::new(named),
                }
            }
        };
        let max_concurrency = problems.check(env.number("MAX_CONCURRENCY", 64, 1..=1024, ""), 64);
        let margin_ms = problems.check(
            env.number("DEADLINE_MARGIN_MS", 1000, 0..=60_000, " of milliseconds"),
            1000,
        );
        let completed_cache = problems.check(
            env.number("IDEMPOTENCY_CACHE_SIZE", 10_000, 0..=1_000_000, ""),
            0,
        );
        EngineConfig {
            function: env
                .optional("AWS_LAMBDA_FUNCTION_NAME")
                .unwrap_or_else(|| function.to_owned()),
            scope: function.to_owned(),
            event_types,
            max_concurrency,
            deadline_margin: Duration::from_millis(margin_ms),
            completed_cache,
        }
    }
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
/// The identity is the stream's (its ARN, then [`RecordContext::stream_identity`]), which only a
/// redelivery repeats: a producer's duplicate is a new record and still goes to the ledger.
struct Completed {
    capacity: usize,
    seen: Mutex<(HashSet<String>, VecDeque<String>)>,
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

    fn contains(&self, id: &str) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .contains(id)
    }

    fn insert(&self, id: String) {
        let mut guard = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let (set, order) = &mut *guard;
        if set.insert(id.clone()) {
            order.push_back(id);
            while order.len() > self.capacity {
                if let Some(old) = order.pop_front() {
                    set.remove(&old);
                }
            }
        }
    }
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
                .then(|| unit.stream_identity(batch))
                .flatten();
            if id.as_deref().is_some_and(|id| self.completed.contains(id)) {
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
        let data = unit.record_data()?;
        // An aggregate whose digest does not match is read as a plain record, as the KPL's own
        // deaggregator does; its error then says so, not only that it is no JSON.
        let bad_aggregate = unit.sub_sequence_number.is_none()
            && matches!(data, RecordData::Bytes(bytes) if kpl::looks_aggregated(bytes));
        Envelope::read(data, |t| self.wanted(t)).map_err(|e| match e {
            Malformed::Envelope(why) if bad_aggregate => Malformed::Envelope(format!(
                "it carries the KPL aggregate's magic number, but its MD5 digest does not match \
                 its body, so it was read as a plain record: {why}"
            )),
            other => other,
        })
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
        let record = RecordContext {
            partition_key: unit.partition_key.unwrap_or_default(),
            sequence_number: unit.sequence_number.unwrap_or_default(),
            sub_sequence_number: unit.sub_sequence_number,
            shard_id: unit.view.shard_id(),
        };
        let event: Event<'_, C> = Event::new(
            envelope.event_type,
            envelope.event_id,
            envelope.payload,
            record,
        )
        .with_timestamp(envelope.timestamp);
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
            scope: self.config.scope.clone(),
            event_source_arn: batch.event_source_arn().map(str::to_owned),
            shard_id: unit.view.shard_id().map(str::to_owned),
            partition_key: unit.partition_key.map(str::to_owned),
            sequence_number: unit.sequence_number.map(str::to_owned),
            sub_sequence_number: unit.sub_sequence_number,
            data,
            reason: reason.to_string(),
            cause,
            captured_at_ms: u64::try_from(time::now_ms()).unwrap_or(0),
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
    /// The unit's identity in the stream, with the stream's ARN: what the warm memory keeps.
    /// `None` without a sequence number.
    fn stream_identity(&self, batch: &KinesisBatch) -> Option<String> {
        let identity = stream_identity(
            self.view.shard_id(),
            self.sequence_number?,
            self.sub_sequence_number,
        );
        let stream = batch.event_source_arn().unwrap_or("");
        Some(format!("{stream}/{identity}"))
    }

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

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::engine::error::EffectError;

    /// A consumer of three types, one of them off by default.
    struct Three;

    #[derive(Deserialize, Serialize)]
    enum Payload {
        #[serde(rename = "A")]
        A,
        #[serde(rename = "B", alias = "C")]
        B,
    }

    impl Consumer for Three {
        type Payload<'a> = Payload;
        const OFF_BY_DEFAULT: &'static [&'static str] = &["C"];
        async fn handle(&self, _: &Event<'_, Self>) -> Result<Outcome, EffectError> {
            Ok(Outcome::Applied)
        }
    }

    fn read(pairs: &[(&str, &str)]) -> Result<EngineConfig, crate::ConfigErrors> {
        Problems::collect(|p| EngineConfig::read::<Three>(&Env::from_pairs(pairs.to_vec()), "f", p))
    }

    /// Defaults apply when nothing is set: the consumer's declared types, but those it handles
    /// only when named.
    #[test]
    fn defaults() {
        let cfg = read(&[]).unwrap();
        assert_eq!(cfg.max_concurrency, 64);
        assert_eq!(cfg.deadline_margin, Duration::from_millis(1000));
        assert_eq!(cfg.completed_cache, 10_000);
        assert_eq!(cfg.event_types.iter().collect::<Vec<_>>(), ["A", "B"]);
        assert_eq!(cfg.function, "f");
        assert_eq!(
            EngineConfig::defaults::<Three>("f").event_types,
            cfg.event_types
        );
    }

    /// EVENT_TYPES overrides the defaults within what the consumer declares; bad values name the
    /// setting and the types it could have named.
    #[test]
    fn overrides_and_errors() {
        let cfg = read(&[("EVENT_TYPES", "C, A"), ("MAX_CONCURRENCY", "4")]).unwrap();
        assert_eq!(cfg.event_types.iter().collect::<Vec<_>>(), ["A", "C"]);
        assert_eq!(cfg.max_concurrency, 4);

        let err = read(&[("EVENT_TYPES", "ORDER_SHIPPED")]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("EVENT_TYPES=ORDER_SHIPPED is not valid: this function has no rule for ORDER_SHIPPED; expected a comma-separated list of event types from: A, B, C"), "{text}");
        assert!(read(&[("EVENT_TYPES", " , ")]).is_err());
        for bad in ["many", "0", "1025"] {
            let err = read(&[("MAX_CONCURRENCY", bad)]).unwrap_err();
            assert_eq!(err.names(), ["MAX_CONCURRENCY"], "{bad}");
        }
    }

    /// A consumer whose payload declares no type cannot start, and says why.
    #[test]
    fn a_payload_that_declares_nothing() {
        struct Plain;
        impl Consumer for Plain {
            type Payload<'a> = u8;
            async fn handle(&self, _: &Event<'_, Self>) -> Result<Outcome, EffectError> {
                Ok(Outcome::Applied)
            }
        }
        let err = Problems::collect(|p| EngineConfig::read::<Plain>(&Env::from_pairs([]), "f", p))
            .unwrap_err();
        assert!(err.to_string().contains("declares no event type"), "{err}");
    }
}
