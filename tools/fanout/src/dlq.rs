//! `fanout dlq` and `fanout redrive`: what the dead-letter queue and the failure bucket hold, and
//! putting it back on the stream.
//!
//! The queue holds poison records as the functions captured them (whole, or with a pointer to the
//! failure bucket when too large for a message), and `OnFailure` batches the event source mapping
//! gave up on (metadata only: their records are read back from the stream while it still holds
//! them). The bucket holds batches given up on whole. A redrive puts records back with their
//! partition keys, each key's in order, then deletes what it put back, and only that.
//!
//! A poison record whose data is what is wrong (its `cause` is `data`) fails again the same way:
//! a redrive keeps it unless `--all`. An email whose send got no answer is marked `UNKNOWN` in the
//! idempotency table, so that it is never sent twice by accident: redriving its poison record
//! says to send it, so the entry is forgotten first (unless `--keep-unknown`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Duration;

use local_esm::failure::OnFailure;
use producer::publisher::Record;
use shared::adapters::dlq::PoisonMessage;
use shared::adapters::{DynamoLedger, LedgerSettings};
use shared::input::batch::{compare_sequence_numbers, sequence_order};
use shared::{PoisonCause, PoisonRecord};

use crate::bucket::{self, FailureObject};
use crate::queue::{self, Held, Kind, Received};
use crate::stream::Streams;

/// How long a listing hides what it holds, should it be killed before it gives them back.
const LIST_HIDE: Duration = Duration::from_secs(30);
/// How long a redrive may work on what it holds before another look sees them again.
const REDRIVE_HIDE: Duration = Duration::from_secs(300);

/// Writes a line to standard output; a closed pipe is not an error (the work goes on, and what
/// the tool holds is given back all the same).
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Where the failures are, and the clients to reach them.
pub struct Place {
    /// The queue's URL (`DLQ_URL`).
    pub queue: Option<String>,
    /// How the queue is shown: its URL, or its name on the local stack.
    pub queue_label: String,
    /// The failure bucket (`FAILURE_BUCKET`).
    pub bucket: Option<String>,
    /// The stream records go back on when nothing else names one (`STREAM_NAME`).
    pub stream: String,
    /// The idempotency ledger (`IDEMPOTENCY_TABLE`), to forget outcomes never known.
    pub ledger: Option<LedgerSettings>,
    /// The clients.
    pub sqs: aws_sdk_sqs::Client,
    /// The S3 client.
    pub s3: aws_sdk_s3::Client,
    /// The DynamoDB client.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// The stream's client.
    pub streams: Streams,
}

/// Which failures `--from` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum From {
    /// The queue and the bucket.
    All,
    /// The dead-letter queue.
    Queue,
    /// The failure bucket.
    Bucket,
}

/// What a redrive takes: everything chosen (`--only-reason`, `--sequence`), less what would fail
/// again (unless `--all`); `--dry-run` changes nothing.
#[derive(Debug, Clone, Default)]
pub struct Choice {
    /// Change nothing; say what would be done.
    pub dry_run: bool,
    /// Only poison records whose reason holds this (and batches whose condition does).
    pub only_reason: Option<String>,
    /// Only these sequence numbers (and batches whose range holds one).
    pub sequences: Vec<String>,
    /// Also what would fail again.
    pub all: bool,
    /// Keep the `UNKNOWN` entries of redriven poison records.
    pub keep_unknown: bool,
}

impl Choice {
    fn reason_chosen(&self, reason: &str) -> bool {
        self.only_reason
            .as_ref()
            .is_none_or(|text| reason.to_lowercase().contains(&text.to_lowercase()))
    }

    /// Whether a poison record is chosen.
    fn record(&self, r: &PoisonRecord) -> bool {
        self.reason_chosen(&r.reason)
            && (self.sequences.is_empty()
                || r.sequence_number
                    .as_ref()
                    .is_some_and(|s| self.sequences.contains(s)))
    }

    /// Whether a batch is chosen: its condition, and a sequence number in its range.
    fn batch(&self, b: &OnFailure) -> bool {
        let within = |s: &String| {
            s.bytes().all(|c| c.is_ascii_digit())
                && compare_sequence_numbers(s, &b.batch.start_sequence_number).is_ge()
                && compare_sequence_numbers(s, &b.batch.end_sequence_number).is_le()
        };
        self.reason_chosen(&b.request_context.condition)
            && (self.sequences.is_empty() || self.sequences.iter().any(within))
    }
}

