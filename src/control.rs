//! The control applier: applies the `cancel` and `retry` rows intake wrote
//! to the outbox (from `/orchestrate cancel|retry` comments and from the
//! check run's buttons), and posts the one explanation owed for each
//! `rejected` job. It runs beside the outbox sender, with the same rules:
//! rows are claimed with a lease, each reply carries a hidden marker and is
//! created with `create_comment_once` (a reclaimed row looks for its marker
//! first), so nothing is ever posted twice.
//!
//! Check-run clicks carry no author association, and a comment author may
//! be a collaborator with only triage or read access: the requester passes
//! the same permission gate as a job's sender before anything changes.

use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::gate::{self, GateDecision};
use crate::github::{GitHub, GitHubError, InstallationClient, RepoRef};
use crate::jobs::now_millis;
use crate::outbox::{Delivery, FIRST_BACKOFF, LEASE, MAX_ATTEMPTS, MAX_BACKOFF, POLL_INTERVAL, POST_TIMEOUT};
use crate::store::{JobRef, OutboxRow, RejectedJob, RetryOutcome, Store, StoreError};

/// When a rejection notice failed for a reason that may heal, it is tried again after this.
pub const NOTICE_RETRY: Duration = Duration::from_secs(60);

/// The marker of the reply to control row `id`.
pub fn control_marker(id: i64) -> String {
    format!("<!-- orchestrator:control:{id} -->")
}

/// The marker of a rejected job's explanation.
pub fn rejection_marker(job_id: &str) -> String {
    let id: String = job_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    format!("<!-- orchestrator:rejected:{} -->", id.replace("--", "-"))
}

/// Applies cancel/retry requests and posts rejection notices.
#[derive(Debug, Clone)]
pub struct ControlApplier {
    store: Store,
    github: GitHub,
    owner: String,
}

/// What a request came to, before any reply is posted.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// Applied; the job's own progress comment shows the result.
    Done,
    /// Answer on `issue` with `text`.
    Reply { issue: u64, text: String },
}

impl ControlApplier {
    pub fn new(store: Store, github: GitHub) -> ControlApplier {
        ControlApplier {
            store,
            github,
            owner: format!("control-{}", uuid::Uuid::new_v4()),
        }
    }

    /// Handles every due request and notice; returns how many.
    pub async fn run_until_idle(&self) -> Result<usize, StoreError> {
        let mut handled = 0;
        let lease_ms = LEASE.as_millis() as i64;
        while let Some(row) = self
            .store
            .claim_control_request(&self.owner, now_millis(), lease_ms)
            .await?
        {
            let outcome = self.apply(&row).await;
            self.settle(&row, outcome).await?;
            handled += 1;
        }
        while let Some(job) = self
            .store
            .claim_rejection_notice(&self.owner, now_millis(), lease_ms)
            .await?
        {
            let outcome = self.notify_rejection(&job).await;
            self.settle_notice(&job, outcome).await?;
            handled += 1;
        }
        Ok(handled)
    }

    /// Runs until `shutdown`, polling.
    pub async fn run(self, shutdown: CancellationToken) {
        crate::poll::every("control: pass", POLL_INTERVAL, &shutdown, || {
            self.run_until_idle()
        })
        .await;
    }

    /// Applies one `cancel` or `retry` row and posts its reply, if any.
    pub async fn apply(&self, row: &OutboxRow) -> Delivery {
        let Some((client, repo)) = self.client_for(row.installation_id, &row.repo) else {
            return Delivery::Abandoned("the row names no usable installation or repository".into());
        };
        let marker = control_marker(row.id);
        if row.attempts > 1
            && let Some(issue) = row.issue_number.and_then(|n| u64::try_from(n).ok())
        {
            match client.find_comment(&repo, issue, &marker).await {
                Ok(Some(_)) => return Delivery::Sent,
                Ok(None) => {}
                Err(err) => return failed(err),
            }
        }
        let verdict = match self.decide(row, &client, &repo).await {
            Ok(verdict) => verdict,
            Err(Failure::GitHub(err)) => return failed(err),
            Err(Failure::Store(err)) => return Delivery::Retry(err.to_string()),
        };
        match verdict {
            Verdict::Done => Delivery::Sent,
            Verdict::Reply { issue, text } => {
                let body = format!("{text}\n\n{marker}");
                post_once(&client, &repo, issue, &body, &marker, row.attempts).await
            }
        }
    }

