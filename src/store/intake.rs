//! Recording a delivery and its effect in one transaction: exactly once.
//!
//! The delivery row is inserted first with `ON CONFLICT DO NOTHING`; when no
//! row comes back the delivery id is already known, the transaction is rolled
//! back and nothing happens twice. Otherwise the route is applied (job row,
//! outbox row or installation change) and the outcome is stored on the
//! delivery, all before the commit that precedes the HTTP answer.
//!
//! This is the sqlx path, used with PostgreSQL. SQLite uses the writer thread
//! of `sqlite_intake.rs`, which runs the same statements (`sql.rs`) and the
//! same effects (`effects.rs`) in batches.

use sqlx::{Any, Transaction};

use super::effects::{self, OutboxRow, REPLY_RATE_WINDOW_MS};
use super::{Result, Store, sql};
use crate::jobs::{JobStatus, UnixMillis};
use crate::webhook::intake::{ControlRequest, InstallationChange, JobRequest, ReplyRequest, Route};
use crate::webhook::payload::EnvelopeFields;

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

pub(super) type Tx = Transaction<'static, Any>;

impl Store {
    /// Records `delivery` and applies `route`, exactly once per delivery id.
    pub async fn record_delivery(
        &self,
        delivery: &NewDelivery<'_>,
        route: &Route,
        defaults: &JobDefaults,
    ) -> Result<Recorded> {
        if let Some(writer) = &self.sqlite_intake {
            return writer.record(delivery, route, defaults).await;
        }
        self.retrying("record delivery", || {
            self.record_delivery_once(delivery, route, defaults)
        })
        .await
    }

