//! `producer`: writes order events to a Kinesis stream.
//!
//! ```text
//! producer put FILE.jsonl [--type ORDER_PLACED]     envelopes, or bare payloads of one type
//! producer generate --orders N --keys K              a realistic mix (cancellations, duplicates, poison)
//! ```
//! Both take `--stream`, `--aggregate`, `--partition-key`, and the SDK's usual settings from the
//! environment (`AWS_ENDPOINT_URL`, `AWS_REGION`, credentials).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use producer::envelope::{OrderEvent, PartitionKey};
use producer::generate::Mix;
use producer::ports::{Kinesis, StreamWriter};
use producer::publisher::{Config, Limits, Publisher, Record, Retry};
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "producer",
    about = "Write order events to a Kinesis stream",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    options: Options,
}

#[derive(Subcommand)]
enum Command {
    /// Put the events of a JSON Lines file: one envelope per line, or one payload per line with --type.
    Put {
        /// The file (`-` for standard input).
        file: PathBuf,
        /// Each line is a bare payload of this event type (an envelope is made around it).
        #[arg(long = "type", value_name = "EVENT_TYPE")]
        event_type: Option<String>,
    },
    /// Generate and put a realistic mix: orders, cancellations, other types, duplicates, poison.
    Generate {
        /// How many records.
        #[arg(long, default_value_t = 1000)]
        orders: usize,
        /// How many customers (each one's events share a partition key).
        #[arg(long, default_value_t = 100)]
        keys: usize,
        /// The products ordered, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "sku-apple,sku-pear,sku-plum,sku-gold"
        )]
        skus: Vec<String>,
        /// The share of poison records (0-1).
        #[arg(long, default_value_t = 0.03)]
        poison: f64,
        /// The share of duplicates (0-1).
        #[arg(long, default_value_t = 0.01)]
        duplicates: f64,
        /// The seed (the same seed makes the same mix; default: a new one each run).
        #[arg(long)]
        seed: Option<u64>,
    },
}

#[derive(Args)]
struct Options {
    /// The stream: a name or an ARN.
    #[arg(
        long,
        env = "STREAM_NAME",
        default_value = producer::DEFAULT_STREAM,
        global = true
    )]
    stream: String,
    /// Pack records into KPL aggregates, grouped by the shard each key hashes to.
    #[arg(long, global = true)]
    aggregate: bool,
    /// The largest aggregate, in bytes.
    #[arg(long, default_value_t = 1024 * 1024, global = true)]
    aggregate_bytes: usize,
    /// What a record's partition key is.
    #[arg(long, value_enum, default_value_t = KeyChoice::OrderId, global = true)]
    partition_key: KeyChoice,
    /// The `PutRecords` request-size limit (moto: 5 MiB; AWS: 10 MiB).
    #[arg(long, default_value_t = 5 * 1024 * 1024, global = true)]
    request_bytes: usize,
    /// The record-size limit (1 MiB unless the stream was raised, up to 10 MiB).
    #[arg(long, default_value_t = 1024 * 1024, global = true)]
    record_bytes: usize,
    /// Attempts per record before it fails.
    #[arg(long, default_value_t = 10, global = true)]
    max_attempts: u32,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, global = true)]
    in_flight: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum KeyChoice {
    /// The payload's orderId: one order's events stay in order.
    #[value(name = "orderId")]
    OrderId,
    /// The payload's userId: one customer's events stay in order.
    #[value(name = "userId")]
    UserId,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("producer: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("producer: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    let o = &cli.options;
    let strategy = match o.partition_key {
        KeyChoice::OrderId => PartitionKey::OrderId,
        KeyChoice::UserId => PartitionKey::UserId,
    };
    let records = match &cli.command {
        Command::Put { file, event_type } => read_file(file, event_type.as_deref(), &strategy)?,
        Command::Generate {
            orders,
            keys,
            skus,
            poison,
            duplicates,
            seed,
        } => Mix {
            records: *orders,
            keys: *keys,
            skus: skus.clone(),
            poison: *poison,
            duplicates: *duplicates,
            seed: seed.unwrap_or_else(|| fastrand::u64(..)),
            ..Mix::default()
        }
        .generate()
        .into_iter()
        .map(|g| Record {
            partition_key: g.partition_key,
            data: g.data,
        })
        .collect(),
    };
    let sdk = shared::aws::loader().load().await;
    let config = Config {
        limits: Limits {
            records_per_request: 500,
            request_bytes: o.request_bytes,
            record_bytes: o.record_bytes,
        },
        retry: Retry {
            max_attempts: o.max_attempts,
            ..Retry::default()
        },
        in_flight: o.in_flight,
        aggregate: o.aggregate.then_some(o.aggregate_bytes),
    };
    let kinesis = Kinesis::new(producer::kinesis_client(&sdk), &o.stream);
    // One request first: a stream that is not there, or an endpoint that does not answer, is said
    // in one line before any record is tried.
    if let Err(e) = kinesis.open_shards().await {
        let hint = shared::cli::unreachable_hint(&e.0);
        return Err(format!(
            "cannot reach the stream {}: {}{hint}",
            o.stream, e.0
        ));
    }
    let publisher = Publisher::new(kinesis, config);
    let bar = ProgressBar::new(records.len() as u64);
    if records.len() < 2000 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} records, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = publisher
        .publish_with(&records, |done| bar.set_position(done))
        .await;
    bar.finish_and_clear();
    let failures: Vec<_> = report
        .outcomes
        .iter()
        .filter_map(|o| o.as_ref().err())
        .collect();
    for f in failures.iter().take(10) {
        eprintln!("producer: {f}");
    }
    if failures.len() > 10 {
        eprintln!("producer: ... and {} more failures", failures.len() - 10);
    }
    println!("producer: {} to {}", report.summary, o.stream);
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The records of a JSON Lines file; a line that cannot be an event is an error naming it.
fn read_file(
    path: &PathBuf,
    event_type: Option<&str>,
    strategy: &PartitionKey,
) -> Result<Vec<Record>, String> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut records = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let at = || format!("{}, line {}", path.display(), n + 1);
        let value: Value =
            serde_json::from_str(line).map_err(|e| format!("{}: not JSON: {e}", at()))?;
        let record = match event_type {
            Some(t) => producer::record(&OrderEvent::new(t, value), strategy),
            None => {
                let Some(envelope) = value.as_object() else {
                    return Err(format!("{}: an envelope is a JSON object", at()));
                };
                if !envelope.contains_key("eventType") {
                    return Err(format!(
                        "{}: no eventType; for bare payloads, give --type",
                        at()
                    ));
                }
                // The envelope goes on the stream as written; only the key is read from it.
                let event = OrderEvent {
                    event_id: match envelope.get("eventId") {
                        Some(Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                        None => String::new(),
                    },
                    event_type: String::new(),
                    timestamp: String::new(),
                    payload: envelope.get("payload").cloned().unwrap_or(Value::Null),
                };
                let mut key = strategy.of(&event);
                if key.is_empty() {
                    key = format!("line-{}", n + 1);
                }
                Record {
                    partition_key: key,
                    data: line.as_bytes().to_vec(),
                }
            }
        };
        records.push(record);
    }
    Ok(records)
}
