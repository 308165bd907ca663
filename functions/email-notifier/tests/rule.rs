//! The email rule over an in-memory sender, on the `events/` samples.

use email_notifier::fakes::FakeEmailSender;
use email_notifier::{EmailRule, Notifier};

type Config = shared::runtime::Settings<Notifier>;
use serde_json::Value;
use shared::fakes::{kinesis_event, FakeLedger, FakePoisonSink};
use shared::idempotency::EffectKey;
use shared::{BatchEngine, Env, ErrorClass, KinesisBatch};

fn sample(name: &str) -> KinesisBatch {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    KinesisBatch::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn config(extra: &[(&str, &str)]) -> Config {
    let mut vars = vec![
        ("SENDER_ADDRESS", "shop@example.com"),
        ("TEMPLATE_NAME", "OrderConfirmation"),
        ("IDEMPOTENCY_TABLE", "idempotency"),
        ("DLQ_URL", "https://sqs.us-east-1.amazonaws.com/1/dlq"),
    ];
    vars.extend_from_slice(extra);
    Config::from_env(&Env::from_pairs(vars)).unwrap()
}

type Engine = BatchEngine<EmailRule<FakeEmailSender, FakeLedger>, FakePoisonSink>;

fn engine(extra: &[(&str, &str)]) -> Engine {
    let rule = EmailRule::new(FakeEmailSender::default(), FakeLedger::default());
    BatchEngine::new(rule, FakePoisonSink::default(), config(extra).common.engine)
}

/// A placed order sends one confirmation, to the order's address, with the order in the data.
#[tokio::test]
async fn placed_order_sends_one_confirmation() {
    let engine = engine(&[]);
    let out = engine.process(&sample("order-placed.json"), None).await;
    assert!(out.response.batch_item_failures.is_empty());
    let sent = engine.consumer().sender().sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, "user-ada@example.com");
    let data: Value = serde_json::from_str(&sent[0].template_data).unwrap();
    assert_eq!(data["orderId"], "order-1001");
    assert_eq!(data["total"], "12.50");
    assert_eq!(data["itemCount"], 3);
    assert_eq!(data["items"][0]["productId"], "sku-apple");
    assert!(
        data.get("email").is_none(),
        "the address is not template data"
    );
}

/// Only ORDER_PLACED sends by default; everything else in the mixed batch is skipped and counted.
#[tokio::test]
async fn mixed_batch_sends_for_placed_orders_only() {
    let engine = engine(&[]);
    let out = engine.process(&sample("mixed-batch.json"), None).await;
    assert!(out.response.batch_item_failures.is_empty());
    let mut orders: Vec<_> = engine
        .consumer()
        .sender()
        .sent()
        .into_iter()
        .map(|s| s.order_id)
        .collect();
    orders.sort();
    assert_eq!(
        orders,
        ["order-2001", "order-2003", "order-2004", "order-2005"]
    );
    assert_eq!(out.stats.skipped.values().sum::<u64>(), 4);
    assert_eq!(out.stats.skipped.get("ORDER_CREATED"), Some(&1));
}

/// EVENT_TYPES widens the rule to ORDER_CREATED.
#[tokio::test]
async fn event_types_are_configurable() {
    let engine = engine(&[("EVENT_TYPES", "ORDER_PLACED,ORDER_CREATED")]);
    let out = engine.process(&sample("mixed-batch.json"), None).await;
    assert_eq!(engine.consumer().sender().sent().len(), 5);
    assert_eq!(out.stats.applied, 5);
}

/// Poison records are captured; the good ones around them still send.
#[tokio::test]
async fn poison_batch_sends_the_good_ones() {
    let engine = engine(&[]);
    let out = engine.process(&sample("poison-batch.json"), None).await;
    assert!(out.response.batch_item_failures.is_empty());
    assert_eq!(engine.consumer().sender().sent().len(), 2);
    let captured = engine.poison_sink().captured();
    assert_eq!(captured.len(), 6);
    // What a confirmation needs is validated: an address SES would refuse, an order of nothing.
    let reasons: Vec<&str> = captured.iter().map(|p| p.reason.as_str()).collect();
    for expected in [
        "not valid base64",
        "not an event envelope",
        "the ORDER_PLACED payload violates its schema: email is not a valid address",
        "the ORDER_PLACED payload violates its schema: items is empty",
        "partitionKey",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "no reason mentions {expected:?}: {reasons:?}"
        );
    }
}

