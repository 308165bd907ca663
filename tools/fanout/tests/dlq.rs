//! `fanout dlq` and `fanout redrive` against the local AWS-API server, as an operator runs them:
//! both kinds of message in the dead-letter queue, the failure bucket, the choices of a redrive,
//! and a listing that never hides a message.

use std::process::{Command, Output, Stdio};

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use integration_tests::{create_stream, local_settings, read_stream, LocalAws};
use serde_json::{json, Value};

const SHARD: &str = "shardId-000000000000";

/// A server, a fresh stream of one shard, and the clients to look at them.
struct Stack {
    aws: LocalAws,
    stream: String,
    stream_arn: String,
    dlq_url: String,
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
    kinesis: aws_sdk_kinesis::Client,
    dynamodb: aws_sdk_dynamodb::Client,
}

impl Stack {
    async fn start() -> Self {
        let aws = LocalAws::start();
        let sdk = LocalAws::sdk_config(&aws.endpoint()).await;
        let stream = create_stream(&sdk, "dlq-test", 1).await;
        let kinesis = aws_sdk_kinesis::Client::new(&sdk);
        let stream_arn = kinesis
            .describe_stream_summary()
            .stream_name(&stream)
            .send()
            .await
            .unwrap()
            .stream_description_summary()
            .unwrap()
            .stream_arn()
            .to_owned();
        let dlq_url = setting("DLQ_URL");
        Self {
            stream,
            stream_arn,
            dlq_url,
            sqs: aws_sdk_sqs::Client::new(&sdk),
            s3: shared::adapters::dlq::s3_client(&sdk),
            kinesis,
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            aws,
        }
    }

    /// `fanout` with the local stack's settings, the records going back on the test's stream.
    fn fanout(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fanout"));
        command
            .args(args)
            .env_clear()
            .envs(local_settings())
            .env("AWS_ENDPOINT_URL", self.aws.endpoint())
            .env("STREAM_NAME", &self.stream)
            .env("HOME", std::env::temp_dir());
        command
    }

