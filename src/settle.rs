//! The reconciler's settling pass: nothing stays "in progress" on GitHub
//! after its job has ended (DESIGN.md §5).
//!
//! A job's worker concludes the check run and writes the final comment
//! itself ([`ProgressReporter::finish`]). It may not get there: the handler
//! panics (the runner records `failed` without it), the final edits meet a
//! GitHub outage, the process dies, or the job is cancelled while no worker
//! holds it. So every [`INTERVAL`], on every replica:
//!
//! 1. active jobs whose cancellation was requested and that no worker holds
//!    (never claimed, given back, or their worker's lease ran out) are ended
//!    `cancelled`;
//! 2. ended jobs whose progress is still open (`progress_open`, set when a
//!    worker starts showing progress, cleared by `finish`) are claimed one at
//!    a time with a lease, and their saved check run is concluded (`success`,
//!    `failure` with the Retry button, or `cancelled`) and their comment
//!    written in its final state, both from what the store recorded: status
//!    and reason, steps, cost, tokens, branch, pull request.
//!
//! Edits are idempotent (the same final state written twice changes
//! nothing), claims make sure one replica works on a job at a time, and a
//! GitHub error that may heal is retried with backoff; one that will not
//! (the comment was deleted, the App was uninstalled) gives the job up.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::github::{GitHub, GitHubError, RepoRef};
use crate::jobs::{JobStatus, now_millis};
use crate::progress::{
    JobProgress, JobTarget, Outcome, ProgressError, ProgressReporter, StepProgress, StepStatus,
};
use crate::store::{Store, StoreError, StoredStep, UnsettledJob};

/// How often a pass runs.
pub const INTERVAL: Duration = Duration::from_secs(15);

/// How long one claim on a job lasts (its GitHub edits take seconds).
pub const LEASE: Duration = Duration::from_secs(120);

/// The first wait after a GitHub error that may heal; doubled per attempt.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(30);
/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Attempts before a job is given up (about a day at the longest backoff).
pub const MAX_ATTEMPTS: i64 = 30;

/// Jobs handled at most per pass, so one pass never runs for long.
const MAX_PER_PASS: usize = 100;

/// The reason recorded on a job cancelled before a worker ran it.
pub const CANCELLED_WHILE_WAITING: &str = "cancelled_by_user: cancelled while no worker was running it";

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SettlePass {
    /// Jobs ended `cancelled` because nobody was running them.
    pub cancelled: usize,
    /// Jobs whose comment and check run were brought to their final state.
    pub settled: usize,
    /// Jobs whose settling failed and will be tried again.
    pub deferred: usize,
    /// Jobs given up on.
    pub abandoned: usize,
}

/// How settling one job went.
#[derive(Debug)]
enum Settling {
    Done,
    Retry(String),
    Abandoned(String),
}

/// Settles ended jobs' progress on GitHub; see the module docs.
#[derive(Debug, Clone)]
pub struct Settler {
    store: Store,
    /// `None` without an App: cancelled jobs are still ended, nothing is settled.
    github: Option<GitHub>,
    owner: String,
    first_backoff: Duration,
}

impl Settler {
    pub fn new(store: Store, github: Option<GitHub>) -> Settler {
        Settler {
            store,
            github,
            owner: format!("settle-{}", uuid::Uuid::new_v4().simple()),
            first_backoff: FIRST_BACKOFF,
        }
    }

    /// Changes the first wait after a GitHub error (tests shorten it).
    pub fn with_first_backoff(mut self, first: Duration) -> Settler {
        self.first_backoff = first;
        self
    }

