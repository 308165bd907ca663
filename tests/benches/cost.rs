//! What the work costs: every function of the template's Kinesis mappings over the bench mix, in
//! the order's saga as it runs, invocation by invocation as the event source mappings would make
//! them, through the real engine, adapters and SDK clients, against a stub AWS endpoint that
//! answers each call after a fixed delay (20 ms). It counts what AWS bills, not estimates it: the
//! requests by API, DynamoDB's write and read units (from the sizes of the items in each request),
//! SES messages, the records inventory-updater publishes and their sizes, the bytes each function
//! logs (its JSON subscriber at INFO and its EMF metrics) and the billed duration of each
//! invocation (rounded up to the millisecond, as Lambda bills it).
//!
//!     cargo bench -p integration-tests --bench cost -- EVENT.json TEMPLATE.yaml [DELAY_MS]
//!
//! The saga's flow: inventory-updater reads the mix first (it reserves the placements and
//! publishes one decision per decided order with `PutRecords`); the records those calls put on
//! the stub are the decisions, which join the mix on the stream. Every mapping reads the whole
//! stream, the mix and the decisions (inventory-updater its own decisions too), and invokes its
//! function with what its filters let through: email-notifier emails from the decisions, and
//! order-status records every event.
//!
//! Each function runs three ways: as deployed (the template's settings); as deployed with
//! `FilterAtSource=true`; and the way a Powertools user does the same work by default, one record
//! at a time with idempotency and no cache (`MAX_CONCURRENCY=1`, `IDEMPOTENCY_CACHE_SIZE=0`). The
//! log line such a user writes per record is Powertools' own, measured by `make bench` in Python
//! and added there. Prints one JSON line per run; `scripts/bench.py` prices them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use integration_tests::stub_aws::{Call, StubAws};
use integration_tests::{Counting, LocalAws};
use lambda_runtime::Context;
use local_esm::filter::{passes, Candidate};
use local_esm::template::{mappings, Mapping};
use serde_json::{json, Value};
use shared::platform::telemetry;
use shared::runtime::Function;
use shared::{Env, KinesisBatch};

/// The function that publishes the saga's decisions; it reads the orders first.
const PUBLISHER: &str = "inventory-updater";

/// The bytes of one Kinesis PUT payload unit (provisioned mode bills a record in 25 KB chunks).
const PUT_PAYLOAD_UNIT: usize = 25 * 1024;
/// The size on-demand mode rounds each record up to, to bill the data written (1 KB).
const ON_DEMAND_UNIT: usize = 1024;

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

/// A record's data, decoded.
fn data_of(record: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(record["kinesis"]["data"].as_str().unwrap_or_default())
        .unwrap_or_default()
}

/// A record's event type, if its data is an event.
fn event_type(record: &Value) -> Option<String> {
    let event: Value = serde_json::from_slice(&data_of(record)).ok()?;
    event["eventType"].as_str().map(str::to_owned)
}

/// The size Kinesis counts for a record: its data and its partition key.
fn record_bytes(record: &Value) -> usize {
    data_of(record).len()
        + record["kinesis"]["partitionKey"]
            .as_str()
            .map_or(0, str::len)
}

