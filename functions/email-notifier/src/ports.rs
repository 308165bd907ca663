//! What email-notifier needs: a sender of templated emails ([`EmailSender`]), and what it sends
//! ([`Notice`], one of three kinds). The real one is over SES ([`crate::ses`]); the fake keeps
//! what it sends.

use std::future::Future;

use orders::{Email, OrderId};
use shared::EffectError;

/// Which email: each has its own template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    /// The order is confirmed: its stock is reserved.
    Confirmation,
    /// The order cannot be fulfilled, and why.
    Rejected,
    /// The order's payment failed, and its stock was given back.
    PaymentFailed,
}

impl NoticeKind {
    /// The step's name, in the ledger's key (`order/<orderId>/<step>`) and in the logs.
    pub fn step(self) -> &'static str {
        match self {
            NoticeKind::Confirmation => "confirmation",
            NoticeKind::Rejected => "rejected",
            NoticeKind::PaymentFailed => "payment-failed",
        }
    }
}

/// An email to send about an order.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice<'a> {
    /// Which email.
    pub kind: NoticeKind,
    /// The recipient.
    pub to: &'a Email<'a>,
    /// The order it is about.
    pub order_id: &'a OrderId<'a>,
    /// The template's data, as a JSON object.
    pub template_data: String,
}

/// Sends templated emails about orders.
pub trait EmailSender: Sync {
    /// Sends one email and returns the provider's message id.
    fn send(&self, notice: &Notice<'_>)
        -> impl Future<Output = Result<String, EffectError>> + Send;
}
