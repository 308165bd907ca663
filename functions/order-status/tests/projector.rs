//! The projector through the engine over the in-memory store: every event type, in any order,
//! delivered again; what is poison; its settings and its wiring over DynamoDB.

use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use order_status::fakes::FakeStatus;
use order_status::status::Status;
use order_status::{OrderStatus, Projector, StatusReader, StatusSettings};
use shared::fakes::{kinesis_event, FakePoisonSink};
use shared::runtime::{Function, Settings, Wiring};
use shared::{BatchEngine, EngineConfig, Env, ErrorClass, Problems};

type Engine = BatchEngine<Projector<FakeStatus>, FakePoisonSink>;

fn new_engine() -> Engine {
    let config = EngineConfig::defaults::<Projector<FakeStatus>>("order-status");
    BatchEngine::new(
        Projector::new(FakeStatus::default()),
        FakePoisonSink::default(),
        config,
    )
}

/// An event's record data: its id, type, producer's timestamp and payload.
fn event(id: &str, event_type: &str, time: &str, payload: serde_json::Value) -> String {
    serde_json::json!({
        "eventId": id, "eventType": event_type, "timestamp": time, "payload": payload,
        "source": "test"
    })
    .to_string()
}

fn items() -> serde_json::Value {
    serde_json::json!([{"productId": "sku-b", "quantity": 1}, {"productId": "sku-a", "quantity": 2}])
}

/// The saga's events of four orders, each order's in an order they did not happen in.
fn saga() -> Vec<String> {
    use serde_json::json;
    vec![
        // o-1: placed, reserved, paid; the payment seen first.
        event(
            "p1",
            "PAYMENT_CAPTURED",
            "2024-05-01T10:00:03Z",
            json!({"orderId": "o-1", "total": "12.50"}),
        ),
        event(
            "r1",
            "INVENTORY_RESERVED",
            "2024-05-01T10:00:02Z",
            json!({"orderId": "o-1", "userId": "u-1", "items": items(), "total": "12.50", "causationId": "e1"}),
        ),
        event(
            "e1",
            "ORDER_PLACED",
            "2024-05-01T10:00:01Z",
            json!({"orderId": "o-1", "userId": "u-1", "email": "a@example.com", "items": items(), "total": "12.50"}),
        ),
        // o-2: created elsewhere, reserved, payment failed, stock released for it.
        event(
            "x2",
            "INVENTORY_RELEASED",
            "2024-05-01T10:01:04Z",
            json!({"orderId": "o-2", "items": items(), "reason": "the payment failed", "reasonCode": "PAYMENT_FAILED", "causationId": "f2"}),
        ),
        event(
            "e2",
            "ORDER_CREATED",
            "2024-05-01T10:01:01Z",
            json!({"orderId": "o-2", "items": items()}),
        ),
        event(
            "f2",
            "PAYMENT_FAILED",
            "2024-05-01T10:01:03Z",
            json!({"orderId": "o-2", "reason": "card declined"}),
        ),
        event(
            "r2",
            "INVENTORY_RESERVED",
            "2024-05-01T10:01:02Z",
            json!({"orderId": "o-2", "items": items(), "causationId": "e2"}),
        ),
        // o-3: cancelled after it was reserved; the release seen before the cancellation.
        event(
            "x3",
            "INVENTORY_RELEASED",
            "2024-05-01T10:02:04Z",
            json!({"orderId": "o-3", "items": items(), "reason": "cancelled", "reasonCode": "CANCELLED", "causationId": "c3"}),
        ),
        event(
            "c3",
            "ORDER_CANCELLED",
            "2024-05-01T10:02:03Z",
            json!({"orderId": "o-3"}),
        ),
        event(
            "e3",
            "ORDER_PLACED",
            "2024-05-01T10:02:01Z",
            json!({"orderId": "o-3", "items": items(), "total": "3"}),
        ),
        // o-4: rejected.
        event(
            "j4",
            "INVENTORY_REJECTED",
            "2024-05-01T10:03:02Z",
            json!({"orderId": "o-4", "items": items(), "reason": "insufficient stock for sku-a: 1 available, 2 wanted", "reasonCode": "OUT_OF_STOCK", "causationId": "e4"}),
        ),
        event(
            "e4",
            "ORDER_PLACED",
            "2024-05-01T10:03:01Z",
            json!({"orderId": "o-4", "items": items(), "total": "7.00"}),
        ),
    ]
}