/// A throttled send is reported for retry, the rest of the batch goes on, and a permanent
/// rejection is captured as poison.
#[tokio::test]
async fn send_failures_are_classified() {
    let engine = engine(&[]);
    engine
        .consumer()
        .sender()
        .fail_order("order-2001", ErrorClass::Retryable, 1);
    engine
        .consumer()
        .sender()
        .fail_order("order-2003", ErrorClass::Permanent, 1);
    let out = engine.process(&sample("mixed-batch.json"), None).await;
    assert_eq!(
        out.failed_sequence_numbers(),
        vec!["49590338271490256608559692538361571095921575989136588810"]
    );
    assert_eq!(engine.consumer().sender().sent().len(), 2);
    assert_eq!(engine.poison_sink().captured().len(), 1);
    assert!(engine.poison_sink().captured()[0]
        .reason
        .contains("planned failure"));
}

/// The same batch delivered three times sends each confirmation once; the redeliveries count as
/// duplicates.
#[tokio::test]
async fn redelivery_never_sends_twice() {
    let engine = engine(&[]);
    let first = engine.process(&sample("mixed-batch.json"), None).await;
    let second = engine.process(&sample("mixed-batch.json"), None).await;
    let third = engine.process(&sample("mixed-batch.json"), None).await;
    assert_eq!(engine.consumer().sender().sent().len(), 4);
    assert_eq!((first.stats.applied, first.stats.duplicates), (4, 0));
    assert_eq!((second.stats.applied, second.stats.duplicates), (0, 4));
    assert_eq!((third.stats.applied, third.stats.duplicates), (0, 4));
    assert!(engine
        .consumer()
        .ledger()
        .done_note("evt-1001")
        .is_some_and(|id| id.starts_with("fake-message")));
}

/// A failed send gives its claim back, so the retry sends at once; a claim left by a crashed
/// delivery blocks a redelivery until its lease expires, then the redelivery sends.
#[tokio::test]
async fn claims_are_released_or_expire() {
    let engine = engine(&[]);
    engine
        .consumer()
        .sender()
        .fail_order("order-1001", ErrorClass::Retryable, 1);
    let out = engine.process(&sample("order-placed.json"), None).await;
    assert_eq!(out.stats.failed, 1);
    assert!(
        !engine.consumer().ledger().is_in_progress("evt-0001"),
        "claim released"
    );
    let out = engine.process(&sample("order-placed.json"), None).await;
    assert_eq!(out.stats.applied, 1);

    // A crash between claim and send: the claim stays, with its lease.
    use shared::idempotency::{Claim, IdempotencyStore};
    let ledger = engine.consumer().ledger();
    assert!(matches!(
        ledger.claim(&EffectKey::bare("evt-1001")).await.unwrap(),
        Claim::Claimed(_)
    ));
    let out = engine.process(&sample("mixed-batch.json"), None).await;
    assert_eq!(out.stats.failed, 1, "order-2001 waits for the lease");
    ledger.expire_leases();
    let out = engine.process(&sample("mixed-batch.json"), None).await;
    assert_eq!(out.stats.failed, 0);
    let sent: Vec<_> = engine
        .consumer()
        .sender()
        .sent()
        .into_iter()
        .filter(|s| s.order_id == "order-2001")
        .collect();
    assert_eq!(sent.len(), 1);
}

/// Each missing setting stops start-up with its name; an unsupported event type too.
#[test]
fn missing_settings_are_named() {
    let full = [
        ("SENDER_ADDRESS", "s@example.com"),
        ("TEMPLATE_NAME", "T"),
        ("IDEMPOTENCY_TABLE", "i"),
        ("DLQ_URL", "https://sqs.us-east-1.amazonaws.com/1/dlq"),
    ];
    assert!(Config::from_env(&Env::from_pairs(full)).is_ok());
    for missing in full.map(|(k, _)| k) {
        let env = Env::from_pairs(full.into_iter().filter(|(k, _)| *k != missing));
        let err = Config::from_env(&env).unwrap_err();
        assert!(err.to_string().contains(missing), "{missing}: {err}");
    }
    let env = Env::from_pairs(full.into_iter().chain([("EVENT_TYPES", "ORDER_CANCELLED")]));
    let err = Config::from_env(&env).unwrap_err();
    assert!(err.to_string().contains("EVENT_TYPES"), "{err}");
}

