//! The local event source mapping against the AWS-API server: the real stream (the producer
//! writes it, the mapping polls it with the SDK), functions built to fail in one way each, and
//! the failure records read back from the server's SQS queue and S3 bucket. And the Invoke API
//! adapter against both shapes of a function error (AWS's and `cargo lambda watch`'s).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use base64::Engine as _;
use integration_tests::{create_stream, LocalAws};
use local_esm::adapters::{
    lambda_client, KinesisStream, LambdaFunction, S3Destination, SqsDestination,
};
use local_esm::mapping::{FailureSink, Function, InvokeError};
use local_esm::template::Mapping;
use local_esm::{run_mapping, Options, Status};
use producer::ports::Kinesis;
use producer::publisher::{Config, Publisher, Record};
use serde_json::{json, Value};

/// One delivered record: key, sequence number, data.
type Delivered = (String, String, String);

/// What the function answers for a batch: the sequence numbers to report, or a function error.
type Rule = Box<dyn Fn(&[Delivered], usize) -> Result<Vec<String>, String> + Send + Sync>;

/// A function that records every batch and answers by its rule (given the batch and how many
/// invocations came before).
struct Built {
    rule: Rule,
    seen: Mutex<Vec<Vec<Delivered>>>,
    delay: Duration,
    running: AtomicUsize,
    most_at_once: AtomicUsize,
}

impl Built {
    fn new(
        rule: impl Fn(&[Delivered], usize) -> Result<Vec<String>, String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            rule: Box::new(rule),
            seen: Mutex::default(),
            delay: Duration::ZERO,
            running: AtomicUsize::new(0),
            most_at_once: AtomicUsize::new(0),
        }
    }

    fn seen(&self) -> Vec<Vec<Delivered>> {
        self.seen.lock().unwrap().clone()
    }
}

impl Function for Built {
    async fn invoke(&self, event: Vec<u8>) -> Result<Vec<u8>, InvokeError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        let v: Value = serde_json::from_slice(&event).unwrap();
        let batch: Vec<Delivered> = v["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert_eq!(r["eventID"].as_str().unwrap().split(':').count(), 2);
                let k = &r["kinesis"];
                let data = base64::engine::general_purpose::STANDARD
                    .decode(k["data"].as_str().unwrap())
                    .unwrap();
                (
                    k["partitionKey"].as_str().unwrap().to_owned(),
                    k["sequenceNumber"].as_str().unwrap().to_owned(),
                    String::from_utf8(data).unwrap(),
                )
            })
            .collect();
        let before = {
            let mut seen = self.seen.lock().unwrap();
            seen.push(batch.clone());
            seen.len() - 1
        };
        tokio::time::sleep(self.delay).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        match (self.rule)(&batch, before) {
            Ok(ids) => {
                let failures: Vec<Value> =
                    ids.iter().map(|id| json!({"itemIdentifier": id})).collect();
                Ok(json!({"batchItemFailures": failures})
                    .to_string()
                    .into_bytes())
            }
            Err(e) => Err(InvokeError::Function(e)),
        }
    }
}

fn mapping(batch_size: usize) -> Mapping {
    Mapping {
        batch_size,
        bisect_on_function_error: true,
        report_batch_item_failures: true,
        timeout: Duration::from_secs(10),
        ..Mapping::defaults("built-to-fail")
    }
}

/// Puts `data` (key, data) on a new stream of one shard, through the producer.
async fn stream_of(sdk: &SdkConfig, name: &str, data: &[(String, String)]) {
    create_stream(sdk, name, 1).await;
    let records: Vec<Record> = data
        .iter()
        .map(|(k, d)| Record {
            partition_key: k.clone(),
            data: d.clone().into_bytes(),
        })
        .collect();
    let report = Publisher::new(
        Kinesis::new(aws_sdk_kinesis::Client::new(sdk), name),
        Config::default(),
    )
    .publish(&records)
    .await;
    assert_eq!(report.summary.failed, 0, "{}", report.summary);
}

