//! Cold start, memory and size of the release bootstraps, run as Lambda runs them: against a local
//! Lambda Runtime API (`integration_tests::runtime_api`), with the AWS calls going to a stub
//! endpoint that answers at once.
//!
//!     cargo bench -p integration-tests --bench footprint -- LAMBDA_DIR EVENT.json [RUNS]
//!
//! LAMBDA_DIR is cargo-lambda's output (`target/lambda`, holding `<function>/bootstrap`). For each
//! function it prints one JSON line: the bootstrap's size; the cold start, from spawning the process
//! to its first poll of the Runtime API (the SDK clients are built by then), median and minimum of
//! RUNS starts; the peak RSS (VmHWM) and handling time of one invocation with EVENT (its first
//! delivery: every effect a call to the stub); and the median handling time of RUNS redeliveries
//! of the same batch to the same warm process (every record finished before, and remembered: no
//! call at all, so what is timed is the Runtime API's body, the reading and the engine).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::runtime_api::{ApiEvent, RuntimeApi};
use integration_tests::stub_aws::StubAws;
use serde_json::{json, Value};

const FUNCTIONS: [&str; 2] = ["email-notifier", "inventory-updater"];

/// Starts `bootstrap` with Lambda's environment (and nothing else of ours: no `~/.aws`), its warm
/// memory of finished records on (the bench settings turn it off elsewhere).
fn spawn(bootstrap: &Path, function: &str, api: &RuntimeApi, aws: &StubAws, home: &Path) -> Child {
    Command::new(bootstrap)
        .env_clear()
        .envs([
            ("AWS_LAMBDA_RUNTIME_API", api.address().as_str()),
            ("AWS_LAMBDA_FUNCTION_NAME", function),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("AWS_LAMBDA_LOG_LEVEL", "INFO"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_SESSION_TOKEN", "testing"),
            ("AWS_ENDPOINT_URL", aws.endpoint().as_str()),
            ("HOME", home.to_str().unwrap()),
        ])
        .envs(integration_tests::BENCH_SETTINGS)
        .env("IDEMPOTENCY_CACHE_SIZE", "10000")
        // The peers' batch is of placements: email-notifier confirms at placement (as in
        // cpu.rs), or it would find nothing to do in it.
        .envs(
            (function == "email-notifier").then_some(("EVENT_TYPES", "ORDER_PLACED,ORDER_CREATED")),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib(child: &Child) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn next(api: &mut RuntimeApi) -> ApiEvent {
    tokio::time::timeout(Duration::from_secs(120), api.events.recv())
        .await
        .expect("the function answered in time")
        .expect("the API is running")
}

fn main() {
    let args = integration_tests::bench_args();
    let dir = PathBuf::from(
        args.first()
            .expect("usage: footprint LAMBDA_DIR EVENT.json [RUNS]"),
    );
    let event = std::fs::read(
        args.get(1)
            .expect("usage: footprint LAMBDA_DIR EVENT.json [RUNS]"),
    )
    .unwrap();
    let runs: usize = args.get(2).map_or(21, |r| r.parse().unwrap());
    let home = std::env::temp_dir().join("kinesis-fanout-bench-home");
    std::fs::create_dir_all(&home).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let aws = StubAws::start(Duration::ZERO).await;
        for function in FUNCTIONS {
            let bootstrap = dir.join(function).join("bootstrap");
            let size = std::fs::metadata(&bootstrap)
                .unwrap_or_else(|e| panic!("{}: {e}", bootstrap.display()))
                .len();

            // Cold start: process start to the first poll, RUNS times.
            let mut starts = Vec::with_capacity(runs);
            for _ in 0..runs {
                let mut api = RuntimeApi::start(Vec::new()).await;
                let started = Instant::now();
                let mut child = spawn(&bootstrap, function, &api, &aws, &home);
                match next(&mut api).await {
                    ApiEvent::Poll(at) => starts.push((at - started).as_secs_f64() * 1000.0),
                    other => panic!("{function} did not poll first: {other:?}"),
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            starts.sort_by(f64::total_cmp);

            // The big batch, first delivered (peak RSS, time to the response), then delivered
            // again RUNS times.
            let mut api = RuntimeApi::start(vec![event.clone(); runs + 1]).await;
            let mut child = spawn(&bootstrap, function, &api, &aws, &home);
            let mut handled = Vec::with_capacity(runs + 1);
            let mut failures = usize::MAX;
            for _ in 0..=runs {
                let ApiEvent::Poll(invoked) = next(&mut api).await else {
                    panic!("no poll")
                };
                let (answered, body) = match next(&mut api).await {
                    ApiEvent::Response {
                        at, ok: true, body, ..
                    } => (at, body),
                    other => panic!("{function} did not answer: {other:?}"),
                };
                handled.push((answered - invoked).as_secs_f64() * 1000.0);
                if failures == usize::MAX {
                    let response: Value = serde_json::from_slice(&body).unwrap();
                    failures = response["batchItemFailures"]
                        .as_array()
                        .map_or(usize::MAX, Vec::len);
                }
            }
            // The next poll: the invocations are over.
            let _ = next(&mut api).await;
            let rss_kib = peak_rss_kib(&child);
            let _ = child.kill();
            let _ = child.wait();
            let first = handled.remove(0);
            handled.sort_by(f64::total_cmp);

            println!(
                "{}",
                json!({"bench": "footprint", "function": function, "bootstrap_bytes": size,
                       "cold_start_median_ms": starts[starts.len() / 2], "cold_start_min_ms": starts[0],
                       "runs": runs, "event_bytes": event.len(), "peak_rss_kib": rss_kib,
                       "invocation_ms": first, "redelivery_ms": handled[handled.len() / 2],
                       "batch_item_failures": failures})
            );
        }
    });
}
