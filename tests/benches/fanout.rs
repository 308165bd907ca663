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
//!
//! Beside the time, each run gives the batch's critical path: per partition key, the AWS calls
//! its records made (counted from the stub's log, each call traced to its key by the event or
//! order it names), one after another as per-key order requires, each answered after the delay.
//! The longest key's chain is the physical limit of the batch, whatever the concurrency; the run
//! also says what kept it from that limit: the concurrency cap (the engine's own schedule of
//! the keys' chains on its slots, replayed with the counted calls), the client's time between an
//! answer and the key's next call, and the connections opened.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use base64::Engine as _;
use integration_tests::stub_aws::{Call, StubAws};
use integration_tests::EmailSettings;
use integration_tests::LocalAws;
use serde_json::{json, Value};
use shared::{Env, KinesisBatch};

/// One record of the event, as the benchmark traces it.
struct Traced {
    key: String,
    event_id: String,
    order_id: String,
    event_type: String,
}

/// The event's records, in sequence order.
fn traced(raw: &[u8]) -> Vec<Traced> {
    let event: Value = serde_json::from_slice(raw).unwrap();
    // Sequence numbers are decimal strings too long for an integer: order by length, then text.
    let mut records: Vec<((usize, String), Traced)> = Vec::new();
    for r in event["Records"].as_array().unwrap() {
        let k = &r["kinesis"];
        let data = base64::engine::general_purpose::STANDARD
            .decode(k["data"].as_str().unwrap())
            .unwrap();
        let e: Value = serde_json::from_slice(&data).unwrap();
        let seq = k["sequenceNumber"]
            .as_str()
            .unwrap()
            .trim_start_matches('0');
        records.push((
            (seq.len(), seq.to_owned()),
            Traced {
                key: k["partitionKey"].as_str().unwrap().to_owned(),
                event_id: e["eventId"].as_str().unwrap_or_default().to_owned(),
                order_id: e["payload"]["orderId"].as_str().unwrap().to_owned(),
                event_type: e["eventType"].as_str().unwrap_or_default().to_owned(),
            },
        ));
    }
    records.sort_by(|a, b| a.0.cmp(&b.0));
    records.into_iter().map(|(_, t)| t).collect()
}

/// The wanted orders of the event, per partition key, in the key's record order.
fn wanted_by_key(records: &[Traced], wanted: &str) -> BTreeMap<String, Vec<String>> {
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.event_type == wanted) {
        by_key
            .entry(r.key.clone())
            .or_default()
            .push(r.order_id.clone());
    }
    by_key
}

/// The partition key a call was made for: the key of the event or order it names (an SES send
/// names its order; a ledger call its event's id, or the order's).
fn key_of<'k>(call: &Call, ids: &HashMap<&str, &'k str>) -> Option<&'k str> {
    if let Some(order) = &call.order_id {
        return ids.get(order.as_str()).copied();
    }
    let text = call.dynamodb_request.as_ref()?.to_string();
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .find_map(|token| ids.get(token).copied())
}

/// When `chains` (each a key's duration, in the order the engine takes them up) run on `slots`
/// slots, each key on the first slot free: when the last one ends.
fn list_schedule(chains: &[Duration], slots: usize) -> Duration {
    let mut free = vec![Duration::ZERO; slots.max(1)];
    for chain in chains {
        let first = free.iter_mut().min().unwrap();
        *first += *chain;
    }
    free.into_iter().max().unwrap_or_default()
}

/// A percentile of `values` (sorted here), in milliseconds.
fn percentile_ms(values: &mut [Duration], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort();
    let at = ((values.len() - 1) as f64 * p).round() as usize;
    values[at].as_secs_f64() * 1000.0
}

