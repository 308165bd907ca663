//! `local-esm`: Lambda's Kinesis event source mapping, locally. It reads each function's mapping
//! from `template.yaml`, polls the stream on the AWS-API server (`AWS_ENDPOINT_URL`), and invokes
//! the functions through the Lambda Invoke API that `cargo lambda watch` serves.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use local_esm::adapters::{
    lambda_client, Destination, KinesisStream, LambdaFunction, S3Destination, SqsDestination,
};
use local_esm::template::{self, Mapping};
use local_esm::{run_mapping, Options, Status};

#[derive(Parser)]
#[command(
    name = "local-esm",
    version,
    about = "Lambda's Kinesis event source mapping, locally"
)]
struct Cli {
    /// The SAM template the mappings' settings come from.
    #[arg(long, default_value = "template.yaml")]
    template: PathBuf,
    /// A template parameter, NAME=VALUE (repeatable); the others take their defaults.
    #[arg(long = "parameter", value_name = "NAME=VALUE")]
    parameters: Vec<String>,
    /// The stream (the local name; the template's is for AWS).
    #[arg(long, env = "STREAM_NAME", default_value = "order-events")]
    stream: String,
    /// The Lambda Invoke API: `cargo lambda watch`'s address.
    #[arg(
        long,
        env = "LAMBDA_ENDPOINT_URL",
        default_value = "http://127.0.0.1:9000"
    )]
    invoke_endpoint: String,
    /// Only these functions (by name); default: every function with a Kinesis event.
    #[arg(long, value_delimiter = ',')]
    functions: Vec<String>,
    /// The SQS queue for an SQS OnFailure destination.
    #[arg(long, env = "DLQ_URL")]
    queue_url: Option<String>,
    /// The S3 bucket for an S3 OnFailure destination.
    #[arg(long, env = "FAILURE_BUCKET")]
    bucket: Option<String>,
    /// A file the mappings' status is written to every second (JSON).
    #[arg(long)]
    status: Option<PathBuf>,
    /// The pause before a batch's first retry, in milliseconds (it doubles per retry).
    #[arg(long, default_value_t = 200)]
    retry_backoff_ms: u64,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 5)]
    progress_seconds: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOCAL_ESM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("local-esm: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("local-esm: {e}");
            ExitCode::FAILURE
        }
    }
}

fn mappings(cli: &Cli) -> Result<Vec<Mapping>, String> {
    let text = std::fs::read_to_string(&cli.template)
        .map_err(|e| format!("cannot read the template {}: {e}", cli.template.display()))?;
    let mut overrides = HashMap::new();
    for p in &cli.parameters {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| format!("--parameter {p}: expected NAME=VALUE"))?;
        overrides.insert(k.to_owned(), v.to_owned());
    }
    let all = template::mappings(&text, &overrides)?;
    let chosen: Vec<Mapping> = all
        .iter()
        .filter(|m| m.enabled && (cli.functions.is_empty() || cli.functions.contains(&m.function)))
        .cloned()
        .collect();
    for f in &cli.functions {
        if !all.iter().any(|m| &m.function == f) {
            let names: Vec<_> = all.iter().map(|m| m.function.as_str()).collect();
            return Err(format!(
                "--functions: {f} has no Kinesis event in {}; those that do: {}",
                cli.template.display(),
                names.join(", ")
            ));
        }
    }
    if chosen.is_empty() {
        return Err(format!(
            "{} has no enabled Kinesis event source",
            cli.template.display()
        ));
    }
    Ok(chosen)
}

