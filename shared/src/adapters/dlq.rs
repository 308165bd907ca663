//! The dead-letter queue: a [`PoisonSink`] over SQS (and S3 for large records) that keeps each
//! poison record with its payload, once.
//!
//! Lambda's own `OnFailure` destination for Kinesis sends metadata only, so the functions capture
//! records that can never succeed themselves. Each message body is the [`PoisonRecord`] as JSON:
//! the original base64 data, the partition key, sequence number (and KPL sub-sequence), shard,
//! stream, function, reason and time. A record counts as handled only once SQS has accepted it.
//!
//! A queue takes messages of up to `MaximumMessageSize` (256 KiB by default; SQS allows up to
//! 1 MiB), and a Kinesis record can hold 10 MiB. So a body larger than the limit goes to an S3
//! bucket (`FAILURE_BUCKET`, the failure bucket), under `poison/<function>/<shard>/<sequence>…`,
//! and the message holds a pointer to it (`s3Pointer: {bucket, key, size}`) with the record's
//! metadata: the extended-client pattern. A record of any size is then captured at once. Without
//! a bucket, a body over the limit is refused by SQS, reported for retry, and ends in the
//! `OnFailure` destination when its retries run out. [`PoisonMessage`] is a message of either
//! kind.

use aws_sdk_sqs::types::MessageAttributeValue;
use serde::{Deserialize, Serialize};

use super::ledger::DynamoLedger;
use crate::engine::consumer::{PoisonRecord, PoisonSink};
use crate::engine::error::{EffectError, ErrorClass};
use crate::engine::idempotency::OncePoisonSink;
use crate::platform::config::{Env, Problems};

/// SQS's default `MaximumMessageSize`: the body size above which a record goes to S3.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// The dead-letter queue's settings.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `DLQ_URL` | required | the SQS queue that keeps poison records with their payload |
/// | `FAILURE_BUCKET` | none | where a poison record too large for a message is kept |
/// | `DLQ_MAX_MESSAGE_BYTES` | 262144 | the queue's `MaximumMessageSize` |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqSettings {
    /// `DLQ_URL`: the queue.
    pub url: String,
    /// `FAILURE_BUCKET`: where a poison record too large for a queue message is kept (none: such
    /// a record is retried until the mapping gives up on it).
    pub failure_bucket: Option<String>,
    /// `DLQ_MAX_MESSAGE_BYTES`: the queue's `MaximumMessageSize`.
    pub max_message_bytes: usize,
}

impl DlqSettings {
    /// Reads the settings, keeping each problem in `problems`.
    pub fn read(env: &Env, problems: &mut Problems) -> Self {
        let url = problems.required(env, "DLQ_URL");
        let max_message_bytes = problems.check(
            env.number(
                "DLQ_MAX_MESSAGE_BYTES",
                MAX_MESSAGE_BYTES,
                4096..=1024 * 1024,
                " of bytes (the queue's MaximumMessageSize)",
            ),
            MAX_MESSAGE_BYTES,
        );
        Self {
            url,
            failure_bucket: env.optional("FAILURE_BUCKET"),
            max_message_bytes,
        }
    }
}

/// The poison sink every function runs with: the queue (and the failure bucket for large
/// records), each record once, as the function's ledger remembers.
pub type DeadLetterQueue = OncePoisonSink<SqsPoisonSink, DynamoLedger>;

/// The dead-letter queue of `settings`, remembering its captures in `ledger`.
pub fn dead_letter_queue(
    settings: &DlqSettings,
    sdk: &aws_config::SdkConfig,
    ledger: DynamoLedger,
) -> DeadLetterQueue {
    let mut sink = SqsPoisonSink::new(aws_sdk_sqs::Client::new(sdk), settings.url.clone());
    if let Some(bucket) = &settings.failure_bucket {
        sink = sink.with_large_bodies(s3_client(sdk), bucket.clone(), settings.max_message_bytes);
    }
    OncePoisonSink::new(sink, ledger)
}

/// An S3 client, addressing buckets by path against a local endpoint (bucket.127.0.0.1 resolves
/// nowhere).
pub fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let s3 = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

