//! The JSON API (DESIGN §5): jobs, memory and context, behind the API token.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, auth, memory, rate_limit, tasks};
use crate::jobs::JobStatus;
use crate::store::JobFilter;

pub(super) fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/jobs", get(list_jobs))
        .route("/jobs/{id}", get(get_job))
        .route("/tasks", post(tasks::create_task))
        .route("/jobs/{id}/cancel", post(tasks::cancel_job))
        .route("/jobs/{id}/retry", post(tasks::retry_job))
        .route("/jobs/{id}/context", get(memory::job_context))
        .route("/context/build", post(memory::build))
        .route(
            "/memory/{job_id}/notes",
            get(memory::list_notes).post(memory::add_note),
        )
        .route(
            "/memory/{job_id}/files",
            get(memory::list_files).post(memory::put_file),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_token,
        ))
        // Outside the token check, so guessing tokens is limited too.
        .route_layer(middleware::from_fn_with_state(
            state.rate_limits.api.clone(),
            rate_limit::enforce,
        ))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    repo: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list_jobs(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            JobStatus::parse(s)
                .ok_or_else(|| ApiError::bad_request("invalid_status", format!("unknown status {s:?}")))?,
        ),
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request("invalid_limit", "limit must be 1..=100"));
    }
    let cursor = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(
            decode_cursor(c).ok_or_else(|| ApiError::bad_request("invalid_cursor", "malformed cursor"))?,
        ),
    };
    let filter = JobFilter {
        status,
        repo: q.repo.filter(|r| !r.is_empty()),
        limit,
        cursor,
    };
    let page = state.store.list_jobs(&filter).await?;
    Ok(Json(json!({
        "jobs": page.jobs,
        "next_cursor": page.next_cursor.map(|(at, id)| encode_cursor(at, &id)),
    })))
}

async fn get_job(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    match state.store.get_job(&id).await? {
        Some(job) => Ok(Json(json!(job))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no job {id}"),
        )),
    }
}

/// Cursors are opaque to clients: `<created_at ms>.<job id>` (the dashboard's too).
pub(super) fn encode_cursor(created_at: i64, id: &str) -> String {
    format!("{created_at}.{id}")
}

pub(super) fn decode_cursor(cursor: &str) -> Option<(i64, String)> {
    let (at, id) = cursor.split_once('.')?;
    let at = at.parse().ok()?;
    (!id.is_empty() && id.len() <= 64).then(|| (at, id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor(1_700_000_000_000, "3f1c");
        assert_eq!(decode_cursor(&c), Some((1_700_000_000_000, "3f1c".into())));
        assert_eq!(decode_cursor("nope"), None);
        assert_eq!(decode_cursor("x.id"), None);
        assert_eq!(decode_cursor("12."), None);
    }
}