/// The article's Python producer: spaces, no eventId, a naive timestamp, a string total and float
/// quantities. Its placed order is confirmed (keyed by the record, as it has no eventId); its
/// created order and its cancellation are not this function's.
#[tokio::test]
async fn real_producers_are_read() {
    let engine = engine(&[]);
    let out = engine.process(&sample("real-producers.json"), None).await;
    assert!(out.response.batch_item_failures.is_empty());
    assert_eq!(
        (out.stats.applied, out.stats.poison),
        (1, 0),
        "{:?}",
        out.stats
    );
    let sent = engine.consumer().sender().sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, "user-quinn@example.com");
    let data: Value = serde_json::from_str(&sent[0].template_data).unwrap();
    assert_eq!(data["orderId"], "order-5002");
    assert_eq!(data["items"][0]["quantity"], 3);
    assert_eq!(data["total"], "6.00");
    let skipped: Vec<&str> = out.stats.skipped.keys().map(String::as_str).collect();
    assert_eq!(skipped, ["ORDER_CANCELLED", "ORDER_CREATED"]);
}

/// email-notifier reads everything a confirmation shows: a placed order without an address is
/// poison, and the reason names the field.
#[tokio::test]
async fn its_schema_requires_the_address() {
    let data = r#"{"eventType": "ORDER_PLACED", "payload": {"orderId": "o-1", "userId": "u-1", "items": [{"productId": "p", "quantity": 1}], "total": "1.00"}}"#;
    let engine = engine(&[]);
    let out = engine.process(&kinesis_event([data]), None).await;
    assert_eq!(out.stats.poison, 1);
    let reason = &engine.poison_sink().captured()[0].reason;
    assert!(reason.contains("missing field `email`"), "{reason}");
}

/// The same `eventId` with another payload is not a duplicate: the producer reused the id for
/// another order. It is poison, with the reason, and nothing is sent. The same payload written
/// otherwise (keys in another order, spacing, `2.0` for `2`, a field the rule does not read) is a
/// duplicate. Each delivery is its own batch, as a redelivery is.
#[tokio::test]
async fn an_event_id_reused_with_another_payload_is_poison() {
    let placed = |payload: &str| {
        format!(r#"{{"eventId":"evt-7","eventType":"ORDER_PLACED","payload":{payload}}}"#)
    };
    let first = placed(
        r#"{"orderId":"o-7","userId":"u-1","email":"a@b.co","items":[{"productId":"p","quantity":2}],"total":"9.50"}"#,
    );
    let same = placed(
        r#"{ "status": "NEW", "total": "9.50", "items": [ {"quantity": 2.0, "productId": "p"} ], "email": "a@b.co", "userId": "u-1", "orderId": "o-7" }"#,
    );
    let other = placed(
        r#"{"orderId":"o-7","userId":"u-1","email":"a@b.co","items":[{"productId":"p","quantity":3}],"total":"9.50"}"#,
    );
    // Each batch's records start at sequence number 0: the warm memory (by stream identity) would
    // take them for redeliveries, so these deliveries go to the ledger.
    let engine = engine(&[("IDEMPOTENCY_CACHE_SIZE", "0")]);
    let out = engine.process(&kinesis_event([first.as_str()]), None).await;
    assert_eq!(out.stats.applied, 1);
    let out = engine.process(&kinesis_event([same.as_str()]), None).await;
    assert_eq!((out.stats.duplicates, out.stats.poison), (1, 0));
    let out = engine.process(&kinesis_event([other.as_str()]), None).await;
    assert_eq!((out.stats.duplicates, out.stats.poison), (0, 1));
    assert!(out.response.batch_item_failures.is_empty());
    let captured = engine.poison_sink().captured();
    assert_eq!(captured.len(), 1);
    assert!(
        captured[0]
            .reason
            .contains("eventId reused with a different payload"),
        "{}",
        captured[0].reason
    );
    assert_eq!(engine.consumer().sender().sent().len(), 1);
}
