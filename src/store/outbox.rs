//! The outbox's worker side: claim a pending reply with a lease, then mark
//! it sent, failed (retried later) or abandoned. Only reply kinds are
//! claimed here; `cancel` and `retry` rows steer jobs and are claimed by the
//! control applier (`control.rs`) through the same statement.
//!
//! A claim increments `attempts`, so a worker that sees `attempts > 1` knows
//! an earlier attempt may have posted already and looks for the comment's
//! marker first (never two comments for one row).

use super::intake::to_i64;
use super::{Backend, Result, Store};
use crate::jobs::UnixMillis;

/// The kinds the outbox sender posts as issue comments.
pub const REPLY_KINDS: [&str; 6] = [
    "help",
    "status",
    "usage",
    "issue_closed",
    "not_permitted",
    "already_running",
];

/// A claimed outbox row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub kind: String,
    pub installation_id: Option<i64>,
    pub repo: String,
    pub issue_number: Option<i64>,
    pub job_id: Option<String>,
    /// JSON written by intake (`requester`, `comment_id`, kind-specific keys).
    pub payload: String,
    /// Claims so far, this one included.
    pub attempts: i64,
}

/// The newest job of an issue, for `/orchestrate status`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct IssueJobStatus {
    pub id: String,
    pub status: String,
    pub status_reason: Option<String>,
}

/// Claims the oldest due row of one lane: replies (`$4 = 0`) or
/// cancel/retry requests (`$4 = 1`). Both lanes share the table, the lease
/// and the settling (`outbox_sent`, `outbox_failed`, `outbox_abandoned`).
const CLAIM_SQLITE: &str = "UPDATE outbox SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
     WHERE id = (SELECT id FROM outbox WHERE sent_at IS NULL \
       AND (CASE WHEN kind IN ('cancel', 'retry') THEN 1 ELSE 0 END) = $4 \
       AND run_after <= $3 AND (lease_until IS NULL OR lease_until < $3) ORDER BY id LIMIT 1) \
     AND sent_at IS NULL AND (lease_until IS NULL OR lease_until < $3) \
     RETURNING id, kind, installation_id, repo, issue_number, job_id, payload, attempts";

const CLAIM_POSTGRES: &str = "UPDATE outbox SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
     WHERE id = (SELECT id FROM outbox WHERE sent_at IS NULL \
       AND (CASE WHEN kind IN ('cancel', 'retry') THEN 1 ELSE 0 END) = $4 \
       AND run_after <= $3 AND (lease_until IS NULL OR lease_until < $3) ORDER BY id LIMIT 1 \
       FOR UPDATE SKIP LOCKED) \
     AND sent_at IS NULL AND (lease_until IS NULL OR lease_until < $3) \
     RETURNING id, kind, installation_id, repo, issue_number, job_id, payload, attempts";

/// The two kinds of outbox rows, claimed by different workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lane {
    /// [`REPLY_KINDS`]: posted by the outbox sender.
    Replies,
    /// `cancel` and `retry`: applied by the control applier.
    Control,
}

impl Store {
    /// Claims the oldest due reply for `lease_ms`, or `None` when there is none.
    pub async fn claim_outbox_reply(
        &self,
        owner: &str,
        now: UnixMillis,
        lease_ms: i64,
    ) -> Result<Option<OutboxRow>> {
        self.claim_outbox(Lane::Replies, owner, now, lease_ms).await
    }

    pub(super) async fn claim_outbox(
        &self,
        lane: Lane,
        owner: &str,
        now: UnixMillis,
        lease_ms: i64,
    ) -> Result<Option<OutboxRow>> {
        let sql = match self.backend {
            Backend::Sqlite => CLAIM_SQLITE,
            Backend::Postgres => CLAIM_POSTGRES,
        };
        self.retrying("claim outbox row", || async {
            Ok(sqlx::query_as(sql)
                .bind(owner)
                .bind(now + lease_ms)
                .bind(now)
                .bind(i64::from(lane == Lane::Control))
                .fetch_optional(&self.write)
                .await?)
        })
        .await
    }

    /// Marks a claimed row sent; `false` when the lease was lost meanwhile.
    pub async fn outbox_sent(&self, id: i64, owner: &str, now: UnixMillis) -> Result<bool> {
        self.retrying("mark outbox row sent", || async {
            let done = sqlx::query(
                "UPDATE outbox SET sent_at = $1, lease_owner = NULL, lease_until = NULL, last_error = NULL \
                 WHERE id = $2 AND lease_owner = $3 AND sent_at IS NULL",
            )
            .bind(now)
            .bind(id)
            .bind(owner)
            .execute(&self.write)
            .await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    /// Releases a claimed row to be tried again at `run_after`.
    pub async fn outbox_failed(
        &self,
        id: i64,
        owner: &str,
        run_after: UnixMillis,
        error: &str,
    ) -> Result<()> {
        self.retrying("release outbox row", || async {
            sqlx::query(
                "UPDATE outbox SET run_after = $1, last_error = $2, lease_owner = NULL, lease_until = NULL \
                 WHERE id = $3 AND lease_owner = $4",
            )
            .bind(run_after)
            .bind(error)
            .bind(id)
            .bind(owner)
            .execute(&self.write)
            .await?;
            Ok(())
        })
        .await
    }

    /// Gives a row up for good: `sent_at` is set so it is never claimed
    /// again, and `last_error` starts with `abandoned:` to tell it from a sent one.
    pub async fn outbox_abandoned(&self, id: i64, owner: &str, now: UnixMillis, error: &str) -> Result<()> {
        let last_error = format!("abandoned: {error}");
        self.retrying("abandon outbox row", || async {
            sqlx::query(
                "UPDATE outbox SET sent_at = $1, last_error = $2, lease_owner = NULL, lease_until = NULL \
                 WHERE id = $3 AND lease_owner = $4",
            )
            .bind(now)
            .bind(last_error.as_str())
            .bind(id)
            .bind(owner)
            .execute(&self.write)
            .await?;
            Ok(())
        })
        .await
    }

    /// The newest job of an issue.
    pub async fn latest_issue_job(&self, repo: &str, issue: u64) -> Result<Option<IssueJobStatus>> {
        Ok(sqlx::query_as(
            "SELECT id, status, status_reason FROM jobs WHERE repo = $1 AND issue_number = $2 \
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(repo)
        .bind(to_i64(issue))
        .fetch_optional(&self.read)
        .await?)
    }
}
