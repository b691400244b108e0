//! The GitHub ids of a job's progress: its one progress comment and its
//! check run on the branch's newest pushed commit. They are saved as soon as
//! GitHub answers, so a worker that resumes the job (after a crash or a
//! retry) edits the same comment and carries the same check run on.

use super::{Result, Store};

/// What a job already has on GitHub.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct ProgressIds {
    pub progress_comment_id: Option<i64>,
    pub check_run_id: Option<i64>,
    /// The commit the check run sits on.
    pub head_sha: Option<String>,
}

impl Store {
    /// The job's progress comment and check run; `None` when there is no such job.
    pub async fn progress_ids(&self, job_id: &str) -> Result<Option<ProgressIds>> {
        Ok(
            sqlx::query_as("SELECT progress_comment_id, check_run_id, head_sha FROM jobs WHERE id = $1")
                .bind(job_id)
                .fetch_optional(&self.write)
                .await?,
        )
    }

    /// Records the job's one progress comment.
    pub async fn set_progress_comment(&self, job_id: &str, comment_id: i64) -> Result<()> {
        sqlx::query("UPDATE jobs SET progress_comment_id = $1 WHERE id = $2")
            .bind(comment_id)
            .bind(job_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Records the job's current check run and the commit it sits on.
    pub async fn set_check_run(&self, job_id: &str, check_run_id: i64, head_sha: &str) -> Result<()> {
        sqlx::query("UPDATE jobs SET check_run_id = $1, head_sha = $2 WHERE id = $3")
            .bind(check_run_id)
            .bind(head_sha)
            .bind(job_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }
}
