//! Idempotency: each effect once, although Lambda delivers records at least once.
//!
//! Lambda redelivers every record after the lowest reported failure, and retries whole batches
//! after errors. Two mechanisms keep effects single:
//!
//! - **Markers in the same transaction** (inventory): the stock change and a marker item keyed by
//!   the event are written in one DynamoDB transaction, the marker only if it does not exist. A
//!   redelivered event fails the marker's condition, changes nothing and counts as a duplicate.
//!   See [`crate::adapters::DynamoInventory`].
//! - **Claims around an effect that cannot join a transaction** (email): [`once`] claims the event
//!   in the ledger with a conditional write (`IN_PROGRESS` with a lease), performs the effect, then
//!   marks it `DONE`. A redelivery of a done event does nothing; a claim whose lease has expired
//!   (its holder crashed) can be taken again.
//!
//!   The remaining window: if the process dies after the effect and before the mark, the lease
//!   expires and a redelivery performs the effect again. For email that means a second
//!   confirmation, at most once per crash, never in the normal retry path. A request that got no
//!   answer (a timeout) may or may not have taken effect: it is marked `UNKNOWN`, never repeated,
//!   and the record goes to the dead-letter queue for a person to check.
//!
//! **Payload validation.** Each ledger entry and marker keeps `payloadHash`, a 128-bit hash of the
//! payload as the rule read it: its typed fields, in the schema's order, so key order, spacing and
//! `3` against `3.0` do not matter, and fields the rule ignores do not count. The fields are
//! written in postcard's wire format (compact and stable since postcard 1.0) and hashed with
//! XXH3-128 (a fixed algorithm): on the CPU path about half what MD5 over compact JSON cost. A delivery whose key is
//! done but whose hash differs is not a duplicate: the producer reused an `eventId` for another
//! event, and the record is poison ([`PAYLOAD_REUSED`]). Entries written before the hash existed
//! have none and match anything. `IDEMPOTENCY_PAYLOAD_VALIDATION=false` turns the check off.
//!
//! Ledger items expire through the table's TTL attribute `expiresAt` (epoch seconds). The TTL must
//! outlast the longest time a record can be redelivered: the stream's retention, or the event
//! source mapping's `MaximumRecordAgeInSeconds` when it is set (at most 7 days; the default TTL is
//! 8 days).

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::engine::Outcome;
use crate::error::{EffectError, ErrorClass};
use crate::ports::{Claim, IdempotencyStore, Mark, PoisonRecord, PoisonSink};

/// The ledger's settings.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `IDEMPOTENCY_TABLE` | required | the DynamoDB table of markers and claims (key `pk`, TTL `expiresAt`) |
/// | `IDEMPOTENCY_TTL_SECONDS` | 691200 (8 days) | how long an event is remembered |
/// | `IDEMPOTENCY_LEASE_SECONDS` | 60 | how long a claim holds before another delivery may take it |
/// | `IDEMPOTENCY_PAYLOAD_VALIDATION` | true | a done key seen with another payload is poison, not a duplicate |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyConfig {
    /// The table.
    pub table: String,
    /// How long an event is remembered.
    pub ttl: Duration,
    /// How long a claim holds.
    pub lease: Duration,
    /// Whether a done key seen with another payload hash is poison.
    pub validate_payload: bool,
}

/// Why a record whose key is done, with another payload, is poison.
pub const PAYLOAD_REUSED: &str = "eventId reused with a different payload";

/// The XXH3-128 hash of a payload as a rule read it, in postcard's encoding (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PayloadHash([u8; 16]);

impl PayloadHash {
    /// The hash of `payload`.
    pub fn of<T: serde::Serialize + ?Sized>(payload: &T) -> Result<Self, EffectError> {
        let bytes = postcard::to_allocvec(payload)
            .map_err(|e| EffectError::bad_data(format!("the payload cannot be hashed: {e}")))?;
        Ok(Self(xxhash_rust::xxh3::xxh3_128(&bytes).to_be_bytes()))
    }

    /// Whether a stored hash (its hex text) is another payload's. No stored hash matches anything:
    /// the entry was written before hashes were kept, or with validation off.
    pub fn differs_from(&self, stored: Option<&str>) -> bool {
        stored.is_some_and(|s| !s.eq_ignore_ascii_case(&self.to_string()))
    }
}

impl fmt::Display for PayloadHash {
    /// 32 lowercase hexadecimal digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for PayloadHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PayloadHash({self})")
    }
}

/// An event as its effect is keyed: the idempotency key, and the hash its payload must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectKey<'a> {
    /// The idempotency key: the `eventId`, or the record's place in the stream.
    pub key: Cow<'a, str>,
    /// The payload's hash; `None` where there is no payload to compare (a poison capture).
    pub payload_hash: Option<PayloadHash>,
}

