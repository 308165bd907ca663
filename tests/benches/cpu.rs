//! The CPU path of a full batch: event bytes to `batchItemFailures` response, through the real
//! decoder, batch engine and each function's rule, with every effect a no-op port.
//!
//!     cargo bench -p integration-tests --bench cpu -- EVENT.json [RUNS]
//!
//! The event is read as the functions read it: by `lambda_runtime`'s deserializer into a
//! `KinesisBatch` (the body taken whole as raw JSON, then the one reader of the Lambda event).
//! Prints one JSON line per measurement (`make bench` gathers them): the median and the minimum
//! milliseconds over RUNS runs (21 by default, after 3 warm-up runs), the measurements timed in
//! turns; among them a bare `serde_json` validation pass over the same bytes, the floor any JSON
//! consumer pays.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use email_notifier::{EmailSender, Notice};
use integration_tests::{EmailSettings, InventorySettings};
use inventory_updater::lifecycle::Ending;
use inventory_updater::{InventoryStore, Placement, ReleaseOutcome, ReserveOutcome};
use orders::OrderId;
use producer::ports::{Entry, EntryResult, RequestError, Shard, StreamWriter};
use serde_json::json;
use shared::idempotency::{Claim, EffectKey, IdempotencyStore, Lease, Mark};
use shared::{BatchEngine, Consumer, EffectError, Env, KinesisBatch, PoisonRecord, PoisonSink};

/// Every port, doing nothing and succeeding.
struct Noop;

impl EmailSender for Noop {
    async fn send(&self, c: &Notice<'_>) -> Result<String, EffectError> {
        std::hint::black_box(&c.template_data);
        Ok(String::new())
    }
}

impl IdempotencyStore for Noop {
    async fn claim(&self, _key: &EffectKey<'_>) -> Result<Claim, EffectError> {
        Ok(Claim::Claimed(Lease::new()))
    }
    async fn complete(&self, _: &str, _: &Lease, _: Mark, _: &str) -> Result<(), EffectError> {
        Ok(())
    }
    async fn release(&self, _: &str, _: &Lease) -> Result<(), EffectError> {
        Ok(())
    }
}

impl InventoryStore for Noop {
    async fn reserve(
        &self,
        _: &EffectKey<'_>,
        placement: &Placement<'_>,
    ) -> Result<ReserveOutcome, EffectError> {
        std::hint::black_box(&placement.lines);
        Ok(ReserveOutcome::Reserved)
    }
    async fn release(
        &self,
        _: &EffectKey<'_>,
        _: &OrderId<'_>,
        _: Ending,
    ) -> Result<ReleaseOutcome, EffectError> {
        Ok(ReleaseOutcome::Released(inventory_updater::Held {
            lines: BTreeMap::new(),
            customer: Default::default(),
        }))
    }
}

impl StreamWriter for Noop {
    async fn put_records(&self, entries: &[Entry]) -> Result<Vec<EntryResult>, RequestError> {
        std::hint::black_box(entries);
        Ok(entries
            .iter()
            .map(|_| EntryResult::Written {
                shard_id: String::new(),
                sequence_number: String::new(),
            })
            .collect())
    }
    async fn open_shards(&self) -> Result<Vec<Shard>, RequestError> {
        Ok(Vec::new())
    }
}

impl PoisonSink for Noop {
    async fn capture(&self, record: &PoisonRecord) -> Result<(), EffectError> {
        std::hint::black_box(record);
        Ok(())
    }
}

fn env(extra: &[(&'static str, &'static str)]) -> Env {
    let mut pairs = integration_tests::BENCH_SETTINGS.to_vec();
    pairs.extend_from_slice(extra);
    Env::from_pairs(pairs)
}

/// The measurements of one run of the benchmark, timed in turns: each round times each of them
/// once, so that a slow spell of the (shared) machine falls on all of them alike, and their
/// ratios hold even when the figures move.
#[derive(Default)]
struct Bench<'a> {
    measurements: Vec<(&'static str, Measured<'a>)>,
}

/// One timed call: what it answers is printed as `kept`.
type Measured<'a> = Box<dyn FnMut() -> usize + 'a>;

impl<'a> Bench<'a> {
    /// Adds a measurement, unless `CPU_ONLY` leaves it out: `CPU_ONLY=part` keeps the ones whose
    /// names contain it, `CPU_ONLY==name` only that one.
    fn add(&mut self, name: &'static str, f: impl FnMut() -> usize + 'a) {
        if std::env::var("CPU_ONLY").is_ok_and(|only| match only.strip_prefix('=') {
            Some(exact) => name != exact,
            None => !name.contains(&only),
        }) {
            return;
        }
        self.measurements.push((name, Box::new(f)));
    }

