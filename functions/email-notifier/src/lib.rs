//! email-notifier: the customer hears only what is true. When inventory decides about an order,
//! send the matching email through SES, once per order and step:
//!
//! | event | email |
//! |---|---|
//! | `INVENTORY_RESERVED` | the confirmation |
//! | `INVENTORY_REJECTED` | "we cannot fulfil your order", with the reason in plain words (none when the customer cancelled it first; the payment-failed email when its payment failed first) |
//! | `INVENTORY_RELEASED` for a failed payment | the payment-failed email (none for a cancellation: the customer asked for it) |
//! | `ORDER_PLACED` / `ORDER_CREATED`, only when `EVENT_TYPES` names them | the confirmation at placement, for a pipeline without inventory |
//!
//! An order with no contact address (the article's `ORDER_CREATED`) gets no email, and that is
//! not an error.
//!
//! - this file: what it reads ([`EmailEvent`]), its rule ([`EmailRule`]), its settings and its
//!   wiring ([`Notifier`]);
//! - [`ports`]: what it needs, an [`EmailSender`], and what it sends, a [`Notice`];
//! - [`ses`]: the sender over Amazon SES; `fakes`: an in-memory sender, for tests.
//!
//! Everything else (decoding, the batch engine, the ledger, the dead-letter queue, the runtime) is
//! the engine's, in `shared`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
pub mod ports;
pub mod ses;

use std::borrow::Cow;

use orders::{
    Email, Money, OrderId, OrderLines, PlacedOrder, ReasonCode, ORDER_CREATED, ORDER_PLACED,
};
use serde::{Deserialize, Serialize};
use shared::adapters::DynamoLedger;
use shared::idempotency::{once, EffectKey, IdempotencyStore};
use shared::input::envelope::LooseText;
use shared::runtime::{Function, Wiring};
use shared::{Consumer, EffectError, Env, Event, Outcome, Problems};

pub use ports::{EmailSender, Notice, NoticeKind};
pub use ses::{SesEmailSender, Templates};