    /// One transaction; run again after a transient error (see `retry.rs`).
    async fn record_delivery_once(
        &self,
        delivery: &NewDelivery<'_>,
        route: &Route,
        defaults: &JobDefaults,
    ) -> Result<Recorded> {
        let mut tx = self.write.begin().await?;
        let e = delivery.envelope;
        let inserted: Option<i64> = sqlx::query_scalar(sql::INSERT_DELIVERY)
            .bind(delivery.delivery_id)
            .bind(delivery.event)
            .bind(e.action.as_deref())
            .bind(e.installation_id.map(to_i64))
            .bind(e.repo.as_deref())
            .bind(e.sender_login.as_deref())
            .bind(e.sender_id.map(to_i64))
            .bind(delivery.received_at)
            .bind(delivery.payload)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row_id) = inserted else {
            tx.rollback().await?;
            return Ok(Recorded::Duplicate);
        };
        let now = delivery.received_at;
        if let Some(installation_id) = e.installation_id {
            sqlx::query(sql::ENSURE_INSTALLATION)
                .bind(to_i64(installation_id))
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        let outcome = apply_route(&mut tx, route, delivery.delivery_id, defaults, now).await?;
        if matches!(route, Route::Job(_)) {
            super::wakeup::announce_job(self.backend, &mut tx).await?;
        }
        sqlx::query(sql::SET_DELIVERY_OUTCOME)
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
        Ok(sqlx::query_scalar(sql::INSTALLATION_STATUS)
            .bind(to_i64(id))
            .fetch_optional(&self.read)
            .await?)
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

async fn apply_route(
    tx: &mut Tx,
    route: &Route,
    delivery_id: &str,
    defaults: &JobDefaults,
    now: UnixMillis,
) -> Result<String> {
    let installation_id = match route {
        Route::Ignore(reason) => return Ok(format!("ignored: {reason}")),
        Route::Installation(change) => return apply_installation(tx, change, now).await,
        Route::Job(request) => request.issue.installation_id,
        Route::Reply(reply) => reply.issue.installation_id,
        Route::Control(control) => control.target.installation_id(),
    };
    let status: Option<String> = sqlx::query_scalar(sql::INSTALLATION_STATUS)
        .bind(to_i64(installation_id))
        .fetch_optional(&mut **tx)
        .await?;
    if let Some(blocked) = effects::blocked_by_installation(status.as_deref()) {
        return Ok(blocked);
    }
    match route {
        Route::Job(request) => create_job(tx, request, delivery_id, defaults, now).await,
        Route::Reply(reply) => enqueue_reply(tx, reply, delivery_id, now).await,
        Route::Control(control) => enqueue_control(tx, control, delivery_id, now).await,
        Route::Ignore(_) | Route::Installation(_) => Ok(String::new()),
    }
}

async fn apply_installation(tx: &mut Tx, change: &InstallationChange, now: UnixMillis) -> Result<String> {
    let id = to_i64(change.id);
    sqlx::query(sql::UPSERT_INSTALLATION)
        .bind(id)
        .bind(change.account_login.as_deref())
        .bind(change.account_type.as_deref())
        .bind(change.status.map(|s| s.as_str()))
        .bind(change.repository_selection.as_deref())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    if change.removes_all_repositories() {
        sqlx::query(sql::DELETE_INSTALLATION_REPOS)
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    for (repo_id, full_name) in &change.repos_added {
        sqlx::query(sql::UPSERT_INSTALLATION_REPO)
            .bind(id)
            .bind(to_i64(*repo_id))
            .bind(full_name.as_str())
            .execute(&mut **tx)
            .await?;
    }
    for repo_id in &change.repos_removed {
        sqlx::query(sql::DELETE_INSTALLATION_REPO)
            .bind(id)
            .bind(to_i64(*repo_id))
            .execute(&mut **tx)
            .await?;
    }
    Ok(effects::installation_outcome(change))
}

async fn create_job(
    tx: &mut Tx,
    request: &JobRequest,
    delivery_id: &str,
    defaults: &JobDefaults,
    now: UnixMillis,
) -> Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    let status = effects::job_status(request);
    let created: Option<String> = sqlx::query_scalar(sql::INSERT_JOB)
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
    let (kind, message) = effects::job_created_event(request);
    insert_event(tx, &id, now, kind, status, &message).await?;
    Ok(effects::job_outcome(status, &id))
}

async fn already_running(
    tx: &mut Tx,
    request: &JobRequest,
    delivery_id: &str,
    now: UnixMillis,
) -> Result<String> {
    let running: Option<String> = sqlx::query_scalar(sql::ACTIVE_JOB_OF_ISSUE)
        .bind(request.issue.repo.as_str())
        .bind(to_i64(request.issue.issue_number))
        .fetch_optional(&mut **tx)
        .await?;
    let running = running.unwrap_or_default();
    let payload = effects::already_running_payload(request, &running);
    let row = OutboxRow::for_issue("already_running", &request.issue, Some(&running));
    insert_outbox(tx, &row, &payload, delivery_id, now).await?;
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
        let recent: Option<i64> = sqlx::query_scalar(sql::RECENT_REPLY)
            .bind(reply.issue.repo.as_str())
            .bind(to_i64(reply.issue.issue_number))
            .bind(now - REPLY_RATE_WINDOW_MS)
            .fetch_optional(&mut **tx)
            .await?;
        if recent.is_some() {
            return Ok(format!("ignored: {kind} reply rate-limited"));
        }
    }
    let row = OutboxRow::for_issue(kind, &reply.issue, None);
    insert_outbox(tx, &row, &effects::reply_payload(reply), delivery_id, now).await?;
    Ok(format!("reply: {kind}"))
}

async fn enqueue_control(
    tx: &mut Tx,
    control: &ControlRequest,
    delivery_id: &str,
    now: UnixMillis,
) -> Result<String> {
    let row = OutboxRow::for_control(control);
    insert_outbox(tx, &row, &effects::control_payload(control), delivery_id, now).await?;
    Ok(format!("control: {}", control.kind.as_str()))
}

async fn insert_outbox(
    tx: &mut Tx,
    row: &OutboxRow<'_>,
    payload: &serde_json::Value,
    delivery_id: &str,
    now: UnixMillis,
) -> Result<()> {
    sqlx::query(sql::INSERT_OUTBOX)
        .bind(row.kind)
        .bind(to_i64(row.installation_id))
        .bind(row.repo)
        .bind(row.issue_number.map(to_i64))
        .bind(row.job_id)
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
    sqlx::query(sql::INSERT_JOB_EVENT)
        .bind(job_id)
        .bind(now)
        .bind(kind)
        .bind(status.as_str())
        .bind(message)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
