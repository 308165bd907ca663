//! Lambda's rules for one shard and one function: batching, invoking, checkpointing, retries,
//! bisection, discarding, and the `OnFailure` record. The rules of `esm-semantics.md`, in one
//! place, whatever the records come from: the Kinesis API (the `local-esm` binary) or memory (the
//! chaos replay).
//!
//! - **Batches** hold up to `BatchSize` records and at most 6 MB of event JSON. A batch is
//!   invoked when it is full, or when `MaximumBatchingWindowInSeconds` has passed since its first
//!   record arrived, or at once when the window is 0 and no more records are waiting.
//! - **`ParallelizationFactor`**: the shard's records are split into that many lanes by partition
//!   key (each key always in the same lane), and the lanes run at once, each one batch at a time.
//!   So per-key order holds, as Lambda promises.
//! - **A partial response** (`ReportBatchItemFailures`) checkpoints at the lowest reported
//!   sequence number: that record and every later one of the batch are delivered again. An empty
//!   or null `itemIdentifier`, one under another key, or one not in the batch fails the whole
//!   batch. Without `ReportBatchItemFailures` the response is ignored.
//! - **A function error or timeout** fails the whole batch. With `BisectBatchOnFunctionError`
//!   the batch is split in two and each half retried in order; splitting does not use retries.
//! - **`MaximumRetryAttempts`** (-1: no limit) and **`MaximumRecordAgeInSeconds`** (-1: none):
//!   when one runs out the records are discarded, the shard moves on, and the `OnFailure`
//!   destination gets an invocation record (see [`crate::failure`]).
//! - **`FilterCriteria`** is applied before batching; filtered-out records count as processed.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use md5::{Digest, Md5};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::failure::{
    BatchInfo, Condition, FailureRecord, OnFailure, RequestContext, ResponseContext,
};
use crate::filter::{passes, Candidate};
use crate::template::Mapping;

/// Lambda's cap on an invocation's payload.
pub const MAX_PAYLOAD: usize = 6 * 1024 * 1024;

/// One record of a shard.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRecord {
    /// The partition key.
    pub partition_key: String,
    /// The sequence number.
    pub sequence_number: String,
    /// The data.
    pub data: Vec<u8>,
    /// When the stream took it (epoch seconds, with milliseconds).
    pub arrival: f64,
}

/// What a mapping reads and invokes, for the event's fields.
#[derive(Debug, Clone)]
pub struct Source {
    /// The stream's ARN.
    pub stream_arn: String,
    /// The shard's id.
    pub shard_id: String,
    /// The region.
    pub region: String,
    /// The function's ARN (for the failure record).
    pub function_arn: String,
    /// The mapping's id (for the S3 failure object's key).
    pub uuid: String,
}

/// Why an invocation gave no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeError {
    /// The function ran and failed (an unhandled error, a crash): the batch failed.
    Function(String),
    /// The function could not be reached (the Invoke API is down or refused the call): the
    /// batch was not delivered, and is tried again later without using a retry.
    Unavailable(String),
}

/// A function the mapping invokes: the event's JSON in; the response's payload out.
pub trait Function: Send + Sync {
    /// One synchronous invocation.
    fn invoke(&self, event: Vec<u8>) -> impl Future<Output = Result<Vec<u8>, InvokeError>> + Send;
}

/// Where the `OnFailure` records go.
pub trait FailureSink: Send + Sync {
    /// Sends one record.
    fn send(&self, record: &FailureRecord) -> impl Future<Output = Result<(), String>> + Send;
}

/// No destination: discarded batches are only counted and logged.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDestination;

impl FailureSink for NoDestination {
    async fn send(&self, _record: &FailureRecord) -> Result<(), String> {
        Ok(())
    }
}

/// What a mapping did.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Stats {
    /// Records read from the shard.
    pub read: u64,
    /// Records dropped by the filters.
    pub filtered: u64,
    /// Records done with: checkpointed, filtered out or discarded.
    pub done: u64,
    /// Records delivered to the function (redeliveries included).
    pub delivered: u64,
    /// Invocations.
    pub invocations: u64,
    /// Invocations that reported some records (a partial batch response).
    pub partial_failures: u64,
    /// Invocations that failed as a whole: function error, timeout, or an invalid response.
    pub function_errors: u64,
    /// Of which timeouts.
    pub timeouts: u64,
    /// Batches split in two.
    pub bisections: u64,
    /// Invocations that retried records.
    pub retries: u64,
    /// Records delivered again after a failure.
    pub redelivered: u64,
    /// Records discarded (retries or record age ran out).
    pub discarded: u64,
    /// The sequence numbers discarded, in order.
    #[serde(skip)]
    pub discarded_sequence_numbers: Vec<String>,
    /// `OnFailure` records sent.
    pub failure_records: u64,
    /// The largest iterator age seen: how old the newest record of a batch was when invoked.
    pub max_iterator_age_ms: u64,
}

