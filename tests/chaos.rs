//! Chaos replay: thousands of events through the saga's three functions, delivered by a
//! reproduction of the event source mapping, against the AWS-API server behind a proxy that makes
//! a share of all AWS calls fail (throttling, 500s, dropped connections, answers slower than the
//! SDK's timeout), inventory's publishes included, and with invocations that die after doing their
//! work. inventory-updater and order-status read the producer's mix; inventory's decisions go onto
//! the server's stream, and email-notifier and order-status read them from there. At the end every
//! order is consistent across stock, emails and the read model: each reserved order has exactly
//! one `INVENTORY_RESERVED` event and one confirmation, no order is both confirmed and told it
//! cannot be fulfilled, no email is sent twice, stock is conserved per product, the per-key order
//! of effects is kept, and the read model equals a replay of the same events, in another order,
//! into a fresh table.
//!
//! `make test` runs 1,000 events; `make chaos` runs 10,000 over 500 keys
//! (`CHAOS_EVENTS`, `CHAOS_KEYS`, `CHAOS_FAULT_RATE`, `CHAOS_SEED` set the run).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::future::join_all;
use integration_tests::proxy::{Fault, FaultProxy};
use integration_tests::{local_env, LocalAws, Rng};
use integration_tests::{read_stream, EmailSettings, InventorySettings, StatusSettings};
use local_esm::mapping::{
    Function as Invoked, InvokeError, Mapper, NoDestination, Source, Stats as EsmStats,
    StreamRecord,
};
use local_esm::template::Mapping;
use order_status::{DynamoStatus, StatusReader};
use producer::generate::Mix;
use shared::{BatchEngine, BatchStats, KinesisBatch, PoisonSink};

const SKUS: usize = 20;
const INITIAL_STOCK: i64 = 1_000_000;

fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One generated event, as the test remembers it.
#[derive(Debug, Clone)]
struct Sent {
    event_id: String,
    kind: &'static str,

    order_id: String,
}

/// A user record waiting to be written: its key and its data.
type Pending = (String, Vec<u8>);

/// The stream: two shards of records (some KPL aggregates), and what each event was.
struct Stream {
    shards: Vec<Vec<StreamRecord>>,
    events: Vec<Sent>,
    poison: usize,
    duplicates: usize,
    aggregates: usize,
}

/// The producer's realistic mix (`producer generate`), laid out in two shards as Kinesis would,
/// about one record in ten a KPL aggregate of two to four user records.
fn generate(n: usize, keys: u64, seed: u64, rng: &mut Rng) -> Stream {
    let mix = Mix {
        records: n,
        keys: keys as usize,
        skus: (0..SKUS).map(|s| format!("sku-{s:02}")).collect(),
        seed,
        ..Mix::default()
    };
    let mut shards: Vec<Vec<StreamRecord>> = vec![Vec::new(), Vec::new()];
    let mut events: Vec<Sent> = Vec::new();
    let (mut poison, mut duplicates, mut aggregates) = (0, 0, 0);
    let mut pending: Vec<Vec<Pending>> = vec![Vec::new(), Vec::new()];
    let flush = |shard: usize,
                 pending: &mut Vec<Pending>,
                 shards: &mut Vec<Vec<StreamRecord>>,
                 aggregates: &mut usize| {
        if pending.is_empty() {
            return;
        }
        let sequence_number = format!("4959{shard}{:051}", shards[shard].len() + 1);
        let (key, data) = if pending.len() == 1 {
            (pending[0].0.clone(), pending[0].1.clone())
        } else {
            *aggregates += 1;
            let agg =
                shared::kpl::aggregate(pending.iter().map(|(k, d)| (k.as_str(), d.as_slice())));
            (pending[0].0.clone(), agg)
        };
        shards[shard].push(StreamRecord {
            partition_key: key,
            sequence_number,
            data,
            arrival: local_esm::mapping::epoch_now(),
        });
        pending.clear();
    };
    for generated in mix.generate() {
        let key = generated.partition_key;
        // Keys map to shards, as Kinesis hashes them.
        let shard = (key.bytes().map(u64::from).sum::<u64>() % 2) as usize;
        match generated.event {
            None => poison += 1,
            Some(e) if e.duplicate => duplicates += 1,
            Some(e) => events.push(Sent {
                event_id: e.event_id,
                kind: e.event_type,
                order_id: e.order_id,
            }),
        }
        pending[shard].push((key, generated.data));
        if pending[shard].len() >= 4 || !rng.chance(0.25) {
            let mut p = std::mem::take(&mut pending[shard]);
            flush(shard, &mut p, &mut shards, &mut aggregates);
        }
    }
    for (shard, waiting) in pending.iter_mut().enumerate() {
        let mut p = std::mem::take(waiting);
        flush(shard, &mut p, &mut shards, &mut aggregates);
    }
    Stream {
        shards,
        events,
        poison,
        duplicates,
        aggregates,
    }
}

