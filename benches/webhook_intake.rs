//! Webhook intake: verify + parse + record, the request path of `POST /webhook`.
//!
//! Run with `cargo bench --bench webhook_intake`. The loopback load test with
//! `wrk` is described in `docs/benchmarks.md`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use orchestrator::config::{Config, ConfigSources};
use orchestrator::server::{AppState, router};
use orchestrator::store::Store;
use orchestrator::webhook::intake::{self, IntakeSettings};
use orchestrator::webhook::payload::Event;
use orchestrator::webhook::signature;
use secrecy::SecretString;
use tower::ServiceExt;

const SECRET: &str = "bench-secret";

fn payload() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/github/webhooks/issues/labeled.1.json"
    );
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap_or_default()).unwrap_or_default();
    value["installation"] = serde_json::json!({"id": 1});
    value["label"]["name"] = "orchestrate".into();
    serde_json::to_vec(&value).unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let body = payload();
    let header = signature::sign(SECRET, &body);
    let secrets = [SecretString::from(SECRET)];

    let mut group = c.benchmark_group("webhook");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("verify_signature", |b| {
        b.iter(|| signature::verify(&secrets, Some(header.as_bytes()), &body))
    });
    group.bench_function("parse_and_route", |b| {
        let settings = IntakeSettings {
            trigger_label: "orchestrate",
            bot_user_id: None,
            app_id: None,
        };
        b.iter(|| {
            let (event, _) = Event::parse("issues", &body).ok()?;
            Some(intake::route(&event, &settings))
        })
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .ok();
    let Some(runtime) = runtime else { return };
    let dir = tempfile::tempdir().ok();
    let Some(dir) = dir else { return };
    let env: HashMap<String, String> = [
        (
            "DATABASE_URL".to_string(),
            format!("sqlite://{}/bench.db", dir.path().display()),
        ),
        ("GITHUB_WEBHOOK_SECRET".to_string(), SECRET.to_string()),
    ]
    .into();
    let Ok(config) = Config::load(&ConfigSources {
        file: None,
        dotenv: None,
        env,
    }) else {
        return;
    };
    let config = Arc::new(config);
    let app = runtime.block_on(async {
        let url = secrecy::ExposeSecret::expose_secret(&config.database_url).to_string();
        let store = Store::connect(&url, &config.database).await.ok()?;
        store.migrate().await.ok()?;
        Some(router(AppState::new(config.clone(), store)))
    });
    let Some(app) = app else { return };
    let mut n = 0u64;
    group.bench_function("verify_parse_record_http", |b| {
        b.iter(|| {
            n += 1;
            let request = Request::post("/webhook")
                .header("x-github-event", "issues")
                .header("x-github-delivery", format!("bench-{n}"))
                .header("x-hub-signature-256", header.as_str())
                .body(Body::from(body.clone()))
                .ok()?;
            runtime
                .block_on(app.clone().oneshot(request))
                .ok()
                .map(|r| r.status())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
