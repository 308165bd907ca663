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

use serde_json::{json, Value};

use crate::mapping::{Source, StreamRecord};

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

/// One invocation record.
#[derive(Debug, Clone)]
pub struct FailureRecord {
    /// The metadata (what SQS and SNS get).
    pub metadata: Value,
    /// The invocation event of the discarded records (what S3 also gets).
    pub payload: Vec<u8>,
    /// The shard.
    pub shard_id: String,
    /// The mapping's id.
    pub uuid: String,
    /// When (epoch milliseconds).
    pub at_ms: i64,
}

use shared::time::iso_millis as iso;

impl FailureRecord {
    /// The record for the discarded `range` (first and last record) of `count` records.
    /// `function_error`: whether the last invocation failed as a whole (`None`: no invocation
    /// answered, as when records expired).
    pub fn new(
        source: &Source,
        condition: Condition,
        invoke_count: u64,
        function_error: Option<bool>,
        range: (&StreamRecord, &StreamRecord),
        count: usize,
        payload: Vec<u8>,
    ) -> Self {
        let at_ms = shared::time::now_ms();
        let mut metadata = json!({
            "requestContext": {
                "requestId": uuid::Uuid::new_v4().to_string(),
                "functionArn": source.function_arn,
                "condition": condition.as_str(),
                "approximateInvokeCount": invoke_count,
            },
            "version": "1.0",
            "timestamp": iso(at_ms),
            "KinesisBatchInfo": {
                "shardId": source.shard_id,
                "startSequenceNumber": range.0.sequence_number,
                "endSequenceNumber": range.1.sequence_number,
                "approximateArrivalOfFirstRecord": iso((range.0.arrival * 1000.0) as i64),
                "approximateArrivalOfLastRecord": iso((range.1.arrival * 1000.0) as i64),
                "batchSize": count,
                "streamArn": source.stream_arn,
            },
        });
        if let (Some(error), Some(m)) = (function_error, metadata.as_object_mut()) {
            let mut response = json!({"statusCode": 200, "executedVersion": "$LATEST"});
            if error {
                response["functionError"] = "Unhandled".into();
            }
            m.insert("responseContext".into(), response);
        }
        Self {
            metadata,
            payload,
            shard_id: source.shard_id.clone(),
            uuid: source.uuid.clone(),
            at_ms,
        }
    }

    /// The SQS (and SNS) message body: the metadata.
    pub fn message(&self) -> String {
        self.metadata.to_string()
    }

    /// The S3 object's body: the metadata and the invocation event under `payload`.
    pub fn object(&self) -> String {
        let mut full = self.metadata.clone();
        full["payload"] = Value::String(String::from_utf8_lossy(&self.payload).into_owned());
        full.to_string()
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
            self.shard_id,
            date.replace('-', "/"),
            date,
            time,
            uuid::Uuid::new_v4()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let source = Source {
            stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/s".into(),
            shard_id: "shardId-000000000001".into(),
            region: "us-east-1".into(),
            function_arn: "arn:aws:lambda:us-east-1:123456789012:function:f".into(),
            uuid: "u-1".into(),
        };
        let r = |seq: &str, t: f64| StreamRecord {
            partition_key: "k".into(),
            sequence_number: seq.into(),
            data: vec![],
            arrival: t,
        };
        let (a, b) = (r("10", 1_795_000_000.25), r("12", 1_795_000_001.5));
        let f = FailureRecord::new(
            &source,
            Condition::RetryAttemptsExhausted,
            3,
            Some(true),
            (&a, &b),
            3,
            b"{\"Records\":[]}".to_vec(),
        );
        let m: Value = serde_json::from_str(&f.message()).unwrap();
        assert_eq!(m["requestContext"]["condition"], "RetryAttemptsExhausted");
        assert_eq!(m["requestContext"]["approximateInvokeCount"], 3);
        assert_eq!(m["responseContext"]["functionError"], "Unhandled");
        assert_eq!(m["KinesisBatchInfo"]["startSequenceNumber"], "10");
        assert_eq!(m["KinesisBatchInfo"]["endSequenceNumber"], "12");
        assert_eq!(m["KinesisBatchInfo"]["batchSize"], 3);
        assert_eq!(
            m["KinesisBatchInfo"]["approximateArrivalOfFirstRecord"],
            "2026-11-18T11:06:40.250Z"
        );
        assert!(m.get("payload").is_none(), "SQS gets metadata only");
        let o: Value = serde_json::from_str(&f.object()).unwrap();
        assert_eq!(o["payload"], "{\"Records\":[]}");
        let key = f.object_key();
        assert!(
            key.starts_with("aws/lambda/u-1/shardId-000000000001/"),
            "{key}"
        );
        let parts: Vec<_> = key.split('/').collect();
        assert_eq!(parts.len(), 8, "{key}");
        assert!(
            parts[7].starts_with(&format!("{}-{}-{}T", parts[4], parts[5], parts[6])),
            "{key}"
        );

        let aged = FailureRecord::new(
            &source,
            Condition::RecordAgeExceeded,
            1,
            None,
            (&a, &a),
            1,
            vec![],
        );
        let m: Value = serde_json::from_str(&aged.message()).unwrap();
        assert_eq!(m["requestContext"]["condition"], "RecordAgeExceeded");
        assert!(m.get("responseContext").is_none());
    }
}