fn plural(n: usize, word: &str, words: &str) -> String {
    format!("{n} {}", if n == 1 { word } else { words })
}

/// Why a poison record would fail again if put back as it is, or `None`.
fn fails_again(r: &PoisonRecord) -> Option<&'static str> {
    (r.cause == PoisonCause::Data).then_some("its data is what is wrong")
}

/// A poison record's place in the stream, as the listing shows it.
fn position(r: &PoisonRecord) -> String {
    let sub = r
        .sub_sequence_number
        .map(|s| format!("/{s}"))
        .unwrap_or_default();
    format!(
        "{} seq {}{sub}",
        r.shard_id.as_deref().unwrap_or("no shard"),
        r.sequence_number.as_deref().unwrap_or("none")
    )
}

/// A batch, as the listing shows it.
fn describe_batch(b: &OnFailure) -> String {
    format!(
        "{}: {}, stream {} {} seq {}..{}, batchSize {}",
        b.function_name(),
        b.request_context.condition,
        b.stream_name().unwrap_or(&b.batch.stream_arn),
        b.batch.shard_id,
        b.batch.start_sequence_number,
        b.batch.end_sequence_number,
        b.batch.batch_size
    )
}

/// `fanout dlq`: every message of the queue (given back before anything is printed, so that a
/// listing never hides one), then the failure bucket's records.
pub async fn list(place: &Place, from: From) -> Result<(), String> {
    if from != From::Bucket {
        let url = place.queue.as_deref().ok_or(NO_QUEUE)?;
        let mut held = Held::receive_all(&place.sqs, url, LIST_HIDE).await?;
        held.give_back().await;
        print_queue(place, held.messages());
    }
    if from != From::Queue {
        if let Some(bucket) = &place.bucket {
            let objects = bucket::objects(&place.s3, bucket).await?;
            say!(
                "{} in s3://{bucket}/{}",
                plural(objects.len(), "failure record", "failure records"),
                bucket::PREFIX
            );
            for object in objects {
                match &object.batch {
                    Some((record, records)) => say!(
                        "- batch from {}: {} kept\n    {}",
                        describe_batch(record),
                        plural(records.len(), "record", "records"),
                        object.key
                    ),
                    None => say!("- unrecognised object {}", object.key),
                }
            }
        }
    }
    Ok(())
}

const NO_QUEUE: &str = "set DLQ_URL (the dead-letter queue's URL)";

fn print_queue(place: &Place, messages: &[Received]) {
    let count = |f: fn(&Kind) -> bool| messages.iter().filter(|m| f(&m.kind)).count();
    let poison = count(|k| matches!(k, Kind::Poison(_)));
    let batches = count(|k| matches!(k, Kind::OnFailure(_)));
    let other = count(|k| matches!(k, Kind::Other(_)));
    let mut kinds = vec![
        plural(poison, "poison record", "poison records"),
        plural(batches, "OnFailure batch", "OnFailure batches"),
    ];
    if other > 0 {
        kinds.push(format!("{other} unrecognised"));
    }
    let what = if messages.is_empty() {
        String::new()
    } else {
        format!(": {}", kinds.join(", "))
    };
    say!(
        "{} in {}{what}",
        plural(messages.len(), "message", "messages"),
        place.queue_label
    );
    for m in messages {
        match &m.kind {
            Kind::Poison(p) => {
                let r = &p.record;
                let size = match &p.s3_pointer {
                    Some(s3) => format!("{} bytes in s3://{}/{}", s3.size, s3.bucket, s3.key),
                    None => format!("{} base64 chars", r.data.len()),
                };
                let key = match &r.partition_key {
                    Some(k) => format!("key '{k}'"),
                    None => "no partition key".into(),
                };
                say!(
                    "- poison record from {}: {} {key}, {size}\n    {}",
                    r.function,
                    position(r),
                    r.reason
                );
                match (fails_again(r), r.cause) {
                    (Some(why), _) => {
                        say!("    (redrive keeps it unless --all: {why}, so it would fail again)")
                    }
                    (None, PoisonCause::Unknown) => {
                        say!("    (its cause was not recorded: captured by an earlier release)")
                    }
                    _ => {}
                }
            }
            Kind::OnFailure(b) => say!("- OnFailure batch from {}", describe_batch(b)),
            Kind::Other(text) => {
                let cut: String = text.chars().take(200).collect();
                let more = if cut.len() < text.len() { "..." } else { "" };
                say!("- unrecognised message: {cut}{more}")
            }
        }
    }
}

