//! Idempotency: each effect once, although Lambda delivers records at least once.
//!
//! Lambda redelivers every record after the lowest reported failure, and retries whole batches
//! after errors. Two mechanisms keep effects single:
//!
//! - **Markers in the same transaction** (an effect in DynamoDB, such as inventory's): the change
//!   and a marker item keyed by the event are written in one transaction, the marker only if it
//!   does not exist. A redelivered event fails the marker's condition, changes nothing and counts
//!   as a duplicate.
//! - **Claims around an effect that cannot join a transaction** (such as an email): [`once`]
//!   claims the event in the ledger ([`IdempotencyStore`]) with a conditional write
//!   (`IN_PROGRESS` with a lease), performs the effect, then marks it `DONE`. A redelivery of a
//!   done event does nothing; a claim whose lease has expired (its holder crashed) can be taken
//!   again.
//!
//!   The remaining window: if the process dies after the effect and before the mark, the lease
//!   expires and a redelivery performs the effect again. For email that means a second
//!   confirmation, at most once per crash, never in the normal retry path. A request that got no
//!   answer (a timeout) may or may not have taken effect: it is marked `UNKNOWN`, never repeated,
//!   and the record goes to the dead-letter queue for a person to check; a redelivery of it goes
//!   there too (its first capture may have failed), and a sink that captures once keeps one copy.
//!
//! **Payload validation.** Each ledger entry and marker keeps `payloadHash`, a 128-bit hash of the
//! payload as the rule read it: its typed fields, in the schema's order, so key order, spacing and
//! `3` against `3.0` do not matter, and fields the rule ignores do not count. The fields are
//! written in postcard's wire format (compact and stable since postcard 1.0) and hashed with
//! XXH3-128 (a fixed algorithm). A delivery whose key is done but whose hash differs is not a
//! duplicate: the producer reused an `eventId` for another event, and the record is poison
//! ([`PAYLOAD_REUSED`]). Entries written before the hash existed have none and match anything.
//! `IDEMPOTENCY_PAYLOAD_VALIDATION=false` turns the check off.
//!
//! The ledger over DynamoDB, and where its items expire, is in `crate::adapters::ledger`.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::consumer::{stream_identity, Consumer, Event, Outcome, PoisonRecord, PoisonSink};
use super::error::{EffectError, ErrorClass};

/// Why a record whose key is done, with another payload, is poison.
pub const PAYLOAD_REUSED: &str = "eventId reused with a different payload";

/// The XXH3-128 hash of a payload as a rule read it, in postcard's encoding (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PayloadHash([u8; 16]);

impl PayloadHash {
    /// The hash of `payload`.
    pub fn of<T: serde::Serialize + ?Sized>(payload: &T) -> Result<Self, EffectError> {
        let bytes = postcard::to_allocvec(payload).map_err(unhashable)?;
        Ok(Self(xxhash_rust::xxh3::xxh3_128(&bytes).to_be_bytes()))
    }

    /// The hash of the content of `payload`, an enum's variant: the variant itself (the event
    /// type) is left out, so the same content hashes alike under either of two types read alike,
    /// and as it did when it was hashed on its own.
    pub fn of_variant<T: serde::Serialize + ?Sized>(payload: &T) -> Result<Self, EffectError> {
        let bytes = postcard::to_allocvec(payload).map_err(unhashable)?;
        // postcard writes an enum's variant as its index (a varint), then the content.
        let (_variant, content) = postcard::take_from_bytes::<u32>(&bytes).map_err(unhashable)?;
        Ok(Self(xxhash_rust::xxh3::xxh3_128(content).to_be_bytes()))
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

impl<C: Consumer + ?Sized> Event<'_, C> {
    /// The event as its effect is keyed: [`Self::idempotency_key`], and the hash of the payload as
    /// the rule read it, which a later delivery of the same key must match
    /// ([`crate::idempotency`]).
    pub fn effect_key(&self) -> Result<EffectKey<'_>, EffectError> {
        Ok(EffectKey {
            key: self.idempotency_key(),
            payload_hash: Some(PayloadHash::of_variant(&self.payload)?),
        })
    }
}

/// Why a payload could not be hashed.
fn unhashable(e: postcard::Error) -> EffectError {
    EffectError::bad_data(format!("the payload cannot be hashed: {e}"))
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

/// What claiming an event came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The event is ours to perform.
    Claimed(Lease),
    /// The effect was already performed.
    AlreadyDone,
    /// An earlier delivery performed the effect and got no answer: nobody knows whether it
    /// happened (`UNKNOWN`). It is never repeated; the record is captured (again, if its first
    /// capture failed) for a person to check.
    Unknown,
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
    /// still holds it. Later claims answer [`Claim::AlreadyDone`] after `DONE`, [`Claim::Unknown`]
    /// after `UNKNOWN`.
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

/// Proof of a claim: only its holder may complete or release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// A token unique to this claim.
    pub token: String,
}