/// The batch's critical path and what the run spent beside it, from the stub's log of the run.
fn critical_path(
    records: &[Traced],
    calls: &[Call],
    delay: Duration,
    concurrency: usize,
    started: Instant,
    elapsed: Duration,
) -> Value {
    let ids: HashMap<&str, &str> = records
        .iter()
        .flat_map(|r| {
            [
                (r.event_id.as_str(), r.key.as_str()),
                (r.order_id.as_str(), r.key.as_str()),
            ]
        })
        .collect();
    let mut by_key: BTreeMap<&str, Vec<&Call>> = BTreeMap::new();
    let mut unattributed = 0;
    for call in calls {
        match key_of(call, &ids) {
            Some(key) => by_key.entry(key).or_default().push(call),
            None => unattributed += 1,
        }
    }
    let (longest_key, longest) = by_key
        .iter()
        .map(|(k, c)| (*k, c.len()))
        .max_by_key(|(_, n)| *n)
        .unwrap_or_default();
    let critical = delay * longest as u32;
    // The engine's schedule: keys by record count, longest first (ties in the order the keys
    // first appear), each as long as its calls, on `concurrency` slots.
    let mut first_seen: Vec<&str> = Vec::new();
    let mut records_of: HashMap<&str, usize> = HashMap::new();
    for r in records {
        let n = records_of.entry(r.key.as_str()).or_default();
        if *n == 0 {
            first_seen.push(r.key.as_str());
        }
        *n += 1;
    }
    first_seen.sort_by_key(|k| std::cmp::Reverse(records_of[k]));
    let chain = |k: &str| delay * by_key.get(k).map_or(0, Vec::len) as u32;
    let engine_order: Vec<Duration> = first_seen.iter().map(|k| chain(k)).collect();
    let capped = list_schedule(&engine_order, concurrency);
    let mut by_length = engine_order.clone();
    by_length.sort_by(|a, b| b.cmp(a));
    let capped_by_calls = list_schedule(&by_length, concurrency);
    // The client's share: from an answer to the key's next call, and from the start to each key's
    // first call.
    let mut gaps = Vec::new();
    let mut first_calls = Vec::new();
    for chain in by_key.values() {
        let mut times: Vec<Instant> = chain.iter().map(|c| c.arrived).collect();
        times.sort();
        first_calls.push(times[0].saturating_duration_since(started));
        gaps.extend(
            times
                .windows(2)
                .map(|w| w[1].saturating_duration_since(w[0] + delay)),
        );
    }
    // The longest key's own run: when its first call went out, and how long its chain took.
    let (longest_start, longest_span) = by_key
        .get(longest_key)
        .map(|chain| {
            let first = chain.iter().map(|c| c.arrived).min().unwrap();
            let last = chain.iter().map(|c| c.arrived).max().unwrap() + delay;
            (first.saturating_duration_since(started), last - first)
        })
        .unwrap_or_default();
    let last_answer = calls
        .iter()
        .map(|c| c.arrived + delay)
        .max()
        .unwrap_or(started);
    let mut connections: Vec<usize> = calls.iter().map(|c| c.connection).collect();
    connections.sort_unstable();
    connections.dedup();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let total_calls = calls.len() as u32;
    json!({
        "keys_with_calls": by_key.len(),
        "unattributed_calls": unattributed,
        "longest_key": longest_key,
        "longest_key_calls": longest,
        "critical_path_ms": ms(critical),
        "longest_key_first_call_after_ms": ms(longest_start),
        "longest_key_span_ms": ms(longest_span),
        "ratio_to_critical_path": ms(elapsed) / ms(critical).max(f64::MIN_POSITIVE),
        "work_over_slots_ms": ms(delay * total_calls) / concurrency as f64,
        "engine_schedule_ms": ms(capped),
        "longest_chain_first_schedule_ms": ms(capped_by_calls),
        "first_call_after_ms": percentile_ms(&mut first_calls.clone(), 0.0),
        "last_key_first_call_after_ms": percentile_ms(&mut first_calls, 1.0),
        "gap_median_ms": percentile_ms(&mut gaps.clone(), 0.5),
        "gap_p90_ms": percentile_ms(&mut gaps.clone(), 0.9),
        "gap_max_ms": percentile_ms(&mut gaps, 1.0),
        "after_last_answer_ms": ms(elapsed.saturating_sub(last_answer.saturating_duration_since(started))),
        "connections_used": connections.len(),
    })
}

fn main() {
    let args = integration_tests::bench_args();
    let file = args.first().expect("usage: fanout EVENT.json [DELAY_MS]");
    let delay = Duration::from_millis(args.get(1).map_or(20, |d| d.parse().unwrap()));
    let raw = std::fs::read(file).unwrap();
    let batch = KinesisBatch::from_slice(&raw).unwrap();
    let records = traced(&raw);
    let expected = wanted_by_key(&records, "ORDER_PLACED");
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
            let connections_before = stub.connections();
            let started = Instant::now();
            let outcome = engine.process(&batch, None).await;
            let elapsed = started.elapsed();
            let ms = elapsed.as_secs_f64() * 1000.0;
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
            let mut line = json!({"bench": "fanout", "concurrency": concurrency, "records": batch.len(),
                   "keys": keys.len(), "keys_with_wanted": expected.len(), "wanted": wanted, "aws_calls": calls.len(),
                   "delay_ms": delay.as_millis() as u64, "ms": ms, "per_key_order": "verified"});
            line["critical_path"] =
                critical_path(&records, &calls, delay, concurrency, started, elapsed);
            line["critical_path"]["connections_opened"] =
                json!(stub.connections() - connections_before);
            println!("{line}");
        }
    });
}
