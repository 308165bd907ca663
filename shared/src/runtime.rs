//! The Lambda entry point every function shares.

use std::convert::Infallible;

use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::{service_fn, LambdaEvent};

use crate::batch::KinesisBatch;
use crate::engine::{deadline_from_runtime_ms, BatchEngine, PoisonSink, RecordHandler};

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

/// Handles one invocation: processes the batch before the deadline and logs what happened.
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
    let outcome = engine.process(&event.payload, Some(deadline)).await;
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
