//! The inventory rule over an in-memory store, on the `events/` samples.

use inventory_updater::fakes::FakeInventory;
use inventory_updater::lifecycle::ReservationStatus;
use inventory_updater::{InventoryRule, Updater};
use producer::ports::fakes::FakeStream;

type Config = shared::runtime::Settings<Updater>;
use shared::fakes::{kinesis_event, FakePoisonSink};
use shared::{BatchEngine, Env, ErrorClass, KinesisBatch};

fn sample(name: &str) -> KinesisBatch {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    KinesisBatch::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

type Engine = BatchEngine<InventoryRule<FakeInventory, FakeStream>, FakePoisonSink>;

fn engine() -> Engine {
    engine_with(&[])
}

fn engine_with(extra: &[(&str, &str)]) -> Engine {
    engine_over(extra, FakeStream::new(2))
}

fn engine_over(extra: &[(&str, &str)], stream: FakeStream) -> Engine {
    let mut vars = vec![
        ("INVENTORY_TABLE", "inventory"),
        ("STREAM_NAME", "order-events"),
        ("IDEMPOTENCY_TABLE", "idempotency"),
        ("DLQ_URL", "https://sqs.us-east-1.amazonaws.com/1/dlq"),
    ];
    vars.extend_from_slice(extra);
    let config = Config::from_env(&Env::from_pairs(vars)).unwrap();
    let store = FakeInventory::with_stock([
        ("sku-apple", 10),
        ("sku-pear", 5),
        ("sku-plum", 8),
        ("sku-gold", 10),
    ]);
    BatchEngine::new(
        InventoryRule::new(store, stream),
        FakePoisonSink::default(),
        config.common.engine,
    )
}

/// A placed order reserves every line; its cancellation gives them back.
#[tokio::test]
async fn placed_then_cancelled() {
    let engine = engine();
    let store = engine.consumer().store();
    let out = engine.process(&sample("order-placed.json"), None).await;
    assert!(out.response.batch_item_failures.is_empty());
    assert_eq!(
        (store.stock("sku-apple"), store.stock("sku-pear")),
        (Some(8), Some(4))
    );
    assert_eq!(
        store.reservation("order-1001").unwrap().status,
        ReservationStatus::Reserved
    );

    let out = engine.process(&sample("order-cancelled.json"), None).await;
    assert!(out.response.batch_item_failures.is_empty());
    assert_eq!(
        (store.stock("sku-apple"), store.stock("sku-pear")),
        (Some(10), Some(5))
    );
    assert_eq!(
        store.reservation("order-1001").unwrap().status,
        ReservationStatus::Released
    );
}

/// The mixed batch: reservations, a cancellation within the batch, and two business rejections
/// (out of stock, unknown product) that are recorded and not retried.
#[tokio::test]
async fn mixed_batch() {
    let engine = engine();
    let store = engine.consumer().store();
    let out = engine.process(&sample("mixed-batch.json"), None).await;
    assert!(
        out.response.batch_item_failures.is_empty(),
        "{:?}",
        out.response
    );
    // order-2001: apple 1; order-2002: created then cancelled; order-2003: plum 3+1, apple 1.
    assert_eq!(store.stock("sku-apple"), Some(8));
    assert_eq!(store.stock("sku-pear"), Some(5));
    assert_eq!(store.stock("sku-plum"), Some(4));
    assert_eq!(
        store.stock("sku-gold"),
        Some(10),
        "the rejected order took nothing"
    );
    assert_eq!(
        store.reservation("order-2002").unwrap().status,
        ReservationStatus::Released
    );
    let gold = store.reservation("order-2004").unwrap();
    assert_eq!(gold.status, ReservationStatus::Rejected);
    assert!(gold
        .reason
        .unwrap()
        .contains("insufficient stock for sku-gold"));
    assert!(store
        .reservation("order-2005")
        .unwrap()
        .reason
        .unwrap()
        .contains("unknown product"));
    assert_eq!((out.stats.applied, out.stats.rejected), (4, 2));
    assert_eq!(out.stats.skipped.values().sum::<u64>(), 2);
}

/// The same batch delivered again changes nothing: every reservation, rejection and release is a
/// duplicate.
#[tokio::test]
async fn redelivery_changes_nothing() {
    let engine = engine();
    let store = engine.consumer().store();
    engine.process(&sample("mixed-batch.json"), None).await;
    let out = engine.process(&sample("mixed-batch.json"), None).await;
    assert!(out.response.batch_item_failures.is_empty());
    assert_eq!(store.stock("sku-apple"), Some(8));
    assert_eq!(store.stock("sku-plum"), Some(4));
    assert_eq!((out.stats.applied, out.stats.rejected), (0, 0));
    assert_eq!(out.stats.duplicates, 6);
}

/// A retryable store failure is reported and stops its key: the cancellation of the same order,
/// later in the batch, does not run before it.
#[tokio::test]
async fn failure_stops_the_key() {
    let engine = engine();
    let store = engine.consumer().store();
    store.fail_order("order-2002", ErrorClass::Retryable, 1);
    let out = engine.process(&sample("mixed-batch.json"), None).await;
    assert_eq!(
        out.failed_sequence_numbers(),
        vec!["49590338271490256608559692538361571095921575989136588811"]
    );
    assert_eq!(out.stats.blocked, 1);
    assert!(
        store.reservation("order-2002").is_none(),
        "the cancellation did not run first"
    );
    assert_eq!(store.stock("sku-pear"), Some(5));
}

/// Each missing setting stops start-up with its name.
#[test]
fn missing_settings_are_named() {
    let full = [
        ("INVENTORY_TABLE", "t"),
        ("STREAM_NAME", "s"),
        ("IDEMPOTENCY_TABLE", "i"),
        ("DLQ_URL", "https://sqs.us-east-1.amazonaws.com/1/dlq"),
    ];
    assert!(Config::from_env(&Env::from_pairs(full)).is_ok());
    for missing in full.map(|(k, _)| k) {
        let env = Env::from_pairs(full.into_iter().filter(|(k, _)| *k != missing));
        let err = Config::from_env(&env).unwrap_err();
        assert!(err.to_string().contains(missing), "{missing}: {err}");
    }
}

/// KPL aggregates made by an independent aggregator (aws-kinesis-agg): each user record is applied
/// under its own partition key; a bad digest makes a plain record (poison), and a user record with
/// a bad payload is captured alone, with its own data and sub-sequence number.
#[tokio::test]
async fn kpl_aggregated_records() {
    let engine = engine();
    let store = engine.consumer().store();
    let out = engine.process(&sample("kpl-aggregated.json"), None).await;
    assert!(
        out.response.batch_item_failures.is_empty(),
        "{:?}",
        out.response
    );
    assert_eq!(out.stats.received, 4);
    assert_eq!((out.stats.applied, out.stats.poison), (4, 2));
    assert_eq!(out.stats.skipped.get("ORDER_SHIPPED"), Some(&1));
    for order in ["order-4001", "order-4002", "order-4003", "order-4004"] {
        assert_eq!(
            store.reservation(order).unwrap().status,
            ReservationStatus::Reserved,
            "{order}"
        );
    }
    assert_eq!(store.stock("sku-pear"), Some(3));
    let poison = engine.poison_sink().captured();
    let sub = poison
        .iter()
        .find(|p| p.sub_sequence_number.is_some())
        .unwrap();
    assert_eq!(sub.partition_key.as_deref(), Some("order-4007"));
    assert_eq!(sub.sub_sequence_number, Some(0));
    let data = String::from_utf8(base64_decode(&sub.data)).unwrap();
    assert!(
        data.contains("evt-4007"),
        "the user record's own data: {data}"
    );
    let corrupt = poison
        .iter()
        .find(|p| p.sub_sequence_number.is_none())
        .unwrap();
    // Its reason says what it was: an aggregate whose digest does not match, read as plain data.
    for said in [
        "not an event envelope",
        "KPL aggregate's magic number",
        "MD5 digest does not match",
        "read as a plain record",
    ] {
        assert!(corrupt.reason.contains(said), "{said}: {}", corrupt.reason);
    }
}

/// A failing user record reports its parent's sequence number; the parent's other user records,
/// under other keys, still run.
#[tokio::test]
async fn kpl_failure_reports_the_parent() {
    let engine = engine();
    let store = engine.consumer().store();
    store.fail_order("order-4002", ErrorClass::Retryable, 1);
    let out = engine.process(&sample("kpl-aggregated.json"), None).await;
    assert_eq!(
        out.failed_sequence_numbers(),
        vec!["49590338271490256608559692538361571095921575989136588840"]
    );
    assert!(store.reservation("order-4001").is_some());
    assert!(store.reservation("order-4003").is_some());
    assert!(store.reservation("order-4002").is_none());
    // The redelivery of the whole parent applies only what is missing. This warm engine
    // remembers what it finished (the parent's other user records, and the sample's two poison
    // records it captured): they are duplicates with no call, and nothing is captured twice.
    let out = engine.process(&sample("kpl-aggregated.json"), None).await;
    assert!(out.response.batch_item_failures.is_empty());
    assert_eq!(
        (
            out.stats.applied,
            out.stats.duplicates,
            out.stats.remembered,
            out.stats.poison
        ),
        (1, 5, 5, 0)
    );
}

fn base64_decode(s: &str) -> Vec<u8> {
    use aws_lambda_events::encodings::Base64Data;
    serde_json::from_value::<Base64Data>(serde_json::Value::String(s.to_owned()))
        .unwrap()
        .0
}

/// The article's Python producer (spaces, no eventId, a naive timestamp, a string total, float
/// quantities, no email) and a cancellation that carries only the order: every event is applied.
#[tokio::test]
async fn real_producers_are_read() {
    let engine = engine();
    let store = engine.consumer().store();
    let out = engine.process(&sample("real-producers.json"), None).await;
    assert!(out.response.batch_item_failures.is_empty());
    assert_eq!(
        (out.stats.applied, out.stats.poison),
        (3, 0),
        "{:?}",
        out.stats
    );
    assert!(engine.poison_sink().captured().is_empty());
    // order-5001 was created (apple 2.0, pear 1), then cancelled; order-5002 holds plum 3.0.
    assert_eq!(
        store.reservation("order-5001").unwrap().status,
        ReservationStatus::Released
    );
    assert_eq!(
        (store.stock("sku-apple"), store.stock("sku-pear")),
        (Some(10), Some(5))
    );
    assert_eq!(store.stock("sku-plum"), Some(5));
}

/// A cancellation that overtakes its order is recorded as a tombstone, and the late placement
/// takes no stock; delivered again, nothing changes.
#[tokio::test]
async fn cancellation_before_its_order() {
    let engine = engine();
    let store = engine.consumer().store();
    let out = engine
        .process(&sample("cancel-before-order.json"), None)
        .await;
    assert!(out.response.batch_item_failures.is_empty());
    assert_eq!((out.stats.no_effect, out.stats.rejected), (1, 1));
    let order = store.reservation("order-6001").unwrap();
    assert_eq!(order.status, ReservationStatus::Rejected);
    assert_eq!(
        order.reason.as_deref(),
        Some("cancelled before it was placed")
    );
    assert_eq!(order.cancelled_by.as_deref(), Some("evt-6001"));
    assert_eq!(store.stock("sku-apple"), Some(10));

    let out = engine
        .process(&sample("cancel-before-order.json"), None)
        .await;
    assert_eq!(out.stats.duplicates, 2, "{:?}", out.stats);
    assert_eq!(store.stock("sku-apple"), Some(10));
}

/// A schema per event type: a placement needs its order and lines, a cancellation only its order;
/// what breaks the type's schema is poison, and the reason names the field.
#[tokio::test]
async fn each_type_is_checked_by_its_own_schema() {
    let batch = kinesis_event([
        // Valid: the email is neither required nor checked here.
        r#"{"eventType":"ORDER_PLACED","payload":{"orderId":"o-1","email":"not an address","items":[{"productId":"sku-apple","quantity":1}]}}"#,
        r#"{"eventType":"ORDER_CANCELLED","payload":{"orderId":"o-2"}}"#,
        // Poison: each names its field.
        r#"{"eventType":"ORDER_CREATED","payload":{"orderId":"o-3","items":[{"productId":"sku-apple","quantity":2.5}]}}"#,
        r#"{"eventType":"ORDER_PLACED","payload":{"orderId":"o-4"}}"#,
        r#"{"eventType":"ORDER_CANCELLED","payload":{"reason":"no order"}}"#,
    ]);
    let engine = engine();
    let out = engine.process(&batch, None).await;
    assert!(out.response.batch_item_failures.is_empty());
    assert_eq!(
        (out.stats.applied, out.stats.no_effect, out.stats.poison),
        (1, 1, 3)
    );
    let reasons: Vec<String> = engine
        .poison_sink()
        .captured()
        .into_iter()
        .map(|p| p.reason)
        .collect();
    for expected in [
        "quantity 2.5",
        "missing field `items`",
        "missing field `orderId`",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "{expected}: {reasons:?}"
        );
    }
    assert!(
        reasons.iter().any(|r| r.contains("ORDER_CANCELLED")),
        "{reasons:?}"
    );
}