/// What email-notifier reads: inventory's decisions (by default), and the whole placement when
/// `EVENT_TYPES` names `ORDER_PLACED` or `ORDER_CREATED`.
#[derive(Debug, Deserialize, Serialize)]
pub enum EmailEvent<'a> {
    /// `INVENTORY_RESERVED`: confirm.
    #[serde(rename = "INVENTORY_RESERVED", borrow)]
    Reserved(Decision<'a>),
    /// `INVENTORY_REJECTED`: say it cannot be fulfilled.
    #[serde(rename = "INVENTORY_REJECTED", borrow)]
    Rejected(Decision<'a>),
    /// `INVENTORY_RELEASED`: say the payment failed, when it did.
    #[serde(rename = "INVENTORY_RELEASED", borrow)]
    Released(Decision<'a>),
    /// A placed (or created) order, confirmed at placement (opt-in).
    #[serde(rename = "ORDER_PLACED", alias = "ORDER_CREATED", borrow)]
    Placed(PlacedOrder<'a>),
}

/// What email-notifier reads of inventory's decision: what an email shows, and where it goes.
#[derive(Debug, Deserialize, Serialize)]
pub struct Decision<'a> {
    /// The order.
    #[serde(rename = "orderId", borrow)]
    pub order_id: OrderId<'a>,
    /// The customer, shown as written.
    #[serde(rename = "userId", default, borrow, skip_serializing)]
    pub user_id: LooseText<'a>,
    /// Where the email goes; none, no email.
    #[serde(default, borrow)]
    pub email: Option<Email<'a>>,
    /// The lines.
    #[serde(borrow)]
    pub items: OrderLines<'a>,
    /// The total, when the placement had one.
    #[serde(default, borrow)]
    pub total: Option<Money<'a>>,
    /// Why, as a code (a rejection, a release).
    #[serde(rename = "reasonCode", default)]
    pub reason_code: Option<ReasonCode>,
}

/// The function's own settings.
///
/// | variable | meaning |
/// |---|---|
/// | `SENDER_ADDRESS` | the verified SES identity the emails come from |
/// | `TEMPLATE_NAME` | the SES template of the confirmation |
/// | `REJECTED_TEMPLATE_NAME` | the SES template of "we cannot fulfil your order" |
/// | `PAYMENT_FAILED_TEMPLATE_NAME` | the SES template of the payment-failed email |
/// | `CONFIGURATION_SET` | optional: the SES configuration set for event publishing |
#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// `SENDER_ADDRESS`.
    pub sender: String,
    /// `TEMPLATE_NAME`, `REJECTED_TEMPLATE_NAME`, `PAYMENT_FAILED_TEMPLATE_NAME`.
    pub templates: Templates,
    /// `CONFIGURATION_SET`.
    pub configuration_set: Option<String>,
}

impl EmailSettings {
    /// Reads them, keeping each problem in `problems`.
    pub fn read(env: &Env, problems: &mut Problems) -> Self {
        Self {
            sender: problems.required(env, "SENDER_ADDRESS"),
            templates: Templates {
                confirmation: problems.required(env, "TEMPLATE_NAME"),
                rejected: problems.required(env, "REJECTED_TEMPLATE_NAME"),
                payment_failed: problems.required(env, "PAYMENT_FAILED_TEMPLATE_NAME"),
            },
            configuration_set: env.optional("CONFIGURATION_SET"),
        }
    }
}

/// The rule: the email each decision calls for, claimed in the ledger so a redelivery never sends
/// it twice.
#[derive(Debug)]
pub struct EmailRule<S, L> {
    sender: S,
    ledger: L,
}

impl<S: EmailSender, L: IdempotencyStore> EmailRule<S, L> {
    /// A rule sending through `sender`, once as `ledger` records.
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

    /// Sends `notice`, once under `key`.
    async fn send_once(
        &self,
        key: &EffectKey<'_>,
        notice: &Notice<'_>,
    ) -> Result<Outcome, EffectError> {
        once(&self.ledger, key, || async {
            let message_id = self.sender.send(notice).await?;
            tracing::info!(%message_id, step = notice.kind.step(), "email sent");
            Ok(message_id)
        })
        .await
    }
}

/// The template's data: what an email shows. The address is not in it: SES has it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TemplateData<'a> {
    order_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    items: &'a OrderLines<'a>,
    item_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

/// The template's data, as JSON: `{"orderId", "userId", "items": [{"productId", "quantity"}],
/// "itemCount", "total", "reason"}` (each optional part only when known).
fn template_data(
    order_id: &OrderId<'_>,
    user_id: Option<&str>,
    items: &OrderLines<'_>,
    total: Option<&Money<'_>>,
    reason: Option<&str>,
) -> Result<String, EffectError> {
    let data = TemplateData {
        order_id: order_id.as_str(),
        user_id,
        items,
        // A line holds at most a million: no order a record can carry sums past a u64.
        item_count: items.iter().map(|line| line.quantity.get()).sum(),
        total: total.map(Money::as_str),
        reason,
    };
    serde_json::to_string(&data).map_err(|e| EffectError::permanent(e.to_string()))
}

/// Why an order cannot go on, in plain words for its customer.
pub fn plain_reason(code: Option<ReasonCode>) -> &'static str {
    match code {
        Some(ReasonCode::OutOfStock) => {
            "Not enough stock is left of one of the products you ordered."
        }
        Some(ReasonCode::UnknownProduct) => {
            "One of the products you ordered is no longer in our catalogue."
        }
        Some(ReasonCode::TooManyProducts) => {
            "Your order holds more different products than one order can."
        }
        Some(ReasonCode::PaymentFailed) => "Your payment did not go through.",
        Some(ReasonCode::Cancelled) => "The order was cancelled.",
        None => "We could not reserve the products you ordered.",
    }
}