impl<'a> EffectKey<'a> {
    /// A key with no payload to compare.
    pub fn bare(key: impl Into<Cow<'a, str>>) -> Self {
        Self {
            key: key.into(),
            payload_hash: None,
        }
    }

    /// Whether an entry stored with `stored` (a hash's hex text) is another payload's.
    pub fn reused(&self, stored: Option<&str>) -> bool {
        self.payload_hash.is_some_and(|h| h.differs_from(stored))
    }
}

/// The ledger key of an event for one effect: `<scope>#<event key>`, so two functions that handle
/// the same event keep separate entries in one table.
pub fn ledger_key(scope: &str, event_key: &str) -> String {
    format!("{scope}#{event_key}")
}

/// Seconds since the Unix epoch, the unit of DynamoDB's TTL.
pub fn epoch_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Proof of a claim: only its holder may complete or release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// A token unique to this claim.
    pub token: String,
}

impl Lease {
    /// A new lease with a token unique within and across processes: this process's start (its
    /// first lease's time, in nanoseconds) and id, then a count. The prefix is made once: a
    /// lease is taken per event.
    pub fn new() -> Self {
        static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let prefix = PREFIX.get_or_init(|| {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            // `{nanos:x}-{pid:x}-`, written without the formatting machinery.
            let mut prefix = String::with_capacity(40);
            push_hex(&mut prefix, nanos);
            prefix.push('-');
            push_hex(&mut prefix, u128::from(std::process::id()));
            prefix.push('-');
            prefix
        });
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut token = String::with_capacity(prefix.len() + 16);
        token.push_str(prefix);
        push_hex(&mut token, u128::from(n));
        Self { token }
    }
}

/// Appends `v` in lowercase hexadecimal, as `{v:x}` does.
fn push_hex(out: &mut String, v: u128) {
    let digits = (128 - v.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        let nibble = ((v >> (i * 4)) & 0xf) as u32;
        out.extend(char::from_digit(nibble, 16));
    }
}

impl Default for Lease {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes the mark that ends a claim whose effect may have happened. It must be written, or a
/// redelivery after the lease would repeat the effect: each try is already the SDK's three, and it
/// keeps trying a while longer before it gives up and says so.
async fn settle<S: IdempotencyStore>(ledger: &S, key: &str, lease: &Lease, mark: Mark, note: &str) {
    let mut tries = 0;
    while let Err(err) = ledger.complete(key, lease, mark, note).await {
        tries += 1;
        if tries >= COMPLETE_TRIES {
            tracing::error!(error = ?err, mark = mark.as_str(), "effect not marked; a redelivery after the lease would repeat it");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50 << tries)).await;
    }
}

/// How many times [`once`] tries to mark an effect before it gives up.
const COMPLETE_TRIES: u32 = 6;

/// Performs `effect` at most once per `key` (see the module docs for the one remaining window).
///
/// The effect returns a note to keep with the done mark. An effect that fails releases its claim
/// and its error passes on unchanged (a retryable one is retried, a permanent one is captured),
/// except when the failure leaves the outcome unknown ([`EffectError::is_ambiguous`]): then the
/// claim is marked [`Mark::Unknown`], so no redelivery repeats the effect, and the record is
/// captured as poison for a person to check and, if the effect did not happen, redrive.
pub async fn once<S, F, Fut>(
    ledger: &S,
    event: &EffectKey<'_>,
    effect: F,
) -> Result<Outcome, EffectError>
where
    S: IdempotencyStore,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<String, EffectError>>,
{
    let key = &*event.key;
    let lease = match ledger.claim(event).await? {
        Claim::Claimed(lease) => lease,
        Claim::AlreadyDone => return Ok(Outcome::Duplicate),
        Claim::Reused => return Err(EffectError::bad_data(PAYLOAD_REUSED)),
        Claim::InProgress => {
            return Err(EffectError::retryable(
                "another delivery of this event holds its claim; retry after the lease",
            ))
        }
    };
    match effect().await {
        Ok(note) => {
            settle(ledger, key, &lease, Mark::Done, &note).await;
            Ok(Outcome::Applied)
        }
        Err(err) if err.is_ambiguous() => {
            settle(ledger, key, &lease, Mark::Unknown, &format!("{err:?}")).await;
            Err(EffectError::permanent(format!(
                "outcome unknown, not repeated to avoid a duplicate: {err}"
            )))
        }
        Err(err) => {
            if let Err(release) = ledger.release(key, &lease).await {
                tracing::warn!(error = ?release, "could not release the claim; it expires with its lease");
            }
            Err(err)
        }
    }
}

