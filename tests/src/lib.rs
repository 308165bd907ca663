//! The harness of the end-to-end tests: a real AWS-API server (moto's standalone server, from the
//! project's `.venv`, run by `scripts/moto_server.py` one request at a time) on a free loopback port, bootstrapped like the demo's, and a fault-injecting
//! proxy to put in front of it.
//!
//! Each test starts its own server and stops it when the [`LocalAws`] is dropped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod pipeline;
pub mod proxy;
pub mod runtime_api;
pub mod stub_aws;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use shared::{Env, KinesisBatch};

/// email-notifier's settings, as its `main` reads them.
pub type EmailSettings = shared::runtime::Settings<email_notifier::Notifier>;
/// inventory-updater's settings, as its `main` reads them.
pub type InventorySettings = shared::runtime::Settings<inventory_updater::Updater>;
/// order-status's settings, as its `main` reads them.
pub type StatusSettings = shared::runtime::Settings<order_status::OrderStatus>;

/// The settings both functions require, with names a stub endpoint accepts: for the benchmarks,
/// which run the functions against `stub_aws` rather than the bootstrapped local server. The
/// benchmarks deliver the same batch again and again: the warm memory of finished records is off,
/// or every run after the first would be all duplicates, measuring nothing.
pub const BENCH_SETTINGS: [(&str, &str); 9] = [
    ("IDEMPOTENCY_CACHE_SIZE", "0"),
    ("SENDER_ADDRESS", "orders@example.com"),
    ("TEMPLATE_NAME", "OrderConfirmation"),
    ("REJECTED_TEMPLATE_NAME", "OrderRejected"),
    ("PAYMENT_FAILED_TEMPLATE_NAME", "PaymentFailed"),
    ("INVENTORY_TABLE", "inventory"),
    ("STREAM_NAME", "order-events"),
    ("IDEMPOTENCY_TABLE", "idempotency"),
    (
        "DLQ_URL",
        "https://sqs.us-east-1.amazonaws.com/123456789012/dlq",
    ),
];

/// The functions' logs as Lambda's JSON log format sets them, at `level`, no sampling: what the
/// benchmarks and tests log with.
pub fn json_logs_at(level: &str) -> shared::platform::telemetry::LogSettings {
    shared::platform::telemetry::LogSettings {
        level: level.into(),
        json: true,
        sample_rate: 0.0,
    }
}

/// A writer that counts the bytes written to it (the benchmarks' log and metrics output).
#[derive(Clone, Default)]
pub struct Counting(pub std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Counting {
    /// The bytes written so far.
    pub fn bytes(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl std::io::Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .fetch_add(buf.len(), std::sync::atomic::Ordering::Relaxed);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A benchmark's own arguments: those after the `--` of `cargo bench`, without the `--bench`
/// flag cargo adds.
pub fn bench_args() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect()
}

/// The repository's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A sample event from `events/`.
pub fn sample(name: &str) -> KinesisBatch {
    let bytes = std::fs::read(root().join("events").join(name)).unwrap();
    KinesisBatch::from_slice(&bytes).unwrap()
}

/// The settings of `local.env`, the same file the demo's functions read.
pub fn local_settings() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("local.env")).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The functions' settings, as [`Env`].
pub fn local_env(extra: &[(&str, &str)]) -> Env {
    let settings = local_settings();
    let mut pairs: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.extend_from_slice(extra);
    Env::from_pairs(pairs)
}

/// Reads the server's log until it says where it listens, then keeps draining it in a thread (it
/// logs every request, and a full pipe would stall it).
fn announced_port(child: &mut Child) -> u16 {
    use std::io::{BufRead, BufReader};
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !sent {
                if let Some(rest) = line.split("Running on http://127.0.0.1:").nth(1) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    sent = tx.send(port.parse::<u16>().ok()).is_ok();
                }
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Some(port)) => port,
        other => panic!("moto did not say where it listens: {other:?}"),
    }
}

/// A moto server on loopback, bootstrapped with the tables, the SES identity and template, the
/// dead-letter queue and the stream. Stopped on drop.
pub struct LocalAws {
    child: Child,
    addr: SocketAddr,
}

impl LocalAws {
    /// Starts and bootstraps a server. Needs the project's `.venv` (`make tools`, which
    /// `make test` runs first).
    pub fn start() -> Self {
        let venv = root().join(".venv/bin");
        let python = venv.join("python");
        assert!(
            python.exists(),
            "{} is missing: run `make tools`",
            python.display()
        );
        // Port 0: the server binds a port of its own and says which, so two tests running at
        // once can never meet on one port.
        let mut child = Command::new(&python)
            .arg(root().join("scripts/moto_server.py"))
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let port = announced_port(&mut child);
        let aws = LocalAws {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        aws.wait_ready();
        let status = Command::new(&python)
            .arg(root().join("scripts/local_aws.py"))
            .args(["bootstrap", "--endpoint", &aws.endpoint()])
            .status()
            .unwrap();
        assert!(status.success(), "bootstrap failed");
        aws
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if http_get(self.addr, "/moto-api/data.json").is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("moto did not start on {}", self.addr);
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's URL, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The SDK configuration the functions use, pointed at `endpoint` (the server or a proxy).
    pub async fn sdk_config(endpoint: &str) -> SdkConfig {
        shared::aws::loader()
            .endpoint_url(endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "local"))
            .load()
            .await
    }

    /// The emails the server recorded: (recipients, template, template data).
    pub fn emails(&self) -> Vec<(Vec<String>, String, Value)> {
        let body = http_get(self.addr, "/moto-api/data.json").unwrap();
        let data: Value = serde_json::from_str(&body).unwrap();
        data["ses"]["TemplateMessage"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let to = m["destinations"]["ToAddresses"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_owned())
                    .collect();
                let data = serde_json::from_str(m["template_data"].as_str().unwrap()).unwrap();
                (to, m["template"].as_str().unwrap().to_owned(), data)
            })
            .collect()
    }