/// The email a decision calls for (`None`: none, and why).
pub fn notice_for(event: &EmailEvent<'_>) -> Result<NoticeKind, &'static str> {
    let kind = match event {
        EmailEvent::Reserved(_) | EmailEvent::Placed(_) => NoticeKind::Confirmation,
        EmailEvent::Rejected(d) => match d.reason_code {
            Some(ReasonCode::Cancelled) => {
                return Err("rejected because the customer cancelled it first: no email")
            }
            Some(ReasonCode::PaymentFailed) => NoticeKind::PaymentFailed,
            _ => NoticeKind::Rejected,
        },
        EmailEvent::Released(d) => match d.reason_code {
            Some(ReasonCode::PaymentFailed) => NoticeKind::PaymentFailed,
            _ => return Err("released for a cancellation: the customer asked for it, no email"),
        },
    };
    Ok(kind)
}

impl<S: EmailSender, L: IdempotencyStore> Consumer for EmailRule<S, L> {
    type Payload<'a> = EmailEvent<'a>;
    const OFF_BY_DEFAULT: &'static [&'static str] = &[ORDER_PLACED, ORDER_CREATED];

    async fn handle(&self, event: &Event<'_, Self>) -> Result<Outcome, EffectError> {
        let kind = match notice_for(&event.payload) {
            Ok(kind) => kind,
            Err(why) => return Ok(Outcome::NoEffect(why.into())),
        };
        let d = match &event.payload {
            EmailEvent::Placed(order) => {
                // At placement, once per event (as before there were decisions).
                let data = template_data(
                    &order.order_id,
                    Some(order.user_id.as_str()),
                    &order.items,
                    Some(&order.total),
                    None,
                )?;
                let notice = Notice {
                    kind,
                    to: &order.email,
                    order_id: &order.order_id,
                    template_data: data,
                };
                return self.send_once(&event.effect_key()?, &notice).await;
            }
            EmailEvent::Reserved(d) | EmailEvent::Rejected(d) | EmailEvent::Released(d) => d,
        };
        let Some(to) = &d.email else {
            return Ok(Outcome::NoEffect("the order has no contact address".into()));
        };
        let reason = (kind != NoticeKind::Confirmation).then(|| plain_reason(d.reason_code));
        let data = template_data(
            &d.order_id,
            d.user_id.0.as_deref(),
            &d.items,
            d.total.as_ref(),
            reason,
        )?;
        let notice = Notice {
            kind,
            to,
            order_id: &d.order_id,
            template_data: data,
        };
        // Once per order and step, whichever event asks.
        let key = EffectKey::bare(Cow::Owned(format!(
            "order/{}/{}",
            d.order_id.as_str(),
            kind.step()
        )));
        self.send_once(&key, &notice).await
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
            settings.templates,
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
        let data = template_data(
            &order.order_id,
            Some(order.user_id.as_str()),
            &order.items,
            Some(&order.total),
            None,
        );
        let data: serde_json::Value = serde_json::from_str(&data.unwrap()).unwrap();
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
        assert_eq!(
            types.declared(),
            [
                "INVENTORY_REJECTED",
                "INVENTORY_RELEASED",
                "INVENTORY_RESERVED",
                "ORDER_CREATED",
                "ORDER_PLACED"
            ]
        );
        assert_eq!(
            types.defaults(),
            [
                "INVENTORY_REJECTED",
                "INVENTORY_RELEASED",
                "INVENTORY_RESERVED"
            ]
        );
        let text = r#"{"orderId":"o-1","userId":"u-1","email":"a@b.co","items":[{"productId":"p","quantity":2}],"total":"9.50"}"#;
        let event = EmailEvent::Placed(serde_json::from_str(text).unwrap());
        let hash = PayloadHash::of_variant(&event).unwrap();
        assert_eq!(hash.to_string(), "411708cb4848289ce220038bdb67f19a");
    }

    /// The email each decision calls for: a confirmation when reserved; "cannot fulfil" when
    /// rejected, but none when the customer cancelled first and the payment email when the
    /// payment failed first; the payment email for a release by a failed payment, none for a
    /// cancellation.
    #[test]
    fn the_email_per_event() {
        let decision = |t: &str, code: Option<&str>| {
            let code = code.map_or(String::new(), |c| format!(r#","reasonCode":"{c}""#));
            let text =
                format!(r#"{{"orderId":"o-1","items":[{{"productId":"p","quantity":1}}]{code}}}"#);
            let d: Decision<'static> =
                serde_json::from_str(Box::leak(text.into_boxed_str())).unwrap();
            match t {
                "RESERVED" => EmailEvent::Reserved(d),
                "REJECTED" => EmailEvent::Rejected(d),
                _ => EmailEvent::Released(d),
            }
        };
        use NoticeKind::*;
        let rows: [(&str, Option<&str>, Option<NoticeKind>); 9] = [
            ("RESERVED", None, Some(Confirmation)),
            ("REJECTED", Some("OUT_OF_STOCK"), Some(Rejected)),
            ("REJECTED", Some("UNKNOWN_PRODUCT"), Some(Rejected)),
            ("REJECTED", Some("TOO_MANY_PRODUCTS"), Some(Rejected)),
            ("REJECTED", None, Some(Rejected)),
            ("REJECTED", Some("CANCELLED"), None),
            ("REJECTED", Some("PAYMENT_FAILED"), Some(PaymentFailed)),
            ("RELEASED", Some("PAYMENT_FAILED"), Some(PaymentFailed)),
            ("RELEASED", Some("CANCELLED"), None),
        ];
        for (t, code, expected) in rows {
            assert_eq!(
                notice_for(&decision(t, code)).ok(),
                expected,
                "{t} {code:?}"
            );
        }
        assert!(plain_reason(Some(ReasonCode::OutOfStock)).contains("stock"));
        assert!(!plain_reason(Some(ReasonCode::OutOfStock)).contains("sku"));
    }
}