/// `fanout redrive`: the queue's poison records and `OnFailure` batches, then the bucket's.
pub async fn redrive(
    place: &Place,
    from: From,
    stream: Option<&str>,
    choice: &Choice,
) -> Result<(), String> {
    if from != From::Bucket {
        let url = place.queue.as_deref().ok_or(NO_QUEUE)?;
        let mut held = Held::receive_all(&place.sqs, url, REDRIVE_HIDE).await?;
        let done = tokio::select! {
            done = redrive_queue(place, &mut held, stream, choice) => done.map(|()| false),
            _ = tokio::signal::ctrl_c() => Ok(true),
        };
        // Whatever was not put back shows again at once, for the next look.
        held.give_back().await;
        if done? {
            std::process::exit(130);
        }
    }
    if from != From::Queue {
        match &place.bucket {
            Some(bucket) => redrive_bucket(place, bucket, stream, choice).await?,
            None if from == From::Bucket => {
                return Err("set FAILURE_BUCKET (the failure bucket's name)".into())
            }
            None => {}
        }
    }
    Ok(())
}

/// The poison records of the queue, by their identity in the stream (several functions may have
/// captured one record), and its `OnFailure` batches by their range (one per function whose
/// mapping gave up on it).
type Groups<'a, K, T> = BTreeMap<K, (T, Vec<&'a Received>)>;

/// A batch's range: its stream, its shard, its first and last sequence numbers.
type Range = (String, String, String, String);

/// The range of a batch an event source mapping gave up on.
fn range(b: &OnFailure) -> Range {
    (
        b.batch.stream_arn.clone(),
        b.batch.shard_id.clone(),
        b.batch.start_sequence_number.clone(),
        b.batch.end_sequence_number.clone(),
    )
}

