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
        ("REJECTED_TEMPLATE_NAME", "OrderRejected"),
        ("PAYMENT_FAILED_TEMPLATE_NAME", "PaymentFailed"),
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

/// The rule confirming at placement (`EVENT_TYPES=ORDER_PLACED`), for a pipeline without
/// inventory's decisions: what the samples of placements exercise.
fn at_placement(extra: &[(&str, &str)]) -> Engine {
    let mut vars = vec![("EVENT_TYPES", "ORDER_PLACED")];
    vars.extend_from_slice(extra);
    engine(&vars)
}

/// A placed order sends one confirmation, to the order's address, with the order in the data.
#[tokio::test]
async fn placed_order_sends_one_confirmation() {
    let engine = at_placement(&[]);
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

/// At placement, only ORDER_PLACED sends; everything else in the mixed batch is skipped and counted.
#[tokio::test]
async fn mixed_batch_sends_for_placed_orders_only() {
    let engine = at_placement(&[]);
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
    let engine = at_placement(&[]);
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
    let engine = at_placement(&[]);
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
    let engine = at_placement(&[]);
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
    let engine = at_placement(&[]);
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
        ("REJECTED_TEMPLATE_NAME", "R"),
        ("PAYMENT_FAILED_TEMPLATE_NAME", "P"),
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
    let engine = at_placement(&[]);
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
    let engine = at_placement(&[]);
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
    let engine = at_placement(&[("IDEMPOTENCY_CACHE_SIZE", "0")]);
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

/// A decision of inventory's, as it goes on the stream.
fn decision(event_id: &str, event_type: &str, order: &str, extra: &str) -> String {
    format!(
        r#"{{"eventId":"{event_id}","eventType":"{event_type}","payload":{{"orderId":"{order}","userId":"u-1","items":[{{"productId":"sku-pear","quantity":2}}],"total":"4.00","causationId":"c"{extra}}}}}"#
    )
}

/// By default the customer hears what inventory decided: a confirmation when reserved, "cannot
/// fulfil" with the reason in plain words when rejected, the payment email when its payment
/// failed; nothing for a cancellation, nothing without an address; placements themselves are
/// not this rule's.
#[tokio::test]
async fn each_decision_its_email() {
    let to = r#","email":"ada@example.com""#;
    let batch = [
        decision("d-1", "INVENTORY_RESERVED", "o-1", to),
        decision(
            "d-2",
            "INVENTORY_REJECTED",
            "o-2",
            &format!(
                r#"{to},"reason":"insufficient stock for sku-pear: 1 available, 2 wanted","reasonCode":"OUT_OF_STOCK""#
            ),
        ),
        decision(
            "d-3",
            "INVENTORY_RELEASED",
            "o-3",
            &format!(r#"{to},"reasonCode":"PAYMENT_FAILED""#),
        ),
        decision(
            "d-4",
            "INVENTORY_RELEASED",
            "o-4",
            &format!(r#"{to},"reasonCode":"CANCELLED""#),
        ),
        decision(
            "d-5",
            "INVENTORY_REJECTED",
            "o-5",
            &format!(r#"{to},"reasonCode":"CANCELLED""#),
        ),
        decision("d-6", "INVENTORY_RESERVED", "o-6", ""),
        r#"{"eventId":"p-1","eventType":"ORDER_PLACED","payload":{"orderId":"o-7"}}"#.to_owned(),
    ];
    let engine = engine(&[]);
    let out = engine
        .process(&kinesis_event(batch.iter().map(String::as_str)), None)
        .await;
    assert!(out.response.batch_item_failures.is_empty());
    assert_eq!(
        (out.stats.applied, out.stats.no_effect, out.stats.poison),
        (3, 3, 0),
        "{:?}",
        out.stats
    );
    assert_eq!(out.stats.skipped.get("ORDER_PLACED"), Some(&1));
    let sent = engine.consumer().sender().sent();
    let kinds: Vec<_> = sent.iter().map(|s| (s.order_id.as_str(), s.kind)).collect();
    use email_notifier::NoticeKind::*;
    assert_eq!(
        kinds,
        [
            ("o-1", Confirmation),
            ("o-2", Rejected),
            ("o-3", PaymentFailed)
        ]
    );
    let rejected: Value = serde_json::from_str(&sent[1].template_data).unwrap();
    assert_eq!(
        rejected["reason"],
        "Not enough stock is left of one of the products you ordered."
    );
    assert_eq!(rejected["total"], "4.00");
    assert_eq!(rejected["items"][0]["productId"], "sku-pear");
    let confirmed: Value = serde_json::from_str(&sent[0].template_data).unwrap();
    assert!(confirmed.get("reason").is_none());
    assert_eq!(confirmed["itemCount"], 2);
}

/// At most once per order and step: the same decision again (a copy, or another id for the same
/// step) sends nothing more; another step of the same order does send.
#[tokio::test]
async fn once_per_order_and_step() {
    let to = r#","email":"ada@example.com""#;
    let failed = format!(r#"{to},"reasonCode":"PAYMENT_FAILED""#);
    let engine = engine(&[("IDEMPOTENCY_CACHE_SIZE", "0")]);
    for data in [
        decision("d-1", "INVENTORY_RESERVED", "o-1", to),
        decision("d-1", "INVENTORY_RESERVED", "o-1", to),
        decision("d-1-again", "INVENTORY_RESERVED", "o-1", to),
        decision("d-2", "INVENTORY_RELEASED", "o-1", &failed),
        decision("d-2", "INVENTORY_RELEASED", "o-1", &failed),
    ] {
        let out = engine.process(&kinesis_event([data.as_str()]), None).await;
        assert!(out.response.batch_item_failures.is_empty());
    }
    let kinds: Vec<_> = engine
        .consumer()
        .sender()
        .sent()
        .into_iter()
        .map(|s| s.kind)
        .collect();
    use email_notifier::NoticeKind::*;
    assert_eq!(kinds, [Confirmation, PaymentFailed]);
    assert!(engine
        .consumer()
        .ledger()
        .done_note("order/o-1/confirmation")
        .is_some());
}

/// A decision whose address SES would refuse can never succeed: poison, with its field named.
#[tokio::test]
async fn a_bad_address_in_a_decision_is_poison() {
    let data = decision(
        "d-1",
        "INVENTORY_RESERVED",
        "o-1",
        r#","email":"not an address""#,
    );
    let engine = engine(&[]);
    let out = engine.process(&kinesis_event([data.as_str()]), None).await;
    assert_eq!(out.stats.poison, 1);
    let reason = &engine.poison_sink().captured()[0].reason;
    assert!(reason.contains("email"), "{reason}");
    assert!(engine.consumer().sender().sent().is_empty());
}