/// A function as Lambda runs it: each invocation has a deadline, and some invocations die after
/// doing their work (a timeout or a crash: the response is lost and Lambda retries the batch).
struct Function<H, P> {
    engine: BatchEngine<H, P>,
    crash: Mutex<Rng>,
    crash_rate: f64,
    stats: Mutex<BatchStats>,
    crashes: AtomicU64,
}

impl<H: shared::Consumer + Send + Sync, P: PoisonSink + Send + Sync> Invoked for Function<H, P> {
    async fn invoke(&self, event: Vec<u8>) -> Result<Vec<u8>, InvokeError> {
        let batch =
            KinesisBatch::from_slice(&event).map_err(|e| InvokeError::Function(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let out = self.engine.process(&batch, Some(deadline)).await;
        {
            let mut s = self.stats.lock().unwrap();
            s.applied += out.stats.applied;
            s.duplicates += out.stats.duplicates;
            s.remembered += out.stats.remembered;
            s.poison += out.stats.poison;
            s.failed += out.stats.failed;
            s.rejected += out.stats.rejected;
        }
        if self.crash.lock().unwrap().chance(self.crash_rate) {
            self.crashes.fetch_add(1, Ordering::Relaxed);
            return Err(InvokeError::Function(
                "the invocation died after doing its work".into(),
            ));
        }
        serde_json::to_vec(&out.response).map_err(|e| InvokeError::Function(e.to_string()))
    }
}

fn mapper<'a, F: Invoked>(
    settings: &'a Mapping,
    source: &'a Source,
    function: &'a F,
    stats: &'a Mutex<EsmStats>,
) -> Mapper<'a, F, NoDestination> {
    Mapper {
        settings,
        source,
        function,
        sink: &NoDestination,
        retry_backoff: Duration::ZERO,
        stats,
    }
}

