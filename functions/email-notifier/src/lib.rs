//! email-notifier: when an order is placed, send its confirmation through SES.
//!
//! The rule is this crate; everything else (decoding, the batch engine, the SES adapter) is in
//! `shared`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use serde::{Deserialize, Deserializer, Serialize};
use shared::adapters::{DynamoLedger, SesEmailSender};
use shared::config::{CommonConfig, ConfigErrors, Env, Problems};
use shared::idempotency::once;
use shared::order::{OrderLines, PlacedOrder, ORDER_CREATED, ORDER_PLACED};
use shared::ports::IdempotencyStore;
use shared::ports::{Confirmation, EmailSender};
use shared::runtime::DeadLetterQueue;
use shared::{no_rule, BatchEngine, Consumer, EffectError, Event, Outcome};

/// The event types this function handles unless `EVENT_TYPES` says otherwise.
pub const DEFAULT_EVENT_TYPES: &[&str] = &[ORDER_PLACED];

/// The event types this function has a rule for (both read as a whole [`PlacedOrder`]: a
/// confirmation shows everything, and goes to its address).
pub const SUPPORTED_EVENT_TYPES: &[&str] = &[ORDER_PLACED, ORDER_CREATED];

/// The function's settings, read once at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// The settings every function shares (engine, dead-letter queue, idempotency table).
    pub common: CommonConfig,
    /// `SENDER_ADDRESS`: the verified SES identity the confirmation comes from.
    pub sender: String,
    /// `TEMPLATE_NAME`: the SES template of the confirmation.
    pub template: String,
    /// `CONFIGURATION_SET` (optional): the SES configuration set for event publishing.
    pub configuration_set: Option<String>,
}

impl Config {
    /// Reads the settings; every missing or wrong one is named in the error.
    pub fn from_env(env: &Env) -> Result<Self, ConfigErrors> {
        let function = env!("CARGO_PKG_NAME");
        Problems::collect(|problems| Self {
            common: CommonConfig::read(
                env,
                function,
                DEFAULT_EVENT_TYPES,
                SUPPORTED_EVENT_TYPES,
                problems,
            ),
            sender: problems.required(env, "SENDER_ADDRESS"),
            template: problems.required(env, "TEMPLATE_NAME"),
            configuration_set: env.optional("CONFIGURATION_SET"),
        })
    }
}

/// The rule: one confirmation per wanted order event, claimed in the ledger so a redelivery never
/// sends it twice.
#[derive(Debug)]
pub struct EmailRule<S, L> {
    sender: S,
    ledger: L,
}

impl<S: EmailSender, L: IdempotencyStore> EmailRule<S, L> {
    /// A rule sending through `sender`, once per event as `ledger` records.
    pub fn new(sender: S, ledger: L) -> Self {
        Self { sender, ledger }
    }

    /// The sender.
    pub fn sender(&self) -> &S {
        &self.sender
    }

    /// The ledger.
    pub fn ledger(&self) -> &L {
        &self.ledger
    }
}

/// The template's data: what the confirmation shows. The address is not in it: SES has it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TemplateData<'a> {
    order_id: &'a str,
    user_id: &'a str,
    items: TemplateItems<'a>,
    item_count: u64,
    total: &'a str,
}

/// The order's lines as `[{"productId", "quantity"}]`, written straight from the order.
#[derive(Debug)]
struct TemplateItems<'a>(&'a OrderLines<'a>);

impl Serialize for TemplateItems<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Item<'a> {
            product_id: &'a str,
            quantity: u64,
        }
        serializer.collect_seq(self.0.iter().map(|l| Item {
            product_id: l.sku.as_str(),
            quantity: l.quantity.get(),
        }))
    }
}

/// The template's data, as JSON: `{"orderId", "userId", "items": [{"productId", "quantity"}],
/// "itemCount", "total"}`.
pub fn template_data(order: &PlacedOrder<'_>) -> Result<String, EffectError> {
    let mut item_count: u64 = 0;
    for line in order.items.iter() {
        item_count = item_count
            .checked_add(line.quantity.get())
            .ok_or_else(|| EffectError::bad_data("template data: item count out of range"))?;
    }
    let data = TemplateData {
        order_id: order.order_id.as_str(),
        user_id: order.user_id.as_str(),
        items: TemplateItems(&order.items),
        item_count,
        total: order.total.as_str(),
    };
    serde_json::to_string(&data).map_err(|e| EffectError::permanent(e.to_string()))
}

impl<S: EmailSender, L: IdempotencyStore> Consumer for EmailRule<S, L> {
    type Payload<'a> = PlacedOrder<'a>;

    fn read<'a, D: Deserializer<'a>>(
        &self,
        event_type: &str,
        payload: D,
    ) -> Result<PlacedOrder<'a>, D::Error> {
        match event_type {
            ORDER_PLACED | ORDER_CREATED => PlacedOrder::deserialize(payload),
            other => Err(no_rule(other)),
        }
    }

    async fn handle(&self, event: &Event<'_, Self::Payload<'_>>) -> Result<Outcome, EffectError> {
        let order = &event.payload;
        let confirmation = Confirmation {
            to: &order.email,
            order_id: &order.order_id,
            template_data: template_data(order)?,
        };
        once(&self.ledger, &event.effect_key()?, || async {
            let message_id = self.sender.send_confirmation(&confirmation).await?;
            tracing::info!(%message_id, "confirmation sent");
            Ok(message_id)
        })
        .await
    }
}

/// The engine the function runs: the rule over SES and the DynamoDB ledger, poison to the DLQ.
pub fn engine(
    config: Config,
    aws: &shared::aws_config::SdkConfig,
) -> BatchEngine<EmailRule<SesEmailSender, DynamoLedger>, DeadLetterQueue> {
    let ses = SesEmailSender::new(
        shared::aws::ses_client(aws),
        config.sender,
        config.template,
        config.configuration_set,
    );
    let dynamodb = shared::aws_sdk_dynamodb::Client::new(aws);
    let rule = EmailRule::new(ses, config.common.ledger(&dynamodb));
    let dlq = config.common.dead_letter_queue(aws, &dynamodb);
    BatchEngine::new(rule, dlq, config.common.engine)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The template data shows the order as the producer wrote it, with the item count.
    #[test]
    fn template_data_shows_the_order() {
        let text = r#"{"orderId":"o-\"1","userId":"u-1","email":"a@b.co","items":[{"productId":"p","quantity":2},{"productId":"q","quantity":3.0}],"total":12.50}"#;
        let order: PlacedOrder<'_> = serde_json::from_str(text).unwrap();
        let data: serde_json::Value =
            serde_json::from_str(&template_data(&order).unwrap()).unwrap();
        assert_eq!(
            data,
            serde_json::json!({
                "orderId": "o-\"1", "userId": "u-1",
                "items": [{"productId": "p", "quantity": 2}, {"productId": "q", "quantity": 3}],
                "itemCount": 5, "total": "12.50"
            })
        );
    }
}
