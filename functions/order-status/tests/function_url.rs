//! The read API's events as they come: the request `cargo lambda watch` (1.9.2) sends for a
//! function URL, and one as Lambda sends it behind a function URL on AWS; and its answer in the
//! form both read back.

use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
use order_status::api::handle;
use order_status::fakes::FakeStatus;
use order_status::status::{Details, EventKind, Fact, HistoryEntry};
use order_status::StatusStore;
use shared::Outcome;

/// What `cargo lambda watch` sends the function for `curl
/// http://127.0.0.1:9000/lambda-url/order-status-api/orders/o-1`: an API Gateway HTTP API
/// request (payload format 2.0) as cargo-lambda serialises its `ApiGatewayV2httpRequest`, the
/// `/lambda-url/order-status-api` prefix taken off `rawPath` and `requestContext.http.path`.
const CARGO_LAMBDA_WATCH: &str = r#"{
  "type": null,
  "methodArn": null,
  "httpMethod": "GET",
  "identitySource": null,
  "authorizationToken": null,
  "resource": null,
  "version": "2.0",
  "routeKey": "$default",
  "rawPath": "/orders/o-1",
  "rawQueryString": null,
  "headers": {
    "host": "127.0.0.1:9000",
    "user-agent": "curl/8.5.0",
    "accept": "*/*",
    "lambda-runtime-aws-request-id": "7a3c1d2e-0000-4000-8000-000000000001"
  },
  "requestContext": {
    "routeKey": "$default",
    "accountId": null,
    "stage": "$default",
    "requestId": "7a3c1d2e-0000-4000-8000-000000000001",
    "apiId": null,
    "domainName": "localhost",
    "domainPrefix": "order-status-api",
    "time": "01/May/2024:10:00:00 +0000",
    "timeEpoch": 1714557600,
    "http": {
      "method": "GET",
      "path": "/orders/o-1",
      "protocol": "http",
      "sourceIp": "127.0.0.1",
      "userAgent": "cargo-lambda"
    }
  },
  "stageVariables": {},
  "isBase64Encoded": false
}"#;

/// What Lambda sends behind a function URL with IAM auth (payload format 2.0): a `DELETE`.
const FUNCTION_URL: &str = r#"{
  "version": "2.0",
  "routeKey": "$default",
  "rawPath": "/orders/o-1",
  "rawQueryString": "",
  "headers": {"x-amz-date": "20240501T100000Z", "host": "abc.lambda-url.us-east-1.on.aws"},
  "requestContext": {
    "accountId": "123456789012",
    "apiId": "abc",
    "authorizer": {"iam": {"accessKey": "AKIAEXAMPLE", "accountId": "123456789012",
      "callerId": "AIDAEXAMPLE", "cognitoIdentity": null, "principalOrgId": null,
      "userArn": "arn:aws:iam::123456789012:user/ops", "userId": "AIDAEXAMPLE"}},
    "domainName": "abc.lambda-url.us-east-1.on.aws",
    "domainPrefix": "abc",
    "http": {"method": "DELETE", "path": "/orders/o-1", "protocol": "HTTP/1.1",
      "sourceIp": "203.0.113.1", "userAgent": "agent"},
    "requestId": "id",
    "routeKey": "$default",
    "stage": "$default",
    "time": "01/May/2024:10:00:00 +0000",
    "timeEpoch": 1714557600000
  },
  "pathParameters": null,
  "isBase64Encoded": false,
  "stageVariables": null
}"#;

async fn store() -> FakeStatus {
    let store = FakeStatus::default();
    let entry = HistoryEntry {
        event_type: "ORDER_PLACED".into(),
        event_id: "e1".into(),
        time: None,
    };
    let fact = Fact::new("o-1", entry, EventKind::Placed, None, Details::default());
    assert_eq!(store.record(&fact).await.unwrap(), Outcome::Applied);
    store
}

/// cargo lambda watch's request reads as a function URL request, with the path the function
/// sees behind its URL; the answer carries what cargo-lambda reads back from it (`statusCode`,
/// `headers`, `body`, `isBase64Encoded` and `cookies`, which it requires).
#[tokio::test]
async fn under_cargo_lambda_watch() {
    let request: LambdaFunctionUrlRequest = serde_json::from_str(CARGO_LAMBDA_WATCH).unwrap();
    assert_eq!(request.raw_path.as_deref(), Some("/orders/o-1"));
    let response = handle(&request, &store().await).await;
    let answer = serde_json::to_value(&response).unwrap();
    assert_eq!(answer["statusCode"], 200);
    assert_eq!(answer["headers"]["content-type"], "application/json");
    assert_eq!(answer["isBase64Encoded"], false);
    assert_eq!(answer["cookies"], serde_json::json!([]));
    let body: serde_json::Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["orderId"], "o-1");
    assert_eq!(body["status"], "PLACED");
    assert_eq!(body["lines"], serde_json::json!([]));

    let mut unknown = request.clone();
    unknown.raw_path = Some("/orders/o-2".into());
    let response = handle(&unknown, &store().await).await;
    assert_eq!(response.status_code, 404);
    assert_eq!(
        response.headers.get("content-type").unwrap(),
        "application/json"
    );
}

/// Behind its URL on AWS: the method is the request context's; a `DELETE` is 405.
#[tokio::test]
async fn behind_a_function_url() {
    let request: LambdaFunctionUrlRequest = serde_json::from_str(FUNCTION_URL).unwrap();
    let response = handle(&request, &store().await).await;
    assert_eq!(response.status_code, 405);
    assert_eq!(response.headers.get("allow").unwrap(), "GET");
    let body: serde_json::Value = serde_json::from_str(response.body.as_deref().unwrap()).unwrap();
    assert!(body["message"].as_str().unwrap().contains("DELETE"));
}
