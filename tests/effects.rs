//! End to end: the real handlers, with real SDK clients, over real HTTP, against moto's AWS-API
//! server on loopback. Each test starts its own server.

use std::time::Duration;

use integration_tests::proxy::{Fault, FaultProxy};
use integration_tests::{local_env, sample, LocalAws};
use integration_tests::{EmailSettings, InventorySettings};
use shared::fakes::kinesis_event;
use shared::{BatchOutcome, KinesisBatch};

const PLACED_SEQ: &str = "49590338271490256608559692538361571095921575989136588801";

async fn run_email(endpoint: &str, batch: &str) -> BatchOutcome {
    email_batch(endpoint, &sample(batch)).await
}

async fn email_batch(endpoint: &str, batch: &KinesisBatch) -> BatchOutcome {
    // Confirming at placement (`EVENT_TYPES=ORDER_PLACED`): the samples are placements. The saga's
    // path (a confirmation once reserved) is tests/saga.rs's.
    let config = EmailSettings::from_env(&local_env(&[("EVENT_TYPES", "ORDER_PLACED")])).unwrap();
    let engine = shared::runtime::engine(config, &LocalAws::sdk_config(endpoint).await);
    engine.process(batch, None).await
}

async fn run_inventory(endpoint: &str, batch: &str) -> BatchOutcome {
    inventory_batch(endpoint, &sample(batch)).await
}

async fn inventory_batch(endpoint: &str, batch: &KinesisBatch) -> BatchOutcome {
    let config = InventorySettings::from_env(&local_env(&[])).unwrap();
    let engine = shared::runtime::engine(config, &LocalAws::sdk_config(endpoint).await);
    engine.process(batch, None).await
}

/// A placed order: exactly one email recorded by the server, to the customer, with the order in
/// the template data; and the stock of each line goes down.
#[tokio::test(flavor = "multi_thread")]
async fn placed_order_sends_one_email_and_reserves_stock() {
    let aws = LocalAws::start();
    let before = aws.stock().await;
    let email = run_email(&aws.endpoint(), "order-placed.json").await;
    let inventory = run_inventory(&aws.endpoint(), "order-placed.json").await;
    assert!(email.response.batch_item_failures.is_empty(), "{email:?}");
    assert!(
        inventory.response.batch_item_failures.is_empty(),
        "{inventory:?}"
    );

    let emails = aws.emails();
    assert_eq!(emails.len(), 1);
    let (to, template, data) = &emails[0];
    assert_eq!(to, &vec!["user-ada@example.com".to_owned()]);
    assert_eq!(template, "OrderConfirmation");
    assert_eq!(data["orderId"], "order-1001");
    assert_eq!(data["total"], "12.50");
    assert_eq!(data["items"][0]["productId"], "sku-apple");

    let after = aws.stock().await;
    assert_eq!(after["sku-apple"], before["sku-apple"] - 2);
    assert_eq!(after["sku-pear"], before["sku-pear"] - 1);
    assert_eq!(aws.reservation("order-1001").await.unwrap().0, "RESERVED");
}

/// A cancellation gives the reserved stock back.
#[tokio::test(flavor = "multi_thread")]
async fn cancellation_restores_stock() {
    let aws = LocalAws::start();
    let before = aws.stock().await;
    run_inventory(&aws.endpoint(), "order-placed.json").await;
    assert_ne!(aws.stock().await, before);
    let out = run_inventory(&aws.endpoint(), "order-cancelled.json").await;
    assert!(out.response.batch_item_failures.is_empty());
    assert_eq!(out.stats.applied, 1);
    assert_eq!(aws.stock().await, before);
    assert_eq!(aws.reservation("order-1001").await.unwrap().0, "RELEASED");
}

/// Out of stock, and an unknown product: a REJECTED reservation with the reason, the stock
/// untouched, and the batch a success.
#[tokio::test(flavor = "multi_thread")]
async fn out_of_stock_is_rejected_and_stock_untouched() {
    let aws = LocalAws::start();
    let before = aws.stock().await;
    let out = run_inventory(&aws.endpoint(), "mixed-batch.json").await;
    assert!(out.response.batch_item_failures.is_empty(), "{out:?}");
    assert_eq!(out.stats.rejected, 2);
    let (status, reason) = aws.reservation("order-2004").await.unwrap();
    assert_eq!(status, "REJECTED");
    assert!(reason.unwrap().contains("insufficient stock for sku-gold"));
    let (status, reason) = aws.reservation("order-2005").await.unwrap();
    assert_eq!(status, "REJECTED");
    assert!(reason.unwrap().contains("unknown product sku-unknown"));
    assert_eq!(aws.stock().await["sku-gold"], before["sku-gold"]);
}