async fn deliver(engine: &Engine, records: &[String]) -> shared::BatchOutcome {
    engine
        .process(&kinesis_event(records.iter().map(String::as_str)), None)
        .await
}

/// Every order ends where its events say, whatever order they came in; a second delivery of
/// the whole stream is all duplicates and changes nothing; the history is sorted by time.
#[tokio::test]
async fn every_event_type_projects() {
    let engine = new_engine();
    let records = saga();
    let out = deliver(&engine, &records).await;
    assert!(out.response.batch_item_failures.is_empty());
    assert_eq!((out.stats.applied, out.stats.poison), (12, 0));
    let store = engine.consumer().store();
    let all = store.scan_all().await.unwrap();
    let statuses: Vec<(&str, Status)> = all.iter().map(|(id, v)| (id.as_str(), v.status)).collect();
    assert_eq!(
        statuses,
        [
            ("o-1", Status::Paid),
            ("o-2", Status::PaymentFailed),
            ("o-3", Status::Cancelled),
            ("o-4", Status::Rejected),
        ]
    );

    let o1 = serde_json::to_value(&all["o-1"]).unwrap();
    assert_eq!(
        o1,
        serde_json::json!({
            "orderId": "o-1",
            "status": "PAID",
            "lines": [{"productId": "sku-a", "quantity": 2}, {"productId": "sku-b", "quantity": 1}],
            "total": "12.50",
            "reason": null,
            "history": [
                {"type": "ORDER_PLACED", "eventId": "e1", "time": "2024-05-01T10:00:01Z"},
                {"type": "INVENTORY_RESERVED", "eventId": "r1", "time": "2024-05-01T10:00:02Z"},
                {"type": "PAYMENT_CAPTURED", "eventId": "p1", "time": "2024-05-01T10:00:03Z"},
            ]
        })
    );
    assert_eq!(all["o-1"].user_id.as_deref(), Some("u-1"));
    // Of two reasons of one rank, the greater text: deterministic whichever came first.
    assert_eq!(all["o-2"].reason.as_deref(), Some("the payment failed"));
    assert_eq!(all["o-2"].history[0].event_type, "ORDER_CREATED");
    assert_eq!(all["o-2"].total, None);
    assert_eq!(all["o-3"].reason.as_deref(), Some("cancelled"));
    assert_eq!(all["o-3"].total.as_deref(), Some("3"));
    assert!(all["o-4"]
        .reason
        .as_deref()
        .unwrap()
        .contains("insufficient stock"));

    let again = deliver(&engine, &records).await;
    assert_eq!((again.stats.applied, again.stats.duplicates), (0, 12));
    assert_eq!(store.scan_all().await.unwrap(), all);

    // The same events in reverse, into another store: the same table.
    let reversed = new_engine();
    let mut backwards = records.clone();
    backwards.reverse();
    deliver(&reversed, &backwards).await;
    assert_eq!(reversed.consumer().store().scan_all().await.unwrap(), all);
}

/// A failure after the order's state was written, before the event's marker: the record is
/// retried, and the retry applies it (its marker written at last).
#[tokio::test]
async fn a_retry_after_a_half_write_applies_the_event() {
    let engine = new_engine();
    let store = engine.consumer().store();
    store.fail_marker("o-1", ErrorClass::Retryable, 1);
    let placed = [event(
        "e1",
        "ORDER_PLACED",
        "t1",
        serde_json::json!({"orderId": "o-1"}),
    )];
    let out = deliver(&engine, &placed).await;
    assert_eq!(out.response.batch_item_failures.len(), 1);
    assert_eq!(
        store.state("o-1").map(|s| s.claim.status),
        Some(Status::Placed)
    );
    assert_eq!(store.events("o-1"), 0);
    let out = deliver(&engine, &placed).await;
    assert!(out.response.batch_item_failures.is_empty());
    assert_eq!(out.stats.applied, 1);
    assert_eq!(store.events("o-1"), 1);
}

