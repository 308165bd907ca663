//! An in-memory [`EmailSender`] that keeps what it sends, with failures and delays tests can plan.

use std::sync::Mutex;
use std::time::Duration;

use shared::fakes::{lock, FailurePlan};
use shared::{EffectError, ErrorClass};

use crate::ports::{EmailSender, Notice, NoticeKind};

/// One email the fake sender accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentEmail {
    /// Which email.
    pub kind: NoticeKind,
    /// The recipient.
    pub to: String,
    /// The order.
    pub order_id: String,
    /// The template data.
    pub template_data: String,
}

/// An [`EmailSender`] that records what it sends.
#[derive(Debug, Default)]
pub struct FakeEmailSender {
    sent: Mutex<Vec<SentEmail>>,
    failures: FailurePlan,
    delay: Option<Duration>,
}

impl FakeEmailSender {
    /// A sender that answers after `delay` (on the tokio clock).
    pub fn with_delay(delay: Duration) -> Self {
        Self {
            delay: Some(delay),
            ..Self::default()
        }
    }

    /// The next `times` sends for `order_id` fail with `class`.
    pub fn fail_order(&self, order_id: &str, class: ErrorClass, times: usize) {
        self.failures.plan(order_id, class, times);
    }

    /// What was sent, in order.
    pub fn sent(&self) -> Vec<SentEmail> {
        lock(&self.sent).clone()
    }
}

impl EmailSender for FakeEmailSender {
    async fn send(&self, c: &Notice<'_>) -> Result<String, EffectError> {
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        self.failures.take(c.order_id.as_str())?;
        let mut sent = lock(&self.sent);
        sent.push(SentEmail {
            kind: c.kind,
            to: c.to.as_str().to_owned(),
            order_id: c.order_id.as_str().to_owned(),
            template_data: c.template_data.clone(),
        });
        Ok(format!("fake-message-{}", sent.len()))
    }
}
