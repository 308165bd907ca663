//! payment-recorder: the walk-through's consumer (`docs/architecture.md`), written without a
//! change to `shared/`. It records each captured payment in a DynamoDB table, once.

use std::future::Future;

use aws_sdk_dynamodb::{operation::put_item::PutItemError, types::AttributeValue};
use orders::{Money, OrderId};
use serde::{Deserialize, Serialize};
use shared::runtime::{Function, Wiring};
use shared::{Consumer, EffectError, Env, Event, Outcome, Problems};

/// What it reads: one variant per event type, named by the type, with what its rule uses.
#[derive(Debug, Deserialize, Serialize)]
pub enum Payment<'a> {
    /// A payment was taken: the order paid for, and the amount as the producer wrote it.
    #[serde(rename = "PAYMENT_CAPTURED", borrow)]
    Captured(Captured<'a>),
}

/// A captured payment's schema.
#[derive(Debug, Deserialize, Serialize)]
pub struct Captured<'a> {
    /// The order paid for.
    #[serde(rename = "orderId", borrow)]
    pub order_id: OrderId<'a>,
    /// The amount.
    #[serde(borrow)]
    pub total: Money<'a>,
}

/// What it needs: a book of payments.
pub trait PaymentBook: Sync {
    /// Records a payment under `key`, once: a duplicate when `key` was recorded before.
    fn record(
        &self,
        key: &str,
        paid: &Captured,
    ) -> impl Future<Output = Result<Outcome, EffectError>> + Send;
}

/// The rule: each captured payment recorded once, under its event's idempotency key.
#[derive(Debug)]
pub struct Recorder<B>(pub B);

impl<B: PaymentBook> Consumer for Recorder<B> {
    type Payload<'a> = Payment<'a>;

    async fn handle(&self, event: &Event<'_, Self>) -> Result<Outcome, EffectError> {
        let Payment::Captured(paid) = &event.payload;
        self.0.record(&event.idempotency_key(), paid).await
    }
}

/// The book over DynamoDB: in the table `PAYMENTS_TABLE`, one item per payment, keyed
/// `pk` = `PAYMENT#<key>`, written only if absent.
#[derive(Debug, Clone)]
pub struct DynamoBook {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl PaymentBook for DynamoBook {
    async fn record(&self, key: &str, paid: &Captured<'_>) -> Result<Outcome, EffectError> {
        let text = |s: &str| AttributeValue::S(s.to_owned());
        let put = (self.client.put_item().table_name(&self.table))
            .item("pk", text(&format!("PAYMENT#{key}")))
            .item("orderId", text(paid.order_id.as_str()))
            .item("amount", AttributeValue::N(paid.total.as_str().to_owned()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        let recorded_before = |e: &PutItemError| e.is_conditional_check_failed_exception();
        match put {
            Ok(_) => Ok(Outcome::Applied),
            Err(e) if e.as_service_error().is_some_and(recorded_before) => Ok(Outcome::Duplicate),
            Err(e) => Err(EffectError::from_sdk("PutItem", e)),
        }
    }
}

/// Deployed: its name, its one setting, its wiring.
impl Function for Recorder<DynamoBook> {
    const NAME: &'static str = env!("CARGO_PKG_NAME");
    type Settings = String;

    fn settings(env: &Env, problems: &mut Problems) -> String {
        problems.required(env, "PAYMENTS_TABLE")
    }

    fn wire(table: String, wiring: &Wiring<'_>) -> Self {
        let client = wiring.dynamodb.clone();
        Recorder(DynamoBook { client, table })
    }
}
