//! Shared test support: a real router over a temporary SQLite store, signed
//! deliveries, and the captured GitHub fixtures.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use orchestrator::config::{Config, ConfigSources};
use orchestrator::server::{AppState, router};
use orchestrator::store::Store;
use orchestrator::webhook::signature::sign;
use serde_json::Value;
use tower::ServiceExt;

pub mod serve;

pub const SECRET: &str = "test-webhook-secret";
pub const API_TOKEN: &str = "test-api-token";
/// The installation id our derived App deliveries carry.
pub const INSTALLATION: u64 = 4242;

pub struct TestApp {
    pub router: Router,
    pub store: Store,
    pub state: AppState,
    pub dir: tempfile::TempDir,
    /// The database this app uses (SQLite in `dir`, or a fresh PostgreSQL database).
    pub db_url: String,
}

pub fn test_config(dir: &std::path::Path, extra: &[(&str, &str)]) -> Config {
    let db = format!("sqlite://{}/orchestrator.db", dir.display());
    let mut env: std::collections::HashMap<String, String> = [
        ("DATABASE_URL", db.as_str()),
        ("GITHUB_WEBHOOK_SECRET", SECRET),
        ("ORCH_API_TOKEN", API_TOKEN),
        ("ORCH_DATA_DIR", &dir.display().to_string()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::load(&ConfigSources {
        file: Some(write_empty_toml(dir)),
        dotenv: None,
        env,
    })
    .expect("config")
}

fn write_empty_toml(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("orchestrator.toml");
    std::fs::write(&path, "").expect("write toml");
    path
}

impl TestApp {
    pub async fn new() -> TestApp {
        TestApp::with_env(&[]).await
    }

    pub async fn with_env(extra: &[(&str, &str)]) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Arc::new(test_config(dir.path(), extra));
        let url = secrecy::ExposeSecret::expose_secret(&config.database_url).to_string();
        let store = Store::connect(&url, &config.database).await.expect("connect");
        store.migrate().await.expect("migrate");
        let state = AppState::new(config, store.clone());
        TestApp {
            router: router(state.clone()),
            store,
            state,
            dir,
            db_url: url,
        }
    }

    /// Sends a request through the real router: the status and the JSON
    /// body (`Null` when it is not JSON).
    pub async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let (status, _, bytes) = self.send_raw(request).await;
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, json)
    }

    /// Sends a request through the real router: status, headers and body.
    pub async fn send_raw(&self, request: Request<Body>) -> (StatusCode, HeaderMap, axum::body::Bytes) {
        let response = self.router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, headers, bytes)
    }

    /// A correctly signed delivery.
    pub async fn deliver(&self, event: &str, delivery: &str, body: &[u8]) -> (StatusCode, Value) {
        self.send(signed_request(event, delivery, body)).await
    }

    pub async fn api_get(&self, path: &str) -> (StatusCode, Value) {
        let request = Request::get(path)
            .header("authorization", format!("Bearer {API_TOKEN}"))
            .body(Body::empty())
            .expect("request");
        self.send(request).await
    }

    pub async fn outcome(&self, delivery: &str) -> String {
        self.store
            .delivery_outcome(delivery)
            .await
            .expect("db")
            .unwrap_or_default()
    }

    /// A separate connection to the app's database, for assertions.
    pub async fn pool(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&self.db_url)
            .await
            .expect("pool")
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        let pool = self.pool().await;
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.expect("count");
        pool.close().await;
        n
    }
}

pub fn signed_request(event: &str, delivery: &str, body: &[u8]) -> Request<Body> {
    Request::post("/webhook")
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", sign(SECRET, body))
        .body(Body::from(body.to_vec()))
        .expect("request")
}

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github")
}

/// A captured payload, byte for byte.
pub fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(rel)).unwrap_or_else(|e| panic!("fixture {rel}: {e}"))
}

/// A payload DERIVED from a captured one: the fixtures are repository
/// webhooks, so App behaviour is tested on copies that gain an
/// `installation` and whatever `edit` changes, then are re-serialised (and
/// re-signed by [`TestApp::deliver`]).
pub fn derived(rel: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut value: Value = serde_json::from_slice(&fixture(rel)).expect("fixture json");
    value["installation"] =
        serde_json::json!({"id": INSTALLATION, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNDI0Mg=="});
    edit(&mut value);
    serde_json::to_vec(&value).expect("serialise")
}

/// A labeled event for the trigger label on issue `number`.
pub fn labeled(number: u64) -> Vec<u8> {
    derived("webhooks/issues/labeled.1.json", |v| {
        v["label"]["name"] = "orchestrate".into();
        v["issue"]["number"] = number.into();
    })
}

/// An issue comment with `body` by an author with `association`.
pub fn comment(number: u64, body: &str, association: &str) -> Vec<u8> {
    derived("webhooks/issue_comment/created.1.json", |v| {
        v["issue"]["number"] = number.into();
        v["comment"]["body"] = body.into();
        v["comment"]["author_association"] = association.into();
    })
}

/// A small repository to build contexts from: `src/retry.rs` (a documented
/// `backoff`) and a README.
pub fn retry_library() -> tempfile::TempDir {
    let repo = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(repo.path().join("src")).expect("mkdir");
    std::fs::write(
        repo.path().join("src/retry.rs"),
        "/// Backoff between attempts.\npub fn backoff(attempt: u32) -> u64 {\n    100 * u64::from(attempt)\n}\n",
    )
    .expect("write");
    std::fs::write(repo.path().join("README.md"), "# Demo\n\nA retry library.\n").expect("write");
    repo
}

/// Every event/file pair under `webhooks/` and `webhooks-supplementary/`.
pub fn all_fixture_payloads() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for top in ["webhooks", "webhooks-supplementary"] {
        let root = fixtures_dir().join(top);
        let mut events: Vec<_> = std::fs::read_dir(&root).expect("dir").flatten().collect();
        events.sort_by_key(|e| e.file_name());
        for event_dir in events {
            let event = event_dir.file_name().to_string_lossy().to_string();
            let mut files: Vec<_> = std::fs::read_dir(event_dir.path())
                .expect("dir")
                .flatten()
                .collect();
            files.sort_by_key(|e| e.file_name());
            for file in files {
                out.push((
                    event.clone(),
                    format!("{top}/{event}/{}", file.file_name().to_string_lossy()),
                ));
            }
        }
    }
    out
}

/// The backends a store test runs on: SQLite always, PostgreSQL when
/// `TEST_DATABASE_URL` is set (each test gets a fresh database there).
pub async fn backends() -> Vec<(&'static str, Option<String>)> {
    let mut out = vec![("sqlite", None)];
    if let Some(url) = fresh_postgres_database().await {
        out.push(("postgres", Some(url)));
    }
    out
}

/// A TestApp on the given backend (`None` = SQLite).
pub async fn app_on(url: &Option<String>, extra: &[(&str, &str)]) -> TestApp {
    let mut env: Vec<(&str, &str)> = extra.to_vec();
    if let Some(url) = url {
        env.push(("DATABASE_URL", url.as_str()));
    }
    TestApp::with_env(&env).await
}

/// Creates an empty database on the `TEST_DATABASE_URL` server and returns its URL.
pub async fn fresh_postgres_database() -> Option<String> {
    let admin_url = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    sqlx::any::install_default_drivers();
    let admin = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url)
        .await
        .expect("TEST_DATABASE_URL");
    let name = format!("orch_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create database");
    admin.close().await;
    let (base, _) = admin_url.rsplit_once('/').expect("a database URL with a path");
    Some(format!("{base}/{name}"))
}
