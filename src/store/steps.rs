//! A job's plan, its steps and its usage, as the pipeline records them so a
//! resumed job (lease expired, retry) continues from its last completed step.

use super::intake::insert_event;
use super::{Result, Store};
use crate::jobs::{JobStatus, UnixMillis};

/// A step as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredStep {
    pub position: i64,
    pub title: String,
    /// `pending`, `running`, `succeeded`, `failed`, `skipped` or `empty`.
    pub status: String,
    pub commit_sha: Option<String>,
}

/// Totals of a job's LLM use, and the same per requested model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobUsage {
    pub usd: f64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub requests: u32,
    /// Chat and embedding models alike, ordered by name.
    pub per_model: Vec<ModelUsageRecord>,
}

/// One model's share of a job's usage (an embedding model has no tokens out).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelUsageRecord {
    pub model: String,
    pub requests: u32,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub usd: f64,
}

impl Store {
    /// Records the plan (JSON) and its steps as `pending`, and the hash of the
    /// agents policy that produced it.
    pub async fn save_plan(
        &self,
        job_id: &str,
        plan_json: &str,
        titles: &[String],
        agents_hash: &str,
        now: UnixMillis,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query("UPDATE jobs SET plan = $1, agents_hash = $2, updated_at = $3 WHERE id = $4")
            .bind(plan_json)
            .bind(agents_hash)
            .bind(now)
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM job_steps WHERE job_id = $1")
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        for (position, title) in titles.iter().enumerate() {
            sqlx::query(
                "INSERT INTO job_steps (job_id, position, title, status, updated_at) VALUES ($1, $2, $3, 'pending', $4)",
            )
            .bind(job_id)
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .bind(title.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let message = format!("plan of {} steps", titles.len());
        insert_event(&mut tx, job_id, now, "plan", JobStatus::Running, &message).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The stored plan JSON, if the job has been planned.
    pub async fn load_plan(&self, job_id: &str) -> Result<Option<String>> {
        let plan: Option<Option<String>> = sqlx::query_scalar("SELECT plan FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_optional(&self.write)
            .await?;
        Ok(plan.flatten())
    }

    /// The job's steps in order.
    pub async fn stored_steps(&self, job_id: &str) -> Result<Vec<StoredStep>> {
        let rows: Vec<(i64, String, String, Option<String>)> = sqlx::query_as(
            "SELECT position, title, status, commit_sha FROM job_steps WHERE job_id = $1 ORDER BY position",
        )
        .bind(job_id)
        .fetch_all(&self.write)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(position, title, status, commit_sha)| StoredStep {
                position,
                title,
                status,
                commit_sha,
            })
            .collect())
    }

    /// Records a step's state (and its commit when it made one).
    pub async fn set_step(
        &self,
        job_id: &str,
        position: usize,
        status: &str,
        detail: Option<&str>,
        commit_sha: Option<&str>,
        now: UnixMillis,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE job_steps SET status = $1, detail = COALESCE($2, detail), \
             commit_sha = COALESCE($3, commit_sha), updated_at = $4 WHERE job_id = $5 AND position = $6",
        )
        .bind(status)
        .bind(detail)
        .bind(commit_sha)
        .bind(now)
        .bind(job_id)
        .bind(i64::try_from(position).unwrap_or(i64::MAX))
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Overwrites the job's usage totals (the meter is cumulative).
    pub async fn save_usage(&self, job_id: &str, usage: &JobUsage, now: UnixMillis) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "UPDATE jobs SET cost_usd = $1, tokens_in = $2, tokens_out = $3, requests = $4, updated_at = $5 \
             WHERE id = $6",
        )
        .bind(usage.usd)
        .bind(i64::try_from(usage.tokens_in).unwrap_or(i64::MAX))
        .bind(i64::try_from(usage.tokens_out).unwrap_or(i64::MAX))
        .bind(i64::from(usage.requests))
        .bind(now)
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        // The meter's per-model figures are cumulative over the job's
        // attempts (a resumed meter starts from them), so they replace.
        for m in &usage.per_model {
            sqlx::query(
                "INSERT INTO job_model_usage (job_id, model, requests, tokens_in, tokens_out, cost_usd) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (job_id, model) DO UPDATE SET \
                 requests = excluded.requests, tokens_in = excluded.tokens_in, \
                 tokens_out = excluded.tokens_out, cost_usd = excluded.cost_usd",
            )
            .bind(job_id)
            .bind(m.model.as_str())
            .bind(i64::from(m.requests))
            .bind(i64::try_from(m.tokens_in).unwrap_or(i64::MAX))
            .bind(i64::try_from(m.tokens_out).unwrap_or(i64::MAX))
            .bind(m.usd)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The job's usage so far (a resumed job continues from it).
    pub async fn load_usage(&self, job_id: &str) -> Result<JobUsage> {
        let row: Option<(f64, i64, i64, i64)> =
            sqlx::query_as("SELECT cost_usd, tokens_in, tokens_out, requests FROM jobs WHERE id = $1")
                .bind(job_id)
                .fetch_optional(&self.write)
                .await?;
        let Some((usd, tokens_in, tokens_out, requests)) = row else {
            return Ok(JobUsage::default());
        };
        Ok(JobUsage {
            usd,
            tokens_in: u64::try_from(tokens_in).unwrap_or(0),
            tokens_out: u64::try_from(tokens_out).unwrap_or(0),
            requests: u32::try_from(requests).unwrap_or(u32::MAX),
            per_model: self.model_usage(job_id).await?,
        })
    }

    /// The job's usage per requested model, by name.
    pub async fn model_usage(&self, job_id: &str) -> Result<Vec<ModelUsageRecord>> {
        let rows: Vec<(String, i64, i64, i64, f64)> = sqlx::query_as(
            "SELECT model, requests, tokens_in, tokens_out, cost_usd FROM job_model_usage \
             WHERE job_id = $1 ORDER BY model",
        )
        .bind(job_id)
        .fetch_all(&self.write)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(model, requests, tokens_in, tokens_out, usd)| ModelUsageRecord {
                model,
                requests: u32::try_from(requests).unwrap_or(u32::MAX),
                tokens_in: u64::try_from(tokens_in).unwrap_or(0),
                tokens_out: u64::try_from(tokens_out).unwrap_or(0),
                usd,
            })
            .collect())
    }