/// Runs the mapping until everything put has been delivered (or `limit` passes).
async fn run<F: Function, S: FailureSink>(
    sdk: &SdkConfig,
    stream: &str,
    mapping: &Mapping,
    function: &F,
    sink: &S,
    limit: Duration,
) -> Status {
    let since = shared::time::now_ms();
    let status = Status::default();
    let kinesis = KinesisStream::new(aws_sdk_kinesis::Client::new(sdk), stream);
    let options = Options {
        retry_backoff: Duration::from_millis(10),
        ..Options::default()
    };
    let started = Instant::now();
    let wait = async {
        while status.settled_at_ms().is_none_or(|at| at < since) {
            assert!(
                started.elapsed() < limit,
                "not delivered in {limit:?}: {:?}",
                status.totals()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        r = run_mapping(mapping, &kinesis, function, sink, &status, &options) => panic!("the mapping stopped: {r:?}"),
        () = wait => {}
    }
    status
}

fn data(n: usize, keys: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("k{}", i % keys), format!("record {i}")))
        .collect()
}

async fn queue(sdk: &SdkConfig, name: &str) -> (aws_sdk_sqs::Client, String) {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    (sqs, url)
}

async fn messages(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<Value> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    out.messages()
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect()
}

/// A partial response checkpoints at the reported record: the next invocation starts there,
/// and holds the rest of the batch again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_at_the_reported_record() {
    let aws = LocalAws::start();
    let sdk = LocalAws::sdk_config(&aws.endpoint()).await;
    stream_of(&sdk, "checkpoint", &data(25, 5)).await;
    let f = Built::new(|batch, before| {
        Ok(if before == 0 {
            vec![batch[3].1.clone()]
        } else {
            vec![]
        })
    });
    let status = run(
        &sdk,
        "checkpoint",
        &mapping(10),
        &f,
        &local_esm::mapping::NoDestination,
        Duration::from_secs(60),
    )
    .await;
    let seen = f.seen();
    assert_eq!(seen[0].len(), 10);
    assert_eq!(
        seen[1],
        seen[0][3..].to_vec(),
        "redelivered from the checkpoint"
    );
    assert_eq!(seen[2][0].2, "record 10");
    let t = status.totals();
    assert_eq!(
        (
            t.read,
            t.done,
            t.partial_failures,
            t.redelivered,
            t.discarded
        ),
        (25, 25, 1, 7, 0)
    );
}

