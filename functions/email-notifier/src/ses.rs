//! [`EmailSender`] over Amazon SES: one templated email per notice, each kind with its template.

use aws_sdk_ses::types::Destination;
use shared::aws::NoRetryWhenMaybeProcessed;
use shared::EffectError;

use crate::ports::{EmailSender, Notice, NoticeKind};

/// An SES client that never retries a send whose outcome is unknown: a send that timed out may
/// have been accepted, and retrying it would send the message twice. The caller records such an
/// outcome as unknown instead (see `shared::idempotency::once`).
pub fn client(config: &aws_config::SdkConfig) -> aws_sdk_ses::Client {
    let conf = aws_sdk_ses::config::Builder::from(config)
        .retry_classifier(NoRetryWhenMaybeProcessed)
        .build();
    aws_sdk_ses::Client::from_conf(conf)
}

/// The SES template of each kind of notice, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates {
    /// The confirmation's.
    pub confirmation: String,
    /// The "we cannot fulfil your order" email's.
    pub rejected: String,
    /// The payment-failed email's.
    pub payment_failed: String,
}

impl Templates {
    /// The template of `kind`.
    pub fn of(&self, kind: NoticeKind) -> &str {
        match kind {
            NoticeKind::Confirmation => &self.confirmation,
            NoticeKind::Rejected => &self.rejected,
            NoticeKind::PaymentFailed => &self.payment_failed,
        }
    }
}

/// Sends notices with SES `SendTemplatedEmail`.
#[derive(Debug, Clone)]
pub struct SesEmailSender {
    client: aws_sdk_ses::Client,
    sender: String,
    templates: Templates,
    configuration_set: Option<String>,
}

impl SesEmailSender {
    /// An adapter sending from `sender` with the named templates and optional configuration set.
    pub fn new(
        client: aws_sdk_ses::Client,
        sender: String,
        templates: Templates,
        configuration_set: Option<String>,
    ) -> Self {
        Self {
            client,
            sender,
            templates,
            configuration_set,
        }
    }
}

impl EmailSender for SesEmailSender {
    async fn send(&self, c: &Notice<'_>) -> Result<String, EffectError> {
        let out = self
            .client
            .send_templated_email()
            .source(&self.sender)
            .destination(Destination::builder().to_addresses(c.to.as_str()).build())
            .template(self.templates.of(c.kind))
            .template_data(&c.template_data)
            .set_configuration_set_name(self.configuration_set.clone())
            .send()
            .await
            .map_err(|e| EffectError::from_sdk("SendTemplatedEmail", e))?;
        Ok(out.message_id().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use aws_sdk_ses::operation::send_templated_email::SendTemplatedEmailOutput;
    use aws_sdk_ses::Client;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    use super::*;
    use orders::{Email, OrderId};

    fn templates() -> Templates {
        Templates {
            confirmation: "OrderConfirmation".into(),
            rejected: "OrderRejected".into(),
            payment_failed: "PaymentFailed".into(),
        }
    }
    use shared::ErrorClass;

    fn confirmation_parts() -> (Email<'static>, OrderId<'static>) {
        (
            Email::parse(Cow::Borrowed("ada@example.com")).unwrap(),
            OrderId::parse(Cow::Borrowed("o-1")).unwrap(),
        )
    }

    /// The request is a templated send from the sender, to the order's address, with the kind's
    /// template, its data and the configuration set.
    #[tokio::test]
    async fn templated_send_request_shape() {
        let rule = mock!(Client::send_templated_email)
            .match_requests(|r| {
                r.source() == Some("shop@example.com")
                    && r.template() == Some("OrderRejected")
                    && r.template_data() == Some(r#"{"orderId":"o-1"}"#)
                    && r.configuration_set_name() == Some("tracking")
                    && r.destination().map(|d| d.to_addresses())
                        == Some(&["ada@example.com".to_owned()][..])
            })
            .then_output(|| {
                SendTemplatedEmailOutput::builder()
                    .message_id("m-1")
                    .build()
                    .unwrap()
            });
        let client = mock_client!(aws_sdk_ses, [&rule]);
        let sender = SesEmailSender::new(
            client,
            "shop@example.com".into(),
            templates(),
            Some("tracking".into()),
        );
        let (to, order_id) = confirmation_parts();
        let id = sender
            .send(&Notice {
                kind: NoticeKind::Rejected,
                to: &to,
                order_id: &order_id,
                template_data: r#"{"orderId":"o-1"}"#.into(),
            })
            .await
            .unwrap();
        assert_eq!(id, "m-1");
        assert_eq!(rule.num_calls(), 1);
    }

    /// Throttling is retryable; a rejected message is permanent.
    #[tokio::test]
    async fn error_classification() {
        // The error bodies are SES's own (the query protocol's XML), as the service sends them.
        let ses_error = |code: &'static str, message: &'static str| {
            move || {
                aws_smithy_runtime_api::http::Response::new(
                    StatusCode::try_from(400).unwrap(),
                    SdkBody::from(format!(
                        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"
                    )),
                )
            }
        };
        let throttled = mock!(Client::send_templated_email)
            .then_http_response(ses_error("Throttling", "Maximum sending rate exceeded."));
        let rejected = mock!(Client::send_templated_email).then_http_response(ses_error(
            "MessageRejected",
            "Email address is not verified.",
        ));
        let client = mock_client!(
            aws_sdk_ses,
            RuleMode::Sequential,
            [&throttled, &rejected],
            |c| { c.retry_config(aws_sdk_ses::config::retry::RetryConfig::disabled()) }
        );
        let sender = SesEmailSender::new(client, "s@example.com".into(), templates(), None);
        let (to, order_id) = confirmation_parts();
        let c = Notice {
            kind: NoticeKind::Confirmation,
            to: &to,
            order_id: &order_id,
            template_data: "{}".into(),
        };
        let err = sender.send(&c).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Retryable, "{err:?}");
        let err = sender.send(&c).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent, "{err:?}");
    }
}

#[cfg(test)]
mod template_tests {
    use super::*;

    /// Each kind has its own template.
    #[test]
    fn each_kind_its_template() {
        let t = Templates {
            confirmation: "C".into(),
            rejected: "R".into(),
            payment_failed: "P".into(),
        };
        assert_eq!(t.of(NoticeKind::Confirmation), "C");
        assert_eq!(t.of(NoticeKind::Rejected), "R");
        assert_eq!(t.of(NoticeKind::PaymentFailed), "P");
    }
}
