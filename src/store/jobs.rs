//! Reading jobs for the API.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, FromRow};

use super::{Result, Store, StoreError};
use crate::jobs::{JobStatus, JobView, StepView, Trigger, rfc3339};

/// Filters of `GET /jobs`.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub repo: Option<String>,
    /// 1..=100.
    pub limit: u32,
    /// `(created_at, id)` of the last job of the previous page.
    pub cursor: Option<(i64, String)>,
}

/// What a filter's `repo` matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RepoMatch {
    /// The GitHub repository only (the API).
    Repo,
    /// The GitHub repository or the local checkout (the dashboard).
    RepoOrLocalPath,
}

/// One page of jobs, newest first.
#[derive(Debug, Clone)]
pub struct JobPage {
    pub jobs: Vec<JobView>,
    /// Pass back as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<(i64, String)>,
}

#[derive(Debug, FromRow)]
struct JobRow {
    id: String,
    status: String,
    status_reason: Option<String>,
    attempt: i64,
    trigger_kind: String,
    repo: Option<String>,
    local_path: Option<String>,
    issue_number: Option<i64>,
    instructions: Option<String>,
    sender_login: Option<String>,
    branch: Option<String>,
    pr_url: Option<String>,
    cost_usd: f64,
    tokens_in: i64,
    tokens_out: i64,
    requests: i64,
    created_at: i64,
    updated_at: i64,
}

const JOB_COLUMNS: &str = "id, status, status_reason, attempt, trigger_kind, repo, local_path, issue_number, \
    instructions, sender_login, branch, pr_url, cost_usd, tokens_in, tokens_out, requests, created_at, updated_at";

impl JobRow {
    fn into_view(self, steps: Vec<StepView>) -> Result<JobView> {
        let status = JobStatus::parse(&self.status)
            .ok_or_else(|| StoreError::Corrupt(format!("job {} has status {:?}", self.id, self.status)))?;
        let trigger = Trigger::parse(&self.trigger_kind).ok_or_else(|| {
            StoreError::Corrupt(format!("job {} has trigger {:?}", self.id, self.trigger_kind))
        })?;
        Ok(JobView {
            id: self.id,
            status,
            status_reason: self.status_reason,
            attempt: self.attempt,
            repo: self.repo.or(self.local_path),
            issue_number: self.issue_number,
            trigger,
            instructions: self.instructions,
            sender: self.sender_login,
            branch: self.branch,
            pr_links: self.pr_url.into_iter().collect(),
            cost_usd: self.cost_usd,
            tokens_in: self.tokens_in,
            tokens_out: self.tokens_out,
            requests: self.requests,
            steps,
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
        })
    }
}

impl Store {
    /// One job with its steps.
    pub async fn get_job(&self, id: &str) -> Result<Option<JobView>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        let row: Option<JobRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let steps = self.steps_of(&row.id).await?;
        row.into_view(steps).map(Some)
    }

    /// A page of jobs, newest first.
    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<JobPage> {
        let (rows, next_cursor) = self
            .job_rows_page::<JobRow>(JOB_COLUMNS, filter, RepoMatch::Repo, |r| {
                (r.created_at, r.id.clone())
            })
            .await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in rows {
            let steps = self.steps_of(&row.id).await?;
            jobs.push(row.into_view(steps)?);
        }
        Ok(JobPage { jobs, next_cursor })
    }

    /// A page of the jobs matching `filter` as rows of `columns`, newest
    /// first, and the cursor of the next page (`cursor_of` the last row).
    pub(super) async fn job_rows_page<T>(
        &self,
        columns: &str,
        filter: &JobFilter,
        repo_match: RepoMatch,
        cursor_of: fn(&T) -> (i64, String),
    ) -> Result<(Vec<T>, Option<(i64, String)>)>
    where
        T: for<'r> FromRow<'r, AnyRow> + Send + Unpin,
    {
        // Only fixed fragments are concatenated; every value is bound.
        let mut sql = format!("SELECT {columns} FROM jobs WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        if filter.status.is_some() {
            sql.push_str(&format!(" AND status = ${}", next()));
        }
        if filter.repo.is_some() {
            match repo_match {
                RepoMatch::Repo => sql.push_str(&format!(" AND repo = ${}", next())),
                RepoMatch::RepoOrLocalPath => {
                    let (a, b) = (next(), next());
                    sql.push_str(&format!(" AND (repo = ${a} OR local_path = ${b})"));
                }
            }
        }
        if filter.cursor.is_some() {
            let (a, b, c) = (next(), next(), next());
            sql.push_str(&format!(
                " AND (created_at < ${a} OR (created_at = ${b} AND id < ${c}))"
            ));
        }
        let limit = filter.limit.clamp(1, 100);
        sql.push_str(&format!(" ORDER BY created_at DESC, id DESC LIMIT {}", limit + 1));
        let mut query = sqlx::query_as::<_, T>(AssertSqlSafe(sql));
        if let Some(status) = filter.status {
            query = query.bind(status.as_str());
        }
        if let Some(repo) = &filter.repo {
            query = query.bind(repo.clone());
            if repo_match == RepoMatch::RepoOrLocalPath {
                query = query.bind(repo.clone());
            }
        }
        if let Some((created_at, id)) = &filter.cursor {
            query = query.bind(*created_at).bind(*created_at).bind(id.clone());
        }
        let mut rows = query.fetch_all(&self.read).await?;
        let next_cursor = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(cursor_of)
        } else {
            None
        };
        Ok((rows, next_cursor))
    }

    async fn steps_of(&self, job_id: &str) -> Result<Vec<StepView>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT title, status FROM job_steps WHERE job_id = $1 ORDER BY position")
                .bind(job_id)
                .fetch_all(&self.read)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(title, status)| StepView { title, status })
            .collect())
    }
}