/// A cancellation or placement whose `eventId` was applied with another payload is poison ("eventId
/// reused with a different payload") and changes no stock; the same payload again is a duplicate.
#[tokio::test]
async fn an_event_id_reused_with_another_payload_is_poison() {
    // Each batch's record is at sequence number 0: the warm memory (by stream identity) would
    // take it for a redelivery, so these deliveries go to the store.
    let engine = engine_with(&[("IDEMPOTENCY_CACHE_SIZE", "0")]);
    let store = engine.consumer().store();
    let placed = |order: &str, quantity: u64| {
        format!(
            r#"{{"eventId":"evt-9","eventType":"ORDER_PLACED","payload":{{"orderId":"{order}","items":[{{"productId":"sku-pear","quantity":{quantity}}}]}}}}"#
        )
    };
    let batches = [
        placed("o-9", 2),
        placed("o-9", 2),
        placed("o-9", 4),
        placed("o-10", 2),
    ];
    let mut seen = Vec::new();
    for data in &batches {
        let out = engine.process(&kinesis_event([data.as_str()]), None).await;
        assert!(out.response.batch_item_failures.is_empty());
        seen.push((out.stats.applied, out.stats.duplicates, out.stats.poison));
    }
    assert_eq!(seen, [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 1)]);
    assert_eq!(store.stock("sku-pear"), Some(3));
    assert!(store.reservation("o-10").is_none());
    let captured = engine.poison_sink().captured();
    assert!(captured
        .iter()
        .all(|p| p.reason.contains("eventId reused with a different payload")));
}

