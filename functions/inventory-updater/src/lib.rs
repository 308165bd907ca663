//! inventory-updater: reserve stock when an order is placed or created, release it when the order
//! is cancelled.
//!
//! The rule is this crate: what it reads of each event type, and what it does with it. Everything
//! else (decoding, the batch engine, the DynamoDB adapter) is in `shared`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use serde::{Deserialize, Deserializer, Serialize};
use shared::adapters::DynamoInventory;
use shared::config::{CommonConfig, ConfigErrors, Env, Problems};
use shared::order::{OrderId, OrderLines, ORDER_CANCELLED, ORDER_CREATED, ORDER_PLACED};
use shared::ports::{InventoryStore, ReleaseOutcome, ReserveOutcome};
use shared::runtime::DeadLetterQueue;
use shared::{no_rule, BatchEngine, Consumer, EffectError, Event, Outcome};

/// The event types this function handles unless `EVENT_TYPES` says otherwise (all it supports).
pub const DEFAULT_EVENT_TYPES: &[&str] = &[ORDER_PLACED, ORDER_CREATED, ORDER_CANCELLED];

/// The event types this function has a rule for.
pub const SUPPORTED_EVENT_TYPES: &[&str] = DEFAULT_EVENT_TYPES;

/// What a placement or creation must carry to reserve stock: the order and its lines. Anything
/// else (the email, the total, the status) is not read.
#[derive(Debug, Deserialize, Serialize)]
pub struct OrderToReserve<'a> {
    /// The order.
    #[serde(rename = "orderId", borrow)]
    pub order_id: OrderId<'a>,
    /// What to reserve.
    #[serde(borrow)]
    pub items: OrderLines<'a>,
}

/// What a cancellation must carry: the order.
#[derive(Debug, Deserialize, Serialize)]
pub struct Cancellation<'a> {
    /// The order.
    #[serde(rename = "orderId", borrow)]
    pub order_id: OrderId<'a>,
}

/// An event this function reads, by type. It serialises as its fields, to be hashed.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum InventoryEvent<'a> {
    /// `ORDER_PLACED` or `ORDER_CREATED`: reserve the lines.
    Reserve(OrderToReserve<'a>),
    /// `ORDER_CANCELLED`: release what the order holds.
    Release(Cancellation<'a>),
}

/// The function's settings, read once at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// The settings every function shares (engine, dead-letter queue, idempotency table).
    pub common: CommonConfig,
    /// `INVENTORY_TABLE`: the DynamoDB table of stock and reservations.
    pub table: String,
}

impl Config {
    /// Reads the settings; every missing or wrong one is named in the error.
    pub fn from_env(env: &Env) -> Result<Self, ConfigErrors> {
        let function = env!("CARGO_PKG_NAME");
        Problems::collect(|problems| Self {
            common: CommonConfig::read(
                env,
                function,
                DEFAULT_EVENT_TYPES,
                SUPPORTED_EVENT_TYPES,
                problems,
            ),
            table: problems.required(env, "INVENTORY_TABLE"),
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

impl<S: InventoryStore> Consumer for InventoryRule<S> {
    type Payload<'a> = InventoryEvent<'a>;

    fn read<'a, D: Deserializer<'a>>(
        &self,
        event_type: &str,
        payload: D,
    ) -> Result<InventoryEvent<'a>, D::Error> {
        match event_type {
            ORDER_PLACED | ORDER_CREATED => {
                Deserialize::deserialize(payload).map(InventoryEvent::Reserve)
            }
            ORDER_CANCELLED => Deserialize::deserialize(payload).map(InventoryEvent::Release),
            other => Err(no_rule(other)),
        }
    }

    async fn handle(&self, event: &Event<'_, Self::Payload<'_>>) -> Result<Outcome, EffectError> {
        let event_key = event.effect_key()?;
        match &event.payload {
            InventoryEvent::Reserve(order) => {
                let lines = order.items.quantities().map_err(EffectError::bad_data)?;
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
            InventoryEvent::Release(cancel) => Ok(
                match self.store.release(&event_key, &cancel.order_id).await? {
                    ReleaseOutcome::Released => Outcome::Applied,
                    ReleaseOutcome::AlreadyReleased => Outcome::Duplicate,
                    ReleaseOutcome::NothingReserved => {
                        Outcome::NoEffect("nothing reserved for this order".into())
                    }
                    ReleaseOutcome::CancelledFirst => Outcome::NoEffect(
                        "cancelled before it was placed: recorded, so a late placement takes no stock"
                            .into(),
                    ),
                },
            ),
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
