//! Chaos replay: thousands of events through both functions, delivered by a reproduction of the
//! event source mapping, against the AWS-API server behind a proxy that makes a share of all AWS
//! calls fail (throttling, 500s, dropped connections, answers slower than the SDK's timeout), and
//! with invocations that die after doing their work. At the end every event must be accounted for,
//! with no duplicate email, no double reservation or release, stock conserved per product, and the
//! per-key order of effects kept.
//!
//! `make test` runs 1,000 events; `make chaos` runs 10,000 over 500 keys
//! (`CHAOS_EVENTS`, `CHAOS_KEYS`, `CHAOS_FAULT_RATE`, `CHAOS_SEED` set the run).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::proxy::{Fault, FaultProxy};
use integration_tests::{local_env, LocalAws, Rng};
use integration_tests::{EmailSettings, InventorySettings};
use local_esm::mapping::{
    Function as Invoked, InvokeError, Mapper, NoDestination, Source, Stats as EsmStats,
    StreamRecord,
};
use local_esm::template::Mapping;
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
    /// Its position in its shard: (record index, sub-record index).
    position: (usize, usize),
    shard: usize,
}

/// A user record waiting to be written: its key, its data, and which event it is (none: poison
/// or a duplicate).
type Pending = (String, Vec<u8>, Option<usize>);

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
                 events: &mut Vec<Sent>,
                 shards: &mut Vec<Vec<StreamRecord>>,
                 aggregates: &mut usize| {
        if pending.is_empty() {
            return;
        }
        let sequence_number = format!("4959{shard}{:051}", shards[shard].len() + 1);
        let index = shards[shard].len();
        let (key, data) = if pending.len() == 1 {
            (pending[0].0.clone(), pending[0].1.clone())
        } else {
            *aggregates += 1;
            let agg =
                shared::kpl::aggregate(pending.iter().map(|(k, d, _)| (k.as_str(), d.as_slice())));
            (pending[0].0.clone(), agg)
        };
        for (sub, (_, _, event)) in pending.iter().enumerate() {
            if let Some(e) = event {
                events[*e].position = (index, sub);
            }
        }
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
        let event = match generated.event {
            None => {
                poison += 1;
                None
            }
            Some(e) if e.duplicate => {
                duplicates += 1;
                None
            }
            Some(e) => {
                events.push(Sent {
                    event_id: e.event_id,
                    kind: e.event_type,
                    order_id: e.order_id,
                    position: (0, 0),
                    shard,
                });
                Some(events.len() - 1)
            }
        };
        pending[shard].push((key, generated.data, event));
        if pending[shard].len() >= 4 || !rng.chance(0.25) {
            let mut p = std::mem::take(&mut pending[shard]);
            flush(shard, &mut p, &mut events, &mut shards, &mut aggregates);
        }
    }
    for (shard, waiting) in pending.iter_mut().enumerate() {
        let mut p = std::mem::take(waiting);
        flush(shard, &mut p, &mut events, &mut shards, &mut aggregates);
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
        ("EVENT_TYPES", "ORDER_PLACED"),
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
    let (m0, m1) = (
        mapper(&mapping, &s0, &email, &stats[0]),
        mapper(&mapping, &s1, &email, &stats[1]),
    );
    let (m2, m3) = (
        mapper(&mapping, &s0, &inventory, &stats[2]),
        mapper(&mapping, &s1, &inventory, &stats[3]),
    );
    tokio::join!(
        m0.deliver(stream.shards[0].clone()),
        m1.deliver(stream.shards[1].clone()),
        m2.deliver(stream.shards[0].clone()),
        m3.deliver(stream.shards[1].clone()),
    );
    let esm: Vec<EsmStats> = stats.into_iter().map(|s| s.into_inner().unwrap()).collect();
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
    let in_dlq = |function: &str, e: &Sent| {
        dlq.iter().any(|m| {
            m["function"] == function
                && m["shardId"] == format!("shardId-{:012}", e.shard)
                && m["sequenceNumber"] == stream.shards[e.shard][e.position.0].sequence_number
        })
    };

    // 1. Nothing was discarded by the mapping.
    let discarded: u64 = esm.iter().map(|s| s.discarded).sum();
    assert_eq!(discarded, 0, "records ran out of retries");

    // 2. Zero duplicate emails.
    let mut sent_per_order: HashMap<&str, usize> = HashMap::new();
    for (_, _, data) in &emails {
        *sent_per_order
            .entry(data["orderId"].as_str().unwrap())
            .or_default() += 1;
    }
    let duplicate_emails: usize = sent_per_order.values().map(|n| n - 1).sum();
    eprintln!(
        "unstarted/abandoned: email {}, inventory {}",
        email.stats.lock().unwrap().unstarted,
        inventory.stats.lock().unwrap().unstarted
    );
    if duplicate_emails > 0 {
        let ledger = aws.ledger().await;
        for (order, n) in sent_per_order.iter().filter(|(_, n)| **n > 1) {
            let e = stream
                .events
                .iter()
                .find(|e| e.order_id == *order && e.kind == "ORDER_PLACED")
                .unwrap();
            eprintln!(
                "{order} sent {n} times; ledger: {:?}",
                ledger.get(&format!("email-notifier#{}", e.event_id))
            );
        }
    }
    assert_eq!(duplicate_emails, 0, "duplicate emails");

    // 3. Every event accounted for: its effect applied, or it is in the DLQ.
    let mut unaccounted = Vec::new();
    for e in &stream.events {
        match e.kind {
            "ORDER_PLACED" => {
                if !sent_per_order.contains_key(e.order_id.as_str()) && !in_dlq("email-notifier", e)
                {
                    unaccounted.push(format!("email for {}", e.event_id));
                }
                if !orders.contains_key(&e.order_id) && !in_dlq("inventory-updater", e) {
                    unaccounted.push(format!("reservation for {}", e.event_id));
                }
            }
            "ORDER_CREATED"
                if !orders.contains_key(&e.order_id) && !in_dlq("inventory-updater", e) =>
            {
                unaccounted.push(format!("reservation for {}", e.event_id));
            }
            _ => {}
        }
    }
    assert!(
        unaccounted.is_empty(),
        "{} events unaccounted for: {:?}",
        unaccounted.len(),
        &unaccounted[..unaccounted.len().min(10)]
    );

    // 4. Stock conserved per product: initial - reserved + released = final. A double reservation
    //    or release would break it, since each order's item is written once.
    let mut expected: BTreeMap<String, i64> = (0..SKUS)
        .map(|s| (format!("sku-{s:02}"), INITIAL_STOCK))
        .collect();
    for (status, lines) in orders.values() {
        for (sku, q) in lines {
            match status.as_str() {
                "RESERVED" => *expected.get_mut(sku).unwrap() -= q,
                "RELEASED" => {} // reserved, then released
                _ => {}
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

    // 5. Per-key order of effects: a cancellation applied after its placement released it; and the
    //    confirmations of one key were sent in stream order.
    let cancelled: HashSet<&str> = stream
        .events
        .iter()
        .filter(|e| e.kind == "ORDER_CANCELLED" && !in_dlq("inventory-updater", e))
        .map(|e| e.order_id.as_str())
        .collect();
    for order in &cancelled {
        if let Some((status, _)) = orders.get(*order) {
            assert_ne!(
                status, "RESERVED",
                "{order} was cancelled before it was reserved"
            );
        }
    }
    let position: HashMap<&str, (usize, usize)> = stream
        .events
        .iter()
        .filter(|e| e.kind == "ORDER_PLACED")
        .map(|e| (e.order_id.as_str(), e.position))
        .collect();
    // An email whose send got no answer in time (it went to the DLQ as "outcome unknown") may
    // still reach the server late, after later ones: it is left out of the order check.
    let unknown: HashSet<&str> = stream
        .events
        .iter()
        .filter(|e| e.kind == "ORDER_PLACED" && in_dlq("email-notifier", e))
        .map(|e| e.order_id.as_str())
        .collect();
    let mut last_per_key: HashMap<&str, (usize, usize)> = HashMap::new();
    for (to, _, data) in &emails {
        let order = data["orderId"].as_str().unwrap();
        if unknown.contains(order) {
            continue;
        }
        let pos = position[order];
        let key = to[0].split('@').next().unwrap();
        if let Some(prev) = last_per_key.insert(key, pos) {
            assert!(prev < pos, "confirmations of {key} were sent out of order");
        }
    }

    // The figures.
    let email_stats = email.stats.lock().unwrap().clone();
    let inventory_stats = inventory.stats.lock().unwrap().clone();
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
    println!("  invocations: {}, partial failures: {}, function errors: {} (of which died after work: {}), bisections: {}, records redelivered: {}",
        sum(|s| s.invocations), sum(|s| s.partial_failures), sum(|s| s.function_errors),
        email.crashes.load(Ordering::Relaxed) + inventory.crashes.load(Ordering::Relaxed), sum(|s| s.bisections), sum(|s| s.redelivered));
    let redelivered = sum(|s| s.redelivered);
    let remembered = email_stats.remembered + inventory_stats.remembered;
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
    println!(
        "  email-notifier: {} sent, {} duplicates skipped, {} failed and retried, {} to the DLQ",
        emails.len(),
        email_stats.duplicates,
        email_stats.failed,
        email_stats.poison
    );
    println!("  inventory-updater: {} applied, {} rejected, {} duplicates skipped, {} failed and retried, {} to the DLQ",
        inventory_stats.applied, inventory_stats.rejected, inventory_stats.duplicates, inventory_stats.failed, inventory_stats.poison);
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
    println!("  checks: 0 discarded, 0 unaccounted, 0 duplicate emails, stock conserved for {SKUS} products, per-key order kept");
}
