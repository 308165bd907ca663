//! The Lambda entry point every function shares.
//!
//! Invocations are served with `lambda_runtime`'s `run_concurrent`: one at a time on classic
//! Lambda, several in one process on Lambda Managed Instances (`AWS_LAMBDA_MAX_CONCURRENCY` > 1).
//! Everything an invocation holds (its batch, its deadline, its counts) is its own.
//!
//! **Why the body is read by a layer.** `lambda_runtime` 1.5 hands a handler only a deserialised
//! event, and deserialises every body through `serde_path_to_error`, which wraps each of the
//! ~80,000 calls a full batch makes so that an error can name its path: on a 6,000-record batch
//! that costs more than all of our own work, and even the cheapest type (one borrowed raw value)
//! costs a whole extra scan of the body. So [`ReadBatchLayer`] reads each body's bytes into a
//! [`KinesisBatch`] before the runtime would, leaves it for the handler under the invocation's
//! request id, and hands the runtime the body `null`. `tests/runtime.rs` runs this against a local
//! Runtime API, so a `lambda_runtime` upgrade that breaks it fails there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll};

use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::tower::{Layer, Service};
use lambda_runtime::{layers, service_fn, Context, Diagnostic, LambdaEvent, LambdaInvocation};
use serde::de::{Deserialize, Deserializer, IgnoredAny};

use crate::adapters::{DynamoLedger, SqsPoisonSink};
use crate::batch::{InvalidEvent, KinesisBatch};
use crate::config::CommonConfig;
use crate::engine::{deadline_from_runtime_ms, BatchEngine};
use crate::idempotency::OncePoisonSink;
use crate::ports::{Consumer, PoisonSink};

/// Serves invocations with the engine until the runtime shuts down.
pub async fn run<C, P>(engine: BatchEngine<C, P>) -> Result<(), lambda_runtime::Error>
where
    C: Consumer + Send + 'static,
    P: PoisonSink + Send + 'static,
{
    let engine = Arc::new(engine);
    let batches = Batches::default();
    let handler = {
        let batches = batches.clone();
        service_fn(move |event: LambdaEvent<ReadElsewhere>| {
            let (engine, batches) = (engine.clone(), batches.clone());
            async move {
                let request_id = &event.context.request_id;
                let batch = batches.take(request_id);
                let response = match &batch {
                    Some(Ok(batch)) => Ok(handle(&engine, batch, &event.context).await),
                    Some(Err(why)) => Err(unreadable(why.to_string())),
                    None => Err(unreadable("the body was not read".into())),
                };
                if let Some(Ok(batch)) = batch {
                    batches.give_back(batch);
                }
                response
            }
        })
    };
    lambda_runtime::Runtime::new(handler)
        .layer(ReadBatchLayer { batches })
        .layer(layers::TracingLayer::new())
        .run_concurrent()
        .await
}

/// The invocation's error when its body is not a Lambda Kinesis event: the event source mapping
/// retries the batch, as it does when the runtime cannot deserialise a body.
fn unreadable(why: String) -> Diagnostic {
    tracing::error!(error = %why, "the invocation's body is not a Lambda Kinesis event");
    Diagnostic {
        error_type: "InvalidKinesisEvent".into(),
        error_message: format!("the invocation's body is {why}"),
    }
}

/// The batches [`ReadBatch`] has read, by request id, until the handler takes them; and the
/// batches handled, whose buffers the next bodies are read into (a warm Lambda handles one batch
/// after another: reusing the arenas spares the allocator some megabytes of fresh pages).
#[derive(Debug, Clone, Default)]
struct Batches {
    read: Arc<Mutex<HashMap<String, Result<KinesisBatch, InvalidEvent>>>>,
    spare: Arc<Mutex<Vec<KinesisBatch>>>,
}

/// Spare batches kept: one per invocation that may run at once is plenty.
const MAX_SPARE: usize = 16;

impl Batches {
    /// Reads a body into a spare batch (or a new one), and leaves it for the handler.
    fn read(&self, request_id: String, body: &[u8]) {
        let spare = self
            .spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut batch = spare.unwrap_or_default();
        let read = batch.read(body).map(|()| batch);
        let mut read_batches = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        read_batches.insert(request_id, read);
    }

    fn take(&self, request_id: &str) -> Option<Result<KinesisBatch, InvalidEvent>> {
        let mut read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        read.remove(request_id)
    }

    fn give_back(&self, batch: KinesisBatch) {
        let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
        if spare.len() < MAX_SPARE {
            spare.push(batch);
        }
    }
}

/// A `lambda_runtime` layer that reads each invocation's body into a [`KinesisBatch`], leaves it
/// for the handler, and hands the runtime the body `null` instead (see the module's doc for why).
#[derive(Debug, Clone)]
struct ReadBatchLayer {
    batches: Batches,
}

