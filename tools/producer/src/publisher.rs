//! Writing records with `PutRecords`: requests within Kinesis's limits, retries of the failed
//! entries only, and the per-key order kept while retrying.
//!
//! ## Why order needs care
//! `PutRecords` is not atomic: some entries of a request may fail
//! (`ProvisionedThroughputExceededException`, `InternalFailure`) while the others are written. A
//! producer that retries the failed entries while sending later records meanwhile writes a
//! retried record **after** a later record of its key, and the consumers then see, for example, a
//! cancellation before its order. So this publisher never has two records of one partition key in
//! one request, or in flight at once: a key's next record is sent only once the previous one is
//! written. Different keys fill the requests, so throughput comes from the number of keys.
//! A record that fails for good stops its key: the key's later records are not sent (they would
//! land without it), and each gets an outcome that says so.
//!
//! With aggregation, the unit of order is the shard: one aggregate per shard in flight.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::aggregate::{pack, ShardMap};
use crate::ports::{Entry, EntryResult, RequestError, StreamWriter};

/// The `PutRecords` limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Records per request (Kinesis: 500).
    pub records_per_request: usize,
    /// Bytes per request, data and partition keys (Kinesis: 10 MiB since 2025; moto: 5 MiB).
    pub request_bytes: usize,
    /// Bytes per record, data and partition key (Kinesis: 1 MiB unless the stream was raised).
    pub record_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            records_per_request: 500,
            request_bytes: 5 * MIB,
            record_bytes: MIB,
        }
    }
}

const MIB: usize = 1024 * 1024;

/// Retries of failed entries: exponential backoff with full jitter, a bounded number of attempts.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts per record, the first one included.
    pub max_attempts: u32,
    /// The first backoff's ceiling.
    pub base: Duration,
    /// The ceiling no backoff passes.
    pub cap: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            base: Duration::from_millis(50),
            cap: Duration::from_secs(5),
        }
    }
}

impl Retry {
    /// The pause before attempt `attempt + 1`: a random time up to `min(cap, base * 2^attempt)`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.cap);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// How the publisher sends.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The request and record limits.
    pub limits: Limits,
    /// Retries.
    pub retry: Retry,
    /// Requests in flight at once (0 is taken as 1).
    pub in_flight: usize,
    /// Pack records into KPL aggregates of at most this many bytes (`None`: no aggregation).
    pub aggregate: Option<usize>,
}

/// One record to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its partition key.
    pub partition_key: String,
    /// Its data.
    pub data: Vec<u8>,
}

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The shard.
    pub shard_id: String,
    /// The Kinesis record's sequence number.
    pub sequence_number: String,
    /// Its position in the aggregate that carried it (`None`: sent on its own).
    pub sub_sequence_number: Option<u64>,
}

/// Why a record was not written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// Over the record-size limit: refused before sending.
    #[error("record {index} (partition key {key:?}) is {size} bytes with its key, over the {limit}-byte record limit: not sent")]
    TooLarge {
        /// Its index in the input.
        index: usize,
        /// Its partition key.
        key: String,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Every attempt failed.
    #[error("record {index} (partition key {key:?}) was not written after {attempts} attempts: {code}: {message}")]
    GaveUp {
        /// Its index in the input.
        index: usize,
        /// Its partition key.
        key: String,
        /// The attempts made.
        attempts: u32,
        /// The last error code.
        code: String,
        /// The last error message.
        message: String,
    },
    /// An earlier record of its key failed, so it was not sent (it would land out of order).
    #[error("record {index} (partition key {key:?}) was not sent: record {blocked_by} of its key failed first, and sending it would break the key's order")]
    KeyStopped {
        /// Its index in the input.
        index: usize,
        /// Its partition key.
        key: String,
        /// The index of the record that failed.
        blocked_by: usize,
    },
    /// The stream's shards could not be listed (aggregation needs them).
    #[error("could not list the stream's shards: {0}")]
    Shards(String),
}

/// What a publish did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// User records given.
    pub records: u64,
    /// User records written.
    pub written: u64,
    /// User records not written.
    pub failed: u64,
    /// Kinesis records sent (aggregates count once).
    pub kinesis_records: u64,
    /// Aggregates among them.
    pub aggregates: u64,
    /// Bytes written (data and partition keys of the Kinesis records).
    pub bytes: u64,
    /// `PutRecords` requests.
    pub requests: u64,
    /// Entries sent again after a failure.
    pub retried: u64,
    /// Entries refused with `ProvisionedThroughputExceededException` (or a throttled request).
    pub throttles: u64,
    /// Time taken.
    pub elapsed: Duration,
}

