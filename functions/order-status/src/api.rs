//! The read API: `GET /orders/{orderId}` behind a Lambda function URL, the `order-status-api`
//! binary's whole work.
//!
//! | request | answer |
//! |---|---|
//! | `GET /orders/{orderId}`, an order recorded | 200, the order ([`OrderView`] as JSON) |
//! | `GET /orders/{orderId}`, no such order | 404, `{"message": ...}` |
//! | `GET /orders/{orderId}`, an id that is no order id | 400, `{"message": ...}` |
//! | another method on `/orders/{orderId}` | 405, `{"message": ...}`, `allow: GET` |
//! | any other path | 404, `{"message": ...}` |
//! | the store fails | 503 (it may work again) or 500, `{"message": ...}` |
//!
//! Every answer is JSON (`content-type: application/json`). The id is the path's segment after
//! `/orders/`, percent-decoded once, then checked as any order id is
//! ([`orders::OrderId::parse`]: not blank, no control characters, at most 256 bytes).
//!
//! The function URL's event is the HTTP API's payload format 2.0 (`rawPath`,
//! `requestContext.http.method`), read as [`LambdaFunctionUrlRequest`]. `cargo lambda watch`
//! serves a binary's function URL at `http://127.0.0.1:<port>/lambda-url/<binary>/<path>`, and
//! sends the same format (an API Gateway HTTP API v2 request, version `2.0`) with the
//! `/lambda-url/<binary>` prefix taken off `rawPath`: the function sees `/orders/o-1` there as it
//! does behind its URL on AWS. The answer is a [`LambdaFunctionUrlResponse`], which both read.
//!
//! [`respond`] is the logic, over any [`StatusReader`]; [`handle`] and [`serve`] put it behind the
//! Lambda runtime; [`main`] is the binary's.

use std::borrow::Cow;
use std::sync::Arc;

use aws_lambda_events::event::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
use aws_lambda_events::http::{header, HeaderValue};
use lambda_runtime::{layers, service_fn, Diagnostic, LambdaEvent};
use orders::OrderId;
use shared::platform::telemetry::{self, LogSettings};
use shared::{ConfigErrors, Env, ErrorClass, Problems};

use crate::dynamodb::DynamoStatus;
use crate::ports::StatusReader;
use crate::status::OrderView;

/// The path before an order's id.
pub const ORDERS_PREFIX: &str = "/orders/";

/// The read API's settings.
///
/// | variable | meaning |
/// |---|---|
/// | `STATUS_TABLE` | the DynamoDB table order-status writes |
///
/// Besides, as every function: the SDK's `AWS_*` settings, and the log settings
/// (`AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`, `AWS_LAMBDA_LOG_FORMAT`, `LOG_SAMPLE_RATE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    /// `STATUS_TABLE`.
    pub table: String,
}

impl ApiSettings {
    /// Reads them; every missing or wrong one is named in the error.
    pub fn from_env(env: &Env) -> Result<Self, ConfigErrors> {
        Problems::collect(|problems| {
            LogSettings::check(env, problems);
            Self {
                table: problems.required(env, "STATUS_TABLE"),
            }
        })
    }
}

/// `{"message": message}`.
fn message(message: &str) -> String {
    serde_json::json!({ "message": message }).to_string()
}

