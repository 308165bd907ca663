//! inventory-updater: reserve stock when an order is placed or created, release it when the order
//! is cancelled.
//!
//! The rule is this crate; everything else (decoding, the batch engine, the DynamoDB adapter) is in
//! `shared`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use shared::adapters::DynamoInventory;
use shared::config::{ConfigError, Env};
use shared::ports::{InventoryStore, ReleaseOutcome, ReserveOutcome};
use shared::runtime::{CommonConfig, DeadLetterQueue};
use shared::{BatchEngine, EffectError, EventType, OrderEvent, Outcome, RecordHandler};

/// The event types this function handles unless `EVENT_TYPES` says otherwise (all it supports).
pub const DEFAULT_EVENT_TYPES: &[EventType] = &[
    EventType::OrderPlaced,
    EventType::OrderCreated,
    EventType::OrderCancelled,
];

/// The event types this function has a rule for.
pub const SUPPORTED_EVENT_TYPES: &[EventType] = DEFAULT_EVENT_TYPES;

/// The function's settings, read once at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// The settings every function shares (engine, dead-letter queue, idempotency table).
    pub common: CommonConfig,
    /// `INVENTORY_TABLE`: the DynamoDB table of stock and reservations.
    pub table: String,
}

impl Config {
    /// Reads the settings; a missing one is named in the error.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let function = env!("CARGO_PKG_NAME");
        Ok(Self {
            common: CommonConfig::from_env(
                env,
                function,
                DEFAULT_EVENT_TYPES,
                SUPPORTED_EVENT_TYPES,
            )?,
            table: env.required("INVENTORY_TABLE")?,
        })
    }
}

/// The rule: reserve on placed or created, release on cancelled.
#[derive(Debug)]
pub struct InventoryRule<S> {
    store: S,
}

impl<S: InventoryStore> InventoryRule<S> {
    /// A rule over `store`.
    pub fn new(store: S) -> Self {
        Self { store }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }
}

impl<S: InventoryStore> RecordHandler for InventoryRule<S> {
    async fn handle(&self, event: &OrderEvent<'_>) -> Result<Outcome, EffectError> {
        let order = &event.order;
        let event_key = event.idempotency_key();
        match event.event_type {
            EventType::OrderPlaced | EventType::OrderCreated => {
                let lines = order
                    .quantities()
                    .map_err(|e| EffectError::permanent(e.to_string()))?;
                Ok(
                    match self
                        .store
                        .reserve(&event_key, &order.order_id, &lines)
                        .await?
                    {
                        ReserveOutcome::Reserved => Outcome::Applied,
                        ReserveOutcome::AlreadyRecorded => Outcome::Duplicate,
                        ReserveOutcome::Rejected(reason) => Outcome::Rejected(reason),
                    },
                )
            }
            EventType::OrderCancelled => Ok(
                match self.store.release(&event_key, &order.order_id).await? {
                    ReleaseOutcome::Released => Outcome::Applied,
                    ReleaseOutcome::AlreadyReleased => Outcome::Duplicate,
                    ReleaseOutcome::NothingReserved => {
                        Outcome::NoEffect("nothing reserved for this order".into())
                    }
                },
            ),
            // Config::from_env admits only the supported types, so this is unreachable in a
            // running function; a test that wires the rule by hand gets a clear poison reason.
            ref other => Err(EffectError::permanent(format!(
                "inventory-updater has no rule for {other}"
            ))),
        }
    }
}

/// The engine the function runs: the rule over DynamoDB, poison to the DLQ.
pub fn engine(
    config: Config,
    aws: &shared::aws_config::SdkConfig,
) -> BatchEngine<InventoryRule<DynamoInventory>, DeadLetterQueue> {
    let dynamodb = shared::aws_sdk_dynamodb::Client::new(aws);
    let dlq = config.common.dead_letter_queue(aws, &dynamodb);
    let common = config.common;
    let store = DynamoInventory::new(dynamodb, config.table, common.idempotency, common.function);
    BatchEngine::new(InventoryRule::new(store), dlq, common.engine)
}