    /// One pass over what is due now.
    pub async fn run_once(&self) -> Result<SettlePass, StoreError> {
        let mut pass = SettlePass::default();
        let now = now_millis();
        let limit = i64::try_from(MAX_PER_PASS).unwrap_or(100);
        for job_id in self.store.cancelled_waiting_jobs(now, limit).await? {
            if self
                .store
                .cancel_waiting_job(&job_id, None, CANCELLED_WHILE_WAITING, now)
                .await?
            {
                tracing::info!(job = %job_id, "job cancelled while no worker held it");
                crate::metrics::job_ended(JobStatus::Cancelled, None);
                pass.cancelled += 1;
            }
        }
        let Some(github) = &self.github else {
            return Ok(pass);
        };
        let lease_ms = i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX / 2);
        for _ in 0..MAX_PER_PASS {
            // Claims as of the pass's start: a job deferred during this pass
            // is due later than that, so it is not taken again until the next.
            let Some(job) = self.store.claim_unsettled_job(&self.owner, now, lease_ms).await? else {
                break;
            };
            let settling = self.settle(github, &job).await;
            self.record(&job, settling, &mut pass).await?;
        }
        Ok(pass)
    }

    /// Runs a pass now and every [`INTERVAL`] until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        crate::poll::every("settling pass", INTERVAL, &shutdown, || async {
            let pass = self.run_once().await?;
            if pass != SettlePass::default() {
                tracing::info!(
                    cancelled = pass.cancelled,
                    settled = pass.settled,
                    deferred = pass.deferred,
                    abandoned = pass.abandoned,
                    "settling pass done"
                );
            }
            Ok::<_, StoreError>(())
        })
        .await;
    }

    async fn settle(&self, github: &GitHub, job: &UnsettledJob) -> Settling {
        let Some(outcome) = JobStatus::parse(&job.status).and_then(Outcome::of) else {
            return Settling::Abandoned(format!("status {} has no final state", job.status));
        };
        let installation = job.installation_id.and_then(|id| u64::try_from(id).ok());
        let repo = job.repo.as_deref().and_then(RepoRef::parse);
        let (Some(installation), Some(repo)) = (installation, repo) else {
            return Settling::Abandoned("the job names no installation or repository".into());
        };
        let steps = match self.store.stored_steps(&job.id).await {
            Ok(steps) => steps,
            Err(err) => return Settling::Retry(err.to_string()),
        };
        let target = JobTarget {
            repo,
            issue_number: job.issue_number.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
            job_id: job.id.clone(),
            trigger_comment_id: job.trigger_comment_id.and_then(|n| u64::try_from(n).ok()),
        };
        let client = github.installation(installation);
        let mut reporter = ProgressReporter::new(client, self.store.clone(), target, github.clock().clone());
        match reporter.settle(outcome, &final_progress(job, &steps)).await {
            Ok(_) => Settling::Done,
            Err(ProgressError::Store(err)) => Settling::Retry(err.to_string()),
            Err(ProgressError::GitHub(err)) if may_heal(&err) => Settling::Retry(err.to_string()),
            Err(ProgressError::GitHub(err)) => Settling::Abandoned(err.to_string()),
        }
    }

    async fn record(
        &self,
        job: &UnsettledJob,
        settling: Settling,
        pass: &mut SettlePass,
    ) -> Result<(), StoreError> {
        match settling {
            Settling::Done => {
                tracing::info!(job = %job.id, status = %job.status, "job's progress settled on GitHub");
                pass.settled += 1;
                self.store.progress_settled(&job.id, &self.owner).await?;
            }
            Settling::Retry(error) if job.settle_attempts < MAX_ATTEMPTS => {
                tracing::warn!(job = %job.id, error = %error, attempt = job.settle_attempts, "settling failed; will retry");
                pass.deferred += 1;
                let retry_at = now_millis() + millis(backoff(self.first_backoff, job.settle_attempts));
                self.store.settle_later(&job.id, &self.owner, retry_at).await?;
            }
            Settling::Retry(error) | Settling::Abandoned(error) => {
                tracing::warn!(job = %job.id, error = %error, "settling given up");
                pass.abandoned += 1;
                self.store.progress_settled(&job.id, &self.owner).await?;
            }
        }
        Ok(())
    }
}