/// A function error bisects the batch down to the record that fails it; once its retries run
/// out it is discarded, the shard moves on, and the SQS destination gets Lambda's record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bisect_then_discard_to_sqs() {
    let aws = LocalAws::start();
    let sdk = LocalAws::sdk_config(&aws.endpoint()).await;
    let mut records = data(16, 4);
    records[5].1 = "poison".into();
    stream_of(&sdk, "bisect", &records).await;
    let (sqs, url) = queue(&sdk, "bisect-failures").await;
    let f = Built::new(|batch, _| {
        if batch.iter().any(|r| r.2 == "poison") {
            Err("boom".into())
        } else {
            Ok(vec![])
        }
    });
    let mut m = mapping(8);
    m.maximum_retry_attempts = 2;
    let status = run(
        &sdk,
        "bisect",
        &m,
        &f,
        &SqsDestination::new(sqs.clone(), &url),
        Duration::from_secs(60),
    )
    .await;
    let t = status.totals();
    assert_eq!(t.discarded, 1, "{t:?}");
    assert!(t.bisections >= 3, "8 -> 4 -> 2 -> 1: {t:?}");
    let poison_seq = f
        .seen()
        .iter()
        .flatten()
        .find(|r| r.2 == "poison")
        .unwrap()
        .1
        .clone();
    let alone = f
        .seen()
        .iter()
        .filter(|b| b.len() == 1 && b[0].2 == "poison")
        .count();
    assert_eq!(alone, 3, "the first try alone and two retries");
    let delivered: HashSet<String> = f.seen().iter().flatten().map(|r| r.2.clone()).collect();
    assert_eq!(delivered.len(), 16, "every other record was delivered");
    let m = messages(&sqs, &url).await;
    assert_eq!(m.len(), 1, "{m:?}");
    let r = &m[0];
    assert_eq!(r["requestContext"]["condition"], "RetryAttemptsExhausted");
    assert_eq!(r["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(r["responseContext"]["functionError"], "Unhandled");
    assert_eq!(
        r["KinesisBatchInfo"]["startSequenceNumber"],
        poison_seq.as_str()
    );
    assert_eq!(
        r["KinesisBatchInfo"]["endSequenceNumber"],
        poison_seq.as_str()
    );
    assert_eq!(r["KinesisBatchInfo"]["batchSize"], 1);
    assert_eq!(r["KinesisBatchInfo"]["shardId"], "shardId-000000000000");
    assert!(r["KinesisBatchInfo"]["streamArn"]
        .as_str()
        .unwrap()
        .ends_with(":stream/bisect"));
    assert!(r.get("payload").is_none(), "SQS gets metadata only");
}

/// Retries run out on a record the function keeps reporting: it and the rest of its batch are
/// discarded, and the S3 destination keeps them, data and all, under Lambda's key layout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_run_out_to_s3_with_the_records() {
    let aws = LocalAws::start();
    let sdk = LocalAws::sdk_config(&aws.endpoint()).await;
    let mut records = data(12, 3);
    records[7].1 = "rejected forever".into();
    stream_of(&sdk, "exhaust", &records).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket("failures").send().await.unwrap();
    let f = Built::new(|batch, _| {
        Ok(batch
            .iter()
            .filter(|r| r.2 == "rejected forever")
            .map(|r| r.1.clone())
            .collect())
    });
    let mut m = mapping(10);
    m.maximum_retry_attempts = 1;
    m.bisect_on_function_error = false;
    let status = run(
        &sdk,
        "exhaust",
        &m,
        &f,
        &S3Destination::new(s3.clone(), "failures"),
        Duration::from_secs(60),
    )
    .await;
    let t = status.totals();
    assert_eq!(
        (t.discarded, t.failure_records, t.done),
        (3, 1, 12),
        "{t:?}"
    );
    let objects = s3
        .list_objects_v2()
        .bucket("failures")
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = objects.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys.len(), 1);
    let parts: Vec<&str> = keys[0].split('/').collect();
    assert_eq!(&parts[..2], ["aws", "lambda"]);
    assert_eq!(parts[3], "shardId-000000000000");
    let body = s3
        .get_object()
        .bucket("failures")
        .key(keys[0])
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap();
    let record: Value = serde_json::from_slice(&body.into_bytes()).unwrap();
    assert_eq!(
        record["requestContext"]["condition"],
        "RetryAttemptsExhausted"
    );
    assert_eq!(record["KinesisBatchInfo"]["batchSize"], 3);
    assert!(
        record["responseContext"].get("functionError").is_none(),
        "a partial response is not a function error"
    );
    let payload: Value = serde_json::from_str(record["payload"].as_str().unwrap()).unwrap();
    let kept: Vec<String> = payload["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let d = base64::engine::general_purpose::STANDARD
                .decode(r["kinesis"]["data"].as_str().unwrap())
                .unwrap();
            String::from_utf8(d).unwrap()
        })
        .collect();
    assert_eq!(kept, ["rejected forever", "record 8", "record 9"]);
}

/// With MaximumRecordAgeInSeconds (60 at least), a record that keeps failing is discarded once
/// it is older than that, with a RecordAgeExceeded record and no response context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_age_runs_out() {
    let aws = LocalAws::start();
    let sdk = LocalAws::sdk_config(&aws.endpoint()).await;
    let mut records = data(4, 2);
    records[1].1 = "stuck".into();
    stream_of(&sdk, "aged", &records).await;
    let (sqs, url) = queue(&sdk, "aged-failures").await;
    let f = Built::new(|batch, _| {
        Ok(batch
            .iter()
            .filter(|r| r.2 == "stuck")
            .map(|r| r.1.clone())
            .collect())
    });
    let mut m = mapping(10);
    m.maximum_record_age = Some(Duration::from_secs(60));
    let status = run(
        &sdk,
        "aged",
        &m,
        &f,
        &SqsDestination::new(sqs.clone(), &url),
        Duration::from_secs(150),
    )
    .await;
    let t = status.totals();
    assert_eq!(
        t.discarded, 3,
        "the stuck record and the rest of its batch: {t:?}"
    );
    assert!(t.retries > 5, "retried until the age ran out: {t:?}");
    let m = messages(&sqs, &url).await;
    assert_eq!(m[0]["requestContext"]["condition"], "RecordAgeExceeded");
    assert!(m[0].get("responseContext").is_none());
    assert_eq!(m[0]["KinesisBatchInfo"]["batchSize"], 3);
}

