//! The outbox sender: posts the replies intake queued (help, status, usage,
//! issue closed, not permitted, already running) as issue comments.
//!
//! Exactly one comment per row, even across crashes, lost answers and lease
//! expiry: every reply carries a hidden marker naming its row
//! (`<!-- orchestrator:outbox:<id> -->`); the comment is created with
//! [`InstallationClient::create_comment_once`] (which looks for the marker
//! after a 5xx or a lost connection), a row claimed again after an earlier
//! attempt (`attempts > 1`) is first looked for by its marker, and the post
//! is cut off well before the lease ends so no second worker can claim the
//! row while a post is still in flight. Failures are retried with
//! exponential backoff; errors that will not heal (404, 403, 422, …) and
//! rows that failed [`MAX_ATTEMPTS`] times are abandoned.

use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::github::{Comment, GitHub, GitHubError, InstallationClient, RepoRef};
use crate::jobs::now_millis;
use crate::store::{OutboxRow, Store, StoreError};

/// How long a claim lasts; a worker that died lets the row go after this.
pub const LEASE: Duration = Duration::from_secs(300);
/// A post is abandoned (and retried later) after this, well inside [`LEASE`].
pub const POST_TIMEOUT: Duration = Duration::from_secs(240);
/// Claims of one row before it is given up.
pub const MAX_ATTEMPTS: i64 = 10;
/// First retry delay; doubles per attempt up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How often an idle sender looks for new rows.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The hidden marker of row `id`, by which the bot finds its reply again.
pub fn marker(id: i64) -> String {
    format!("<!-- orchestrator:outbox:{id} -->")
}

/// Posts outbox replies through the GitHub client.
#[derive(Debug, Clone)]
pub struct OutboxSender {
    store: Store,
    github: GitHub,
    trigger_label: String,
    owner: String,
}

/// What became of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    Retry(String),
    Abandoned(String),
}

impl OutboxSender {
    pub fn new(store: Store, github: GitHub, trigger_label: impl Into<String>) -> OutboxSender {
        OutboxSender {
            store,
            github,
            trigger_label: trigger_label.into(),
            owner: format!("outbox-{}", uuid::Uuid::new_v4()),
        }
    }

    /// Sends every due row, one at a time; returns how many were handled.
    pub async fn run_until_idle(&self) -> Result<usize, StoreError> {
        let mut handled = 0;
        let lease_ms = LEASE.as_millis() as i64;
        while let Some(row) = self
            .store
            .claim_outbox_reply(&self.owner, now_millis(), lease_ms)
            .await?
        {
            let outcome = self.deliver(&row).await;
            self.settle(&row, outcome).await?;
            handled += 1;
        }
        Ok(handled)
    }

    /// Runs until `shutdown`, polling for new rows.
    pub async fn run(self, shutdown: CancellationToken) {
        crate::poll::every("outbox: pass", POLL_INTERVAL, &shutdown, || self.run_until_idle()).await;
    }

    async fn settle(&self, row: &OutboxRow, outcome: Delivery) -> Result<(), StoreError> {
        let now = now_millis();
        match outcome {
            Delivery::Sent => {
                self.store.outbox_sent(row.id, &self.owner, now).await?;
            }
            Delivery::Retry(error) if row.attempts < MAX_ATTEMPTS => {
                let delay = backoff(row.attempts);
                tracing::warn!(row = row.id, error = %error, retry_in_secs = delay.as_secs(), "outbox: reply not sent yet");
                let run_after = now + delay.as_millis() as i64;
                self.store
                    .outbox_failed(row.id, &self.owner, run_after, &error)
                    .await?;
            }
            Delivery::Retry(error) | Delivery::Abandoned(error) => {
                tracing::warn!(row = row.id, error = %error, "outbox: reply abandoned");
                self.store
                    .outbox_abandoned(row.id, &self.owner, now, &error)
                    .await?;
            }
        }
        Ok(())
    }

    /// Posts the reply of `row` (or finds the one an earlier attempt posted).
    pub async fn deliver(&self, row: &OutboxRow) -> Delivery {
        let (Some(installation), Some(issue)) = (row.installation_id, row.issue_number) else {
            return Delivery::Abandoned("the row names no installation or issue".into());
        };
        let Some(repo) = RepoRef::parse(&row.repo) else {
            return Delivery::Abandoned(format!("bad repository name {:?}", row.repo));
        };
        let (Ok(installation), Ok(issue)) = (u64::try_from(installation), u64::try_from(issue)) else {
            return Delivery::Abandoned("negative id".into());
        };
        let body = match self.render(row, &repo, issue).await {
            Ok(body) => body,
            Err(err) => return Delivery::Retry(err.to_string()),
        };
        let client = self.github.installation(installation);
        let marker = marker(row.id);
        let post = self.post(&client, &repo, issue, &body, &marker, row.attempts);
        match tokio::time::timeout(POST_TIMEOUT, post).await {
            Ok(Ok(_)) => Delivery::Sent,
            Ok(Err(err)) if heals(&err) => Delivery::Retry(err.to_string()),
            Ok(Err(err)) => Delivery::Abandoned(err.to_string()),
            Err(_) => Delivery::Retry("posting timed out".into()),
        }
    }