/// The job's final state as the store recorded it. A step still marked
/// running was interrupted by the job's end: it is shown failed.
pub fn final_progress(job: &UnsettledJob, steps: &[StoredStep]) -> JobProgress {
    let mut progress = JobProgress::new(job.id.clone());
    progress.status = JobStatus::parse(&job.status).unwrap_or(JobStatus::Failed);
    progress.status_reason = job.status_reason.clone();
    progress.steps = steps
        .iter()
        .map(|step| StepProgress {
            title: step.title.clone(),
            status: match StepStatus::parse(&step.status) {
                Some(StepStatus::Running) | None => StepStatus::Failed,
                Some(status) => status,
            },
        })
        .collect();
    if let (Some(started), Some(finished)) = (job.started_at, job.finished_at) {
        progress.elapsed = Duration::from_millis(u64::try_from(finished - started).unwrap_or(0));
    }
    progress.cost_usd = job.cost_usd;
    progress.tokens_in = u64::try_from(job.tokens_in).unwrap_or(0);
    progress.tokens_out = u64::try_from(job.tokens_out).unwrap_or(0);
    progress.links.pr_url = job.pr_url.clone();
    progress.links.branch = job.branch.clone();
    progress.head_sha = job.head_sha.clone();
    progress
}

/// Errors that may be gone at the next attempt.
fn may_heal(err: &GitHubError) -> bool {
    matches!(
        err,
        GitHubError::Server { .. }
            | GitHubError::Network(_)
            | GitHubError::RateLimited { .. }
            | GitHubError::Unauthorized { .. }
            | GitHubError::Decode(_)
    )
}

/// `first × 2^(attempts-1)`, capped at [`MAX_BACKOFF`].
fn backoff(first: Duration, attempts: i64) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0).min(12);
    (first * 2u32.pow(exponent)).min(MAX_BACKOFF)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(status: &str) -> UnsettledJob {
        UnsettledJob {
            id: "job-1".into(),
            status: status.into(),
            status_reason: Some("internal: the worker crashed while running this job".into()),
            installation_id: Some(1),
            repo: Some("o/r".into()),
            issue_number: Some(3),
            trigger_comment_id: None,
            progress_comment_id: Some(10),
            check_run_id: Some(20),
            head_sha: Some("abc".into()),
            branch: Some("orchestrator/issue-3-x".into()),
            pr_url: None,
            cost_usd: 0.25,
            tokens_in: 100,
            tokens_out: 50,
            started_at: Some(1_000),
            finished_at: Some(126_000),
            settle_attempts: 1,
        }
    }

    fn step(position: i64, status: &str) -> StoredStep {
        StoredStep {
            position,
            title: format!("step {position}"),
            status: status.into(),
            commit_sha: None,
        }
    }

    #[test]
    fn an_interrupted_step_is_shown_failed_and_the_rest_as_stored() {
        let steps = [step(0, "succeeded"), step(1, "running"), step(2, "pending")];
        let progress = final_progress(&job("failed"), &steps);
        let statuses: Vec<_> = progress.steps.iter().map(|s| s.status).collect();
        assert_eq!(
            statuses,
            [StepStatus::Succeeded, StepStatus::Failed, StepStatus::Pending]
        );
        assert_eq!(progress.status, JobStatus::Failed);
        assert_eq!(progress.elapsed, Duration::from_secs(125));
        assert_eq!((progress.tokens_in, progress.tokens_out), (100, 50));
        assert_eq!(progress.head_sha.as_deref(), Some("abc"));
        assert!(
            progress
                .status_reason
                .as_deref()
                .is_some_and(|r| r.starts_with("internal:"))
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(FIRST_BACKOFF, 1), FIRST_BACKOFF);
        assert_eq!(backoff(FIRST_BACKOFF, 2), FIRST_BACKOFF * 2);
        assert_eq!(backoff(FIRST_BACKOFF, 30), MAX_BACKOFF);
    }

    #[test]
    fn only_errors_that_may_heal_are_retried() {
        assert!(may_heal(&GitHubError::Server {
            status: 502,
            message: "bad gateway".into()
        }));
        assert!(!may_heal(&GitHubError::NotFound {
            message: "gone".into()
        }));
    }
}
