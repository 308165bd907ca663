//! The producer against the AWS-API server: per-key order kept while `PutRecords` fails some
//! entries, KPL aggregates routed to the shard of each user record's key, and the aggregation
//! format checked both ways against an independent implementation (`aws_kinesis_agg`).

use std::collections::HashMap;

use base64::Engine as _;
use integration_tests::proxy::{Fault, FaultProxy};
use integration_tests::{create_stream, python, read_stream, LocalAws, StreamContents};
use producer::aggregate::{pack, ShardMap};
use producer::ports::{Entry, Kinesis, Shard, StreamWriter};
use producer::publisher::{Config, Publisher, Record, Retry};

fn records(n: usize, keys: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            partition_key: format!("order-{:03}", i % keys),
            data: format!("{{\"key\":{},\"n\":{i}}}", i % keys).into_bytes(),
        })
        .collect()
}

/// The data of `key`'s records, in input order.
fn of_key(input: &[Record], key: &str) -> Vec<Vec<u8>> {
    input
        .iter()
        .filter(|r| r.partition_key == key)
        .map(|r| r.data.clone())
        .collect()
}

/// Per partition key, the user records' data in the order they landed (aggregates opened).
fn per_key(stream: &StreamContents) -> HashMap<String, Vec<Vec<u8>>> {
    let mut out: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for records in stream.values() {
        for (key, _, data) in records {
            match shared::kpl::deaggregate(data) {
                Some(users) => {
                    for u in users {
                        out.entry(u.partition_key).or_default().push(u.data);
                    }
                }
                None => out.entry(key.clone()).or_default().push(data.clone()),
            }
        }
    }
    out
}

/// A third of `PutRecords` entries fail with ProvisionedThroughputExceededException; the
/// publisher retries only those, and every key's records land once each, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_under_partial_failures() {
    let aws = LocalAws::start();
    let sdk = LocalAws::sdk_config(&aws.endpoint()).await;
    let stream = create_stream(&sdk, "ordered", 2).await;
    let proxy = FaultProxy::start(aws.addr(), |r| {
        (r.operation == "PutRecords").then_some(Fault::FailEntries(33))
    })
    .await;
    let through_proxy = LocalAws::sdk_config(&proxy.endpoint()).await;
    let publisher = Publisher::new(
        Kinesis::new(aws_sdk_kinesis::Client::new(&through_proxy), &stream),
        Config {
            retry: Retry {
                max_attempts: 30,
                base: std::time::Duration::from_millis(5),
                cap: std::time::Duration::from_millis(50),
            },
            in_flight: 4,
            ..Config::default()
        },
    );
    let input = records(1200, 40);
    let report = publisher.publish(&input).await;
    let s = &report.summary;
    assert!(report.outcomes.iter().all(Result::is_ok), "{s}");
    assert!(s.retried > 200 && s.throttles == s.retried, "{s}");

    let landed = read_stream(&sdk, &stream).await;
    let per_key = per_key(&landed);
    for k in 0..40 {
        let key = format!("order-{k:03}");
        assert_eq!(
            per_key[&key],
            of_key(&input, &key),
            "{key}: lost, duplicated or out of order"
        );
    }
    // Each outcome names where its record is.
    for (r, o) in input.iter().zip(&report.outcomes).take(50) {
        let placed = o.as_ref().unwrap();
        let shard = &landed[&placed.shard_id];
        assert!(shard.iter().any(|(k, seq, d)| k == &r.partition_key
            && seq == &placed.sequence_number
            && d == &r.data));
    }
    println!("partial failures: {s}");
}

