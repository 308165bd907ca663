//! The Lambda entry point every function shares: [`main`] starts a [`Function`] (its settings, its
//! wiring over AWS, the engine) and serves its invocations.
//!
//! Invocations are served with `lambda_runtime`'s `run_concurrent`: one at a time on classic
//! Lambda, several in one process on Lambda Managed Instances (`AWS_LAMBDA_MAX_CONCURRENCY` > 1).
//! Everything an invocation holds (its batch, its deadline, its log buffers, its counts) is its
//! own. The runtime reads each body into a [`KinesisBatch`] (its `Deserialize`: the body taken
//! whole as raw JSON, then the one reader of the Lambda event); a body that is not a Lambda
//! Kinesis event fails its own invocation, as any body the runtime cannot read does, and the
//! event source mapping retries it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::{layers, service_fn, Context, Diagnostic, LambdaEvent};
use tokio::time::Instant;

use crate::adapters::dlq::{dead_letter_queue, DeadLetterQueue, DlqSettings};
use crate::adapters::ledger::{DynamoLedger, LedgerSettings, Markers};
use crate::engine::{BatchEngine, BatchStats, Consumer, EngineConfig, PoisonSink};
use crate::input::batch::KinesisBatch;
use crate::platform::config::{ConfigErrors, Env, Problems};
use crate::platform::metrics::{self, MetricsSettings};
use crate::platform::telemetry::{self, LogSettings};

/// A consumer deployed as a Lambda function: its name, its own settings, and how it is wired over
/// its AWS clients. [`main`] does the rest: the shared settings, the dead-letter queue, the ledger,
/// the engine, the runtime.
pub trait Function: Consumer + Send + Sized + 'static {
    /// Its name, the crate's (`env!("CARGO_PKG_NAME")`): the scope of its idempotency entries,
    /// and the name its poison records carry unless Lambda names it (`AWS_LAMBDA_FUNCTION_NAME`).
    const NAME: &'static str;

    /// The settings it reads beyond those every function shares.
    type Settings;

    /// Reads its own settings, keeping each problem in `problems` (start-up names them all).
    fn settings(env: &Env, problems: &mut Problems) -> Self::Settings;

    /// The consumer, over the AWS clients `wiring` lends it.
    fn wire(settings: Self::Settings, wiring: &Wiring<'_>) -> Self;
}

/// What a function is wired with: the SDK's configuration for clients of its own, and the
/// idempotency ledger every function shares.
#[derive(Debug)]
pub struct Wiring<'a> {
    /// The SDK's configuration, loaded once at start-up.
    pub sdk: &'a aws_config::SdkConfig,
    /// The DynamoDB client of the ledger, for an effect in DynamoDB too.
    pub dynamodb: &'a aws_sdk_dynamodb::Client,
    /// The ledger's settings.
    pub ledger: &'a LedgerSettings,
    /// The function's name, scoping its ledger entries.
    pub scope: &'static str,
}

impl Wiring<'_> {
    /// The function's claim ledger, for an effect that cannot join a transaction.
    pub fn ledger(&self) -> DynamoLedger {
        DynamoLedger::new(self.dynamodb.clone(), self.ledger.clone(), self.scope)
    }

    /// The function's idempotency markers, for an effect written in a DynamoDB transaction.
    pub fn markers(&self) -> Markers {
        Markers::new(self.dynamodb.clone(), self.ledger.clone(), self.scope)
    }
}

/// The settings every function shares, read once at start-up.
#[derive(Debug, Clone)]
pub struct CommonSettings {
    /// The engine's.
    pub engine: EngineConfig,
    /// The metrics'.
    pub metrics: MetricsSettings,
    /// The dead-letter queue's.
    pub dlq: DlqSettings,
    /// The idempotency ledger's.
    pub ledger: LedgerSettings,
}

