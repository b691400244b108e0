//! Steering jobs through the API: `POST /tasks`, `POST /jobs/{id}/cancel`,
//! `POST /jobs/{id}/retry` (DESIGN §5). Each only writes a row; workers do
//! the rest.

use std::path::Path as FsPath;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::jobs::{JobStatus, Trigger, now_millis};
use crate::store::{NewTask, RetryOutcome};

/// Longest task text accepted.
pub const MAX_TASK_CHARS: usize = 20_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TaskRequest {
    repo: Option<String>,
    path: Option<String>,
    task: String,
    #[serde(default)]
    budget: Option<BudgetOverride>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetOverride {
    usd: Option<f64>,
    requests: Option<u32>,
    minutes: Option<u32>,
}

fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

pub(super) async fn create_task(
    State(state): State<AppState>,
    body: Result<Json<TaskRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(request) = body.map_err(ApiError::from_json_rejection)?;
    let task = validate(&state, request)?;
    let id = state.store.create_task_job(&task, now_millis()).await?;
    tracing::info!(job = %id, "task queued");
    Ok((StatusCode::ACCEPTED, Json(json!({"id": id}))))
}

fn validate(state: &AppState, request: TaskRequest) -> Result<NewTask, ApiError> {
    if request.task.trim().is_empty() {
        return Err(unprocessable("invalid_task", "task must not be empty"));
    }
    let chars = request.task.chars().count();
    if chars > MAX_TASK_CHARS {
        return Err(unprocessable(
            "task_too_long",
            format!("task has {chars} characters; at most {MAX_TASK_CHARS} are accepted"),
        ));
    }
    let (repo, local_path) = match (request.repo, request.path) {
        (Some(repo), None) => (Some(valid_repo(&repo)?), None),
        (None, Some(path)) => (None, Some(valid_path(&path)?)),
        _ => {
            return Err(unprocessable(
                "invalid_target",
                "give exactly one of \"repo\" and \"path\"",
            ));
        }
    };
    let defaults = &state.config.budget;
    let budget = request.budget.unwrap_or_default();
    let usd = budget.usd.unwrap_or(defaults.usd);
    if !(usd.is_finite() && usd > 0.0) {
        return Err(unprocessable(
            "invalid_budget",
            "budget.usd must be a positive number",
        ));
    }
    let requests = budget.requests.unwrap_or(defaults.requests);
    let minutes = budget.minutes.unwrap_or(defaults.minutes);
    if requests == 0 || minutes == 0 {
        return Err(unprocessable(
            "invalid_budget",
            "budget.requests and budget.minutes must be positive",
        ));
    }
    Ok(NewTask {
        trigger: Trigger::Api,
        repo,
        local_path,
        task: request.task,
        requester: "api".into(),
        budget_usd: usd,
        budget_requests: requests,
        budget_minutes: minutes,
        dry_run: state.config.dry_run,
    })
}

fn valid_repo(repo: &str) -> Result<String, ApiError> {
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match repo.split_once('/') {
        Some((owner, name)) if ok_part(owner) && ok_part(name) && name != "." && name != ".." => {
            Ok(repo.to_string())
        }
        _ => Err(unprocessable(
            "invalid_repo",
            format!("repo must be \"owner/name\", got {repo:?}"),
        )),
    }
}

fn valid_path(path: &str) -> Result<String, ApiError> {
    let p = FsPath::new(path);
    if !p.is_absolute() {
        return Err(unprocessable("invalid_path", "path must be absolute"));
    }
    if !p.is_dir() {
        return Err(unprocessable(
            "invalid_path",
            format!("{path} is not a directory"),
        ));
    }
    Ok(path.to_string())
}

pub(super) async fn cancel_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let status = existing(&state, &id).await?;
    if !status.is_active() {
        return Err(conflict(&id, status, "has ended"));
    }
    if state.store.request_cancel(&id, now_millis()).await? {
        Ok((
            StatusCode::ACCEPTED,
            Json(json!({"id": id, "cancel_requested": true})),
        ))
    } else {
        let status = existing(&state, &id).await?;
        Err(conflict(&id, status, "has ended"))
    }
}

pub(super) async fn retry_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let status = existing(&state, &id).await?;
    match state.store.retry_job(&id, now_millis()).await? {
        RetryOutcome::Queued { attempt } => {
            Ok((StatusCode::ACCEPTED, Json(json!({"id": id, "attempt": attempt}))))
        }
        RetryOutcome::NotRetryable => Err(conflict(&id, status, "is not failed or cancelled")),
        RetryOutcome::IssueBusy => Err(ApiError::new(
            StatusCode::CONFLICT,
            "issue_busy",
            format!("another job is active on the issue of job {id}"),
        )),
    }
}

async fn existing(state: &AppState, id: &str) -> Result<JobStatus, ApiError> {
    state
        .store
        .job_status(id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no job {id}")))
}

fn conflict(id: &str, status: JobStatus, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "conflict",
        format!("job {id} {what} (status {})", status.as_str()),
    )
}
