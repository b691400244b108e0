//! Read-only views for the dashboard: jobs with the columns people look at
//! (issue title, timings, GitHub ids), a job's steps and events, and the
//! installations.

use sqlx::{AssertSqlSafe, FromRow};

use super::jobs::RepoMatch;
use super::{JobFilter, Result, Store};
use crate::jobs::UnixMillis;

/// A job as the dashboard lists and shows it.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct JobRecord {
    pub id: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub attempt: i64,
    pub trigger_kind: String,
    pub installation_id: Option<i64>,
    pub repo: Option<String>,
    pub local_path: Option<String>,
    pub issue_number: Option<i64>,
    pub issue_title: Option<String>,
    pub instructions: Option<String>,
    pub sender_login: Option<String>,
    pub branch: Option<String>,
    pub pr_number: Option<i64>,
    pub pr_url: Option<String>,
    pub check_run_id: Option<i64>,
    pub head_sha: Option<String>,
    pub budget_usd: f64,
    pub cost_usd: f64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub requests: i64,
    pub cancel_requested: i64,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    pub started_at: Option<UnixMillis>,
    pub finished_at: Option<UnixMillis>,
}

const RECORD_COLUMNS: &str = "id, status, status_reason, attempt, trigger_kind, installation_id, repo, \
    local_path, issue_number, issue_title, instructions, sender_login, branch, pr_number, pr_url, \
    check_run_id, head_sha, budget_usd, cost_usd, tokens_in, tokens_out, requests, cancel_requested, \
    created_at, updated_at, started_at, finished_at";

/// One page of [`JobRecord`]s, newest first.
#[derive(Debug, Clone)]
pub struct JobRecordPage {
    pub jobs: Vec<JobRecord>,
    /// `(created_at, id)` of the last job shown, when there are more.
    pub next_cursor: Option<(i64, String)>,
}

/// A step with what it recorded.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct StepRecord {
    pub position: i64,
    pub title: String,
    pub status: String,
    /// Why a step failed.
    pub detail: Option<String>,
    pub commit_sha: Option<String>,
    pub updated_at: UnixMillis,
}

/// One line of a job's event log.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct EventRecord {
    pub id: i64,
    pub at: UnixMillis,
    pub kind: String,
    pub status: Option<String>,
    pub message: String,
}

/// An installation of the App with its repositories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationRecord {
    pub id: i64,
    pub account_login: Option<String>,
    pub account_type: Option<String>,
    pub status: String,
    pub repository_selection: Option<String>,
    pub repositories: Vec<String>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

#[derive(FromRow)]
struct InstallationRow {
    id: i64,
    account_login: Option<String>,
    account_type: Option<String>,
    status: String,
    repository_selection: Option<String>,
    created_at: UnixMillis,
    updated_at: UnixMillis,
}

impl Store {
    /// A page of jobs for the dashboard, with the same filters and cursor as `GET /jobs`.
    pub async fn job_records(&self, filter: &JobFilter) -> Result<JobRecordPage> {
        let (jobs, next_cursor) = self
            .job_rows_page::<JobRecord>(RECORD_COLUMNS, filter, RepoMatch::RepoOrLocalPath, |r| {
                (r.created_at, r.id.clone())
            })
            .await?;
        Ok(JobRecordPage { jobs, next_cursor })
    }

    /// One job for the dashboard.
    pub async fn job_record(&self, id: &str) -> Result<Option<JobRecord>> {
        let sql = format!("SELECT {RECORD_COLUMNS} FROM jobs WHERE id = $1");
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.read)
            .await?)
    }

    /// Every repository (or local checkout) that has jobs, for the filter.
    pub async fn job_repositories(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT COALESCE(repo, local_path) AS target FROM jobs \
             WHERE COALESCE(repo, local_path) IS NOT NULL ORDER BY target LIMIT 500",
        )
        .fetch_all(&self.read)
        .await?)
    }

    /// The job's steps in order, with their details.
    pub async fn step_records(&self, job_id: &str) -> Result<Vec<StepRecord>> {
        Ok(sqlx::query_as(
            "SELECT position, title, status, detail, commit_sha, updated_at FROM job_steps \
             WHERE job_id = $1 ORDER BY position",
        )
        .bind(job_id)
        .fetch_all(&self.read)
        .await?)
    }

    /// The job's events after event `after` (0 = from the start), oldest first.
    pub async fn events_after(&self, job_id: &str, after: i64, limit: u32) -> Result<Vec<EventRecord>> {
        Ok(sqlx::query_as(
            "SELECT id, at, kind, status, message FROM job_events WHERE job_id = $1 AND id > $2 \
             ORDER BY id LIMIT $3",
        )
        .bind(job_id)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?)
    }

    /// Every installation, newest first, with its repositories.
    pub async fn installation_records(&self) -> Result<Vec<InstallationRecord>> {
        let rows: Vec<InstallationRow> = sqlx::query_as(
            "SELECT id, account_login, account_type, status, repository_selection, created_at, updated_at \
             FROM installations ORDER BY created_at DESC, id DESC LIMIT 500",
        )
        .fetch_all(&self.read)
        .await?;
        let repos: Vec<(i64, String)> = sqlx::query_as(
            "SELECT installation_id, full_name FROM installation_repositories ORDER BY full_name",
        )
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| InstallationRecord {
                repositories: repos
                    .iter()
                    .filter(|(installation, _)| *installation == row.id)
                    .map(|(_, name)| name.clone())
                    .collect(),
                id: row.id,
                account_login: row.account_login,
                account_type: row.account_type,
                status: row.status,
                repository_selection: row.repository_selection,
                created_at: row.created_at,
                updated_at: row.updated_at,
            })
            .collect())
    }
}