async fn redrive_queue(
    place: &Place,
    held: &mut Held,
    stream: Option<&str>,
    choice: &Choice,
) -> Result<(), String> {
    let messages = held.messages().to_vec();
    let mut poison: Groups<'_, (String, usize, String, Option<u64>), PoisonMessage> =
        BTreeMap::new();
    let mut batches: Groups<'_, Range, OnFailure> = BTreeMap::new();
    let mut others = Vec::new();
    for m in &messages {
        match &m.kind {
            Kind::Poison(p) => {
                let r = &p.record;
                // In stream order: each key's records go back in their order.
                let (digits, seq) = sequence_order(r.sequence_number.as_deref().unwrap_or(""));
                let order = (
                    r.shard_id.clone().unwrap_or_default(),
                    digits,
                    seq.to_owned(),
                    r.sub_sequence_number,
                );
                poison
                    .entry(order)
                    .or_insert_with(|| ((**p).clone(), Vec::new()))
                    .1
                    .push(m);
            }
            Kind::OnFailure(b) => {
                batches
                    .entry(range(b))
                    .or_insert_with(|| ((**b).clone(), Vec::new()))
                    .1
                    .push(m);
            }
            Kind::Other(_) => others.push(m),
        }
    }
    let (mut redriven, mut kept_again, mut not_chosen) = (0, 0, 0);
    let target = stream.unwrap_or(&place.stream);
    if place.ledger.is_none() && !choice.keep_unknown && !choice.dry_run && !poison.is_empty() {
        say!(
            "note: IDEMPOTENCY_TABLE is not set, so the UNKNOWN outcomes of redriven poison records \
             are not forgotten, and the functions take them for done; set it to have them act"
        );
    }

    // Poison records: what goes back, then it goes back in one publish, then its messages go.
    let mut going: Vec<(Record, &PoisonMessage, &Vec<&Received>)> = Vec::new();
    for (message, group) in poison.values() {
        let r = &message.record;
        let what = format!("poison record {}", position(r));
        if !choice.record(r) {
            not_chosen += 1;
            continue;
        }
        if let Some(why) = fails_again(r).filter(|_| !choice.all) {
            kept_again += 1;
            say!(
                "kept {what}: {why} ({}), so it would fail again; --all puts it back anyway",
                r.reason
            );
            continue;
        }
        if choice.dry_run {
            redriven += 1;
            say!("would redrive {what} into {target}: {}", r.reason);
            continue;
        }
        let whole = match &message.s3_pointer {
            None => r.clone(),
            Some(s3) => {
                let read = bucket::read(&place.s3, &s3.bucket, &s3.key)
                    .await
                    .and_then(|body| {
                        serde_json::from_slice::<PoisonRecord>(&body).map_err(|e| e.to_string())
                    });
                match read {
                    Ok(whole) => whole,
                    Err(e) => {
                        say!(
                            "kept {}: its body in s3://{}/{} cannot be read ({e})",
                            position(r),
                            s3.bucket,
                            s3.key
                        );
                        continue;
                    }
                }
            }
        };
        let Ok(data) = base64_simd::STANDARD.decode_to_vec(&whole.data) else {
            say!(
                "kept {}: its data is missing or was never base64, so it cannot go back on the \
                 stream",
                position(r)
            );
            continue;
        };
        let partition_key = whole
            .partition_key
            .clone()
            .unwrap_or_else(|| "redrive".into());
        if !choice.keep_unknown {
            forget_unknown(place, &whole, group).await?;
        }
        going.push((
            Record {
                partition_key,
                data,
            },
            message,
            group,
        ));
    }
    let records: Vec<Record> = going.iter().map(|(r, _, _)| r.clone()).collect();
    let outcomes = if records.is_empty() {
        Vec::new()
    } else {
        place.streams.put_back(target, &records).await
    };
    for ((_, message, group), outcome) in going.iter().zip(outcomes) {
        if let Err(e) = outcome {
            say!(
                "kept poison record {}: putting it back on {target} failed ({e}); the functions' \
                 idempotency makes a second redrive harmless",
                position(&message.record)
            );
            continue;
        }
        held.delete(group).await?;
        if let Some(s3) = &message.s3_pointer {
            bucket::delete(&place.s3, &s3.bucket, &s3.key).await?;
        }
        redriven += 1;
        say!(
            "redrove poison record {} ({}) into {target}",
            position(&message.record),
            plural(group.len(), "message", "messages")
        );
    }

    // OnFailure batches: each range read back from its shard, and put back.
    for (batch, group) in batches.values() {
        let into = stream
            .or_else(|| batch.stream_name())
            .unwrap_or(&place.stream);
        let what = format!(
            "OnFailure batch {into} {} seq {}..{} ({})",
            batch.batch.shard_id,
            batch.batch.start_sequence_number,
            batch.batch.end_sequence_number,
            plural(group.len(), "message", "messages")
        );
        if !choice.batch(batch) {
            not_chosen += 1;
            continue;
        }
        if choice.dry_run {
            redriven += 1;
            say!("would redrive {what}");
            continue;
        }
        let records = match place
            .streams
            .read_range(
                into,
                &batch.batch.shard_id,
                &batch.batch.start_sequence_number,
                &batch.batch.end_sequence_number,
            )
            .await
        {
            Ok(records) => records,
            Err(why) => {
                say!("kept {what}: {why}; it cannot be redriven from the stream");
                continue;
            }
        };
        if let Err(e) = place.streams.put_all_back(into, &records).await {
            say!(
                "kept {what}: putting its records back failed ({e}); redriving it again replays \
                 the whole range, which the functions' idempotency makes harmless"
            );
            continue;
        }
        held.delete(group).await?;
        redriven += 1;
        say!(
            "redrove {what}: {} put back into {into}",
            plural(records.len(), "record", "records")
        );
    }
    for m in &others {
        say!(
            "kept message {}: neither a poison record nor an OnFailure batch",
            m.id
        );
    }
    let total = poison.len() + batches.len() + others.len();
    let mut also = Vec::new();
    if kept_again > 0 {
        also.push(format!("{kept_again} kept (they would fail again)"));
    }
    if not_chosen > 0 {
        also.push(format!("{not_chosen} not chosen"));
    }
    if choice.dry_run {
        let also: String = also.iter().map(|a| format!(", {a}")).collect();
        say!("dry run: {redriven} of {total} in the queue would be redriven{also}; nothing was changed");
    } else {
        let also = if also.is_empty() {
            String::new()
        } else {
            format!(" ({})", also.join(", "))
        };
        say!(
            "{redriven} redriven (poison records and OnFailure batches), {} left in the queue{also}",
            total - redriven
        );
    }
    Ok(())
}

/// Forgets the `UNKNOWN` idempotency entries of a poison record about to be redriven, under the
/// scope of each function that captured it, so that they act on it.
async fn forget_unknown(
    place: &Place,
    record: &PoisonRecord,
    group: &[&Received],
) -> Result<(), String> {
    let (Some(settings), Some(key)) = (&place.ledger, record.idempotency_key()) else {
        return Ok(());
    };
    let scopes: BTreeSet<&str> = group
        .iter()
        .filter_map(|m| match &m.kind {
            Kind::Poison(p) => Some(p.record.scope()),
            _ => None,
        })
        .collect();
    for scope in scopes {
        DynamoLedger::new(place.dynamodb.clone(), settings.clone(), scope)
            .forget_unknown(&key)
            .await
            .map_err(|e| queue::failed("forgetting an UNKNOWN outcome", &e))?;
    }
    Ok(())
}

