//! Recording a delivery and its effect in one transaction: exactly once.
//!
//! The delivery row is inserted first with `ON CONFLICT DO NOTHING`; when no
//! row comes back the delivery id is already known, the transaction is rolled
//! back and nothing happens twice. Otherwise the route is applied (job row,
//! outbox row or installation change) and the outcome is stored on the
//! delivery, all before the commit that precedes the HTTP answer.

use serde_json::json;
use sqlx::{Any, Transaction};

use super::{Result, Store};
use crate::jobs::{JobStatus, UnixMillis};
use crate::webhook::intake::{
    ControlRequest, ControlTarget, InstallationChange, InstallationStatus, JobRequest,
    ReplyRequest, Route,
};
use crate::webhook::payload::EnvelopeFields;

/// Replies anyone can ask for (help, status, usage) are sent at most once per
/// issue in this window.
pub const REPLY_RATE_WINDOW_MS: i64 = 60_000;

/// A verified delivery, as recorded.
#[derive(Debug, Clone)]
pub struct NewDelivery<'a> {
    pub delivery_id: &'a str,
    pub event: &'a str,
    pub envelope: &'a EnvelopeFields,
    pub payload: &'a [u8],
    pub received_at: UnixMillis,
}

/// Budgets and mode every new job starts with.
#[derive(Debug, Clone, Copy)]
pub struct JobDefaults {
    pub budget_usd: f64,
    pub budget_requests: u32,
    pub budget_minutes: u32,
    pub dry_run: bool,
}

/// What recording did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// First time this delivery id was seen; `outcome` says what it caused.
    New { outcome: String },
    /// Seen before: nothing was written.
    Duplicate,
}

type Tx = Transaction<'static, Any>;

impl Store {
    /// Records `delivery` and applies `route`, exactly once per delivery id.
    pub async fn record_delivery(
        &self,
        delivery: &NewDelivery<'_>,
        route: &Route,
        defaults: &JobDefaults,
    ) -> Result<Recorded> {
        let mut tx = self.write.begin().await?;
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO deliveries (delivery_id, event, action, installation_id, repo, sender_login, \
             sender_id, received_at, payload, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, '') \
             ON CONFLICT (delivery_id) DO NOTHING RETURNING id",
        )
        .bind(delivery.delivery_id)
        .bind(delivery.event)
        .bind(delivery.envelope.action.as_deref())
        .bind(delivery.envelope.installation_id.map(to_i64))
        .bind(delivery.envelope.repo.as_deref())
        .bind(delivery.envelope.sender_login.as_deref())
        .bind(delivery.envelope.sender_id.map(to_i64))
        .bind(delivery.received_at)
        .bind(delivery.payload)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row_id) = inserted else {
            tx.rollback().await?;
            return Ok(Recorded::Duplicate);
        };
        let now = delivery.received_at;
        if let Some(installation_id) = delivery.envelope.installation_id {
            ensure_installation(&mut tx, installation_id, now).await?;
        }
        let outcome = apply_route(&mut tx, route, delivery.delivery_id, defaults, now).await?;
        sqlx::query("UPDATE deliveries SET outcome = $1 WHERE id = $2")
            .bind(outcome.as_str())
            .bind(row_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Recorded::New { outcome })
    }

    /// The routing outcome recorded for a delivery, if it is known.
    pub async fn delivery_outcome(&self, delivery_id: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT outcome FROM deliveries WHERE delivery_id = $1")
                .bind(delivery_id)
                .fetch_optional(&self.read)
                .await?,
        )
    }

    /// How many deliveries are recorded (for tests and diagnostics).
    pub async fn count_deliveries(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM deliveries")
            .fetch_one(&self.read)
            .await?)
    }

    /// An installation's status: `active`, `suspended` or `deleted`.
    pub async fn installation_status(&self, id: u64) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT status FROM installations WHERE id = $1")
                .bind(to_i64(id))
                .fetch_optional(&self.read)
                .await?,
        )
    }

    /// Pending outbox rows as `(kind, repo, issue_number, payload)`, oldest first.
    pub async fn pending_outbox(&self) -> Result<Vec<(String, String, Option<i64>, String)>> {
        Ok(sqlx::query_as(
            "SELECT kind, repo, issue_number, payload FROM outbox WHERE sent_at IS NULL ORDER BY id",
        )
        .fetch_all(&self.read)
        .await?)
    }
}

