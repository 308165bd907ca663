//! The AWS side of the local mapping, on the real SDK: the Kinesis API it reads, the Lambda
//! Invoke API it calls (as served by `cargo lambda watch`, or by AWS), and the SQS and S3
//! destinations of its failure records.

use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;
use aws_smithy_types::Blob;
use tokio::sync::mpsc;

use crate::failure::FailureRecord;
use crate::mapping::{FailureSink, Function, InvokeError, StreamRecord};
use crate::template::StartingPosition;

use shared::error::chain;

/// A shard of the stream, with its parents (a child is read after its parents are finished).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    /// Its id.
    pub id: String,
    /// The shard it was split from, or one of the two it was merged from.
    pub parent: Option<String>,
    /// The other shard it was merged from.
    pub adjacent_parent: Option<String>,
}

/// What the last poll of a shard saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct PollState {
    /// `MillisBehindLatest` of the last `GetRecords`.
    pub millis_behind_latest: i64,
    /// When the last poll that found nothing started (epoch ms); `None` when the last poll
    /// found records.
    pub empty_poll_ms: Option<i64>,
    /// The shard was closed (split or merged) and read to its end.
    pub finished: bool,
}

/// A Kinesis stream, read with `ListShards`, `GetShardIterator` and `GetRecords`.
#[derive(Debug, Clone)]
pub struct KinesisStream {
    client: aws_sdk_kinesis::Client,
    name: String,
    /// The pause between polls that found nothing.
    pub poll_interval: Duration,
}

impl KinesisStream {
    /// The stream `name`.
    pub fn new(client: aws_sdk_kinesis::Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
            poll_interval: Duration::from_millis(250),
        }
    }

    /// The stream's ARN.
    pub async fn arn(&self) -> Result<String, String> {
        let out = self
            .client
            .describe_stream_summary()
            .stream_name(&self.name)
            .send()
            .await
            .map_err(|e| {
                let why = chain(&e);
                let hint = shared::cli::unreachable_hint(&why);
                format!("cannot describe the stream {}: {why}{hint}", self.name)
            })?;
        Ok(out
            .stream_description_summary()
            .map(|d| d.stream_arn().to_owned())
            .unwrap_or_default())
    }

    /// The stream's shards, open and closed.
    pub async fn shards(&self) -> Result<Vec<ShardInfo>, String> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let request = match &token {
                Some(t) => self.client.list_shards().next_token(t),
                None => self.client.list_shards().stream_name(&self.name),
            };
            let page = request
                .send()
                .await
                .map_err(|e| format!("cannot list the shards of {}: {}", self.name, chain(&e)))?;
            out.extend(page.shards().iter().map(|s| ShardInfo {
                id: s.shard_id().to_owned(),
                parent: s.parent_shard_id().map(str::to_owned),
                adjacent_parent: s.adjacent_parent_shard_id().map(str::to_owned),
            }));
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Reads `shard` from `start` into `tx` until the shard ends (it was split or merged) or `tx`
    /// closes; `poll` is told what each poll saw.
    pub async fn read(
        &self,
        shard: &str,
        start: StartingPosition,
        tx: mpsc::Sender<StreamRecord>,
        mut poll: impl FnMut(PollState),
    ) -> Result<(), String> {
        let mut request = self
            .client
            .get_shard_iterator()
            .stream_name(&self.name)
            .shard_id(shard);
        request = match start {
            StartingPosition::TrimHorizon => {
                request.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            StartingPosition::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
            StartingPosition::AtTimestamp(t) => request
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(aws_smithy_types::DateTime::from_secs_f64(t)),
        };
        let mut iterator = request
            .send()
            .await
            .map_err(|e| format!("cannot read {shard}: {}", chain(&e)))?
            .shard_iterator()
            .map(str::to_owned);
        let mut state = PollState::default();
        while let Some(it) = iterator.take() {
            let started = shared::time::now_ms();
            let out = match self
                .client
                .get_records()
                .shard_iterator(&it)
                .limit(10_000)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    tracing::warn!(shard, error = %chain(&e), "GetRecords failed; polling again");
                    tokio::time::sleep(self.poll_interval * 4).await;
                    iterator = Some(it);
                    continue;
                }
            };
            state.millis_behind_latest = out.millis_behind_latest().unwrap_or(0);
            let records = out.records();
            state.empty_poll_ms = records.is_empty().then_some(started);
            poll(state);
            for r in records {
                let arrival = r
                    .approximate_arrival_timestamp()
                    .map_or_else(crate::mapping::epoch_now, |t| t.as_secs_f64());
                let record = StreamRecord {
                    partition_key: r.partition_key().unwrap_or_default().to_owned(),
                    sequence_number: r.sequence_number().to_owned(),
                    data: r.data().as_ref().to_vec(),
                    arrival,
                };
                if tx.send(record).await.is_err() {
                    return Ok(());
                }
            }
            iterator = out.next_shard_iterator().map(str::to_owned);
            if records.is_empty() && iterator.is_some() {
                tokio::time::sleep(self.poll_interval).await;
            }
        }
        state.finished = true;
        poll(state);
        Ok(())
    }
}