impl Summary {
    /// User records written per second.
    pub fn records_per_second(&self) -> f64 {
        self.written as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} records ({} written, {} failed) in {} Kinesis records ({} KPL aggregates), {} bytes, {} PutRecords requests, {} entries retried, {} throttled; {:.1} s, {:.0} records/s",
            self.records,
            self.written,
            self.failed,
            self.kinesis_records,
            self.aggregates,
            self.bytes,
            self.requests,
            self.retried,
            self.throttles,
            self.elapsed.as_secs_f64(),
            self.records_per_second()
        )
    }
}

/// The outcome of each record (in input order) and the summary.
#[derive(Debug, Clone)]
pub struct Report {
    /// One per input record.
    pub outcomes: Vec<Result<Placed, PublishError>>,
    /// The figures.
    pub summary: Summary,
}

/// Writes records to a stream.
#[derive(Debug)]
pub struct Publisher<W> {
    writer: W,
    config: Config,
}

/// A Kinesis record to send and the user records it carries.
struct Unit {
    entry: Entry,
    /// The unit of order: the partition key, or the shard of an aggregate.
    order: usize,
    members: Vec<usize>,
    aggregated: bool,
    attempts: u32,
}

impl<W: StreamWriter> Publisher<W> {
    /// A publisher writing with `writer`.
    pub fn new(writer: W, config: Config) -> Self {
        Self { writer, config }
    }

    /// The writer.
    pub fn writer(&self) -> &W {
        &self.writer
    }

    /// Writes `records`, keeping each partition key's order; see [`Self::publish_with`].
    pub async fn publish(&self, records: &[Record]) -> Report {
        self.publish_with(records, |_| {}).await
    }