impl Lease {
    /// A new lease with a token unique within and across processes: this process's start (its
    /// first lease's time, in nanoseconds) and id, then a count.
    pub fn new() -> Self {
        static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let prefix = PREFIX.get_or_init(|| {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            format!("{nanos:x}-{:x}", std::process::id())
        });
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self {
            token: format!("{prefix}-{n:x}"),
        }
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
        // Never repeated, and captured: the capture of the delivery that marked it may have failed
        // (a poison sink that captures once sends it once all the same).
        Claim::Unknown => return Err(unknown("an earlier delivery got no answer")),
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
            Err(unknown(&err.to_string()))
        }
        Err(err) => {
            if let Err(release) = ledger.release(key, &lease).await {
                tracing::warn!(error = ?release, "could not release the claim; it expires with its lease");
            }
            Err(err)
        }
    }
}

/// The error of an effect whose outcome is unknown, for `why`: permanent, so the record is
/// captured, never retried.
fn unknown(why: &str) -> EffectError {
    EffectError::permanent(format!(
        "outcome unknown, not repeated to avoid a duplicate: {why}"
    ))
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
        let identity = stream_identity(record.shard_id.as_deref(), seq, record.sub_sequence_number);
        let key = format!("poison#{identity}");
        let lease = match self.ledger.claim(&EffectKey::bare(key.as_str())).await? {
            Claim::Claimed(lease) => lease,
            // A capture has no payload to compare: never reused.
            Claim::AlreadyDone | Claim::Unknown | Claim::Reused => return Ok(()),
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

    /// The hash is of the payload as the rule read it, in postcard's encoding: however the
    /// producer wrote it, and of a variant's content only. The digest is pinned: hashes are
    /// stored, and a change here makes every stored one read as another payload's.
    #[test]
    fn payload_hash_is_of_what_the_rule_read() {
        #[derive(serde::Serialize)]
        struct Line {
            sku: &'static str,
            quantity: u64,
        }
        #[derive(serde::Serialize)]
        struct Order {
            order_id: &'static str,
            user_id: &'static str,
            email: &'static str,
            items: Vec<Line>,
            total: &'static str,
        }
        #[derive(serde::Serialize)]
        enum Read {
            #[allow(dead_code)]
            First(u8),
            Second(Order),
        }
        let order = || Order {
            order_id: "o-1",
            user_id: "u-1",
            email: "a@b.co",
            items: vec![Line {
                sku: "p",
                quantity: 2,
            }],
            total: "9.50",
        };
        let hash = PayloadHash::of(&order()).unwrap();
        // postcard: each string as its length and bytes, each number and count a varint.
        let encoded = b"\x03o-1\x03u-1\x06a@b.co\x01\x01p\x02\x049.50";
        assert_eq!(
            hash.to_string(),
            format!("{:032x}", xxhash_rust::xxh3::xxh3_128(encoded))
        );
        assert_eq!(hash.to_string(), "411708cb4848289ce220038bdb67f19a");
        assert_eq!(
            PayloadHash::of_variant(&Read::Second(order())).unwrap(),
            hash
        );
        let other = PayloadHash::of(&Order {
            total: "9.51",
            ..order()
        })
        .unwrap();
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

    /// Each lease has its own token; one process, one prefix.
    #[test]
    fn leases_are_unique() {
        let (a, b) = (Lease::new().token, Lease::new().token);
        assert_eq!(a.split('-').count(), 3, "{a}");
        assert_ne!(a, b, "each lease has its own token");
        let process = |t: &str| t.rsplit_once('-').map(|(p, _)| p.to_owned());
        assert_eq!(process(&a), process(&b), "one process, one prefix");
    }
    use crate::fakes::FakeLedger;

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

    /// An effect that got no answer is marked unknown and never performed again; every later
    /// delivery is captured as poison (its first capture may have failed), never a duplicate.
    #[tokio::test]
    async fn an_unknown_outcome_is_never_repeated_and_always_captured() {
        let ledger = FakeLedger::default();
        let mut runs = 0;
        for _ in 0..3 {
            let err = once(&ledger, &EffectKey::bare("k"), || {
                runs += 1;
                async {
                    let mut e = EffectError::retryable("the send got no answer");
                    e.set_ambiguous();
                    Err(e)
                }
            })
            .await
            .unwrap_err();
            assert_eq!(err.class(), ErrorClass::Permanent);
            assert!(err.to_string().contains("outcome unknown"), "{err}");
        }
        assert_eq!(runs, 1);
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

    /// A poison record redelivered three times is sent to the inner sink once; when the inner sink
    /// fails, the claim is given back and the next delivery sends it.
    #[tokio::test]
    async fn poison_is_captured_once() {
        use crate::fakes::FakePoisonSink;
        let sink = OncePoisonSink::new(FakePoisonSink::default(), FakeLedger::default());
        let record = PoisonRecord {
            function: "f".into(),
            scope: String::new(),
            event_source_arn: None,
            shard_id: Some("shardId-0".into()),
            partition_key: Some("k".into()),
            sequence_number: Some("7".into()),
            sub_sequence_number: None,
            data: "eA==".into(),
            reason: "bad".into(),
            cause: crate::engine::consumer::PoisonCause::Data,
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
