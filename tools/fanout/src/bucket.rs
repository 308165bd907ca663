//! The failure bucket: the batches the event source mapping gave up on, kept whole by its S3
//! `OnFailure` destination (Lambda's record, with the batch's records and their data under
//! `payload`), under `aws/lambda/`.

use local_esm::failure::OnFailure;
use producer::publisher::Record;
use shared::KinesisBatch;

use crate::queue::failed;

/// Where the destination writes its records.
pub const PREFIX: &str = "aws/lambda/";

/// One object of the bucket.
#[derive(Debug, Clone)]
pub struct FailureObject {
    /// Its key.
    pub key: String,
    /// What it holds: a failure record with its records, or `None` when it is not one.
    pub batch: Option<(OnFailure, Vec<Record>)>,
}

/// The records an S3 failure record keeps: its `payload`, the invocation event, read by the
/// one reader of the Lambda event. `None` when it holds none, or one of them cannot be put back
/// (no partition key, no data).
pub fn records_of(record: &OnFailure) -> Option<Vec<Record>> {
    let batch = KinesisBatch::from_slice(record.payload.as_deref()?.as_bytes()).ok()?;
    batch
        .records()
        .map(|r| {
            Some(Record {
                partition_key: r.partition_key()?.to_owned(),
                data: r.data().ok()?.to_vec(),
            })
        })
        .collect()
}

/// The bucket's failure records, oldest key first.
pub async fn objects(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<Vec<FailureObject>, String> {
    let mut keys = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(PREFIX)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| failed("ListObjectsV2", &e))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    keys.sort();
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let body = read(s3, bucket, &key).await?;
        let batch = serde_json::from_slice::<OnFailure>(&body)
            .ok()
            .and_then(|record| records_of(&record).map(|records| (record, records)));
        out.push(FailureObject { key, batch });
    }
    Ok(out)
}

/// An object's body.
pub async fn read(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
    let got = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| failed("GetObject", &e))?;
    let body = got
        .body
        .collect()
        .await
        .map_err(|e| format!("reading s3://{bucket}/{key} failed: {e}"))?;
    Ok(body.into_bytes().to_vec())
}

/// Deletes an object.
pub async fn delete(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<(), String> {
    s3.delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map(drop)
        .map_err(|e| failed("DeleteObject", &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failure record's records come out of its payload, a string or an object, with their keys
    /// and decoded data; a record without a partition key makes the whole batch unreadable.
    #[test]
    fn records_of_a_failure_record() {
        let record = |payload: &str| -> OnFailure {
            serde_json::from_str(&format!(
                r#"{{"KinesisBatchInfo":{{"shardId":"s","startSequenceNumber":"1","endSequenceNumber":"2"}},"payload":{payload}}}"#
            ))
            .unwrap()
        };
        let event = r#"{"Records":[{"kinesis":{"partitionKey":"k1","sequenceNumber":"1","data":"YQ=="}},{"kinesis":{"partitionKey":"k2","sequenceNumber":"2","data":"Yg=="}}]}"#;
        for payload in [serde_json::to_string(event).unwrap(), event.to_owned()] {
            let records = records_of(&record(&payload)).unwrap();
            let read: Vec<(&str, &[u8])> = records
                .iter()
                .map(|r| (r.partition_key.as_str(), r.data.as_slice()))
                .collect();
            assert_eq!(read, [("k1", &b"a"[..]), ("k2", &b"b"[..])]);
        }
        let keyless = r#"{"Records":[{"kinesis":{"sequenceNumber":"1","data":"YQ=="}}]}"#;
        assert!(records_of(&record(keyless)).is_none());
        let none: OnFailure = serde_json::from_str(
            r#"{"KinesisBatchInfo":{"shardId":"s","startSequenceNumber":"1","endSequenceNumber":"2"}}"#,
        )
        .unwrap();
        assert!(records_of(&none).is_none());
    }
}
