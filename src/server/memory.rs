//! A job's memory and context over the API: `GET|POST /memory/{job}/notes`,
//! `GET|POST /memory/{job}/files`, `GET /jobs/{id}/context` and
//! `POST /context/build`.
//!
//! Status codes: 404 for an unknown job, 422 for a field that breaks the
//! schema (or a body that is not the expected JSON), 413 for a note or file
//! larger than `memory.max_item_bytes`, 409 when the job's memory is at
//! `memory.max_items` or a write would pass `memory.max_total_bytes`. A body
//! not sent as JSON (415) or over the API's body limit (413) is refused as
//! on every other JSON route.

use std::path::PathBuf;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use orchestrator_context::{ContextRequest, IndexOptions, RepoIndex, StepInput, build_context};
use serde::Deserialize;
use serde_json::{Value, json};

use super::tasks::MAX_TASK_CHARS;
use super::{ApiError, AppState};
use crate::jobs::rfc3339;
use crate::memory::{FileInput, FileView, Memory, MemoryError, NoteInput, NoteView};

fn memory(state: &AppState) -> Memory {
    Memory::new(state.store.clone(), &state.config)
}

fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

fn no_job(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no job {id}"))
}

impl From<MemoryError> for ApiError {
    fn from(err: MemoryError) -> ApiError {
        match err {
            MemoryError::Invalid { .. } => unprocessable("invalid_field", err.to_string()),
            MemoryError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "item_too_large", err.to_string())
            }
            MemoryError::Full(message) => ApiError::new(StatusCode::CONFLICT, "memory_full", message),
            MemoryError::NoJob(id) => no_job(&id),
            MemoryError::Store(err) => err.into(),
            MemoryError::Io(err) => {
                tracing::error!(error = %err, "memory archive I/O failed");
                ApiError::internal("internal error, see the server log")
            }
        }
    }
}

fn limits_json(memory: &Memory) -> Value {
    let l = memory.limits();
    json!({
        "max_items": l.max_items,
        "max_item_bytes": l.max_item_bytes,
        "max_total_bytes": l.max_total_bytes,
    })
}

pub(super) async fn list_notes(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let memory = memory(&state);
    let (notes, usage) = memory.notes(&job_id).await?;
    let notes: Vec<NoteView> = notes.iter().map(NoteView::from).collect();
    Ok(Json(json!({
        "notes": notes,
        "items": usage.items,
        "bytes": usage.bytes,
        "limits": limits_json(&memory),
    })))
}

pub(super) async fn add_note(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    body: Result<Json<NoteInput>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(input) = body.map_err(ApiError::from_json_rejection)?;
    let added = memory(&state).add_note(&job_id, &input, None).await?;
    let archived = added.archived.map(|a| a.archived).unwrap_or(0);
    Ok((
        StatusCode::CREATED,
        Json(json!({"note": NoteView::from(&added.note), "archived": archived})),
    ))
}

pub(super) async fn list_files(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let memory = memory(&state);
    let files = memory.files(&job_id).await?;
    let views: Vec<FileView> = files.iter().map(FileView::from).collect();
    Ok(Json(json!({"files": views, "limits": limits_json(&memory)})))
}

pub(super) async fn put_file(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    body: Result<Json<FileInput>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(input) = body.map_err(ApiError::from_json_rejection)?;
    let (file, created) = memory(&state).put_file(&job_id, &input).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"file": FileView::from(&file)}))))
}

/// The stored context diagnostics of each step of the job.
pub(super) async fn job_context(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if !state.store.job_exists(&job_id).await? {
        return Err(no_job(&job_id));
    }
    let rows = state.store.context_metrics(&job_id).await?;
    let steps: Vec<Value> = rows
        .into_iter()
        .map(|m| {
            let diagnostics: Value = serde_json::from_str(&m.diagnostics).unwrap_or(Value::Null);
            json!({
                "step": m.position + 1,
                "title": m.step_title,
                "model": m.model,
                "context_tokens": m.context_tokens,
                "prompt_tokens": m.prompt_tokens,
                "candidates": m.candidates,
                "kept": m.kept,
                "created_at": rfc3339(m.created_at),
                "diagnostics": diagnostics,
            })
        })
        .collect();
    Ok(Json(json!({"job_id": job_id, "steps": steps})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BuildRequest {
    /// A local checkout (absolute path).
    path: String,
    task: String,
    step: BuildStep,
    /// Offer this job's memory notes, step summaries and artifacts too.
    #[serde(default)]
    job_id: Option<String>,
    /// The model whose tokenizer counts; the coder's by default.
    #[serde(default)]
    model: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildStep {
    title: String,
    #[serde(default)]
    rationale: String,
    #[serde(default)]
    acceptance: String,
    #[serde(default)]
    files: Vec<String>,
}

/// Builds a context on demand, as the pipeline would for that step.
pub(super) async fn build(
    State(state): State<AppState>,
    body: Result<Json<BuildRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(request) = body.map_err(ApiError::from_json_rejection)?;
    let root = PathBuf::from(&request.path);
    if !root.is_absolute() || !root.is_dir() {
        return Err(unprocessable(
            "invalid_path",
            "path must be an absolute path to a directory",
        ));
    }
    if request.task.trim().is_empty() || request.task.chars().count() > MAX_TASK_CHARS {
        return Err(unprocessable(
            "invalid_task",
            format!("task must have 1 to {MAX_TASK_CHARS} characters"),
        ));
    }
    if request.step.title.trim().is_empty() {
        return Err(unprocessable("invalid_step", "step.title must not be empty"));
    }
    let config = &state.config;
    let mut context_request = ContextRequest {
        model: request.model.unwrap_or_else(|| config.models.coder.clone()),
        task: request.task,
        step: StepInput {
            title: request.step.title,
            rationale: request.step.rationale,
            acceptance: request.step.acceptance,
            files: request.step.files,
        },
        ..ContextRequest::default()
    };
    if let Some(job_id) = &request.job_id {
        let recalled = crate::memory::recall(&state.store, job_id, None)
            .await
            .map_err(|err| match err {
                MemoryError::NoJob(id) => no_job(&id),
                other => other.into(),
            })?;
        context_request.memory = recalled.memory;
        context_request.history = recalled.history;
        context_request.artifacts_dir = Some(config.data_dir.join("artifacts").join(job_id));
    }
    let settings = crate::pipeline::execute::context_settings(config);
    let cache = config.data_dir.join("indexes");
    let options = IndexOptions {
        max_file_bytes: config.context.max_file_bytes,
    };
    // The engine is synchronous and CPU-bound: off the async workers.
    let built = tokio::task::spawn_blocking(move || {
        let (index, _) = RepoIndex::open(&root, &cache, &options)?;
        Ok::<_, orchestrator_context::ContextError>(build_context(&index, &context_request, &settings))
    })
    .await
    .map_err(|e| ApiError::internal(format!("context build stopped: {e}")))?
    .map_err(|e| unprocessable("index_failed", format!("cannot index {}: {e}", request.path)))?;
    Ok(Json(json!({
        "text": built.text,
        "items": built.items,
        "diagnostics": built.diagnostics,
    })))
}
