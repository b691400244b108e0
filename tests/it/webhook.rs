//! `POST /webhook`: signatures, refusals, fixtures and exactly-once intake.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use orchestrator::webhook::signature;
use secrecy::SecretString;
use serde_json::Value;
use sha2::Digest;

use crate::support::*;

#[test]
fn fixtures_are_byte_for_byte_copies() {
    let provenance: Value = serde_json::from_slice(&fixture("provenance.json")).unwrap();
    let mut checked = 0;
    for group in ["webhooks", "webhooks_supplementary"] {
        for entry in provenance[group].as_array().unwrap() {
            let file = entry["file"].as_str().unwrap();
            let bytes = fixture(file);
            let digest = hex::encode(sha2::Sha256::digest(&bytes));
            assert_eq!(
                digest,
                entry["sha256"].as_str().unwrap(),
                "{file} differs from the capture"
            );
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        all_fixture_payloads().len(),
        "every payload file is covered by provenance"
    );
}

#[test]
fn every_signature_vector() {
    let vectors: Value = serde_json::from_slice(&fixture("signature-vectors.json")).unwrap();
    let docs = &vectors["github_docs_vector"];
    let secret = [SecretString::from(docs["secret"].as_str().unwrap())];
    let header = docs["expected"].as_str().unwrap().as_bytes();
    let body = docs["payload_utf8"].as_str().unwrap().as_bytes();
    assert!(signature::verify(&secret, Some(header), body).is_ok());

    let mut count = 1;
    for v in vectors["fixture_vectors"]
        .as_array()
        .unwrap()
        .iter()
        .chain(vectors["negative_vectors"].as_array().unwrap())
    {
        let secret = [SecretString::from(v["secret"].as_str().unwrap())];
        let body = fixture(v["payload_file"].as_str().unwrap());
        let header = v
            .get("expected")
            .or_else(|| v.get("provided"))
            .and_then(Value::as_str);
        let valid = v["valid"].as_bool().unwrap();
        let result = signature::verify(&secret, header.map(str::as_bytes), &body);
        assert_eq!(result.is_ok(), valid, "vector {}: {result:?}", v["name"]);
        count += 1;
    }
    assert!(count >= 9, "all vectors were read ({count})");
}

#[tokio::test]
async fn every_fixture_is_accepted_and_recorded() {
    let app = TestApp::new().await;
    let payloads = all_fixture_payloads();
    assert!(payloads.len() >= 60, "fixtures present: {}", payloads.len());
    for (i, (event, file)) in payloads.iter().enumerate() {
        let delivery = format!("fixture-{i}");
        let (status, body) = app.deliver(event, &delivery, &fixture(file)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{file}: {body}");
        let outcome = app.outcome(&delivery).await;
        assert!(!outcome.is_empty(), "{file} has an outcome");
        assert!(
            !outcome.contains("unexpected payload shape"),
            "{file} parsed: {outcome}"
        );
    }
    assert_eq!(app.store.count_deliveries().await.unwrap(), payloads.len() as i64);
    // Raw repository-webhook captures never start work: no installation.
    assert_eq!(
        app.outcome(&delivery_of(&payloads, "webhooks/issues/labeled.1.json"))
            .await,
        "ignored: not the trigger label"
    );
    assert_eq!(
        app.outcome(&delivery_of(&payloads, "webhooks/issue_comment/created.3.json"))
            .await,
        "ignored: no command"
    );
    assert_eq!(
        app.outcome(&delivery_of(&payloads, "webhooks/installation/created.1.json"))
            .await,
        "installation: active"
    );
    assert_eq!(
        app.outcome(&delivery_of(
            &payloads,
            "webhooks/check_run/requested_action.1.json"
        ))
        .await,
        "ignored: unknown requested action"
    );
    assert_eq!(
        app.outcome(&delivery_of(&payloads, "webhooks/push/push.1.json"))
            .await,
        "ignored: event not handled"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 0);
}

fn delivery_of(payloads: &[(String, String)], file: &str) -> String {
    let i = payloads.iter().position(|(_, f)| f == file).unwrap();
    format!("fixture-{i}")
}

#[tokio::test]
async fn a_redelivery_answers_200_and_changes_nothing() {
    let app = TestApp::new().await;
    let body = labeled(7);
    let (first, _) = app.deliver("issues", "d-1", &body).await;
    let (second, json) = app.deliver("issues", "d-1", &body).await;
    assert_eq!(first, StatusCode::ACCEPTED);
    assert_eq!(second, StatusCode::OK);
    assert_eq!(json["duplicate"], true);
    assert_eq!(app.store.count_deliveries().await.unwrap(), 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_identical_deliveries_record_one_delivery_and_one_job() {
    let app = TestApp::new().await;
    let body = labeled(9);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let router = app.router.clone();
        let request = signed_request("issues", "same-delivery", &body);
        tasks.push(tokio::spawn(async move {
            tower::ServiceExt::oneshot(router, request)
                .await
                .unwrap()
                .status()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::ACCEPTED).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        49,
        "{statuses:?}"
    );
    assert_eq!(app.store.count_deliveries().await.unwrap(), 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_distinct_triggers_on_one_issue_make_one_job() {
    let app = TestApp::new().await;
    let body = labeled(11);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let router = app.router.clone();
        let request = signed_request("issues", &format!("distinct-{i}"), &body);
        tasks.push(tokio::spawn(async move {
            tower::ServiceExt::oneshot(router, request)
                .await
                .unwrap()
                .status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::ACCEPTED);
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox WHERE kind = 'already_running'")
            .await,
        19
    );
}

struct BadCase {
    name: &'static str,
    request: Request<Body>,
    status: StatusCode,
}

fn request_with(headers: &[(&str, String)], body: Vec<u8>) -> Request<Body> {
    let mut builder = Request::post("/webhook");
    for (name, value) in headers {
        builder = builder.header(*name, value.as_str());
    }
    builder.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_stored() {
    let app = TestApp::new().await;
    let body = fixture("webhooks/issues/labeled.1.json");
    let good_sig = signature::sign(SECRET, &body);
    let sig = |b: &[u8]| ("x-hub-signature-256", signature::sign(SECRET, b));
    let event = ("x-github-event", "issues".to_string());
    let delivery = ("x-github-delivery", "bad-1".to_string());
    let oversized = vec![b' '; orchestrator::webhook::MAX_BODY_BYTES + 1];
    let cases = vec![
        BadCase {
            name: "no signature",
            request: request_with(&[event.clone(), delivery.clone()], body.clone()),
            status: StatusCode::UNAUTHORIZED,
        },
        BadCase {
            name: "wrong signature",
            request: request_with(
                &[
                    event.clone(),
                    delivery.clone(),
                    ("x-hub-signature-256", signature::sign("wrong", &body)),
                ],
                body.clone(),
            ),
            status: StatusCode::UNAUTHORIZED,
        },
        BadCase {
            name: "sha1 only",
            request: request_with(
                &[
                    event.clone(),
                    delivery.clone(),
                    (
                        "x-hub-signature",
                        "sha1=99c6881c1c70c149c29d071c4f8b1e449c078ac1".into(),
                    ),
                ],
                body.clone(),
            ),
            status: StatusCode::UNAUTHORIZED,
        },
        BadCase {
            name: "signature of other bytes",
            request: request_with(&[event.clone(), delivery.clone(), sig(b"{}")], body.clone()),
            status: StatusCode::UNAUTHORIZED,
        },
        BadCase {
            name: "missing event header",
            request: request_with(
                &[delivery.clone(), ("x-hub-signature-256", good_sig.clone())],
                body.clone(),
            ),
            status: StatusCode::BAD_REQUEST,
        },
        BadCase {
            name: "missing delivery header",
            request: request_with(
                &[event.clone(), ("x-hub-signature-256", good_sig.clone())],
                body.clone(),
            ),
            status: StatusCode::BAD_REQUEST,
        },
        BadCase {
            name: "not JSON",
            request: request_with(
                &[event.clone(), delivery.clone(), sig(b"not json")],
                b"not json".to_vec(),
            ),
            status: StatusCode::BAD_REQUEST,
        },
        BadCase {
            name: "a JSON array",
            request: request_with(
                &[event.clone(), delivery.clone(), sig(b"[1,2]")],
                b"[1,2]".to_vec(),
            ),
            status: StatusCode::BAD_REQUEST,
        },
        BadCase {
            name: "empty body",
            request: request_with(&[event.clone(), delivery.clone(), sig(b"")], Vec::new()),
            status: StatusCode::BAD_REQUEST,
        },
        BadCase {
            name: "empty body without signature",
            request: request_with(&[event.clone(), delivery.clone()], Vec::new()),
            status: StatusCode::UNAUTHORIZED,
        },
        BadCase {
            name: "oversized body",
            request: request_with(
                &[event.clone(), delivery.clone(), sig(&oversized)],
                oversized.clone(),
            ),
            status: StatusCode::PAYLOAD_TOO_LARGE,
        },
    ];
    for case in cases {
        let (status, json) = app.send(case.request).await;
        assert_eq!(status, case.status, "{}: {json}", case.name);
        assert!(
            json["error"]["code"].is_string(),
            "{}: error body {json}",
            case.name
        );
    }
    assert_eq!(app.store.count_deliveries().await.unwrap(), 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 0);
}

#[tokio::test]
async fn without_a_secret_every_delivery_is_refused() {
    let app = TestApp::with_env(&[("GITHUB_WEBHOOK_SECRET", "")]).await;
    // An empty value still counts as configured by the environment; make sure
    // the empty secret is not a usable key either way.
    let body = fixture("webhooks/ping/ping.1.json");
    let request = request_with(
        &[
            ("x-github-event", "ping".into()),
            ("x-github-delivery", "p".into()),
            ("x-hub-signature-256", signature::sign("", &body)),
        ],
        body,
    );
    let (status, _) = app.send(request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.store.count_deliveries().await.unwrap(), 0);
}

#[tokio::test]
async fn a_rotated_secret_is_still_accepted() {
    let app = TestApp::with_env(&[
        ("GITHUB_WEBHOOK_SECRET", "brand-new"),
        ("ORCH_GITHUB__PREVIOUS_WEBHOOK_SECRETS", SECRET),
    ])
    .await;
    let (status, _) = app
        .deliver("ping", "rot-1", &fixture("webhooks/ping/ping.1.json"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn the_payload_is_stored_byte_for_byte() {
    let app = TestApp::new().await;
    let body = fixture("webhooks/issues/opened.1.json");
    app.deliver("issues", "bytes-1", &body).await;
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}/orchestrator.db", app.dir.path().display()))
        .await
        .unwrap();
    let (stored, event, repo): (Vec<u8>, String, Option<String>) =
        sqlx::query_as("SELECT payload, event, repo FROM deliveries WHERE delivery_id = 'bytes-1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored, body);
    assert_eq!(event, "issues");
    assert_eq!(repo.as_deref(), Some("Codertocat/Hello-World"));
}
