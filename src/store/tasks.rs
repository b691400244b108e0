//! Jobs created through the API (`POST /tasks`) and the CLI (`run`), which
//! name a repository or a local checkout instead of an issue.

use super::intake::insert_event;
use super::{Result, Store};
use crate::jobs::{JobStatus, Trigger, UnixMillis, task_title};

/// A task to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub trigger: Trigger,
    /// `owner/name` on GitHub, or `None` for a local checkout.
    pub repo: Option<String>,
    pub local_path: Option<String>,
    pub task: String,
    pub requester: String,
    pub budget_usd: f64,
    pub budget_requests: u32,
    pub budget_minutes: u32,
    pub dry_run: bool,
}

impl Store {
    /// Queues a task as a job and returns its id. The installation is filled
    /// in when a known installation covers the repository; otherwise the
    /// worker resolves it.
    pub async fn create_task_job(&self, task: &NewTask, now: UnixMillis) -> Result<String> {
        let id = uuid::Uuid::new_v4().to_string();
        let mut tx = self.write.begin().await?;
        let installation: Option<i64> = match &task.repo {
            Some(repo) => {
                sqlx::query_scalar(
                    "SELECT r.installation_id FROM installation_repositories r \
                     JOIN installations i ON i.id = r.installation_id \
                     WHERE r.full_name = $1 AND i.status = 'active' LIMIT 1",
                )
                .bind(repo.as_str())
                .fetch_optional(&mut *tx)
                .await?
            }
            None => None,
        };
        sqlx::query(
            "INSERT INTO jobs (id, status, trigger_kind, installation_id, repo, local_path, issue_title, \
             issue_body, sender_login, budget_usd, budget_requests, budget_minutes, dry_run, run_after, \
             created_at, updated_at) \
             VALUES ($1, 'queued', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $13)",
        )
        .bind(id.as_str())
        .bind(task.trigger.as_str())
        .bind(installation)
        .bind(task.repo.as_deref())
        .bind(task.local_path.as_deref())
        .bind(task_title(&task.task))
        .bind(task.task.as_str())
        .bind(task.requester.as_str())
        .bind(task.budget_usd)
        .bind(i64::from(task.budget_requests))
        .bind(i64::from(task.budget_minutes))
        .bind(i64::from(task.dry_run))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let message = format!("{} task by {}", task.trigger.as_str(), task.requester);
        insert_event(&mut tx, &id, now, "created", JobStatus::Queued, &message).await?;
        super::wakeup::announce_job(self.backend, &mut tx).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The job's status, if the job exists.
    pub async fn job_status(&self, id: &str) -> Result<Option<JobStatus>> {
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(status.and_then(|s| JobStatus::parse(&s)))
    }
}
