//! The jobs table as a durable queue: claims with a lease, heartbeats,
//! release, state changes, cancel and retry.
//!
//! A job is claimable when it is active (`queued`, `planning`, `running`,
//! `publishing`), due (`run_after` passed) and nobody holds a live lease on
//! it: a job whose worker died is claimed again once its lease has expired and
//! resumes from its last completed step. Every state change is made by the
//! lease holder only and recorded as a job event with its reason.
//!
//! Claims are one `UPDATE … WHERE id = (SELECT … LIMIT 1) RETURNING`: atomic
//! under SQLite's single writer, and with `FOR UPDATE SKIP LOCKED` on
//! PostgreSQL so replicas never take the same job.

use sqlx::FromRow;

use super::intake::insert_event;
use super::{Backend, Result, Store};
use crate::jobs::{JobStatus, UnixMillis};

const CLAIM_SQLITE: &str = "UPDATE jobs SET lease_owner = $1, lease_until = $2, updated_at = $3, \
    started_at = COALESCE(started_at, $3) \
    WHERE id = (SELECT id FROM jobs WHERE status IN ('queued', 'planning', 'running', 'publishing') \
      AND run_after <= $3 AND (lease_until IS NULL OR lease_until < $3) ORDER BY created_at, id LIMIT 1) \
    RETURNING id";

const CLAIM_POSTGRES: &str = "UPDATE jobs SET lease_owner = $1, lease_until = $2, updated_at = $3, \
    started_at = COALESCE(started_at, $3) \
    WHERE id = (SELECT id FROM jobs WHERE status IN ('queued', 'planning', 'running', 'publishing') \
      AND run_after <= $3 AND (lease_until IS NULL OR lease_until < $3) ORDER BY created_at, id LIMIT 1 \
      FOR UPDATE SKIP LOCKED) \
    RETURNING id";

/// What a worker needs to run a job it has claimed.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct ClaimedJob {
    pub id: String,
    pub status: String,
    pub attempt: i64,
    pub trigger_kind: String,
    pub installation_id: Option<i64>,
    pub repo: Option<String>,
    pub local_path: Option<String>,
    pub issue_number: Option<i64>,
    pub issue_title: Option<String>,
    pub issue_body: Option<String>,
    pub instructions: Option<String>,
    pub sender_login: Option<String>,
    pub sender_id: Option<i64>,
    pub trigger_comment_id: Option<i64>,
    pub base_branch: Option<String>,
    pub branch: Option<String>,
    pub progress_comment_id: Option<i64>,
    pub check_run_id: Option<i64>,
    pub budget_usd: f64,
    pub budget_requests: i64,
    pub budget_minutes: i64,
    pub dry_run: i64,
    pub cancel_requested: i64,
    pub lease_until: Option<i64>,
}

const CLAIMED_COLUMNS: &str = "id, status, attempt, trigger_kind, installation_id, repo, local_path, \
    issue_number, issue_title, issue_body, instructions, sender_login, sender_id, trigger_comment_id, \
    base_branch, branch, progress_comment_id, check_run_id, budget_usd, budget_requests, budget_minutes, \
    dry_run, cancel_requested, lease_until";

/// Why a retry was not queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOutcome {
    /// Queued again as attempt `attempt`.
    Queued { attempt: i64 },
    /// The job is not failed or cancelled (or does not exist).
    NotRetryable,
    /// Another job is active on the same issue.
    IssueBusy,
}

impl Store {
    /// Claims the oldest claimable job for `owner` until `lease_until`.
    pub async fn claim_job(
        &self,
        owner: &str,
        lease_until: UnixMillis,
        now: UnixMillis,
    ) -> Result<Option<ClaimedJob>> {
        self.retrying("claim job", || self.claim_job_once(owner, lease_until, now))
            .await
    }

    async fn claim_job_once(
        &self,
        owner: &str,
        lease_until: UnixMillis,
        now: UnixMillis,
    ) -> Result<Option<ClaimedJob>> {
        let sql = match self.backend {
            Backend::Sqlite => CLAIM_SQLITE,
            Backend::Postgres => CLAIM_POSTGRES,
        };
        let claimed: Option<String> = sqlx::query_scalar(sql)
            .bind(owner)
            .bind(lease_until)
            .bind(now)
            .fetch_optional(&self.write)
            .await?;
        let Some(id) = claimed else { return Ok(None) };
        let select = format!("SELECT {CLAIMED_COLUMNS} FROM jobs WHERE id = $1");
        let job = sqlx::query_as::<_, ClaimedJob>(sqlx::AssertSqlSafe(select))
            .bind(id)
            .fetch_optional(&self.write)
            .await?;
        Ok(job)
    }

