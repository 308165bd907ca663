//! `fanout rebuild` against the AWS-API server: the saga runs live over a realistic mix (its
//! placements keyed by customer, so they and inventory's decisions, keyed by order, ride
//! different keys and arrive in other orders), then the read model is rebuilt from the stream's
//! start into a fresh table, and is the live table again, order by order.

use std::process::Command;
use std::time::Duration;

use integration_tests::pipeline::Pipeline;
use integration_tests::{local_settings, root, LocalAws};
use order_status::{DynamoStatus, StatusReader};
use producer::generate::Mix;
use producer::ports::Kinesis;
use producer::publisher::{Config, Publisher, Record};

#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_from_the_stream_start_equals_the_live_table() {
    let aws = LocalAws::start();
    let sdk = LocalAws::sdk_config(&aws.endpoint()).await;
    // The live pipeline, over a mix of 150 records: placements, creations, cancellations,
    // payments captured and failed, duplicates, poison, on the stock the bootstrap seeds (so some
    // orders are rejected).
    let pipeline = Pipeline::start(&aws.endpoint(), &[]).await;
    let mix = Mix {
        records: 150,
        keys: 12,
        skus: ["sku-apple", "sku-pear", "sku-plum", "sku-gold"]
            .map(str::to_owned)
            .to_vec(),
        seed: 7,
        ..Mix::default()
    };
    let records: Vec<Record> = mix
        .generate()
        .into_iter()
        .map(|g| Record {
            partition_key: g.partition_key,
            data: g.data,
        })
        .collect();
    let stream = Kinesis::new(producer::kinesis_client(&sdk), producer::DEFAULT_STREAM);
    let report = Publisher::new(stream, Config::default())
        .publish(&records)
        .await;
    assert_eq!(report.summary.failed, 0, "{}", report.summary);
    pipeline.settle(Duration::from_secs(180)).await;
    drop(pipeline);

    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let live = DynamoStatus::new(client.clone(), "order-status".into())
        .scan_all()
        .await
        .unwrap();
    let statuses: std::collections::BTreeSet<_> =
        live.values().map(|v| v.status.as_str()).collect();
    assert!(live.len() > 40, "{} orders", live.len());
    assert!(statuses.len() >= 4, "a mix of outcomes, not {statuses:?}");

    let out = Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args([
            "rebuild",
            "--into",
            "order-status-rebuilt",
            "--compare",
            "order-status",
        ])
        .current_dir(root())
        .env_clear()
        .envs(local_settings())
        .env("AWS_ENDPOINT_URL", aws.endpoint())
        .env("HOME", std::env::temp_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains(&format!("equal to order-status: {} orders", live.len())),
        "{stdout}"
    );
    let rebuilt = DynamoStatus::new(client, "order-status-rebuilt".into())
        .scan_all()
        .await
        .unwrap();
    assert_eq!(rebuilt, live);

    // A second rebuild into the same table is refused: it is no longer fresh.
    let again = Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["rebuild", "--into", "order-status-rebuilt"])
        .current_dir(root())
        .env_clear()
        .envs(local_settings())
        .env("AWS_ENDPOINT_URL", aws.endpoint())
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not empty"));
}
