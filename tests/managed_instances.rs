//! Lambda Managed Instances: with `AWS_LAMBDA_MAX_CONCURRENCY` > 1, several invocations run in
//! one process. The functions' entry point serves them at once against a local Runtime API, and
//! each invocation answers for its own batch. (A binary of its own: it sets the process's
//! environment.)

use std::collections::BTreeMap;
use std::time::Duration;

use email_notifier::fakes::FakeEmailSender;
use integration_tests::runtime_api::{ApiEvent, RuntimeApi};
use integration_tests::EmailSettings;
use serde_json::Value;
use shared::fakes::{FakeLedger, FakePoisonSink};
use shared::{BatchEngine, Env, ErrorClass, KinesisBatch};

type Engine = BatchEngine<email_notifier::EmailRule<FakeEmailSender, FakeLedger>, FakePoisonSink>;

/// email-notifier over fakes whose sends are slow (so invocations overlap) and fail for some
/// orders (so each batch has an answer of its own).
fn engine() -> Engine {
    // Confirming at placement: the samples are placements.
    let settings = integration_tests::BENCH_SETTINGS
        .into_iter()
        .chain([("EVENT_TYPES", "ORDER_PLACED")]);
    let config = EmailSettings::from_env(&Env::from_pairs(settings)).unwrap();
    let sender = FakeEmailSender::with_delay(Duration::from_millis(30));
    for order in [
        "order-1001",
        "order-2003",
        "order-3002",
        "order-5002",
        "order-4004",
    ] {
        sender.fail_order(order, ErrorClass::Retryable, usize::MAX);
    }
    BatchEngine::new(
        email_notifier::EmailRule::new(sender, FakeLedger::default()),
        FakePoisonSink::default(),
        config.common.engine,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_invocations_each_answer_for_their_batch() {
    let samples = [
        "order-placed.json",
        "mixed-batch.json",
        "poison-batch.json",
        "real-producers.json",
        "kpl-aggregated.json",
        "cancel-before-order.json",
    ];
    let bodies: Vec<Vec<u8>> = samples
        .iter()
        .map(|name| std::fs::read(integration_tests::root().join("events").join(name)).unwrap())
        .collect();
    // What each batch answers when handed to an engine of its own.
    let mut expected = BTreeMap::new();
    for (n, body) in bodies.iter().enumerate() {
        let batch = KinesisBatch::from_slice(body).unwrap();
        let response = engine().process(&batch, None).await.response;
        expected.insert(
            format!("request-{n}"),
            serde_json::to_value(response).unwrap(),
        );
    }
    let distinct: std::collections::BTreeSet<String> =
        expected.values().map(Value::to_string).collect();
    assert!(
        distinct.len() >= 4,
        "the batches answer differently: {distinct:?}"
    );

    let mut api = RuntimeApi::start(bodies).await;
    for (name, value) in [
        ("AWS_LAMBDA_RUNTIME_API", api.address()),
        ("AWS_LAMBDA_FUNCTION_NAME", "email-notifier".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        ("AWS_LAMBDA_MAX_CONCURRENCY", "4".into()),
    ] {
        std::env::set_var(name, value);
    }
    let served = async {
        let (mut answers, mut polls_before_first_answer) = (BTreeMap::new(), 0);
        while answers.len() < samples.len() {
            let event = tokio::time::timeout(Duration::from_secs(60), api.events.recv())
                .await
                .expect("the runtime answered in time")
                .expect("the API is running");
            match event {
                ApiEvent::Poll(_) if answers.is_empty() => polls_before_first_answer += 1,
                ApiEvent::Poll(_) => {}
                ApiEvent::Response {
                    request_id,
                    ok,
                    body,
                    ..
                } => {
                    assert!(ok, "{}", String::from_utf8_lossy(&body));
                    let body: Value = serde_json::from_slice(&body).unwrap();
                    answers.insert(request_id, body);
                }
                ApiEvent::InitError(body) => {
                    panic!("init error: {}", String::from_utf8_lossy(&body))
                }
            }
        }
        (answers, polls_before_first_answer)
    };
    let (answers, polls) = tokio::select! {
        stopped = shared::runtime::run(engine(), Default::default()) => panic!("the runtime stopped: {stopped:?}"),
        served = served => served,
    };
    assert_eq!(answers, expected);
    assert!(
        polls >= 2,
        "invocations were handed out at once before the first answer: {polls}"
    );
}
