//! A stub AWS endpoint on loopback for the benchmarks: it answers every DynamoDB, SES, SQS and
//! Kinesis `PutRecords` call with a success in the service's own protocol, after a fixed delay,
//! and records each call: in the order they arrive, when, on which connection, and (DynamoDB,
//! Kinesis) its request. Unlike moto it keeps connections alive and answers calls concurrently,
//! like the real services, so what it measures is the client side: our engine and the SDK.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::proxy::{describe, read_request};

/// A running stub. Stops when dropped.
pub struct StubAws {
    addr: SocketAddr,
    task: JoinHandle<()>,
    log: Arc<Mutex<Vec<Call>>>,
    connections: Arc<AtomicUsize>,
}

/// One call the stub answered, in arrival order.
#[derive(Debug, Clone)]
pub struct Call {
    /// `dynamodb`, `ses`, `sqs`, `kinesis` or `other`.
    pub service: &'static str,
    /// The operation, for example `SendTemplatedEmail`.
    pub operation: String,
    /// For an SES send: the order id in its template data.
    pub order_id: Option<String>,
    /// For a DynamoDB call: its JSON request (the cost benchmark sizes its items).
    pub dynamodb_request: Option<serde_json::Value>,
    /// For a Kinesis call: its JSON request (the cost benchmark reads the records put).
    pub kinesis_request: Option<serde_json::Value>,
    /// When its request had arrived whole (the fan-out benchmark times each key's chain).
    pub arrived: Instant,
    /// The connection it came on, numbered from 0 in the order the stub accepted them.
    pub connection: usize,
}

impl StubAws {
    /// Starts a stub that answers each call after `delay`.
    pub async fn start(delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let calls = log.clone();
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let calls = calls.clone();
                let connection = accepted.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let _ = serve(stream, delay, &calls, connection).await;
                });
            }
        });
        Self {
            addr,
            task,
            log,
            connections,
        }
    }

    /// How many connections it has accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// The stub's URL, to use as `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The calls so far, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forgets the calls so far.
    pub fn clear(&self) {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl Drop for StubAws {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers the requests of one keep-alive connection, one after another (as HTTP/1.1 requires).
async fn serve(
    mut stream: TcpStream,
    delay: Duration,
    log: &Mutex<Vec<Call>>,
    connection: usize,
) -> std::io::Result<()> {
    while let Some((head, body)) = read_request(&mut stream).await? {
        let arrived = Instant::now();
        let request = describe(&head, &body);
        let order_id = (request.service == "ses")
            .then(|| order_id(&body))
            .flatten();
        log.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Call {
                service: request.service,
                operation: request.operation.clone(),
                order_id,
                dynamodb_request: (request.service == "dynamodb")
                    .then(|| serde_json::from_slice(&body).ok())
                    .flatten(),
                kinesis_request: (request.service == "kinesis")
                    .then(|| serde_json::from_slice(&body).ok())
                    .flatten(),
                arrived,
                connection,
            });
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let (content_type, body) = match request.service {
            "ses" => (
                "text/xml",
                format!(
                    "<{op}Response xmlns=\"http://ses.amazonaws.com/doc/2010-12-01/\"><{op}Result>\
                     <MessageId>stub-message</MessageId></{op}Result><ResponseMetadata>\
                     <RequestId>stub</RequestId></ResponseMetadata></{op}Response>",
                    op = request.operation
                ),
            ),
            "sqs" => (
                "application/x-amz-json-1.0",
                r#"{"MessageId":"stub-message"}"#.to_owned(),
            ),
            // Every entry written (inventory-updater publishes its decisions).
            "kinesis" if request.operation == "PutRecords" => {
                let entries = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["Records"].as_array().map(Vec::len))
                    .unwrap_or(0);
                let written = vec![
                    r#"{"SequenceNumber":"49590000000000000000000000000000000000000000000000000001","ShardId":"shardId-000000000000"}"#;
                    entries
                ];
                (
                    "application/x-amz-json-1.1",
                    format!(
                        r#"{{"FailedRecordCount":0,"Records":[{}]}}"#,
                        written.join(",")
                    ),
                )
            }
            _ => ("application/x-amz-json-1.0", "{}".to_owned()),
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             x-amzn-RequestId: stub\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await?;
    }
    Ok(())
}

/// The `order-…` id in a form-encoded SES request (its template data holds the order id).
fn order_id(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("order-")?;
    let id: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    Some(id)
}