    /// Writes `records`, keeping each partition key's order, and calls `progress` with the
    /// number of user records settled (written or failed) so far.
    pub async fn publish_with(&self, records: &[Record], mut progress: impl FnMut(u64)) -> Report {
        let started = Instant::now();
        let limits = self.config.limits;
        let mut outcomes: Vec<Option<Result<Placed, PublishError>>> = vec![None; records.len()];
        let mut summary = Summary {
            records: records.len() as u64,
            ..Summary::default()
        };

        // Refuse what can never be written; the rest become entries.
        let entries: Vec<(usize, Entry)> = records
            .iter()
            .enumerate()
            .filter_map(|(index, r)| {
                let entry = Entry {
                    partition_key: r.partition_key.clone(),
                    explicit_hash_key: None,
                    data: r.data.clone(),
                };
                let limit = limits.record_bytes.min(limits.request_bytes);
                if entry.size() > limit {
                    outcomes[index] = Some(Err(PublishError::TooLarge {
                        index,
                        key: r.partition_key.clone(),
                        size: entry.size(),
                        limit,
                    }));
                    None
                } else {
                    Some((index, entry))
                }
            })
            .collect();

        let units = match self.units(entries).await {
            Ok(units) => units,
            Err(e) => {
                let outcomes = outcomes
                    .into_iter()
                    .map(|o| o.unwrap_or_else(|| Err(e.clone())))
                    .collect();
                summary.failed = summary.records;
                summary.elapsed = started.elapsed();
                return Report { outcomes, summary };
            }
        };
        let orders = units.iter().map(|u| u.order + 1).max().unwrap_or(0);
        let mut queues: Vec<VecDeque<Unit>> = (0..orders).map(|_| VecDeque::new()).collect();
        for u in units {
            queues[u.order].push_back(u);
        }
        let mut ready: VecDeque<usize> = (0..orders).filter(|&o| !queues[o].is_empty()).collect();
        let mut backoff: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
        let mut in_flight = FuturesUnordered::new();
        let mut settled = outcomes.iter().filter(|o| o.is_some()).count() as u64;
        progress(settled);

        loop {
            // Keys whose backoff has passed are ready again.
            let now = Instant::now();
            while let Some(Reverse((at, order))) = backoff.peek().copied() {
                if at > now {
                    break;
                }
                backoff.pop();
                ready.push_back(order);
            }
            // Fill requests from the ready keys: one unit per key, within the limits.
            while in_flight.len() < self.config.in_flight.max(1) && !ready.is_empty() {
                let mut batch: Vec<(usize, Entry)> = Vec::new();
                let mut bytes = 0;
                while batch.len() < limits.records_per_request {
                    let Some(&order) = ready.front() else { break };
                    let Some(unit) = queues[order].front() else {
                        ready.pop_front();
                        continue;
                    };
                    if bytes + unit.entry.size() > limits.request_bytes {
                        break;
                    }
                    bytes += unit.entry.size();
                    batch.push((order, unit.entry.clone()));
                    ready.pop_front();
                }
                if batch.is_empty() {
                    break;
                }
                summary.requests += 1;
                let writer = &self.writer;
                in_flight.push(async move {
                    let entries: Vec<Entry> = batch.iter().map(|(_, e)| e.clone()).collect();
                    let result = writer.put_records(&entries).await;
                    (batch, result)
                });
            }
            if in_flight.is_empty() {
                match backoff.peek() {
                    Some(Reverse((at, _))) => {
                        tokio::time::sleep_until((*at).into()).await;
                        continue;
                    }
                    None => break,
                }
            }
            // Wait for a request to finish, or for a key's backoff to pass (it can then go in a
            // new request while the others are in flight).
            let next_ready = backoff.peek().map(|Reverse((at, _))| *at);
            let done = tokio::select! {
                done = in_flight.next() => done,
                () = sleep_until(next_ready) => None,
            };
            let Some((batch, result)) = done else {
                continue;
            };
            let results: Vec<EntryResult> = match result {
                Ok(results) => results,
                Err(RequestError(message)) => batch
                    .iter()
                    .map(|_| EntryResult::Failed {
                        code: if message.contains("Throughput") || message.contains("Throttl") {
                            "ProvisionedThroughputExceededException".to_owned()
                        } else {
                            "RequestFailed".to_owned()
                        },
                        message: message.clone(),
                    })
                    .collect(),
            };
            for ((order, _), result) in batch.into_iter().zip(results) {
                let Some(mut unit) = queues[order].pop_front() else {
                    continue;
                };
                unit.attempts += 1;
                match result {
                    EntryResult::Written {
                        shard_id,
                        sequence_number,
                    } => {
                        summary.kinesis_records += 1;
                        summary.aggregates += u64::from(unit.aggregated);
                        summary.bytes += unit.entry.size() as u64;
                        for (sub, &m) in unit.members.iter().enumerate() {
                            outcomes[m] = Some(Ok(Placed {
                                shard_id: shard_id.clone(),
                                sequence_number: sequence_number.clone(),
                                sub_sequence_number: unit.aggregated.then_some(sub as u64),
                            }));
                        }
                        summary.written += unit.members.len() as u64;
                        settled += unit.members.len() as u64;
                        if !queues[order].is_empty() {
                            ready.push_back(order);
                        }
                    }
                    EntryResult::Failed { code, message } => {
                        if code == "ProvisionedThroughputExceededException" {
                            summary.throttles += 1;
                        }
                        if unit.attempts < self.config.retry.max_attempts {
                            summary.retried += 1;
                            let pause = self.config.retry.backoff(unit.attempts);
                            queues[order].push_front(unit);
                            backoff.push(Reverse((Instant::now() + pause, order)));
                            continue;
                        }
                        // Given up: this unit fails, and its key stops here.
                        let first = unit.members.first().copied().unwrap_or_default();
                        for &m in &unit.members {
                            outcomes[m] = Some(Err(PublishError::GaveUp {
                                index: m,
                                key: records[m].partition_key.clone(),
                                attempts: unit.attempts,
                                code: code.clone(),
                                message: message.clone(),
                            }));
                        }
                        settled += unit.members.len() as u64;
                        for later in queues[order].drain(..) {
                            for &m in &later.members {
                                outcomes[m] = Some(Err(PublishError::KeyStopped {
                                    index: m,
                                    key: records[m].partition_key.clone(),
                                    blocked_by: first,
                                }));
                                settled += 1;
                            }
                        }
                    }
                }
            }
            progress(settled);
        }

        let outcomes: Vec<_> = outcomes
            .into_iter()
            .enumerate()
            .map(|(index, o)| {
                o.unwrap_or_else(|| {
                    Err(PublishError::GaveUp {
                        index,
                        key: records[index].partition_key.clone(),
                        attempts: 0,
                        code: "NotSent".to_owned(),
                        message: "never sent".to_owned(),
                    })
                })
            })
            .collect();
        summary.failed = outcomes.iter().filter(|o| o.is_err()).count() as u64;
        summary.elapsed = started.elapsed();
        Report { outcomes, summary }
    }

