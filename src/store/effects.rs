//! What recording a delivery writes, independent of the SQL driver: outbox
//! payloads, job events and the outcome text stored with the delivery. Both
//! intake paths (sqlx for PostgreSQL, the SQLite writer thread) use these, so
//! they cannot drift apart.

use serde_json::{Value, json};

use crate::jobs::JobStatus;
use crate::webhook::intake::{
    ControlRequest, ControlTarget, InstallationChange, InstallationStatus, IssueRef, JobRequest, ReplyKind,
    ReplyRequest,
};

/// Replies anyone can ask for (help, status, usage, issue closed) are sent
/// at most once per issue in this window.
pub const REPLY_RATE_WINDOW_MS: i64 = 60_000;

pub fn job_status(request: &JobRequest) -> JobStatus {
    if request.rejection.is_some() {
        JobStatus::Rejected
    } else {
        JobStatus::Queued
    }
}

/// The first event of a new job: `(kind, message)`.
pub fn job_created_event(request: &JobRequest) -> (&'static str, String) {
    match &request.rejection {
        Some(reason) => ("rejected", reason.clone()),
        None => (
            "created",
            format!(
                "{} trigger by @{}",
                request.trigger.as_str(),
                request.sender_login
            ),
        ),
    }
}

pub fn job_outcome(status: JobStatus, id: &str) -> String {
    match status {
        JobStatus::Rejected => format!("job_rejected: {id}"),
        _ => format!("job_created: {id}"),
    }
}

pub fn already_running_payload(request: &JobRequest, running: &str) -> Value {
    json!({
        "job_id": running,
        "requester": request.sender_login,
        "comment_id": request.trigger_comment_id,
    })
}

pub fn reply_payload(reply: &ReplyRequest) -> Value {
    match &reply.kind {
        ReplyKind::Usage { word, suggestion } => json!({
            "requester": reply.requester,
            "comment_id": reply.comment_id,
            "word": word,
            "suggestion": suggestion,
        }),
        ReplyKind::NotPermitted { command } => json!({
            "requester": reply.requester,
            "comment_id": reply.comment_id,
            "command": command,
        }),
        _ => json!({"requester": reply.requester, "comment_id": reply.comment_id}),
    }
}

pub fn control_payload(control: &ControlRequest) -> Value {
    json!({
        "requester": control.sender_login,
        "requester_id": control.sender_id,
        "comment_id": control.comment_id,
    })
}

pub fn installation_outcome(change: &InstallationChange) -> String {
    match change.status.map(InstallationStatus::as_str) {
        Some(status) => format!("installation: {status}"),
        None => format!(
            "installation: repositories +{} -{}",
            change.repos_added.len(),
            change.repos_removed.len()
        ),
    }
}

/// `Some(outcome)` when an installation in `status` may not start work.
pub fn blocked_by_installation(status: Option<&str>) -> Option<String> {
    match status {
        None | Some("active") => None,
        Some(other) => Some(format!("ignored: installation {other}")),
    }
}

/// The columns of an outbox row that vary by route.
#[derive(Debug, Clone, Copy)]
pub struct OutboxRow<'a> {
    pub kind: &'a str,
    pub installation_id: u64,
    pub repo: &'a str,
    pub issue_number: Option<u64>,
    pub job_id: Option<&'a str>,
}

impl<'a> OutboxRow<'a> {
    /// A row about an issue (and possibly its running job).
    pub fn for_issue(kind: &'a str, issue: &'a IssueRef, job_id: Option<&'a str>) -> OutboxRow<'a> {
        OutboxRow {
            kind,
            installation_id: issue.installation_id,
            repo: &issue.repo,
            issue_number: Some(issue.issue_number),
            job_id,
        }
    }

    /// A cancel/retry request: about an issue, or a job named by its check run.
    pub fn for_control(control: &'a ControlRequest) -> OutboxRow<'a> {
        let kind = control.kind.as_str();
        match &control.target {
            ControlTarget::Issue(issue) => OutboxRow::for_issue(kind, issue, None),
            ControlTarget::Job {
                installation_id,
                repo,
                job_id,
            } => OutboxRow {
                kind,
                installation_id: *installation_id,
                repo,
                issue_number: None,
                job_id: Some(job_id),
            },
        }
    }
}
