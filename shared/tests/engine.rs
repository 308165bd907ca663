//! The batch engine's delivery rules, over fakes.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;
use shared::fakes::FakePoisonSink;
use shared::{
    BatchEngine, Consumer, EffectError, EngineConfig, ErrorClass, Event, EventTypeSet,
    KinesisBatch, Outcome,
};
use support::*;
use tokio::time::Instant;

/// A rule that records the order of its calls, sleeps, and fails where told.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(String, String)>>,
    delay: HashMap<String, Duration>,
    fail: HashMap<String, ErrorClass>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Recorder {
    fn calls(&self) -> Vec<(String, String)> {
        self.calls.lock().unwrap().clone()
    }
    fn keys_calls(&self, key: &str) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|(k, _)| k == key)
            .map(|(_, o)| o)
            .collect()
    }
}

impl Consumer for Recorder {
    type Payload<'a> = TestEvent;

    async fn handle(&self, event: &Event<'_, Self>) -> Result<Outcome, EffectError> {
        let order = event.payload.order_id().to_owned();
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let delay = self
            .delay
            .get(&order)
            .or_else(|| self.delay.get("*"))
            .copied();
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.calls
            .lock()
            .unwrap()
            .push((event.record.partition_key.to_owned(), order.clone()));
        match self.fail.get(&order) {
            Some(class) => Err(EffectError::new(
                *class,
                format!("planned failure for {order}"),
                None,
            )),
            None => Ok(Outcome::Applied),
        }
    }
}

fn config(max_concurrency: usize) -> EngineConfig {
    EngineConfig {
        function: "test-fn".into(),
        scope: "test".into(),
        event_types: EventTypeSet::new(["ORDER_PLACED", "ORDER_CANCELLED"]),
        max_concurrency,
        deadline_margin: Duration::from_millis(100),
        completed_cache: 0,
    }
}

type Engine = BatchEngine<Recorder, FakePoisonSink>;

fn engine(rule: Recorder, max_concurrency: usize) -> Engine {
    BatchEngine::new(rule, FakePoisonSink::default(), config(max_concurrency))
}

fn placed(key: &str, i: u64, order: &str) -> serde_json::Value {
    record(key, i, &order_event("ORDER_PLACED", order))
}

/// Records of one key run in sequence order even when keys interleave and run at different speeds.
#[tokio::test(start_paused = true)]
async fn order_within_a_key() {
    let mut rule = Recorder::default();
    let mut records = Vec::new();
    for i in 0..30u64 {
        let key = format!("k{}", i % 3);
        let order = format!("{key}-{i:02}");
        // Key k0 is slow on its early records, so a naive pool would reorder it.
        rule.delay.insert(
            order.clone(),
            Duration::from_millis(if i % 3 == 0 { 50 - i } else { 5 }),
        );
        records.push(placed(&key, i, &order));
    }
    let engine = engine(rule, 8);
    let out = engine
        .process(&KinesisBatch::from_slice(&event(records)).unwrap(), None)
        .await;
    assert!(out.response.batch_item_failures.is_empty());
    assert_eq!(out.stats.applied, 30);
    for key in ["k0", "k1", "k2"] {
        let seen = engine.consumer().keys_calls(key);
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen.len(), 10);
        assert_eq!(seen, sorted, "key {key} ran out of order");
    }
}

/// Different keys run concurrently: ten keys that each sleep 100 ms take 100 ms, not a second.
#[tokio::test(start_paused = true)]
async fn keys_run_concurrently() {
    let elapsed = |max_concurrency| async move {
        let mut rule = Recorder::default();
        rule.delay.insert("*".into(), Duration::from_millis(100));
        let records = (0..10)
            .map(|i| placed(&format!("k{i}"), i, &format!("o{i}")))
            .collect();
        let batch = KinesisBatch::from_slice(&event(records)).unwrap();
        let engine = engine(rule, max_concurrency);
        let start = Instant::now();
        let out = engine.process(&batch, None).await;
        assert_eq!(out.stats.applied, 10);
        (
            start.elapsed(),
            engine.consumer().max_in_flight.load(Ordering::SeqCst),
        )
    };
    let (sequential, seq_peak) = elapsed(1).await;
    let (concurrent, peak) = elapsed(10).await;
    let (bounded, bounded_peak) = elapsed(3).await;
    assert_eq!(sequential, Duration::from_millis(1000));
    assert_eq!(seq_peak, 1);
    assert_eq!(concurrent, Duration::from_millis(100));
    assert_eq!(peak, 10);
    assert_eq!(
        bounded,
        Duration::from_millis(400),
        "ceil(10 / 3) rounds of 100 ms"
    );
    assert_eq!(bounded_peak, 3, "the bound holds");
}

