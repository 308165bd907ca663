//! A third consumer, of a made-up event type with its own payload, written against `shared` alone:
//! the engine needs no change to know it. (The whole consumer is its first 40 lines.)

mod support;

use std::borrow::Cow;
use std::sync::Mutex;

use serde::{Deserialize, Deserializer};
use shared::fakes::FakePoisonSink;
use shared::{BatchEngine, Consumer, EffectError, EngineConfig, Event, EventTypeSet};
use shared::{KinesisBatch, Outcome};

/// The payload of `PAYMENT_CAPTURED`, borrowed from the record's data (a `Cow` is copied only
/// when the producer escaped something in it).
#[derive(Debug, Deserialize)]
struct PaymentCaptured<'a> {
    #[serde(rename = "paymentId", borrow)]
    payment_id: Cow<'a, str>,
    #[serde(rename = "amountCents")]
    amount_cents: u64,
}

/// Adds up captured payments, once per event.
#[derive(Default)]
struct Ledger(Mutex<Vec<(String, String, u64)>>);

impl Consumer for Ledger {
    type Payload<'a> = PaymentCaptured<'a>;

    fn read<'a, D: Deserializer<'a>>(&self, _: &str, p: D) -> Result<Self::Payload<'a>, D::Error> {
        PaymentCaptured::deserialize(p)
    }

    async fn handle(&self, event: &Event<'_, Self::Payload<'_>>) -> Result<Outcome, EffectError> {
        let key = event.idempotency_key().into_owned();
        let p = &event.payload;
        self.0
            .lock()
            .unwrap()
            .push((key, p.payment_id.to_string(), p.amount_cents));
        Ok(Outcome::Applied)
    }
}

/// The made-up consumer runs through the engine: its type is read by its schema, other types are
/// skipped, and a payload that breaks its schema is poison with the field named.
#[tokio::test]
async fn a_consumer_of_a_made_up_event_type() {
    let data = |t: &str, payload: &str| serde_json::json!({"eventType": t, "payload": serde_json::from_str::<serde_json::Value>(payload).unwrap()});
    let records = vec![
        support::record(
            "p-1",
            1,
            &data(
                "PAYMENT_CAPTURED",
                r#"{"paymentId":"pay-1","amountCents":1250}"#,
            ),
        ),
        support::record("o-1", 2, &support::order_event("ORDER_PLACED", "o-1")),
        support::record(
            "p-2",
            3,
            &data("PAYMENT_CAPTURED", r#"{"paymentId":"pay-2"}"#),
        ),
    ];
    let config = EngineConfig {
        function: "payments".into(),
        event_types: EventTypeSet::new(["PAYMENT_CAPTURED"]),
        max_concurrency: 4,
        deadline_margin: std::time::Duration::ZERO,
        metrics_namespace: "test".into(),
        completed_cache: 0,
    };
    let engine = BatchEngine::new(Ledger::default(), FakePoisonSink::default(), config);
    let batch = KinesisBatch::from_slice(&support::event(records)).unwrap();
    let out = engine.process(&batch, None).await;
    assert!(out.response.batch_item_failures.is_empty());
    assert_eq!((out.stats.applied, out.stats.poison), (1, 1));
    assert_eq!(out.stats.skipped.get("ORDER_PLACED"), Some(&1));
    let seen = engine.consumer().0.lock().unwrap().clone();
    assert_eq!(
        seen,
        [(
            format!("shardId-000000000001:{}", support::seq(1)),
            "pay-1".into(),
            1250
        )]
    );
    let reason = &engine.poison_sink().captured()[0].reason;
    assert!(
        reason.contains("PAYMENT_CAPTURED") && reason.contains("amountCents"),
        "{reason}"
    );
}
