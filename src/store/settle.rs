//! The store side of settling: which ended jobs may still show as running
//! on GitHub, and which active jobs were cancelled while no worker held them.
//!
//! `progress_open` (migration 0007) is set when a worker starts showing a
//! job's progress and cleared once the final state is written. An ended job
//! that is still open (its handler panicked, its final edits failed, it was
//! cancelled while waiting) is claimed by the reconciler with the job's lease
//! columns, which an ended job never uses otherwise; `settle_attempts`
//! spaces out retries after GitHub errors.

use super::intake::insert_event;
use super::{Backend, Result, Store};
use crate::jobs::{JobStatus, UnixMillis};

const ENDED: &str = "('succeeded', 'failed', 'cancelled')";
const ACTIVE: &str = "('queued', 'planning', 'running', 'publishing')";

const UNSETTLED_COLUMNS: &str = "id, status, status_reason, installation_id, repo, issue_number, \
    trigger_comment_id, progress_comment_id, check_run_id, head_sha, branch, pr_url, cost_usd, tokens_in, \
    tokens_out, started_at, finished_at, settle_attempts";

/// An ended job whose GitHub progress is still to be brought to its final state.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct UnsettledJob {
    pub id: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub installation_id: Option<i64>,
    pub repo: Option<String>,
    pub issue_number: Option<i64>,
    pub trigger_comment_id: Option<i64>,
    pub progress_comment_id: Option<i64>,
    pub check_run_id: Option<i64>,
    pub head_sha: Option<String>,
    pub branch: Option<String>,
    pub pr_url: Option<String>,
    pub cost_usd: f64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Claims so far, this one included.
    pub settle_attempts: i64,
}

fn claim_sql(backend: Backend) -> String {
    let lock = match backend {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
    };
    format!(
        "UPDATE jobs SET lease_owner = $1, lease_until = $2, settle_attempts = settle_attempts + 1 \
         WHERE id = (SELECT id FROM jobs WHERE progress_open = 1 AND status IN {ENDED} \
           AND (lease_until IS NULL OR lease_until < $3) ORDER BY finished_at, id LIMIT 1{lock}) \
         AND progress_open = 1 AND status IN {ENDED} AND (lease_until IS NULL OR lease_until < $3) \
         RETURNING {UNSETTLED_COLUMNS}"
    )
}

impl Store {
    /// The job's progress is being shown on GitHub (a worker is starting it):
    /// from now on it must be settled when the job ends.
    pub async fn open_progress(&self, job_id: &str) -> Result<()> {
        sqlx::query("UPDATE jobs SET progress_open = 1, settle_attempts = 0 WHERE id = $1")
            .bind(job_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// The job's final state was written to GitHub by its own worker.
    pub async fn close_progress(&self, job_id: &str) -> Result<()> {
        sqlx::query("UPDATE jobs SET progress_open = 0 WHERE id = $1")
            .bind(job_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Whether the job's progress may still show it running on GitHub.
    pub async fn progress_open(&self, job_id: &str) -> Result<bool> {
        let open: Option<i64> = sqlx::query_scalar("SELECT progress_open FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_optional(&self.write)
            .await?;
        Ok(open == Some(1))
    }

    /// Claims the ended job that has waited longest for its progress to be
    /// settled, for `lease_ms`.
    pub async fn claim_unsettled_job(
        &self,
        owner: &str,
        now: UnixMillis,
        lease_ms: i64,
    ) -> Result<Option<UnsettledJob>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(claim_sql(self.backend)))
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .fetch_optional(&self.write)
            .await?)
    }

    /// The job's progress was settled (or given up on) by `owner`. `false`
    /// when the claim was lost meanwhile (e.g. the job was retried).
    pub async fn progress_settled(&self, job_id: &str, owner: &str) -> Result<bool> {
        let sql = format!(
            "UPDATE jobs SET progress_open = 0, lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2 AND status IN {ENDED}"
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(job_id)
            .bind(owner)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Settling failed for a reason that may heal: try again after
    /// `retry_at` (the lease doubles as the backoff).
    pub async fn settle_later(&self, job_id: &str, owner: &str, retry_at: UnixMillis) -> Result<()> {
        let sql = format!(
            "UPDATE jobs SET lease_owner = NULL, lease_until = $1 \
             WHERE id = $2 AND lease_owner = $3 AND status IN {ENDED}"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(retry_at)
            .bind(job_id)
            .bind(owner)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Active jobs whose cancellation was requested and that no worker
    /// holds (never claimed, given back, or their worker died), oldest first.
    pub async fn cancelled_waiting_jobs(&self, now: UnixMillis, limit: i64) -> Result<Vec<String>> {
        let sql = format!(
            "SELECT id FROM jobs WHERE status IN {ACTIVE} AND cancel_requested = 1 \
             AND (lease_until IS NULL OR lease_until < $1) ORDER BY created_at, id LIMIT $2"
        );
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(limit)
            .fetch_all(&self.write)
            .await?)
    }

    /// Ends a job whose cancellation was requested before a worker ran it:
    /// `holder` is the worker that has just claimed it, or `None` for a job
    /// nobody holds. A job that already showed progress on GitHub is marked
    /// open, so the reconciler settles its comment and check run. `false`
    /// when the job ended, was claimed, or is no longer cancelled meanwhile.
    pub async fn cancel_waiting_job(
        &self,
        job_id: &str,
        holder: Option<&str>,
        reason: &str,
        now: UnixMillis,
    ) -> Result<bool> {
        let mut tx = self.write.begin().await?;
        let sql = format!(
            "UPDATE jobs SET status = 'cancelled', status_reason = $1, updated_at = $2, finished_at = $2, \
             lease_owner = NULL, lease_until = NULL, settle_attempts = 0, \
             progress_open = CASE WHEN progress_comment_id IS NOT NULL OR check_run_id IS NOT NULL \
               THEN 1 ELSE progress_open END \
             WHERE id = $3 AND status IN {ACTIVE} AND cancel_requested = 1 \
             AND (lease_owner = $4 OR lease_until IS NULL OR lease_until < $2)"
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(reason)
            .bind(now)
            .bind(job_id)
            .bind(holder)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_event(&mut tx, job_id, now, "status", JobStatus::Cancelled, reason).await?;
        tx.commit().await?;
        Ok(true)
    }
}