/// A message of the dead-letter queue: a poison record, whole, or with a pointer to where it is
/// kept whole (its `data` then empty in the message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoisonMessage {
    /// The record (without its data when it is kept elsewhere).
    #[serde(flatten)]
    pub record: PoisonRecord,
    /// Where the whole record is, when it was too large for a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_pointer: Option<S3Pointer>,
}

/// Where a large poison record is kept whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Pointer {
    /// The bucket.
    pub bucket: String,
    /// The object's key.
    pub key: String,
    /// The whole record's size, in bytes.
    #[serde(default)]
    pub size: usize,
}

/// Room left in a message for its attributes.
const ATTRIBUTES_ROOM: usize = 2 * 1024;

/// Sends poison records to an SQS queue (and large ones to S3, with a pointer in the queue).
#[derive(Debug, Clone)]
pub struct SqsPoisonSink {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    large: Option<(aws_sdk_s3::Client, String)>,
    max_message_bytes: usize,
}

impl SqsPoisonSink {
    /// A sink sending to `queue_url`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String) -> Self {
        Self {
            client,
            queue_url,
            large: None,
            max_message_bytes: MAX_MESSAGE_BYTES,
        }
    }

    /// Bodies over `max_message_bytes` go to `bucket`, with a pointer in the queue.
    pub fn with_large_bodies(
        mut self,
        s3: aws_sdk_s3::Client,
        bucket: String,
        max_message_bytes: usize,
    ) -> Self {
        self.large = Some((s3, bucket));
        self.max_message_bytes = max_message_bytes;
        self
    }

    /// The object key of a large record: one per record and function, so capturing it again
    /// writes the same object.
    fn key(record: &PoisonRecord) -> String {
        let sub = record
            .sub_sequence_number
            .map(|s| format!("-{s}"))
            .unwrap_or_default();
        format!(
            "poison/{}/{}/{}{sub}.json",
            record.function,
            record.shard_id.as_deref().unwrap_or("shard"),
            record.sequence_number.as_deref().unwrap_or("unknown")
        )
    }
}

/// A failure to keep the record: never final, so the record is retried, never dropped.
fn retryable(what: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> EffectError {
    EffectError::new(ErrorClass::Retryable, what, Some(Box::new(e)))
}

fn attribute(value: &str) -> Result<MessageAttributeValue, EffectError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| retryable("bad message attribute", e))
}

