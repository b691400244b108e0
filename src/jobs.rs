//! The job model: states, triggers and the JSON shape the API returns.

use serde::Serialize;

/// A job's life: `queued → planning → running → publishing → succeeded |
/// failed | cancelled`, plus `rejected` (never started; blocks nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Planning,
    Running,
    Publishing,
    Succeeded,
    Failed,
    Cancelled,
    Rejected,
}

impl JobStatus {
    pub const ALL: [JobStatus; 8] = [
        JobStatus::Queued,
        JobStatus::Planning,
        JobStatus::Running,
        JobStatus::Publishing,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
        JobStatus::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Planning => "planning",
            JobStatus::Running => "running",
            JobStatus::Publishing => "publishing",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// Active jobs block a second job on the same issue.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            JobStatus::Queued | JobStatus::Planning | JobStatus::Running | JobStatus::Publishing
        )
    }
}

/// What started a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Label,
    Comment,
    Api,
    Cli,
    CheckRun,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Label => "label",
            Trigger::Comment => "comment",
            Trigger::Api => "api",
            Trigger::Cli => "cli",
            Trigger::CheckRun => "check_run",
        }
    }

    pub fn parse(s: &str) -> Option<Trigger> {
        [
            Trigger::Label,
            Trigger::Comment,
            Trigger::Api,
            Trigger::Cli,
            Trigger::CheckRun,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// One planned step as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepView {
    pub title: String,
    /// `pending`, `running`, `succeeded`, `failed`, `skipped` or `empty`.
    pub status: String,
}

/// A job as `GET /jobs/{id}` returns it (DESIGN §5).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    pub id: String,
    pub status: JobStatus,
    pub status_reason: Option<String>,
    pub attempt: i64,
    pub repo: Option<String>,
    pub issue_number: Option<i64>,
    pub trigger: Trigger,
    pub instructions: Option<String>,
    pub sender: Option<String>,
    pub branch: Option<String>,
    pub pr_links: Vec<String>,
    pub cost_usd: f64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub requests: i64,
    pub steps: Vec<StepView>,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub updated_at: String,
}

/// A task's title: its first non-blank line, at most 100 characters.
pub fn task_title(task: &str) -> String {
    let line = task.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    line.chars().take(100).collect()
}

/// Milliseconds since the Unix epoch, as stored.
pub type UnixMillis = i64;

/// Formats stored milliseconds as RFC 3339 UTC (`2026-11-25T16:28:32.123Z`).
pub fn rfc3339(ms: UnixMillis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Now, in stored form.
pub fn now_millis() -> UnixMillis {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_only_running_ones_are_active() {
        for status in JobStatus::ALL {
            assert_eq!(JobStatus::parse(status.as_str()), Some(status));
        }
        let active: Vec<_> = JobStatus::ALL.into_iter().filter(|s| s.is_active()).collect();
        assert_eq!(
            active,
            [
                JobStatus::Queued,
                JobStatus::Planning,
                JobStatus::Running,
                JobStatus::Publishing
            ]
        );
        assert_eq!(JobStatus::parse("bogus"), None);
    }

    #[test]
    fn a_task_title_is_its_first_non_blank_line() {
        assert_eq!(task_title("\n  Fix the parser  \nmore"), "Fix the parser");
        assert_eq!(task_title(&"x".repeat(300)).len(), 100);
        assert_eq!(task_title(""), "");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_764_088_112_123), "2025-11-25T16:28:32.123Z");
    }
}