    async fn post(
        &self,
        client: &InstallationClient,
        repo: &RepoRef,
        issue: u64,
        body: &str,
        marker: &str,
        attempts: i64,
    ) -> Result<Comment, GitHubError> {
        if attempts > 1
            && let Some(found) = client.find_comment(repo, issue, marker).await?
        {
            return Ok(found);
        }
        client.create_comment_once(repo, issue, body, marker).await
    }

    async fn render(&self, row: &OutboxRow, repo: &RepoRef, issue: u64) -> Result<String, StoreError> {
        let payload: Value = serde_json::from_str(&row.payload).unwrap_or(Value::Null);
        let status = if row.kind == "status" {
            self.store.latest_issue_job(&repo.to_string(), issue).await?
        } else {
            None
        };
        let text = replies::render(
            &row.kind,
            &payload,
            row.job_id.as_deref(),
            status.as_ref(),
            &self.trigger_label,
        );
        Ok(format!("{text}\n\n{}", marker(row.id)))
    }
}

/// Errors worth another try later: GitHub or the network may recover, a
/// rate limit ends, a token can be minted again.
fn heals(err: &GitHubError) -> bool {
    matches!(
        err,
        GitHubError::Server { .. }
            | GitHubError::Network(_)
            | GitHubError::RateLimited { .. }
            | GitHubError::Unauthorized { .. }
            | GitHubError::Decode(_)
    )
}

/// `FIRST_BACKOFF × 2^(attempts-1)`, capped.
fn backoff(attempts: i64) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0).min(12);
    (FIRST_BACKOFF * 2u32.pow(exponent)).min(MAX_BACKOFF)
}

/// The reply texts. None of their lines starts with `/orchestrate`: the bot
/// must never issue a command to itself.
pub mod replies {
    use serde_json::Value;

    use crate::store::IssueJobStatus;

    /// A login as GitHub allows it (letters, digits, `-`), or nothing: a
    /// crafted name must not inject Markdown or mention someone else.
    fn mention(payload: &Value) -> String {
        let login = payload["requester"].as_str().unwrap_or_default();
        let valid = !login.is_empty()
            && login.len() <= 39
            && login.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if valid {
            format!("@{login} ")
        } else {
            String::new()
        }
    }

    fn code(text: &str) -> String {
        let clean: String = text
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
            .take(64)
            .collect();
        format!("`{clean}`")
    }

    /// The Markdown reply for an outbox row of `kind`.
    pub fn render(
        kind: &str,
        payload: &Value,
        job_id: Option<&str>,
        status: Option<&IssueJobStatus>,
        trigger_label: &str,
    ) -> String {
        match kind {
            "help" => orchestrator_commands::usage_text(trigger_label),
            "usage" => orchestrator_commands::unknown_reply(
                payload["word"].as_str().unwrap_or_default(),
                payload["suggestion"].as_str(),
                trigger_label,
            ),
            "status" => status_text(status, trigger_label),
            "issue_closed" => "This issue is closed, so no job was started. Reopen it and ask again.".into(),
            "not_permitted" => {
                let command: String = payload["command"]
                    .as_str()
                    .unwrap_or_default()
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .take(20)
                    .collect();
                format!(
                    "{}sorry, `/orchestrate {command}` needs write access to this repository.",
                    mention(payload)
                )
            }
            "already_running" => format!(
                "{}a job is already running for this issue ({}). Wait for it to finish, or stop it with `/orchestrate cancel`.",
                mention(payload),
                code(job_id.or(payload["job_id"].as_str()).unwrap_or("unknown")),
            ),
            other => format!("(no reply text for {})", code(other)),
        }
    }

    fn status_text(status: Option<&IssueJobStatus>, trigger_label: &str) -> String {
        match status {
            None => format!(
                "No job has run on this issue yet. Add the {} label, or comment `/orchestrate`, to start one.",
                code(trigger_label)
            ),
            Some(job) => {
                let reason = job
                    .status_reason
                    .as_deref()
                    .map(|r| format!(" ({})", r.replace(['\n', '\r'], " ")))
                    .unwrap_or_default();
                format!(
                    "The newest job on this issue, {}, is **{}**{reason}.",
                    code(&job.id),
                    job.status
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn no_reply_contains_a_command_line() {
        let payload = json!({"requester": "octocat", "word": "fix", "suggestion": "retry", "command": "cancel", "job_id": "j1"});
        for kind in crate::store::REPLY_KINDS {
            let text = replies::render(kind, &payload, Some("j1"), None, "orchestrate");
            assert!(
                !orchestrator_commands::contains_command_line(&text),
                "{kind}: {text}"
            );
        }
    }

    #[test]
    fn crafted_logins_are_not_mentioned() {
        let payload = json!({"requester": "x [link](http://evil)", "command": "retry"});
        let text = replies::render("not_permitted", &payload, None, None, "orchestrate");
        assert!(!text.contains('@') && !text.contains("evil"), "{text}");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(3), Duration::from_secs(40));
        assert_eq!(backoff(100), MAX_BACKOFF);
    }
}
