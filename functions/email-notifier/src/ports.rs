//! What email-notifier needs: a sender of confirmations ([`EmailSender`]), and what it sends
//! ([`Confirmation`]). The real one is over SES ([`crate::ses`]); the fake keeps what it sends.

use std::future::Future;

use orders::{Email, OrderId};
use shared::EffectError;

/// An order confirmation to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Confirmation<'a> {
    /// The recipient.
    pub to: &'a Email<'a>,
    /// The order it confirms.
    pub order_id: &'a OrderId<'a>,
    /// The template's data, as a JSON object.
    pub template_data: String,
}

/// Sends order confirmations.
pub trait EmailSender: Sync {
    /// Sends one confirmation and returns the provider's message id.
    fn send_confirmation(
        &self,
        confirmation: &Confirmation<'_>,
    ) -> impl Future<Output = Result<String, EffectError>> + Send;
}
