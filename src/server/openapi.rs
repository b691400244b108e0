//! `GET /openapi.json`: the OpenAPI 3.1 description of the HTTP interface,
//! written by hand in `openapi.json` beside this file and served as it is
//! (with the crate's version). Every route the router serves must be
//! described there: the integration test `openapi::every_route_is_described`
//! fails otherwise, and it checks real answers against the schemas.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// The document as written.
pub const SOURCE: &str = include_str!("openapi.json");

/// The document with `info.version` set to this build's version.
pub fn document_json() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        // The file is checked by a unit test; a broken edit fails the build's tests.
        let mut document: Value = serde_json::from_str(SOURCE).unwrap_or(Value::Null);
        if let Some(info) = document.get_mut("info").and_then(Value::as_object_mut) {
            info.insert("version".into(), Value::from(env!("CARGO_PKG_VERSION")));
        }
        document
    })
}

/// The handler; no authentication (it describes, it reveals nothing).
pub async fn document() -> Response {
    static BODY: OnceLock<String> = OnceLock::new();
    let body = BODY.get_or_init(|| document_json().to_string());
    ([(header::CONTENT_TYPE, "application/json")], body.as_str()).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_document_parses_and_every_reference_resolves() {
        let parsed: Value = serde_json::from_str(SOURCE).unwrap();
        assert_eq!(parsed["openapi"], "3.1.0");
        assert_eq!(document_json()["info"]["version"], env!("CARGO_PKG_VERSION"));
        let mut refs = Vec::new();
        collect_refs(&parsed, &mut refs);
        assert!(!refs.is_empty());
        for reference in refs {
            let pointer = reference.strip_prefix('#').unwrap();
            assert!(parsed.pointer(pointer).is_some(), "dangling $ref {reference}");
        }
    }

    fn collect_refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r.clone()),
                        _ => collect_refs(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }
}
