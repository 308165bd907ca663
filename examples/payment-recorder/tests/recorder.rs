//! The walk-through's consumer: its rule through the engine over an in-memory book, its DynamoDB
//! adapter's requests, its settings.

use std::collections::BTreeMap;
use std::sync::Mutex;

use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use payment_recorder::{Captured, DynamoBook, PaymentBook, Recorder};
use shared::fakes::{kinesis_event, FakePoisonSink};
use shared::runtime::{Function, Settings, Wiring};
use shared::{BatchEngine, EffectError, EngineConfig, Env, EventTypes, Outcome, Problems};

/// The in-memory book: payments by key.
#[derive(Debug, Default)]
struct MemoryBook(Mutex<BTreeMap<String, (String, String)>>);

impl PaymentBook for MemoryBook {
    async fn record(&self, key: &str, paid: &Captured<'_>) -> Result<Outcome, EffectError> {
        let mut book = self.0.lock().unwrap();
        if book.contains_key(key) {
            return Ok(Outcome::Duplicate);
        }
        let payment = (paid.order_id.to_string(), paid.total.as_str().to_owned());
        book.insert(key.to_owned(), payment);
        Ok(Outcome::Applied)
    }
}

fn event(id: &str, event_type: &str, total: &str) -> String {
    format!(
        r#"{{"eventId":"{id}","eventType":"{event_type}","payload":{{"orderId":"o-{id}","total":{total}}}}}"#
    )
}

/// Each captured payment is recorded once; other types are skipped; a payment whose amount is no
/// amount is poison, naming the field.
#[tokio::test]
async fn payments_are_recorded_once() {
    let config = EngineConfig::defaults::<Recorder<MemoryBook>>("payment-recorder");
    let engine = BatchEngine::new(
        Recorder(MemoryBook::default()),
        FakePoisonSink::default(),
        config,
    );
    let records = [
        event("p1", "PAYMENT_CAPTURED", "\"12.50\""),
        event("p1", "PAYMENT_CAPTURED", "12.50"),
        event("o1", "ORDER_PLACED", "1"),
        event("p2", "PAYMENT_CAPTURED", "\"-3\""),
    ];
    let out = engine
        .process(&kinesis_event(records.iter().map(String::as_str)), None)
        .await;
    assert!(out.response.batch_item_failures.is_empty());
    let s = &out.stats;
    assert_eq!((s.applied, s.duplicates, s.poison), (1, 1, 1));
    assert_eq!(s.skipped.get("ORDER_PLACED"), Some(&1));
    let book = engine.consumer().0 .0.lock().unwrap().clone();
    assert_eq!(
        book,
        BTreeMap::from([("p1".into(), ("o-p1".into(), "12.50".into()))])
    );
    let reason = &engine.poison_sink().captured()[0].reason;
    assert!(
        reason.contains("PAYMENT_CAPTURED") && reason.contains("total"),
        "{reason}"
    );
}

/// The adapter writes one item per payment, only if absent; a payment recorded before is a
/// duplicate, not an error.
#[tokio::test]
async fn the_book_over_dynamodb() {
    use aws_sdk_dynamodb::Client;
    let put = mock!(Client::put_item)
        .match_requests(|r| {
            let item = r.item().unwrap();
            r.table_name() == Some("payments")
                && item.get("pk") == Some(&AttributeValue::S("PAYMENT#p1".into()))
                && item.get("amount") == Some(&AttributeValue::N("12.50".into()))
                && r.condition_expression() == Some("attribute_not_exists(pk)")
        })
        .then_output(|| PutItemOutput::builder().build());
    let again = mock!(Client::put_item).then_http_response(shared::fakes::dynamodb_error(
        r#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed"}"#,
    ));
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&put, &again]);
    // Wired as its `main` wires it, over the mocked client.
    let env = Env::from_pairs([("PAYMENTS_TABLE", "payments")]);
    let table = Recorder::<DynamoBook>::settings(&env, &mut Problems::default());
    let ledger = shared::fakes::ledger_settings();
    let sdk = aws_config::SdkConfig::builder().build();
    let wiring = Wiring {
        sdk: &sdk,
        dynamodb: &client,
        ledger: &ledger,
        scope: "payment-recorder",
    };
    let Recorder(book) = Recorder::<DynamoBook>::wire(table, &wiring);
    let paid: Captured<'_> = serde_json::from_str(r#"{"orderId":"o-1","total":"12.50"}"#).unwrap();
    assert_eq!(book.record("p1", &paid).await.unwrap(), Outcome::Applied);
    assert_eq!(book.record("p1", &paid).await.unwrap(), Outcome::Duplicate);
    assert_eq!((put.num_calls(), again.num_calls()), (1, 1));
}

/// It declares its one type; its one setting is named when missing, with the shared ones.
#[test]
fn its_types_and_settings() {
    let types = EventTypes::of::<Recorder<DynamoBook>>();
    assert_eq!(types.declared(), ["PAYMENT_CAPTURED"]);
    let err = Settings::<Recorder<DynamoBook>>::from_env(&Env::from_pairs([
        ("DLQ_URL", "https://sqs.us-east-1.amazonaws.com/1/dlq"),
        ("IDEMPOTENCY_TABLE", "idempotency"),
    ]))
    .unwrap_err();
    assert_eq!(err.names(), ["PAYMENTS_TABLE"]);
}
