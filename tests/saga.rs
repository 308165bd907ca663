//! The order's saga end to end, through the stream: events put on the stream of the AWS-API
//! server with the producer, delivered by the template's three mappings to the three functions
//! (as deployed, in process), whose decisions go back onto the stream and on to the others. The
//! effects are read back through the server's API: stock and reservations, the emails SES
//! recorded, and the read model, through the read API's own logic.

use std::time::Duration;

use integration_tests::pipeline::Pipeline;
use integration_tests::LocalAws;
use order_status::api::respond;
use order_status::{DynamoStatus, StatusReader};
use producer::envelope::{OrderEvent, PartitionKey};
use producer::ports::Kinesis;
use producer::publisher::{Config, Publisher};
use serde_json::{json, Value};

const SETTLE: Duration = Duration::from_secs(90);

/// Puts `events` on the stream, in this order, each under its `orderId`.
async fn put(aws: &LocalAws, events: &[OrderEvent]) {
    let sdk = LocalAws::sdk_config(&aws.endpoint()).await;
    let stream = Kinesis::new(producer::kinesis_client(&sdk), producer::DEFAULT_STREAM);
    let records: Vec<_> = events
        .iter()
        .map(|e| producer::record(e, &PartitionKey::OrderId))
        .collect();
    let report = Publisher::new(stream, Config::default())
        .publish(&records)
        .await;
    assert_eq!(report.summary.failed, 0, "{}", report.summary);
}

fn placed(id: &str, order: &str, lines: &[(&str, u64)]) -> OrderEvent {
    let items: Vec<Value> = lines
        .iter()
        .map(|(sku, q)| json!({"productId": sku, "quantity": q}))
        .collect();
    OrderEvent::new(
        "ORDER_PLACED",
        json!({"orderId": order, "userId": "u-ada", "email": format!("{order}@example.com"),
            "items": items, "total": "12.50"}),
    )
    .with_id(id)
}

fn event(id: &str, event_type: &str, order: &str) -> OrderEvent {
    OrderEvent::new(event_type, json!({"orderId": order})).with_id(id)
}

/// The emails sent to `order`'s customer, by template.
fn emails_of(aws: &LocalAws, order: &str) -> Vec<(String, Value)> {
    let to = format!("{order}@example.com");
    aws.emails()
        .into_iter()
        .filter(|(recipients, _, _)| recipients.contains(&to))
        .map(|(_, template, data)| (template, data))
        .collect()
}

async fn status_store(aws: &LocalAws) -> DynamoStatus {
    let sdk = LocalAws::sdk_config(&aws.endpoint()).await;
    DynamoStatus::new(aws_sdk_dynamodb::Client::new(&sdk), "order-status".into())
}

/// The read model's view of `order`, through the read API's logic: (HTTP status, body).
async fn api(aws: &LocalAws, path: &str) -> (u16, Value) {
    let (code, body) = respond(path, "GET", &status_store(aws).await).await;
    (code, serde_json::from_str(&body).unwrap())
}