/// A retryable failure is reported and stops its key; other keys go on.
#[tokio::test]
async fn stops_a_key_at_its_first_failure() {
    let mut rule = Recorder::default();
    rule.fail.insert("a2".into(), ErrorClass::Retryable);
    let records = vec![
        placed("A", 1, "a1"),
        placed("B", 2, "b1"),
        placed("A", 3, "a2"),
        placed("B", 4, "b2"),
        placed("A", 5, "a3"),
        placed("B", 6, "b3"),
    ];
    let engine = engine(rule, 4);
    let out = engine
        .process(&KinesisBatch::from_slice(&event(records)).unwrap(), None)
        .await;
    assert_eq!(out.failed_sequence_numbers(), vec![seq(3)]);
    assert_eq!(
        engine.consumer().keys_calls("A"),
        vec!["a1", "a2"],
        "a3 never ran"
    );
    assert_eq!(engine.consumer().keys_calls("B"), vec!["b1", "b2", "b3"]);
    assert_eq!(
        (out.stats.applied, out.stats.failed, out.stats.blocked),
        (4, 1, 1)
    );
}

/// A permanent failure from a rule is captured as poison with its payload; the key goes on.
#[tokio::test]
async fn permanent_failure_is_captured_not_retried() {
    let mut rule = Recorder::default();
    rule.fail.insert("a1".into(), ErrorClass::Permanent);
    let records = vec![placed("A", 1, "a1"), placed("A", 2, "a2")];
    let body = event(records.clone());
    let engine = engine(rule, 4);
    let out = engine
        .process(&KinesisBatch::from_slice(&body).unwrap(), None)
        .await;
    assert!(out.response.batch_item_failures.is_empty());
    assert_eq!(engine.consumer().keys_calls("A"), vec!["a1", "a2"]);
    assert_eq!((out.stats.poison, out.stats.applied), (1, 1));
}

/// Poison records (bad base64, not JSON, not the envelope, bad metadata) are captured with their
/// payload and not reported; the good records around them are processed. A consumer validates
/// only what it reads: the sample's payloads whose address or lines are wrong are good to one
/// that reads only the order's id.
#[tokio::test]
async fn poison_records_are_captured_and_skipped() {
    let body = sample("poison-batch.json");
    let engine = engine(Recorder::default(), 4);
    let out = engine
        .process(&KinesisBatch::from_slice(&body).unwrap(), None)
        .await;
    assert!(
        out.response.batch_item_failures.is_empty(),
        "{:?}",
        out.response
    );
    assert_eq!(out.stats.received, 8);
    assert_eq!(out.stats.applied, 4);
    assert_eq!(out.stats.poison, 4);
    let mut applied: Vec<_> = engine
        .consumer()
        .calls()
        .into_iter()
        .map(|(_, o)| o)
        .collect();
    applied.sort();
    assert_eq!(
        applied,
        vec!["order-3001", "order-3002", "order-3003", "order-3004"]
    );

    // Every captured record keeps its original data, its identity and a reason.
    let original: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let captured = engine_poison(&engine);
    assert_eq!(captured.len(), 4);
    for p in &captured {
        let seq = p.sequence_number.as_deref().unwrap();
        let rec = original["Records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kinesis"]["sequenceNumber"] == json!(seq))
            .unwrap();
        assert_eq!(
            p.data,
            rec["kinesis"]["data"].as_str().unwrap(),
            "payload kept for {seq}"
        );
        assert_eq!(p.function, "test-fn");
        assert_eq!(p.shard_id.as_deref(), Some("shardId-000000000000"));
        assert!(!p.reason.is_empty());
    }
    let reasons: Vec<&str> = captured.iter().map(|p| p.reason.as_str()).collect();
    for expected in ["not valid base64", "not an event envelope", "partitionKey"] {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "no reason mentions {expected:?}: {reasons:?}"
        );
    }
}