impl Stats {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Stats) {
        self.read += other.read;
        self.filtered += other.filtered;
        self.done += other.done;
        self.delivered += other.delivered;
        self.invocations += other.invocations;
        self.partial_failures += other.partial_failures;
        self.function_errors += other.function_errors;
        self.timeouts += other.timeouts;
        self.bisections += other.bisections;
        self.retries += other.retries;
        self.redelivered += other.redelivered;
        self.discarded += other.discarded;
        self.discarded_sequence_numbers
            .extend(other.discarded_sequence_numbers.iter().cloned());
        self.failure_records += other.failure_records;
        self.max_iterator_age_ms = self.max_iterator_age_ms.max(other.max_iterator_age_ms);
    }
}

/// One shard's mapping to one function.
pub struct Mapper<'a, F, S> {
    /// The settings, from the template.
    pub settings: &'a Mapping,
    /// The shard, stream and function.
    pub source: &'a Source,
    /// The function.
    pub function: &'a F,
    /// The `OnFailure` destination.
    pub sink: &'a S,
    /// The pause before the first retry of a batch; it doubles per retry, up to 30 times it.
    pub retry_backoff: Duration,
    /// The counts, shared with whoever reports them.
    pub stats: &'a Mutex<Stats>,
}

impl<F: Function, S: FailureSink> Mapper<'_, F, S> {
    /// Delivers `records` (an in-memory shard) until each is checkpointed, filtered out or
    /// discarded.
    pub async fn deliver(&self, records: Vec<StreamRecord>) {
        let (tx, rx) = mpsc::channel(records.len().max(1));
        for r in records {
            // The channel holds them all: this never waits.
            let _ = tx.send(r).await;
        }
        drop(tx);
        self.run(rx).await;
    }

    /// Delivers the records `rx` yields, in order, until it closes and every record is done.
    pub async fn run(&self, mut rx: mpsc::Receiver<StreamRecord>) {
        let lanes = self.settings.parallelization_factor.max(1);
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..lanes)
            .map(|_| mpsc::channel::<StreamRecord>(10_000))
            .unzip();
        let distribute = async move {
            while let Some(record) = rx.recv().await {
                let pass = passes(
                    &self.settings.filters,
                    &Candidate {
                        partition_key: &record.partition_key,
                        sequence_number: &record.sequence_number,
                        data: &record.data,
                    },
                );
                {
                    let mut s = self.lock();
                    s.read += 1;
                    if !pass {
                        s.filtered += 1;
                        s.done += 1;
                    }
                }
                if pass {
                    let lane = lane_of(&record.partition_key, lanes);
                    if senders[lane].send(record).await.is_err() {
                        return;
                    }
                }
            }
        };
        let lanes = join_all(receivers.into_iter().map(|rx| self.lane(rx)));
        tokio::join!(distribute, lanes);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One lane: one batch at a time, from its checkpoint on.
    async fn lane(&self, mut rx: mpsc::Receiver<StreamRecord>) {
        let settings = self.settings;
        // The records from the checkpoint on, and each one's event JSON.
        let mut buffer: Vec<(StreamRecord, String)> = Vec::new();
        let mut waiting: Vec<(usize, usize)> = Vec::new(); // second halves of split batches
        let mut current: Option<(usize, usize, i64)> = None; // a batch being retried, its retries
        let mut covered = 0; // the records some batch has held
        let mut open = true;
        loop {
            let (mut start, end, retries) = match current.take() {
                Some(batch) => batch,
                None => match waiting.pop() {
                    Some((start, end)) => (start, end, 0),
                    None => {
                        // Everything so far is done: take the next batch.
                        buffer.drain(..covered);
                        if !open && buffer.is_empty() {
                            return;
                        }
                        open = self.fill(&mut rx, &mut buffer, open).await;
                        if buffer.is_empty() {
                            return;
                        }
                        let end = batch_end(&buffer, settings.batch_size);
                        covered = end;
                        (0, end, 0)
                    }
                },
            };

            // Records past their age are discarded before invoking.
            if let Some(age) = settings.maximum_record_age {
                let now = epoch_now();
                let expired = buffer[start..end]
                    .iter()
                    .take_while(|(r, _)| now - r.arrival > age.as_secs_f64())
                    .count();
                if expired > 0 {
                    self.discard(
                        &buffer[start..start + expired],
                        Condition::RecordAgeExceeded,
                        retries.max(1),
                        None,
                    )
                    .await;
                    start += expired;
                    if start == end {
                        continue;
                    }
                }
            }

            if retries > 0 {
                tokio::time::sleep(
                    self.retry_backoff
                        .saturating_mul(1u32 << (retries - 1).min(5)),
                )
                .await;
            }
            let batch = &buffer[start..end];
            let event = event_json(batch);
            // The iterator age: how old the batch's newest record is as it is sent.
            let newest = batch.last().map_or(0.0, |(r, _)| r.arrival);
            let age = ((epoch_now() - newest) * 1000.0).max(0.0) as u64;
            let result = tokio::time::timeout(settings.timeout, self.function.invoke(event)).await;
            if !matches!(result, Ok(Err(InvokeError::Unavailable(_)))) {
                let mut s = self.lock();
                s.invocations += 1;
                s.delivered += batch.len() as u64;
                if retries > 0 {
                    s.retries += 1;
                }
                s.max_iterator_age_ms = s.max_iterator_age_ms.max(age);
            }
            let verdict = match result {
                Err(_) => {
                    self.lock().timeouts += 1;
                    Verdict::Failed(format!(
                        "Task timed out after {:.2} seconds",
                        settings.timeout.as_secs_f64()
                    ))
                }
                Ok(Err(InvokeError::Function(error))) => Verdict::Failed(error),
                Ok(Err(InvokeError::Unavailable(error))) => {
                    tracing::warn!(shard = %self.source.shard_id, %error, "the function could not be invoked; trying again in a second");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    current = Some((start, end, retries));
                    continue;
                }
                Ok(Ok(response)) => verdict(&response, batch, settings.report_batch_item_failures),
            };
            tracing::debug!(
                shard = %self.source.shard_id,
                records = end - start,
                first = %buffer[start].0.sequence_number,
                retries,
                outcome = verdict.describe(),
                "invoked"
            );
            let exhausted = |retries: i64| {
                settings.maximum_retry_attempts >= 0 && retries > settings.maximum_retry_attempts
            };
            match verdict {
                Verdict::Success => {
                    self.lock().done += (end - start) as u64;
                }
                Verdict::Partial(lowest) => {
                    let lowest = start + lowest;
                    {
                        let mut s = self.lock();
                        s.partial_failures += 1;
                        s.done += (lowest - start) as u64;
                        s.redelivered += (end - lowest) as u64;
                    }
                    // Progress starts the count again.
                    let retries = if lowest > start { 1 } else { retries + 1 };
                    if exhausted(retries) {
                        self.discard(
                            &buffer[lowest..end],
                            Condition::RetryAttemptsExhausted,
                            retries, // the invocations of these records, this one included
                            Some(false),
                        )
                        .await;
                    } else {
                        // The batch splits at the reported record: it and the rest go again.
                        current = Some((lowest, end, retries));
                    }
                }
                Verdict::Failed(error) => {
                    tracing::debug!(shard = %self.source.shard_id, %error, "the invocation failed");
                    {
                        let mut s = self.lock();
                        s.function_errors += 1;
                        s.redelivered += (end - start) as u64;
                    }
                    if settings.bisect_on_function_error && end - start > 1 {
                        self.lock().bisections += 1;
                        let mid = start + (end - start) / 2;
                        waiting.push((mid, end));
                        current = Some((start, mid, retries));
                    } else if exhausted(retries + 1) {
                        self.discard(
                            &buffer[start..end],
                            Condition::RetryAttemptsExhausted,
                            retries + 1, // this invocation and the retries before it
                            Some(true),
                        )
                        .await;
                    } else {
                        current = Some((start, end, retries + 1));
                    }
                }
            }
        }
    }

    /// Waits for records as the batching window says; returns whether the source is still open.
    async fn fill(
        &self,
        rx: &mut mpsc::Receiver<StreamRecord>,
        buffer: &mut Vec<(StreamRecord, String)>,
        mut open: bool,
    ) -> bool {
        let settings = self.settings;
        if buffer.is_empty() && open {
            match rx.recv().await {
                Some(r) => buffer.push(with_json(r, self.source)),
                None => return false,
            }
        }
        // The event's size so far, to stop at the payload cap.
        let mut bytes: usize = buffer.iter().map(|(_, j)| j.len() + 1).sum::<usize>() + 16;
        let full = |b: &Vec<(StreamRecord, String)>, bytes: usize| {
            b.len() >= settings.batch_size || bytes >= MAX_PAYLOAD
        };
        let window_ends = Instant::now() + settings.batching_window;
        while open && !full(buffer, bytes) {
            match rx.try_recv() {
                Ok(r) => {
                    let r = with_json(r, self.source);
                    bytes += r.1.len() + 1;
                    buffer.push(r);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                Err(mpsc::error::TryRecvError::Empty) => {
                    if Instant::now() >= window_ends {
                        break;
                    }
                    match tokio::time::timeout_at(window_ends.into(), rx.recv()).await {
                        Ok(Some(r)) => {
                            let r = with_json(r, self.source);
                            bytes += r.1.len() + 1;
                            buffer.push(r);
                        }
                        Ok(None) => open = false,
                        Err(_) => break,
                    }
                }
            }
        }
        open
    }

    async fn discard(
        &self,
        records: &[(StreamRecord, String)],
        condition: Condition,
        invocations: i64,
        function_error: Option<bool>,
    ) {
        let Some(first) = records.first() else {
            return;
        };
        {
            let mut s = self.lock();
            s.discarded += records.len() as u64;
            s.done += records.len() as u64;
            s.discarded_sequence_numbers
                .extend(records.iter().map(|(r, _)| r.sequence_number.clone()));
        }
        let last = records.last().unwrap_or(first);
        tracing::warn!(
            shard = %self.source.shard_id,
            condition = condition.as_str(),
            records = records.len(),
            first = %first.0.sequence_number,
            last = %last.0.sequence_number,
            "records discarded"
        );
        let record = failure_record(
            self.source,
            condition,
            u64::try_from(invocations).unwrap_or(1),
            function_error,
            (&first.0, &last.0),
            records.len(),
            event_json(records),
        );
        match self.sink.send(&record).await {
            Ok(()) => self.lock().failure_records += 1,
            Err(e) => tracing::error!(error = %e, "the OnFailure record could not be sent"),
        }
    }
}

