//! What the work costs: each function over the bench mix, invocation by invocation as the
//! template's event source mapping would make them, through the real engine, adapters and SDK
//! clients, against a stub AWS endpoint that answers each call after a fixed delay (20 ms). It
//! counts what AWS bills, not estimates it: the requests by API, DynamoDB's write and read units
//! (from the sizes of the items in each request), SES messages, the bytes the function logs (its
//! JSON subscriber at INFO and its EMF metrics) and the billed duration of each invocation (rounded
//! up to the millisecond, as Lambda bills it).
//!
//!     cargo bench -p integration-tests --bench cost -- EVENT.json TEMPLATE.yaml [DELAY_MS]
//!
//! Each function runs three ways: as deployed (the template's settings); as deployed with
//! `FilterAtSource=true`; and the way a Powertools user does the same work by default, one record
//! at a time with idempotency and no cache (`MAX_CONCURRENCY=1`, `IDEMPOTENCY_CACHE_SIZE=0`). The
//! log line such a user writes per record is Powertools' own, measured by `make bench` in Python
//! and added there. Prints one JSON line per run; `scripts/bench.py` prices them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use integration_tests::stub_aws::{Call, StubAws};
use integration_tests::{Counting, LocalAws};
use integration_tests::{EmailSettings, InventorySettings};
use lambda_runtime::Context;
use local_esm::filter::{passes, Candidate};
use local_esm::template::{mappings, Mapping};
use serde_json::{json, Value};
use shared::platform::metrics::MetricsSettings;
use shared::platform::telemetry;
use shared::{BatchEngine, Consumer, Env, KinesisBatch, PoisonSink};

/// The size DynamoDB bills for one attribute value, in bytes (its sizing rules: strings and
/// binaries by length, numbers by about one byte per two digits plus one, maps and lists three
/// bytes plus their elements, one more per element).
fn value_size(v: &Value) -> usize {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
        return 1;
    };
    match kind.as_str() {
        "S" | "B" => inner.as_str().map_or(0, str::len),
        "N" => inner
            .as_str()
            .map_or(1, |n| n.trim_start_matches('-').len().div_ceil(2) + 1),
        "M" => 3 + item_size(inner) + inner.as_object().map_or(0, |o| o.len()),
        "L" | "SS" | "NS" | "BS" => {
            let items = inner.as_array().map_or(&[][..], Vec::as_slice);
            3 + items.iter().map(|i| value_size(i) + 1).sum::<usize>()
        }
        _ => 1,
    }
}

/// An item's size: its attribute names and values.
fn item_size(item: &Value) -> usize {
    item.as_object().map_or(0, |o| {
        o.iter().map(|(name, v)| name.len() + value_size(v)).sum()
    })
}

/// Write units for writing `item` (one per KB, at least one), doubled in a transaction.
fn write_units(item: Option<&Value>, transactional: bool) -> f64 {
    // An update or delete names no whole item: ours are all under 1 KB.
    let kb = item.map_or(1, |i| item_size(i).div_ceil(1024).max(1));
    (kb * if transactional { 2 } else { 1 }) as f64
}

/// The on-demand write and read request units of one DynamoDB request.
fn units(operation: &str, request: &Value) -> (f64, f64) {
    match operation {
        "PutItem" => (write_units(request.get("Item"), false), 0.0),
        "UpdateItem" | "DeleteItem" => (write_units(None, false), 0.0),
        "GetItem" => {
            let strong = request["ConsistentRead"].as_bool().unwrap_or(false);
            (0.0, if strong { 1.0 } else { 0.5 })
        }
        "TransactWriteItems" => {
            let actions = request["TransactItems"]
                .as_array()
                .map_or(&[][..], Vec::as_slice);
            let wru = actions
                .iter()
                .map(|a| write_units(a["Put"].get("Item"), true))
                .sum();
            (wru, 0.0)
        }
        _ => (0.0, 0.0),
    }
}

/// What the stub was asked, as AWS bills it.
fn bill(calls: &[Call]) -> Value {
    let mut by_api: BTreeMap<String, u64> = BTreeMap::new();
    let (mut wru, mut rru) = (0.0, 0.0);
    for call in calls {
        *by_api
            .entry(format!("{}:{}", call.service, call.operation))
            .or_default() += 1;
        if let Some(request) = &call.dynamodb_request {
            let (w, r) = units(&call.operation, request);
            wru += w;
            rru += r;
        }
    }
    let ses = calls
        .iter()
        .filter(|c| c.service == "ses" && c.operation.starts_with("Send"))
        .count();
    json!({"requests_by_api": by_api, "dynamodb_write_units": wru, "dynamodb_read_units": rru,
           "ses_messages": ses})
}

/// How a run is set up.
struct Style {
    name: &'static str,
    filter_at_source: bool,
    settings: &'static [(&'static str, &'static str)],
}

const STYLES: [Style; 3] = [
    Style {
        name: "ours",
        filter_at_source: false,
        settings: &[],
    },
    Style {
        name: "ours, FilterAtSource=true",
        filter_at_source: true,
        settings: &[],
    },
    Style {
        name: "one record at a time, no cache (Powertools' default)",
        filter_at_source: false,
        settings: &[("MAX_CONCURRENCY", "1"), ("IDEMPOTENCY_CACHE_SIZE", "0")],
    },
];