impl PoisonSink for SqsPoisonSink {
    async fn capture(&self, record: &PoisonRecord) -> Result<(), EffectError> {
        let body = serde_json::to_string(record)
            .map_err(|e| retryable("could not encode the poison record", e))?;
        let body = match &self.large {
            Some((s3, bucket)) if body.len() + ATTRIBUTES_ROOM > self.max_message_bytes => {
                let key = Self::key(record);
                let size = body.len();
                s3.put_object()
                    .bucket(bucket)
                    .key(&key)
                    .content_type("application/json")
                    .body(body.into_bytes().into())
                    .send()
                    .await
                    .map_err(|e| retryable("PutObject of a large poison record failed", e))?;
                // The message: the record without its data, and where the whole record is.
                let pointer = PoisonMessage {
                    record: PoisonRecord {
                        data: String::new(),
                        ..record.clone()
                    },
                    s3_pointer: Some(S3Pointer {
                        bucket: bucket.clone(),
                        key,
                        size,
                    }),
                };
                serde_json::to_string(&pointer)
                    .map_err(|e| retryable("could not encode the poison record", e))?
            }
            _ => body,
        };
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .message_attributes("function", attribute(&record.function)?)
            .message_attributes("reason", attribute(&record.reason)?)
            .send()
            .await
            // Whatever SQS says, the record is not kept: it must be retried, never dropped.
            .map_err(|e| retryable("SendMessage to the dead-letter queue failed", e))?;
        tracing::warn!(
            partition_key = record.partition_key.as_deref(),
            sequence_number = record.sequence_number.as_deref(),
            reason = %record.reason,
            "poison record sent to the dead-letter queue"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_sqs::operation::send_message::SendMessageOutput;
    use aws_sdk_sqs::Client;
    use aws_smithy_mocks::{mock, mock_client};

    use super::*;

    fn record() -> PoisonRecord {
        PoisonRecord {
            function: "email-notifier".into(),
            scope: String::new(),
            event_source_arn: Some("arn:aws:kinesis:us-east-1:1:stream/s".into()),
            shard_id: Some("shardId-000000000000".into()),
            partition_key: Some("k".into()),
            sequence_number: Some("1".into()),
            sub_sequence_number: None,
            data: "bm90IGpzb24=".into(),
            reason: "not an event envelope".into(),
            cause: crate::engine::consumer::PoisonCause::Data,
            captured_at_ms: 1,
        }
    }

    /// The message is the record as JSON, payload included, with the function and reason as
    /// attributes.
    #[tokio::test]
    async fn send_request_shape() {
        let rule = mock!(Client::send_message)
            .match_requests(|r| {
                let body: serde_json::Value =
                    serde_json::from_str(r.message_body().unwrap()).unwrap();
                let attrs = r.message_attributes().unwrap();
                r.queue_url() == Some("https://sqs.us-east-1.amazonaws.com/1/dlq")
                    && body["data"] == "bm90IGpzb24="
                    && body["partitionKey"] == "k"
                    && body["sequenceNumber"] == "1"
                    && body["shardId"] == "shardId-000000000000"
                    && body["reason"] == "not an event envelope"
                    && attrs["function"].string_value() == Some("email-notifier")
            })
            .then_output(|| SendMessageOutput::builder().message_id("m").build());
        let sink = SqsPoisonSink::new(
            mock_client!(aws_sdk_sqs, [&rule]),
            "https://sqs.us-east-1.amazonaws.com/1/dlq".into(),
        );
        sink.capture(&record()).await.unwrap();
        assert_eq!(rule.num_calls(), 1);
    }

    /// A record over the limit goes to S3, whole; the message holds its metadata and a pointer.
    #[tokio::test]
    async fn large_records_go_to_s3_with_a_pointer() {
        use aws_sdk_s3::operation::put_object::PutObjectOutput;
        let mut big = record();
        big.data = "A".repeat(10_000);
        let put = mock!(aws_sdk_s3::Client::put_object)
            .match_requests(|r| {
                r.bucket() == Some("failures")
                    && r.key() == Some("poison/email-notifier/shardId-000000000000/1.json")
            })
            .then_output(|| PutObjectOutput::builder().build());
        let send = mock!(Client::send_message)
            .match_requests(|r| {
                let body: serde_json::Value =
                    serde_json::from_str(r.message_body().unwrap()).unwrap();
                body.get("data").is_none()
                    && body["s3Pointer"]["bucket"] == "failures"
                    && body["s3Pointer"]["key"]
                        == "poison/email-notifier/shardId-000000000000/1.json"
                    && body["s3Pointer"]["size"].as_u64().unwrap() > 10_000
                    && body["sequenceNumber"] == "1"
                    && body["reason"] == "not an event envelope"
            })
            .then_output(|| SendMessageOutput::builder().message_id("m").build());
        let inline = mock!(Client::send_message)
            .match_requests(|r| r.message_body().is_some_and(|b| b.contains("bm90IGpzb24=")))
            .then_output(|| SendMessageOutput::builder().message_id("m2").build());
        let sink = SqsPoisonSink::new(
            mock_client!(aws_sdk_sqs, [&send, &inline]),
            "https://sqs.us-east-1.amazonaws.com/1/dlq".into(),
        )
        .with_large_bodies(
            mock_client!(aws_sdk_s3, [&put]),
            "failures".into(),
            8 * 1024,
        );
        sink.capture(&big).await.unwrap();
        // A small record stays inline: no object.
        sink.capture(&record()).await.unwrap();
        assert_eq!(inline.num_calls(), 1);
        assert_eq!((put.num_calls(), send.num_calls()), (1, 1));
    }
}