fn function<H, P>(engine: BatchEngine<H, P>, seed: u64) -> Function<H, P> {
    Function {
        engine,
        crash: Mutex::new(Rng::new(seed)),
        crash_rate: 0.02,
        stats: Mutex::default(),
        crashes: AtomicU64::new(0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_replay() {
    let n: usize = setting("CHAOS_EVENTS", 1000);
    let keys: u64 = setting("CHAOS_KEYS", 500);
    let fault_rate: f64 = setting("CHAOS_FAULT_RATE", 0.2);
    let seed: u64 = setting("CHAOS_SEED", 42);
    // The warm containers' memory of finished records (CHAOS_CACHE=0: none, to compare).
    let cache: String = setting("CHAOS_CACHE", "10000".to_owned());
    let started = Instant::now();
    if std::env::var("CHAOS_LOG").is_ok() {
        shared::platform::telemetry::init();
    }
    let mut rng = Rng::new(seed);
    let stream = generate(n, keys, seed, &mut rng);

    let aws = LocalAws::start();
    let sdk = LocalAws::sdk_config(&aws.endpoint()).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    for s in 0..SKUS {
        ddb.put_item()
            .table_name("inventory")
            .item("pk", AttributeValue::S(format!("SKU#sku-{s:02}")))
            .item("available", AttributeValue::N(INITIAL_STOCK.to_string()))
            .send()
            .await
            .unwrap();
    }

    // Faults on a share of every AWS call, decided by a seeded generator.
    let fault_rng = Arc::new(Mutex::new(Rng::new(seed ^ 0x5eed)));
    let injected: Arc<Mutex<BTreeMap<&'static str, u64>>> = Arc::default();
    let (frng, inj) = (fault_rng.clone(), injected.clone());
    let dynamodb_calls = Arc::new(AtomicU64::new(0));
    let ddb = dynamodb_calls.clone();
    let proxy = FaultProxy::start(aws.addr(), move |request| {
        if request.service == "dynamodb" {
            ddb.fetch_add(1, Ordering::Relaxed);
        }
        let mut r = frng.lock().unwrap();
        if !r.chance(fault_rate) {
            return None;
        }
        let (name, fault) = match r.below(100) {
            0..=34 => ("throttle", Fault::Throttle),
            35..=69 => ("500", Fault::ServerError),
            70..=89 => ("dropped", Fault::Drop),
            _ => ("slow", Fault::Delay(Duration::from_millis(1500))),
        };
        *inj.lock().unwrap().entry(name).or_default() += 1;
        Some(fault)
    })
    .await;

    // The functions, as deployed, but with an SDK attempt timeout of 1 s, a 2 s lease, and the
    // standard retry mode: the deployed adaptive mode answers a fifth of all calls failing by
    // rate-limiting itself to a crawl (as it should), which would make this run take hours.
    let sdk = shared::aws::loader()
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3))
        .endpoint_url(proxy.endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "local",
        ))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(1))
                .operation_attempt_timeout(Duration::from_secs(1))
                .operation_timeout(Duration::from_secs(5))
                .build(),
        )
        .load()
        .await;
    let env = local_env(&[
        ("IDEMPOTENCY_LEASE_SECONDS", "2"),
        ("IDEMPOTENCY_CACHE_SIZE", &cache),
    ]);
    let email = function(
        shared::runtime::engine(EmailSettings::from_env(&env).unwrap(), &sdk),
        seed + 1,
    );
    let env = local_env(&[("IDEMPOTENCY_CACHE_SIZE", &cache)]);
    let inventory = function(
        shared::runtime::engine(InventorySettings::from_env(&env).unwrap(), &sdk),
        seed + 2,
    );
    let status = function(
        shared::runtime::engine(StatusSettings::from_env(&env).unwrap(), &sdk),
        seed + 3,
    );

    // The mapping with a batch of 100 and retries enough that nothing is discarded. One batch per
    // shard at a time: the server answers one request at a time, and more concurrent calls only
    // make more of them pass the SDK's 1 s attempt timeout (ParallelizationFactor is tested in
    // tools/local-esm and tests/local_esm.rs).
    let mapping = Mapping {
        bisect_on_function_error: true,
        maximum_retry_attempts: 10_000,
        report_batch_item_failures: true,
        timeout: Duration::from_secs(60),
        ..Mapping::defaults("chaos")
    };
    let source = |shard: usize| Source {
        stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/order-events".into(),
        shard_id: format!("shardId-{shard:012}"),
        region: "us-east-1".into(),
        function_arn: "arn:aws:lambda:us-east-1:123456789012:function:chaos".into(),
        uuid: "chaos".into(),
    };
    let (s0, s1) = (source(0), source(1));
    let stats: Vec<Mutex<EsmStats>> = (0..4).map(|_| Mutex::default()).collect();
    // 1. The producer's mix: to inventory-updater (which publishes its decisions) and to
    //    order-status.
    let (m0, m1) = (
        mapper(&mapping, &s0, &inventory, &stats[0]),
        mapper(&mapping, &s1, &inventory, &stats[1]),
    );
    let (m2, m3) = (
        mapper(&mapping, &s0, &status, &stats[2]),
        mapper(&mapping, &s1, &status, &stats[3]),
    );
    tokio::join!(
        m0.deliver(stream.shards[0].clone()),
        m1.deliver(stream.shards[1].clone()),
        m2.deliver(stream.shards[0].clone()),
        m3.deliver(stream.shards[1].clone()),
    );
    // 2. Inventory's decisions, as the server's stream holds them: to email-notifier and to
    //    order-status.
    let direct = LocalAws::sdk_config(&aws.endpoint()).await;
    let published = read_stream(&direct, producer::DEFAULT_STREAM).await;
    let decision_shards: Vec<(Source, Vec<StreamRecord>)> = published
        .iter()
        .map(|(shard_id, records)| {
            let source = Source {
                shard_id: shard_id.clone(),
                ..source(0)
            };
            let records = records
                .iter()
                .map(|(key, seq, data)| StreamRecord {
                    partition_key: key.clone(),
                    sequence_number: seq.clone(),
                    data: data.clone(),
                    arrival: local_esm::mapping::epoch_now(),
                })
                .collect();
            (source, records)
        })
        .collect();
    let decision_stats: Vec<Mutex<EsmStats>> = (0..2 * decision_shards.len())
        .map(|_| Mutex::default())
        .collect();
    let to_email: Vec<_> = (decision_shards.iter().enumerate())
        .map(|(i, (src, _))| mapper(&mapping, src, &email, &decision_stats[2 * i]))
        .collect();
    let to_status: Vec<_> = (decision_shards.iter().enumerate())
        .map(|(i, (src, _))| mapper(&mapping, src, &status, &decision_stats[2 * i + 1]))
        .collect();
    let records = || decision_shards.iter().map(|(_, r)| r.clone());
    tokio::join!(
        join_all(to_email.iter().zip(records()).map(|(m, r)| m.deliver(r))),
        join_all(to_status.iter().zip(records()).map(|(m, r)| m.deliver(r))),
    );
    let esm: Vec<EsmStats> = stats
        .into_iter()
        .chain(decision_stats)
        .map(|s| s.into_inner().unwrap())
        .collect();
    let requests = proxy.requests();
    drop(proxy);

    // What the server holds now.
    let emails = aws.emails();
    let dlq = aws.dlq_messages().await;
    let items = aws.table("inventory").await;
    let stock: BTreeMap<String, i64> = items
        .iter()
        .filter_map(|(pk, i)| {
            Some((
                pk.strip_prefix("SKU#")?.to_owned(),
                i["available"].as_n().ok()?.parse().ok()?,
            ))
        })
        .collect();
    let orders: HashMap<String, (String, BTreeMap<String, i64>)> = items
        .iter()
        .filter_map(|(pk, i)| {
            let lines = i.get("lines").and_then(|l| l.as_m().ok()).map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_n().unwrap().parse().unwrap()))
                    .collect()
            });
            Some((
                pk.strip_prefix("ORDER#")?.to_owned(),
                (i["status"].as_s().ok()?.clone(), lines.unwrap_or_default()),
            ))
        })
        .collect();
    // The decisions on the stream: per (order, type), their distinct ids; and the copies.
    let mut decisions: HashMap<(String, String), HashSet<String>> = HashMap::new();
    let mut decision_records = 0;
    for (_, _, data) in published.values().flatten() {
        let v: serde_json::Value = serde_json::from_slice(data).unwrap();
        decision_records += 1;
        decisions
            .entry((
                v["payload"]["orderId"].as_str().unwrap().to_owned(),
                v["eventType"].as_str().unwrap().to_owned(),
            ))
            .or_default()
            .insert(v["eventId"].as_str().unwrap().to_owned());
    }
    let distinct_decisions: usize = decisions.values().map(HashSet::len).sum();
    let decided = |order: &str, t: &str| {
        decisions
            .get(&(order.to_owned(), t.to_owned()))
            .map_or(0, HashSet::len)
    };
    // The event ids a function's dead-letter queue holds (from the records' data).
    let dlq_ids = |function: &str| -> HashSet<String> {
        dlq.iter()
            .filter(|m| m["function"] == function)
            .filter_map(|m| {
                let data = base64::Engine::decode(
                    &base64::engine::general_purpose::STANDARD,
                    m["data"].as_str()?,
                )
                .ok()?;
                let v: serde_json::Value = serde_json::from_slice(&data).ok()?;
                Some(v["eventId"].as_str()?.to_owned())
            })
            .collect()
    };
    let email_dlq = dlq_ids("email-notifier");
    let inventory_dlq = dlq_ids("inventory-updater");

    // 1. Nothing was discarded by the mappings.
    let discarded: u64 = esm.iter().map(|s| s.discarded).sum();
    assert_eq!(discarded, 0, "records ran out of retries");

    // 2. No email twice: at most one per order and template.
    let mut sent: HashMap<(&str, &str), usize> = HashMap::new();
    for (_, template, data) in &emails {
        *sent
            .entry((data["orderId"].as_str().unwrap(), template.as_str()))
            .or_default() += 1;
    }
    let duplicate_emails: usize = sent.values().map(|n| n - 1).sum();
    eprintln!(
        "unstarted/abandoned: email {}, inventory {}, order-status {}",
        email.stats.lock().unwrap().unstarted,
        inventory.stats.lock().unwrap().unstarted,
        status.stats.lock().unwrap().unstarted
    );
    assert_eq!(duplicate_emails, 0, "duplicate emails: {sent:?}");
    let has = |order: &str, template: &str| sent.contains_key(&(order, template));

    // 3. Every order consistent across stock, decisions and emails: a reserved order (reserved,
    //    or reserved then released) has exactly one INVENTORY_RESERVED and its confirmation (or
    //    the confirmation's record is in the dead-letter queue: an SES answer lost); a rejected
    //    one exactly one INVENTORY_REJECTED and no confirmation; a released one exactly one
    //    INVENTORY_RELEASED; never both a confirmation and "cannot fulfil".
    let mut inconsistent = Vec::new();
    let mut reserved_orders = 0;
    for (order, (status, _)) in &orders {
        let (reserved, rejected, released) = (
            decided(order, "INVENTORY_RESERVED"),
            decided(order, "INVENTORY_REJECTED"),
            decided(order, "INVENTORY_RELEASED"),
        );
        let ok = match status.as_str() {
            "RESERVED" | "RELEASED" => {
                reserved_orders += 1;
                let ids = &decisions[&(order.clone(), "INVENTORY_RESERVED".to_owned())];
                reserved == 1
                    && rejected == 0
                    && released == usize::from(status == "RELEASED")
                    && (has(order, "OrderConfirmation")
                        || ids.iter().any(|id| email_dlq.contains(id)))
            }
            "REJECTED" => reserved == 0 && rejected == 1 && !has(order, "OrderConfirmation"),
            // A tombstone: nothing decided yet.
            _ => reserved + rejected + released == 0,
        };
        if !ok || (has(order, "OrderConfirmation") && has(order, "OrderRejected")) {
            inconsistent.push(format!(
                "{order}: {status}, decisions {reserved}/{rejected}/{released}, emails {:?}",
                sent.keys().filter(|(o, _)| o == order).collect::<Vec<_>>()
            ));
        }
    }
    if !inconsistent.is_empty() {
        let ledger = aws.ledger().await;
        for line in inconsistent.iter().take(5) {
            let order = line.split(':').next().unwrap();
            eprintln!(
                "{order}: ledger {:?}",
                ledger.get(&format!("email-notifier#order/{order}/confirmation"))
            );
        }
        for m in dlq.iter().filter(|m| m["function"] == "email-notifier") {
            let data = base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                m["data"].as_str().unwrap_or_default(),
            );
            eprintln!(
                "email DLQ: {:?}",
                data.map(|d| String::from_utf8_lossy(&d).into_owned())
            );
        }
    }
    assert!(
        inconsistent.is_empty(),
        "{} orders inconsistent: {:?}",
        inconsistent.len(),
        &inconsistent[..inconsistent.len().min(10)]
    );
    // Every placement is decided (or its record is in inventory's dead-letter queue).
    let undecided: Vec<&str> = stream
        .events
        .iter()
        .filter(|e| matches!(e.kind, "ORDER_PLACED" | "ORDER_CREATED"))
        .filter(|e| !orders.contains_key(&e.order_id) && !inventory_dlq.contains(&e.event_id))
        .map(|e| e.event_id.as_str())
        .collect();
    assert!(undecided.is_empty(), "undecided placements: {undecided:?}");

    // 4. Stock conserved per product: initial - reserved + released = final. A double reservation
    //    or release would break it, since each order's item is written once.
    let mut expected: BTreeMap<String, i64> = (0..SKUS)
        .map(|s| (format!("sku-{s:02}"), INITIAL_STOCK))
        .collect();
    for (status, lines) in orders.values() {
        if status == "RESERVED" {
            for (sku, q) in lines {
                *expected.get_mut(sku).unwrap() -= q;
            }
        }
    }
    for (sku, want) in &expected {
        assert_eq!(
            stock.get(sku),
            Some(want),
            "stock of {sku} is not conserved"
        );
    }

    // 5. Per-key order of effects: an order ended (cancelled, or its payment failed) after its
    //    placement is not left reserved; a customer told its payment failed was confirmed first.
    let ended: HashSet<&str> = stream
        .events
        .iter()
        .filter(|e| matches!(e.kind, "ORDER_CANCELLED" | "PAYMENT_FAILED"))
        .filter(|e| !inventory_dlq.contains(&e.event_id))
        .map(|e| e.order_id.as_str())
        .collect();
    for order in &ended {
        if let Some((status, _)) = orders.get(*order) {
            assert_ne!(status, "RESERVED", "{order} ended, yet is still reserved");
        }
    }
    let position = |order: &str, template: &str| {
        emails
            .iter()
            .position(|(_, t, d)| t == template && d["orderId"] == order)
    };
    for (order, _) in sent.keys().filter(|(_, t)| *t == "PaymentFailed") {
        if let (Some(confirmed), Some(failed)) = (
            position(order, "OrderConfirmation"),
            position(order, "PaymentFailed"),
        ) {
            assert!(
                confirmed < failed,
                "{order}: told of its payment before its confirmation"
            );
        }
    }

    // 6. The read model equals a replay: the same records, decisions first this time, into a
    //    fresh table, with no fault.
    let ddb = aws_sdk_dynamodb::Client::new(&direct);
    create_status_table(&ddb, "order-status-replay").await;
    let env = local_env(&[
        ("IDEMPOTENCY_CACHE_SIZE", "0"),
        ("STATUS_TABLE", "order-status-replay"),
    ]);
    let replay = Function {
        crash_rate: 0.0,
        ..function(
            shared::runtime::engine(StatusSettings::from_env(&env).unwrap(), &direct),
            seed + 4,
        )
    };
    let replay_stats = Mutex::default();
    for (src, records) in &decision_shards {
        mapper(&mapping, src, &replay, &replay_stats)
            .deliver(records.clone())
            .await;
    }
    for (i, src) in [&s1, &s0].into_iter().enumerate() {
        mapper(&mapping, src, &replay, &replay_stats)
            .deliver(stream.shards[1 - i].clone())
            .await;
    }
    let live = DynamoStatus::new(ddb.clone(), "order-status".into())
        .scan_all()
        .await
        .unwrap();
    let replayed = DynamoStatus::new(ddb, "order-status-replay".into())
        .scan_all()
        .await
        .unwrap();
    let differ: Vec<&String> = live
        .keys()
        .filter(|k| live.get(*k) != replayed.get(*k))
        .collect();
    assert!(
        differ.is_empty() && live.len() == replayed.len(),
        "the read model differs from its replay for {} orders (of {}), e.g. {:?}",
        differ.len(),
        live.len(),
        differ.first().map(|k| (live.get(*k), replayed.get(*k)))
    );
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for view in live.values() {
        *by_status.entry(view.status.as_str()).or_default() += 1;
    }

    // The figures.
    let email_stats = email.stats.lock().unwrap().clone();
    let inventory_stats = inventory.stats.lock().unwrap().clone();
    let status_stats = status.stats.lock().unwrap().clone();
    let sum = |f: fn(&EsmStats) -> u64| esm.iter().map(f).sum::<u64>();
    println!(
        "\nchaos replay: seed {seed}, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("  stream: {} events over {keys} keys, {} records in 2 shards ({} KPL aggregates), {} poison, {} duplicates",
        stream.events.len() + stream.poison + stream.duplicates, stream.shards.iter().map(Vec::len).sum::<usize>(), stream.aggregates, stream.poison, stream.duplicates);
    let injected = injected.lock().unwrap().clone();
    println!(
        "  AWS calls through the proxy: {requests}; faults injected: {injected:?} ({:.0}%)",
        100.0 * injected.values().sum::<u64>() as f64 / requests.max(1) as f64
    );
    let crashes = [&email.crashes, &inventory.crashes, &status.crashes]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum::<u64>();
    println!("  invocations: {}, partial failures: {}, function errors: {} (of which died after work: {crashes}), bisections: {}, records redelivered: {}",
        sum(|s| s.invocations), sum(|s| s.partial_failures), sum(|s| s.function_errors),
        sum(|s| s.bisections), sum(|s| s.redelivered));
    let redelivered = sum(|s| s.redelivered);
    let remembered = email_stats.remembered + inventory_stats.remembered + status_stats.remembered;
    println!(
        "  DynamoDB calls: {} for {} records delivered ({} of them redeliveries); {} redeliveries \
         known finished by the warm container, with no call (IDEMPOTENCY_CACHE_SIZE={cache}): \
         {:.2} DynamoDB calls per delivered record",
        dynamodb_calls.load(Ordering::Relaxed),
        sum(|s| s.delivered),
        redelivered,
        remembered,
        dynamodb_calls.load(Ordering::Relaxed) as f64 / sum(|s| s.delivered).max(1) as f64
    );
    println!("  inventory-updater: {} applied, {} rejected, {} duplicates skipped, {} failed and retried, {} to the DLQ; {} orders decided, {reserved_orders} of them reserved",
        inventory_stats.applied, inventory_stats.rejected, inventory_stats.duplicates, inventory_stats.failed, inventory_stats.poison, orders.len());
    println!(
        "  decisions published: {distinct_decisions} distinct events in {decision_records} records ({} copies of a decision, dropped by their readers by eventId)",
        decision_records - distinct_decisions
    );
    let mut templates: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, t) in sent.keys() {
        *templates.entry(t).or_default() += 1;
    }
    println!(
        "  email-notifier: {} sent {templates:?}, {} duplicates skipped, {} failed and retried, {} to the DLQ",
        emails.len(),
        email_stats.duplicates,
        email_stats.failed,
        email_stats.poison
    );
    println!(
        "  order-status: {} orders {by_status:?}, {} duplicates skipped, {} failed and retried; equal to its replay into a fresh table",
        live.len(),
        status_stats.duplicates,
        status_stats.failed
    );
    let distinct: HashSet<String> = dlq
        .iter()
        .map(|m| {
            format!(
                "{}/{}/{}/{}",
                m["function"], m["shardId"], m["sequenceNumber"], m["subSequenceNumber"]
            )
        })
        .collect();
    println!(
        "  dead-letter queue: {} messages for {} distinct records",
        dlq.len(),
        distinct.len()
    );
    println!("  checks: 0 discarded, every order consistent (one INVENTORY_RESERVED and one confirmation per reserved order, never confirmed and refused), 0 duplicate emails, stock conserved for {SKUS} products, per-key order kept, read model equal to its replay");
}

/// order-status's table (`pk`, `sk`), made for the replay.
async fn create_status_table(client: &aws_sdk_dynamodb::Client, name: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let mut create = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    for (attribute, kind) in [("pk", KeyType::Hash), ("sk", KeyType::Range)] {
        create = create
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(attribute)
                    .key_type(kind)
                    .build()
                    .unwrap(),
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attribute)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            );
    }
    create.send().await.unwrap();
}