/// `s` with each `%XX` replaced by the byte it stands for; `None` when an escape is not two hex
/// digits or the bytes are not UTF-8. Nothing else is changed (`+` stays `+` in a path).
pub fn percent_decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains('%') {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// The answer to `method` on `path` (the URL's path, as sent): its status and its JSON body.
pub async fn respond<R: StatusReader>(path: &str, method: &str, store: &R) -> (u16, String) {
    let Some(raw_id) = path
        .strip_prefix(ORDERS_PREFIX)
        .filter(|rest| !rest.contains('/'))
    else {
        return (404, message("no such path: use GET /orders/{orderId}"));
    };
    if method != "GET" {
        return (
            405,
            message(&format!("{method} is not allowed here: use GET")),
        );
    }
    let Some(decoded) = percent_decode(raw_id) else {
        return (400, message("orderId is not percent-encoded UTF-8"));
    };
    let order_id = match OrderId::parse(decoded) {
        Ok(id) => id,
        Err(why) => return (400, message(&why)),
    };
    match store.get(order_id.as_str()).await {
        Ok(Some(view)) => match serde_json::to_string::<OrderView>(&view) {
            Ok(body) => (200, body),
            Err(e) => {
                tracing::error!(error = %e, "an order could not be written as JSON");
                (500, message("the order could not be written"))
            }
        },
        Ok(None) => (404, message(&format!("no order {order_id}"))),
        Err(e) => {
            tracing::error!(error = ?e, order_id = %order_id, "reading an order failed");
            match e.class() {
                ErrorClass::Retryable => (503, message("the order could not be read: try again")),
                ErrorClass::Permanent => (500, message("the order could not be read")),
            }
        }
    }
}

/// The function URL's response: `status`, `body`, `content-type: application/json` (and
/// `allow: GET` with a 405).
pub fn response(status: u16, body: String) -> LambdaFunctionUrlResponse {
    let mut response = LambdaFunctionUrlResponse::default();
    response.status_code = i64::from(status);
    response.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if status == 405 {
        response
            .headers
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
    }
    response.body = Some(body);
    response.is_base64_encoded = false;
    response
}

/// Answers one function URL request: its `rawPath` (else `requestContext.http.path`) and its
/// method, through [`respond`].
pub async fn handle<R: StatusReader>(
    request: &LambdaFunctionUrlRequest,
    store: &R,
) -> LambdaFunctionUrlResponse {
    let http = &request.request_context.http;
    let path = (request.raw_path.as_deref())
        .or(http.path.as_deref())
        .unwrap_or("/");
    let method = http.method.as_deref().unwrap_or_default();
    let (status, body) = respond(path, method, store).await;
    tracing::info!(method, path, status, "answered");
    response(status, body)
}

/// Serves function URL requests from `store` until the runtime stops.
pub async fn serve<R: StatusReader + Send + 'static>(
    store: R,
) -> Result<(), lambda_runtime::Error> {
    let store = Arc::new(store);
    let handler = service_fn(move |event: LambdaEvent<LambdaFunctionUrlRequest>| {
        let store = store.clone();
        async move { Ok::<_, Diagnostic>(handle(&event.payload, &*store).await) }
    });
    lambda_runtime::Runtime::new(handler)
        .layer(layers::TracingLayer::new())
        .run_concurrent()
        .await
}

