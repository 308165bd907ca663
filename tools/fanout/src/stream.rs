//! The stream: a range of a shard read back, and records put back on it in order, through the
//! producer's publisher (per-key order, failed entries retried, never two of one key in flight).

use std::cmp::Ordering;
use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;
use producer::ports::Kinesis;
use producer::publisher::{Config, Publisher, Record};
use shared::input::batch::compare_sequence_numbers;

/// Empty pages tolerated in the middle of a shard (a time gap with no records) before a range is
/// taken as not all there.
const MAX_EMPTY_READS: u32 = 10;

/// The stream's client.
#[derive(Debug, Clone)]
pub struct Streams {
    client: aws_sdk_kinesis::Client,
}

impl Streams {
    /// Streams reached with `client`.
    pub fn new(client: aws_sdk_kinesis::Client) -> Self {
        Self { client }
    }

    /// The records of `start..=end` on `shard` of `stream`, in order; or why they cannot be
    /// read back whole (trimmed, never there, the shard gone).
    pub async fn read_range(
        &self,
        stream: &str,
        shard: &str,
        start: &str,
        end: &str,
    ) -> Result<Vec<Record>, String> {
        let iterator = self
            .client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard)
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .starting_sequence_number(start)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "its records are no longer in the stream ({})",
                    shared::error::chain(&e)
                )
            })?;
        let mut iterator = iterator.shard_iterator().map(str::to_owned);
        let (mut records, mut first, mut last) = (Vec::new(), None, None);
        let mut empty_reads = 0;
        'pages: while let Some(it) = iterator.take() {
            let page = self
                .client
                .get_records()
                .shard_iterator(it)
                .limit(1000)
                .send()
                .await
                .map_err(|e| {
                    format!("reading its records failed ({})", shared::error::chain(&e))
                })?;
            for r in page.records() {
                let seq = r.sequence_number();
                if compare_sequence_numbers(seq, end) == Ordering::Greater {
                    break 'pages;
                }
                if compare_sequence_numbers(seq, start) != Ordering::Less {
                    first.get_or_insert_with(|| seq.to_owned());
                    last = Some(seq.to_owned());
                    records.push(Record {
                        partition_key: r.partition_key().unwrap_or_default().to_owned(),
                        data: r.data().as_ref().to_vec(),
                    });
                }
                if seq == end {
                    break 'pages;
                }
            }
            if page.records().is_empty() {
                empty_reads += 1;
                if empty_reads >= MAX_EMPTY_READS || page.millis_behind_latest() == Some(0) {
                    break; // at the tip of the shard, or no progress
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            } else {
                empty_reads = 0;
            }
            iterator = page.next_shard_iterator().map(str::to_owned);
        }
        // Only a whole range goes back: the first record must be the start, the last the end.
        match (first.as_deref(), last.as_deref()) {
            (Some(f), Some(l)) if f == start && l == end => Ok(records),
            (Some(f), _) if f != start => Err(format!(
                "its records are no longer in the stream (trimmed or never there: the shard now \
                 starts at {f})"
            )),
            (Some(_), Some(l)) => Err(format!(
                "the shard holds only part of its range (read up to {l}, {} records)",
                records.len()
            )),
            _ => Err(
                "its records are no longer in the stream (trimmed or never there: nothing was \
                 read)"
                    .into(),
            ),
        }
    }

    /// Puts `records` on `stream`, each with its partition key, each key's records in their
    /// order: for each, written, or why not.
    pub async fn put_back(&self, stream: &str, records: &[Record]) -> Vec<Result<(), String>> {
        let publisher =
            Publisher::new(Kinesis::new(self.client.clone(), stream), Config::default());
        let report = publisher.publish(records).await;
        report
            .outcomes
            .into_iter()
            .map(|outcome| outcome.map(drop).map_err(|e| e.to_string()))
            .collect()
    }

    /// Puts `records` on `stream` as [`Self::put_back`] does: all of them written, or what failed
    /// first.
    pub async fn put_all_back(&self, stream: &str, records: &[Record]) -> Result<(), String> {
        let outcomes = self.put_back(stream, records).await;
        outcomes
            .into_iter()
            .find_map(Result::err)
            .map_or(Ok(()), Err)
    }
}
