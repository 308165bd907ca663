//! The one AWS service the producer talks to, behind a small trait: the Kinesis adapter on the
//! real SDK, and an in-memory fake for the tests.

use std::future::Future;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

/// One Kinesis record to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its partition key (1 to 256 characters).
    pub partition_key: String,
    /// A hash key that overrides the partition key's hash when it picks the shard (a decimal
    /// 128-bit number): how an aggregate is sent to the shard its user records hash to.
    pub explicit_hash_key: Option<String>,
    /// Its data.
    pub data: Vec<u8>,
}

impl Entry {
    /// The bytes Kinesis counts against its size limits: the data and the partition key.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// What Kinesis answered for one entry of a `PutRecords` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryResult {
    /// Written.
    Written {
        /// The shard it went to.
        shard_id: String,
        /// Its sequence number there.
        sequence_number: String,
    },
    /// Not written: `ProvisionedThroughputExceededException`, `InternalFailure`, ...
    Failed {
        /// The error code.
        code: String,
        /// The message.
        message: String,
    },
}

/// The 128-bit hash key Kinesis gives a partition key: the MD5 of its UTF-8 bytes, big-endian.
/// A record goes to the shard whose range holds it.
pub fn hash_key(partition_key: &str) -> u128 {
    use md5::{Digest, Md5};
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// A shard and the range of 128-bit hash keys it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// Its id.
    pub shard_id: String,
    /// The lowest hash key it owns.
    pub starting_hash_key: u128,
    /// The highest hash key it owns.
    pub ending_hash_key: u128,
}

/// A request that failed as a whole (after the SDK's own retries), with the reason.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RequestError(pub String);

/// Writes records to one stream.
pub trait StreamWriter: Send + Sync {
    /// One `PutRecords` request: one result per entry, in the entries' order.
    fn put_records(
        &self,
        entries: &[Entry],
    ) -> impl Future<Output = Result<Vec<EntryResult>, RequestError>> + Send;

    /// The stream's open shards (those that still take writes), with their hash key ranges.
    fn open_shards(&self) -> impl Future<Output = Result<Vec<Shard>, RequestError>> + Send;
}

/// The [`StreamWriter`] of a Kinesis stream, on the AWS SDK.
#[derive(Debug, Clone)]
pub struct Kinesis {
    client: aws_sdk_kinesis::Client,
    stream: String,
}

impl Kinesis {
    /// Writes to `stream` (a name or an ARN) with `client`.
    pub fn new(client: aws_sdk_kinesis::Client, stream: impl Into<String>) -> Self {
        Self {
            client,
            stream: stream.into(),
        }
    }

    fn is_arn(&self) -> bool {
        self.stream.starts_with("arn:")
    }
}

fn describe(err: impl std::error::Error) -> RequestError {
    RequestError(shared::error::chain(&err))
}

impl StreamWriter for Kinesis {
    async fn put_records(&self, entries: &[Entry]) -> Result<Vec<EntryResult>, RequestError> {
        let mut request = self.client.put_records();
        request = if self.is_arn() {
            request.stream_arn(&self.stream)
        } else {
            request.stream_name(&self.stream)
        };
        for e in entries {
            let entry = PutRecordsRequestEntry::builder()
                .partition_key(&e.partition_key)
                .set_explicit_hash_key(e.explicit_hash_key.clone())
                .data(Blob::new(e.data.clone()))
                .build()
                .map_err(describe)?;
            request = request.records(entry);
        }
        let output = request.send().await.map_err(describe)?;
        let results: Vec<EntryResult> = output
            .records()
            .iter()
            .map(
                |r| match (r.shard_id(), r.sequence_number(), r.error_code()) {
                    (Some(shard), Some(seq), None) => EntryResult::Written {
                        shard_id: shard.to_owned(),
                        sequence_number: seq.to_owned(),
                    },
                    (_, _, code) => EntryResult::Failed {
                        code: code.unwrap_or("MissingResult").to_owned(),
                        message: r.error_message().unwrap_or_default().to_owned(),
                    },
                },
            )
            .collect();
        if results.len() != entries.len() {
            return Err(RequestError(format!(
                "PutRecords answered {} results for {} records",
                results.len(),
                entries.len()
            )));
        }
        Ok(results)
    }

