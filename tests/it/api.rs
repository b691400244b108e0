//! The JSON API and `/health`.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;

use crate::support::*;

fn get(path: &str, auth: Option<&str>) -> Request<Body> {
    let mut builder = Request::get(path);
    if let Some(auth) = auth {
        builder = builder.header("authorization", auth);
    }
    builder.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn health_reports_the_database() {
    let app = TestApp::new().await;
    let (status, json) = app.send(get("/health", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["ok"], true);
    assert_eq!(json["db"], "ok");
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));

    app.store.close().await;
    let (status, json) = app.send(get("/health", None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json["ok"], false);
    assert_eq!(json["db"], "error");
}

#[tokio::test]
async fn the_api_requires_the_token() {
    let app = TestApp::new().await;
    for (auth, expected) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("Bearer wrong"), StatusCode::UNAUTHORIZED),
        (Some(API_TOKEN), StatusCode::UNAUTHORIZED),
        (Some("Basic dGVzdDp0ZXN0"), StatusCode::UNAUTHORIZED),
        (Some(&*format!("Bearer {API_TOKEN}")), StatusCode::OK),
    ] {
        let (status, json) = app.send(get("/jobs", auth)).await;
        assert_eq!(status, expected, "{auth:?}: {json}");
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(json["error"]["code"], "unauthorized");
        }
    }
}

#[tokio::test]
async fn without_a_configured_token_the_api_is_closed() {
    let app = TestApp::with_env(&[("ORCH_API_TOKEN", "")]).await;
    let (status, _) = app.send(get("/jobs", Some("Bearer "))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn jobs_are_listed_newest_first_with_filters_and_pages() {
    let app = TestApp::new().await;
    for n in 1..=5u64 {
        app.deliver("issues", &format!("job-{n}"), &labeled(n)).await;
        // Distinct creation times make the order observable.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    app.deliver("issue_comment", "rej", &comment(99, "/orchestrate", "NONE"))
        .await;

    let (status, page) = app.api_get("/jobs").await;
    assert_eq!(status, StatusCode::OK);
    let numbers: Vec<i64> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["issue_number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [99, 5, 4, 3, 2, 1]);
    assert_eq!(page["next_cursor"], Value::Null);

    let (_, rejected) = app.api_get("/jobs?status=rejected").await;
    assert_eq!(rejected["jobs"].as_array().unwrap().len(), 1);
    let (_, none) = app.api_get("/jobs?repo=someone/else").await;
    assert_eq!(none["jobs"].as_array().unwrap().len(), 0);
    let (_, mine) = app
        .api_get("/jobs?repo=Codertocat/Hello-World&status=queued")
        .await;
    assert_eq!(mine["jobs"].as_array().unwrap().len(), 5);

    let (_, first) = app.api_get("/jobs?limit=4").await;
    assert_eq!(first["jobs"].as_array().unwrap().len(), 4);
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let (_, second) = app.api_get(&format!("/jobs?limit=4&cursor={cursor}")).await;
    let rest: Vec<i64> = second["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["issue_number"].as_i64().unwrap())
        .collect();
    assert_eq!(rest, [2, 1]);
    assert_eq!(second["next_cursor"], Value::Null);

    for bad in [
        "/jobs?status=nope",
        "/jobs?limit=0",
        "/jobs?limit=101",
        "/jobs?cursor=garbage",
    ] {
        let (status, json) = app.api_get(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {json}");
        assert!(json["error"]["message"].is_string());
    }
}

#[tokio::test]
async fn an_unknown_job_is_a_json_404() {
    let app = TestApp::new().await;
    let (status, json) = app.api_get("/jobs/does-not-exist").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json["error"]["code"], "not_found");
    let (status, json) = app.send(get("/nowhere", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json["error"]["code"], "not_found");
}
