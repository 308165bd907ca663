//! The `OnFailure` invocation record: what Lambda sends when it discards records, in Lambda's
//! own JSON shape (the Lambda developer guide, "Retain discarded batch records for a Kinesis
//! Data Streams event source").
//!
//! - SQS and SNS destinations get the metadata only: the condition, the shard and the range of
//!   sequence numbers. The records stay in the stream, until its retention passes.
//! - S3 destinations get the metadata and, under `payload`, the invocation event itself: the
//!   batch's records with their data. We write `payload` as a JSON string holding the event (our
//!   readers accept an object too). The object key is
//!   `aws/lambda/<mapping-uuid>/<shardId>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<uuid>`.

use serde::{Deserialize, Deserializer, Serialize};
use shared::time::iso_millis as iso;

/// Why records were discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// `MaximumRetryAttempts` ran out.
    RetryAttemptsExhausted,
    /// `MaximumRecordAgeInSeconds` passed.
    RecordAgeExceeded,
}

impl Condition {
    /// Lambda's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RetryAttemptsExhausted => "RetryAttemptsExhausted",
            Self::RecordAgeExceeded => "RecordAgeExceeded",
        }
    }
}

/// Lambda's `OnFailure` invocation record of a Kinesis source: the one definition of it, which the
/// local mapping writes and the operator's tool (`tools/fanout`) reads, from the local stack or
/// from AWS. What a reader does not need may be missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OnFailure {
    /// The invocation that gave up.
    #[serde(default)]
    pub request_context: RequestContext,
    /// Its last answer, when an invocation answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_context: Option<ResponseContext>,
    /// The record's version (`1.0`).
    #[serde(default)]
    pub version: String,
    /// When it was written.
    #[serde(default)]
    pub timestamp: String,
    /// The discarded records: the shard and the range of sequence numbers.
    #[serde(rename = "KinesisBatchInfo")]
    pub batch: BatchInfo,
    /// S3 destinations only: the invocation event of the discarded records, as JSON text (a
    /// writer that puts the object itself is read as its text).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "json_text"
    )]
    pub payload: Option<String>,
}

/// The invocation an `OnFailure` record is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext {
    /// Its id.
    #[serde(default)]
    pub request_id: String,
    /// The function.
    #[serde(default)]
    pub function_arn: String,
    /// Why the records were discarded ([`Condition`]'s names).
    #[serde(default)]
    pub condition: String,
    /// How many times the batch was invoked.
    #[serde(default)]
    pub approximate_invoke_count: u64,
}

/// The last answer of the invocation an `OnFailure` record is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseContext {
    /// The HTTP status of the invoke.
    pub status_code: u16,
    /// The version that ran.
    pub executed_version: String,
    /// `Unhandled` when the function failed as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_error: Option<String>,
}

/// The discarded records of an `OnFailure` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchInfo {
    /// The shard.
    pub shard_id: String,
    /// The first record's sequence number.
    pub start_sequence_number: String,
    /// The last record's sequence number.
    pub end_sequence_number: String,
    /// When the first record arrived.
    #[serde(default)]
    pub approximate_arrival_of_first_record: String,
    /// When the last record arrived.
    #[serde(default)]
    pub approximate_arrival_of_last_record: String,
    /// How many records.
    #[serde(default)]
    pub batch_size: u64,
    /// The stream.
    #[serde(default)]
    pub stream_arn: String,
}

impl OnFailure {
    /// The function's name, from its ARN (`arn:aws:lambda:REGION:ACCOUNT:function:NAME`).
    pub fn function_name(&self) -> &str {
        let arn = &self.request_context.function_arn;
        arn.split_once(":function:").map_or(arn, |(_, name)| name)
    }

    /// The stream's name, from its ARN (`arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`).
    pub fn stream_name(&self) -> Option<&str> {
        self.batch
            .stream_arn
            .split_once(":stream/")
            .map(|(_, name)| name)
    }
}

/// A JSON value as its text: a string as it is, anything else written out.
fn json_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(
        match Option::<serde_json::Value>::deserialize(deserializer)? {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(text)) => Some(text),
            Some(other) => Some(other.to_string()),
        },
    )
}

/// One invocation record, as the local mapping writes it.
#[derive(Debug, Clone)]
pub struct FailureRecord {
    /// The record (what SQS and SNS get, without the payload).
    pub record: OnFailure,
    /// The invocation event of the discarded records (what S3 also gets).
    pub payload: Vec<u8>,
    /// The mapping's id.
    pub uuid: String,
    /// When (epoch milliseconds).
    pub at_ms: i64,
}

