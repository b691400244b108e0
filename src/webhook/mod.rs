//! `POST /webhook`: verify, record once, route.
//!
//! Checks, in this order, and nothing is stored for any refusal (DESIGN §4):
//! body over 25 MiB → 413; missing or wrong `X-Hub-Signature-256` → 401;
//! missing `X-GitHub-Event` / `X-GitHub-Delivery`, or a body that is not a JSON
//! object → 400. Otherwise the delivery and its effect are committed before
//! the answer: new → 202, already seen → 200. Nothing on this path calls
//! GitHub, git or an LLM.

pub mod intake;
pub mod payload;
pub mod signature;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::{Instrument, info_span};

use crate::server::{ApiError, AppState};
use crate::store::{NewDelivery, Recorded};
use intake::IntakeSettings;
use payload::Event;

/// GitHub caps webhook payloads at 25 MB.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// Delivery ids are GUIDs; anything much longer is not from GitHub.
const MAX_DELIVERY_ID_LEN: usize = 128;

/// The event label of deliveries refused before their signature was
/// checked: their `X-GitHub-Event` header may come from anyone.
const UNVERIFIED: &str = "unverified";

/// The axum handler for `POST /webhook`.
pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "body_too_large"
            } else {
                "bad_body"
            };
            crate::metrics::webhook_delivery(UNVERIFIED, code);
            return ApiError::new(status, code, rejection.body_text()).into_response();
        }
    };
    let delivery_id = header_str(&headers, "x-github-delivery")
        .unwrap_or("")
        .to_string();
    let event = header_str(&headers, "x-github-event").unwrap_or("").to_string();
    let span = info_span!("webhook", delivery = %delivery_id, event = %event);
    handle(state, headers, body, delivery_id, event)
        .instrument(span)
        .await
}

async fn handle(
    state: AppState,
    headers: HeaderMap,
    body: Bytes,
    delivery_id: String,
    event: String,
) -> Response {
    let signature = headers.get("x-hub-signature-256").map(|v| v.as_bytes());
    if let Err(err) = signature::verify(&state.webhook_secrets, signature, &body) {
        tracing::warn!(reason = %err, "webhook refused");
        crate::metrics::webhook_delivery(UNVERIFIED, "bad_signature");
        return ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", err.to_string()).into_response();
    }
    if event.is_empty() || delivery_id.is_empty() || delivery_id.len() > MAX_DELIVERY_ID_LEN {
        crate::metrics::webhook_delivery(&event, "missing_headers");
        return ApiError::bad_request(
            "missing_headers",
            "X-GitHub-Event and X-GitHub-Delivery are required",
        )
        .into_response();
    }
    let (parsed, shape_error) = match Event::parse(&event, &body) {
        Ok(parsed) => parsed,
        Err(err) => {
            crate::metrics::webhook_delivery(&event, "invalid_json");
            return ApiError::bad_request("invalid_json", err.to_string()).into_response();
        }
    };
    if let Some(reason) = &shape_error {
        tracing::warn!(%reason, "payload did not match the expected shape; recorded only");
    }
    let envelope = parsed.envelope();
    let settings = IntakeSettings {
        trigger_label: &state.config.github.trigger_label,
        bot_user_id: state.identity.bot_user_id(),
        app_id: state.config.github.app_id,
    };
    let route = match shape_error {
        Some(reason) => intake::Route::Ignore(format!("unexpected payload shape: {reason}")),
        None => intake::route(&parsed, &settings),
    };
    let delivery = NewDelivery {
        delivery_id: &delivery_id,
        event: &event,
        envelope: &envelope,
        payload: &body,
        received_at: crate::jobs::now_millis(),
    };
    match state
        .store
        .record_delivery(&delivery, &route, &state.job_defaults)
        .await
    {
        Ok(Recorded::New { outcome }) => {
            tracing::info!(%outcome, "delivery recorded");
            crate::metrics::webhook_delivery(&event, &outcome);
            (
                StatusCode::ACCEPTED,
                Json(json!({"delivery": delivery_id, "outcome": outcome})),
            )
                .into_response()
        }
        Ok(Recorded::Duplicate) => {
            tracing::info!("duplicate delivery ignored");
            crate::metrics::webhook_delivery(&event, "duplicate");
            (
                StatusCode::OK,
                Json(json!({"delivery": delivery_id, "duplicate": true})),
            )
                .into_response()
        }
        Err(err) => {
            tracing::error!(error = %err, "could not record delivery");
            crate::metrics::webhook_delivery(&event, "store_error");
            ApiError::internal("could not record the delivery").into_response()
        }
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}
