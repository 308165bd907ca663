//! A local Kinesis event source mapping: it polls a stream on an AWS-API server and invokes the
//! functions through the Lambda Invoke API, with Lambda's rules.
//!
//! - [`template`]: each mapping's settings, read from `template.yaml` (one source);
//! - [`mapping`]: Lambda's rules for one shard and one function, whatever the records come from;
//! - [`filter`]: the `FilterCriteria` patterns, as Lambda applies them;
//! - [`failure`]: the `OnFailure` invocation record, in Lambda's shape;
//! - [`adapters`]: Kinesis, the Invoke API, SQS and S3, on the AWS SDK;
//! - [`run_mapping`]: one function's mapping over every shard of a stream, parents before
//!   children, with its [`Status`].

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod adapters;
pub mod failure;
pub mod filter;
pub mod mapping;
pub mod template;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use adapters::{KinesisStream, PollState};
use mapping::{FailureSink, Function, Mapper, Source, Stats};
use template::Mapping;

/// One shard's counts and last poll.
#[derive(Debug, Default)]
pub struct ShardState {
    /// The mapping's counts for the shard.
    pub stats: Mutex<Stats>,
    /// What the last poll saw.
    pub poll: Mutex<PollState>,
}

/// A mapping's state, per shard: for progress lines, the status file and the summary.
#[derive(Debug, Default)]
pub struct Status {
    shards: Mutex<BTreeMap<String, Arc<ShardState>>>,
}

impl Status {
    fn shard(&self, id: &str) -> Arc<ShardState> {
        self.shards
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    /// Each shard's counts and last poll.
    pub fn shards(&self) -> Vec<(String, Stats, PollState)> {
        self.shards
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, s)| {
                (
                    id.clone(),
                    s.stats
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone(),
                    *s.poll.lock().unwrap_or_else(PoisonError::into_inner),
                )
            })
            .collect()
    }

    /// The counts of every shard together.
    pub fn totals(&self) -> Stats {
        let mut total = Stats::default();
        for (_, s, _) in self.shards() {
            total.add(&s);
        }
        total
    }

    /// When (epoch ms) the mapping was last seen settled: every shard's last poll found nothing
    /// new and every record read is done; the earliest such poll over the shards. `None` while
    /// anything is pending. Everything written before this time has been delivered.
    pub fn settled_at_ms(&self) -> Option<i64> {
        let shards = self.shards();
        if shards.is_empty() {
            return None;
        }
        shards
            .iter()
            .map(|(_, s, p)| match (s.read == s.done, p.finished) {
                (false, _) => None,
                (true, true) => Some(i64::MAX),
                (true, false) => p.empty_poll_ms,
            })
            .try_fold(i64::MAX, |acc, x| x.map(|x| acc.min(x)))
    }

    /// The status as JSON: totals, per shard, and `settled_at_ms`.
    pub fn to_json(&self) -> Value {
        let shards: serde_json::Map<String, Value> = self
            .shards()
            .into_iter()
            .map(|(id, s, p)| {
                let mut v = serde_json::to_value(&s).unwrap_or_default();
                v["millis_behind_latest"] = p.millis_behind_latest.into();
                (id, v)
            })
            .collect();
        json!({
            "totals": self.totals(),
            "shards": shards,
            "settled_at_ms": self.settled_at_ms(),
        })
    }
}

/// Waits until the mappings of `statuses` are caught up: each has read its shards to their tips
/// and done everything it read, twice over with nothing new read in between (so that what one
/// function published meanwhile, another has read too). An error after `limit`, with the counts.
pub async fn caught_up(statuses: &[&Status], limit: Duration) -> Result<(), String> {
    let started = std::time::Instant::now();
    let mut last = None;
    loop {
        let since = shared::time::now_ms() as i64;
        while !statuses
            .iter()
            .all(|s| s.settled_at_ms().is_some_and(|at| at >= since))
        {
            if started.elapsed() > limit {
                let read: Vec<Stats> = statuses.iter().map(|s| s.totals()).collect();
                return Err(format!("not caught up in {limit:?}: {read:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let read: Vec<u64> = statuses.iter().map(|s| s.totals().read).collect();
        if last.as_ref() == Some(&read) {
            return Ok(());
        }
        last = Some(read);
    }
}

/// How the local mapping runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The region, for the event's `awsRegion` and the ARNs.
    pub region: String,
    /// The pause before a batch's first retry (it doubles per retry).
    pub retry_backoff: Duration,
    /// How often the shard list is read again (for splits and merges).
    pub relist: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            region: "us-east-1".to_owned(),
            retry_backoff: Duration::from_millis(200),
            relist: Duration::from_secs(10),
        }
    }
}

/// Runs `mapping` over every shard of `stream`, invoking `function` and sending failure records
/// to `sink`, until the future is dropped. A child shard is read only after its parents are.
pub async fn run_mapping<F: Function, S: FailureSink>(
    mapping: &Mapping,
    stream: &KinesisStream,
    function: &F,
    sink: &S,
    status: &Status,
    options: &Options,
) -> Result<(), String> {
    let stream_arn = stream.arn().await?;
    let uuid = uuid::Uuid::new_v4().to_string();
    let function_arn = format!(
        "arn:aws:lambda:{}:123456789012:function:{}",
        options.region, mapping.function
    );
    let mut started: HashSet<String> = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut running = FuturesUnordered::new();
    loop {
        let shards = stream.shards().await?;
        let known: HashSet<&str> = shards.iter().map(|s| s.id.as_str()).collect();
        for shard in &shards {
            let parents_done = [&shard.parent, &shard.adjacent_parent]
                .into_iter()
                .flatten()
                .all(|p| finished.contains(p) || !known.contains(p.as_str()));
            if !parents_done || !started.insert(shard.id.clone()) {
                continue;
            }
            let source = Source {
                stream_arn: stream_arn.clone(),
                shard_id: shard.id.clone(),
                region: options.region.clone(),
                function_arn: function_arn.clone(),
                uuid: uuid.clone(),
            };
            let state = status.shard(&shard.id);
            // A child of shards this mapping read starts at its beginning: the parents' records
            // were all delivered, and the child's come next.
            let start = if [&shard.parent, &shard.adjacent_parent]
                .into_iter()
                .flatten()
                .any(|p| finished.contains(p))
            {
                template::StartingPosition::TrimHorizon
            } else {
                mapping.starting_position
            };
            running.push(async move {
                let (tx, rx) = mpsc::channel(10_000);
                let mapper = Mapper {
                    settings: mapping,
                    source: &source,
                    function,
                    sink,
                    retry_backoff: options.retry_backoff,
                    stats: &state.stats,
                };
                let poll = |p: PollState| {
                    *state.poll.lock().unwrap_or_else(PoisonError::into_inner) = p;
                };
                let (read, ()) = tokio::join!(
                    stream.read(&source.shard_id, start, tx, poll),
                    mapper.run(rx)
                );
                (source.shard_id.clone(), read)
            });
        }
        // Until a shard finishes (its children may start) or it is time to list the shards again.
        tokio::select! {
            Some((shard, result)) = running.next(), if !running.is_empty() => {
                if let Err(e) = result {
                    tracing::error!(function = %mapping.function, %shard, error = %e, "the shard could not be read");
                    started.remove(&shard);
                } else {
                    tracing::info!(function = %mapping.function, %shard, "shard finished (closed and read to its end)");
                    finished.insert(shard);
                }
            }
            () = tokio::time::sleep(options.relist) => {}
        }
    }
}