/// ParallelizationFactor 4: batches of one shard run at once, and each key's records still take
/// effect in stream order, even as failures make the mapping redeliver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallelization_keeps_per_key_order() {
    let aws = LocalAws::start();
    let sdk = LocalAws::sdk_config(&aws.endpoint()).await;
    let records = data(240, 24);
    stream_of(&sdk, "parallel", &records).await;
    // The function applies records in order and stops at the first of each batch's first
    // delivery's third record, reporting it (and so the rest of the batch comes again).
    let applied: std::sync::Arc<Mutex<Vec<Delivered>>> = std::sync::Arc::default();
    let failed_once: Mutex<HashSet<String>> = Mutex::default();
    let applied_ref = applied.clone();
    let mut f = Built::new(|_, _| Ok(vec![]));
    f.delay = Duration::from_millis(30);
    let f = Built {
        rule: Box::new(move |batch: &[Delivered], _| {
            let stop = batch
                .get(2)
                .filter(|r| failed_once.lock().unwrap().insert(r.1.clone()));
            let mut applied = applied_ref.lock().unwrap();
            for r in batch {
                if Some(r) == stop {
                    return Ok(vec![r.1.clone()]);
                }
                if !applied.contains(r) {
                    applied.push(r.clone());
                }
            }
            Ok(vec![])
        }),
        ..f
    };
    let mut m = mapping(5);
    m.parallelization_factor = 4;
    let status = run(
        &sdk,
        "parallel",
        &m,
        &f,
        &local_esm::mapping::NoDestination,
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(status.totals().done, 240);
    assert!(
        f.most_at_once.load(Ordering::SeqCst) > 1,
        "batches of the shard ran at once"
    );
    let applied = applied.lock().unwrap().clone();
    assert_eq!(applied.len(), 240);
    let mut per_key: HashMap<&str, Vec<&str>> = HashMap::new();
    for (k, _, d) in &applied {
        per_key.entry(k).or_default().push(d);
    }
    for (k, got) in per_key {
        let want: Vec<&str> = records
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, d)| d.as_str())
            .collect();
        assert_eq!(got, want, "{k} out of order");
    }
}

/// The Invoke API adapter: a response, AWS's function error (200 with X-Amz-Function-Error),
/// `cargo lambda watch`'s (500 with the error's body), and an unknown function; each invoked
/// once (no SDK retry of a function error).
#[tokio::test]
async fn invoke_api_shapes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls: &'static Mutex<Vec<String>> = Box::leak(Box::default());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = vec![0u8; 65536];
            let n = s.read(&mut buf).await.unwrap();
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
            calls.lock().unwrap().push(path.clone());
            let (status, extra, body) = if path.contains("/ok/") {
                ("200 OK", "", r#"{"batchItemFailures":[]}"#)
            } else if path.contains("/aws-error/") {
                (
                    "200 OK",
                    "X-Amz-Function-Error: Unhandled\r\n",
                    r#"{"errorMessage":"boom"}"#,
                )
            } else if path.contains("/watch-error/") {
                (
                    "500 Internal Server Error",
                    "",
                    r#"{"errorType":"&str","errorMessage":"boom"}"#,
                )
            } else {
                ("404 Not Found", "", r#"{"title":"Missing function"}"#)
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(response.as_bytes()).await;
        }
    });
    let sdk = LocalAws::sdk_config("http://127.0.0.1:1").await;
    let client = lambda_client(&sdk, Some(&format!("http://{addr}")));
    let invoke = |name: &str| LambdaFunction::new(client.clone(), name);
    assert_eq!(
        invoke("ok").invoke(b"{}".to_vec()).await.unwrap(),
        br#"{"batchItemFailures":[]}"#
    );
    assert!(
        matches!(invoke("aws-error").invoke(vec![]).await, Err(InvokeError::Function(e)) if e.contains("Unhandled") && e.contains("boom"))
    );
    assert!(
        matches!(invoke("watch-error").invoke(vec![]).await, Err(InvokeError::Function(e)) if e.contains("boom"))
    );
    assert!(
        matches!(invoke("nope").invoke(vec![]).await, Err(InvokeError::Unavailable(e)) if e.contains("Missing function"))
    );
    assert_eq!(
        calls.lock().unwrap().len(),
        4,
        "one call each: no SDK retry"
    );
}
