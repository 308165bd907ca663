//! email-notifier: when an order is placed, send its confirmation through SES.
//!
//! The rule is this crate; everything else (decoding, the batch engine, the SES adapter) is in
//! `shared`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use serde::Serialize;
use shared::adapters::{DynamoLedger, SesEmailSender};
use shared::config::{ConfigError, Env};
use shared::event::OrderLine;
use shared::idempotency::{once, IdempotencyStore};
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
pub fn template_data(order: &Order<'_>) -> Result<String, EffectError> {
    let data = TemplateData {
        order_id: order.order_id.as_str(),
        user_id: &order.user_id,
        items: Items(&order.items),
        item_count: order.items.iter().map(|l| l.quantity.get()).sum(),
        total: order.total.as_str(),
    };
    // Written straight from the borrowed order: one allocation, the string itself.
    serde_json::to_string(&data).map_err(|e| EffectError::permanent(format!("template data: {e}")))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TemplateData<'a> {
    order_id: &'a str,
    user_id: &'a str,
    items: Items<'a>,
    item_count: u64,
    total: &'a str,
}

/// The order's lines as `[{productId, quantity}]`.
struct Items<'a>(&'a [OrderLine<'a>]);

impl Serialize for Items<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Item<'a> {
            product_id: &'a str,
            quantity: u64,
        }
        s.collect_seq(self.0.iter().map(|l| Item {
            product_id: l.sku.as_str(),
            quantity: l.quantity.get(),
        }))
    }
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