/// The same batch delivered three times: exactly one email and one reservation per order.
#[tokio::test(flavor = "multi_thread")]
async fn same_batch_three_times_applies_once() {
    let aws = LocalAws::start();
    let before = aws.stock().await;
    let mut stock_after_first = None;
    for delivery in 1..=3 {
        let email = run_email(&aws.endpoint(), "mixed-batch.json").await;
        let inventory = run_inventory(&aws.endpoint(), "mixed-batch.json").await;
        assert!(email.response.batch_item_failures.is_empty());
        assert!(inventory.response.batch_item_failures.is_empty());
        if delivery == 1 {
            assert_eq!((email.stats.applied, inventory.stats.applied), (4, 4));
            stock_after_first = Some(aws.stock().await);
        } else {
            assert_eq!((email.stats.applied, email.stats.duplicates), (0, 4));
            assert_eq!(
                (inventory.stats.applied, inventory.stats.duplicates),
                (0, 6)
            );
        }
    }
    let mut orders: Vec<String> = aws
        .emails()
        .iter()
        .map(|(_, _, d)| d["orderId"].as_str().unwrap().to_owned())
        .collect();
    orders.sort();
    assert_eq!(
        orders,
        ["order-2001", "order-2003", "order-2004", "order-2005"]
    );
    let after = aws.stock().await;
    assert_eq!(Some(&after), stock_after_first.as_ref());
    assert_eq!(after["sku-apple"], before["sku-apple"] - 2);
    assert_eq!(after["sku-plum"], before["sku-plum"] - 4);
    assert_eq!(
        after["sku-pear"], before["sku-pear"],
        "order-2002 was created and cancelled"
    );
    assert!(aws.ledger().await.values().all(|s| s == "DONE"));
}

/// Throttling and 5xx answers from the server (injected by a proxy, for every attempt the SDK
/// makes): the record is reported for retry and nothing is half-applied. When the server recovers,
/// the redelivery applies everything exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn throttling_and_5xx_are_retried_and_nothing_is_half_applied() {
    let aws = LocalAws::start();
    let before = aws.stock().await;
    let proxy = FaultProxy::start(aws.addr(), |r| match (r.service, r.operation.as_str()) {
        ("dynamodb", "TransactWriteItems") => Some(Fault::Throttle),
        ("ses", "SendTemplatedEmail") => Some(Fault::ServerError),
        _ => None,
    })
    .await;

    let inventory = run_inventory(&proxy.endpoint(), "order-placed.json").await;
    let email = run_email(&proxy.endpoint(), "order-placed.json").await;
    assert_eq!(inventory.failed_sequence_numbers(), vec![PLACED_SEQ]);
    assert_eq!(email.failed_sequence_numbers(), vec![PLACED_SEQ]);
    assert!(
        proxy.faults() >= 6,
        "every SDK attempt was refused: {}",
        proxy.faults()
    );

    // Nothing half-applied: no stock taken, no reservation, no marker, no email, no claim left.
    assert_eq!(aws.stock().await, before);
    assert_eq!(aws.reservation("order-1001").await, None);
    assert!(aws.emails().is_empty());
    assert!(aws.ledger().await.is_empty(), "{:?}", aws.ledger().await);

    // The server recovers; Lambda redelivers.
    drop(proxy);
    let inventory = run_inventory(&aws.endpoint(), "order-placed.json").await;
    let email = run_email(&aws.endpoint(), "order-placed.json").await;
    assert!(inventory.response.batch_item_failures.is_empty());
    assert!(email.response.batch_item_failures.is_empty());
    assert_eq!(aws.emails().len(), 1);
    assert_eq!(aws.stock().await["sku-apple"], before["sku-apple"] - 2);
}