    /// `fanout`'s standard output, which must have ended well.
    fn run(&self, args: &[&str]) -> String {
        let out = self.fanout(args);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    async fn send(&self, body: &Value) {
        self.sqs
            .send_message()
            .queue_url(&self.dlq_url)
            .message_body(body.to_string())
            .send()
            .await
            .unwrap();
    }

    /// The queue's bodies, left visible.
    async fn queue(&self) -> Vec<Value> {
        let (mut bodies, mut receipts) = (Vec::new(), Vec::new());
        loop {
            let got = self
                .sqs
                .receive_message()
                .queue_url(&self.dlq_url)
                .max_number_of_messages(10)
                .visibility_timeout(30)
                .send()
                .await
                .unwrap();
            if got.messages().is_empty() {
                break;
            }
            for m in got.messages() {
                bodies.push(serde_json::from_str(m.body().unwrap()).unwrap());
                receipts.push(m.receipt_handle().unwrap().to_owned());
            }
        }
        for r in receipts {
            self.sqs
                .change_message_visibility()
                .queue_url(&self.dlq_url)
                .receipt_handle(r)
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
        }
        bodies
    }

    async fn put(&self, data: &[u8], key: &str) -> String {
        self.kinesis
            .put_record()
            .stream_name(&self.stream)
            .partition_key(key)
            .data(aws_smithy_types::Blob::new(data))
            .send()
            .await
            .unwrap()
            .sequence_number()
            .to_owned()
    }

    /// The test stream's records, (partition key, data), after `after` (all, without it).
    async fn records_after(&self, after: Option<&str>) -> Vec<(String, Vec<u8>)> {
        let sdk = LocalAws::sdk_config(&self.aws.endpoint()).await;
        let all = read_stream(&sdk, &self.stream).await.remove(SHARD).unwrap();
        let from = after.map_or(0, |seq| {
            all.iter().position(|(_, s, _)| s == seq).unwrap() + 1
        });
        all[from..]
            .iter()
            .map(|(k, _, d)| (k.clone(), d.clone()))
            .collect()
    }

    /// A poison record in the queue, as a function captures it; its data.
    async fn poison(&self, seq: u64, reason: &str, cause: Option<&str>) -> Vec<u8> {
        let data = event(&format!("evt-{seq}"));
        let mut body = json!({
            "function": "email-notifier", "eventSourceArn": self.stream_arn, "shardId": SHARD,
            "partitionKey": format!("order-{seq}"), "sequenceNumber": seq.to_string(),
            "subSequenceNumber": null, "data": b64(&data), "reason": reason, "capturedAtMs": 1
        });
        if let Some(cause) = cause {
            body["cause"] = cause.into();
        }
        self.send(&body).await;
        data
    }

    fn on_failure(
        &self,
        shard: &str,
        start: &str,
        end: &str,
        function: &str,
        condition: &str,
    ) -> Value {
        json!({
            "requestContext": {"requestId": "r", "condition": condition, "approximateInvokeCount": 3,
                               "functionArn": format!("arn:aws:lambda:us-east-1:123456789012:function:{function}")},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0", "timestamp": "2019-11-14T00:38:06.021Z",
            "KinesisBatchInfo": {"shardId": shard, "startSequenceNumber": start, "endSequenceNumber": end,
                                 "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
                                 "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
                                 "batchSize": 500, "streamArn": self.stream_arn}
        })
    }

    async fn objects(&self, bucket: &str, prefix: &str) -> usize {
        self.s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .send()
            .await
            .unwrap()
            .contents()
            .len()
    }
}

fn setting(name: &str) -> String {
    local_settings()
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap()
}

/// An event's data, as producers write it.
fn event(id: &str) -> Vec<u8> {
    json!({"eventId": id, "eventType": "ORDER_PLACED", "payload": {"orderId": id}})
        .to_string()
        .into_bytes()
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The listing shows both kinds of message, whole, and leaves every one of them visible.
#[tokio::test(flavor = "multi_thread")]
async fn list_shows_both_kinds() {
    let stack = Stack::start().await;
    let mut poison = json!({
        "function": "email-notifier", "shardId": SHARD, "partitionKey": "order-o-9",
        "sequenceNumber": "4960000000009", "subSequenceNumber": 2, "data": b64(&event("evt-9")),
        "reason": "missing field orderId", "cause": "data", "capturedAtMs": 1
    });
    stack.send(&poison).await;
    poison["sequenceNumber"] = "4960000000010".into();
    poison["cause"] = "effect".into();
    poison["reason"] = "SES refused the address".into();
    stack.send(&poison).await;
    stack
        .send(&stack.on_failure(
            "shardId-000000000001",
            "49600000000000000001",
            "49600000000000000042",
            "inventory-updater",
            "RetryAttemptsExhausted",
        ))
        .await;
    stack.send(&json!("just text")).await;

    let out = stack.run(&["dlq"]);
    assert!(
        out.contains(&format!(
            "4 messages in queue order-events-dlq on the local stack ({})",
            stack.aws.endpoint()
        )),
        "{out}"
    );
    assert!(
        out.contains(": 2 poison records, 1 OnFailure batch, 1 unrecognised\n"),
        "{out}"
    );
    assert!(out.contains("- poison record from email-notifier: shardId-000000000000 seq 4960000000009/2 key 'order-o-9', 104 base64 chars\n    missing field orderId\n    (redrive keeps it unless --all: its data is what is wrong, so it would fail again)"), "{out}");
    assert!(out.contains("    SES refused the address\n- "), "{out}");
    assert!(out.contains(&format!("- OnFailure batch from inventory-updater: RetryAttemptsExhausted, stream {} shardId-000000000001 seq 49600000000000000001..49600000000000000042, batchSize 500", stack.stream)), "{out}");
    assert!(
        out.contains("- unrecognised message: \"just text\""),
        "{out}"
    );
    assert!(
        out.contains("0 failure records in s3://order-events-failures/aws/lambda/"),
        "{out}"
    );
    assert_eq!(stack.queue().await.len(), 4, "listing hides nothing");
}

/// A listing whose reader goes away at once (`fanout dlq | head -1`) has given every message back
/// already: the next look sees them all.
#[tokio::test(flavor = "multi_thread")]
async fn a_listing_read_in_part_hides_nothing() {
    let stack = Stack::start().await;
    for seq in 0..25 {
        stack
            .poison(seq, "SES refused the address", Some("effect"))
            .await;
    }
    let mut listing = stack
        .command(&["dlq"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader takes one line and closes its end, as `head -1` does.
    let mut stdout = listing.stdout.take().unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let status = listing.wait().unwrap();
    assert!(
        status.success(),
        "a closed pipe is not an error: {status:?}"
    );
    assert_eq!(
        stack.queue().await.len(),
        25,
        "every message visible at once"
    );
    let out = stack.run(&["dlq"]);
    assert!(out.starts_with("25 messages in queue"), "{out}");
}

/// A poison record goes back on the stream with its key, its UNKNOWN entry forgotten first (under
/// its function's scope, which Lambda's name for the function may not be), and its message goes.
#[tokio::test(flavor = "multi_thread")]
async fn a_poison_record_is_put_back_and_deleted() {
    let stack = Stack::start().await;
    let data = event("evt-poison-1");
    stack
        .send(&json!({
            "function": "kinesis-fanout-InventoryUpdaterFunction-AB12", "scope": "inventory-updater",
            "eventSourceArn": stack.stream_arn, "shardId": SHARD, "partitionKey": "order-o-1",
            "sequenceNumber": "4960000000001", "data": b64(&data),
            "reason": "outcome unknown, not repeated to avoid a duplicate", "cause": "effect",
            "capturedAtMs": 1
        }))
        .await;
    let table = setting("IDEMPOTENCY_TABLE");
    let key = AttributeValue::S("inventory-updater#evt-poison-1".into());
    stack
        .dynamodb
        .put_item()
        .table_name(&table)
        .item("pk", key.clone())
        .item("status", AttributeValue::S("UNKNOWN".into()))
        .send()
        .await
        .unwrap();

    let out = stack.run(&["redrive"]);

    assert!(out.contains("redrove poison record shardId-000000000000 seq 4960000000001 (1 message) into dlq-test"), "{out}");
    assert_eq!(
        stack.records_after(None).await,
        [("order-o-1".to_owned(), data)]
    );
    assert!(stack.queue().await.is_empty(), "{out}");
    let entry = stack
        .dynamodb
        .get_item()
        .table_name(&table)
        .key("pk", key)
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    assert!(entry.item().is_none(), "the UNKNOWN entry is forgotten");
}

/// A redrive chooses: a dry run changes nothing; what would fail again (its cause says its data is
/// what is wrong) is kept unless --all; --only-reason and --sequence pick. A record whose cause was
/// never recorded is judged by nothing in its reason's words.
#[tokio::test(flavor = "multi_thread")]
async fn a_redrive_chooses_and_keeps_what_would_fail_again() {
    let stack = Stack::start().await;
    stack
        .poison(
            101,
            "permanent error: SES refused the address",
            Some("effect"),
        )
        .await;
    stack
        .poison(
            102,
            "the ORDER_PLACED payload violates its schema: items is empty",
            Some("data"),
        )
        .await;
    stack
        .poison(
            103,
            "outcome unknown, not repeated to avoid a duplicate: timeout",
            Some("effect"),
        )
        .await;
    stack
        .poison(104, "not an event envelope: expected value", None)
        .await;

    let dry = stack.run(&["redrive", "--dry-run"]);
    assert!(
        stack.records_after(None).await.is_empty(),
        "a dry run puts nothing back"
    );
    assert_eq!(stack.queue().await.len(), 4, "and deletes nothing");
    for seq in [101, 103, 104] {
        assert!(
            dry.contains(&format!(
                "would redrive poison record shardId-000000000000 seq {seq} into dlq-test"
            )),
            "{dry}"
        );
    }
    assert!(
        dry.contains("kept poison record shardId-000000000000 seq 102: its data is what is wrong"),
        "{dry}"
    );
    assert!(dry.contains("dry run: 3 of 4 in the queue would be redriven, 1 kept (they would fail again); nothing was changed"), "{dry}");

    let out = stack.run(&["redrive", "--only-reason", "ses"]);
    let keys =
        |records: Vec<(String, Vec<u8>)>| records.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(stack.records_after(None).await),
        ["order-101"],
        "{out}"
    );
    let out = stack.run(&["redrive", "--sequence", "102", "--all"]);
    assert_eq!(
        keys(stack.records_after(None).await),
        ["order-101", "order-102"],
        "{out}"
    );
    let mut left: Vec<String> = stack
        .queue()
        .await
        .iter()
        .map(|b| b["sequenceNumber"].as_str().unwrap().to_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["103", "104"]);
}

/// A large poison record behind a pointer: the whole record is read from the bucket, put back,
/// and the object goes with its message.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_poison_record_behind_a_pointer_is_redriven() {
    let stack = Stack::start().await;
    let bucket = setting("FAILURE_BUCKET");
    let key = format!("poison/f/{SHARD}/77.json");
    let data = json!({"eventId": "big-1", "note": "x".repeat(300_000)})
        .to_string()
        .into_bytes();
    let whole = json!({"function": "f", "shardId": SHARD, "partitionKey": "big", "sequenceNumber": "77",
                       "data": b64(&data), "reason": "schema", "cause": "effect", "capturedAtMs": 1});
    stack
        .s3
        .put_object()
        .bucket(&bucket)
        .key(&key)
        .body(whole.to_string().into_bytes().into())
        .send()
        .await
        .unwrap();
    let mut pointer = whole.clone();
    pointer.as_object_mut().unwrap().remove("data");
    pointer["s3Pointer"] = json!({"bucket": bucket, "key": key, "size": whole.to_string().len()});
    stack.send(&pointer).await;

    let listed = stack.run(&["dlq"]);
    assert!(
        listed.contains(&format!("in s3://{bucket}/{key}")),
        "{listed}"
    );
    let out = stack.run(&["redrive"]);
    assert!(out.contains("redrove poison record"), "{out}");
    assert_eq!(stack.records_after(None).await, [("big".to_owned(), data)]);
    assert!(stack.queue().await.is_empty());
    assert_eq!(
        stack.objects(&bucket, "poison/").await,
        0,
        "the object goes too"
    );
}

/// An OnFailure batch (metadata only) is read back from its shard and put back exactly, once for
/// the two functions that gave up on it; their messages go; an UNKNOWN entry stays (that is for
/// poison records only). A second redrive has nothing left to do.
#[tokio::test(flavor = "multi_thread")]
async fn an_on_failure_batch_replays_exactly_its_range_once() {
    let stack = Stack::start().await;
    for i in 0..2 {
        stack
            .put(&event(&format!("evt-before-{i}")), &format!("key-b{i}"))
            .await;
    }
    let batch: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| (format!("key-{}", i % 2), event(&format!("evt-in-{i}"))))
        .collect();
    let mut seqs = Vec::new();
    for (key, data) in &batch {
        seqs.push(stack.put(data, key).await);
    }
    let mut last = String::new();
    for i in 0..2 {
        last = stack
            .put(&event(&format!("evt-after-{i}")), &format!("key-a{i}"))
            .await;
    }
    let (first, end) = (seqs[0].as_str(), seqs[3].as_str());
    stack
        .send(&stack.on_failure(
            SHARD,
            first,
            end,
            "inventory-updater",
            "RetryAttemptsExhausted",
        ))
        .await;
    stack
        .send(&stack.on_failure(SHARD, first, end, "email-notifier", "RecordAgeExceeded"))
        .await;
    let table = setting("IDEMPOTENCY_TABLE");
    stack
        .dynamodb
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("email-notifier#evt-in-0".into()))
        .item("status", AttributeValue::S("UNKNOWN".into()))
        .send()
        .await
        .unwrap();

