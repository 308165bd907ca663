//! email-notifier: when an order is placed, send its confirmation through SES.
//!
//! The rule is this crate; everything else (decoding, the batch engine, the SES adapter) is in
//! `shared`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use shared::adapters::{DynamoLedger, SesEmailSender};
use shared::config::{ConfigError, Env};
use shared::idempotency::{once, IdempotencyStore};
use shared::json;
use shared::ports::{Confirmation, EmailSender};
use shared::runtime::{CommonConfig, DeadLetterQueue};
use shared::{BatchEngine, EffectError, EventType, Order, OrderEvent, Outcome, RecordHandler};

/// The event types this function handles unless `EVENT_TYPES` says otherwise.
pub const DEFAULT_EVENT_TYPES: &[EventType] = &[EventType::OrderPlaced];

/// The event types this function has a rule for.
pub const SUPPORTED_EVENT_TYPES: &[EventType] = &[EventType::OrderPlaced, EventType::OrderCreated];

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
    /// Reads the settings; a missing one is named in the error.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let function = env!("CARGO_PKG_NAME");
        Ok(Self {
            common: CommonConfig::from_env(
                env,
                function,
                DEFAULT_EVENT_TYPES,
                SUPPORTED_EVENT_TYPES,
            )?,
            sender: env.required("SENDER_ADDRESS")?,
            template: env.required("TEMPLATE_NAME")?,
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
///
/// `{"orderId", "userId", "items": [{"productId", "quantity"}], "itemCount", "total"}`, written
/// straight from the borrowed order into one buffer (the tests hold it to what `serde_json` writes
/// for the same fields).
pub fn template_data(order: &Order<'_>) -> Result<String, EffectError> {
    let mut out = String::with_capacity(160 + 48 * order.items.len());
    out.push_str(r#"{"orderId":"#);
    json::write_str(&mut out, order.order_id.as_str());
    out.push_str(r#","userId":"#);
    json::write_str(&mut out, &order.user_id);
    out.push_str(r#","items":["#);
    let mut item_count: u64 = 0;
    for (i, line) in order.items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"productId":"#);
        json::write_str(&mut out, line.sku.as_str());
        out.push_str(r#","quantity":"#);
        json::write_u64(&mut out, line.quantity.get());
        out.push('}');
        item_count = item_count
            .checked_add(line.quantity.get())
            .ok_or_else(|| EffectError::permanent("template data: item count out of range"))?;
    }
    out.push_str(r#"],"itemCount":"#);
    json::write_u64(&mut out, item_count);
    out.push_str(r#","total":"#);
    json::write_str(&mut out, order.total.as_str());
    out.push('}');
    Ok(out)
}

impl<S: EmailSender, L: IdempotencyStore> RecordHandler for EmailRule<S, L> {
    async fn handle(&self, event: &OrderEvent<'_>) -> Result<Outcome, EffectError> {
        let confirmation = Confirmation {
            to: &event.order.email,
            order_id: &event.order.order_id,
            template_data: template_data(&event.order)?,
        };
        once(&self.ledger, &event.idempotency_key(), || async {
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
    use proptest::prelude::*;
    use serde::Serialize;
    use shared::event::Envelope;

    /// The template data as `serde_json` writes the same fields: the reference.
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Reference<'a> {
        order_id: &'a str,
        user_id: &'a str,
        items: Vec<Item<'a>>,
        item_count: u64,
        total: &'a str,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Item<'a> {
        product_id: &'a str,
        quantity: u64,
    }

    proptest! {
        #[test]
        fn template_data_is_what_serde_json_writes(
            order_id in "[a-z0-9\"\\\\é/-]{1,10}",
            user_id in "[a-z0-9 \"é]{1,10}",
            items in prop::collection::vec(("[a-z0-9\\\\-]{1,8}", 1u64..=1_000_000), 1..4),
            total in "[1-9][0-9]{0,3}(\\.[0-9]{2})?",
            quoted in any::<bool>(),
        ) {
            let payload = serde_json::json!({
                "orderId": order_id,
                "userId": user_id,
                "email": "a@example.com",
                "items": items.iter().map(|(p, q)| serde_json::json!({"productId": p, "quantity": q})).collect::<Vec<_>>(),
                "total": if quoted { serde_json::Value::from(total.clone()) } else { serde_json::from_str(&total).unwrap() },
            });
            let text = serde_json::json!({"eventType": "ORDER_PLACED", "payload": payload}).to_string();
            let mut envelope = Envelope::parse(text.as_bytes()).unwrap();
            let Ok(order) = envelope.order() else {
                return Ok(()); // an id the domain rejects (blank): no confirmation to write
            };
            let reference = Reference {
                order_id: order.order_id.as_str(),
                user_id: &order.user_id,
                items: order.items.iter().map(|l| Item { product_id: l.sku.as_str(), quantity: l.quantity.get() }).collect(),
                item_count: order.items.iter().map(|l| l.quantity.get()).sum(),
                total: order.total.as_str(),
            };
            prop_assert_eq!(template_data(&order).unwrap(), serde_json::to_string(&reference).unwrap());
        }
    }
}