    async fn decide(
        &self,
        row: &OutboxRow,
        client: &InstallationClient,
        repo: &RepoRef,
    ) -> Result<Verdict, Failure> {
        let payload: Value = serde_json::from_str(&row.payload).unwrap_or(Value::Null);
        let requester = payload["requester"].as_str().unwrap_or_default().to_string();
        let target = self.target_job(row, repo).await?;
        let issue = row
            .issue_number
            .or(target.as_ref().and_then(|j| j.issue_number))
            .and_then(|n| u64::try_from(n).ok());
        let gate = gate::check_permission(client, repo, &requester).await?;
        let text = if let GateDecision::Denied { reason, .. } = gate {
            tracing::info!(row = row.id, %reason, "control: requester denied");
            Some(gate::rejection_comment(&requester, &row.repo))
        } else if row.kind == "cancel" {
            self.cancel(target.as_ref(), &requester).await?
        } else {
            self.retry(target.as_ref(), &requester).await?
        };
        Ok(match (text, issue) {
            (Some(text), Some(issue)) => Verdict::Reply { issue, text },
            _ => Verdict::Done,
        })
    }

    /// The job named by the check run (only in the row's repository), else
    /// the issue's newest job that was not rejected.
    async fn target_job(&self, row: &OutboxRow, repo: &RepoRef) -> Result<Option<JobRef>, StoreError> {
        if let Some(job_id) = row.job_id.as_deref() {
            let job = self.store.job_ref(job_id).await?;
            return Ok(job.filter(|j| j.repo.as_deref() == Some(row.repo.as_str())));
        }
        match row.issue_number.and_then(|n| u64::try_from(n).ok()) {
            Some(issue) => self.store.newest_issue_job(&repo.to_string(), issue).await,
            None => Ok(None),
        }
    }

    async fn cancel(&self, job: Option<&JobRef>, requester: &str) -> Result<Option<String>, StoreError> {
        if let Some(job) = job
            && self.store.request_cancel(&job.id, now_millis()).await?
        {
            return Ok(None);
        }
        Ok(Some(replies::nothing_to_cancel(requester)))
    }

    async fn retry(&self, job: Option<&JobRef>, requester: &str) -> Result<Option<String>, StoreError> {
        let Some(job) = job else {
            return Ok(Some(replies::not_retryable(requester, None)));
        };
        Ok(match self.store.retry_job(&job.id, now_millis()).await? {
            RetryOutcome::Queued { .. } => None,
            RetryOutcome::NotRetryable => Some(replies::not_retryable(requester, Some(job))),
            RetryOutcome::IssueBusy => Some(replies::issue_busy(requester)),
        })
    }

    /// Posts the explanation of a rejected job on its issue, once.
    pub async fn notify_rejection(&self, job: &RejectedJob) -> Delivery {
        let repo_name = job.repo.clone().unwrap_or_default();
        let Some((client, repo)) = self.client_for(job.installation_id, &repo_name) else {
            return Delivery::Abandoned("the job names no usable installation or repository".into());
        };
        let Some(issue) = job.issue_number.and_then(|n| u64::try_from(n).ok()) else {
            return Delivery::Abandoned("the job has no issue".into());
        };
        let marker = rejection_marker(&job.id);
        let login = job.sender_login.as_deref().unwrap_or_default();
        let body = format!("{}\n\n{marker}", gate::rejection_comment(login, &repo_name));
        // A notice is rare: always look for an earlier post first.
        post_once(&client, &repo, issue, &body, &marker, 2).await
    }

    fn client_for(&self, installation: Option<i64>, repo: &str) -> Option<(InstallationClient, RepoRef)> {
        let installation = installation.and_then(|id| u64::try_from(id).ok())?;
        let repo = RepoRef::parse(repo)?;
        Some((self.github.installation(installation), repo))
    }

    async fn settle(&self, row: &OutboxRow, outcome: Delivery) -> Result<(), StoreError> {
        let now = now_millis();
        match outcome {
            Delivery::Sent => {
                self.store.outbox_sent(row.id, &self.owner, now).await?;
            }
            Delivery::Retry(error) if row.attempts < MAX_ATTEMPTS => {
                tracing::warn!(row = row.id, error = %error, "control: request not applied yet");
                let run_after = now + backoff(row.attempts).as_millis() as i64;
                self.store
                    .outbox_failed(row.id, &self.owner, run_after, &error)
                    .await?;
            }
            Delivery::Retry(error) | Delivery::Abandoned(error) => {
                tracing::warn!(row = row.id, error = %error, "control: request abandoned");
                self.store
                    .outbox_abandoned(row.id, &self.owner, now, &error)
                    .await?;
            }
        }
        Ok(())
    }