    let out = stack.run(&["redrive"]);

    assert_eq!(stack.records_after(Some(&last)).await, batch, "{out}");
    assert!(stack.queue().await.is_empty(), "{out}");
    assert!(out.contains("4 records put back into dlq-test"), "{out}");
    assert!(stack
        .aws
        .ledger()
        .await
        .contains_key("email-notifier#evt-in-0"));
    stack.run(&["redrive"]);
    assert_eq!(
        stack.records_after(Some(&last)).await.len(),
        batch.len(),
        "nothing twice"
    );
}

/// An OnFailure batch whose records the shard no longer holds (an unknown shard, past the end,
/// only part of it) is kept and said so; nothing goes back.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_on_failure_batch_is_kept_and_reported() {
    let stack = Stack::start().await;
    let mut seqs = Vec::new();
    for i in 0..3 {
        seqs.push(stack.put(&event(&format!("evt-{i}")), "k").await);
    }
    let last: u128 = seqs[2].parse().unwrap();
    let gone = [
        (
            "shardId-000000000099".to_owned(),
            seqs[0].clone(),
            seqs[2].clone(),
        ),
        (
            SHARD.to_owned(),
            (last + 100).to_string(),
            (last + 105).to_string(),
        ),
        (SHARD.to_owned(), seqs[1].clone(), (last + 5).to_string()),
    ];
    for (shard, start, end) in &gone {
        stack
            .send(&stack.on_failure(shard, start, end, "f", "RetryAttemptsExhausted"))
            .await;
    }

    let out = stack.run(&["redrive"]);

    assert_eq!(
        stack.records_after(Some(&seqs[2])).await,
        [],
        "nothing was put back"
    );
    assert_eq!(stack.queue().await.len(), 3);
    assert_eq!(out.matches("kept OnFailure batch").count(), 3, "{out}");
    assert!(out.contains("no longer in the stream"), "{out}");
    assert!(out.contains("shardId-000000000099"), "{out}");
    assert!(out.contains("0 redriven"), "{out}");
}

