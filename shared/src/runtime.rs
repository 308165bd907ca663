//! The Lambda entry point every function shares.

use std::convert::Infallible;

use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::{service_fn, LambdaEvent};

use crate::adapters::{DynamoLedger, SqsPoisonSink};
use crate::batch::KinesisBatch;
use crate::engine::{deadline_from_runtime_ms, BatchEngine, PoisonSink, RecordHandler};
use crate::idempotency::OncePoisonSink;

/// Serves invocations with the engine until the runtime shuts down.
pub async fn run<H, P>(engine: BatchEngine<H, P>) -> Result<(), lambda_runtime::Error>
where
    H: RecordHandler,
    P: PoisonSink,
{
    let engine = &engine;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<KinesisBatch>| async move {
            Ok::<KinesisEventResponse, Infallible>(handle(engine, event).await)
        },
    ))
    .await
}

/// Handles one invocation: processes the batch before the deadline, logs what happened and
/// writes its metrics (see [`crate::metrics`]).
pub async fn handle<H, P>(
    engine: &BatchEngine<H, P>,
    event: LambdaEvent<KinesisBatch>,
) -> KinesisEventResponse
where
    H: RecordHandler,
    P: PoisonSink,
{
    let deadline = deadline_from_runtime_ms(event.context.deadline);
    let time_left_ms = deadline
        .saturating_duration_since(tokio::time::Instant::now())
        .as_millis() as u64;
    let started = std::time::Instant::now();
    let outcome = engine.process(&event.payload, Some(deadline)).await;
    let duration = started.elapsed();
    let s = &outcome.stats;
    tracing::info!(
        request_id = %event.context.request_id,
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
        default_types: &[crate::event::EventType],
        supported: &[crate::event::EventType],
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
