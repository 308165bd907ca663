//! A fault-injecting HTTP proxy on loopback, in front of the AWS-API server.
//!
//! Each request is read whole, named by its service and operation, and then, as the test's plan
//! says, forwarded, answered with a throttling or server error in the service's own protocol,
//! dropped without an answer, or delayed. One request per connection (it answers
//! `Connection: close`), which keeps the proxy simple and is what moto does anyway.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the proxy does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer 400 with the service's throttling error.
    Throttle,
    /// Answer 500 with an internal error.
    ServerError,
    /// Close the connection without an answer.
    Drop,
    /// Forward it after a pause (long enough, it passes the SDK's attempt timeout).
    Delay(Duration),
    /// A Kinesis `PutRecords`: fail about this percentage of its entries with
    /// `ProvisionedThroughputExceededException`, forward the others, and answer with both, as
    /// Kinesis answers a partial failure.
    FailEntries(u8),
}

/// The request, as the plan sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `dynamodb`, `ses`, `sqs`, `kinesis` or `other`.
    pub service: &'static str,
    /// The operation, for example `TransactWriteItems` or `SendTemplatedEmail`.
    pub operation: String,
}

type Plan = dyn Fn(&Request) -> Option<Fault> + Send + Sync;

/// A running proxy. Stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    task: JoinHandle<()>,
    faults: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream`; `plan` decides each request's fault (`None`: forward it).
    pub async fn start(
        upstream: SocketAddr,
        plan: impl Fn(&Request) -> Option<Fault> + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let plan: Arc<Plan> = Arc::new(plan);
        let faults = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (f, r) = (faults.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                // An accept error (out of file descriptors, with many calls at once) is passing:
                // a proxy that stopped listening would refuse every later call.
                let Ok((client, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let (plan, f, r) = (plan.clone(), f.clone(), r.clone());
                tokio::spawn(async move {
                    let _ = serve(client, upstream, &*plan, &f, &r).await;
                });
            }
        });
        Self {
            addr,
            task,
            faults,
            requests,
        }
    }

    /// The proxy's URL, to use as the endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests it injected a fault into.
    pub fn faults(&self) -> usize {
        self.faults.load(Ordering::SeqCst)
    }

    /// How many requests it saw.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    plan: &Plan,
    faults: &AtomicUsize,
    requests: &AtomicUsize,
) -> std::io::Result<()> {
    let Some((head, body)) = read_request(&mut client).await? else {
        return Ok(());
    };
    requests.fetch_add(1, Ordering::SeqCst);
    let request = describe(&head, &body);
    let json = header(&head, "content-type").is_some_and(|c| c.contains("amz-json"));
    let fault = plan(&request);
    if fault.is_some() {
        faults.fetch_add(1, Ordering::SeqCst);
    }
    match fault {
        Some(Fault::Drop) => return Ok(()),
        Some(Fault::Throttle) => return answer(&mut client, 400, json, &request, true).await,
        Some(Fault::ServerError) => return answer(&mut client, 500, json, &request, false).await,
        Some(Fault::Delay(pause)) => tokio::time::sleep(pause).await,
        Some(Fault::FailEntries(percent)) => {
            let response = fail_entries(upstream, &head, &body, percent).await?;
            client.write_all(&response).await?;
            return client.shutdown().await;
        }
        None => {}
    }
    let response = forward(upstream, &head, &body).await?;
    client.write_all(&response).await?;
    client.shutdown().await
}

async fn forward(upstream: SocketAddr, head: &str, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(&rewrite_connection_close(head)).await?;
    up.write_all(body).await?;
    let mut response = Vec::new();
    up.read_to_end(&mut response).await?;
    Ok(response)
}

/// Fails some entries of a `PutRecords`, forwards the rest, and merges the answers.
async fn fail_entries(
    upstream: SocketAddr,
    head: &str,
    body: &[u8],
    percent: u8,
) -> std::io::Result<Vec<u8>> {
    static DRAWS: AtomicUsize = AtomicUsize::new(0);
    let mut request: serde_json::Value = serde_json::from_slice(body).unwrap();
    let records = request["Records"].as_array().cloned().unwrap_or_default();
    let failed: Vec<bool> = records
        .iter()
        .map(|_| {
            let mut x = DRAWS.fetch_add(1, Ordering::SeqCst) as u64 ^ 0x9E37_79B9_7F4A_7C15;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (x ^ (x >> 31)) % 100 < u64::from(percent)
        })
        .collect();
    let kept: Vec<serde_json::Value> = records
        .iter()
        .zip(&failed)
        .filter(|(_, f)| !**f)
        .map(|(r, _)| r.clone())
        .collect();
    let mut written = Vec::new();
    if !kept.is_empty() {
        request["Records"] = kept.into();
        let body = serde_json::to_vec(&request).unwrap();
        let head: String = head
            .split("\r\n")
            .map(|line| {
                if line.to_ascii_lowercase().starts_with("content-length:") {
                    format!("Content-Length: {}", body.len())
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\r\n");
        let response = forward(upstream, &head, &body).await?;
        let at = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let status = String::from_utf8_lossy(&response[..at]).into_owned();
        if !status.starts_with("HTTP/1.1 200") && !status.starts_with("HTTP/1.0 200") {
            return Ok(response);
        }
        let answer: serde_json::Value = serde_json::from_slice(&response[at..]).unwrap();
        written = answer["Records"].as_array().cloned().unwrap_or_default();
    }
    let mut written = written.into_iter();
    let results: Vec<serde_json::Value> = failed
        .iter()
        .map(|&f| {
            if f {
                serde_json::json!({
                    "ErrorCode": "ProvisionedThroughputExceededException",
                    "ErrorMessage": "Rate exceeded for shard (injected)."
                })
            } else {
                written.next().unwrap()
            }
        })
        .collect();
    let count = failed.iter().filter(|f| **f).count();
    let body = serde_json::json!({"FailedRecordCount": count, "Records": results}).to_string();
    Ok(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nx-amzn-RequestId: injected\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes())
}

/// Reads one request: the head, and a body of `Content-Length` bytes.
pub(crate) async fn read_request(
    stream: &mut TcpStream,
) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > 1 << 20 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some((head, body)))
}

pub(crate) fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn rewrite_connection_close(head: &str) -> Vec<u8> {
    let mut out = String::with_capacity(head.len() + 20);
    for line in head.trim_end().split("\r\n") {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

/// Names the request: JSON protocols by `X-Amz-Target`, the query protocol by `Action=`.
pub(crate) fn describe(head: &str, body: &[u8]) -> Request {
    if let Some(target) = header(head, "x-amz-target") {
        let (prefix, operation) = target.split_once('.').unwrap_or((target, ""));
        let service = match prefix {
            p if p.starts_with("DynamoDB") => "dynamodb",
            p if p.starts_with("AmazonSQS") => "sqs",
            p if p.starts_with("Kinesis") => "kinesis",
            _ => "other",
        };
        return Request {
            service,
            operation: operation.to_owned(),
        };
    }
    let text = String::from_utf8_lossy(body);
    let operation = text
        .split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .unwrap_or("")
        .to_owned();
    let host = header(head, "host").unwrap_or("");
    let auth = header(head, "authorization").unwrap_or("");
    let service = if auth.contains("/ses/") || host.contains("email") {
        "ses"
    } else if auth.contains("/sqs/") {
        "sqs"
    } else {
        "other"
    };
    Request { service, operation }
}

/// Answers with an error in the request's protocol, as the service would.
async fn answer(
    client: &mut TcpStream,
    status: u16,
    json: bool,
    request: &Request,
    throttle: bool,
) -> std::io::Result<()> {
    let (code, message) = if throttle {
        match request.service {
            "dynamodb" => (
                "ThrottlingException",
                "Rate of requests exceeds the allowed throughput.",
            ),
            "ses" => ("Throttling", "Maximum sending rate exceeded."),
            _ => ("ThrottlingException", "Rate exceeded."),
        }
    } else {
        ("InternalServerError", "Internal server error (injected)")
    };
    let (content_type, body) = if json {
        let prefix = if request.service == "dynamodb" {
            "com.amazonaws.dynamodb.v20120810#"
        } else {
            ""
        };
        (
            "application/x-amz-json-1.0",
            format!(r#"{{"__type":"{prefix}{code}","message":"{message}"}}"#),
        )
    } else {
        (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>injected</RequestId></ErrorResponse>"
            ),
        )
    };
    let reason = if status == 500 {
        "Internal Server Error"
    } else {
        "Bad Request"
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nx-amzn-RequestId: injected\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(response.as_bytes()).await?;
    client.shutdown().await
}