/// A dropped connection and an answer slower than the SDK's attempt timeout are retryable too.
#[tokio::test(flavor = "multi_thread")]
async fn dropped_and_slow_answers_are_retried() {
    let aws = LocalAws::start();
    let before = aws.stock().await;
    let proxy = FaultProxy::start(aws.addr(), |r| match (r.service, r.operation.as_str()) {
        ("dynamodb", "TransactWriteItems") => Some(Fault::Drop),
        ("dynamodb", "GetItem") => Some(Fault::Delay(Duration::from_secs(6))),
        _ => None,
    })
    .await;
    let placed = run_inventory(&proxy.endpoint(), "order-placed.json").await;
    assert_eq!(placed.failed_sequence_numbers(), vec![PLACED_SEQ]);
    assert_eq!(aws.stock().await, before);
    // A release reads the reservation first; that read times out.
    run_inventory(&aws.endpoint(), "order-placed.json").await;
    let cancelled = run_inventory(&proxy.endpoint(), "order-cancelled.json").await;
    assert_eq!(cancelled.stats.failed, 1);
    assert_eq!(aws.reservation("order-1001").await.unwrap().0, "RESERVED");
}

/// Poison records go to the dead-letter queue with their original data, identity and reason, and
/// the good records around them are applied.
#[tokio::test(flavor = "multi_thread")]
async fn poison_records_are_kept_in_the_dlq() {
    let aws = LocalAws::start();
    let out = run_inventory(&aws.endpoint(), "poison-batch.json").await;
    assert!(out.response.batch_item_failures.is_empty());
    // Inventory reads no address: the order with a bad one is reserved, not poison.
    assert_eq!((out.stats.applied, out.stats.poison), (3, 5));
    let original: serde_json::Value = serde_json::from_slice(
        &std::fs::read(integration_tests::root().join("events/poison-batch.json")).unwrap(),
    )
    .unwrap();
    let messages = aws.dlq_messages().await;
    assert_eq!(messages.len(), 5);
    for m in &messages {
        let seq = m["sequenceNumber"].as_str().unwrap();
        let rec = original["Records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kinesis"]["sequenceNumber"] == seq)
            .unwrap();
        assert_eq!(m["data"], rec["kinesis"]["data"], "payload kept for {seq}");
        assert_eq!(m["function"], "inventory-updater");
        assert_eq!(m["shardId"], "shardId-000000000000");
        assert!(m["capturedAtMs"].as_u64().unwrap() > 0);
        assert!(!m["reason"].as_str().unwrap().is_empty());
    }
}

/// When the dead-letter queue refuses a poison record, the record is reported for retry: nothing
/// is lost.
#[tokio::test(flavor = "multi_thread")]
async fn poison_is_retried_when_the_dlq_fails() {
    let aws = LocalAws::start();
    let proxy = FaultProxy::start(aws.addr(), |r| {
        (r.service == "sqs").then_some(Fault::ServerError)
    })
    .await;
    let out = run_inventory(&proxy.endpoint(), "poison-batch.json").await;
    assert_eq!(out.stats.poison, 0);
    assert_eq!(
        out.response.batch_item_failures.len(),
        5,
        "{:?}",
        out.response
    );
    assert!(aws.dlq_messages().await.is_empty());
}

/// An email whose send got no answer in time may have been sent: it is not sent again (not by the
/// SDK, not on redelivery); the record goes to the dead-letter queue, marked UNKNOWN in the ledger.
/// A redelivery is poison again (were the first capture lost, this one keeps it), and the queue
/// holds it once.
#[tokio::test(flavor = "multi_thread")]
async fn an_unanswered_send_is_never_repeated() {
    let aws = LocalAws::start();
    let proxy = FaultProxy::start(aws.addr(), |r| {
        (r.operation == "SendTemplatedEmail").then_some(Fault::Delay(Duration::from_secs(6)))
    })
    .await;
    let out = run_email(&proxy.endpoint(), "order-placed.json").await;
    assert!(out.response.batch_item_failures.is_empty());
    assert_eq!(out.stats.poison, 1);
    tokio::time::sleep(Duration::from_secs(2)).await; // the late send reaches the server
    let again = run_email(&aws.endpoint(), "order-placed.json").await;
    assert_eq!((again.stats.duplicates, again.stats.poison), (0, 1));
    assert_eq!(
        aws.emails().len(),
        1,
        "sent once, by the late attempt, never twice"
    );
    assert_eq!(aws.ledger().await["email-notifier#evt-0001"], "UNKNOWN");
    let dlq = aws.dlq_messages().await;
    assert_eq!(dlq.len(), 1);
    assert!(
        dlq[0]["reason"]
            .as_str()
            .unwrap()
            .contains("outcome unknown"),
        "{}",
        dlq[0]
    );
}