    /// Every item of a table, by `pk`, read through the real SDK.
    pub async fn table(
        &self,
        table: &str,
    ) -> BTreeMap<String, std::collections::HashMap<String, AttributeValue>> {
        let client = aws_sdk_dynamodb::Client::new(&Self::sdk_config(&self.endpoint()).await);
        let mut out = BTreeMap::new();
        let mut start = None;
        loop {
            let page = client
                .scan()
                .table_name(table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap();
            for item in page.items() {
                let pk = item["pk"].as_s().unwrap().clone();
                out.insert(pk, item.clone());
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return out;
            }
        }
    }

    /// The available stock per product.
    pub async fn stock(&self) -> BTreeMap<String, i64> {
        self.table("inventory")
            .await
            .into_iter()
            .filter_map(|(pk, item)| {
                let sku = pk.strip_prefix("SKU#")?.to_owned();
                Some((sku, item["available"].as_n().unwrap().parse().unwrap()))
            })
            .collect()
    }

    /// The status and reason of one order's reservation, if any.
    pub async fn reservation(&self, order_id: &str) -> Option<(String, Option<String>)> {
        let items = self.table("inventory").await;
        let item = items.get(&format!("ORDER#{order_id}"))?;
        Some((
            item["status"].as_s().unwrap().clone(),
            item.get("reason").map(|r| r.as_s().unwrap().clone()),
        ))
    }

    /// Every message of the dead-letter queue, as JSON (received, so they are hidden for a while
    /// after this call).
    pub async fn dlq_messages(&self) -> Vec<Value> {
        let client = aws_sdk_sqs::Client::new(&Self::sdk_config(&self.endpoint()).await);
        let url = local_settings()
            .into_iter()
            .find(|(k, _)| k == "DLQ_URL")
            .map(|(_, v)| v)
            .unwrap();
        let mut out = Vec::new();
        loop {
            let got = client
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .visibility_timeout(300)
                .send()
                .await
                .unwrap();
            if got.messages().is_empty() {
                return out;
            }
            for m in got.messages() {
                out.push(serde_json::from_str(m.body().unwrap()).unwrap());
            }
        }
    }

    /// The ledger's entries: key to status.
    pub async fn ledger(&self) -> BTreeMap<String, String> {
        self.table("idempotency")
            .await
            .into_iter()
            .map(|(pk, item)| (pk, item["status"].as_s().unwrap().clone()))
            .collect()
    }
}

impl Drop for LocalAws {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET on loopback, for moto's own API.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    match text.split_once("\r\n\r\n") {
        Some((head, body))
            if head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") =>
        {
            Ok(body.to_owned())
        }
        _ => Err(std::io::Error::other("not a 200 response")),
    }
}

/// A small deterministic random number generator (xorshift64*), so a failing run can be replayed
/// from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
}

/// A Kinesis stream of `shards` shards on the server, made for one test; its name.
pub async fn create_stream(sdk: &SdkConfig, name: &str, shards: i32) -> String {
    let kinesis = aws_sdk_kinesis::Client::new(sdk);
    kinesis
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .unwrap();
    name.to_owned()
}

/// A stream's records as read back: per shard id, in order, (partition key, sequence number, data).
pub type StreamContents = BTreeMap<String, Vec<(String, String, Vec<u8>)>>;

/// Every record of every shard of a stream, read back through the API.
pub async fn read_stream(sdk: &SdkConfig, name: &str) -> StreamContents {
    use aws_sdk_kinesis::types::ShardIteratorType;
    let kinesis = aws_sdk_kinesis::Client::new(sdk);
    let mut out = BTreeMap::new();
    let shards = kinesis
        .list_shards()
        .stream_name(name)
        .send()
        .await
        .unwrap();
    for shard in shards.shards() {
        let mut records = Vec::new();
        let mut iterator = kinesis
            .get_shard_iterator()
            .stream_name(name)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator()
            .map(str::to_owned);
        while let Some(it) = iterator {
            let page = kinesis
                .get_records()
                .shard_iterator(it)
                .send()
                .await
                .unwrap();
            if page.records().is_empty() {
                break;
            }
            records.extend(page.records().iter().map(|r| {
                (
                    r.partition_key().unwrap_or_default().to_owned(),
                    r.sequence_number().to_owned(),
                    r.data().as_ref().to_vec(),
                )
            }));
            iterator = page.next_shard_iterator().map(str::to_owned);
        }
        out.insert(shard.shard_id().to_owned(), records);
    }
    out
}

/// Runs the project's `.venv` Python on `code`, with `input` on standard input; its output.
pub fn python(code: &str, input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(root().join(".venv/bin/python"))
        .args(["-c", code])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the project's .venv (make tools)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