/// The records Lambda hands the function: those its filters let through.
fn delivered<'r>(records: &'r [Value], mapping: &Mapping) -> Vec<&'r Value> {
    records
        .iter()
        .filter(|r| {
            let k = &r["kinesis"];
            let data = data_of(r);
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

/// `seq + n`, both decimal (sequence numbers are longer than any integer type).
fn add_to_sequence(seq: &str, n: u64) -> String {
    let mut digits: Vec<u8> = seq.bytes().map(|b| b - b'0').collect();
    let mut carry = n;
    for d in digits.iter_mut().rev() {
        let sum = u64::from(*d) + carry % 10;
        *d = (sum % 10) as u8;
        carry = carry / 10 + sum / 10;
    }
    let mut out = if carry > 0 {
        carry.to_string()
    } else {
        String::new()
    };
    out.extend(digits.iter().map(|d| char::from(b'0' + d)));
    out
}

/// The records the `PutRecords` calls of `calls` wrote, as the stream's readers receive them:
/// after `last` (the stream's last record so far), in the order they were put.
fn published(calls: &[Call], last: &Value) -> Vec<Value> {
    let last_seq = last["kinesis"]["sequenceNumber"].as_str().unwrap();
    let entries = calls
        .iter()
        .filter(|c| c.operation == "PutRecords")
        .filter_map(|c| c.kinesis_request.as_ref()?["Records"].as_array())
        .flatten();
    entries
        .enumerate()
        .map(|(i, entry)| {
            let seq = add_to_sequence(last_seq, i as u64 + 1);
            let mut record = last.clone();
            record["kinesis"]["partitionKey"] = entry["PartitionKey"].clone();
            record["kinesis"]["data"] = entry["Data"].clone();
            record["kinesis"]["sequenceNumber"] = json!(seq);
            record["eventID"] = json!(format!("shardId-000000000000:{seq}"));
            record
        })
        .collect()
}

/// What one function did over the passes of records its mapping delivered.
struct Run {
    invocations: usize,
    billed_ms: u64,
    log_bytes: usize,
}

/// Runs `passes` (each, records in the order the mapping delivers them) through function `F` in
/// invocations of `mapping.batch_size`, as the runtime does, with the logs at INFO (JSON) and the
/// metrics counted: the invocations, their billed milliseconds and the bytes logged.
fn run_as<F: Function>(
    rt: &tokio::runtime::Runtime,
    sdk: &aws_config::SdkConfig,
    env: &Env,
    passes: &[Vec<&Value>],
    mapping: &Mapping,
) -> Run {
    let config = shared::runtime::Settings::<F>::from_env(env).unwrap();
    let namespace = config.common.metrics.clone();
    let engine = shared::runtime::engine(config, sdk);
    let logs = Counting::default();
    let writer = logs.clone();
    let logging = tracing::Dispatch::new(telemetry::subscriber(
        &integration_tests::json_logs_at("info"),
        move || writer.clone(),
    ));
    let mut metrics = logs.clone();
    let (mut invocations, mut billed_ms) = (0, 0);
    for chunk in passes.iter().flat_map(|p| p.chunks(mapping.batch_size)) {
        let body = serde_json::to_vec(&json!({ "Records": chunk })).unwrap();
        let batch = KinesisBatch::from_slice(&body).unwrap();
        let mut context = Context::default();
        context.request_id = format!("bench-{invocations}");
        let deadline = SystemTime::now() + mapping.timeout;
        context.deadline = deadline.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let started = Instant::now();
        let response = tracing::dispatcher::with_default(&logging, || {
            rt.block_on(shared::runtime::handle_to(
                &engine,
                &batch,
                &context,
                &namespace,
                &mut metrics,
            ))
        });
        billed_ms += started.elapsed().as_micros().div_ceil(1000) as u64;
        assert!(response.batch_item_failures.is_empty());
        invocations += 1;
    }
    Run {
        invocations,
        billed_ms,
        log_bytes: logs.bytes(),
    }
}

/// Runs `mapping`'s function over `passes`.
fn run_mapping(
    rt: &tokio::runtime::Runtime,
    sdk: &aws_config::SdkConfig,
    env: &Env,
    passes: &[Vec<&Value>],
    mapping: &Mapping,
) -> Run {
    match mapping.function.as_str() {
        "email-notifier" => run_as::<email_notifier::Notifier>(rt, sdk, env, passes, mapping),
        "inventory-updater" => run_as::<inventory_updater::Updater>(rt, sdk, env, passes, mapping),
        "order-status" => run_as::<order_status::OrderStatus>(rt, sdk, env, passes, mapping),
        other => panic!("no engine for {other}"),
    }
}

/// The function's settings as the template gives them (a table's `Ref` is left out: the bench
/// names its own), then the style's.
fn settings_of(mapping: &Mapping, style: &Style) -> Env {
    let mut settings: Vec<(&str, &str)> = integration_tests::BENCH_SETTINGS
        .iter()
        .filter(|(k, _)| *k != "IDEMPOTENCY_CACHE_SIZE")
        .copied()
        .collect();
    settings.push(("STATUS_TABLE", "order-status"));
    settings.extend(
        mapping
            .environment
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    settings.extend_from_slice(style.settings);
    Env::from_pairs(settings)
}

fn main() {
    let args = integration_tests::bench_args();
    let usage = "usage: cost EVENT.json TEMPLATE.yaml [DELAY_MS]";
    let event: Value =
        serde_json::from_slice(&std::fs::read(args.first().expect(usage)).unwrap()).unwrap();
    let template = std::fs::read_to_string(args.get(1).expect(usage)).unwrap();
    let delay = Duration::from_millis(args.get(2).map_or(20, |d| d.parse().unwrap()));
    let records = event["Records"].as_array().unwrap().clone();
    // The orders: the placements of the mix (a cancellation or a payment is of an order).
    let orders = records
        .iter()
        .filter(|r| {
            matches!(
                event_type(r).as_deref(),
                Some("ORDER_PLACED" | "ORDER_CREATED")
            )
        })
        .count();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let stub = rt.block_on(StubAws::start(delay));
    let sdk = rt.block_on(LocalAws::sdk_config(&stub.endpoint()));
    for style in &STYLES {
        let overrides = HashMap::from([(
            "FilterAtSource".to_owned(),
            style.filter_at_source.to_string(),
        )]);
        let mut all = mappings(&template, &overrides).unwrap();
        // The publisher first: what it publishes is what the others read.
        all.sort_by_key(|m| m.function != PUBLISHER);
        let mut stream = records.clone();
        let mut decisions: Vec<Value> = Vec::new();
        for mapping in &all {
            let env = settings_of(mapping, style);
            stub.clear();
            let (run, passed) = if mapping.function == PUBLISHER {
                // The mix, then (another invocation, later) the decisions it published itself.
                let first = delivered(&records, mapping);
                let run = run_mapping(&rt, &sdk, &env, std::slice::from_ref(&first), mapping);
                decisions = published(&stub.calls(), records.last().unwrap());
                assert!(!decisions.is_empty(), "{PUBLISHER} published nothing");
                let again = delivered(&decisions, mapping);
                let second = run_mapping(&rt, &sdk, &env, std::slice::from_ref(&again), mapping);
                stream.extend(decisions.iter().cloned());
                let run = Run {
                    invocations: run.invocations + second.invocations,
                    billed_ms: run.billed_ms + second.billed_ms,
                    log_bytes: run.log_bytes + second.log_bytes,
                };
                (run, first.len() + again.len())
            } else {
                let passed = delivered(&stream, mapping);
                let run = run_mapping(&rt, &sdk, &env, std::slice::from_ref(&passed), mapping);
                (run, passed.len())
            };
            let calls = stub.calls();
            let mut line = json!({
                "bench": "cost", "function": mapping.function, "style": style.name,
                "events": records.len(), "orders": orders,
                "stream_records": records.len() + decisions.len(),
                "stream_bytes": stream.iter().map(record_bytes).sum::<usize>(),
                "delivered": passed, "invocations": run.invocations,
                "batch_size": mapping.batch_size, "memory_mb": mapping.memory_mb,
                "architecture": mapping.architecture,
                "max_concurrency": env.optional("MAX_CONCURRENCY"),
                "delay_ms": delay.as_millis() as u64, "billed_ms": run.billed_ms,
                "log_bytes": run.log_bytes,
            });
            if let (Value::Object(line), Value::Object(bill)) = (&mut line, bill(&calls)) {
                line.extend(bill);
            }
            if mapping.function == PUBLISHER {
                line["published"] = publication(&decisions);
            }
            println!("{line}");
        }
    }
}

/// What the decisions put on the stream: how many of each type, their bytes, and the units
/// Kinesis bills them in (on-demand: each record's size rounded up to 1 KB; provisioned: 25 KB
/// PUT payload units).
fn publication(decisions: &[Value]) -> Value {
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    for d in decisions {
        *by_type
            .entry(event_type(d).unwrap_or_else(|| "not an event".into()))
            .or_default() += 1;
    }
    let sizes: Vec<usize> = decisions.iter().map(record_bytes).collect();
    json!({
        "records": decisions.len(),
        "by_type": by_type,
        "bytes": sizes.iter().sum::<usize>(),
        "on_demand_kib": sizes.iter().map(|s| s.div_ceil(ON_DEMAND_UNIT).max(1)).sum::<usize>(),
        "put_payload_units": sizes.iter().map(|s| s.div_ceil(PUT_PAYLOAD_UNIT).max(1)).sum::<usize>(),
    })
}