/// The decisions written to the stream, in the order written: (partition key, event type, event
/// id, payload).
fn published(engine: &Engine) -> Vec<(String, String, String, serde_json::Value)> {
    let stream = engine.consumer().stream();
    let written = stream.written.lock().unwrap();
    let mut out = Vec::new();
    for entry in written.iter().flatten() {
        let v: serde_json::Value = serde_json::from_slice(&entry.data).unwrap();
        out.push((
            entry.partition_key.clone(),
            v["eventType"].as_str().unwrap().to_owned(),
            v["eventId"].as_str().unwrap().to_owned(),
            v["payload"].clone(),
        ));
    }
    out
}

/// Each decision is published once, keyed by the order, with its derived id and what its readers
/// need: a reservation, a rejection with its reason, a release.
#[tokio::test]
async fn each_decision_is_published() {
    let engine = engine();
    let out = engine.process(&sample("order-placed.json"), None).await;
    assert!(out.response.batch_item_failures.is_empty());
    let out = engine.process(&sample("order-cancelled.json"), None).await;
    assert!(out.response.batch_item_failures.is_empty());
    let decisions = published(&engine);
    let types: Vec<&str> = decisions.iter().map(|d| d.1.as_str()).collect();
    assert_eq!(types, ["INVENTORY_RESERVED", "INVENTORY_RELEASED"]);
    let (key, _, id, reserved) = &decisions[0];
    assert_eq!(key, "order-1001");
    let placed_by = reserved["causationId"].as_str().unwrap();
    assert_eq!(
        id,
        &inventory_updater::saga::event_id(placed_by, "INVENTORY_RESERVED")
    );
    assert_eq!(reserved["orderId"], "order-1001");
    assert_eq!(reserved["email"], "user-ada@example.com");
    assert_eq!(reserved["total"], "12.50");
    assert_eq!(
        reserved["items"],
        serde_json::json!([{"productId": "sku-apple", "quantity": 2}, {"productId": "sku-pear", "quantity": 1}])
    );
    let released = &decisions[1].3;
    assert_eq!(released["reasonCode"], "CANCELLED");
    assert_eq!(
        released["email"], "user-ada@example.com",
        "kept with the order"
    );
    assert_eq!(released["items"], reserved["items"]);

    // Delivered again, nothing is decided again, and nothing more is published.
    engine.process(&sample("order-placed.json"), None).await;
    assert_eq!(published(&engine).len(), 2);
}