/// GitHub ids fit in i64 (the databases' integer type); clamp the impossible rest.
pub(crate) fn to_i64(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

/// An installation first seen in any event counts as active.
async fn ensure_installation(tx: &mut Tx, id: u64, now: UnixMillis) -> Result<()> {
    sqlx::query(
        "INSERT INTO installations (id, status, created_at, updated_at) VALUES ($1, 'active', $2, $2) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(to_i64(id))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn apply_route(
    tx: &mut Tx,
    route: &Route,
    delivery_id: &str,
    defaults: &JobDefaults,
    now: UnixMillis,
) -> Result<String> {
    match route {
        Route::Ignore(reason) => Ok(format!("ignored: {reason}")),
        Route::Installation(change) => apply_installation(tx, change, now).await,
        Route::Job(request) => {
            if let Some(blocked) = inactive_installation(tx, request.issue.installation_id).await? {
                return Ok(blocked);
            }
            create_job(tx, request, delivery_id, defaults, now).await
        }
        Route::Reply(reply) => {
            if let Some(blocked) = inactive_installation(tx, reply.issue.installation_id).await? {
                return Ok(blocked);
            }
            enqueue_reply(tx, reply, delivery_id, now).await
        }
        Route::Control(control) => {
            let installation_id = match &control.target {
                ControlTarget::Issue(issue) => issue.installation_id,
                ControlTarget::Job {
                    installation_id, ..
                } => *installation_id,
            };
            if let Some(blocked) = inactive_installation(tx, installation_id).await? {
                return Ok(blocked);
            }
            enqueue_control(tx, control, delivery_id, now).await
        }
    }
}

/// `Some(outcome)` when the installation may not start work.
async fn inactive_installation(tx: &mut Tx, id: u64) -> Result<Option<String>> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM installations WHERE id = $1")
            .bind(to_i64(id))
            .fetch_optional(&mut **tx)
            .await?;
    Ok(match status.as_deref() {
        None | Some("active") => None,
        Some(other) => Some(format!("ignored: installation {other}")),
    })
}

async fn apply_installation(
    tx: &mut Tx,
    change: &InstallationChange,
    now: UnixMillis,
) -> Result<String> {
    let id = to_i64(change.id);
    let status = change.status.map(InstallationStatus::as_str);
    sqlx::query(
        "INSERT INTO installations (id, account_login, account_type, status, repository_selection, created_at, updated_at) \
         VALUES ($1, $2, $3, COALESCE($4, 'active'), $5, $6, $6) \
         ON CONFLICT (id) DO UPDATE SET \
           account_login = COALESCE(excluded.account_login, installations.account_login), \
           account_type = COALESCE(excluded.account_type, installations.account_type), \
           status = COALESCE($4, installations.status), \
           repository_selection = COALESCE(excluded.repository_selection, installations.repository_selection), \
           updated_at = excluded.updated_at",
    )
    .bind(id)
    .bind(change.account_login.as_deref())
    .bind(change.account_type.as_deref())
    .bind(status)
    .bind(change.repository_selection.as_deref())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if change.status == Some(InstallationStatus::Deleted) {
        sqlx::query("DELETE FROM installation_repositories WHERE installation_id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    for (repo_id, full_name) in &change.repos_added {
        sqlx::query(
            "INSERT INTO installation_repositories (installation_id, repo_id, full_name) VALUES ($1, $2, $3) \
             ON CONFLICT (installation_id, repo_id) DO UPDATE SET full_name = excluded.full_name",
        )
        .bind(id)
        .bind(to_i64(*repo_id))
        .bind(full_name.as_str())
        .execute(&mut **tx)
        .await?;
    }
    for repo_id in &change.repos_removed {
        sqlx::query(
            "DELETE FROM installation_repositories WHERE installation_id = $1 AND repo_id = $2",
        )
        .bind(id)
        .bind(to_i64(*repo_id))
        .execute(&mut **tx)
        .await?;
    }
    Ok(match status {
        Some(status) => format!("installation: {status}"),
        None => format!(
            "installation: repositories +{} -{}",
            change.repos_added.len(),
            change.repos_removed.len()
        ),
    })
}

async fn create_job(
    tx: &mut Tx,
    request: &JobRequest,
    delivery_id: &str,
    defaults: &JobDefaults,
    now: UnixMillis,
) -> Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    let status = if request.rejection.is_some() {
        JobStatus::Rejected
    } else {
        JobStatus::Queued
    };
    // The partial unique index admits one active job per issue; a conflict
    // means one is running, and this trigger gets a link to it instead.
    let created: Option<String> = sqlx::query_scalar(
        "INSERT INTO jobs (id, status, status_reason, trigger_kind, installation_id, repo, repo_id, issue_number, \
         issue_title, issue_body, instructions, sender_login, sender_id, sender_association, trigger_comment_id, \
         delivery_id, base_branch, budget_usd, budget_requests, budget_minutes, dry_run, run_after, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $22, $22) \
         ON CONFLICT (repo, issue_number) WHERE issue_number IS NOT NULL \
           AND status IN ('queued', 'planning', 'running', 'publishing') DO NOTHING \
         RETURNING id",
    )
    .bind(id.as_str())
    .bind(status.as_str())
    .bind(request.rejection.as_deref())
    .bind(request.trigger.as_str())
    .bind(to_i64(request.issue.installation_id))
    .bind(request.issue.repo.as_str())
    .bind(to_i64(request.issue.repo_id))
    .bind(to_i64(request.issue.issue_number))
    .bind(request.issue_title.as_str())
    .bind(request.issue_body.as_str())
    .bind(request.instructions.as_deref())
    .bind(request.sender_login.as_str())
    .bind(to_i64(request.sender_id))
    .bind(request.sender_association.as_deref())
    .bind(request.trigger_comment_id.map(to_i64))
    .bind(delivery_id)
    .bind(request.base_branch.as_deref())
    .bind(defaults.budget_usd)
    .bind(i64::from(defaults.budget_requests))
    .bind(i64::from(defaults.budget_minutes))
    .bind(i64::from(defaults.dry_run))
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?;
    if created.is_none() {
        return already_running(tx, request, delivery_id, now).await;
    }
    let (kind, message) = match &request.rejection {
        Some(reason) => ("rejected", reason.clone()),
        None => (
            "created",
            format!(
                "{} trigger by @{}",
                request.trigger.as_str(),
                request.sender_login
            ),
        ),
    };
    insert_event(tx, &id, now, kind, status, &message).await?;
    Ok(match status {
        JobStatus::Rejected => format!("job_rejected: {id}"),
        _ => format!("job_created: {id}"),
    })
}

async fn already_running(
    tx: &mut Tx,
    request: &JobRequest,
    delivery_id: &str,
    now: UnixMillis,
) -> Result<String> {
    let running: Option<String> = sqlx::query_scalar(
        "SELECT id FROM jobs WHERE repo = $1 AND issue_number = $2 \
         AND status IN ('queued', 'planning', 'running', 'publishing') LIMIT 1",
    )
    .bind(request.issue.repo.as_str())
    .bind(to_i64(request.issue.issue_number))
    .fetch_optional(&mut **tx)
    .await?;
    let running = running.unwrap_or_default();
    let payload = json!({
        "job_id": running,
        "requester": request.sender_login,
        "comment_id": request.trigger_comment_id,
    });
    insert_outbox(
        tx,
        "already_running",
        &request.issue,
        Some(&running),
        &payload,
        delivery_id,
        now,
    )
    .await?;
    Ok(format!("already_running: {running}"))
}

async fn enqueue_reply(
    tx: &mut Tx,
    reply: &ReplyRequest,
    delivery_id: &str,
    now: UnixMillis,
) -> Result<String> {
    let kind = reply.kind.kind();
    if reply.kind.rate_limited() {
        let recent: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM outbox WHERE repo = $1 AND issue_number = $2 \
             AND kind IN ('help', 'status', 'usage', 'issue_closed') AND created_at > $3 LIMIT 1",
        )
        .bind(reply.issue.repo.as_str())
        .bind(to_i64(reply.issue.issue_number))
        .bind(now - REPLY_RATE_WINDOW_MS)
        .fetch_optional(&mut **tx)
        .await?;
        if recent.is_some() {
            return Ok(format!("ignored: {kind} reply rate-limited"));
        }
    }
    let payload = match &reply.kind {
        crate::webhook::intake::ReplyKind::Usage { word, suggestion } => {
            json!({"requester": reply.requester, "comment_id": reply.comment_id, "word": word, "suggestion": suggestion})
        }
        crate::webhook::intake::ReplyKind::NotPermitted { command } => {
            json!({"requester": reply.requester, "comment_id": reply.comment_id, "command": command})
        }
        _ => json!({"requester": reply.requester, "comment_id": reply.comment_id}),
    };
    insert_outbox(tx, kind, &reply.issue, None, &payload, delivery_id, now).await?;
    Ok(format!("reply: {kind}"))
}

