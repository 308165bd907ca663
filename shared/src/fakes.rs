//! In-memory fakes of the engine's ports (the poison sink, the idempotency ledger), with the same
//! semantics as the real adapters; failures that tests can plan; and a Lambda event and a log
//! writer for tests. Compiled for tests only (feature `fakes`).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::engine::consumer::{PoisonRecord, PoisonSink};
use crate::engine::error::{EffectError, ErrorClass};
use crate::engine::idempotency::{Claim, EffectKey, IdempotencyStore, Lease, Mark};

/// The mutex's value, also after a panic elsewhere poisoned it: a fake's state stays readable.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Planned failures, for a fake adapter: the next `n` calls about a subject (an order, say) fail
/// with a class.
#[derive(Debug, Default)]
pub struct FailurePlan(Mutex<HashMap<String, (ErrorClass, usize)>>);

impl FailurePlan {
    /// The next `times` calls about `subject` fail with `class`.
    pub fn plan(&self, subject: &str, class: ErrorClass, times: usize) {
        lock(&self.0).insert(subject.to_owned(), (class, times));
    }

    /// A planned failure for `subject`, if one is left (and one fewer is left).
    pub fn take(&self, subject: &str) -> Result<(), EffectError> {
        let mut plans = lock(&self.0);
        match plans.get_mut(subject) {
            Some((class, left)) if *left > 0 => {
                *left -= 1;
                Err(EffectError::new(
                    *class,
                    format!("planned failure for {subject}"),
                    None,
                ))
            }
            _ => Ok(()),
        }
    }
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

/// The hash an entry for `event` keeps, as a table keeps it (hex text).
pub fn stored_hash(event: &EffectKey<'_>) -> Option<String> {
    event.payload_hash.map(|h| h.to_string())
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
            Some(LedgerEntry::Done {
                mark: Mark::Unknown,
                ..
            }) => return Ok(Claim::Unknown),
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
pub fn kinesis_event<'a>(
    data: impl IntoIterator<Item = &'a str>,
) -> crate::input::batch::KinesisBatch {
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
    crate::input::batch::KinesisBatch::from_slice(body.as_bytes()).unwrap_or_default()
}

/// A DynamoDB error answer (status 400), as the service sends it (JSON protocol), for an adapter's
/// tests over `aws-smithy-mocks`.
pub fn dynamodb_error(
    body: &'static str,
) -> impl Fn() -> aws_smithy_runtime_api::http::Response + Send + Sync {
    move || {
        let status = aws_smithy_runtime_api::http::StatusCode::try_from(400)
            .unwrap_or_else(|_| unreachable!("400 is a status"));
        let mut resp = aws_smithy_runtime_api::http::Response::new(
            status,
            aws_smithy_types::body::SdkBody::from(body),
        );
        resp.headers_mut()
            .insert("content-type", "application/x-amz-json-1.0");
        resp
    }
}

/// An event's key with the hash of a payload (`{"orderId": "o-1"}`), for an adapter's tests.
pub fn effect_key(key: &'static str) -> EffectKey<'static> {
    let payload = serde_json::json!({"orderId": "o-1"});
    EffectKey {
        key: key.into(),
        payload_hash: crate::idempotency::PayloadHash::of(&payload).ok(),
    }
}

/// A ledger's settings for tests: table `idempotency`, an hour's TTL, a minute's lease, payload
/// validation on.
#[cfg(feature = "adapters")]
pub fn ledger_settings() -> crate::adapters::LedgerSettings {
    crate::adapters::LedgerSettings {
        table: "idempotency".into(),
        ttl: std::time::Duration::from_secs(3600),
        lease: std::time::Duration::from_secs(60),
        validate_payload: true,
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