fn engine_poison(engine: &Engine) -> Vec<shared::PoisonRecord> {
    engine.poison_sink().captured()
}

/// When the poison sink cannot keep a record, the record is reported for retry and its key stops:
/// nothing is lost.
#[tokio::test]
async fn poison_is_retried_when_it_cannot_be_captured() {
    let not_base64 = raw_record("A", 1, "***");
    let records = vec![not_base64, placed("A", 2, "a2"), placed("B", 3, "b1")];
    let engine = engine(Recorder::default(), 4);
    engine.poison_sink().refuse(true);
    let out = engine
        .process(&KinesisBatch::from_slice(&event(records)).unwrap(), None)
        .await;
    assert_eq!(out.failed_sequence_numbers(), vec![seq(1)]);
    assert_eq!(engine.consumer().keys_calls("A"), Vec::<String>::new());
    assert_eq!(engine.consumer().keys_calls("B"), vec!["b1"]);
}

/// Unwanted event types are skipped as success and counted by type.
#[tokio::test]
async fn unwanted_types_are_skipped() {
    let records = vec![
        record("A", 1, &order_event("ORDER_SHIPPED", "a1")),
        placed("A", 2, "a2"),
        record("B", 3, &order_event("PAYMENT_CAPTURED", "b1")),
        record("B", 4, &order_event("ORDER_SHIPPED", "b2")),
    ];
    let engine = engine(Recorder::default(), 4);
    let out = engine
        .process(&KinesisBatch::from_slice(&event(records)).unwrap(), None)
        .await;
    assert!(out.response.batch_item_failures.is_empty());
    assert_eq!(out.stats.applied, 1);
    assert_eq!(out.stats.skipped.get("ORDER_SHIPPED"), Some(&2));
    assert_eq!(out.stats.skipped.get("PAYMENT_CAPTURED"), Some(&1));
    assert_eq!(engine.consumer().calls().len(), 1);
}

/// Near the deadline no record starts, the one running is abandoned, and all of them are
/// reported; the engine returns at the cutoff, before the deadline.
#[tokio::test(start_paused = true)]
async fn deadline_is_respected() {
    let mut rule = Recorder::default();
    rule.delay.insert("*".into(), Duration::from_millis(100));
    let records = (1..=5).map(|i| placed("A", i, &format!("a{i}"))).collect();
    let batch = KinesisBatch::from_slice(&event(records)).unwrap();
    let engine = engine(rule, 4);
    let start = Instant::now();
    // Margin 100 ms: the cutoff is at 250 ms. a1 and a2 finish; a3 is running and is abandoned.
    let out = engine
        .process(&batch, Some(start + Duration::from_millis(350)))
        .await;
    assert_eq!(start.elapsed(), Duration::from_millis(250));
    assert_eq!(engine.consumer().keys_calls("A"), vec!["a1", "a2"]);
    assert_eq!(out.failed_sequence_numbers(), vec![seq(3), seq(4), seq(5)]);
    assert_eq!((out.stats.applied, out.stats.unstarted), (2, 3));
}

/// A deadline already inside the margin starts nothing and reports everything.
#[tokio::test(start_paused = true)]
async fn deadline_already_near_starts_nothing() {
    let records = (1..=3)
        .map(|i| placed(&format!("k{i}"), i, &format!("o{i}")))
        .collect();
    let engine = engine(Recorder::default(), 4);
    let out = engine
        .process(
            &KinesisBatch::from_slice(&event(records)).unwrap(),
            Some(Instant::now() + Duration::from_millis(50)),
        )
        .await;
    assert!(engine.consumer().calls().is_empty());
    assert_eq!(out.failed_sequence_numbers(), vec![seq(1), seq(2), seq(3)]);
}