/// The failure bucket's records (the payload as a string, ours; as an object, another writer's)
/// go back in order with their keys, once for two functions' records of one batch; the objects
/// are deleted.
#[tokio::test(flavor = "multi_thread")]
async fn the_failure_bucket_is_redriven_in_order_and_emptied() {
    let stack = Stack::start().await;
    let bucket = setting("FAILURE_BUCKET");
    let kept = [
        ("k1", event("e1")),
        ("k2", event("e2")),
        ("k1", event("e3")),
    ];
    let records: Vec<Value> = kept
        .iter()
        .enumerate()
        .map(|(i, (k, d))| {
            json!({"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": k, "sequenceNumber": (10 + i).to_string(),
                               "data": b64(d), "approximateArrivalTimestamp": 1.0},
                   "eventSource": "aws:kinesis", "eventID": format!("{SHARD}:{}", 10 + i)})
        })
        .collect();
    let mut as_string = stack.on_failure(
        SHARD,
        "10",
        "12",
        "inventory-updater",
        "RetryAttemptsExhausted",
    );
    as_string["payload"] = json!({"Records": records}).to_string().into();
    let mut as_object = stack.on_failure(
        SHARD,
        "20",
        "20",
        "inventory-updater",
        "RetryAttemptsExhausted",
    );
    as_object["payload"] = json!({"Records": [{"kinesis": {"partitionKey": "k3", "sequenceNumber": "20", "data": b64(&event("e4"))}}]});
    let mut twin = as_string.clone();
    twin["requestContext"]["functionArn"] =
        "arn:aws:lambda:us-east-1:123456789012:function:g".into();
    for (i, body) in [as_string, as_object, twin].iter().enumerate() {
        stack
            .s3
            .put_object()
            .bucket(&bucket)
            .key(format!(
                "aws/lambda/uuid-1/{SHARD}/2026/11/30/2026-11-30T05.00.0{i}-x"
            ))
            .body(body.to_string().into_bytes().into())
            .send()
            .await
            .unwrap();
    }

    let listed = stack.run(&["dlq", "--from", "bucket"]);
    assert!(listed.contains("3 failure records"), "{listed}");
    assert!(listed.contains("3 records kept"), "{listed}");
    let out = stack.run(&["redrive"]);
    assert!(out.contains("3 objects redriven from s3://"), "{out}");
    let mut expected: Vec<(String, Vec<u8>)> = kept
        .iter()
        .map(|(k, d)| ((*k).to_owned(), d.clone()))
        .collect();
    expected.push(("k3".into(), event("e4")));
    assert_eq!(
        stack.records_after(None).await,
        expected,
        "in order, with their keys, once"
    );
    assert_eq!(stack.objects(&bucket, "aws/lambda/").await, 0);
}

/// With nothing answering at the endpoint, the tool says so in one line, and how to start it.
#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_that_does_not_answer() {
    let out = Command::new(env!("CARGO_BIN_EXE_fanout"))
        .arg("dlq")
        .env_clear()
        .envs(local_settings())
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("HOME", std::env::temp_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("the local stack is down: start it with 'make up'"),
        "{err}"
    );
}