/// The lane of a partition key: the same key, the same lane.
pub fn lane_of(partition_key: &str, lanes: usize) -> usize {
    if lanes <= 1 {
        return 0;
    }
    let digest = Md5::digest(partition_key.as_bytes());
    (u64::from_be_bytes(digest[..8].try_into().unwrap_or_default()) % lanes as u64) as usize
}

/// How many records from the front make a batch: `batch_size` at most, within the payload cap
/// (always at least one).
fn batch_end(buffer: &[(StreamRecord, String)], batch_size: usize) -> usize {
    let mut size = r#"{"Records":[]}"#.len();
    let mut n = 0;
    for (_, json) in buffer.iter().take(batch_size) {
        size += json.len() + usize::from(n > 0);
        if n > 0 && size > MAX_PAYLOAD {
            break;
        }
        n += 1;
    }
    n.max(1).min(buffer.len())
}

fn with_json(record: StreamRecord, source: &Source) -> (StreamRecord, String) {
    let json = record_json(&record, source).to_string();
    (record, json)
}

/// One record as the event holds it.
pub fn record_json(r: &StreamRecord, source: &Source) -> Value {
    use base64::Engine as _;
    json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": r.partition_key,
            "sequenceNumber": r.sequence_number,
            "data": base64::engine::general_purpose::STANDARD.encode(&r.data),
            "approximateArrivalTimestamp": r.arrival,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("{}:{}", source.shard_id, r.sequence_number),
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": format!("arn:aws:iam::123456789012:role/{}-role", function_name(&source.function_arn)),
        "awsRegion": source.region,
        "eventSourceARN": source.stream_arn,
    })
}

