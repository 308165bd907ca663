//! A reproduction of Lambda's Kinesis event source mapping (ESM), for one shard and one function.
//!
//! It delivers the shard's records in batches of `batch_size`, as the ESM's event JSON, and follows
//! the rules of `esm-semantics.md`:
//! - with a partial batch response it checkpoints at the lowest reported sequence number and
//!   redelivers that record and every later one; an empty, null or unknown `itemIdentifier` fails
//!   the whole batch;
//! - on a function error it retries the batch, split in two when `bisect_on_function_error` is on
//!   (splitting does not consume retries);
//! - after `maximum_retry_attempts` retries without progress (-1: no limit) it discards the records
//!   and moves on, as Lambda does; the test counts them.

use std::future::Future;

use base64::Engine as _;
use serde_json::json;
use shared::aws_lambda_events::event::streams::KinesisEventResponse;

/// One record of the shard.
#[derive(Debug, Clone)]
pub struct ShardRecord {
    /// The partition key.
    pub partition_key: String,
    /// The sequence number.
    pub sequence_number: String,
    /// The data.
    pub data: Vec<u8>,
}

/// The mapping's settings.
#[derive(Debug, Clone)]
pub struct EsmSettings {
    /// The shard's id.
    pub shard_id: String,
    /// Records per batch.
    pub batch_size: usize,
    /// Retries of a batch that makes no progress (-1: unlimited).
    pub maximum_retry_attempts: i64,
    /// Split a batch in two on a function error.
    pub bisect_on_function_error: bool,
}

/// What the mapping did.
#[derive(Debug, Default, Clone)]
pub struct EsmStats {
    /// Invocations.
    pub invocations: u64,
    /// Invocations that failed as a whole (function error or timeout).
    pub function_errors: u64,
    /// Invocations that reported some records.
    pub partial_failures: u64,
    /// Batches split in two.
    pub bisections: u64,
    /// Records delivered again after a failure.
    pub redelivered: u64,
    /// Records discarded when retries ran out (sequence numbers).
    pub discarded: Vec<String>,
}

/// A function the mapping invokes: the event JSON in, the response or a function error out.
pub trait Consumer {
    /// One invocation.
    fn invoke(&self, event: Vec<u8>) -> impl Future<Output = Result<KinesisEventResponse, String>>;
}

/// The ESM event JSON of some records.
pub fn event_json(shard_id: &str, records: &[ShardRecord]) -> Vec<u8> {
    let records: Vec<_> = records
        .iter()
        .map(|r| {
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number,
                    "data": base64::engine::general_purpose::STANDARD.encode(&r.data),
                    "approximateArrivalTimestamp": 1795000000.123
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{shard_id}:{}", r.sequence_number),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/order-consumers",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/order-events"
            })
        })
        .collect();
    json!({ "Records": records }).to_string().into_bytes()
}