/// The mixed batch publishes one decision per order decided: the rejections carry the reason and
/// its code; the events that decided nothing publish nothing.
#[tokio::test]
async fn rejections_carry_their_reason() {
    let engine = engine();
    engine.process(&sample("mixed-batch.json"), None).await;
    let decisions = published(&engine);
    let mut rejected: Vec<_> = decisions
        .iter()
        .filter(|d| d.1 == "INVENTORY_REJECTED")
        .map(|d| (d.0.as_str(), d.3["reasonCode"].as_str().unwrap()))
        .collect();
    rejected.sort_unstable();
    assert_eq!(
        rejected,
        [
            ("order-2004", "OUT_OF_STOCK"),
            ("order-2005", "UNKNOWN_PRODUCT")
        ]
    );
    let reserved = decisions
        .iter()
        .filter(|d| d.1 == "INVENTORY_RESERVED")
        .count();
    assert_eq!(reserved, 3);
    let ids: std::collections::HashSet<_> = decisions.iter().map(|d| &d.2).collect();
    assert_eq!(ids.len(), decisions.len(), "one id per decision");
}

/// Never an effect without its event: a reservation committed whose publish failed is published
/// by the record's retry, with the same id, although the retry finds the reservation recorded.
#[tokio::test]
async fn a_failed_publish_is_published_by_the_retry() {
    let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut stream = FakeStream::new(1);
    let fail = failing.clone();
    stream.fail = Some(Box::new(move |_, _| {
        fail.load(std::sync::atomic::Ordering::SeqCst)
            .then_some("ProvisionedThroughputExceededException")
    }));
    // The warm memory is off, as in a new container: the retry goes to the store.
    let engine = engine_over(&[("IDEMPOTENCY_CACHE_SIZE", "0")], stream);
    let store = engine.consumer().store();
    let out = engine.process(&sample("order-placed.json"), None).await;
    assert_eq!(
        out.response.batch_item_failures.len(),
        1,
        "reported for retry"
    );
    assert_eq!(
        store.stock("sku-apple"),
        Some(8),
        "the reservation committed"
    );
    assert!(published(&engine).is_empty());

    failing.store(false, std::sync::atomic::Ordering::SeqCst);
    let out = engine.process(&sample("order-placed.json"), None).await;
    assert!(out.response.batch_item_failures.is_empty());
    assert_eq!(out.stats.duplicates, 1, "the retry changed no stock");
    assert_eq!(store.stock("sku-apple"), Some(8));
    let decisions = published(&engine);
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].1, "INVENTORY_RESERVED");
    let cause = decisions[0].3["causationId"].as_str().unwrap();
    assert_eq!(
        decisions[0].2,
        inventory_updater::saga::event_id(cause, "INVENTORY_RESERVED")
    );
    // Once more: the same id again (a copy every reader drops), never a new one.
    engine.process(&sample("order-placed.json"), None).await;
    let ids: std::collections::HashSet<_> = published(&engine).into_iter().map(|d| d.2).collect();
    assert_eq!(ids.len(), 1);
}