fn function_name(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

/// The `OnFailure` record of the discarded `range` (first and last record) of `count` records, as
/// Lambda writes it. `function_error`: whether the last invocation failed as a whole (`None`: no
/// invocation answered, as when records expired).
fn failure_record(
    source: &Source,
    condition: Condition,
    invoke_count: u64,
    function_error: Option<bool>,
    range: (&StreamRecord, &StreamRecord),
    count: usize,
    payload: Vec<u8>,
) -> FailureRecord {
    let at_ms = shared::time::now_ms();
    let iso = shared::time::iso_millis;
    let record = OnFailure {
        request_context: RequestContext {
            request_id: uuid::Uuid::new_v4().to_string(),
            function_arn: source.function_arn.clone(),
            condition: condition.as_str().to_owned(),
            approximate_invoke_count: invoke_count,
        },
        response_context: function_error.map(|error| ResponseContext {
            status_code: 200,
            executed_version: "$LATEST".into(),
            function_error: error.then(|| "Unhandled".into()),
        }),
        version: "1.0".into(),
        timestamp: iso(at_ms),
        batch: BatchInfo {
            shard_id: source.shard_id.clone(),
            start_sequence_number: range.0.sequence_number.clone(),
            end_sequence_number: range.1.sequence_number.clone(),
            approximate_arrival_of_first_record: iso((range.0.arrival * 1000.0) as i64),
            approximate_arrival_of_last_record: iso((range.1.arrival * 1000.0) as i64),
            batch_size: count as u64,
            stream_arn: source.stream_arn.clone(),
        },
        payload: None,
    };
    FailureRecord::new(record, payload, source.uuid.clone(), at_ms)
}

/// The invocation's event: `{"Records": [...]}`.
fn event_json(batch: &[(StreamRecord, String)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.iter().map(|(_, j)| j.len() + 1).sum::<usize>() + 16);
    out.extend_from_slice(br#"{"Records":["#);
    for (i, (_, json)) in batch.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(json.as_bytes());
    }
    out.extend_from_slice(b"]}");
    out
}

/// Now, in epoch seconds.
pub fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

enum Verdict {
    Success,
    /// The index (in the batch) of the lowest reported record.
    Partial(usize),
    Failed(String),
}

impl Verdict {
    fn describe(&self) -> String {
        match self {
            Self::Success => "success".to_owned(),
            Self::Partial(i) => format!("partial: checkpoint at record {i} of the batch"),
            Self::Failed(e) => format!("failed: {e}"),
        }
    }
}

/// What the response means, by Lambda's rules.
fn verdict(response: &[u8], batch: &[(StreamRecord, String)], report: bool) -> Verdict {
    if !report {
        return Verdict::Success;
    }
    let value: Value = match serde_json::from_slice(response) {
        Ok(v) => v,
        Err(_) if response.iter().all(u8::is_ascii_whitespace) => return Verdict::Success,
        // Not JSON: not a batch response, and not a failure either.
        Err(_) => return Verdict::Success,
    };
    let failures = match value.get("batchItemFailures") {
        None | Some(Value::Null) => return Verdict::Success,
        Some(Value::Array(f)) => f,
        Some(other) => return Verdict::Failed(format!("batchItemFailures is {other}, not a list")),
    };
    let mut lowest: Option<usize> = None;
    for f in failures {
        let id = f
            .get("itemIdentifier")
            .and_then(Value::as_str)
            .unwrap_or("");
        match batch
            .iter()
            .position(|(r, _)| !id.is_empty() && r.sequence_number == id)
        {
            Some(i) => lowest = Some(lowest.map_or(i, |l| l.min(i))),
            None => {
                return Verdict::Failed(format!(
                    "an invalid itemIdentifier in {f}: the whole batch fails"
                ))
            }
        }
    }
    lowest.map_or(Verdict::Success, Verdict::Partial)
}

/// A function run in this process: its engine, invoked with the event as Lambda would, with the
/// function's timeout as the deadline. What `fanout rebuild` and the end-to-end tests invoke; the
/// local stack invokes the functions through `cargo lambda watch`'s Invoke API instead.
pub struct InProcess<C, P> {
    engine: shared::BatchEngine<C, P>,
    timeout: Duration,
}

impl<C, P> InProcess<C, P> {
    /// `engine`, invoked with `timeout` for each invocation's deadline.
    pub fn new(engine: shared::BatchEngine<C, P>, timeout: Duration) -> Self {
        Self { engine, timeout }
    }

    /// The engine.
    pub fn engine(&self) -> &shared::BatchEngine<C, P> {
        &self.engine
    }
}

impl<C: shared::Consumer + Send, P: shared::PoisonSink + Send> Function for InProcess<C, P> {
    async fn invoke(&self, event: Vec<u8>) -> Result<Vec<u8>, InvokeError> {
        // A body the runtime cannot read fails the invocation, as it does in Lambda.
        let batch = shared::KinesisBatch::from_slice(&event)
            .map_err(|e| InvokeError::Function(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let out = self.engine.process(&batch, Some(deadline)).await;
        serde_json::to_vec(&out.response).map_err(|e| InvokeError::Function(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn shard(n: usize, keys: usize) -> Vec<StreamRecord> {
        (0..n)
            .map(|i| StreamRecord {
                partition_key: format!("k{}", i % keys),
                sequence_number: format!("{:05}", 10_000 + i),
                data: format!("{{\"n\":{i}}}").into_bytes(),
                arrival: epoch_now(),
            })
            .collect()
    }

    fn settings(batch_size: usize, max_retries: i64) -> Mapping {
        Mapping {
            batch_size,
            bisect_on_function_error: true,
            maximum_retry_attempts: max_retries,
            report_batch_item_failures: true,
            timeout: Duration::from_secs(5),
            ..Mapping::defaults("fn")
        }
    }

    fn source() -> Source {
        Source {
            stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/s".into(),
            shard_id: "shardId-000000000000".into(),
            region: "us-east-1".into(),
            function_arn: "arn:aws:lambda:us-east-1:123456789012:function:fn".into(),
            uuid: "uuid".into(),
        }
    }

    type Answer = Result<Vec<&'static str>, InvokeError>;
    type Rule = Box<dyn Fn(&[String]) -> Answer + Send + Sync>;

    /// Answers with canned responses (then success), and records what each invocation held.
    #[derive(Default)]
    struct Scripted {
        answers: Mutex<Vec<Answer>>,
        seen: Mutex<Vec<Vec<String>>>,
        /// Answers by the first sequence number of the batch (takes precedence).
        rule: Option<Rule>,
        delay: Duration,
    }

    impl Function for Scripted {
        async fn invoke(&self, event: Vec<u8>) -> Result<Vec<u8>, InvokeError> {
            let v: Value = serde_json::from_slice(&event).unwrap();
            let seqs: Vec<String> = v["Records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["kinesis"]["sequenceNumber"].as_str().unwrap().to_owned())
                .collect();
            self.seen.lock().unwrap().push(seqs.clone());
            tokio::time::sleep(self.delay).await;
            let answer = match &self.rule {
                Some(rule) => rule(&seqs),
                None => {
                    let mut answers = self.answers.lock().unwrap();
                    if answers.is_empty() {
                        Ok(vec![])
                    } else {
                        answers.remove(0)
                    }
                }
            };
            answer.map(|ids| {
                let failures: Vec<Value> =
                    ids.iter().map(|id| json!({"itemIdentifier": id})).collect();
                json!({"batchItemFailures": failures})
                    .to_string()
                    .into_bytes()
            })
        }
    }

    #[derive(Default)]
    struct Sink(Mutex<Vec<FailureRecord>>);

    impl FailureSink for Sink {
        async fn send(&self, record: &FailureRecord) -> Result<(), String> {
            self.0.lock().unwrap().push(record.clone());
            Ok(())
        }
    }

    async fn run(
        records: Vec<StreamRecord>,
        settings: &Mapping,
        f: &Scripted,
        sink: &Sink,
    ) -> Stats {
        let stats = Mutex::new(Stats::default());
        let source = source();
        Mapper {
            settings,
            source: &source,
            function: f,
            sink,
            retry_backoff: Duration::ZERO,
            stats: &stats,
        }
        .deliver(records)
        .await;
        stats.into_inner().unwrap()
    }

    fn scripted(answers: Vec<Answer>) -> Scripted {
        Scripted {
            answers: Mutex::new(answers),
            ..Scripted::default()
        }
    }

    /// A partial response checkpoints at the lowest reported record and redelivers from there.
    #[tokio::test]
    async fn partial_failure_checkpoints_at_the_lowest() {
        let f = scripted(vec![Ok(vec!["10002", "10001"])]);
        let stats = run(shard(6, 3), &settings(4, -1), &f, &Sink::default()).await;
        let seen = f.seen.lock().unwrap().clone();
        assert_eq!(seen[0], ["10000", "10001", "10002", "10003"]);
        assert_eq!(seen[1], ["10001", "10002", "10003"]);
        assert_eq!(seen[2], ["10004", "10005"]);
        assert_eq!(
            (stats.partial_failures, stats.redelivered, stats.done),
            (1, 3, 6)
        );
    }

    /// A function error bisects the batch; the halves are delivered in order.
    #[tokio::test]
    async fn function_error_bisects() {
        let f = scripted(vec![Err(InvokeError::Function("boom".into()))]);
        let stats = run(shard(4, 3), &settings(4, -1), &f, &Sink::default()).await;
        let seen = f.seen.lock().unwrap().clone();
        assert_eq!(seen[1], ["10000", "10001"]);
        assert_eq!(seen[2], ["10002", "10003"]);
        assert_eq!((stats.function_errors, stats.bisections), (1, 1));
    }

    /// When retries run out, the records are discarded, the shard moves on, and the failure
    /// record names the range; an unknown identifier fails the whole batch.
    #[tokio::test]
    async fn retries_run_out() {
        let f = scripted(vec![
            Ok(vec!["10000"]),
            Ok(vec!["10000"]),
            Ok(vec!["10000"]),
            Ok(vec!["nope"]),
        ]);
        let sink = Sink::default();
        let mut s = settings(4, 2);
        s.bisect_on_function_error = false;
        let stats = run(shard(5, 3), &s, &f, &sink).await;
        assert_eq!(
            stats.discarded_sequence_numbers,
            ["10000", "10001", "10002", "10003"]
        );
        assert_eq!(
            stats.function_errors, 1,
            "an unknown identifier fails the batch"
        );
        assert_eq!((stats.done, stats.read), (5, 5));
        let records = sink.0.lock().unwrap();
        assert_eq!(records.len(), 1);
        let m = &records[0].record;
        assert_eq!(m.request_context.condition, "RetryAttemptsExhausted");
        assert_eq!(m.batch.start_sequence_number, "10000");
        assert_eq!(m.batch.end_sequence_number, "10003");
        let payload: Value = serde_json::from_slice(&records[0].payload).unwrap();
        assert_eq!(payload["Records"].as_array().unwrap().len(), 4);
    }

    /// Empty, null and misspelt identifiers fail the batch; empty and null lists succeed.
    #[tokio::test]
    async fn response_rules() {
        let batch: Vec<(StreamRecord, String)> = shard(2, 1)
            .into_iter()
            .map(|r| with_json(r, &source()))
            .collect();
        let check = |body: &str| match verdict(body.as_bytes(), &batch, true) {
            Verdict::Success => "success",
            Verdict::Partial(_) => "partial",
            Verdict::Failed(_) => "failed",
        };
        assert_eq!(check(""), "success");
        assert_eq!(check("null"), "success");
        assert_eq!(check("{}"), "success");
        assert_eq!(check(r#"{"batchItemFailures":null}"#), "success");
        assert_eq!(check(r#"{"batchItemFailures":[]}"#), "success");
        assert_eq!(
            check(r#"{"batchItemFailures":[{"itemIdentifier":"10001"}]}"#),
            "partial"
        );
        assert_eq!(
            check(r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#),
            "failed"
        );
        assert_eq!(
            check(r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#),
            "failed"
        );
        assert_eq!(
            check(r#"{"batchItemFailures":[{"itemIdentifer":"10001"}]}"#),
            "failed"
        );
        assert!(matches!(
            verdict(
                br#"{"batchItemFailures":[{"itemIdentifier":"x"}]}"#,
                &batch,
                false
            ),
            Verdict::Success
        ));
    }

    /// Records older than the maximum age are discarded before invoking, with a
    /// RecordAgeExceeded record and no response context.
    #[tokio::test]
    async fn record_age() {
        let mut records = shard(4, 2);
        for r in &mut records[..2] {
            r.arrival -= 3600.0;
        }
        let mut s = settings(10, -1);
        s.maximum_record_age = Some(Duration::from_secs(60));
        let f = scripted(vec![]);
        let sink = Sink::default();
        let stats = run(records, &s, &f, &sink).await;
        assert_eq!(stats.discarded_sequence_numbers, ["10000", "10001"]);
        assert_eq!(f.seen.lock().unwrap()[0], ["10002", "10003"]);
        let records = sink.0.lock().unwrap();
        assert_eq!(
            records[0].record.request_context.condition,
            "RecordAgeExceeded"
        );
        assert!(records[0].record.response_context.is_none());
    }

    /// A timeout fails the batch like a function error.
    #[tokio::test(start_paused = true)]
    async fn timeout() {
        let f = Scripted {
            delay: Duration::from_secs(10),
            ..Scripted::default()
        };
        let mut s = settings(2, 0);
        s.bisect_on_function_error = false;
        let stats = run(shard(2, 1), &s, &f, &Sink::default()).await;
        assert_eq!(
            (stats.timeouts, stats.function_errors, stats.discarded),
            (1, 1, 2)
        );
    }

    /// Filters drop records before batching; they count as done.
    #[tokio::test]
    async fn filtered() {
        let mut s = settings(10, -1);
        s.filters = vec![json!({"data": {"n": [{"numeric": [">=", 3]}]}})];
        let f = scripted(vec![]);
        let stats = run(shard(5, 2), &s, &f, &Sink::default()).await;
        assert_eq!(f.seen.lock().unwrap()[0], ["10003", "10004"]);
        assert_eq!((stats.filtered, stats.done), (3, 5));
    }

    /// With a ParallelizationFactor, batches of one shard run at once, each key in one lane, so
    /// every key's records are delivered in order, and after a key's failure its later records
    /// are not delivered before the failed one is retried.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallelization_keeps_per_key_order() {
        let records = shard(400, 17);
        let mut s = settings(10, -1);
        s.parallelization_factor = 4;
        let failed_once = Mutex::new(std::collections::HashSet::new());
        let in_flight = std::sync::atomic::AtomicUsize::new(0);
        let max_in_flight = std::sync::atomic::AtomicUsize::new(0);
        let f = Scripted {
            delay: Duration::from_millis(2),
            rule: Some(Box::new(move |seqs: &[String]| {
                // Each batch's third record fails the first time it is seen.
                match seqs.get(2) {
                    Some(s) if failed_once.lock().unwrap().insert(s.clone()) => {
                        Ok(vec![Box::leak(s.clone().into_boxed_str())])
                    }
                    _ => Ok(vec![]),
                }
            })),
            ..Scripted::default()
        };
        struct Counting<'a>(
            &'a Scripted,
            &'a std::sync::atomic::AtomicUsize,
            &'a std::sync::atomic::AtomicUsize,
        );
        impl Function for Counting<'_> {
            async fn invoke(&self, event: Vec<u8>) -> Result<Vec<u8>, InvokeError> {
                use std::sync::atomic::Ordering::SeqCst;
                let now = self.1.fetch_add(1, SeqCst) + 1;
                self.2.fetch_max(now, SeqCst);
                let out = self.0.invoke(event).await;
                self.1.fetch_sub(1, SeqCst);
                out
            }
        }
        let stats = Mutex::new(Stats::default());
        let source = source();
        Mapper {
            settings: &s,
            source: &source,
            function: &Counting(&f, &in_flight, &max_in_flight),
            sink: &Sink::default(),
            retry_backoff: Duration::ZERO,
            stats: &stats,
        }
        .deliver(records.clone())
        .await;
        let stats = stats.into_inner().unwrap();
        assert_eq!(stats.done, 400);
        assert!(max_in_flight.into_inner() > 1, "lanes ran at once");
        // Per key, the deliveries that took effect (the last delivery of each record) are in
        // stream order, and each batch holds one lane's keys.
        let key_of: HashMap<String, String> = records
            .iter()
            .map(|r| (r.sequence_number.clone(), r.partition_key.clone()))
            .collect();
        let mut last: HashMap<String, String> = HashMap::new();
        for batch in f.seen.lock().unwrap().iter() {
            let lanes: std::collections::HashSet<usize> =
                batch.iter().map(|s| lane_of(&key_of[s], 4)).collect();
            assert_eq!(lanes.len(), 1, "a batch mixes lanes");
            for seq in batch {
                let key = &key_of[seq];
                if let Some(prev) = last.get(key) {
                    // A redelivery starts again at or before where the key was.
                    assert!(seq > prev || batch[0] <= *prev, "{key}: {seq} after {prev}");
                }
                last.insert(key.clone(), seq.clone());
            }
        }
    }

    /// A batch is capped at 6 MB of event JSON.
    #[tokio::test]
    async fn payload_cap() {
        let mut records = shard(8, 2);
        for r in &mut records {
            r.data = vec![b'x'; 1024 * 1024];
        }
        let f = scripted(vec![]);
        run(records, &settings(100, -1), &f, &Sink::default()).await;
        let sizes: Vec<usize> = f.seen.lock().unwrap().iter().map(Vec::len).collect();
        assert_eq!(
            sizes,
            [4, 4],
            "1 MiB records are 1.33 MiB of base64: 4 per 6 MB"
        );
    }
}
