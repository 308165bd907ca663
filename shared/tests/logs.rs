//! Log buffering: a record that succeeds leaves no line; one that fails has its kept lines written
//! before its failure, with its identity; the buffers are bounded and say what they dropped; two
//! invocations at once never mix their records' lines; and sampling writes DEBUG at once.

mod support;

use std::time::Duration;

use serde_json::Value;
use shared::fakes::{CapturedLog, FakePoisonSink};
use shared::platform::telemetry::{self, LogSettings};
use shared::{
    BatchEngine, Consumer, EffectError, EngineConfig, ErrorClass, Event, EventTypeSet,
    KinesisBatch, Outcome,
};
use support::*;

/// Logs `lines` INFO lines (and one DEBUG) per event; fails orders named `fail-*`.
struct Chatty {
    lines: usize,
}

impl Consumer for Chatty {
    type Payload<'a> = TestEvent;

    async fn handle(&self, event: &Event<'_, Self>) -> Result<Outcome, EffectError> {
        let order = event.payload.order_id();
        tracing::debug!(order, "looking at the order");
        for i in 0..self.lines {
            tracing::info!(order, step = i, "working");
            tokio::task::yield_now().await; // let other records and invocations interleave
        }
        if order.starts_with("fail-") {
            return Err(EffectError::new(
                ErrorClass::Retryable,
                format!("planned failure of {order}"),
                None,
            ));
        }
        Ok(Outcome::Applied)
    }
}

fn json_lines(log: &CapturedLog) -> Vec<Value> {
    log.text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect()
}

fn engine(lines: usize) -> BatchEngine<Chatty, FakePoisonSink> {
    BatchEngine::new(
        Chatty { lines },
        FakePoisonSink::default(),
        EngineConfig {
            function: "f".into(),
            scope: "test".into(),
            event_types: EventTypeSet::new(["ORDER_PLACED"]),
            max_concurrency: 8,
            deadline_margin: Duration::from_millis(100),
            completed_cache: 0,
        },
    )
}

fn batch(orders: &[&str]) -> KinesisBatch {
    let records = orders
        .iter()
        .enumerate()
        .map(|(i, o)| {
            record(
                &format!("key-{o}"),
                i as u64,
                &order_event("ORDER_PLACED", o),
            )
        })
        .collect();
    KinesisBatch::from_slice(&event(records)).unwrap()
}

/// Runs `f` under the functions' subscriber (JSON, at `level`, sampling `sample_rate` of the
/// invocations), capturing what it writes.
fn run<T>(level: &str, sample_rate: f64, f: impl FnOnce() -> T) -> (T, CapturedLog) {
    let captured = CapturedLog::default();
    let writer = captured.clone();
    let settings = LogSettings {
        level: level.into(),
        json: true,
        sample_rate,
    };
    let subscriber = telemetry::subscriber(&settings, move || writer.clone());
    let out = tracing::subscriber::with_default(subscriber, f);
    (out, captured)
}

/// Runs `f` as one invocation (with its own log buffers), as the runtime does: its output, and
/// the lines its buffers dropped.
fn block_on<F: std::future::Future>(f: F) -> (F::Output, u64) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(telemetry::in_invocation(f))
}

#[test]
fn buffering() {
    // 1. Success: nothing per record, at INFO.
    let engine = engine(3);
    let ((out, _), log) = run("info", 0.0, || {
        block_on(engine.process(&batch(&["a", "b", "c"]), None))
    });
    assert_eq!(out.stats.applied, 3);
    assert!(json_lines(&log).is_empty(), "{:?}", json_lines(&log));

    // 2. Failure: the record's kept INFO lines, then its failure, all with its identity; the
    //    records that succeeded leave nothing; DEBUG stays off at INFO.
    let ((out, _), log) = run("info", 0.0, || {
        block_on(engine.process(&batch(&["a", "fail-b", "c"]), None))
    });
    assert_eq!(out.stats.failed, 1);
    let lines = json_lines(&log);
    let messages: Vec<&str> = lines
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "working",
            "working",
            "working",
            "record failed; stopping its partition key"
        ]
    );
    for l in &lines {
        assert_eq!(l["span"]["name"], "record");
        assert_eq!(l["span"]["partition_key"], "key-fail-b");
        assert_eq!(l["span"]["event_type"], "ORDER_PLACED");
        assert!(l["span"]["sequence_number"].as_str().is_some());
    }
    assert_eq!(lines[0]["order"], "fail-b");
    assert_eq!(lines[2]["step"], 2);
    assert_eq!(lines[3]["level"], "WARN");

    // 3. Bounded: 100 lines kept for one record, 64 written; the line that writes them says how
    //    many earlier lines were dropped, and the invocation counts them.
    let engine = engine_with(100);
    let ((_, dropped), log) = run("info", 0.0, || {
        block_on(engine.process(&batch(&["fail-x"]), None))
    });
    let lines = json_lines(&log);
    assert_eq!(dropped, 36);
    assert_eq!(lines.len(), 64 + 1);
    assert_eq!(lines[64]["earlier_lines_dropped"], 36);
    assert!(lines[..64]
        .iter()
        .all(|l| l.get("earlier_lines_dropped").is_none()));

    // 4. Two invocations at once, in one process: each flushed line is its own record's.
    let engine = engine_with(5);
    let (_, log) = run("info", 0.0, || {
        block_on(async {
            let (one, two) = (batch(&["fail-1", "ok-1"]), batch(&["ok-2", "fail-2"]));
            tokio::join!(
                telemetry::in_invocation(engine.process(&one, None)),
                telemetry::in_invocation(engine.process(&two, None))
            )
        })
    });
    let lines = json_lines(&log);
    assert_eq!(lines.len(), 2 * 6);
    for l in &lines {
        let key = l["span"]["partition_key"].as_str().unwrap();
        assert!(key.starts_with("key-fail-"), "{l}");
        if let Some(order) = l["order"].as_str() {
            assert_eq!(
                format!("key-{order}"),
                key,
                "a line in another record's context"
            );
        }
    }

    // 5. Sampling: LOG_SAMPLE_RATE=1 writes everything at DEBUG, at once, with identity.
    let engine = engine_with(1);
    let (_, log) = run("info", 1.0, || {
        block_on(engine.process(&batch(&["s"]), None))
    });
    let messages: Vec<String> = json_lines(&log)
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(messages, ["looking at the order", "working"]);
}

fn engine_with(lines: usize) -> BatchEngine<Chatty, FakePoisonSink> {
    engine(lines)
}