    /// The Kinesis records to send, each with its unit of order.
    async fn units(&self, entries: Vec<(usize, Entry)>) -> Result<Vec<Unit>, PublishError> {
        let Some(max_bytes) = self.config.aggregate else {
            let mut keys = std::collections::HashMap::new();
            return Ok(entries
                .into_iter()
                .map(|(index, entry)| {
                    let next = keys.len();
                    let order = *keys.entry(entry.partition_key.clone()).or_insert(next);
                    Unit {
                        entry,
                        order,
                        members: vec![index],
                        aggregated: false,
                        attempts: 0,
                    }
                })
                .collect());
        };
        let shards = self
            .writer
            .open_shards()
            .await
            .map_err(|e| PublishError::Shards(e.0))?;
        let map = ShardMap::new(shards);
        let max_bytes = max_bytes.min(self.config.limits.record_bytes);
        let indexed: Vec<(usize, &Entry)> = entries.iter().map(|(i, e)| (*i, e)).collect();
        Ok(pack(&indexed, &map, max_bytes)
            .into_iter()
            .map(|p| Unit {
                aggregated: p.entry.explicit_hash_key.is_some(),
                entry: p.entry,
                order: p.shard,
                members: p.members,
                attempts: 0,
            })
            .collect())
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::ports::fakes::FakeStream;

    fn records(n: usize, keys: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                partition_key: format!("key-{}", i % keys),
                data: format!("{}:{}", i % keys, i).into_bytes(),
            })
            .collect()
    }

    fn fast() -> Config {
        Config {
            retry: Retry {
                max_attempts: 50,
                base: Duration::from_millis(1),
                cap: Duration::from_millis(5),
            },
            in_flight: 4,
            ..Config::default()
        }
    }

    /// The data written for each key, in the order it landed in its shard.
    fn landed(stream: &FakeStream) -> HashMap<String, Vec<Vec<u8>>> {
        let mut per_key: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
        for shard in stream.written.lock().unwrap().iter() {
            for e in shard {
                match shared::kpl::deaggregate(&e.data) {
                    Some(users) => {
                        for u in users {
                            per_key.entry(u.partition_key).or_default().push(u.data);
                        }
                    }
                    None => per_key
                        .entry(e.partition_key.clone())
                        .or_default()
                        .push(e.data.clone()),
                }
            }
        }
        per_key
    }

    /// A third of all entries fail; every record still lands once, each key's records in input
    /// order, and no request ever held two records of one key, nor two requests one key at once.
    #[tokio::test]
    async fn partial_failures_keep_per_key_order() {
        let input = records(3000, 40);
        let mut stream = FakeStream::new(4);
        let counter = std::sync::atomic::AtomicU64::new(7);
        stream.fail = Some(Box::new(move |_, _| {
            let x = counter.fetch_add(0x9E37_79B9, std::sync::atomic::Ordering::Relaxed);
            match (x >> 3) % 3 {
                0 => Some("ProvisionedThroughputExceededException"),
                _ => None,
            }
        }));
        let publisher = Publisher::new(stream, fast());
        let report = publisher.publish(&input).await;
        assert!(
            report.outcomes.iter().all(Result::is_ok),
            "{:?}",
            report.summary
        );
        assert!(report.summary.retried > 500, "{:?}", report.summary);
        assert_eq!(report.summary.throttles, report.summary.retried);
        let stream = publisher.writer();
        assert!(stream.overlapped.lock().unwrap().is_empty());
        for request in stream.requests.lock().unwrap().iter() {
            let mut keys: Vec<_> = request.iter().map(|e| &e.partition_key).collect();
            let n = keys.len();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), n, "two records of one key in one request");
        }
        let landed = landed(stream);
        for k in 0..40 {
            let want: Vec<Vec<u8>> = input
                .iter()
                .filter(|r| r.partition_key == format!("key-{k}"))
                .map(|r| r.data.clone())
                .collect();
            assert_eq!(landed[&format!("key-{k}")], want, "key-{k} out of order");
        }
        // Per key, the sequence numbers the outcomes report increase in input order.
        let mut last: HashMap<&str, u64> = HashMap::new();
        for (r, o) in input.iter().zip(&report.outcomes) {
            let seq: u64 = o.as_ref().unwrap().sequence_number.parse().unwrap();
            if let Some(prev) = last.insert(&r.partition_key, seq) {
                assert!(prev < seq);
            }
        }
    }

    /// A record that keeps failing gives up after the bounded attempts; its key's later records
    /// are not sent; other keys are unaffected.
    #[tokio::test]
    async fn a_key_stops_at_its_first_final_failure() {
        let input = records(30, 3);
        let mut stream = FakeStream::new(2);
        stream.fail = Some(Box::new(|_, e| {
            (e.data == b"1:4").then_some("InternalFailure")
        }));
        let mut config = fast();
        config.retry.max_attempts = 3;
        let report = Publisher::new(stream, config).publish(&input).await;
        for (i, o) in report.outcomes.iter().enumerate() {
            match (i % 3, i) {
                (1, 4) => assert!(
                    matches!(o, Err(PublishError::GaveUp { attempts: 3, .. })),
                    "{o:?}"
                ),
                (1, i) if i > 4 => assert!(
                    matches!(o, Err(PublishError::KeyStopped { blocked_by: 4, .. })),
                    "{o:?}"
                ),
                _ => assert!(o.is_ok(), "{i}: {o:?}"),
            }
        }
        assert_eq!(report.summary.failed, 9);
        assert!(report.outcomes[4]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("InternalFailure"));
    }

    /// Requests stay within 500 records and the byte limit; a record over the record limit is
    /// refused before sending, by name.
    #[tokio::test]
    async fn limits() {
        let mut input = records(1200, 1200);
        input[7].data = vec![b'x'; 2000];
        let config = Config {
            limits: Limits {
                records_per_request: 500,
                request_bytes: 20_000,
                record_bytes: 1000,
            },
            ..fast()
        };
        let report = Publisher::new(FakeStream::new(1), config.clone())
            .publish(&input)
            .await;
        let err = report.outcomes[7].as_ref().unwrap_err();
        assert!(matches!(err, PublishError::TooLarge { index: 7, .. }));
        assert!(err.to_string().contains("\"key-7\""), "{err}");
        assert_eq!(report.summary.written, 1199);
        let publisher = Publisher::new(
            FakeStream::new(1),
            Config {
                limits: Limits {
                    request_bytes: 5 * MIB,
                    ..config.limits
                },
                ..config
            },
        );
        publisher.publish(&records(1200, 1200)).await;
        let sizes: Vec<usize> = publisher
            .writer()
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [500, 500, 200]);
    }

    /// With aggregation, records are packed by shard; each key's records land in its own shard,
    /// in order, even when aggregates fail and are retried.
    #[tokio::test]
    async fn aggregation_keeps_shard_and_order() {
        let input = records(2000, 50);
        let mut stream = FakeStream::new(3);
        stream.fail = Some(Box::new(|n, _| (n % 3 == 1).then_some("InternalFailure")));
        let publisher = Publisher::new(
            stream,
            Config {
                aggregate: Some(4096),
                ..fast()
            },
        );
        let report = publisher.publish(&input).await;
        assert!(report.outcomes.iter().all(Result::is_ok));
        assert!(report.summary.aggregates > 0 && report.summary.kinesis_records < 2000);
        let stream = publisher.writer();
        let map = ShardMap::new(stream.shards.clone());
        for (s, shard) in stream.written.lock().unwrap().iter().enumerate() {
            for e in shard {
                for u in shared::kpl::deaggregate(&e.data).unwrap_or_default() {
                    assert_eq!(
                        map.shard_for(&u.partition_key),
                        s,
                        "a record in the wrong shard"
                    );
                }
            }
        }
        let landed = landed(stream);
        for k in 0..50 {
            let want: Vec<Vec<u8>> = input
                .iter()
                .filter(|r| r.partition_key == format!("key-{k}"))
                .map(|r| r.data.clone())
                .collect();
            assert_eq!(landed[&format!("key-{k}")], want);
        }
    }
}
