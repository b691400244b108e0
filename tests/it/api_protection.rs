//! Protection of the HTTP interface: per-client rate limits (429 with
//! `Retry-After`, never on the webhook) and JSON error bodies for every
//! refusal, including the framework's own (404, 405, 413, 415, 400, 422).

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode, header};
use serde_json::Value;

use crate::support::*;

/// Sends through the real router and keeps the headers too.
async fn call(app: &TestApp, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let (status, headers, bytes) = app.send_raw(request).await;
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("{status}: not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, headers, json)
}

/// A request as if it came from `peer` (what `serve` records per connection).
fn from(peer: &str, mut request: Request<Body>) -> Request<Body> {
    request
        .extensions_mut()
        .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    request
}

fn api(method: &str, path: &str, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(Body::empty()).unwrap()
}

fn assert_error_shape(json: &Value, code: &str) {
    assert_eq!(json["error"]["code"], code, "{json}");
    assert!(
        json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{json}"
    );
    assert_eq!(json.as_object().unwrap().len(), 1, "only `error`: {json}");
}

#[tokio::test]
async fn the_api_answers_429_with_retry_after_once_the_burst_is_spent() {
    let app = TestApp::with_env(&[("ORCH_API__RATE_PER_MINUTE", "2"), ("ORCH_API__BURST", "3")]).await;
    for n in 0..3 {
        let (status, _, json) = call(&app, from("10.1.1.1:4000", api("GET", "/jobs", Some(API_TOKEN)))).await;
        assert_eq!(status, StatusCode::OK, "request {n} is within the burst: {json}");
    }
    let (status, headers, json) =
        call(&app, from("10.1.1.1:4000", api("GET", "/jobs", Some(API_TOKEN)))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_error_shape(&json, "rate_limited");
    let retry_after: u64 = headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    // Two a minute: the next one is free within 30 s.
    assert!((1..=30).contains(&retry_after), "Retry-After {retry_after}");

    // Unauthenticated guessing from the same address is limited too.
    let (status, _, _) = call(&app, from("10.1.1.1:4001", api("GET", "/jobs", Some("guess")))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

    // Another address has its own budget; the same token does not.
    let (status, _, json) = call(&app, from("10.2.2.2:4000", api("GET", "/jobs", Some("other")))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}");
    let (status, _, _) = call(&app, from("10.3.3.3:4000", api("GET", "/jobs", Some(API_TOKEN)))).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "a token is limited whichever address it comes from"
    );

    // Health checks and the API description are not limited.
    for path in ["/health", "/openapi.json"] {
        let (status, _, _) = call(&app, from("10.1.1.1:4000", api("GET", path, None))).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn the_webhook_is_never_rate_limited() {
    let app = TestApp::with_env(&[("ORCH_API__RATE_PER_MINUTE", "1"), ("ORCH_API__BURST", "1")]).await;
    let peer = "140.82.115.1:443";
    for n in 1..=20u64 {
        let (status, _, json) = call(
            &app,
            from(peer, signed_request("issues", &format!("d-{n}"), &labeled(n))),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "delivery {n}: {json}");
    }
    // The same address is limited on the API after one request.
    assert_eq!(
        call(&app, from(peer, api("GET", "/jobs", Some(API_TOKEN))))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, from(peer, api("GET", "/jobs", Some(API_TOKEN))))
            .await
            .0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 20);
}

#[tokio::test]
async fn behind_a_trusted_proxy_clients_are_told_apart_by_forwarded_for() {
    let app = TestApp::with_env(&[
        ("ORCH_API__RATE_PER_MINUTE", "1"),
        ("ORCH_API__BURST", "1"),
        ("ORCH_API__TRUST_FORWARDED_FOR", "true"),
    ])
    .await;
    let via_proxy = |client: &str| {
        let mut request = api("GET", "/jobs", None);
        request
            .headers_mut()
            .insert("x-forwarded-for", client.parse().unwrap());
        from("127.0.0.1:50000", request)
    };
    assert_eq!(
        call(&app, via_proxy("198.51.100.7")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, via_proxy("198.51.100.8")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, via_proxy("198.51.100.7")).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_zero_rate_turns_the_limit_off() {
    let app = TestApp::with_env(&[("ORCH_API__RATE_PER_MINUTE", "0")]).await;
    for _ in 0..150 {
        assert_eq!(app.api_get("/jobs").await.0, StatusCode::OK);
    }
}

#[tokio::test]
async fn every_refusal_is_a_json_error() {
    let app = TestApp::new().await;
    let token = Some(API_TOKEN);

    let (status, _, json) = call(&app, api("GET", "/no/such/route", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error_shape(&json, "not_found");

    for (method, path) in [
        ("DELETE", "/jobs"),
        ("GET", "/tasks"),
        ("POST", "/health"),
        ("GET", "/webhook"),
    ] {
        let (status, headers, json) = call(&app, api(method, path, token)).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: {json}");
        assert_error_shape(&json, "method_not_allowed");
        assert!(headers.contains_key(header::ALLOW), "{method} {path} keeps Allow");
    }

    let (status, _, json) = call(&app, api("GET", "/jobs?limit=lots", token)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error_shape(&json, "bad_request");

    let task = |content_type: Option<&str>, body: Vec<u8>| {
        let mut builder = Request::post("/tasks").header("authorization", format!("Bearer {API_TOKEN}"));
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        builder.body(Body::from(body)).unwrap()
    };
    let valid = br#"{"repo": "octo/app", "task": "x"}"#.to_vec();
    let (status, _, json) = call(&app, task(None, valid.clone())).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_error_shape(&json, "unsupported_media_type");
    let (status, _, json) = call(&app, task(Some("text/plain"), valid)).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_error_shape(&json, "unsupported_media_type");

    let (status, _, json) = call(&app, task(Some("application/json"), b"{not json".to_vec())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error_shape(&json, "invalid_body");

    let huge = format!(
        r#"{{"repo": "octo/app", "task": "{}"}}"#,
        "x".repeat(orchestrator::server::API_MAX_BODY_BYTES)
    );
    let (status, _, json) = call(&app, task(Some("application/json"), huge.into_bytes())).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error_shape(&json, "body_too_large");

    let (status, headers, json) = call(&app, api("GET", "/jobs", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error_shape(&json, "unauthorized");
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");

    assert_eq!(
        app.count("SELECT COUNT(*) FROM jobs").await,
        0,
        "nothing refused was queued"
    );
}