async fn enqueue_control(
    tx: &mut Tx,
    control: &ControlRequest,
    delivery_id: &str,
    now: UnixMillis,
) -> Result<String> {
    let kind = control.kind.as_str();
    let payload = json!({
        "requester": control.sender_login,
        "requester_id": control.sender_id,
        "comment_id": control.comment_id,
    });
    match &control.target {
        ControlTarget::Issue(issue) => {
            insert_outbox(tx, kind, issue, None, &payload, delivery_id, now).await?;
        }
        ControlTarget::Job {
            installation_id,
            repo,
            job_id,
        } => {
            sqlx::query(
                "INSERT INTO outbox (kind, installation_id, repo, issue_number, job_id, payload, delivery_id, created_at, run_after) \
                 VALUES ($1, $2, $3, NULL, $4, $5, $6, $7, $7)",
            )
            .bind(kind)
            .bind(to_i64(*installation_id))
            .bind(repo.as_str())
            .bind(job_id.as_str())
            .bind(payload.to_string())
            .bind(delivery_id)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(format!("control: {kind}"))
}

async fn insert_outbox(
    tx: &mut Tx,
    kind: &str,
    issue: &crate::webhook::intake::IssueRef,
    job_id: Option<&str>,
    payload: &serde_json::Value,
    delivery_id: &str,
    now: UnixMillis,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO outbox (kind, installation_id, repo, issue_number, job_id, payload, delivery_id, created_at, run_after) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
    )
    .bind(kind)
    .bind(to_i64(issue.installation_id))
    .bind(issue.repo.as_str())
    .bind(to_i64(issue.issue_number))
    .bind(job_id)
    .bind(payload.to_string())
    .bind(delivery_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(super) async fn insert_event(
    tx: &mut Tx,
    job_id: &str,
    now: UnixMillis,
    kind: &str,
    status: JobStatus,
    message: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO job_events (job_id, at, kind, status, message) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(job_id)
    .bind(now)
    .bind(kind)
    .bind(status.as_str())
    .bind(message)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