/// The event types of an order's history, in its order.
fn history(view: &Value) -> Vec<String> {
    view["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["type"].as_str().unwrap().to_owned())
        .collect()
}

/// Placed, then reserved, then confirmed: the confirmation goes out once the stock is reserved,
/// with the order in it; the read model shows the order reserved, with both events.
#[tokio::test(flavor = "multi_thread")]
async fn placed_then_reserved_then_confirmed() {
    let aws = LocalAws::start();
    let pipeline = Pipeline::start(&aws.endpoint(), &[]).await;
    let before = aws.stock().await;
    put(&aws, &[placed("e-1", "o-1", &[("sku-apple", 2)])]).await;
    pipeline.settle(SETTLE).await;

    assert_eq!(aws.stock().await["sku-apple"], before["sku-apple"] - 2);
    let emails = emails_of(&aws, "o-1");
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert_eq!(emails[0].0, "OrderConfirmation");
    assert_eq!(emails[0].1["orderId"], "o-1");
    assert_eq!(emails[0].1["total"], "12.50");
    let (code, view) = api(&aws, "/orders/o-1").await;
    assert_eq!(code, 200, "{view}");
    assert_eq!(view["status"], "RESERVED");
    assert_eq!(view["total"], "12.50");
    assert_eq!(
        view["lines"],
        json!([{"productId": "sku-apple", "quantity": 2}])
    );
    let mut types = history(&view);
    types.sort();
    assert_eq!(types, ["INVENTORY_RESERVED", "ORDER_PLACED"]);
}

/// Too little stock: rejected, and the customer hears that it cannot be fulfilled, in plain
/// words; never a confirmation.
#[tokio::test(flavor = "multi_thread")]
async fn too_little_stock_is_rejected_and_said() {
    let aws = LocalAws::start();
    let pipeline = Pipeline::start(&aws.endpoint(), &[]).await;
    let before = aws.stock().await;
    put(&aws, &[placed("e-1", "o-2", &[("sku-pear", 500)])]).await;
    pipeline.settle(SETTLE).await;

    assert_eq!(aws.stock().await, before, "nothing taken");
    let emails = emails_of(&aws, "o-2");
    let templates: Vec<&str> = emails.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(templates, ["OrderRejected"]);
    assert_eq!(
        emails[0].1["reason"],
        "Not enough stock is left of one of the products you ordered."
    );
    let (_, view) = api(&aws, "/orders/o-2").await;
    assert_eq!(view["status"], "REJECTED");
    assert!(
        view["reason"]
            .as_str()
            .unwrap()
            .contains("insufficient stock"),
        "{view}"
    );
}

/// The saga's compensation: a reserved order whose payment fails gets its stock back and an
/// email saying the payment failed; its confirmation came before.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_payment_releases_and_tells() {
    let aws = LocalAws::start();
    let pipeline = Pipeline::start(&aws.endpoint(), &[]).await;
    let before = aws.stock().await;
    put(&aws, &[placed("e-1", "o-3", &[("sku-plum", 3)])]).await;
    pipeline.settle(SETTLE).await;
    assert_eq!(aws.stock().await["sku-plum"], before["sku-plum"] - 3);
    put(&aws, &[event("e-2", "PAYMENT_FAILED", "o-3")]).await;
    pipeline.settle(SETTLE).await;

    assert_eq!(aws.stock().await, before, "the stock is back");
    assert_eq!(aws.reservation("o-3").await.unwrap().0, "RELEASED");
    let templates: Vec<String> = emails_of(&aws, "o-3").into_iter().map(|(t, _)| t).collect();
    assert_eq!(templates, ["OrderConfirmation", "PaymentFailed"]);
    let (_, view) = api(&aws, "/orders/o-3").await;
    assert_eq!(view["status"], "PAYMENT_FAILED");
    let mut types = history(&view);
    types.sort();
    assert_eq!(
        types,
        [
            "INVENTORY_RELEASED",
            "INVENTORY_RESERVED",
            "ORDER_PLACED",
            "PAYMENT_FAILED"
        ]
    );
}

/// A cancellation that overtakes its placement: the placement takes no stock, and the customer,
/// who cancelled, gets no email at all.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_that_overtakes_its_placement() {
    let aws = LocalAws::start();
    let pipeline = Pipeline::start(&aws.endpoint(), &[]).await;
    let before = aws.stock().await;
    put(
        &aws,
        &[
            event("e-1", "ORDER_CANCELLED", "o-4"),
            placed("e-2", "o-4", &[("sku-apple", 1)]),
        ],
    )
    .await;
    pipeline.settle(SETTLE).await;

    assert_eq!(aws.stock().await, before);
    assert_eq!(
        aws.reservation("o-4").await,
        Some((
            "REJECTED".to_owned(),
            Some("cancelled before it was placed".to_owned())
        ))
    );
    assert!(emails_of(&aws, "o-4").is_empty());
    let (_, view) = api(&aws, "/orders/o-4").await;
    assert_eq!(view["status"], "REJECTED");
    let mut types = history(&view);
    types.sort();
    assert_eq!(
        types,
        ["INVENTORY_REJECTED", "ORDER_CANCELLED", "ORDER_PLACED"]
    );
}

/// The read API over the live table: an order it knows (200), one it does not (404, with a JSON
/// body), an id that is no order id (400, with a JSON body).
#[tokio::test(flavor = "multi_thread")]
async fn the_read_api_answers() {
    let aws = LocalAws::start();
    let pipeline = Pipeline::start(&aws.endpoint(), &[]).await;
    put(&aws, &[placed("e-1", "o-5", &[("sku-gold", 1)])]).await;
    pipeline.settle(SETTLE).await;

    let (code, view) = api(&aws, "/orders/o-5").await;
    assert_eq!((code, &view["orderId"]), (200, &json!("o-5")));
    let (code, body) = api(&aws, "/orders/o-unknown").await;
    assert_eq!(code, 404);
    assert!(body["message"].as_str().is_some(), "{body}");
    let (code, body) = api(&aws, "/orders/%20%20").await;
    assert_eq!(code, 400);
    assert!(body["message"].as_str().is_some(), "{body}");
    let (code, _) = api(&aws, "/orders/bad%01id").await;
    assert_eq!(code, 400);
    // And the whole table, as a rebuild compares it.
    let all = status_store(&aws).await.scan_all().await.unwrap();
    assert_eq!(all.keys().collect::<Vec<_>>(), ["o-5"]);
}