/// An empty batch gives an empty response.
#[tokio::test]
async fn empty_batch() {
    let engine = engine(Recorder::default(), 4);
    let out = engine
        .process(
            &KinesisBatch::from_slice(br#"{"Records":[]}"#).unwrap(),
            None,
        )
        .await;
    assert!(out.response.batch_item_failures.is_empty());
    assert_eq!(
        serde_json::to_value(&out.response).unwrap(),
        json!({"batchItemFailures": []})
    );
    assert_eq!(out.stats.received, 0);
}

/// When every record fails, the invocation still answers, with the first failure of each key: the
/// lowest sequence number of the batch is among them, so Lambda replays the whole batch.
#[tokio::test]
async fn all_fail_batch() {
    let mut rule = Recorder::default();
    for o in ["a1", "a2", "b1", "b2"] {
        rule.fail.insert(o.into(), ErrorClass::Retryable);
    }
    let records = vec![
        placed("A", 1, "a1"),
        placed("B", 2, "b1"),
        placed("A", 3, "a2"),
        placed("B", 4, "b2"),
    ];
    let engine = engine(rule, 4);
    let out = engine
        .process(&KinesisBatch::from_slice(&event(records)).unwrap(), None)
        .await;
    assert_eq!(out.failed_sequence_numbers(), vec![seq(1), seq(2)]);
    assert_eq!(
        (out.stats.failed, out.stats.blocked, out.stats.applied),
        (2, 2, 0)
    );
    let body = serde_json::to_value(&out.response).unwrap();
    assert_eq!(
        body["batchItemFailures"][0],
        json!({"itemIdentifier": seq(1)})
    );
}

/// The idempotency key is the eventId, or the record's identity when the producer sent none.
#[tokio::test]
async fn idempotency_key_falls_back_to_the_record() {
    #[derive(Default)]
    struct Keys(Mutex<Vec<String>>);
    impl Consumer for Keys {
        type Payload<'a> = TestEvent;

        async fn handle(&self, event: &Event<'_, Self>) -> Result<Outcome, EffectError> {
            self.0
                .lock()
                .unwrap()
                .push(event.idempotency_key().into_owned());
            Ok(Outcome::Applied)
        }
    }
    let mut anonymous = order_event("ORDER_PLACED", "o2");
    anonymous.as_object_mut().unwrap().remove("eventId");
    let records = vec![placed("A", 1, "o1"), record("A", 2, &anonymous)];
    let engine = BatchEngine::new(Keys::default(), FakePoisonSink::default(), config(1));
    engine
        .process(&KinesisBatch::from_slice(&event(records)).unwrap(), None)
        .await;
    let keys = engine.consumer().0.lock().unwrap().clone();
    assert_eq!(
        keys,
        vec![
            "evt-o1-ORDER_PLACED".to_owned(),
            format!("shardId-000000000001:{}", seq(2))
        ]
    );
}

/// A warm container remembers what it finished: when Lambda redelivers the batch after a failure,
/// the records it already finished are duplicates without a call (`remembered`); the failed one
/// and the ones after it in its key run again. With the memory off, every record is called again.
#[tokio::test]
async fn a_warm_container_remembers_what_it_finished() {
    let run = |cache: usize| async move {
        let mut rule = Recorder::default();
        rule.fail.insert("b-1".into(), ErrorClass::Retryable);
        let records = vec![
            placed("a", 1, "a-1"),
            placed("b", 2, "b-1"),
            placed("b", 3, "b-2"),
            placed("c", 4, "c-1"),
            record("d", 5, &json!({"eventId": "x"})), // poison: no eventType
        ];
        let batch = KinesisBatch::from_slice(&event(records)).unwrap();
        let engine = BatchEngine::new(
            rule,
            FakePoisonSink::default(),
            EngineConfig {
                completed_cache: cache,
                ..config(4)
            },
        );
        let first = engine.process(&batch, None).await;
        assert_eq!(first.failed_sequence_numbers().len(), 1);
        let calls_before = engine.consumer().calls().len();
        let again = engine.process(&batch, None).await;
        let called_again: Vec<String> = engine.consumer().calls()[calls_before..]
            .iter()
            .map(|(_, o)| o.clone())
            .collect();
        (
            again.stats,
            called_again,
            engine.poison_sink().captured().len(),
        )
    };
    let (stats, called, poison) = run(100).await;
    assert_eq!(called, ["b-1"], "only the failed record is called again");
    assert_eq!(
        (stats.duplicates, stats.remembered, stats.blocked),
        (3, 3, 1)
    );
    assert_eq!(poison, 1, "the poison record is not captured twice");

    let (stats, called, poison) = run(0).await;
    assert_eq!(called.len(), 3, "a-1, b-1, c-1: {called:?}");
    assert_eq!(stats.remembered, 0);
    assert_eq!(poison, 2);
}