    /// Extends `owner`'s lease; `false` when the lease was lost (expired and
    /// claimed by another worker): the caller must stop working on the job.
    pub async fn renew_lease(&self, job_id: &str, owner: &str, lease_until: UnixMillis) -> Result<bool> {
        self.retrying("renew lease", || async {
            let done = sqlx::query("UPDATE jobs SET lease_until = $1 WHERE id = $2 AND lease_owner = $3")
                .bind(lease_until)
                .bind(job_id)
                .bind(owner)
                .execute(&self.write)
                .await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    /// Gives the job back (graceful shutdown): claimable again at once, and
    /// shown `queued` again while it waits.
    pub async fn release_lease(&self, job_id: &str, owner: &str) -> Result<bool> {
        self.retrying("release lease", || async {
            let mut tx = self.write.begin().await?;
            let done = sqlx::query(
                "UPDATE jobs SET lease_owner = NULL, lease_until = NULL, \
                 status = CASE WHEN status IN ('planning', 'running', 'publishing') THEN 'queued' ELSE status END \
                 WHERE id = $1 AND lease_owner = $2",
            )
            .bind(job_id)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
            let released = done.rows_affected() == 1;
            if released {
                super::wakeup::announce_job(self.backend, &mut tx).await?;
            }
            tx.commit().await?;
            Ok(released)
        })
        .await
    }

    /// Moves a job the caller holds to `status`, recording `reason`
    /// (`code: human text`). Ending states also release the lease. `false`
    /// when the caller no longer holds the lease.
    pub async fn set_job_status(
        &self,
        job_id: &str,
        owner: &str,
        status: JobStatus,
        reason: Option<&str>,
        now: UnixMillis,
    ) -> Result<bool> {
        self.retrying("set job status", || {
            self.set_job_status_once(job_id, owner, status, reason, now)
        })
        .await
    }

    async fn set_job_status_once(
        &self,
        job_id: &str,
        owner: &str,
        status: JobStatus,
        reason: Option<&str>,
        now: UnixMillis,
    ) -> Result<bool> {
        let ended = !status.is_active();
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "UPDATE jobs SET status = $1, status_reason = $2, updated_at = $3, \
             finished_at = CASE WHEN $4 = 1 THEN $3 ELSE finished_at END, \
             lease_owner = CASE WHEN $4 = 1 THEN NULL ELSE lease_owner END, \
             lease_until = CASE WHEN $4 = 1 THEN NULL ELSE lease_until END \
             WHERE id = $5 AND lease_owner = $6",
        )
        .bind(status.as_str())
        .bind(reason)
        .bind(now)
        .bind(i64::from(ended))
        .bind(job_id)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_event(
            &mut tx,
            job_id,
            now,
            "status",
            status,
            reason.unwrap_or(status.as_str()),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records the phase of a job that is still active (`planning`, `running`,
    /// `publishing`), so the API, the dashboard and `/metrics` see what a
    /// worker is doing. Does nothing once the job has ended (a cancel that
    /// landed meanwhile wins) or when it is already in that phase.
    pub async fn advance_status(&self, job_id: &str, status: JobStatus, now: UnixMillis) -> Result<bool> {
        debug_assert!(status.is_active(), "an ending status goes through set_job_status");
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "UPDATE jobs SET status = $1, updated_at = $2 \
             WHERE id = $3 AND status <> $1 AND status IN ('queued', 'planning', 'running', 'publishing')",
        )
        .bind(status.as_str())
        .bind(now)
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_event(&mut tx, job_id, now, "status", status, status.as_str()).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Asks the job's worker to stop (cooperative). `false` when the job has
    /// already ended or does not exist.
    pub async fn request_cancel(&self, job_id: &str, now: UnixMillis) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET cancel_requested = 1, updated_at = $1 \
             WHERE id = $2 AND status IN ('queued', 'planning', 'running', 'publishing')",
        )
        .bind(now)
        .bind(job_id)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether the job was asked to stop; read by its worker between steps.
    pub async fn cancel_requested(&self, job_id: &str) -> Result<bool> {
        let flag: Option<i64> = sqlx::query_scalar("SELECT cancel_requested FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_optional(&self.read)
            .await?;
        Ok(flag == Some(1))
    }

    /// Queues a failed or cancelled job again as a new attempt (same branch,
    /// same progress comment).
    pub async fn retry_job(&self, job_id: &str, now: UnixMillis) -> Result<RetryOutcome> {
        let mut tx = self.write.begin().await?;
        let updated = sqlx::query_scalar::<_, i64>(
            "UPDATE jobs SET status = 'queued', status_reason = NULL, attempt = attempt + 1, \
             cancel_requested = 0, run_after = $1, updated_at = $1, finished_at = NULL, \
             lease_owner = NULL, lease_until = NULL \
             WHERE id = $2 AND status IN ('failed', 'cancelled') RETURNING attempt",
        )
        .bind(now)
        .bind(job_id)
        .fetch_optional(&mut *tx)
        .await;
        let attempt = match updated {
            Ok(Some(attempt)) => attempt,
            Ok(None) => {
                tx.rollback().await?;
                return Ok(RetryOutcome::NotRetryable);
            }
            Err(err) if is_unique_violation(&err) => {
                tx.rollback().await?;
                return Ok(RetryOutcome::IssueBusy);
            }
            Err(err) => return Err(err.into()),
        };
        let message = format!("retry: attempt {attempt}");
        insert_event(&mut tx, job_id, now, "retry", JobStatus::Queued, &message).await?;
        super::wakeup::announce_job(self.backend, &mut tx).await?;
        tx.commit().await?;
        Ok(RetryOutcome::Queued { attempt })
    }

    /// Active jobs waiting for a worker (for metrics and the dashboard).
    pub async fn queue_depth(&self, now: UnixMillis) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'planning', 'running', 'publishing') \
             AND (lease_until IS NULL OR lease_until < $1)",
        )
        .bind(now)
        .fetch_one(&self.read)
        .await?)
    }
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error().is_some_and(|e| e.is_unique_violation())
}