/// The failure bucket's records: each batch's records put back, in order, then its objects deleted
/// (objects of one range, one per function whose mapping gave up on it, go back once).
async fn redrive_bucket(
    place: &Place,
    bucket: &str,
    stream: Option<&str>,
    choice: &Choice,
) -> Result<(), String> {
    let objects = bucket::objects(&place.s3, bucket).await?;
    let mut batches: BTreeMap<Range, (OnFailure, Vec<Record>, Vec<String>)> = BTreeMap::new();
    for FailureObject { key, batch } in &objects {
        match batch {
            None => say!("kept s3://{bucket}/{key}: not a failure record with its records"),
            Some((record, records)) => {
                batches
                    .entry(range(record))
                    .or_insert_with(|| (record.clone(), records.clone(), Vec::new()))
                    .2
                    .push(key.clone());
            }
        }
    }
    let mut done = 0;
    for (record, records, keys) in batches.values() {
        let into = stream
            .or_else(|| record.stream_name())
            .unwrap_or(&place.stream);
        let what = format!(
            "{} ({})",
            describe_batch(record),
            plural(keys.len(), "object", "objects")
        );
        if !choice.batch(record) {
            continue;
        }
        if choice.dry_run {
            done += keys.len();
            say!(
                "would redrive failure record {what}: {} into {into}",
                plural(records.len(), "record", "records")
            );
            continue;
        }
        if let Err(e) = place.streams.put_all_back(into, records).await {
            say!(
                "kept {what}: putting its records back failed ({e}); redriving it again replays \
                 the whole batch, which the functions' idempotency makes harmless"
            );
            continue;
        }
        for key in keys {
            bucket::delete(&place.s3, bucket, key).await?;
            done += 1;
        }
        say!(
            "redrove failure record {what}: {} put back into {into}",
            plural(records.len(), "record", "records")
        );
    }
    if choice.dry_run {
        say!(
            "dry run: {done} of {} in s3://{bucket} would be redriven; nothing was changed",
            plural(objects.len(), "object", "objects")
        );
    } else {
        say!(
            "{done} objects redriven from s3://{bucket}, {} left there",
            objects.len() - done
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poison(seq: &str, reason: &str, cause: PoisonCause) -> PoisonRecord {
        PoisonRecord {
            function: "f".into(),
            scope: String::new(),
            event_source_arn: None,
            shard_id: Some("s".into()),
            partition_key: Some("k".into()),
            sequence_number: Some(seq.into()),
            sub_sequence_number: None,
            data: String::new(),
            reason: reason.into(),
            cause,
            captured_at_ms: 0,
        }
    }

    /// A redrive takes what is chosen; what would fail again is its data's fault, said by its
    /// cause and never by its reason's words.
    #[test]
    fn what_a_redrive_takes() {
        let everything = Choice::default();
        let effect = poison("101", "SES refused the address", PoisonCause::Effect);
        let data = poison("102", "the payload violates its schema", PoisonCause::Data);
        let unknown = poison("104", "not an event envelope", PoisonCause::Unknown);
        assert!(everything.record(&effect));
        assert_eq!(fails_again(&data), Some("its data is what is wrong"));
        assert_eq!(fails_again(&effect), None);
        assert_eq!(
            fails_again(&unknown),
            None,
            "the words of a reason decide nothing"
        );
        let ses = Choice {
            only_reason: Some("ses".into()),
            ..Choice::default()
        };
        assert!(ses.record(&effect) && !ses.record(&data));
        let one = Choice {
            sequences: vec!["102".into()],
            ..Choice::default()
        };
        assert!(one.record(&data) && !one.record(&effect));
        let batch: OnFailure = serde_json::from_str(r#"{"requestContext":{"condition":"RetryAttemptsExhausted"},"KinesisBatchInfo":{"shardId":"s","startSequenceNumber":"90","endSequenceNumber":"110"}}"#).unwrap();
        assert!(one.batch(&batch), "102 is in 90..110");
        let outside = Choice {
            sequences: vec!["111".into(), "x".into()],
            ..Choice::default()
        };
        assert!(!outside.batch(&batch));
        let age = Choice {
            only_reason: Some("RecordAge".into()),
            ..Choice::default()
        };
        assert!(!age.batch(&batch));
    }
}