impl FailureRecord {
    /// `record`, with the invocation event of its records (`payload`), written at `at_ms` by the
    /// mapping `uuid`.
    pub fn new(record: OnFailure, payload: Vec<u8>, uuid: String, at_ms: i64) -> Self {
        Self {
            record,
            payload,
            uuid,
            at_ms,
        }
    }

    /// The shard.
    pub fn shard_id(&self) -> &str {
        &self.record.batch.shard_id
    }

    /// The SQS (and SNS) message body: the metadata.
    pub fn message(&self) -> String {
        serde_json::to_string(&self.record).unwrap_or_default()
    }

    /// The S3 object's body: the metadata and the invocation event under `payload`.
    pub fn object(&self) -> String {
        let full = OnFailure {
            payload: Some(String::from_utf8_lossy(&self.payload).into_owned()),
            ..self.record.clone()
        };
        serde_json::to_string(&full).unwrap_or_default()
    }

    /// The S3 object's key.
    pub fn object_key(&self) -> String {
        let stamp = iso(self.at_ms);
        // 2026-11-30T04:24:16.123Z -> 2026/11/30 and 2026-11-30T04.24.16
        let (date, time) = stamp.split_once('T').unwrap_or((&stamp, ""));
        let time = time.get(..8).unwrap_or("").replace(':', ".");
        format!(
            "aws/lambda/{}/{}/{}/{}T{}-{}",
            self.uuid,
            self.shard_id(),
            date.replace('-', "/"),
            date,
            time,
            uuid::Uuid::new_v4()
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// What SQS gets (the metadata), what S3 gets (with the payload, as a JSON string), and where.
    #[test]
    fn shapes() {
        let record = OnFailure {
            request_context: RequestContext {
                request_id: "r".into(),
                function_arn: "arn:aws:lambda:us-east-1:123456789012:function:f".into(),
                condition: Condition::RetryAttemptsExhausted.as_str().into(),
                approximate_invoke_count: 3,
            },
            response_context: None,
            version: "1.0".into(),
            timestamp: iso(1_795_000_001_500),
            batch: BatchInfo {
                shard_id: "shardId-000000000001".into(),
                start_sequence_number: "10".into(),
                end_sequence_number: "12".into(),
                approximate_arrival_of_first_record: iso(1_795_000_000_250),
                approximate_arrival_of_last_record: iso(1_795_000_001_500),
                batch_size: 3,
                stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/s".into(),
            },
            payload: None,
        };
        let f = FailureRecord::new(
            record,
            b"{\"Records\":[]}".to_vec(),
            "u-1".into(),
            1_795_000_001_500,
        );
        let m: Value = serde_json::from_str(&f.message()).unwrap();
        assert_eq!(m["requestContext"]["condition"], "RetryAttemptsExhausted");
        assert_eq!(m["requestContext"]["approximateInvokeCount"], 3);
        assert_eq!(m["KinesisBatchInfo"]["startSequenceNumber"], "10");
        assert_eq!(m["KinesisBatchInfo"]["batchSize"], 3);
        assert_eq!(
            m["KinesisBatchInfo"]["approximateArrivalOfFirstRecord"],
            "2026-11-18T11:06:40.250Z"
        );
        assert!(m.get("payload").is_none(), "SQS gets metadata only");
        assert!(m.get("responseContext").is_none(), "no invocation answered");
        let o: Value = serde_json::from_str(&f.object()).unwrap();
        assert_eq!(o["payload"], "{\"Records\":[]}");
        let key = f.object_key();
        assert!(
            key.starts_with("aws/lambda/u-1/shardId-000000000001/2026/11/18/2026-11-18T11.06.41-"),
            "{key}"
        );
        assert_eq!(key.split('/').count(), 8, "{key}");
    }

    /// A record reads back as written, and as other writers write it: the payload as an object,
    /// fields missing that a reader does not need.
    #[test]
    fn reads_back() {
        let text = r#"{"KinesisBatchInfo":{"shardId":"s-1","startSequenceNumber":"1","endSequenceNumber":"2","streamArn":"arn:aws:kinesis:us-east-1:1:stream/orders"},"requestContext":{"functionArn":"arn:aws:lambda:us-east-1:1:function:f:live","condition":"RecordAgeExceeded"},"payload":{"Records":[]}}"#;
        let record: OnFailure = serde_json::from_str(text).unwrap();
        assert_eq!(record.batch.shard_id, "s-1");
        assert_eq!(record.function_name(), "f:live");
        assert_eq!(record.stream_name(), Some("orders"));
        assert_eq!(record.payload.as_deref(), Some(r#"{"Records":[]}"#));
        let again: OnFailure =
            serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap();
        assert_eq!(again, record);
    }
}