/// A poison record too large for a queue message goes whole to the failure bucket, and the queue
/// gets its metadata and a pointer: the extended-client pattern. It is captured at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_poison_record_is_kept_in_s3_with_a_pointer() {
    use base64::Engine as _;
    let aws = LocalAws::start();
    let sdk = LocalAws::sdk_config(&aws.endpoint()).await;
    // A queue limit of 4 KiB stands for SQS's 256 KiB: a 10 KB record is over it.
    let config =
        InventorySettings::from_env(&local_env(&[("DLQ_MAX_MESSAGE_BYTES", "4096")])).unwrap();
    let engine = shared::runtime::engine(config, &sdk);
    let data = format!(
        r#"{{"eventId":"evt-big","eventType":"ORDER_PLACED","note":"{}""#,
        "x".repeat(10_000)
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
    let event = serde_json::json!({"Records": [{
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "big", "sequenceNumber": "77",
                    "data": b64, "approximateArrivalTimestamp": 1795000000.0},
        "eventSource": "aws:kinesis", "eventID": "shardId-000000000000:77",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/order-events"
    }]});
    let batch = shared::KinesisBatch::from_slice(event.to_string().as_bytes()).unwrap();
    let out = engine.process(&batch, None).await;
    assert!(
        out.response.batch_item_failures.is_empty(),
        "captured at once"
    );
    assert_eq!(out.stats.poison, 1);
    let messages = aws.dlq_messages().await;
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert!(m.get("data").is_none(), "the message holds no data: {m}");
    assert_eq!(m["sequenceNumber"], "77");
    let (bucket, key) = (
        m["s3Pointer"]["bucket"].as_str().unwrap(),
        m["s3Pointer"]["key"].as_str().unwrap(),
    );
    assert_eq!(key, "poison/inventory-updater/shardId-000000000000/77.json");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let body = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let whole: serde_json::Value =
        serde_json::from_slice(&body.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(whole["data"], b64, "the whole record, payload included");
}

/// A producer that reuses an `eventId` for another order: both functions keep it as poison with
/// the reason, and nothing happens twice; the first event's ledger entry and marker hold its
/// payload's hash. The same event written again (other key order, spacing) is a duplicate.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_id_reused_with_another_payload_is_poison() {
    let aws = LocalAws::start();
    let placed = |payload: &str| {
        format!(r#"{{"eventId":"evt-reused","eventType":"ORDER_PLACED","payload":{payload}}}"#)
    };
    let first = placed(
        r#"{"orderId":"order-r1","userId":"u-1","email":"ada@example.com","items":[{"productId":"sku-apple","quantity":1}],"total":"1.00"}"#,
    );
    let again = placed(
        r#"{ "total": 1.00, "items": [{"quantity": 1, "productId": "sku-apple"}], "email": "ada@example.com", "userId": "u-1", "orderId": "order-r1" }"#,
    );
    let other = placed(
        r#"{"orderId":"order-r2","userId":"u-2","email":"bob@example.com","items":[{"productId":"sku-pear","quantity":1}],"total":"2.00"}"#,
    );
    let endpoint = aws.endpoint();
    let before = aws.stock().await;
    for (data, expected) in [
        (&first, (1, 0, 0)),
        (&again, (0, 1, 0)),
        (&other, (0, 0, 1)),
    ] {
        let batch = kinesis_event([data.as_str()]);
        for out in [
            email_batch(&endpoint, &batch).await,
            inventory_batch(&endpoint, &batch).await,
        ] {
            assert!(out.response.batch_item_failures.is_empty(), "{out:?}");
            let s = &out.stats;
            assert_eq!((s.applied, s.duplicates, s.poison), expected, "{data}");
        }
    }
    assert_eq!(aws.emails().len(), 1);
    let after = aws.stock().await;
    assert_eq!(after["sku-apple"], before["sku-apple"] - 1);
    assert_eq!(after["sku-pear"], before["sku-pear"]);
    assert!(aws.reservation("order-r2").await.is_none());
    let reasons: Vec<String> = aws
        .dlq_messages()
        .await
        .iter()
        .map(|m| m["reason"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .all(|r| r.contains("eventId reused with a different payload")),
        "{reasons:?}"
    );
    let table = aws.table("idempotency").await;
    for scope in ["email-notifier", "inventory-updater"] {
        let item = &table[&format!("{scope}#evt-reused")];
        assert_eq!(item["payloadHash"].as_s().unwrap().len(), 32, "{item:?}");
    }
}
