//! The store side of the control applier: `cancel`/`retry` outbox rows
//! (claimed with a lease like replies, settled with the same
//! `outbox_sent`/`outbox_failed`/`outbox_abandoned`), the jobs they target,
//! and the explanations owed for `rejected` jobs.
//!
//! A rejected job is never claimed by the job queue, so its lease columns
//! are free: a notice is claimed with them, and `rejection_notified_at`
//! (migration 0002) records that it was posted, so it is posted once.

use super::intake::to_i64;
use super::outbox::Lane;
use super::{Backend, OutboxRow, Result, Store};
use crate::jobs::UnixMillis;

/// The outbox kinds that steer jobs.
pub const CONTROL_KINDS: [&str; 2] = ["cancel", "retry"];

const NOTICE_SQLITE: &str = "UPDATE jobs SET lease_owner = $1, lease_until = $2 \
     WHERE id = (SELECT id FROM jobs WHERE status = 'rejected' AND rejection_notified_at IS NULL \
       AND (lease_until IS NULL OR lease_until < $3) ORDER BY created_at, id LIMIT 1) \
     AND rejection_notified_at IS NULL AND (lease_until IS NULL OR lease_until < $3) \
     RETURNING id, installation_id, repo, issue_number, sender_login, status_reason";

const NOTICE_POSTGRES: &str = "UPDATE jobs SET lease_owner = $1, lease_until = $2 \
     WHERE id = (SELECT id FROM jobs WHERE status = 'rejected' AND rejection_notified_at IS NULL \
       AND (lease_until IS NULL OR lease_until < $3) ORDER BY created_at, id LIMIT 1 \
       FOR UPDATE SKIP LOCKED) \
     AND rejection_notified_at IS NULL AND (lease_until IS NULL OR lease_until < $3) \
     RETURNING id, installation_id, repo, issue_number, sender_login, status_reason";

/// A job as a cancel or retry request sees it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct JobRef {
    pub id: String,
    pub status: String,
    pub repo: Option<String>,
    pub issue_number: Option<i64>,
    pub installation_id: Option<i64>,
}

/// A rejected job whose explanation is owed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RejectedJob {
    pub id: String,
    pub installation_id: Option<i64>,
    pub repo: Option<String>,
    pub issue_number: Option<i64>,
    pub sender_login: Option<String>,
    pub status_reason: Option<String>,
}

const JOB_REF: &str = "SELECT id, status, repo, issue_number, installation_id FROM jobs";

impl Store {
    /// Claims the oldest due `cancel` or `retry` row for `lease_ms`.
    pub async fn claim_control_request(
        &self,
        owner: &str,
        now: UnixMillis,
        lease_ms: i64,
    ) -> Result<Option<OutboxRow>> {
        self.claim_outbox(Lane::Control, owner, now, lease_ms).await
    }

    /// The job with this id.
    pub async fn job_ref(&self, job_id: &str) -> Result<Option<JobRef>> {
        let sql = format!("{JOB_REF} WHERE id = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(job_id)
            .fetch_optional(&self.write)
            .await?)
    }

    /// The issue's newest job that was not rejected at the door (rejected
    /// jobs never ran, so they are neither cancelled nor retried).
    pub async fn newest_issue_job(&self, repo: &str, issue: u64) -> Result<Option<JobRef>> {
        let sql = format!(
            "{JOB_REF} WHERE repo = $1 AND issue_number = $2 AND status <> 'rejected' \
             ORDER BY created_at DESC, id DESC LIMIT 1"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(repo)
            .bind(to_i64(issue))
            .fetch_optional(&self.write)
            .await?)
    }

    /// Claims the oldest rejected job whose explanation is still owed.
    pub async fn claim_rejection_notice(
        &self,
        owner: &str,
        now: UnixMillis,
        lease_ms: i64,
    ) -> Result<Option<RejectedJob>> {
        let sql = match self.backend {
            Backend::Sqlite => NOTICE_SQLITE,
            Backend::Postgres => NOTICE_POSTGRES,
        };
        Ok(sqlx::query_as(sql)
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .fetch_optional(&self.write)
            .await?)
    }

    /// The explanation was posted (or given up): never claimed again.
    pub async fn rejection_notified(&self, job_id: &str, owner: &str, now: UnixMillis) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET rejection_notified_at = $1, lease_owner = NULL, lease_until = NULL \
             WHERE id = $2 AND lease_owner = $3 AND status = 'rejected'",
        )
        .bind(now)
        .bind(job_id)
        .bind(owner)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Tries the notice again after `retry_at` (the lease doubles as the backoff).
    pub async fn rejection_notice_later(
        &self,
        job_id: &str,
        owner: &str,
        retry_at: UnixMillis,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET lease_owner = NULL, lease_until = $1 \
             WHERE id = $2 AND lease_owner = $3 AND status = 'rejected'",
        )
        .bind(retry_at)
        .bind(job_id)
        .bind(owner)
        .execute(&self.write)
        .await?;
        Ok(())
    }
}
