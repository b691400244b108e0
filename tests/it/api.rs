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

fn post_json(path: &str, body: &serde_json::Value, auth: bool) -> Request<Body> {
    let mut builder = Request::post(path).header("content-type", "application/json");
    if auth {
        builder = builder.header("authorization", format!("Bearer {API_TOKEN}"));
    }
    builder.body(Body::from(body.to_string())).unwrap()
}

#[tokio::test]
async fn post_tasks_queues_a_job_for_a_repository_or_a_checkout() {
    let app = TestApp::new().await;
    let body = serde_json::json!({"repo": "octo/app", "task": "Add a --verbose flag\nwith tests", "budget": {"usd": 1.5}});
    let (status, json) = app.send(post_json("/tasks", &body, true)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{json}");
    let id = json["id"].as_str().unwrap().to_string();
    let (_, job) = app.api_get(&format!("/jobs/{id}")).await;
    assert_eq!(job["status"], "queued");
    assert_eq!(job["trigger"], "api");
    assert_eq!(job["repo"], "octo/app");
    assert_eq!(job["issue_number"], Value::Null);
    let budget: f64 = sqlx::query_scalar("SELECT budget_usd FROM jobs WHERE id = $1")
        .bind(&id)
        .fetch_one(&app.pool().await)
        .await
        .unwrap();
    assert_eq!(budget, 1.5);

    let checkout = app.dir.path().display().to_string();
    let (status, json) = app
        .send(post_json(
            "/tasks",
            &serde_json::json!({"path": checkout, "task": "x"}),
            true,
        ))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{json}");

    let (status, _) = app.send(post_json("/tasks", &body, false)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn post_tasks_refuses_bad_requests_with_422() {
    let app = TestApp::new().await;
    let long = "x".repeat(20_001);
    for body in [
        serde_json::json!({"repo": "octo/app", "task": long}),
        serde_json::json!({"repo": "octo/app", "task": "  "}),
        serde_json::json!({"repo": "not-a-repo", "task": "x"}),
        serde_json::json!({"repo": "a/b", "path": "/tmp", "task": "x"}),
        serde_json::json!({"task": "x"}),
        serde_json::json!({"path": "relative/dir", "task": "x"}),
        serde_json::json!({"repo": "a/b", "task": "x", "budget": {"usd": -1}}),
        serde_json::json!({"repo": "a/b", "task": "x", "surprise": 1}),
        serde_json::json!({"repo": "a/b"}),
    ] {
        let (status, json) = app.send(post_json("/tasks", &body, true)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {json}");
        assert!(json["error"]["code"].is_string(), "{json}");
    }
    let exactly = serde_json::json!({"repo": "octo/app", "task": "é".repeat(20_000)});
    assert_eq!(
        app.send(post_json("/tasks", &exactly, true)).await.0,
        StatusCode::ACCEPTED,
        "20,000 characters are fine"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 1);
}

#[tokio::test]
async fn cancel_and_retry_follow_the_job_state() {
    let app = TestApp::new().await;
    let body = serde_json::json!({"repo": "octo/app", "task": "x"});
    let (_, json) = app.send(post_json("/tasks", &body, true)).await;
    let id = json["id"].as_str().unwrap().to_string();
    let empty = serde_json::json!({});

    let (status, _) = app
        .send(post_json(&format!("/jobs/{id}/retry"), &empty, true))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "a queued job is not retried");
    let (status, _) = app
        .send(post_json(&format!("/jobs/{id}/cancel"), &empty, true))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(app.store.cancel_requested(&id).await.unwrap());

    // A worker stops it.
    let now = orchestrator::jobs::now_millis();
    let claimed = app
        .store
        .claim_job("w", now + 60_000, now)
        .await
        .unwrap()
        .unwrap();
    let cancelled = orchestrator::jobs::JobStatus::Cancelled;
    app.store
        .set_job_status(
            &claimed.id,
            "w",
            cancelled,
            Some("cancelled_by_user: via API"),
            now,
        )
        .await
        .unwrap();
    let (status, _) = app
        .send(post_json(&format!("/jobs/{id}/cancel"), &empty, true))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "an ended job cannot be cancelled");
    let (status, json) = app
        .send(post_json(&format!("/jobs/{id}/retry"), &empty, true))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(json["attempt"], 2);
    let (status, _) = app.send(post_json("/jobs/nope/cancel", &empty, true)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .send(post_json(&format!("/jobs/{id}/cancel"), &empty, false))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