/// A function behind the Lambda Invoke API: AWS's, or the one `cargo lambda watch` serves.
#[derive(Debug, Clone)]
pub struct LambdaFunction {
    client: aws_sdk_lambda::Client,
    name: String,
}

impl LambdaFunction {
    /// The function `name`, invoked through `client` (see [`lambda_client`]).
    pub fn new(client: aws_sdk_lambda::Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
        }
    }
}

/// A Lambda client for invoking as the mapping does: synchronously, with no SDK retries (the
/// mapping's rules decide what is retried; an SDK retry would run the function again), and no
/// SDK timeout (the mapping enforces the function's own).
pub fn lambda_client(
    sdk: &aws_config::SdkConfig,
    endpoint: Option<&str>,
) -> aws_sdk_lambda::Client {
    let mut conf = aws_sdk_lambda::config::Builder::from(sdk)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .disable_operation_attempt_timeout()
                .disable_operation_timeout()
                .disable_read_timeout()
                .build(),
        );
    if let Some(endpoint) = endpoint {
        conf = conf.endpoint_url(endpoint);
    }
    aws_sdk_lambda::Client::from_conf(conf.build())
}

impl Function for LambdaFunction {
    async fn invoke(&self, event: Vec<u8>) -> Result<Vec<u8>, InvokeError> {
        use aws_sdk_lambda::error::SdkError;
        match self
            .client
            .invoke()
            .function_name(&self.name)
            .payload(Blob::new(event))
            .send()
            .await
        {
            Ok(out) => {
                let payload = out
                    .payload()
                    .map(|p| p.as_ref().to_vec())
                    .unwrap_or_default();
                match out.function_error() {
                    // AWS: 200 with X-Amz-Function-Error.
                    Some(kind) => Err(InvokeError::Function(format!(
                        "{kind}: {}",
                        String::from_utf8_lossy(&payload)
                    ))),
                    None => Ok(payload),
                }
            }
            // cargo lambda watch: the function's error as HTTP 500 with the error's body.
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() >= 500 => {
                let body = e.raw().body().bytes().unwrap_or_default();
                Err(InvokeError::Function(format!(
                    "HTTP {}: {}",
                    e.raw().status().as_u16(),
                    String::from_utf8_lossy(body)
                )))
            }
            Err(SdkError::ServiceError(e)) => {
                let body = e.raw().body().bytes().unwrap_or_default();
                Err(InvokeError::Unavailable(format!(
                    "the Invoke API refused {} (HTTP {}): {}",
                    self.name,
                    e.raw().status().as_u16(),
                    String::from_utf8_lossy(body)
                )))
            }
            Err(e) => Err(InvokeError::Unavailable(format!(
                "cannot invoke {}: {}",
                self.name,
                chain(&e)
            ))),
        }
    }
}

/// An SQS queue for the failure records (metadata only).
#[derive(Debug, Clone)]
pub struct SqsDestination {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsDestination {
    /// The queue at `queue_url`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl FailureSink for SqsDestination {
    async fn send(&self, record: &FailureRecord) -> Result<(), String> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(record.message())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("SQS SendMessage to {}: {}", self.queue_url, chain(&e)))
    }
}

/// An S3 bucket for the failure records (metadata and records).
#[derive(Debug, Clone)]
pub struct S3Destination {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Destination {
    /// The bucket `bucket`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }
}

impl FailureSink for S3Destination {
    async fn send(&self, record: &FailureRecord) -> Result<(), String> {
        let key = record.object_key();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(record.object().into_bytes().into())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("S3 PutObject {}/{key}: {}", self.bucket, chain(&e)))
    }
}

/// The destination a mapping's template names, bound to a local queue or bucket.
#[derive(Debug, Clone)]
pub enum Destination {
    /// No `OnFailure` destination.
    None,
    /// An SQS queue.
    Sqs(SqsDestination),
    /// An S3 bucket.
    S3(S3Destination),
}

impl FailureSink for Destination {
    async fn send(&self, record: &FailureRecord) -> Result<(), String> {
        match self {
            Self::None => Ok(()),
            Self::Sqs(d) => d.send(record).await,
            Self::S3(d) => d.send(record).await,
        }
    }
}
