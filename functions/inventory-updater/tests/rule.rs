//! The inventory rule over an in-memory store, on the `events/` samples.

use inventory_updater::fakes::FakeInventory;
use inventory_updater::lifecycle::ReservationStatus;
use inventory_updater::{InventoryRule, Updater};

type Config = shared::runtime::Settings<Updater>;
use shared::fakes::{kinesis_event, FakePoisonSink};
use shared::{BatchEngine, Env, ErrorClass, KinesisBatch};

fn sample(name: &str) -> KinesisBatch {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    KinesisBatch::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn engine() -> BatchEngine<InventoryRule<FakeInventory>, FakePoisonSink> {
    engine_with(&[])
}

fn engine_with(
    extra: &[(&str, &str)],
) -> BatchEngine<InventoryRule<FakeInventory>, FakePoisonSink> {
    let mut vars = vec![
        ("INVENTORY_TABLE", "inventory"),
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
        InventoryRule::new(store),
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
    assert!(
        corrupt.reason.contains("not an event envelope"),
        "{}",
        corrupt.reason
    );
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
