//! The inventory rule over an in-memory store, on the `events/` samples.

use inventory_updater::{Config, InventoryRule};
use shared::fakes::{FakeInventory, FakePoisonSink};
use shared::ports::ReservationStatus;
use shared::{BatchEngine, Env, ErrorClass, KinesisBatch};

fn sample(name: &str) -> KinesisBatch {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    KinesisBatch::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn engine() -> BatchEngine<InventoryRule<FakeInventory>, FakePoisonSink> {
    let config = Config::from_env(&Env::from_pairs([
        ("INVENTORY_TABLE", "inventory"),
        ("IDEMPOTENCY_TABLE", "idempotency"),
        ("DLQ_URL", "https://sqs.us-east-1.amazonaws.com/1/dlq"),
    ]))
    .unwrap();
    let store = FakeInventory::with_stock([
        ("sku-apple", 10),
        ("sku-pear", 5),
        ("sku-plum", 8),
        ("sku-gold", 10),
    ]);
    BatchEngine::new(
        InventoryRule::new(store),
        FakePoisonSink::default(),
        config.engine,
    )
}

/// A placed order reserves every line; its cancellation gives them back.
#[tokio::test]
async fn placed_then_cancelled() {
    let engine = engine();
    let store = engine.handler().store();
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
    let store = engine.handler().store();
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
    let store = engine.handler().store();
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
    let store = engine.handler().store();
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