/// Only what the rule uses is checked: a missing order id, a reason code that is none, a line
/// that is wrong are poison, each naming its field; a field the rule does not read is not
/// checked.
#[tokio::test]
async fn what_is_poison() {
    use serde_json::json;
    let engine = new_engine();
    let records = [
        event("a", "ORDER_CANCELLED", "t", json!({"order": "o-1"})),
        event(
            "b",
            "INVENTORY_RELEASED",
            "t",
            json!({"orderId": "o-1", "reasonCode": "LOST"}),
        ),
        event(
            "c",
            "INVENTORY_RESERVED",
            "t",
            json!({"orderId": "o-1", "items": [{"productId": "p", "quantity": -1}]}),
        ),
        event(
            "d",
            "INVENTORY_RESERVED",
            "t",
            json!({"orderId": "o-1", "reasonCode": "LOST", "email": "nobody"}),
        ),
        event("e", "ORDER_SHIPPED", "t", json!({"orderId": "o-1"})),
    ];
    let out = deliver(&engine, &records).await;
    assert_eq!((out.stats.poison, out.stats.applied), (3, 1));
    assert_eq!(out.stats.skipped.get("ORDER_SHIPPED"), Some(&1));
    let reasons: Vec<String> = engine
        .poison_sink()
        .captured()
        .into_iter()
        .map(|p| p.reason)
        .collect();
    for (reason, field) in reasons.iter().zip(["orderId", "LOST", "-1"]) {
        assert!(reason.contains(field), "{reason}");
    }
}

/// The projector's own setting, `STATUS_TABLE`, is required beside those every function needs
/// (the dead-letter queue and the ledger, for poison capture); each missing one is named.
#[test]
fn its_settings() {
    let shared = [
        ("DLQ_URL", "https://sqs.us-east-1.amazonaws.com/1/dlq"),
        ("IDEMPOTENCY_TABLE", "idempotency"),
    ];
    let err = Settings::<OrderStatus>::from_env(&Env::from_pairs(shared)).unwrap_err();
    assert_eq!(err.names(), ["STATUS_TABLE"]);
    assert!(err.to_string().contains("STATUS_TABLE is missing"), "{err}");
    let err = Settings::<OrderStatus>::from_env(&Env::from_pairs([])).unwrap_err();
    let names = err.names();
    for name in ["DLQ_URL", "IDEMPOTENCY_TABLE", "STATUS_TABLE"] {
        assert!(names.contains(&name), "{names:?}");
    }
    let all = shared.into_iter().chain([("STATUS_TABLE", "statuses")]);
    let settings = Settings::<OrderStatus>::from_env(&Env::from_pairs(all)).unwrap();
    assert_eq!(
        settings.own,
        StatusSettings {
            table: "statuses".into()
        }
    );
}

/// Wired as its `main` wires it, the projector writes the table `STATUS_TABLE` names.
#[tokio::test]
async fn wired_over_dynamodb() {
    use aws_sdk_dynamodb::Client;
    let table = |t: Option<&str>| t == Some("statuses");
    let update = mock!(Client::update_item)
        .match_requests(move |r| table(r.table_name()))
        .then_output(|| UpdateItemOutput::builder().build());
    let put = mock!(Client::put_item)
        .match_requests(move |r| {
            table(r.table_name())
                && r.item().and_then(|i| i.get("sk")) == Some(&AttributeValue::S("EVENT#e1".into()))
        })
        .then_output(|| PutItemOutput::builder().build());
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&update, &put]);
    let env = Env::from_pairs([("STATUS_TABLE", "statuses")]);
    let settings = OrderStatus::settings(&env, &mut Problems::default());
    let ledger = shared::fakes::ledger_settings();
    let sdk = aws_config::SdkConfig::builder().build();
    let wiring = Wiring {
        sdk: &sdk,
        dynamodb: &client,
        ledger: &ledger,
        scope: "order-status",
    };
    let projector = OrderStatus::wire(settings, &wiring);
    assert_eq!(projector.store().table(), "statuses");
    let config = EngineConfig::defaults::<OrderStatus>("order-status");
    let engine = BatchEngine::new(projector, FakePoisonSink::default(), config);
    let placed = event(
        "e1",
        "ORDER_PLACED",
        "t",
        serde_json::json!({"orderId": "o-1"}),
    );
    let out = engine
        .process(&kinesis_event([placed.as_str()]), None)
        .await;
    assert_eq!(out.stats.applied, 1);
    assert_eq!((update.num_calls(), put.num_calls()), (1, 1));
}
