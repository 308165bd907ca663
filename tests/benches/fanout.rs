//! I/O fan-out: a batch against an AWS endpoint that answers each call after a fixed delay, through
//! the real engine, rule, adapters and SDK clients, at the engine's concurrency and at 1 (one
//! record at a time, which is what Powertools' batch processor does by default).
//!
//!     cargo bench -p integration-tests --bench fanout -- EVENT.json [DELAY_MS]
//!
//! The endpoint is `integration_tests::stub_aws`: it answers concurrently and keeps connections
//! alive, as the real services do. Each run checks that every wanted order was sent exactly once,
//! and that the sends of each partition key arrived in the order of the key's records. Prints one
//! JSON line per run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use base64::Engine as _;
use integration_tests::stub_aws::StubAws;
use integration_tests::EmailSettings;
use integration_tests::LocalAws;
use serde_json::{json, Value};
use shared::{Env, KinesisBatch};

/// The wanted orders of the event, per partition key, in the key's record order.
fn wanted_by_key(raw: &[u8], wanted: &str) -> BTreeMap<String, Vec<String>> {
    let event: Value = serde_json::from_slice(raw).unwrap();
    // Sequence numbers are decimal strings too long for an integer: order by length, then text.
    let mut records: Vec<((usize, String), String, String)> = Vec::new();
    for r in event["Records"].as_array().unwrap() {
        let k = &r["kinesis"];
        let data = base64::engine::general_purpose::STANDARD
            .decode(k["data"].as_str().unwrap())
            .unwrap();
        let e: Value = serde_json::from_slice(&data).unwrap();
        if e["eventType"] == wanted {
            let seq = k["sequenceNumber"]
                .as_str()
                .unwrap()
                .trim_start_matches('0');
            let seq = (seq.len(), seq.to_owned());
            let key = k["partitionKey"].as_str().unwrap().to_owned();
            records.push((
                seq,
                key,
                e["payload"]["orderId"].as_str().unwrap().to_owned(),
            ));
        }
    }
    records.sort();
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, key, order) in records {
        by_key.entry(key).or_default().push(order);
    }
    by_key
}

fn main() {
    let args = integration_tests::bench_args();
    let file = args.first().expect("usage: fanout EVENT.json [DELAY_MS]");
    let delay = Duration::from_millis(args.get(1).map_or(20, |d| d.parse().unwrap()));
    let raw = std::fs::read(file).unwrap();
    let batch = KinesisBatch::from_slice(&raw).unwrap();
    let expected = wanted_by_key(&raw, "ORDER_PLACED");
    let wanted: usize = expected.values().map(Vec::len).sum();
    let keys: std::collections::HashSet<&str> =
        batch.records().filter_map(|r| r.partition_key()).collect();

    // The functions' runtime: tokio's multi-threaded one, as `#[tokio::main]` gives them.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let stub = StubAws::start(delay).await;
        let sdk = LocalAws::sdk_config(&stub.endpoint()).await;
        let default_concurrency =
            shared::EngineConfig::defaults::<email_notifier::Notifier>("bench").max_concurrency;
        for concurrency in [default_concurrency, 1] {
            let concurrency_text = concurrency.to_string();
            let mut settings = integration_tests::BENCH_SETTINGS.to_vec();
            settings.push(("MAX_CONCURRENCY", concurrency_text.as_str()));
            // The peers' batch is of placements: confirmed at placement.
            settings.push(("EVENT_TYPES", "ORDER_PLACED"));
            let env = Env::from_pairs(settings);
            let config = EmailSettings::from_env(&env).unwrap();
            let engine = shared::runtime::engine(config, &sdk);
            // One warm-up call, so both runs start with a connection.
            let _ = engine.process(&KinesisBatch::from_slice(br#"{"Records":[]}"#).unwrap(), None).await;
            stub.clear();
            let started = Instant::now();
            let outcome = engine.process(&batch, None).await;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            assert!(outcome.response.batch_item_failures.is_empty(), "{:?}", outcome.stats);

            // Every wanted order sent once, and each key's sends in its records' order.
            let calls = stub.calls();
            let mut sent: HashMap<String, Vec<String>> = HashMap::new();
            let order_key: HashMap<&str, &str> = expected
                .iter()
                .flat_map(|(k, orders)| orders.iter().map(move |o| (o.as_str(), k.as_str())))
                .collect();
            for call in calls.iter().filter(|c| c.operation == "SendTemplatedEmail") {
                let order = call.order_id.clone().unwrap();
                let key = order_key[order.as_str()];
                sent.entry(key.to_owned()).or_default().push(order);
            }
            let sends: usize = sent.values().map(Vec::len).sum();
            assert_eq!(sends, wanted, "each wanted order sent exactly once");
            for (key, orders) in &expected {
                assert_eq!(&sent[key], orders, "the sends of {key} are in its records' order");
            }
            println!(
                "{}",
                json!({"bench": "fanout", "concurrency": concurrency, "records": batch.len(),
                       "keys": keys.len(), "keys_with_wanted": expected.len(), "wanted": wanted, "aws_calls": calls.len(),
                       "delay_ms": delay.as_millis() as u64, "ms": ms, "per_key_order": "verified"})
            );
        }
    });
}
