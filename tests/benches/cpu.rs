//! The CPU path of a full batch: event bytes to `batchItemFailures` response, through the real
//! decoder, batch engine and each function's rule, with every effect a no-op port.
//!
//!     cargo bench -p integration-tests --bench cpu -- EVENT.json [RUNS]
//!
//! The event is read as the functions read it: from the body's bytes by `shared::runtime`'s layer.
//! Prints one JSON line per measurement (`make bench` gathers them): the median and the minimum
//! milliseconds over RUNS runs (21 by default, after 3 warm-up runs), and a bare `serde_json`
//! validation pass over the same bytes, the floor any JSON consumer pays.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;
use shared::engine::{PoisonRecord, PoisonSink};
use shared::event::{OrderId, Quantity};
use shared::idempotency::{Claim, IdempotencyStore, Lease, Mark};
use shared::ports::{Confirmation, EmailSender, InventoryStore, ReleaseOutcome, ReserveOutcome};
use shared::{BatchEngine, EffectError, Env, KinesisBatch, RecordHandler};

/// Every port, doing nothing and succeeding.
struct Noop;

impl EmailSender for Noop {
    async fn send_confirmation(&self, c: &Confirmation<'_>) -> Result<String, EffectError> {
        std::hint::black_box(&c.template_data);
        Ok(String::new())
    }
}

impl IdempotencyStore for Noop {
    async fn claim(&self, _key: &str) -> Result<Claim, EffectError> {
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
        _: &str,
        _: &OrderId<'_>,
        lines: &BTreeMap<&str, Quantity>,
    ) -> Result<ReserveOutcome, EffectError> {
        std::hint::black_box(lines);
        Ok(ReserveOutcome::Reserved)
    }
    async fn release(&self, _: &str, _: &OrderId<'_>) -> Result<ReleaseOutcome, EffectError> {
        Ok(ReleaseOutcome::Released)
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

/// Median and minimum of `runs` timed calls of `f`, in milliseconds, after three warm-ups.
fn time(runs: usize, mut f: impl FnMut() -> usize) -> (f64, f64, usize) {
    let mut out = 0;
    for _ in 0..3 {
        out = f();
    }
    let mut ms: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            out = std::hint::black_box(f());
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], ms[0], out)
}

/// Times `f` and prints the figures, unless `CPU_ONLY` names another measurement.
fn measure(name: &str, records: usize, runs: usize, f: impl FnMut() -> usize) {
    // `CPU_ONLY=part` runs the measurements whose names contain it; `CPU_ONLY==name` only that one.
    if std::env::var("CPU_ONLY").is_ok_and(|only| match only.strip_prefix('=') {
        Some(exact) => name != exact,
        None => !name.contains(&only),
    }) {
        return;
    }
    report(name, records, runs, time(runs, f));
}

fn report(name: &str, records: usize, runs: usize, (median, min, kept): (f64, f64, usize)) {
    println!(
        "{}",
        json!({"bench": "cpu", "name": name, "records": records, "kept": kept, "runs": runs,
               "median_ms": median, "min_ms": min})
    );
}

/// The event as the functions read it: `shared::runtime`'s layer reads the body's bytes with
/// `KinesisBatch::from_slice`, and `lambda_runtime` then deserialises only `null`.
fn decode(bytes: &[u8]) -> KinesisBatch {
    let batch = KinesisBatch::from_slice(bytes).unwrap();
    serde_path_to_error::deserialize::<_, serde::de::IgnoredAny>(
        &mut serde_json::Deserializer::from_slice(b"null"),
    )
    .unwrap();
    batch
}

/// The event as `lambda_runtime` would read it without that layer: `serde_json` through
/// `serde_path_to_error`, which tracks the path of every field so that a failure can name it.
fn decode_by_runtime(bytes: &[u8]) -> KinesisBatch {
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(bytes)).unwrap()
}

/// Event bytes to response bytes: what `lambda_runtime` and the engine do per invocation.
fn path<H: RecordHandler, P: PoisonSink>(
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

    measure(
        "serde_json validation pass (IgnoredAny)",
        records,
        runs,
        || {
            serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).unwrap();
            0
        },
    );

    // The peers keep ORDER_PLACED and ORDER_CREATED: so does email-notifier here.
    let config =
        email_notifier::Config::from_env(&env(&[("EVENT_TYPES", "ORDER_PLACED,ORDER_CREATED")]))
            .unwrap();
    let email = BatchEngine::new(
        email_notifier::EmailRule::new(Noop, Noop),
        Noop,
        config.common.engine,
    );
    measure("email-notifier", records, runs, || {
        path(&rt, &email, &bytes)
    });

    let config = inventory_updater::Config::from_env(&env(&[])).unwrap();
    let inventory = BatchEngine::new(
        inventory_updater::InventoryRule::new(Noop),
        Noop,
        config.common.engine,
    );
    measure("inventory-updater", records, runs, || {
        path(&rt, &inventory, &bytes)
    });

    // Where the time goes (CPU_BREAKDOWN=1; CPU_ONLY=name runs one measurement): decoding alone,
    // and each engine on a decoded batch.
    if std::env::var_os("CPU_BREAKDOWN").is_some() {
        measure("decode only", records, runs, || decode(&bytes).len());
        measure(
            "decode only, by lambda_runtime's deserializer",
            records,
            runs,
            || decode_by_runtime(&bytes).len(),
        );
        // What the functions' logs cost on top: their subscriber (INFO, JSON, as
        // AWS_LAMBDA_LOG_FORMAT=JSON sets it) writing to a sink instead of stdout.
        let logged = shared::telemetry::subscriber("info", true, std::io::sink);
        tracing::subscriber::with_default(logged, || {
            measure("email-notifier, logging at INFO", records, runs, || {
                path(&rt, &email, &bytes)
            });
            measure("inventory-updater, logging at INFO", records, runs, || {
                path(&rt, &inventory, &bytes)
            });
        });
        let batch = KinesisBatch::from_slice(&bytes).unwrap();
        measure("email-notifier engine only", records, runs, || {
            rt.block_on(email.process(&batch, None)).stats.applied as usize
        });
        measure("inventory-updater engine only", records, runs, || {
            rt.block_on(inventory.process(&batch, None)).stats.applied as usize
        });
    }
}