    /// Three warm-up rounds, then `runs` timed ones; prints each measurement's median and minimum
    /// milliseconds, and what it answered.
    fn run(mut self, records: usize, runs: usize) {
        let mut kept = vec![0; self.measurements.len()];
        for _ in 0..3 {
            for ((_, f), kept) in self.measurements.iter_mut().zip(&mut kept) {
                *kept = f();
            }
        }
        let mut ms = vec![Vec::with_capacity(runs); self.measurements.len()];
        for _ in 0..runs {
            for ((_, f), ms) in self.measurements.iter_mut().zip(&mut ms) {
                let t = Instant::now();
                std::hint::black_box(f());
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        for (((name, _), mut ms), kept) in self.measurements.iter().zip(ms).zip(kept) {
            ms.sort_by(f64::total_cmp);
            println!(
                "{}",
                json!({"bench": "cpu", "name": name, "records": records, "kept": kept,
                       "runs": runs, "median_ms": ms[ms.len() / 2], "min_ms": ms[0]})
            );
        }
    }
}

/// The event as the functions read it: `lambda_runtime` deserialises every body through
/// `serde_path_to_error` (which tracks the path of every field so that a failure can name it) into
/// the handler's type, here `KinesisBatch`.
fn decode(bytes: &[u8]) -> KinesisBatch {
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(bytes)).unwrap()
}

/// The Lambda event's reader alone, into a batch whose buffers the last reading left.
fn read_only(bytes: &[u8], batch: &mut KinesisBatch) -> usize {
    batch.read(bytes).unwrap();
    batch.len()
}

/// Event bytes to response bytes: what `lambda_runtime` and the engine do per invocation.
fn path<H: Consumer, P: PoisonSink>(
    rt: &tokio::runtime::Runtime,
    engine: &BatchEngine<H, P>,
    bytes: &[u8],
) -> usize {
    let batch = decode(bytes);
    let outcome = rt.block_on(engine.process(&batch, None));
    let response = serde_json::to_vec(&outcome.response).unwrap();
    assert!(outcome.response.batch_item_failures.is_empty());
    std::hint::black_box(response);
    (outcome.stats.applied + outcome.stats.duplicates + outcome.stats.rejected) as usize
}

fn main() {
    // cargo bench passes `--bench`; the rest are ours.
    let args = integration_tests::bench_args();
    let file = args.first().expect("usage: cpu EVENT.json [RUNS]");
    let runs: usize = args.get(1).map_or(21, |r| r.parse().unwrap());
    let bytes = std::fs::read(file).unwrap();
    let records = KinesisBatch::from_slice(&bytes).unwrap().len();
    // The functions' runtime: tokio's, on the invocation's thread.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // The peers keep ORDER_PLACED and ORDER_CREATED: so does email-notifier here.
    let config =
        EmailSettings::from_env(&env(&[("EVENT_TYPES", "ORDER_PLACED,ORDER_CREATED")])).unwrap();
    let email = BatchEngine::new(
        email_notifier::EmailRule::new(Noop, Noop),
        Noop,
        config.common.engine,
    );
    let config = InventorySettings::from_env(&env(&[])).unwrap();
    let inventory = BatchEngine::new(
        inventory_updater::InventoryRule::new(Noop, Noop),
        Noop,
        config.common.engine,
    );
    let batch = KinesisBatch::from_slice(&bytes).unwrap();
    let mut reused = KinesisBatch::default();

    // What the functions' logs add: their subscriber (INFO, JSON, as AWS_LAMBDA_LOG_FORMAT=JSON
    // sets it), writing to a counter of bytes instead of stdout. Timed in turns with the paths
    // without it, so the ratio holds when the machine's speed moves.
    let logged_bytes = Arc::new(AtomicUsize::new(0));
    let counter = integration_tests::Counting(logged_bytes.clone());
    let logging = tracing::Dispatch::new(shared::platform::telemetry::subscriber(
        &integration_tests::json_logs_at("info"),
        move || counter.clone(),
    ));
    let logged_calls = AtomicUsize::new(0);

    let mut bench = Bench::default();
    bench.add("serde_json validation pass (IgnoredAny)", || {
        serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).unwrap();
        0
    });
    bench.add("email-notifier", || path(&rt, &email, &bytes));
    bench.add("inventory-updater", || path(&rt, &inventory, &bytes));
    bench.add("email-notifier, logging at INFO", || {
        logged_calls.fetch_add(1, Ordering::Relaxed);
        tracing::dispatcher::with_default(&logging, || path(&rt, &email, &bytes))
    });
    bench.add("inventory-updater, logging at INFO", || {
        logged_calls.fetch_add(1, Ordering::Relaxed);
        tracing::dispatcher::with_default(&logging, || path(&rt, &inventory, &bytes))
    });
    bench.run(records, runs);
    // Every record of the bench batch succeeds: the bytes logged per record, over every logged run.
    let per_record = logged_bytes.load(Ordering::Relaxed) as f64
        / (records * logged_calls.load(Ordering::Relaxed).max(1)) as f64;
    println!(
        r#"{{"name":"log bytes per successful record at INFO","bytes_per_record":{per_record:.3}}}"#
    );

    // Where the time goes (CPU_BREAKDOWN=1): decoding alone, and each engine on a decoded batch.
    // Timed in turns among themselves, after the paths, so as not to disturb them.
    let mut bench = Bench::default();
    if std::env::var_os("CPU_BREAKDOWN").is_some() {
        bench.add("decode only", || decode(&bytes).len());
        bench.add("decode only, the reader alone (buffers reused)", || {
            read_only(&bytes, &mut reused)
        });
        bench.add("email-notifier engine only", || {
            rt.block_on(email.process(&batch, None)).stats.applied as usize
        });
        bench.add("inventory-updater engine only", || {
            rt.block_on(inventory.process(&batch, None)).stats.applied as usize
        });
    }
    bench.run(records, runs);
}
