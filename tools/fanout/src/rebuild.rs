//! `fanout rebuild`: the read model rebuilt by replay. order-status's table follows from the
//! events alone, whatever their order (see docs/read-model.md), so reading the whole stream again
//! from its start (`TRIM_HORIZON`) into a fresh table gives the live table back, as far as the
//! stream still holds the events (its retention: 24 hours by default, up to 365 days).
//!
//! The replay is order-status as deployed: its engine, its settings (those of the environment,
//! with `STATUS_TABLE` the fresh table), and its mapping's settings and filters from
//! `template.yaml`, run by the local event source mapping's rules over every shard, invoked in
//! this process. It stops when the stream is read to its tip and everything read is done.
//! `--compare LIVE` then compares the two tables, order by order.

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use local_esm::adapters::KinesisStream;
use local_esm::mapping::{InProcess, NoDestination};
use local_esm::template::StartingPosition;
use local_esm::{run_mapping, Options, Status};
use order_status::{DynamoStatus, OrderStatus, StatusReader};
use shared::runtime::Settings;
use shared::Env;

/// How long a replay may take before it is given up.
const LIMIT: Duration = Duration::from_secs(3600);

/// Creates `table` as order-status's (`pk`, `sk`, on demand), unless it exists and is empty.
async fn fresh_table(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), String> {
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(|e| e.to_string())
    };
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| e.to_string())
    };
    let created = client
        .create_table()
        .table_name(table)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .attribute_definitions(attribute("pk")?)
        .attribute_definitions(attribute("sk")?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            let items = client
                .scan()
                .table_name(table)
                .limit(1)
                .send()
                .await
                .map_err(|e| shared::error::chain(&e))?;
            if items.count() > 0 {
                return Err(format!(
                    "the table {table} is not empty: rebuild into a fresh table"
                ));
            }
        }
        Err(e) => return Err(format!("creating {table}: {}", shared::error::chain(&e))),
    }
    // A new table takes a moment on AWS (the local server has it at once).
    for _ in 0..120 {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| shared::error::chain(&e))?;
        let active = described
            .table()
            .and_then(|t| t.table_status())
            .is_some_and(|s| s.as_str() == "ACTIVE");
        if active {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(format!("the table {table} did not become active"))
}

/// Replays the stream into `into`; with `compare`, compares the result with that table.
pub async fn rebuild(into: &str, compare: Option<&str>, template: &Path) -> Result<(), String> {
    let started = Instant::now();
    let sdk = shared::aws::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    fresh_table(&client, into).await?;

    // order-status's settings as the environment gives them, into the fresh table.
    let vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k != "STATUS_TABLE")
        .chain([("STATUS_TABLE".to_owned(), into.to_owned())])
        .collect();
    let env = Env::from_pairs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let settings = Settings::<OrderStatus>::from_env(&env).map_err(|e| e.to_string())?;
    let stream_name = env
        .optional("STREAM_NAME")
        .unwrap_or_else(|| producer::DEFAULT_STREAM.into());

    let text = std::fs::read_to_string(template)
        .map_err(|e| format!("reading {}: {e}", template.display()))?;
    let mut mapping = local_esm::template::mappings(&text, &Default::default())?
        .into_iter()
        .find(|m| m.function == "order-status")
        .ok_or_else(|| format!("{} has no mapping for order-status", template.display()))?;
    mapping.starting_position = StartingPosition::TrimHorizon;
    let engine = shared::runtime::engine(settings, &sdk);
    let function = InProcess::new(engine, mapping.timeout);
    let stream = KinesisStream::new(producer::kinesis_client(&sdk), stream_name.as_str());
    let status = Status::default();
    let options = Options {
        retry_backoff: Duration::from_millis(50),
        ..Options::default()
    };
    println!("replaying {stream_name} from its start into {into} ...");
    let replay = run_mapping(
        &mapping,
        &stream,
        &function,
        &NoDestination,
        &status,
        &options,
    );
    let statuses = [&status];
    let caught_up = local_esm::caught_up(&statuses, LIMIT);
    tokio::select! {
        stopped = replay => return Err(format!("the replay stopped: {stopped:?}")),
        done = caught_up => done?,
    }
    let totals = status.totals();
    let rebuilt = DynamoStatus::new(client.clone(), into.to_owned())
        .scan_all()
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "rebuilt {into}: {} orders from {} records read ({} delivered, {} filtered out), in {:.1} s",
        rebuilt.len(),
        totals.read,
        totals.delivered,
        totals.filtered,
        started.elapsed().as_secs_f64()
    );
    let Some(live) = compare else {
        return Ok(());
    };
    let live_orders = DynamoStatus::new(client, live.to_owned())
        .scan_all()
        .await
        .map_err(|e| e.to_string())?;
    let differ: Vec<&String> = rebuilt
        .keys()
        .chain(live_orders.keys())
        .filter(|id| rebuilt.get(*id) != live_orders.get(*id))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if differ.is_empty() {
        println!(
            "equal to {live}: {} orders, each the same",
            live_orders.len()
        );
        return Ok(());
    }
    for id in differ.iter().take(10) {
        let show = |v: Option<&order_status::OrderView>| {
            v.map_or("(none)".to_owned(), |v| {
                serde_json::to_string(v).unwrap_or_default()
            })
        };
        println!(
            "{id}:\n  rebuilt: {}\n  {live}: {}",
            show(rebuilt.get(*id)),
            show(live_orders.get(*id))
        );
    }
    Err(format!(
        "{} of {} orders differ from {live}",
        differ.len(),
        live_orders.len().max(rebuilt.len())
    ))
}
