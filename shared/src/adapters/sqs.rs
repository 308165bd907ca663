//! [`PoisonSink`] over SQS: the dead-letter queue that keeps each poison record with its payload.
//!
//! Lambda's own `OnFailure` destination for Kinesis sends metadata only, so the functions capture
//! records that can never succeed themselves. Each message body is the [`PoisonRecord`] as JSON:
//! the original base64 data, the partition key, sequence number (and KPL sub-sequence), shard,
//! stream, function, reason and time. A record counts as handled only once SQS has accepted it.
//!
//! A queue takes messages of up to `MaximumMessageSize` (256 KiB by default; SQS allows up to
//! 1 MiB), and a Kinesis record can hold 10 MiB. So a body larger than the limit goes to an S3
//! bucket (`FAILURE_BUCKET`, the failure bucket), under `poison/<function>/<shard>/<sequence>…`,
//! and the message holds a pointer to it (`s3Pointer: {bucket, key}`) with the record's metadata:
//! the extended-client pattern. A record of any size is then captured at once. Without a bucket, a
//! body over the limit is refused by SQS, reported for retry, and ends in the `OnFailure`
//! destination when its retries run out.

use aws_sdk_sqs::types::MessageAttributeValue;

use crate::error::{EffectError, ErrorClass};
use crate::ports::{PoisonRecord, PoisonSink};

/// SQS's default `MaximumMessageSize`: the body size above which a record goes to S3.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

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

fn retryable(
    what: &'static str,
) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> EffectError {
    move |e| EffectError::new(ErrorClass::Retryable, what, Some(e))
}

fn attribute(value: &str) -> Result<MessageAttributeValue, EffectError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| {
            EffectError::new(
                ErrorClass::Retryable,
                "bad message attribute",
                Some(Box::new(e)),
            )
        })
}

impl PoisonSink for SqsPoisonSink {
    async fn capture(&self, record: &PoisonRecord) -> Result<(), EffectError> {
        let body = serde_json::to_string(record).map_err(|e| {
            EffectError::new(
                ErrorClass::Retryable,
                "could not encode the poison record",
                Some(Box::new(e)),
            )
        })?;
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
                    .map_err(|e| {
                        retryable("PutObject of a large poison record failed")(Box::new(e))
                    })?;
                // The message: the record without its data, and where the whole record is.
                let mut pointer = serde_json::to_value(record)
                    .map_err(|e| retryable("could not encode the poison record")(Box::new(e)))?;
                if let Some(fields) = pointer.as_object_mut() {
                    fields.remove("data");
                    fields.insert(
                        "s3Pointer".into(),
                        serde_json::json!({ "bucket": bucket, "key": key, "size": size }),
                    );
                }
                pointer.to_string()
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
            .map_err(|e| {
                EffectError::new(
                    ErrorClass::Retryable,
                    "SendMessage to the dead-letter queue failed",
                    Some(Box::new(e)),
                )
            })?;
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
            event_source_arn: Some("arn:aws:kinesis:us-east-1:1:stream/s".into()),
            shard_id: Some("shardId-000000000000".into()),
            partition_key: Some("k".into()),
            sequence_number: Some("1".into()),
            sub_sequence_number: None,
            data: "bm90IGpzb24=".into(),
            reason: "not an event envelope".into(),
            cause: crate::ports::PoisonCause::Data,
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
