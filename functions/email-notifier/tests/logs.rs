//! What the function logs: each record's context in a span, and never an email address, even when
//! an AWS error message names one.

use email_notifier::fakes::FakeEmailSender;
use email_notifier::{EmailRule, Notifier};

type Config = shared::runtime::Settings<Notifier>;
use email_notifier::{EmailSender, Notice};
use serde_json::Value;
use shared::fakes::{CapturedLog, FakeLedger};
use shared::platform::telemetry::{self, LogSettings, REDACTED};
use shared::{BatchEngine, EffectError, Env, ErrorClass, KinesisBatch, PoisonRecord, PoisonSink};

/// A sink that logs each poison record's reason, which may quote an AWS error message.
struct LogPoisonSink;

impl PoisonSink for LogPoisonSink {
    async fn capture(&self, record: &PoisonRecord) -> Result<(), EffectError> {
        tracing::warn!(reason = %record.reason, "poison record skipped");
        Ok(())
    }
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../events/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Every `payload.email` of a sample's records.
fn addresses(raw: &[u8]) -> Vec<String> {
    use base64::Engine as _;
    let event: Value = serde_json::from_slice(raw).unwrap();
    event["Records"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["kinesis"]["data"].as_str())
        .filter_map(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .filter_map(|d| serde_json::from_slice::<Value>(&d).ok())
        .filter_map(|e| e["payload"]["email"].as_str().map(str::to_owned))
        .filter(|a| a.contains('@'))
        .collect()
}

/// An SES stand-in that rejects some orders the way SES does: naming the recipient.
#[derive(Default)]
struct RejectingSender {
    inner: FakeEmailSender,
}

impl EmailSender for RejectingSender {
    async fn send(&self, c: &Notice<'_>) -> Result<String, EffectError> {
        let class = match c.order_id.as_str() {
            "order-2001" => ErrorClass::Retryable,
            "order-3002" => ErrorClass::Permanent,
            _ => return self.inner.send(c).await,
        };
        let cause = std::io::Error::other(format!(
            "MessageRejected: Email address is not verified. The following identities failed \
             the check in region US-EAST-1: {}",
            c.to.as_str()
        ));
        let message = format!("SendTemplatedEmail failed for {}", c.to.as_str());
        Err(EffectError::new(class, message, Some(Box::new(cause))))
    }
}

#[test]
fn logs_carry_record_context_and_never_an_address() {
    let env = Env::from_pairs([
        ("SENDER_ADDRESS", "shop@example.com"),
        ("TEMPLATE_NAME", "OrderConfirmation"),
        ("REJECTED_TEMPLATE_NAME", "OrderRejected"),
        ("PAYMENT_FAILED_TEMPLATE_NAME", "PaymentFailed"),
        ("IDEMPOTENCY_TABLE", "idempotency"),
        ("DLQ_URL", "https://sqs.us-east-1.amazonaws.com/1/dlq"),
        ("EVENT_TYPES", "ORDER_PLACED,ORDER_CREATED"),
    ]);
    let config = Config::from_env(&env).unwrap();
    let rule = EmailRule::new(RejectingSender::default(), FakeLedger::default());
    // The sink that logs each poison record's reason, which may quote an AWS error message.
    let engine = BatchEngine::new(rule, LogPoisonSink, config.common.engine);

    let samples = [sample("mixed-batch.json"), sample("poison-batch.json")];
    let captured = CapturedLog::default();
    let writer = captured.clone();
    let settings = LogSettings {
        level: "trace".into(),
        json: true,
        sample_rate: 0.0,
    };
    let subscriber = telemetry::subscriber(&settings, move || writer.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            for raw in &samples {
                let batch = KinesisBatch::from_slice(raw).unwrap();
                engine.process(&batch, None).await;
            }
        })
    });

    let out = captured.text();
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
        .collect();
    assert!(lines.len() > 5, "the run logged: {out}");

    // No address of any record, nor anything shaped like one, whatever logged it.
    let addresses: Vec<String> = samples.iter().flat_map(|s| addresses(s)).collect();
    assert!(
        addresses.len() >= 8,
        "the samples carry addresses: {addresses:?}"
    );
    for address in &addresses {
        assert!(
            !out.contains(address.as_str()),
            "{address} leaked into the logs:\n{out}"
        );
    }
    assert_eq!(
        telemetry::redact_emails(&out),
        out,
        "an address-shaped string was logged"
    );
    // The rejections did try to log the recipient: the writer caught it.
    assert!(
        out.contains(REDACTED),
        "the rejections' messages were logged, redacted"
    );

    // The failure and the rejection are logged inside their record's span, with its context.
    let in_record = |event_id: &str| {
        lines
            .iter()
            .filter(|l| l["span"]["name"] == "record" && l["span"]["event_id"] == event_id)
            .cloned()
            .collect::<Vec<_>>()
    };
    let failed = in_record("evt-1001");
    assert!(
        !failed.is_empty(),
        "evt-1001's send failure is logged in its span:\n{out}"
    );
    let span = &failed[0]["span"];
    assert_eq!(span["partition_key"], "order-2001");
    assert_eq!(span["event_type"], "ORDER_PLACED");
    assert!(span["sequence_number"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    // A poison record captured before its envelope could be read still has its key and sequence.
    assert!(
        lines.iter().any(|l| l["span"]["name"] == "record"
            && l["span"]["partition_key"] == "order-3100"
            && l["message"] == "poison record skipped"),
        "the undecodable record's capture is logged in its span:\n{out}"
    );
}