impl<S> Layer<S> for ReadBatchLayer {
    type Service = ReadBatch<S>;
    fn layer(&self, inner: S) -> ReadBatch<S> {
        ReadBatch {
            inner,
            batches: self.batches.clone(),
        }
    }
}

/// The service of [`ReadBatchLayer`].
#[derive(Debug, Clone)]
struct ReadBatch<S> {
    inner: S,
    batches: Batches,
}

impl<S: Service<LambdaInvocation>> Service<LambdaInvocation> for ReadBatch<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut invocation: LambdaInvocation) -> S::Future {
        let request_id = invocation.context.request_id.clone();
        self.batches.read(request_id, &invocation.body);
        invocation.body = (&b"null"[..]).into();
        self.inner.call(invocation)
    }
}

/// The handler's event type: the body was read by [`ReadBatchLayer`]; this reads nothing.
#[derive(Debug, Clone, Copy)]
struct ReadElsewhere;

impl<'de> Deserialize<'de> for ReadElsewhere {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer).map(|_| ReadElsewhere)
    }
}

/// Handles one invocation: processes the batch before the deadline, logs what happened and
/// writes its metrics to stdout (see [`crate::metrics`]).
pub async fn handle<C, P>(
    engine: &BatchEngine<C, P>,
    batch: &KinesisBatch,
    context: &Context,
) -> KinesisEventResponse
where
    C: Consumer,
    P: PoisonSink,
{
    handle_to(engine, batch, context, &mut std::io::stdout()).await
}

/// [`handle`], writing the metrics to `metrics` (the cost benchmark counts their bytes).
pub async fn handle_to<C, P>(
    engine: &BatchEngine<C, P>,
    batch: &KinesisBatch,
    context: &Context,
    metrics: &mut impl std::io::Write,
) -> KinesisEventResponse
where
    C: Consumer,
    P: PoisonSink,
{
    let deadline = deadline_from_runtime_ms(context.deadline);
    let time_left_ms = deadline
        .saturating_duration_since(tokio::time::Instant::now())
        .as_millis() as u64;
    let started = std::time::Instant::now();
    let outcome = engine.process(batch, Some(deadline)).await;
    let duration = started.elapsed();
    let s = &outcome.stats;
    tracing::info!(
        request_id = %context.request_id,
        function = %engine.config().function,
        time_left_ms,
        received = s.received,
        applied = s.applied,
        duplicates = s.duplicates,
        remembered = s.remembered,
        rejected = s.rejected,
        no_effect = s.no_effect,
        skipped = s.skipped.values().sum::<u64>(),
        poison = s.poison,
        failed = s.failed,
        blocked = s.blocked,
        unstarted = s.unstarted,
        log_lines_dropped = s.log_lines_dropped,
        reported = outcome.response.batch_item_failures.len(),
        "batch done"
    );
    let config = engine.config();
    crate::metrics::emit(
        metrics,
        &config.metrics_namespace,
        &config.function,
        s,
        duration,
    );
    outcome.response
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
pub async fn serve<C, P>(engine: BatchEngine<C, P>) -> std::process::ExitCode
where
    C: Consumer + Send + 'static,
    P: PoisonSink + Send + 'static,
{
    match run(engine).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let api = std::env::var("AWS_LAMBDA_RUNTIME_API").unwrap_or_default();
            tracing::error!(error = %e, "the Lambda Runtime API at {api} stopped answering; the runtime stops");
            std::process::ExitCode::FAILURE
        }
    }
}

impl CommonConfig {
    /// The function's idempotency ledger.
    pub fn ledger(&self, dynamodb: &aws_sdk_dynamodb::Client) -> DynamoLedger {
        DynamoLedger::new(dynamodb.clone(), self.idempotency.clone(), self.function)
    }

    /// The dead-letter queue, each poison record sent once.
    pub fn dead_letter_queue(
        &self,
        aws: &aws_config::SdkConfig,
        dynamodb: &aws_sdk_dynamodb::Client,
    ) -> DeadLetterQueue {
        let mut sink = SqsPoisonSink::new(aws_sdk_sqs::Client::new(aws), self.dlq_url.clone());
        if let Some(bucket) = &self.failure_bucket {
            // Path-style addressing against a local endpoint (bucket.127.0.0.1 resolves nowhere).
            let s3 = aws_sdk_s3::config::Builder::from(aws)
                .force_path_style(aws.endpoint_url().is_some())
                .build();
            sink = sink.with_large_bodies(
                aws_sdk_s3::Client::from_conf(s3),
                bucket.clone(),
                self.dlq_max_message_bytes,
            );
        }
        OncePoisonSink::new(sink, self.ledger(dynamodb))
    }
}

/// The poison sink every function runs with: the SQS queue, each record once.
pub type DeadLetterQueue = OncePoisonSink<SqsPoisonSink, DynamoLedger>;