/// The `order-status-api` binary's `main`: logging, its settings (or the end of start-up, naming
/// every problem), the SDK's configuration, then requests until the runtime stops.
pub async fn main() -> std::process::ExitCode {
    telemetry::init();
    let settings = shared::runtime::start_up(ApiSettings::from_env(&Env::process()));
    let sdk = shared::aws::sdk_config().await;
    let store = DynamoStatus::new(aws_sdk_dynamodb::Client::new(&sdk), settings.table);
    match serve(store).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the Lambda Runtime API stopped answering; the runtime stops");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use shared::Outcome;

    use super::*;
    use crate::fakes::FakeStatus;
    use crate::ports::StatusStore;
    use crate::status::{Details, EventKind, Fact, HistoryEntry, Line};

    /// A store holding order `o-1`, placed, and `o 2/x` (an id with a space and a slash).
    async fn store() -> FakeStatus {
        let store = FakeStatus::default();
        for order_id in ["o-1", "o 2/x"] {
            let entry = HistoryEntry {
                event_type: "ORDER_PLACED".into(),
                event_id: format!("e-{order_id}"),
                time: Some("2024-05-01T10:00:00Z".into()),
            };
            let details = Details {
                lines: Some(vec![Line {
                    product_id: "sku-a".into(),
                    quantity: 2,
                }]),
                total: Some("12.50".into()),
                user_id: Some("u-1".into()),
            };
            let fact = Fact::new(order_id, entry, EventKind::Placed, None, details);
            assert_eq!(store.record(&fact).await.unwrap(), Outcome::Applied);
        }
        store
    }

    fn json(body: &str) -> serde_json::Value {
        serde_json::from_str(body).unwrap()
    }

    /// A recorded order: 200, the view as JSON (no customer).
    #[tokio::test]
    async fn an_order_is_200() {
        let (status, body) = respond("/orders/o-1", "GET", &store().await).await;
        assert_eq!(status, 200);
        assert_eq!(
            json(&body),
            serde_json::json!({
                "orderId": "o-1",
                "status": "PLACED",
                "lines": [{"productId": "sku-a", "quantity": 2}],
                "total": "12.50",
                "reason": null,
                "history": [{"type": "ORDER_PLACED", "eventId": "e-o-1", "time": "2024-05-01T10:00:00Z"}]
            })
        );
        // The id is percent-decoded once: a space, and a slash inside the id.
        let (status, body) = respond("/orders/o%202%2Fx", "GET", &store().await).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(json(&body)["orderId"], "o 2/x");
    }

    /// An unknown order, and any other path: 404 with a message.
    #[tokio::test]
    async fn unknown_is_404() {
        let store = store().await;
        let (status, body) = respond("/orders/o-404", "GET", &store).await;
        assert_eq!(status, 404);
        assert_eq!(json(&body)["message"], "no order o-404");
        for path in [
            "/",
            "/orders",
            "/orders/o-1/",
            "/orders/o-1/items",
            "/order/o-1",
            "",
        ] {
            let (status, body) = respond(path, "GET", &store).await;
            assert_eq!(status, 404, "{path}");
            assert!(json(&body)["message"]
                .as_str()
                .unwrap()
                .contains("/orders/{orderId}"));
        }
    }

    /// An id that is no order id (blank, control characters, over 256 bytes, a bad escape):
    /// 400 with a message saying why.
    #[tokio::test]
    async fn a_malformed_id_is_400() {
        let store = store().await;
        let long = "x".repeat(257);
        let cases = [
            ("/orders/".to_owned(), "orderId is empty"),
            ("/orders/%20%20".to_owned(), "orderId is empty"),
            ("/orders/a%00b".to_owned(), "control characters"),
            ("/orders/a%0Ab".to_owned(), "control characters"),
            (format!("/orders/{long}"), "too long"),
            ("/orders/a%zz".to_owned(), "percent-encoded"),
            ("/orders/a%2".to_owned(), "percent-encoded"),
            ("/orders/%FF".to_owned(), "UTF-8"),
        ];
        for (path, why) in cases {
            let (status, body) = respond(&path, "GET", &store).await;
            assert_eq!(status, 400, "{path}");
            let message = json(&body)["message"].as_str().unwrap().to_owned();
            assert!(message.contains(why), "{path}: {message}");
        }
        // 256 bytes is an id.
        let (status, _) = respond(&format!("/orders/{}", "x".repeat(256)), "GET", &store).await;
        assert_eq!(status, 404);
    }

    /// Another method on an order's path: 405, with `allow: GET`.
    #[tokio::test]
    async fn other_methods_are_405() {
        let store = store().await;
        for method in ["POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] {
            let (status, body) = respond("/orders/o-1", method, &store).await;
            assert_eq!(status, 405, "{method}");
            assert!(json(&body)["message"].as_str().unwrap().contains(method));
        }
        let r = response(405, message("no"));
        assert_eq!(r.headers.get("allow").unwrap(), "GET");
        assert_eq!(r.headers.get("content-type").unwrap(), "application/json");
    }

    /// A store that fails: 503 when a retry may work, 500 when not.
    #[tokio::test]
    async fn a_failing_store_is_5xx() {
        let store = store().await;
        store.fail_order("o-1", ErrorClass::Retryable, 1);
        store.fail_order("o 2/x", ErrorClass::Permanent, 1);
        assert_eq!(respond("/orders/o-1", "GET", &store).await.0, 503);
        assert_eq!(respond("/orders/o%202%2Fx", "GET", &store).await.0, 500);
        assert_eq!(respond("/orders/o-1", "GET", &store).await.0, 200);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("o-1").unwrap(), "o-1");
        assert_eq!(percent_decode("a%2Fb%2fc+d").unwrap(), "a/b/c+d");
        assert_eq!(percent_decode("%C3%A9").unwrap(), "é");
        assert_eq!(percent_decode("%25").unwrap(), "%");
        for bad in ["%", "%4", "%g0", "%C3"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }

    /// Its one setting is named when missing, with nothing else required.
    #[test]
    fn its_settings() {
        let settings = ApiSettings::from_env(&Env::from_pairs([("STATUS_TABLE", "statuses")]));
        assert_eq!(settings.unwrap().table, "statuses");
        let err = ApiSettings::from_env(&Env::from_pairs([])).unwrap_err();
        assert_eq!(err.names(), ["STATUS_TABLE"]);
        assert!(err.to_string().contains("STATUS_TABLE is missing"), "{err}");
        let err = ApiSettings::from_env(&Env::from_pairs([("RUST_LOG", "verbose")])).unwrap_err();
        assert_eq!(err.names(), ["RUST_LOG", "STATUS_TABLE"]);
    }
}