impl CommonSettings {
    /// Reads them for consumer `C`, named `function`, keeping each problem in `problems`: the
    /// log settings (read already by the logger, checked here), then the others.
    pub fn read<C: Consumer>(env: &Env, function: &str, problems: &mut Problems) -> Self {
        LogSettings::check(env, problems);
        Self {
            engine: EngineConfig::read::<C>(env, function, problems),
            metrics: MetricsSettings::read(env, problems),
            dlq: DlqSettings::read(env, problems),
            ledger: LedgerSettings::read(env, problems),
        }
    }
}

/// A function's settings: those every function shares, then its own.
#[derive(Debug, Clone)]
pub struct Settings<F: Function> {
    /// Those every function shares.
    pub common: CommonSettings,
    /// Its own.
    pub own: F::Settings,
}

impl<F: Function> Settings<F> {
    /// Reads them all; every missing or wrong one is named in the error.
    pub fn from_env(env: &Env) -> Result<Self, ConfigErrors> {
        Problems::collect(|problems| Self {
            common: CommonSettings::read::<F>(env, F::NAME, problems),
            own: F::settings(env, problems),
        })
    }
}

/// The engine a function runs: the consumer wired over AWS, poison to the dead-letter queue.
pub fn engine<F: Function>(
    settings: Settings<F>,
    sdk: &aws_config::SdkConfig,
) -> BatchEngine<F, DeadLetterQueue> {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let common = settings.common;
    let wiring = Wiring {
        sdk,
        dynamodb: &dynamodb,
        ledger: &common.ledger,
        scope: F::NAME,
    };
    let dlq = dead_letter_queue(&common.dlq, sdk, wiring.ledger());
    BatchEngine::new(F::wire(settings.own, &wiring), dlq, common.engine)
}

/// A function's `main`: logging, its settings (or the end of start-up, naming every problem), the
/// SDK's configuration, its engine, and its invocations until the runtime stops.
pub async fn main<F: Function>() -> std::process::ExitCode {
    telemetry::init();
    let settings = start_up(Settings::<F>::from_env(&Env::process()));
    let sdk = crate::platform::aws::sdk_config().await;
    let metrics = settings.common.metrics.clone();
    serve(engine(settings, &sdk), metrics).await
}

/// Serves invocations with the engine until the runtime shuts down; each invocation's metrics go
/// to `metrics`' namespace.
pub async fn run<C, P>(
    engine: BatchEngine<C, P>,
    metrics: MetricsSettings,
) -> Result<(), lambda_runtime::Error>
where
    C: Consumer + Send + 'static,
    P: PoisonSink + Send + 'static,
{
    let engine = Arc::new(engine);
    let metrics = Arc::new(metrics);
    let handler = service_fn(move |event: LambdaEvent<KinesisBatch>| {
        let (engine, metrics) = (engine.clone(), metrics.clone());
        async move {
            let response = handle(&engine, &event.payload, &event.context, &metrics).await;
            Ok::<_, Diagnostic>(response)
        }
    });
    lambda_runtime::Runtime::new(handler)
        .layer(layers::TracingLayer::new())
        .run_concurrent()
        .await
}

/// Handles one invocation: processes the batch before the deadline, logs what happened and
/// writes its metrics to stdout (see [`crate::platform::metrics`]).
pub async fn handle<C, P>(
    engine: &BatchEngine<C, P>,
    batch: &KinesisBatch,
    context: &Context,
    metrics: &MetricsSettings,
) -> KinesisEventResponse
where
    C: Consumer,
    P: PoisonSink,
{
    handle_to(engine, batch, context, metrics, &mut std::io::stdout()).await
}

