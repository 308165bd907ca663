//! The order's lifecycle in inventory, every transition of the table in docs/processing.md, over the
//! in-memory store and over the DynamoDB adapter against the local AWS-API server.

use std::collections::BTreeMap;
use std::future::Future;

use integration_tests::InventorySettings;
use integration_tests::{local_env, LocalAws};
use inventory_updater::fakes::FakeInventory;
use inventory_updater::lifecycle::{Customer, Decided, Ending};
use inventory_updater::{
    DynamoInventory, Held, InventoryStore, Placement, ReleaseOutcome, ReserveOutcome,
};
use orders::{OrderId, Quantity};
use shared::adapters::Markers;
use shared::idempotency::{EffectKey, PayloadHash};
use shared::runtime::Function;

/// What one step does to an order.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// `ORDER_PLACED` or `ORDER_CREATED` of one apple, under this event key.
    Reserve(&'static str),
    /// `ORDER_PLACED` of more apples than there are, under this event key.
    ReserveTooMany(&'static str),
    /// `ORDER_PLACED` of more distinct products than one order may hold, under this event key.
    ReserveTooManyLines(&'static str),
    /// `ORDER_CANCELLED`, under this event key.
    Release(&'static str),
    /// `PAYMENT_FAILED`, under this event key.
    PaymentFailed(&'static str),
    /// An event under this key with another payload than the cancellation's (its `eventId`
    /// reused), read as a cancellation.
    ReleaseReused(&'static str),
}

/// What a step came to.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Reserve(ReserveOutcome),
    Release(ReleaseOutcome),
}

/// One row of the table: the steps before (from no record of the order), the step, what it comes
/// to, and the order's status after it.
type Row = (&'static [Step], Step, Seen, &'static str);

fn rows() -> Vec<Row> {
    use Step::*;
    let cancelled_first = || ReserveOutcome::Rejected(Ending::Cancelled.before_placed());
    let failed_first = || ReserveOutcome::Rejected(Ending::PaymentFailed.before_placed());
    vec![
        (
            &[],
            Reserve("e1"),
            Seen::Reserve(ReserveOutcome::Reserved),
            "RESERVED",
        ),
        (
            &[],
            Release("e1"),
            Seen::Release(ReleaseOutcome::EndedFirst),
            "CANCELLED",
        ),
        (
            &[],
            PaymentFailed("e1"),
            Seen::Release(ReleaseOutcome::EndedFirst),
            "CANCELLED",
        ),
        // Created, then placed: reserved once; only the event that decided learns what it
        // decided (to publish it again).
        (
            &[Reserve("e1")],
            Reserve("e2"),
            Seen::Reserve(ReserveOutcome::AlreadyRecorded(None)),
            "RESERVED",
        ),
        (
            &[Reserve("e1")],
            Reserve("e1"),
            Seen::Reserve(ReserveOutcome::AlreadyRecorded(Some(Decided::Reserved))),
            "RESERVED",
        ),
        (
            &[Reserve("e1")],
            Release("e2"),
            Seen::Release(ReleaseOutcome::Released(held())),
            "RELEASED",
        ),
        // The saga's compensation releases as a cancellation does.
        (
            &[Reserve("e1")],
            PaymentFailed("e2"),
            Seen::Release(ReleaseOutcome::Released(held())),
            "RELEASED",
        ),
        // Releasing is idempotent: the same event (which learns what it gave back), or another.
        (
            &[Reserve("e1"), Release("e2")],
            Release("e2"),
            Seen::Release(ReleaseOutcome::AlreadyReleased(Some(held()))),
            "RELEASED",
        ),
        (
            &[Reserve("e1"), Release("e2")],
            Release("e3"),
            Seen::Release(ReleaseOutcome::AlreadyReleased(None)),
            "RELEASED",
        ),
        (
            &[Reserve("e1"), Release("e2")],
            PaymentFailed("e3"),
            Seen::Release(ReleaseOutcome::AlreadyReleased(None)),
            "RELEASED",
        ),
        (
            &[Reserve("e1"), Release("e2")],
            Reserve("e3"),
            Seen::Reserve(ReserveOutcome::AlreadyRecorded(None)),
            "RELEASED",
        ),
        // A cancellation that overtook its order: the placement takes no stock.
        (
            &[Release("e1")],
            Reserve("e2"),
            Seen::Reserve(cancelled_first()),
            "REJECTED",
        ),
        (
            &[PaymentFailed("e1")],
            Reserve("e2"),
            Seen::Reserve(failed_first()),
            "REJECTED",
        ),
        // Rejected as cancelled, also when it would be rejected for another reason.
        (
            &[Release("e1")],
            ReserveTooManyLines("e2"),
            Seen::Reserve(cancelled_first()),
            "REJECTED",
        ),
        (
            &[Release("e1")],
            Release("e1"),
            Seen::Release(ReleaseOutcome::AlreadyReleased(None)),
            "CANCELLED",
        ),
        (
            &[Release("e1")],
            Release("e2"),
            Seen::Release(ReleaseOutcome::AlreadyReleased(None)),
            "CANCELLED",
        ),
        (
            &[Release("e1"), Reserve("e2")],
            Reserve("e3"),
            Seen::Reserve(ReserveOutcome::AlreadyRecorded(None)),
            "REJECTED",
        ),
        (
            &[Release("e1"), Reserve("e2")],
            Release("e3"),
            Seen::Release(ReleaseOutcome::NothingReserved),
            "REJECTED",
        ),
        // A cancellation that changes nothing finds no marker to compare, in either store: an
        // `eventId` reused for it changes nothing either (the release recorded under its key is
        // what it learns).
        (
            &[Reserve("e1"), Release("e2")],
            ReleaseReused("e2"),
            Seen::Release(ReleaseOutcome::AlreadyReleased(Some(held()))),
            "RELEASED",
        ),
        (
            &[Release("e1")],
            ReleaseReused("e1"),
            Seen::Release(ReleaseOutcome::AlreadyReleased(None)),
            "CANCELLED",
        ),
        // Rejected for want of stock: nothing to release.
        (
            &[ReserveTooMany("e1")],
            Release("e2"),
            Seen::Release(ReleaseOutcome::NothingReserved),
            "REJECTED",
        ),
    ]
}

/// Who orders, in every placement of the table.
fn customer() -> Customer {
    Customer {
        user_id: Some("u-1".into()),
        email: Some("ada@example.com".into()),
        total: Some("1.00".into()),
    }
}

/// What a reserved order of the table holds, as its release gives it back.
fn held() -> Held {
    Held {
        lines: [("sku-apple".to_owned(), 1)].into(),
        customer: customer(),
    }
}

async fn apply<S: InventoryStore>(store: &S, order: &str, step: Step) -> Seen {
    let order_id = OrderId::parse(order.into()).unwrap();
    let lines = |q: u64| BTreeMap::from([("sku-apple", Quantity::new(q).unwrap())]);
    let placed = |lines| Placement {
        order_id: &order_id,
        lines,
        customer: customer(),
    };
    // Event keys are per order, as event ids are; each carries its payload's hash (a
    // cancellation's, or a placement's).
    let keyed = |e: &str, payload: &str| EffectKey {
        key: format!("{order}-{e}").into(),
        payload_hash: PayloadHash::of(&(order, payload)).ok(),
    };
    let key = |e: &str| {
        keyed(
            e,
            if matches!(step, Step::Release(_) | Step::PaymentFailed(_)) {
                "cancel"
            } else {
                "place"
            },
        )
    };
    match step {
        Step::Reserve(e) => Seen::Reserve(store.reserve(&key(e), &placed(lines(1))).await.unwrap()),
        Step::ReserveTooMany(e) => Seen::Reserve(
            store
                .reserve(&key(e), &placed(lines(Quantity::MAX)))
                .await
                .unwrap(),
        ),
        Step::ReserveTooManyLines(e) => {
            let skus: Vec<String> = (0..120).map(|i| format!("sku-{i:03}")).collect();
            let lines = skus
                .iter()
                .map(|sku| (sku.as_str(), Quantity::new(1).unwrap()))
                .collect();
            Seen::Reserve(store.reserve(&key(e), &placed(lines)).await.unwrap())
        }
        Step::Release(e) => Seen::Release(
            store
                .release(&key(e), &order_id, Ending::Cancelled)
                .await
                .unwrap(),
        ),
        Step::PaymentFailed(e) => Seen::Release(
            store
                .release(&key(e), &order_id, Ending::PaymentFailed)
                .await
                .unwrap(),
        ),
        Step::ReleaseReused(e) => Seen::Release(
            store
                .release(&keyed(e, "another event"), &order_id, Ending::Cancelled)
                .await
                .unwrap(),
        ),
    }
}

/// Walks every row over `store`, each on its own order, then checks that the stock of apples is
/// what the orders still hold says it is.
async fn walk<S, F, Fut>(store: &S, status: F, apples: impl AsyncFn() -> i64)
where
    S: InventoryStore,
    F: Fn(String) -> Fut,
    Fut: Future<Output = Option<String>>,
{
    let start = apples().await;
    let mut held = 0;
    for (i, (before, step, seen, after)) in rows().into_iter().enumerate() {
        let order = format!("order-lc-{i}");
        for &b in before {
            apply(store, &order, b).await;
        }
        assert_eq!(
            apply(store, &order, step).await,
            seen,
            "row {i}: {before:?} then {step:?}"
        );
        assert_eq!(
            status(order.clone()).await.as_deref(),
            Some(after),
            "row {i}"
        );
        if after == "RESERVED" {
            held += 1;
        }
    }
    assert_eq!(
        apples().await,
        start - held,
        "stock: only the reserved orders hold apples"
    );
}

/// Every transition over the in-memory store.
#[tokio::test]
async fn lifecycle_over_the_fake() {
    let store = FakeInventory::with_stock([("sku-apple", 10)]);
    let status = |order: String| {
        let status = store
            .reservation(&order)
            .map(|r| r.status.as_str().to_owned());
        async move { status }
    };
    walk(&store, status, async || {
        store.stock("sku-apple").unwrap_or(0) as i64
    })
    .await;
}

/// Every transition over DynamoDB, against the local server.
#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_over_dynamodb() {
    let aws = LocalAws::start();
    let config = InventorySettings::from_env(&local_env(&[])).unwrap();
    let sdk = LocalAws::sdk_config(&aws.endpoint()).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let markers = Markers::new(
        client.clone(),
        config.common.ledger,
        inventory_updater::Updater::NAME,
    );
    let store = DynamoInventory::new(client, config.own.table, markers);
    let status = |order: String| {
        let aws = &aws;
        async move { aws.reservation(&order).await.map(|(status, _)| status) }
    };
    walk(&store, status, async || aws.stock().await["sku-apple"]).await;
}
