//! `/openapi.json` describes exactly the routes the server has, and real
//! answers fit the documented schemas (a small JSON Schema checker below:
//! `$ref`, `type`, `required`, `properties`, `additionalProperties`, `items`,
//! `enum`, `const`, `minimum`, `oneOf`, `anyOf`), naming every field they
//! carry.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};

use orchestrator::jobs::now_millis;
use orchestrator::store::StepContextMetrics;

use crate::support::*;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn served_document(app: &TestApp) -> Value {
    let request = Request::get("/openapi.json").body(Body::empty()).unwrap();
    let (status, headers, bytes) = app.send_raw(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    serde_json::from_slice(&bytes).unwrap()
}

/// `(method, path)` of every operation the document describes.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if item.get(method).is_some() {
                out.insert((method.to_string(), path.clone()));
            }
        }
    }
    out
}

/// `(method, path)` of every `.route("PATH", get(…).post(…))` under src/server/,
/// where the router is built.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server"),
        &mut files,
    );
    let mut out = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = rest[at + ".route(".len()..].trim_start();
            let Some(literal) = rest.strip_prefix('"') else {
                panic!(
                    "{}: a route whose path is not a literal cannot be checked",
                    file.display()
                );
            };
            rest = literal;
            let end = rest.find('"').unwrap();
            let path = rest[..end].to_string();
            // The method router: up to the `)` that closes `.route(`.
            let mut depth = 1;
            let mut close = end;
            for (i, c) in rest.char_indices().skip(end + 1) {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    close = i;
                    break;
                }
            }
            let method_router = &rest[end + 1..close];
            let mut found = false;
            for method in METHODS {
                let starts = [
                    format!(" {method}("),
                    format!(",{method}("),
                    format!(".{method}("),
                ];
                if starts.iter().any(|s| method_router.contains(s.as_str()))
                    || method_router
                        .trim_start_matches([',', ' ', '\n'])
                        .starts_with(&format!("{method}("))
                {
                    out.insert((method.to_string(), path.clone()));
                    found = true;
                }
            }
            assert!(
                found,
                "{}: cannot read the methods of route {path}",
                file.display()
            );
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        // The dashboard's HTML pages are not part of the JSON API.
        if path.is_dir() && !path.ends_with("dashboard") {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[tokio::test]
async fn every_route_is_described() {
    let app = TestApp::new().await;
    let doc = served_document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let in_source = routes_in_source();
    assert!(
        in_source.contains(&("get".into(), "/jobs/{id}".into())),
        "{in_source:?}"
    );
    let described = documented(&doc);
    let undescribed: Vec<_> = in_source.difference(&described).collect();
    assert!(
        undescribed.is_empty(),
        "routes missing from src/server/openapi.json: {undescribed:?}"
    );
    let stale: Vec<_> = described.difference(&in_source).collect();
    assert!(stale.is_empty(), "described but not routed: {stale:?}");

    // And the router really answers each of them (not the 404 fallback, not 405).
    for (method, path) in &described {
        let uri = path
            .replace("{id}", "no-such-job")
            .replace("{job_id}", "no-such-job");
        let request = Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(&uri)
            .header("authorization", format!("Bearer {API_TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let (status, json) = app.send(request).await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert!(
            !(status == StatusCode::NOT_FOUND && json["error"]["message"] == "no such route"),
            "{method} {uri} is described but not routed"
        );
    }
}

#[tokio::test]
async fn real_answers_fit_the_documented_schemas() {
    // Small memory limits, so that a full memory and a too large item are cheap to reach.
    let app = TestApp::with_env(&[
        ("ORCH_MEMORY__MAX_ITEMS", "3"),
        ("ORCH_MEMORY__MAX_ITEM_BYTES", "200"),
    ])
    .await;
    let doc = served_document(&app).await;
    let bearer = format!("Bearer {API_TOKEN}");
    let authed = |method: &str, uri: &str, body: Option<Value>| {
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", bearer.as_str());
        let body = match body {
            Some(body) => {
                builder = builder.header("content-type", "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        builder.body(body).unwrap()
    };

    // Seed: two GitHub jobs and a task.
    assert_eq!(
        app.deliver("issues", "seed-1", &labeled(1)).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.deliver("issues", "seed-2", &labeled(2)).await.0,
        StatusCode::ACCEPTED
    );
    let (_, created) = app
        .send(authed(
            "POST",
            "/tasks",
            Some(json!({"repo": "octo/app", "task": "x"})),
        ))
        .await;
    let task_id = created["id"].as_str().unwrap().to_string();
    let (_, page) = app.api_get("/jobs?repo=octo/app").await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1);

    // (operation, request, expected status)
    let cases: Vec<(&str, &str, Request<Body>, StatusCode)> = vec![
        (
            "get",
            "/health",
            Request::get("/health").body(Body::empty()).unwrap(),
            StatusCode::OK,
        ),
        (
            "get",
            "/openapi.json",
            Request::get("/openapi.json").body(Body::empty()).unwrap(),
            StatusCode::OK,
        ),
        (
            "post",
            "/webhook",
            signed_request("issues", "fresh", &labeled(3)),
            StatusCode::ACCEPTED,
        ),
        (
            "post",
            "/webhook",
            signed_request("issues", "fresh", &labeled(3)),
            StatusCode::OK,
        ),
        (
            "post",
            "/webhook",
            Request::post("/webhook").body(Body::from("{}")).unwrap(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "get",
            "/jobs",
            authed("GET", "/jobs?limit=2", None),
            StatusCode::OK,
        ),
        (
            "get",
            "/jobs",
            authed("GET", "/jobs?status=bogus", None),
            StatusCode::BAD_REQUEST,
        ),
        (
            "get",
            "/jobs",
            Request::get("/jobs").body(Body::empty()).unwrap(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "get",
            "/jobs/{id}",
            authed("GET", &format!("/jobs/{task_id}"), None),
            StatusCode::OK,
        ),
        (
            "get",
            "/jobs/{id}",
            authed("GET", "/jobs/nope", None),
            StatusCode::NOT_FOUND,
        ),
        (
            "post",
            "/tasks",
            authed(
                "POST",
                "/tasks",
                Some(json!({"repo": "octo/app", "task": "y", "budget": {"usd": 1}})),
            ),
            StatusCode::ACCEPTED,
        ),
        (
            "post",
            "/tasks",
            authed("POST", "/tasks", Some(json!({"task": ""}))),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "post",
            "/tasks",
            authed("POST", "/tasks", None),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "post",
            "/jobs/{id}/retry",
            authed("POST", &format!("/jobs/{task_id}/retry"), None),
            StatusCode::CONFLICT,
        ),
        (
            "post",
            "/jobs/{id}/cancel",
            authed("POST", &format!("/jobs/{task_id}/cancel"), None),
            StatusCode::ACCEPTED,
        ),
        (
            "post",
            "/jobs/{id}/cancel",
            authed("POST", "/jobs/nope/cancel", None),
            StatusCode::NOT_FOUND,
        ),
    ];
    let mut exercised = BTreeSet::new();
    for (method, path, request, expected) in cases {
        exercise(&app, &doc, &mut exercised, (method, path), request, expected).await;
    }

    // A job's memory and context: (operation, request, expected status, error code).
    let repo = retry_library();
    let notes = format!("/memory/{task_id}/notes");
    let files = format!("/memory/{task_id}/files");
    let context = format!("/jobs/{task_id}/context");
    let note = |title: &str| {
        json!({
            "type": "Constraint",
            "title": title,
            "body": "Never above 30 s.",
            "tags": ["retry"],
            "stepId": "step-1",
        })
    };
    let file = |name: &str, content: &str| json!({"name": name, "content": content});
    let not_json = |uri: &str| {
        Request::post(uri)
            .header("authorization", bearer.as_str())
            .body(Body::from("{}"))
            .unwrap()
    };
    let build = json!({
        "path": repo.path(),
        "task": "Cap the retry backoff",
        "step": {"title": "Cap backoff in retry.rs", "rationale": "Unbounded waits", "files": ["src/retry.rs"]},
        "job_id": task_id,
    });
    let with = |field: &str, value: Value| {
        let mut body = build.clone();
        body[field] = value;
        Some(body)
    };
    let big = file("big", &"x".repeat(orchestrator::server::API_MAX_BODY_BYTES)).to_string();
    let over_api_limit = Request::post(files.as_str())
        .header("authorization", bearer.as_str())
        .header("content-type", "application/json")
        .header("content-length", big.len())
        .body(Body::from(big))
        .unwrap();
    let ok = "";
    let memory_cases: Vec<(&str, &str, Request<Body>, StatusCode, &str)> = vec![
        (
            "get",
            "/memory/{job_id}/notes",
            authed("GET", &notes, None),
            StatusCode::OK,
            ok,
        ),
        (
            "post",
            "/memory/{job_id}/notes",
            authed("POST", &notes, Some(note("Backoff is capped"))),
            StatusCode::CREATED,
            ok,
        ),
        (
            "post",
            "/memory/{job_id}/notes",
            authed(
                "POST",
                &notes,
                Some(json!({"type": "Todo", "title": "Bare", "body": "b", "stepId": null})),
            ),
            StatusCode::CREATED,
            ok,
        ),
        (
            "post",
            "/memory/{job_id}/notes",
            authed(
                "POST",
                &notes,
                Some(json!({"type": "Opinion", "title": "x", "body": "y"})),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "post",
            "/memory/{job_id}/notes",
            authed(
                "POST",
                &notes,
                Some(json!({"type": "Todo", "title": "x", "body": "y", "colour": "red"})),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "post",
            "/memory/{job_id}/notes",
            authed(
                "POST",
                &notes,
                Some(json!({"type": "Todo", "title": "big", "body": "b".repeat(200)})),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "item_too_large",
        ),
        (
            "post",
            "/memory/{job_id}/notes",
            not_json(&notes),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "post",
            "/memory/{job_id}/notes",
            authed("POST", "/memory/nope/notes", Some(note("x"))),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "post",
            "/memory/{job_id}/notes",
            authed("POST", &notes, Some(note("Third"))),
            StatusCode::CREATED,
            ok,
        ),
        (
            "post",
            "/memory/{job_id}/notes",
            authed("POST", &notes, Some(note("Fourth"))),
            StatusCode::CONFLICT,
            "memory_full",
        ),
        (
            "get",
            "/memory/{job_id}/notes",
            authed("GET", &notes, None),
            StatusCode::OK,
            ok,
        ),
        (
            "get",
            "/memory/{job_id}/notes",
            authed("GET", "/memory/nope/notes", None),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "get",
            "/memory/{job_id}/notes",
            Request::get(notes.as_str()).body(Body::empty()).unwrap(),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "get",
            "/memory/{job_id}/files",
            authed("GET", &files, None),
            StatusCode::OK,
            ok,
        ),
        (
            "post",
            "/memory/{job_id}/files",
            authed("POST", &files, Some(file("plan.md", "# Plan"))),
            StatusCode::CREATED,
            ok,
        ),
        (
            "post",
            "/memory/{job_id}/files",
            authed("POST", &files, Some(file("plan.md", "# Plan v2"))),
            StatusCode::OK,
            ok,
        ),
        (
            "post",
            "/memory/{job_id}/files",
            authed("POST", &files, Some(file("", "x"))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "post",
            "/memory/{job_id}/files",
            authed("POST", &files, Some(json!({"name": "n"}))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "post",
            "/memory/{job_id}/files",
            authed("POST", &files, Some(file("big", &"x".repeat(201)))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "item_too_large",
        ),
        (
            "post",
            "/memory/{job_id}/files",
            over_api_limit,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            "post",
            "/memory/{job_id}/files",
            not_json(&files),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "post",
            "/memory/{job_id}/files",
            authed("POST", "/memory/nope/files", Some(file("a", "b"))),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "post",
            "/memory/{job_id}/files",
            authed("POST", &files, Some(file("b.md", "b"))),
            StatusCode::CREATED,
            ok,
        ),
        (
            "post",
            "/memory/{job_id}/files",
            authed("POST", &files, Some(file("c.md", "c"))),
            StatusCode::CREATED,
            ok,
        ),
        (
            "post",
            "/memory/{job_id}/files",
            authed("POST", &files, Some(file("d.md", "d"))),
            StatusCode::CONFLICT,
            "memory_full",
        ),
        (
            "get",
            "/memory/{job_id}/files",
            authed("GET", &files, None),
            StatusCode::OK,
            ok,
        ),
        (
            "get",
            "/memory/{job_id}/files",
            authed("GET", "/memory/nope/files", None),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "get",
            "/jobs/{id}/context",
            authed("GET", &context, None),
            StatusCode::OK,
            ok,
        ),
        (
            "get",
            "/jobs/{id}/context",
            authed("GET", "/jobs/nope/context", None),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "post",
            "/context/build",
            authed("POST", "/context/build", with("job_id", "nope".into())),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "post",
            "/context/build",
            authed("POST", "/context/build", with("path", "relative/checkout".into())),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_path",
        ),
        (
            "post",
            "/context/build",
            authed("POST", "/context/build", with("task", " ".into())),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_task",
        ),
        (
            "post",
            "/context/build",
            authed("POST", "/context/build", with("step", json!({"title": ""}))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_step",
        ),
        (
            "post",
            "/context/build",
            authed("POST", "/context/build", with("budget", json!(3))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "post",
            "/context/build",
            not_json("/context/build"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "post",
            "/context/build",
            Request::post("/context/build")
                .header("content-type", "application/json")
                .body(Body::from(build.to_string()))
                .unwrap(),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
    ];
    for (method, path, request, expected, code) in memory_cases {
        let (label, body) = exercise(&app, &doc, &mut exercised, (method, path), request, expected).await;
        if !code.is_empty() {
            assert_eq!(body["error"]["code"], code, "{label}: {body}");
        }
    }

    // A real build, with the job's notes offered; its diagnostics, stored as the
    // pipeline stores a step's, are what `GET /jobs/{id}/context` serves.
    let (status, built) = app
        .send(authed("POST", "/context/build", Some(build.clone())))
        .await;
    assert_eq!(status, StatusCode::OK, "{built}");
    check_answer(&doc, "post", "/context/build", status, &built, "build");
    let candidates = built["diagnostics"]["candidates"].as_array().unwrap();
    for source in ["task", "step", "file", "memory"] {
        assert!(
            candidates.iter().any(|c| c["source"] == source),
            "no {source} candidate: {candidates:?}"
        );
    }
    let diagnostics = [built["diagnostics"].to_string(), "null".to_string()];
    for (position, diagnostics) in diagnostics.into_iter().enumerate() {
        let metrics = StepContextMetrics {
            position: position as i64,
            step_title: format!("step {position}"),
            model: "gpt-4.1".into(),
            context_tokens: 100,
            prompt_tokens: 120,
            candidates: 4,
            kept: 3,
            diagnostics,
            created_at: now_millis(),
        };
        app.store.save_context_metrics(&task_id, &metrics).await.unwrap();
    }
    let (status, served) = app.api_get(&context).await;
    assert_eq!(status, StatusCode::OK, "{served}");
    check_answer(&doc, "get", "/jobs/{id}/context", status, &served, "context");
    assert_eq!(served["steps"][0]["diagnostics"], built["diagnostics"]);
    assert_eq!(served["steps"][1]["diagnostics"], Value::Null);

    // Once a worker has stopped it, the cancelled task can be retried.
    let pool = app.pool().await;
    sqlx::query("UPDATE jobs SET status = 'cancelled' WHERE id = $1")
        .bind(&task_id)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let request = authed("POST", &format!("/jobs/{task_id}/retry"), None);
    let (status, body) = app.send(request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    check_answer(&doc, "post", "/jobs/{id}/retry", status, &body, "retry");

    // A rate-limited answer, with its header.
    let limited = TestApp::with_env(&[("ORCH_API__RATE_PER_MINUTE", "1"), ("ORCH_API__BURST", "1")]).await;
    limited.api_get("/jobs").await;
    let (status, headers, bytes) = limited.send_raw(authed("GET", "/jobs", None)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.contains_key(header::RETRY_AFTER));
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    check_answer(&doc, "get", "/jobs", StatusCode::TOO_MANY_REQUESTS, &body, "429");

    // `/metrics` answers Prometheus text, not JSON: its documented media type
    // must be the one served.
    let (status, headers, _) = app
        .send_raw(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    let served_type = headers[header::CONTENT_TYPE].to_str().unwrap().to_string();
    let documented_types = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
        .as_object()
        .unwrap();
    assert!(
        documented_types.contains_key(&served_type),
        "/metrics serves {served_type}, documented: {documented_types:?}"
    );
    exercised.insert(("get".to_string(), "/metrics".to_string()));

    let missing: Vec<_> = documented(&doc).difference(&exercised).cloned().collect();
    assert!(
        missing.is_empty(),
        "documented operations without a real request in this test: {missing:?}"
    );
}

/// For other modules' real answers: the status is documented for the
/// operation and the body fits the served document.
pub(crate) async fn assert_documented(
    app: &TestApp,
    method: &str,
    path: &str,
    status: StatusCode,
    body: &Value,
) {
    let doc = served_document(app).await;
    check_answer(&doc, method, path, status, body, &format!("{method} {path}"));
}

/// Sends `request` for the operation `(method, path)`, expects `expected`
/// and an answer as documented, and records the operation as exercised.
/// Returns the request's label and the answer.
async fn exercise(
    app: &TestApp,
    doc: &Value,
    exercised: &mut BTreeSet<(String, String)>,
    (method, path): (&str, &str),
    request: Request<Body>,
    expected: StatusCode,
) -> (String, Value) {
    let label = format!("{} {}", request.method(), request.uri());
    let (status, body) = app.send(request).await;
    assert_eq!(status, expected, "{label}: {body}");
    check_answer(doc, method, path, status, &body, &label);
    exercised.insert((method.to_string(), path.to_string()));
    (label, body)
}

/// The answer's status is documented for the operation and its body fits the schema.
fn check_answer(doc: &Value, method: &str, path: &str, status: StatusCode, body: &Value, label: &str) {
    let operation = &doc["paths"][path][method];
    assert!(operation.is_object(), "{method} {path} is not documented");
    let response = resolve(doc, &operation["responses"][status.as_str()]);
    assert!(
        response.is_object(),
        "{label}: status {status} is not documented for {method} {path}"
    );
    let schema = &response["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "{label}: no JSON schema for {status}");
    if let Err(problem) = validate(doc, schema, body, "$", Fields::Documented) {
        panic!("{label}: the answer does not fit the schema: {problem}\n{body}");
    }
}

fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let target = doc
                .pointer(reference.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("dangling $ref {reference}"));
            resolve(doc, target)
        }
        None => value,
    }
}

/// Whether an object may carry a field its schema's `properties` do not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fields {
    /// As JSON Schema says: unless `additionalProperties` is false.
    AsSchema,
    /// Never: the document must name every field the server sends.
    Documented,
}

fn validate(doc: &Value, schema: &Value, value: &Value, at: &str, fields: Fields) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
        let fitting = branches
            .iter()
            .filter(|branch| validate(doc, branch, value, at, fields).is_ok())
            .count();
        if fitting != 1 {
            return Err(format!("{at}: {value} fits {fitting} branches of oneOf, not one"));
        }
    }
    if let Some(branches) = schema.get("anyOf").and_then(Value::as_array)
        && !branches
            .iter()
            .any(|branch| validate(doc, branch, value, at, fields).is_ok())
    {
        return Err(format!("{at}: {value} fits no branch of anyOf"));
    }
    if let Some(types) = schema.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => return Err(format!("{at}: bad type in schema")),
        };
        let fits = allowed.iter().any(|t| match *t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => false,
        });
        if !fits {
            return Err(format!("{at}: {value} is not {allowed:?}"));
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {options:?}"));
    }
    if let Some(constant) = schema.get("const")
        && constant != value
    {
        return Err(format!("{at}: {value} is not {constant}"));
    }
    if let (Some(minimum), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), value.as_f64())
        && n < minimum
    {
        return Err(format!("{at}: {n} is below {minimum}"));
    }
    if let Some(object) = value.as_object() {
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = name.as_str().unwrap();
            if !object.contains_key(name) {
                return Err(format!("{at}: required `{name}` is missing"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (name, v) in object {
            match properties.and_then(|p| p.get(name)) {
                Some(sub) => validate(doc, sub, v, &format!("{at}.{name}"), fields)?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at}: `{name}` is not allowed"));
                }
                None if fields == Fields::Documented && properties.is_some() => {
                    return Err(format!("{at}: `{name}` is not documented"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            validate(doc, items, item, &format!("{at}[{i}]"), fields)?;
        }
    }
    Ok(())
}

#[test]
fn the_checker_refuses_what_does_not_fit() {
    let doc: Value = serde_json::from_str(orchestrator::server::openapi::SOURCE).unwrap();
    let fits = |schema: &Value, value: Value| validate(&doc, schema, &value, "$", Fields::AsSchema).is_ok();
    let error = json!({"$ref": "#/components/schemas/Error"});
    assert!(fits(&error, json!({"error": {"code": "x", "message": "y"}})));
    assert!(!fits(&error, json!({"error": {"code": "x"}})));
    assert!(!fits(&error, json!({"error": {"code": 1, "message": "y"}})));
    let job = json!({"$ref": "#/components/schemas/Job"});
    assert!(!fits(&job, json!({"id": "x"})));
    let status = json!({"$ref": "#/components/schemas/JobStatus"});
    assert!(fits(&status, json!("queued")));
    assert!(!fits(&status, json!("sleeping")));
    let nullable = json!({"type": ["string", "null"]});
    assert!(fits(&nullable, Value::Null));
    assert!(!fits(&nullable, json!(3)));

    let one_of = json!({"oneOf": [{"type": "integer"}, {"type": "number"}]});
    assert!(fits(&one_of, json!(1.5)));
    assert!(!fits(&one_of, json!(1)), "fits both branches");
    assert!(!fits(&one_of, json!("1")), "fits neither");
    let any_of = json!({"anyOf": [{"type": "integer"}, {"type": "number"}]});
    assert!(fits(&any_of, json!(1)));
    assert!(!fits(&any_of, json!("1")));
    let nullable_ref = json!({"oneOf": [{"$ref": "#/components/schemas/Error"}, {"type": "null"}]});
    assert!(fits(&nullable_ref, Value::Null));
    assert!(!fits(&nullable_ref, json!({"error": {}})));

    let limits = json!({"$ref": "#/components/schemas/MemoryLimits"});
    let extra = json!({"max_items": 1, "max_item_bytes": 2, "max_total_bytes": 3, "max_files": 4});
    assert!(fits(&limits, extra.clone()), "JSON Schema allows more fields");
    let problem = validate(&doc, &limits, &extra, "$", Fields::Documented).unwrap_err();
    assert!(problem.contains("`max_files` is not documented"), "{problem}");
    let closed = json!({"$ref": "#/components/schemas/FileRequest"});
    assert!(!fits(&closed, json!({"name": "a", "content": "b", "mode": 1})));
}