/// [`handle`], writing the metrics to `out` (the cost benchmark counts their bytes).
pub async fn handle_to<C, P>(
    engine: &BatchEngine<C, P>,
    batch: &KinesisBatch,
    context: &Context,
    metrics: &MetricsSettings,
    out: &mut impl std::io::Write,
) -> KinesisEventResponse
where
    C: Consumer,
    P: PoisonSink,
{
    let deadline = deadline_from_runtime_ms(context.deadline);
    let time_left_ms = deadline
        .saturating_duration_since(Instant::now())
        .as_millis() as u64;
    let started = std::time::Instant::now();
    let (outcome, dropped) = telemetry::in_invocation(engine.process(batch, Some(deadline))).await;
    let duration = started.elapsed();
    let stats = BatchStats {
        log_lines_dropped: dropped,
        ..outcome.stats
    };
    let function = &engine.config().function;
    tracing::info!(
        request_id = %context.request_id,
        function = %function,
        time_left_ms,
        counts = %stats.line(),
        log_lines_dropped = stats.log_lines_dropped,
        reported = outcome.response.batch_item_failures.len(),
        "batch done"
    );
    let invocation = metrics::Invocation {
        function,
        counts: &stats.metrics(),
        by_type: (BatchStats::skipped_metric(), &stats.skipped),
        duration,
    };
    metrics::emit(out, &metrics.namespace, &invocation);
    outcome.response
}

/// Converts the runtime API's deadline (`Lambda-Runtime-Deadline-Ms`) into a monotonic instant.
///
/// Lambda sends milliseconds since the Unix epoch. Some local emulators (`cargo lambda watch`)
/// send the function's timeout instead, a value far too small to be a date; it is read as a
/// duration from now, so a local run gets the same deadline behaviour as the real service.
pub fn deadline_from_runtime_ms(deadline_ms: u64) -> Instant {
    // 2001-09-09 in epoch milliseconds: no real deadline is earlier.
    const EARLIEST_EPOCH_MS: u64 = 1_000_000_000_000;
    let now = Instant::now();
    if deadline_ms < EARLIEST_EPOCH_MS {
        return now + Duration::from_millis(deadline_ms);
    }
    let deadline = SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_ms);
    match deadline.duration_since(SystemTime::now()) {
        Ok(left) => now + left,
        Err(_) => now,
    }
}

/// What a binary started outside Lambda is told.
pub const OUTSIDE_LAMBDA: &str = "AWS_LAMBDA_RUNTIME_API is not set: this is a Lambda function, \
    which takes its invocations from Lambda's Runtime API. Deploy it, or run it locally under \
    cargo lambda watch ('make watch', or 'make up' for the whole stack)";

/// The configuration, or the end of start-up: every problem is logged once (with, first, a word
/// if the binary was started outside Lambda) and the process exits with status 1, which Lambda
/// reports as the init error, the log naming each setting.
pub fn start_up<T, E: std::fmt::Display>(config: Result<T, E>) -> T {
    let outside = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none();
    match (config, outside) {
        (Ok(config), false) => config,
        (Ok(_), true) => stop(OUTSIDE_LAMBDA),
        (Err(e), false) => stop(&e.to_string()),
        (Err(e), true) => stop(&format!("{OUTSIDE_LAMBDA}\n{e}")),
    }
}

fn stop(why: &str) -> ! {
    tracing::error!("start-up failed: {why}");
    std::process::exit(1)
}

/// [`run`], for a binary's `main`: an error that stops the runtime is logged once, and the exit
/// status says it.
pub async fn serve<C, P>(
    engine: BatchEngine<C, P>,
    metrics: MetricsSettings,
) -> std::process::ExitCode
where
    C: Consumer + Send + 'static,
    P: PoisonSink + Send + 'static,
{
    match run(engine, metrics).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let api = std::env::var("AWS_LAMBDA_RUNTIME_API").unwrap_or_default();
            tracing::error!(error = %e, "the Lambda Runtime API at {api} stopped answering; the runtime stops");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An epoch deadline becomes the time left; a small value is read as a timeout from now.
    #[tokio::test(start_paused = true)]
    async fn deadline_conversion() {
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let left = deadline_from_runtime_ms(now_ms + 30_000) - Instant::now();
        assert!(
            left > Duration::from_secs(29) && left <= Duration::from_secs(30),
            "{left:?}"
        );
        assert_eq!(deadline_from_runtime_ms(now_ms - 5_000), Instant::now());
        assert_eq!(
            deadline_from_runtime_ms(600_000) - Instant::now(),
            Duration::from_secs(600)
        );
    }
}