/// The records Lambda hands the function: those its filters let through.
fn delivered<'r>(records: &'r [Value], mapping: &Mapping) -> Vec<&'r Value> {
    use base64::Engine as _;
    records
        .iter()
        .filter(|r| {
            let k = &r["kinesis"];
            let data = base64::engine::general_purpose::STANDARD
                .decode(k["data"].as_str().unwrap_or_default())
                .unwrap_or_default();
            passes(
                &mapping.filters,
                &Candidate {
                    partition_key: k["partitionKey"].as_str().unwrap_or_default(),
                    sequence_number: k["sequenceNumber"].as_str().unwrap_or_default(),
                    data: &data,
                },
            )
        })
        .collect()
}

/// Runs `records` through `engine` in invocations of `mapping.batch_size`, as the runtime does,
/// with the logs at INFO (JSON) and the metrics counted. Returns the invocations, their billed
/// milliseconds and the bytes logged.
fn invoke_all<C: Consumer, P: PoisonSink>(
    rt: &tokio::runtime::Runtime,
    engine: &BatchEngine<C, P>,
    namespace: &MetricsSettings,
    records: &[&Value],
    mapping: &Mapping,
) -> (usize, u64, usize) {
    let logs = Counting::default();
    let writer = logs.clone();
    let logging = tracing::Dispatch::new(telemetry::subscriber(
        &integration_tests::json_logs_at("info"),
        move || writer.clone(),
    ));
    let mut metrics = logs.clone();
    let (mut invocations, mut billed_ms) = (0, 0);
    for chunk in records.chunks(mapping.batch_size) {
        let body = serde_json::to_vec(&json!({ "Records": chunk })).unwrap();
        let batch = KinesisBatch::from_slice(&body).unwrap();
        let mut context = Context::default();
        context.request_id = format!("bench-{invocations}");
        let deadline = SystemTime::now() + mapping.timeout;
        context.deadline = deadline.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let started = Instant::now();
        let response = tracing::dispatcher::with_default(&logging, || {
            rt.block_on(shared::runtime::handle_to(
                engine,
                &batch,
                &context,
                namespace,
                &mut metrics,
            ))
        });
        billed_ms += started.elapsed().as_micros().div_ceil(1000) as u64;
        assert!(response.batch_item_failures.is_empty());
        invocations += 1;
    }
    (invocations, billed_ms, logs.bytes())
}

fn main() {
    let args = integration_tests::bench_args();
    let usage = "usage: cost EVENT.json TEMPLATE.yaml [DELAY_MS]";
    let event: Value =
        serde_json::from_slice(&std::fs::read(args.first().expect(usage)).unwrap()).unwrap();
    let template = std::fs::read_to_string(args.get(1).expect(usage)).unwrap();
    let delay = Duration::from_millis(args.get(2).map_or(20, |d| d.parse().unwrap()));
    let records = event["Records"].as_array().unwrap().clone();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let stub = rt.block_on(StubAws::start(delay));
    let sdk = rt.block_on(LocalAws::sdk_config(&stub.endpoint()));
    for style in &STYLES {
        let overrides = HashMap::from([(
            "FilterAtSource".to_owned(),
            style.filter_at_source.to_string(),
        )]);
        for mapping in mappings(&template, &overrides).unwrap() {
            // The template's environment (a table's `Ref` is left out: the bench names its own),
            // then the style's.
            let mut settings: Vec<(&str, &str)> = integration_tests::BENCH_SETTINGS
                .iter()
                .filter(|(k, _)| *k != "IDEMPOTENCY_CACHE_SIZE")
                .copied()
                .collect();
            settings.extend(
                mapping
                    .environment
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            );
            settings.extend_from_slice(style.settings);
            let env = Env::from_pairs(settings);
            let passed = delivered(&records, &mapping);
            stub.clear();
            let (invocations, billed_ms, log_bytes) = match mapping.function.as_str() {
                "email-notifier" => {
                    let config = EmailSettings::from_env(&env).unwrap();
                    let metrics = config.common.metrics.clone();
                    let engine = shared::runtime::engine(config, &sdk);
                    invoke_all(&rt, &engine, &metrics, &passed, &mapping)
                }
                "inventory-updater" => {
                    let config = InventorySettings::from_env(&env).unwrap();
                    let metrics = config.common.metrics.clone();
                    let engine = shared::runtime::engine(config, &sdk);
                    invoke_all(&rt, &engine, &metrics, &passed, &mapping)
                }
                other => panic!("no engine for {other}"),
            };
            let mut line = json!({
                "bench": "cost", "function": mapping.function, "style": style.name,
                "events": records.len(), "delivered": passed.len(), "invocations": invocations,
                "batch_size": mapping.batch_size, "memory_mb": mapping.memory_mb,
                "architecture": mapping.architecture,
                "max_concurrency": env.optional("MAX_CONCURRENCY"),
                "delay_ms": delay.as_millis() as u64, "billed_ms": billed_ms,
                "log_bytes": log_bytes,
            });
            if let (Value::Object(line), Value::Object(bill)) = (&mut line, bill(&stub.calls())) {
                line.extend(bill);
            }
            println!("{line}");
        }
    }
}
