//! The functions' entry point (`shared::runtime::run`), in process, against a local Lambda Runtime
//! API (`tests/src/runtime_api.rs`): the runtime reads each body into the batch, a body that is not
//! a Kinesis event fails its own invocation with a message that says so, and the runtime serves
//! the next invocation.

use std::time::Duration;

use email_notifier::fakes::FakeEmailSender;
use integration_tests::runtime_api::{ApiEvent, RuntimeApi};
use integration_tests::EmailSettings;
use serde_json::Value;
use shared::fakes::{FakeLedger, FakePoisonSink};
use shared::{BatchEngine, Env, KinesisBatch};

type Engine = BatchEngine<email_notifier::EmailRule<FakeEmailSender, FakeLedger>, FakePoisonSink>;

fn engine() -> Engine {
    // Confirming at placement: the samples are placements.
    let settings = integration_tests::BENCH_SETTINGS
        .into_iter()
        .chain([("EVENT_TYPES", "ORDER_PLACED")]);
    let config = EmailSettings::from_env(&Env::from_pairs(settings)).unwrap();
    BatchEngine::new(
        email_notifier::EmailRule::new(FakeEmailSender::default(), FakeLedger::default()),
        FakePoisonSink::default(),
        config.common.engine,
    )
}

/// The answers the API received, in order, up to `n`.
async fn answers(api: &mut RuntimeApi, n: usize) -> Vec<(bool, Value)> {
    let mut out = Vec::new();
    while out.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(60), api.events.recv())
            .await
            .expect("the runtime answered in time")
            .expect("the API is running");
        match event {
            ApiEvent::Poll(_) => {}
            ApiEvent::Response { ok, body, .. } => {
                out.push((ok, serde_json::from_slice(&body).unwrap()))
            }
            ApiEvent::InitError(body) => panic!("init error: {}", String::from_utf8_lossy(&body)),
        }
    }
    out
}

#[tokio::test]
async fn the_runtime_reads_each_body() {
    let sample = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../events/mixed-batch.json"
    ))
    .unwrap();
    // What the engine answers for the sample when handed the batch directly.
    let batch = KinesisBatch::from_slice(&sample).unwrap();
    let expected = serde_json::to_value(engine().process(&batch, None).await.response).unwrap();

    let mut api = RuntimeApi::start(vec![
        sample.clone(),
        br#"{"Records": [{"kinesis": "#.to_vec(),
        sample.clone(),
    ])
    .await;
    // The environment Lambda gives the runtime (this test binary holds this one test).
    for (name, value) in [
        ("AWS_LAMBDA_RUNTIME_API", api.address()),
        ("AWS_LAMBDA_FUNCTION_NAME", "email-notifier".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
    ] {
        std::env::set_var(name, value);
    }

    let answers = tokio::select! {
        stopped = shared::runtime::run(engine(), Default::default()) => panic!("the runtime stopped: {stopped:?}"),
        answers = answers(&mut api, 3) => answers,
    };

    assert_eq!(answers[0], (true, expected.clone()));
    let (ok, error) = &answers[1];
    assert!(!ok, "{error}");
    let message = error["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("failed to deserialize the incoming data") && message.contains("EOF"),
        "{message}"
    );
    // The runtime goes on: the next invocation is read and answered as the first was.
    assert_eq!(answers[2], (true, expected));
}