/// The saga's compensation: a failed payment gives a reserved order's stock back and publishes
/// the release with its cause; a failed payment first makes the late placement a rejection; a
/// placement decided by another event publishes nothing.
#[tokio::test]
async fn a_failed_payment_releases_the_stock() {
    let engine = engine();
    let store = engine.consumer().store();
    let batch = kinesis_event([
        r#"{"eventId":"p-1","eventType":"ORDER_PLACED","payload":{"orderId":"o-1","userId":"u-1","email":"a@b.co","items":[{"productId":"sku-pear","quantity":2}],"total":"4.00"}}"#,
        r#"{"eventId":"f-1","eventType":"PAYMENT_FAILED","payload":{"orderId":"o-1","reason":"card declined"}}"#,
        r#"{"eventId":"f-2","eventType":"PAYMENT_FAILED","payload":{"orderId":"o-2"}}"#,
        r#"{"eventId":"p-2","eventType":"ORDER_PLACED","payload":{"orderId":"o-2","items":[{"productId":"sku-pear","quantity":1}]}}"#,
        r#"{"eventId":"p-1-again","eventType":"ORDER_CREATED","payload":{"orderId":"o-1","items":[{"productId":"sku-pear","quantity":2}]}}"#,
    ]);
    let out = engine.process(&batch, None).await;
    assert!(out.response.batch_item_failures.is_empty());
    assert_eq!(
        store.stock("sku-pear"),
        Some(5),
        "all given back or never taken"
    );
    assert_eq!(
        store.reservation("o-1").unwrap().status,
        ReservationStatus::Released
    );
    let o2 = store.reservation("o-2").unwrap();
    assert_eq!(o2.status, ReservationStatus::Rejected);
    assert_eq!(
        o2.reason.as_deref(),
        Some("payment failed before it was placed")
    );
    let decisions: Vec<_> = published(&engine)
        .into_iter()
        .map(|d| (d.1, d.0, d.3["reasonCode"].as_str().map(str::to_owned)))
        .collect();
    let expect =
        |t: &str, o: &str, c: Option<&str>| (t.to_owned(), o.to_owned(), c.map(str::to_owned));
    let mut decisions = decisions;
    decisions.sort();
    assert_eq!(
        decisions,
        [
            expect("INVENTORY_REJECTED", "o-2", Some("PAYMENT_FAILED")),
            expect("INVENTORY_RELEASED", "o-1", Some("PAYMENT_FAILED")),
            expect("INVENTORY_RESERVED", "o-1", None),
        ]
    );
}