    /// Records the job's branch.
    pub async fn set_branch(&self, job_id: &str, branch: &str, now: UnixMillis) -> Result<()> {
        sqlx::query("UPDATE jobs SET branch = $1, updated_at = $2 WHERE id = $3")
            .bind(branch)
            .bind(now)
            .bind(job_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Claims one named job (for `orchestrator run`, which runs the job it created).
    pub async fn claim_job_by_id(
        &self,
        job_id: &str,
        owner: &str,
        lease_until: UnixMillis,
        now: UnixMillis,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_owner = $1, lease_until = $2, updated_at = $3, started_at = COALESCE(started_at, $3) \
             WHERE id = $4 AND status IN ('queued', 'planning', 'running', 'publishing') \
             AND (lease_until IS NULL OR lease_until < $3)",
        )
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .bind(job_id)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl Store {
    /// Records the job's pull request.
    pub async fn set_pull_request(
        &self,
        job_id: &str,
        number: u64,
        url: &str,
        now: UnixMillis,
    ) -> Result<()> {
        sqlx::query("UPDATE jobs SET pr_number = $1, pr_url = $2, updated_at = $3 WHERE id = $4")
            .bind(i64::try_from(number).unwrap_or(i64::MAX))
            .bind(url)
            .bind(now)
            .bind(job_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Records the job's installation once the worker has resolved it.
    pub async fn set_installation(&self, job_id: &str, installation_id: u64, now: UnixMillis) -> Result<()> {
        sqlx::query("UPDATE jobs SET installation_id = $1, updated_at = $2 WHERE id = $3")
            .bind(i64::try_from(installation_id).unwrap_or(i64::MAX))
            .bind(now)
            .bind(job_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }
}

impl Store {
    /// What the installation's other jobs started since `since` (UTC
    /// midnight) have spent; the daily cap's headroom for a job is the cap
    /// minus this. A job that started before midnight counts for its own day.
    pub async fn installation_spent_since(
        &self,
        installation_id: u64,
        except_job: &str,
        since: UnixMillis,
    ) -> Result<f64> {
        let spent: Option<f64> = sqlx::query_scalar(
            "SELECT SUM(cost_usd) FROM jobs WHERE installation_id = $1 AND id <> $2 AND started_at >= $3",
        )
        .bind(i64::try_from(installation_id).unwrap_or(i64::MAX))
        .bind(except_job)
        .bind(since)
        .fetch_one(&self.read)
        .await?;
        Ok(spent.unwrap_or(0.0))
    }
}