    async fn open_shards(&self) -> Result<Vec<Shard>, RequestError> {
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut request = self.client.list_shards();
            request = match &token {
                Some(t) => request.next_token(t),
                None if self.is_arn() => request.stream_arn(&self.stream),
                None => request.stream_name(&self.stream),
            };
            let page = request.send().await.map_err(describe)?;
            for s in page.shards() {
                let open = s
                    .sequence_number_range()
                    .is_none_or(|r| r.ending_sequence_number().is_none());
                let range = s.hash_key_range();
                let parse = |v: Option<&str>| v.and_then(|v| v.parse::<u128>().ok());
                if let (true, Some(start), Some(end)) = (
                    open,
                    parse(range.map(|r| r.starting_hash_key())),
                    parse(range.map(|r| r.ending_hash_key())),
                ) {
                    shards.push(Shard {
                        shard_id: s.shard_id().to_owned(),
                        starting_hash_key: start,
                        ending_hash_key: end,
                    });
                }
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        if shards.is_empty() {
            return Err(RequestError(format!(
                "the stream {} has no open shard",
                self.stream
            )));
        }
        shards.sort_by_key(|s| s.starting_hash_key);
        Ok(shards)
    }
}

/// An in-memory stream, for tests: it fails the entries a plan says, and records every request.
#[cfg(any(test, feature = "fakes"))]
#[allow(clippy::unwrap_used)]
pub mod fakes {
    use std::collections::HashSet;
    use std::sync::Mutex;

    use super::*;

    /// A stream of `shards` shards that splits the hash key space evenly, as Kinesis does.
    #[derive(Default)]
    pub struct FakeStream {
        /// The shards.
        pub shards: Vec<Shard>,
        /// Every record written, per shard, in the order written.
        pub written: Mutex<Vec<Vec<Entry>>>,
        /// Every request's entries, in the order the requests were made.
        pub requests: Mutex<Vec<Vec<Entry>>>,
        /// Decides whether an entry fails: (request number, entry) -> a failure code.
        #[allow(clippy::type_complexity)]
        pub fail: Option<Box<dyn Fn(usize, &Entry) -> Option<&'static str> + Send + Sync>>,
        /// The partition keys in flight now (to catch two requests carrying one key at once).
        pub in_flight: Mutex<HashSet<String>>,
        /// Set when a key was in two requests at once.
        pub overlapped: Mutex<Vec<String>>,
    }

    impl FakeStream {
        /// A stream of `n` shards.
        pub fn new(n: u128) -> Self {
            let width = u128::MAX / n;
            let shards = (0..n)
                .map(|i| Shard {
                    shard_id: format!("shardId-{i:012}"),
                    starting_hash_key: i * width,
                    ending_hash_key: if i == n - 1 {
                        u128::MAX
                    } else {
                        (i + 1) * width - 1
                    },
                })
                .collect();
            Self {
                shards,
                written: Mutex::new(vec![Vec::new(); n as usize]),
                ..Self::default()
            }
        }

        fn shard_of(&self, entry: &Entry) -> usize {
            let key = entry
                .explicit_hash_key
                .as_deref()
                .and_then(|k| k.parse().ok())
                .unwrap_or_else(|| hash_key(&entry.partition_key));
            self.shards
                .iter()
                .position(|s| (s.starting_hash_key..=s.ending_hash_key).contains(&key))
                .unwrap_or(0)
        }
    }

    impl StreamWriter for FakeStream {
        async fn put_records(&self, entries: &[Entry]) -> Result<Vec<EntryResult>, RequestError> {
            let number = {
                let mut requests = self.requests.lock().unwrap();
                requests.push(entries.to_vec());
                requests.len() - 1
            };
            {
                let mut in_flight = self.in_flight.lock().unwrap();
                for e in entries {
                    if !in_flight.insert(e.partition_key.clone()) {
                        self.overlapped
                            .lock()
                            .unwrap()
                            .push(e.partition_key.clone());
                    }
                }
            }
            // Let other requests start meanwhile, as a network round trip would.
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            let mut results = Vec::new();
            {
                let mut written = self.written.lock().unwrap();
                for e in entries {
                    match self.fail.as_ref().and_then(|f| f(number, e)) {
                        Some(code) => results.push(EntryResult::Failed {
                            code: code.to_owned(),
                            message: "injected".to_owned(),
                        }),
                        None => {
                            let shard = self.shard_of(e);
                            written[shard].push(e.clone());
                            results.push(EntryResult::Written {
                                shard_id: self.shards[shard].shard_id.clone(),
                                sequence_number: format!("{:020}", written[shard].len()),
                            });
                        }
                    }
                }
            }
            let mut in_flight = self.in_flight.lock().unwrap();
            for e in entries {
                in_flight.remove(&e.partition_key);
            }
            Ok(results)
        }

        async fn open_shards(&self) -> Result<Vec<Shard>, RequestError> {
            Ok(self.shards.clone())
        }
    }
}
