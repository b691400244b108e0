//! `/openapi.json` describes exactly the routes the server has, and real
//! answers fit the documented schemas (a small JSON Schema checker below:
//! `$ref`, `type`, `required`, `properties`, `additionalProperties`, `items`,
//! `enum`, `const`, `minimum`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::*;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn served_document(app: &TestApp) -> Value {
    let request = Request::get("/openapi.json").body(Body::empty()).unwrap();
    let response = app.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
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
        let uri = path.replace("{id}", "no-such-job");
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
    let app = TestApp::new().await;
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
        let label = format!("{} {}", request.method(), request.uri());
        let (status, body) = app.send(request).await;
        assert_eq!(status, expected, "{label}: {body}");
        check_answer(&doc, method, path, status, &body, &label);
        exercised.insert((method.to_string(), path.to_string()));
    }

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
    let response = limited
        .router
        .clone()
        .oneshot(authed("GET", "/jobs", None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    check_answer(&doc, "get", "/jobs", StatusCode::TOO_MANY_REQUESTS, &body, "429");

    let missing: Vec<_> = documented(&doc).difference(&exercised).cloned().collect();
    assert!(
        missing.is_empty(),
        "documented operations without a real request in this test: {missing:?}"
    );
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
    if let Err(problem) = validate(doc, schema, body, "$") {
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

fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
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
                Some(sub) => validate(doc, sub, v, &format!("{at}.{name}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at}: `{name}` is not allowed"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            validate(doc, items, item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

#[test]
fn the_checker_refuses_what_does_not_fit() {
    let doc: Value = serde_json::from_str(orchestrator::server::openapi::SOURCE).unwrap();
    let error = json!({"$ref": "#/components/schemas/Error"});
    assert!(
        validate(
            &doc,
            &error,
            &json!({"error": {"code": "x", "message": "y"}}),
            "$"
        )
        .is_ok()
    );
    assert!(validate(&doc, &error, &json!({"error": {"code": "x"}}), "$").is_err());
    assert!(validate(&doc, &error, &json!({"error": {"code": 1, "message": "y"}}), "$").is_err());
    let job = json!({"$ref": "#/components/schemas/Job"});
    assert!(validate(&doc, &job, &json!({"id": "x"}), "$").is_err());
    let status = json!({"$ref": "#/components/schemas/JobStatus"});
    assert!(validate(&doc, &status, &json!("queued"), "$").is_ok());
    assert!(validate(&doc, &status, &json!("sleeping"), "$").is_err());
    let nullable = json!({"type": ["string", "null"]});
    assert!(validate(&doc, &nullable, &Value::Null, "$").is_ok());
    assert!(validate(&doc, &nullable, &json!(3), "$").is_err());
}