/// A poison sink that sends each record once, however often its batch is redelivered.
///
/// Without it, a poison record is captured again at every redelivery of its batch (after another
/// record's failure), and the dead-letter queue fills with copies. The capture is claimed in the
/// ledger under `poison#<shard>:<sequence>[:<sub>]`; any failure of the inner sink, even one that
/// leaves the outcome unknown, gives the claim back, so capture stays at-least-once: a copy is
/// possible, a loss is not. A record with no sequence number cannot be keyed and is always sent.
#[derive(Debug)]
pub struct OncePoisonSink<P, L> {
    inner: P,
    ledger: L,
}

impl<P: PoisonSink, L: IdempotencyStore> OncePoisonSink<P, L> {
    /// Wraps `inner`, remembering captures in `ledger`.
    pub fn new(inner: P, ledger: L) -> Self {
        Self { inner, ledger }
    }

    /// The inner sink.
    pub fn inner(&self) -> &P {
        &self.inner
    }
}

impl<P: PoisonSink, L: IdempotencyStore> PoisonSink for OncePoisonSink<P, L> {
    async fn capture(&self, record: &PoisonRecord) -> Result<(), EffectError> {
        let Some(seq) = record.sequence_number.as_deref() else {
            return self.inner.capture(record).await;
        };
        let mut key = format!(
            "poison#{}:{seq}",
            record.shard_id.as_deref().unwrap_or("shard")
        );
        if let Some(sub) = record.sub_sequence_number {
            key.push_str(&format!(":{sub}"));
        }
        let lease = match self.ledger.claim(&EffectKey::bare(key.as_str())).await? {
            Claim::Claimed(lease) => lease,
            // A capture has no payload to compare: never reused.
            Claim::AlreadyDone | Claim::Reused => return Ok(()),
            Claim::InProgress => {
                return Err(EffectError::retryable(
                    "this poison record is being captured by another delivery",
                ))
            }
        };
        match self.inner.capture(record).await {
            Ok(()) => {
                settle(&self.ledger, &key, &lease, Mark::Done, "captured").await;
                Ok(())
            }
            Err(err) => {
                if let Err(release) = self.ledger.release(&key, &lease).await {
                    tracing::warn!(error = ?release, "could not release the capture claim; it expires with its lease");
                }
                Err(EffectError::new(
                    ErrorClass::Retryable,
                    "the poison record was not captured",
                    Some(Box::new(err)),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash is of the payload as the rule read it: however the producer wrote it. The digest is pinned: hashes are stored, and a
    /// change here (or in `PlacedOrder`'s fields) makes every stored one read as another payload's.
    #[test]
    fn payload_hash_is_of_what_the_rule_read() {
        let read = |text: &'static str| {
            let order: crate::order::PlacedOrder<'_> = serde_json::from_str(text).unwrap();
            PayloadHash::of(&order).unwrap()
        };
        let hash = read(
            r#"{"orderId":"o-1","userId":"u-1","email":"a@b.co","items":[{"productId":"p","quantity":2}],"total":"9.50"}"#,
        );
        // postcard: each string as its length and bytes, each number and count a varint.
        let encoded = b"\x03o-1\x03u-1\x06a@b.co\x01\x01p\x02\x049.50";
        assert_eq!(
            hash.to_string(),
            format!("{:032x}", xxhash_rust::xxh3::xxh3_128(encoded))
        );
        assert_eq!(hash.to_string(), "411708cb4848289ce220038bdb67f19a");
        let same = read(
            r#"{"total":9.50, "items":[{"quantity":2.0,"productId":"p"}], "extra":[1], "email":"a@b.co","userId":"u-1","orderId":"o-1"}"#,
        );
        assert_eq!(same, hash);
        let other = read(
            r#"{"orderId":"o-1","userId":"u-1","email":"a@b.co","items":[{"productId":"p","quantity":3}],"total":"9.50"}"#,
        );
        assert_ne!(other, hash);

        let key = EffectKey {
            key: "evt".into(),
            payload_hash: Some(hash),
        };
        assert!(!key.reused(Some("411708CB4848289CE220038BDB67F19A")));
        assert!(!key.reused(None), "an entry without a hash matches");
        assert!(key.reused(Some(&other.to_string())));
        assert!(!EffectKey::bare("evt").reused(Some(&other.to_string())));
    }

    #[test]
    fn hex_is_written_as_format_writes_it() {
        for v in [
            0u128,
            1,
            9,
            10,
            15,
            16,
            255,
            4096,
            u128::from(u64::MAX),
            u128::MAX,
        ] {
            let mut out = String::new();
            push_hex(&mut out, v);
            assert_eq!(out, format!("{v:x}"));
        }
        let (a, b) = (Lease::new().token, Lease::new().token);
        assert_eq!(a.split('-').count(), 3, "{a}");
        assert_ne!(a, b, "each lease has its own token");
        let process = |t: &str| t.rsplit_once('-').map(|(p, _)| p.to_owned());
        assert_eq!(process(&a), process(&b), "one process, one prefix");
    }
    use crate::fakes::FakeLedger;
    use crate::ErrorClass;

    /// The first delivery performs the effect and keeps its note; later ones are duplicates.
    #[tokio::test]
    async fn once_performs_then_deduplicates() {
        let ledger = FakeLedger::default();
        let mut runs = 0;
        for _ in 0..3 {
            let out = once(&ledger, &EffectKey::bare("k"), || {
                runs += 1;
                async { Ok("note".to_owned()) }
            })
            .await
            .unwrap();
            assert!(matches!(out, Outcome::Applied | Outcome::Duplicate));
        }
        assert_eq!(runs, 1);
        assert_eq!(ledger.done_note("k").as_deref(), Some("note"));
    }

    /// A failed effect releases its claim and passes its error on.
    #[tokio::test]
    async fn failure_releases_the_claim() {
        let ledger = FakeLedger::default();
        let err = once(&ledger, &EffectKey::bare("k"), || async {
            Err(EffectError::permanent("bad"))
        })
        .await
        .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert!(!ledger.is_in_progress("k"));
        let out = once(&ledger, &EffectKey::bare("k"), || async {
            Ok(String::new())
        })
        .await
        .unwrap();
        assert_eq!(out, Outcome::Applied);
    }

    /// A claim held by another delivery is retried later; once its lease expires it can be taken.
    #[tokio::test]
    async fn held_claim_is_retryable_until_it_expires() {
        let ledger = FakeLedger::default();
        assert!(matches!(
            ledger.claim(&EffectKey::bare("k")).await.unwrap(),
            Claim::Claimed(_)
        ));
        let err = once(&ledger, &EffectKey::bare("k"), || async {
            Ok(String::new())
        })
        .await
        .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Retryable);
        ledger.expire_leases();
        let out = once(&ledger, &EffectKey::bare("k"), || async {
            Ok(String::new())
        })
        .await
        .unwrap();
        assert_eq!(out, Outcome::Applied);
    }

    /// A failure that leaves the outcome unknown is not repeated: the claim is marked, later
    /// deliveries are duplicates, and the error becomes permanent (to the dead-letter queue).
    #[tokio::test]
    async fn unknown_outcome_is_never_repeated() {
        let ledger = FakeLedger::default();
        let timeout = || {
            let mut e = EffectError::retryable("SendTemplatedEmail got no answer");
            e.set_ambiguous();
            e
        };
        let err = once(&ledger, &EffectKey::bare("k"), || async { Err(timeout()) })
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert!(err.to_string().contains("outcome unknown"), "{err}");
        let mut runs = 0;
        let out = once(&ledger, &EffectKey::bare("k"), || {
            runs += 1;
            async { Ok(String::new()) }
        })
        .await
        .unwrap();
        assert_eq!((out, runs), (Outcome::Duplicate, 0));
    }

    /// A poison record redelivered three times is sent to the inner sink once; when the inner sink
    /// fails, the claim is given back and the next delivery sends it.
    #[tokio::test]
    async fn poison_is_captured_once() {
        use crate::fakes::FakePoisonSink;
        let sink = OncePoisonSink::new(FakePoisonSink::default(), FakeLedger::default());
        let record = PoisonRecord {
            function: "f".into(),
            event_source_arn: None,
            shard_id: Some("shardId-0".into()),
            partition_key: Some("k".into()),
            sequence_number: Some("7".into()),
            sub_sequence_number: None,
            data: "eA==".into(),
            reason: "bad".into(),
            cause: crate::ports::PoisonCause::Data,
            captured_at_ms: 1,
        };
        sink.inner().refuse(true);
        assert_eq!(
            sink.capture(&record).await.unwrap_err().class(),
            ErrorClass::Retryable
        );
        sink.inner().refuse(false);
        for _ in 0..3 {
            sink.capture(&record).await.unwrap();
        }
        assert_eq!(sink.inner().captured().len(), 1);
        let other = PoisonRecord {
            sub_sequence_number: Some(1),
            ..record.clone()
        };
        sink.capture(&other).await.unwrap();
        assert_eq!(
            sink.inner().captured().len(),
            2,
            "another user record of the aggregate"
        );
    }
}
