//! [`PoisonSink`] over SQS: the dead-letter queue that keeps each poison record with its payload.
//!
//! Lambda's own `OnFailure` destination for Kinesis sends metadata only, so the functions capture
//! records that can never succeed themselves. Each message body is the [`PoisonRecord`] as JSON:
//! the original base64 data, the partition key, sequence number (and KPL sub-sequence), shard,
//! stream, function, reason and time. A record counts as handled only once SQS has accepted it.
//!
//! SQS takes messages of up to 256 KiB: a poison record larger than about 190 KiB of data is
//! refused, reported for retry, and ends in the `OnFailure` destination when its retries run out.

use aws_sdk_sqs::types::MessageAttributeValue;

use crate::error::{EffectError, ErrorClass};
use crate::ports::{PoisonRecord, PoisonSink};

/// Sends poison records to an SQS queue.
#[derive(Debug, Clone)]
pub struct SqsPoisonSink {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsPoisonSink {
    /// A sink sending to `queue_url`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String) -> Self {
        Self { client, queue_url }
    }
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
}