/// Delivers the whole shard to `consumer`, until every record is checkpointed or discarded.
pub async fn drive<C: Consumer>(
    shard: &[ShardRecord],
    settings: &EsmSettings,
    consumer: &C,
) -> EsmStats {
    let mut stats = EsmStats::default();
    let mut next = 0; // the first record after the checkpoint that no batch covers yet
    let mut waiting: Vec<(usize, usize)> = Vec::new(); // the second halves of split batches
    let mut current: Option<(usize, usize, i64)> = None; // a batch being retried, with its attempts
    loop {
        let (start, end, attempts) = match current.take() {
            Some(batch) => batch,
            None => match waiting.pop() {
                Some((start, end)) => (start, end, 0),
                None if next < shard.len() => {
                    (next, (next + settings.batch_size).min(shard.len()), 0)
                }
                None => return stats,
            },
        };
        next = next.max(end);
        stats.invocations += 1;
        let result = consumer
            .invoke(event_json(&settings.shard_id, &shard[start..end]))
            .await;
        let exhausted = |attempts: i64| {
            settings.maximum_retry_attempts >= 0 && attempts > settings.maximum_retry_attempts
        };

        // The index of the lowest reported record, or a whole-batch failure.
        let lowest = match &result {
            Ok(response) => {
                let mut lowest = None;
                let mut invalid = false;
                for failure in &response.batch_item_failures {
                    match failure.item_identifier.as_deref().and_then(|id| {
                        shard[start..end]
                            .iter()
                            .position(|r| r.sequence_number == id)
                    }) {
                        Some(i) => {
                            lowest = Some(lowest.map_or(start + i, |l: usize| l.min(start + i)))
                        }
                        None => invalid = true,
                    }
                }
                if invalid {
                    Err(())
                } else {
                    Ok(lowest)
                }
            }
            Err(_) => Err(()),
        };
        match lowest {
            Ok(None) => {}
            Ok(Some(lowest)) => {
                stats.partial_failures += 1;
                stats.redelivered += (end - lowest) as u64;
                let attempts = if lowest > start { 1 } else { attempts + 1 };
                if exhausted(attempts) {
                    stats
                        .discarded
                        .extend(shard[lowest..end].iter().map(|r| r.sequence_number.clone()));
                } else {
                    current = Some((lowest, end, attempts));
                }
            }
            Err(()) => {
                stats.function_errors += 1;
                stats.redelivered += (end - start) as u64;
                if settings.bisect_on_function_error && end - start > 1 {
                    stats.bisections += 1;
                    let mid = start + (end - start) / 2;
                    waiting.push((mid, end));
                    current = Some((start, mid, attempts));
                } else if exhausted(attempts + 1) {
                    stats
                        .discarded
                        .extend(shard[start..end].iter().map(|r| r.sequence_number.clone()));
                } else {
                    current = Some((start, end, attempts + 1));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    fn shard(n: usize) -> Vec<ShardRecord> {
        (0..n)
            .map(|i| ShardRecord {
                partition_key: format!("k{}", i % 3),
                sequence_number: format!("{:05}", 10_000 + i),
                data: vec![],
            })
            .collect()
    }

    /// Replies with a list of canned answers, and records what each invocation held.
    struct Scripted {
        answers: RefCell<Vec<Result<Vec<&'static str>, String>>>,
        seen: RefCell<Vec<Vec<String>>>,
    }

    impl Consumer for Scripted {
        async fn invoke(&self, event: Vec<u8>) -> Result<KinesisEventResponse, String> {
            let v: serde_json::Value = serde_json::from_slice(&event).unwrap();
            let seqs = v["Records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["kinesis"]["sequenceNumber"].as_str().unwrap().to_owned())
                .collect();
            self.seen.borrow_mut().push(seqs);
            let answer = if self.answers.borrow().is_empty() {
                Ok(vec![])
            } else {
                self.answers.borrow_mut().remove(0)
            };
            answer.map(|ids| {
                let mut r = KinesisEventResponse::default();
                r.set_failures(ids);
                r
            })
        }
    }

    fn settings(max: i64) -> EsmSettings {
        EsmSettings {
            shard_id: "shardId-0".into(),
            batch_size: 4,
            maximum_retry_attempts: max,
            bisect_on_function_error: true,
        }
    }

    /// A partial response checkpoints at the lowest reported record and redelivers from there.
    #[tokio::test]
    async fn partial_failure_checkpoints_at_the_lowest() {
        let c = Scripted {
            answers: RefCell::new(vec![Ok(vec!["10002", "10001"])]),
            seen: RefCell::default(),
        };
        let stats = drive(&shard(6), &settings(-1), &c).await;
        let seen = c.seen.borrow().clone();
        assert_eq!(seen[0], ["10000", "10001", "10002", "10003"]);
        assert_eq!(seen[1], ["10001", "10002", "10003"]);
        assert_eq!(seen[2], ["10004", "10005"]);
        assert_eq!((stats.partial_failures, stats.redelivered), (1, 3));
    }

    /// A function error bisects the batch; halves are delivered in order.
    #[tokio::test]
    async fn function_error_bisects() {
        let c = Scripted {
            answers: RefCell::new(vec![Err("boom".into())]),
            seen: RefCell::default(),
        };
        let stats = drive(&shard(4), &settings(-1), &c).await;
        let seen = c.seen.borrow().clone();
        assert_eq!(seen[1], ["10000", "10001"]);
        assert_eq!(seen[2], ["10002", "10003"]);
        assert_eq!((stats.function_errors, stats.bisections), (1, 1));
    }

    /// When retries run out, the records are discarded and the shard moves on; an unknown
    /// identifier fails the whole batch.
    #[tokio::test]
    async fn retries_run_out() {
        let c = Scripted {
            answers: RefCell::new(vec![
                Ok(vec!["10000"]),
                Ok(vec!["10000"]),
                Ok(vec!["10000"]),
                Ok(vec!["nope"]),
            ]),
            seen: RefCell::default(),
        };
        let stats = drive(&shard(5), &settings(2), &c).await;
        assert_eq!(stats.discarded, ["10000", "10001", "10002", "10003"]);
        assert_eq!(
            stats.function_errors, 1,
            "an unknown identifier fails the batch"
        );
    }
}
