//! email-notifier: when an order is placed, send its confirmation through SES, once.
//!
//! - this file: what it reads ([`EmailEvent`]), its rule ([`EmailRule`]), its settings and its
//!   wiring ([`Notifier`]);
//! - [`ports`]: what it needs, an [`EmailSender`], and what it sends, a [`Confirmation`];
//! - [`ses`]: the sender over Amazon SES; `fakes`: an in-memory sender, for tests.
//!
//! Everything else (decoding, the batch engine, the ledger, the dead-letter queue, the runtime) is
//! the engine's, in `shared`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
pub mod ports;
pub mod ses;

use orders::{OrderLines, PlacedOrder, ORDER_CREATED};
use serde::{Deserialize, Serialize};
use shared::adapters::DynamoLedger;
use shared::idempotency::{once, IdempotencyStore};
use shared::runtime::{Function, Wiring};
use shared::{Consumer, EffectError, Env, Event, Outcome, Problems};

pub use ports::{Confirmation, EmailSender};
pub use ses::SesEmailSender;

/// What email-notifier reads: the whole order (a confirmation shows everything, and goes to its
/// address), from `ORDER_PLACED`, and from `ORDER_CREATED` when `EVENT_TYPES` names it.
#[derive(Debug, Deserialize, Serialize)]
pub enum EmailEvent<'a> {
    /// A placed (or created) order.
    #[serde(rename = "ORDER_PLACED", alias = "ORDER_CREATED", borrow)]
    Placed(PlacedOrder<'a>),
}

/// The function's own settings.
///
/// | variable | meaning |
/// |---|---|
/// | `SENDER_ADDRESS` | the verified SES identity the confirmation comes from |
/// | `TEMPLATE_NAME` | the SES template of the confirmation |
/// | `CONFIGURATION_SET` | optional: the SES configuration set for event publishing |
#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// `SENDER_ADDRESS`.
    pub sender: String,
    /// `TEMPLATE_NAME`.
    pub template: String,
    /// `CONFIGURATION_SET`.
    pub configuration_set: Option<String>,
}

impl EmailSettings {
    /// Reads them, keeping each problem in `problems`.
    pub fn read(env: &Env, problems: &mut Problems) -> Self {
        Self {
            sender: problems.required(env, "SENDER_ADDRESS"),
            template: problems.required(env, "TEMPLATE_NAME"),
            configuration_set: env.optional("CONFIGURATION_SET"),
        }
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
    items: &'a OrderLines<'a>,
    item_count: u64,
    total: &'a str,
}

/// The template's data, as JSON: `{"orderId", "userId", "items": [{"productId", "quantity"}],
/// "itemCount", "total"}`.
fn template_data(order: &PlacedOrder<'_>) -> Result<String, EffectError> {
    let data = TemplateData {
        order_id: order.order_id.as_str(),
        user_id: order.user_id.as_str(),
        items: &order.items,
        // A line holds at most a million: no order a record can carry sums past a u64.
        item_count: order.items.iter().map(|line| line.quantity.get()).sum(),
        total: order.total.as_str(),
    };
    serde_json::to_string(&data).map_err(|e| EffectError::permanent(e.to_string()))
}

impl<S: EmailSender, L: IdempotencyStore> Consumer for EmailRule<S, L> {
    type Payload<'a> = EmailEvent<'a>;
    const OFF_BY_DEFAULT: &'static [&'static str] = &[ORDER_CREATED];

    async fn handle(&self, event: &Event<'_, Self>) -> Result<Outcome, EffectError> {
        let EmailEvent::Placed(order) = &event.payload;
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

/// The function as it is deployed: the rule over SES and the DynamoDB ledger.
pub type Notifier = EmailRule<SesEmailSender, DynamoLedger>;

impl Function for Notifier {
    const NAME: &'static str = env!("CARGO_PKG_NAME");
    type Settings = EmailSettings;

    fn settings(env: &Env, problems: &mut Problems) -> EmailSettings {
        EmailSettings::read(env, problems)
    }

    fn wire(settings: EmailSettings, wiring: &Wiring<'_>) -> Self {
        let ses = SesEmailSender::new(
            ses::client(wiring.sdk),
            settings.sender,
            settings.template,
            settings.configuration_set,
        );
        EmailRule::new(ses, wiring.ledger())
    }
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

    /// The types it reads: placements, and creations only when named; the hash of what it read is
    /// the order's own, as it was before the payload was an enum (hashes are stored: pinned).
    #[test]
    fn its_types_and_its_hash() {
        use shared::idempotency::PayloadHash;
        let types = shared::EventTypes::of::<Notifier>();
        assert_eq!(types.declared(), ["ORDER_CREATED", "ORDER_PLACED"]);
        assert_eq!(types.defaults(), ["ORDER_PLACED"]);
        let text = r#"{"orderId":"o-1","userId":"u-1","email":"a@b.co","items":[{"productId":"p","quantity":2}],"total":"9.50"}"#;
        let event = EmailEvent::Placed(serde_json::from_str(text).unwrap());
        let hash = PayloadHash::of_variant(&event).unwrap();
        assert_eq!(hash.to_string(), "411708cb4848289ce220038bdb67f19a");
    }
}
