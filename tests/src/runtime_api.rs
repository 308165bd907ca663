//! A minimal Lambda Runtime API on loopback, for running a function's release `bootstrap` as Lambda
//! does: it hands out the invocations it was given, one per `GET …/invocation/next`, takes the
//! responses, and tells the caller when each poll and response arrived. A poll with no invocation
//! left is held open, as Lambda holds it between invocations.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::proxy::read_request;

/// What the function did, with when the API saw it.
#[derive(Debug)]
pub enum ApiEvent {
    /// It asked for the next invocation.
    Poll(Instant),
    /// It answered an invocation (or reported its error: `ok` is false).
    Response {
        /// When the answer arrived.
        at: Instant,
        /// The invocation's request id (`request-<n>`, n its position in the list given).
        request_id: String,
        /// Whether it was a response, not an error.
        ok: bool,
        /// The answer's body.
        body: Vec<u8>,
    },
    /// It reported a start-up error.
    InitError(Vec<u8>),
}

/// A running Runtime API. Stops when dropped.
pub struct RuntimeApi {
    addr: SocketAddr,
    task: JoinHandle<()>,
    /// What the function did, in order.
    pub events: mpsc::UnboundedReceiver<ApiEvent>,
}

impl RuntimeApi {
    /// Starts an API that hands out `invocations` (event bodies), in order.
    pub async fn start(invocations: Vec<Vec<u8>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, events) = mpsc::unbounded_channel();
        let queue = Arc::new(Mutex::new(
            invocations.into_iter().enumerate().collect::<Vec<_>>(),
        ));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let (tx, queue) = (tx.clone(), queue.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &tx, &queue).await;
                });
            }
        });
        Self { addr, task, events }
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Queue = Mutex<Vec<(usize, Vec<u8>)>>;

async fn serve(
    mut stream: TcpStream,
    tx: &mpsc::UnboundedSender<ApiEvent>,
    queue: &Queue,
) -> std::io::Result<()> {
    while let Some((head, body)) = read_request(&mut stream).await? {
        let at = Instant::now();
        let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
        if path.ends_with("/runtime/invocation/next") {
            let _ = tx.send(ApiEvent::Poll(at));
            let next = {
                let mut q = queue.lock().unwrap_or_else(PoisonError::into_inner);
                (!q.is_empty()).then(|| q.remove(0))
            };
            let Some((n, event)) = next else {
                // Nothing left: hold the poll, as Lambda does until the next invocation.
                std::future::pending::<()>().await;
                return Ok(());
            };
            let deadline = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
                + 300_000;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Lambda-Runtime-Aws-Request-Id: request-{n}\r\nLambda-Runtime-Deadline-Ms: {deadline}\r\n\
                 Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:bench\r\n\
                 Lambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000;Sampled=0\r\n\r\n",
                event.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&event).await?;
        } else {
            let event = if path.ends_with("/init/error") {
                ApiEvent::InitError(body)
            } else {
                // `/2018-06-01/runtime/invocation/<request id>/response` (or `/error`)
                let request_id = path.rsplit('/').nth(1).unwrap_or_default().to_owned();
                ApiEvent::Response {
                    at,
                    request_id,
                    ok: path.ends_with("/response"),
                    body,
                }
            };
            let _ = tx.send(event);
            stream
                .write_all(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"status\":\"OK\"}\n")
                .await?;
        }
    }
    Ok(())
}