async fn run(cli: Cli) -> Result<(), String> {
    let mappings = mappings(&cli)?;
    let sdk = shared::aws::loader().load().await;
    let region = sdk
        .region()
        .map_or("us-east-1".to_owned(), ToString::to_string);
    let stream = KinesisStream::new(aws_sdk_kinesis::Client::new(&sdk), &cli.stream);
    let lambda = lambda_client(&sdk, Some(&cli.invoke_endpoint));
    let mut destinations = Vec::new();
    for m in &mappings {
        let d = match &m.on_failure {
            None => Destination::None,
            Some(template::Destination::Sqs { resource }) => {
                let url = cli.queue_url.clone().ok_or_else(|| {
                    format!("{} sends failures to the SQS queue {resource}: set DLQ_URL (or --queue-url) to the local queue", m.function)
                })?;
                Destination::Sqs(SqsDestination::new(aws_sdk_sqs::Client::new(&sdk), url))
            }
            Some(template::Destination::S3 { resource }) => {
                let bucket = cli.bucket.clone().ok_or_else(|| {
                    format!("{} sends failures to the S3 bucket {resource}: set FAILURE_BUCKET (or --bucket) to the local bucket", m.function)
                })?;
                let s3 = aws_sdk_s3::config::Builder::from(&sdk)
                    .force_path_style(true)
                    .build();
                Destination::S3(S3Destination::new(
                    aws_sdk_s3::Client::from_conf(s3),
                    bucket,
                ))
            }
            Some(template::Destination::Sns { resource }) => {
                tracing::warn!(function = %m.function, topic = %resource, "SNS destinations are not reproduced locally: failure records are only logged");
                Destination::None
            }
        };
        destinations.push(d);
    }
    let functions: Vec<LambdaFunction> = mappings
        .iter()
        .map(|m| LambdaFunction::new(lambda.clone(), &m.function))
        .collect();
    let statuses: Vec<Status> = mappings.iter().map(|_| Status::default()).collect();
    let options = Options {
        region,
        retry_backoff: Duration::from_millis(cli.retry_backoff_ms),
        ..Options::default()
    };
    for m in &mappings {
        tracing::info!(
            function = %m.function,
            stream = %cli.stream,
            batch_size = m.batch_size,
            window_s = m.batching_window.as_secs_f64(),
            parallelization = m.parallelization_factor,
            bisect = m.bisect_on_function_error,
            max_retries = m.maximum_retry_attempts,
            max_age_s = m.maximum_record_age.map(|d| d.as_secs()),
            filters = m.filters.len(),
            on_failure = ?m.on_failure,
            timeout_s = m.timeout.as_secs(),
            "mapping"
        );
    }
    let runs = futures_util::future::try_join_all(mappings.iter().enumerate().map(|(i, m)| {
        run_mapping(
            m,
            &stream,
            &functions[i],
            &destinations[i],
            &statuses[i],
            &options,
        )
    }));
    let report = async {
        // A progress line per shard and function, when its counts changed.
        let mut last: HashMap<(usize, String), String> = HashMap::new();
        let mut ticks = 0u64;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            ticks += 1;
            if let Some(path) = &cli.status {
                write_status(path, &mappings, &statuses);
            }
            if !ticks.is_multiple_of(cli.progress_seconds.max(1)) {
                continue;
            }
            for (i, m) in mappings.iter().enumerate() {
                for (shard, s, p) in statuses[i].shards() {
                    let line = progress(&s, p.millis_behind_latest);
                    if last.get(&(i, shard.clone())) != Some(&line) {
                        tracing::info!(function = %m.function, %shard, "{line}");
                        last.insert((i, shard), line);
                    }
                }
            }
        }
    };
    let stop = async {
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .map_err(|e| e.to_string())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        Ok::<(), String>(())
    };
    let result = tokio::select! {
        r = runs => r.map(|_| ()),
        () = report => Ok(()),
        r = stop => r,
    };
    if let Some(path) = &cli.status {
        write_status(path, &mappings, &statuses);
    }
    for (i, m) in mappings.iter().enumerate() {
        for (shard, s, p) in statuses[i].shards() {
            println!(
                "local-esm: {} {shard}: {}",
                m.function,
                summary(&s, p.millis_behind_latest)
            );
        }
        println!(
            "local-esm: {} total: {}",
            m.function,
            summary(&statuses[i].totals(), 0)
        );
    }
    result
}

fn progress(s: &local_esm::mapping::Stats, behind: i64) -> String {
    format!(
        "{} records read, {} done, {} invocations, {} behind latest (ms)",
        s.read, s.done, s.invocations, behind
    )
}

fn summary(s: &local_esm::mapping::Stats, behind: i64) -> String {
    format!(
        "{} records read ({} filtered out), {} delivered in {} invocations; {} partial failures, {} function errors ({} timeouts), {} bisections, {} retries, {} discarded ({} failure records); iterator age max {} ms{}",
        s.read, s.filtered, s.delivered, s.invocations, s.partial_failures, s.function_errors, s.timeouts,
        s.bisections, s.retries, s.discarded, s.failure_records, s.max_iterator_age_ms,
        if behind > 0 { format!(", {behind} ms behind latest") } else { String::new() }
    )
}

fn write_status(path: &PathBuf, mappings: &[Mapping], statuses: &[Status]) {
    let functions: serde_json::Map<String, serde_json::Value> = mappings
        .iter()
        .zip(statuses)
        .map(|(m, s)| (m.function.clone(), s.to_json()))
        .collect();
    let now_ms = (local_esm::mapping::epoch_now() * 1000.0) as i64;
    let body = serde_json::json!({ "updated_ms": now_ms, "functions": functions });
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, body.to_string()).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}