    async fn settle_notice(&self, job: &RejectedJob, outcome: Delivery) -> Result<(), StoreError> {
        let now = now_millis();
        match outcome {
            Delivery::Retry(error) => {
                tracing::warn!(job = %job.id, error = %error, "control: rejection notice not sent yet");
                let retry_at = now + NOTICE_RETRY.as_millis() as i64;
                self.store
                    .rejection_notice_later(&job.id, &self.owner, retry_at)
                    .await
            }
            Delivery::Sent | Delivery::Abandoned(_) => self
                .store
                .rejection_notified(&job.id, &self.owner, now)
                .await
                .map(drop),
        }
    }
}

/// Why a request could not be decided.
enum Failure {
    GitHub(GitHubError),
    Store(StoreError),
}

impl From<GitHubError> for Failure {
    fn from(err: GitHubError) -> Self {
        Failure::GitHub(err)
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        Failure::Store(err)
    }
}

/// Posts `body` once: after an earlier attempt, the marker is looked for first.
async fn post_once(
    client: &InstallationClient,
    repo: &RepoRef,
    issue: u64,
    body: &str,
    marker: &str,
    attempts: i64,
) -> Delivery {
    let post = async {
        if attempts > 1
            && let Some(found) = client.find_comment(repo, issue, marker).await?
        {
            return Ok(found);
        }
        client.create_comment_once(repo, issue, body, marker).await
    };
    match tokio::time::timeout(POST_TIMEOUT, post).await {
        Ok(Ok(_)) => Delivery::Sent,
        Ok(Err(err)) => failed(err),
        Err(_) => Delivery::Retry("posting timed out".into()),
    }
}

/// Errors that may heal are retried later; the rest abandon the row.
fn failed(err: GitHubError) -> Delivery {
    let heals = matches!(
        err,
        GitHubError::Server { .. }
            | GitHubError::Network(_)
            | GitHubError::RateLimited { .. }
            | GitHubError::Unauthorized { .. }
            | GitHubError::Decode(_)
    );
    if heals {
        Delivery::Retry(err.to_string())
    } else {
        Delivery::Abandoned(err.to_string())
    }
}

/// `FIRST_BACKOFF × 2^(attempts-1)`, capped (as the outbox sender does).
fn backoff(attempts: i64) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0).min(12);
    (FIRST_BACKOFF * 2u32.pow(exponent)).min(MAX_BACKOFF)
}

/// The reply texts. None of their lines starts with `/orchestrate`.
pub mod replies {
    use crate::gate::safe_login;
    use crate::store::JobRef;

    fn mention(login: &str) -> String {
        safe_login(login).map(|l| format!("@{l} ")).unwrap_or_default()
    }

    fn code(text: &str) -> String {
        let clean: String = text
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
            .take(64)
            .collect();
        format!("`{clean}`")
    }

    pub fn nothing_to_cancel(login: &str) -> String {
        format!(
            "{}there is no running job here, so there was nothing to cancel.",
            mention(login)
        )
    }

    pub fn not_retryable(login: &str, job: Option<&JobRef>) -> String {
        match job {
            None => format!(
                "{}there is no job here to retry. Only failed or cancelled jobs can be retried.",
                mention(login)
            ),
            Some(job) => format!(
                "{}the newest job here ({}) is {}; only failed or cancelled jobs can be retried.",
                mention(login),
                code(&job.id),
                code(&job.status)
            ),
        }
    }

    pub fn issue_busy(login: &str) -> String {
        format!(
            "{}another job is already running on this issue. Wait for it to finish, or stop it with `/orchestrate cancel`, then retry.",
            mention(login)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_never_contain_a_command_line_or_a_crafted_mention() {
        let job = JobRef {
            id: "j-1".into(),
            status: "succeeded".into(),
            repo: None,
            issue_number: None,
            installation_id: None,
        };
        let logins = ["octocat", "x\n/orchestrate [a](http://evil)"];
        for login in logins {
            let texts = [
                replies::nothing_to_cancel(login),
                replies::not_retryable(login, None),
                replies::not_retryable(login, Some(&job)),
                replies::issue_busy(login),
            ];
            for text in texts {
                assert!(!orchestrator_commands::contains_command_line(&text), "{text}");
                assert!(!text.contains("evil"), "{text}");
            }
        }
    }

    #[test]
    fn markers_are_safe_html_comments() {
        assert_eq!(control_marker(7), "<!-- orchestrator:control:7 -->");
        assert_eq!(rejection_marker("a--><b"), "<!-- orchestrator:rejected:a-b -->");
    }
}
