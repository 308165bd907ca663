//! The Lambda entry point every function shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll};

use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::tower::{Layer, Service};
use lambda_runtime::{layers, service_fn, Context, Diagnostic, LambdaEvent, LambdaInvocation};
use serde::de::{Deserialize, Deserializer, IgnoredAny};

use crate::adapters::{DynamoLedger, SqsPoisonSink};
use crate::batch::KinesisBatch;
use crate::engine::{deadline_from_runtime_ms, BatchEngine, Consumer, PoisonSink};
use crate::idempotency::OncePoisonSink;

/// Serves invocations with the engine until the runtime shuts down.
///
/// The runtime is `lambda_runtime`'s, with its tracing layer, plus [`ReadBatchLayer`]: each body
/// is read into a [`KinesisBatch`] by the batch's own reader, from the bytes, before the runtime's
/// deserializer would read it (see [`ReadBatchLayer`] for why).
pub async fn run<H, P>(engine: BatchEngine<H, P>) -> Result<(), lambda_runtime::Error>
where
    H: Consumer,
    P: PoisonSink,
{
    let engine = &engine;
    let inbox = Inbox::default();
    let handler = {
        let inbox = inbox.clone();
        service_fn(move |event: LambdaEvent<ReadElsewhere>| {
            let batch = inbox.take(&event.context.request_id);
            async move {
                match batch {
                    Some(Ok(batch)) => Ok(handle(engine, &batch, &event.context).await),
                    Some(Err(why)) => Err(unreadable(why)),
                    None => Err(unreadable("the body was not read".into())),
                }
            }
        })
    };
    lambda_runtime::Runtime::new(handler)
        .layer(ReadBatchLayer { inbox })
        .layer(layers::TracingLayer::new())
        .run()
        .await
}

/// The invocation's error when its body is not a Lambda Kinesis event: the event source mapping
/// retries the batch, as it does when the runtime cannot deserialise a body.
fn unreadable(why: String) -> Diagnostic {
    tracing::error!(error = %why, "the invocation's body is not a Lambda Kinesis event");
    Diagnostic {
        error_type: "InvalidKinesisEvent".into(),
        error_message: format!("the invocation's body is not a Lambda Kinesis event: {why}"),
    }
}

/// The batches [`ReadBatch`] has read, by request id, until the handler takes them.
#[derive(Debug, Clone, Default)]
struct Inbox(Arc<Mutex<HashMap<String, Result<KinesisBatch, String>>>>);

impl Inbox {
    fn put(&self, request_id: String, batch: Result<KinesisBatch, String>) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.insert(request_id, batch);
    }

    fn take(&self, request_id: &str) -> Option<Result<KinesisBatch, String>> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(request_id)
    }
}

/// A `lambda_runtime` layer that reads each invocation's body into a [`KinesisBatch`], puts it
/// where the handler takes it, and hands the runtime the body `null` instead.
///
/// `lambda_runtime` deserialises every body through `serde_path_to_error`, which wraps each of the
/// ~80,000 calls a full batch makes (and copies every field name) so that an error can name its
/// path: on a 6,000-record batch that costs more than all of our own work. The batch's reader works
/// on the bytes (`KinesisBatch::from_slice`) in one pass, with its own error messages, so the body
/// is read here, and the runtime only deserialises `null`.
#[derive(Debug, Clone)]
struct ReadBatchLayer {
    inbox: Inbox,
}

impl<S> Layer<S> for ReadBatchLayer {
    type Service = ReadBatch<S>;
    fn layer(&self, inner: S) -> ReadBatch<S> {
        ReadBatch {
            inner,
            inbox: self.inbox.clone(),
        }
    }
}

/// The service of [`ReadBatchLayer`].
#[derive(Debug, Clone)]
struct ReadBatch<S> {
    inner: S,
    inbox: Inbox,
}

impl<S: Service<LambdaInvocation>> Service<LambdaInvocation> for ReadBatch<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut invocation: LambdaInvocation) -> S::Future {
        let batch = KinesisBatch::from_slice(&invocation.body).map_err(|e| e.to_string());
        self.inbox.put(invocation.context.request_id.clone(), batch);
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
/// writes its metrics (see [`crate::metrics`]).
pub async fn handle<H, P>(
    engine: &BatchEngine<H, P>,
    batch: &KinesisBatch,
    context: &Context,
) -> KinesisEventResponse
where
    H: Consumer,
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
        time_left_ms,
        received = s.received,
        applied = s.applied,
        duplicates = s.duplicates,
        rejected = s.rejected,
        no_effect = s.no_effect,
        skipped = s.skipped.values().sum::<u64>(),
        poison = s.poison,
        failed = s.failed,
        blocked = s.blocked,
        unstarted = s.unstarted,
        reported = outcome.response.batch_item_failures.len(),
        "batch done"
    );
    let config = engine.config();
    crate::metrics::emit(&config.metrics_namespace, &config.function, s, duration);
    outcome.response
}

/// Turns a start-up failure into the runtime's error, logging its message first, so Lambda's init
/// error and the log both name what is wrong (for example the missing setting).
pub fn start_up<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<T, lambda_runtime::Error> {
    result.map_err(|e| {
        tracing::error!("start-up failed: {e}");
        lambda_runtime::Error::from(format!("start-up failed: {e}"))
    })
}

/// The settings every function shares, read once at start-up: the engine's, the dead-letter
/// queue (`DLQ_URL`) and the idempotency table (`IDEMPOTENCY_*`).
#[derive(Debug, Clone)]
pub struct CommonConfig {
    /// The function's name: the crate name, which scopes its idempotency entries.
    pub function: &'static str,
    /// The engine's settings.
    pub engine: crate::engine::EngineConfig,
    /// `DLQ_URL`: the SQS queue that keeps poison records with their payload.
    pub dlq_url: String,
    /// The idempotency table.
    pub idempotency: crate::idempotency::IdempotencyConfig,
}

impl CommonConfig {
    /// Reads the shared settings of `function`; a missing one is named in the error.
    pub fn from_env(
        env: &crate::config::Env,
        function: &'static str,
        default_types: &[&str],
        supported: &[&str],
    ) -> Result<Self, crate::config::ConfigError> {
        Ok(Self {
            function,
            engine: crate::engine::EngineConfig::from_env(env, function, default_types, supported)?,
            dlq_url: env.required("DLQ_URL")?,
            idempotency: crate::idempotency::IdempotencyConfig::from_env(env)?,
        })
    }

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
        OncePoisonSink::new(
            SqsPoisonSink::new(aws_sdk_sqs::Client::new(aws), self.dlq_url.clone()),
            self.ledger(dynamodb),
        )
    }
}

/// The poison sink every function runs with: the SQS queue, each record once.
pub type DeadLetterQueue = OncePoisonSink<SqsPoisonSink, DynamoLedger>;