/// Aggregated, every user record lands in the shard its own key hashes to (the server routes
/// each aggregate by its ExplicitHashKey), in order per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_land_in_each_keys_shard() {
    let aws = LocalAws::start();
    let sdk = LocalAws::sdk_config(&aws.endpoint()).await;
    let stream = create_stream(&sdk, "aggregated", 4).await;
    let kinesis = Kinesis::new(aws_sdk_kinesis::Client::new(&sdk), &stream);
    let shards = kinesis.open_shards().await.unwrap();
    let map = ShardMap::new(shards);
    let publisher = Publisher::new(
        kinesis,
        Config {
            aggregate: Some(8 * 1024),
            ..Config::default()
        },
    );
    let input = records(2000, 97);
    let report = publisher.publish(&input).await;
    assert!(
        report.outcomes.iter().all(Result::is_ok),
        "{}",
        report.summary
    );
    assert!(report.summary.aggregates >= 4, "{}", report.summary);
    assert!(report.summary.kinesis_records < 100, "{}", report.summary);
    let landed = read_stream(&sdk, &stream).await;
    for (shard_id, records) in &landed {
        let index = map
            .shards()
            .iter()
            .position(|s| &s.shard_id == shard_id)
            .unwrap();
        for (_, _, data) in records {
            for u in shared::kpl::deaggregate(data).unwrap_or_default() {
                assert_eq!(
                    map.shard_for(&u.partition_key),
                    index,
                    "{} in {shard_id}",
                    u.partition_key
                );
            }
        }
    }
    let per_key = per_key(&landed);
    for k in 0..97 {
        let key = format!("order-{k:03}");
        assert_eq!(per_key[&key], of_key(&input, &key), "{key}");
    }
}

const DEAGGREGATE: &str = r#"
import base64, json, sys
from aws_kinesis_agg.deaggregator import deaggregate_records
data = sys.stdin.read().strip()
records = [{"kinesis": {"kinesisSchemaVersion": "1.0", "sequenceNumber": "1", "partitionKey": "p",
            "approximateArrivalTimestamp": 0, "data": data}}]
out = [[r["kinesis"]["partitionKey"], r["kinesis"]["subSequenceNumber"],
        base64.b64decode(r["kinesis"]["data"]).decode()] for r in deaggregate_records(records)]
print(json.dumps(out))
"#;

const AGGREGATE: &str = r#"
import base64, json, sys
from aws_kinesis_agg.aggregator import RecordAggregator
agg = RecordAggregator()
for key, data in json.load(sys.stdin):
    assert agg.add_user_record(key, data.encode()) is None, "one aggregate"
pk, ehk, data = agg.clear_and_get().get_contents()
print(base64.b64encode(data).decode())
"#;

fn user_records() -> Vec<(String, String)> {
    (0..60)
        .map(|i| {
            (
                format!("key-{}", i % 7),
                format!("{{\"n\":{i},\"text\":\"é ✓ {i}\"}}"),
            )
        })
        .collect()
}

/// Ours, read by theirs: `aws_kinesis_agg` deaggregates an aggregate our packer made.
#[test]
fn aws_kinesis_agg_reads_our_aggregates() {
    let users = user_records();
    let entries: Vec<Entry> = users
        .iter()
        .map(|(k, d)| Entry {
            partition_key: k.clone(),
            explicit_hash_key: None,
            data: d.as_bytes().to_vec(),
        })
        .collect();
    let indexed: Vec<(usize, &Entry)> = entries.iter().enumerate().collect();
    let one_shard = ShardMap::new(vec![Shard {
        shard_id: "shardId-000000000000".into(),
        starting_hash_key: 0,
        ending_hash_key: u128::MAX,
    }]);
    let packed = pack(&indexed, &one_shard, 1024 * 1024);
    assert_eq!(packed.len(), 1);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&packed[0].entry.data);
    let theirs: Vec<(String, u64, String)> =
        serde_json::from_str(&python(DEAGGREGATE, &b64)).unwrap();
    let want: Vec<(String, u64, String)> = users
        .iter()
        .enumerate()
        .map(|(i, (k, d))| (k.clone(), i as u64, d.clone()))
        .collect();
    assert_eq!(theirs, want);
}

/// Theirs, read by ours: `shared::kpl` deaggregates an aggregate `aws_kinesis_agg` made.
#[test]
fn we_read_aws_kinesis_agg_aggregates() {
    let users = user_records();
    let input = serde_json::to_string(&users).unwrap();
    let b64 = python(AGGREGATE, &input);
    let data = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .unwrap();
    let ours = shared::kpl::deaggregate(&data).expect("an aggregate");
    let got: Vec<(String, String)> = ours
        .into_iter()
        .map(|u| (u.partition_key, String::from_utf8(u.data).unwrap()))
        .collect();
    assert_eq!(got, users);
}
