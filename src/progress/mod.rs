//! The GitHub face of one job (DESIGN.md §5, "GitHub shows the job where
//! users look"): a 👀 reaction on the trigger, ONE progress comment edited
//! in place (throttled; the final state is always written), and a check run
//! named `orchestrator` on the branch's newest pushed commit, carried to each
//! new head and concluded when the job ends.
//!
//! The runner owns a [`ProgressReporter`] per job and calls it at each
//! stage: [`ProgressReporter::start`] before any work (after the permission
//! gate: a job the gate rejects gets no reporter, its one explanation is
//! posted by the control applier), [`ProgressReporter::update`] as often as
//! it likes, [`ProgressReporter::pushed`] after every push, and
//! [`ProgressReporter::finish`] once at the end.
//!
//! Never two comments: the comment carries `<!-- orchestrator:progress:<job> -->`,
//! its id is saved on the job row as soon as GitHub answers, a resumed job
//! reuses the saved id, and when no id was saved (a crash between GitHub's
//! answer and the save) the marker is looked for before creating; the
//! creation itself goes through `create_comment_once`, which survives a
//! lost answer.

pub mod render;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::github::{
    CheckAction, CheckConclusion, CheckOutput, CheckRunFields, CheckStatus, Clock, GitHubError,
    InstallationClient, Reaction, RepoRef,
};
use crate::jobs::JobStatus;
use crate::store::{Store, StoreError};

pub use render::{
    JobProgress, ProgressLinks, StepProgress, StepStatus, progress_marker, render_check_summary,
    render_comment,
};

/// The check run's name; intake routes its buttons back to us by it.
pub const CHECK_RUN_NAME: &str = "orchestrator";
/// Default minimum time between two edits of the progress comment, so a
/// busy job never trips GitHub's secondary limits on content edits.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(5);

/// How a job ended, as its check run concludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    Cancelled,
}

impl Outcome {
    /// The outcome of an ended job; `None` for active and rejected jobs
    /// (a rejected job never shows progress).
    pub fn of(status: JobStatus) -> Option<Outcome> {
        match status {
            JobStatus::Succeeded => Some(Outcome::Succeeded),
            JobStatus::Failed => Some(Outcome::Failed),
            JobStatus::Cancelled => Some(Outcome::Cancelled),
            _ => None,
        }
    }

    fn status(self) -> JobStatus {
        match self {
            Outcome::Succeeded => JobStatus::Succeeded,
            Outcome::Failed => JobStatus::Failed,
            Outcome::Cancelled => JobStatus::Cancelled,
        }
    }

    fn conclusion(self) -> CheckConclusion {
        match self {
            Outcome::Succeeded => CheckConclusion::Success,
            Outcome::Failed => CheckConclusion::Failure,
            Outcome::Cancelled => CheckConclusion::Cancelled,
        }
    }

    /// Buttons left on the concluded run: Retry after a failure, none otherwise.
    fn actions(self) -> Vec<CheckAction> {
        match self {
            Outcome::Failed => vec![retry_action()],
            Outcome::Succeeded | Outcome::Cancelled => Vec::new(),
        }
    }
}

/// A failure to show progress. The job itself may go on: progress is a view.
#[derive(Debug, thiserror::Error)]
pub enum ProgressError {
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The job a reporter speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobTarget {
    pub repo: RepoRef,
    pub issue_number: u64,
    pub job_id: String,
    /// The comment that triggered the job; `None` for a label trigger.
    pub trigger_comment_id: Option<u64>,
}

/// The current check run: its id, the commit it sits on, its page.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CurrentRun {
    id: u64,
    head_sha: String,
    url: Option<String>,
}

/// Shows one job's progress on GitHub. See the module docs for the calls.
#[derive(Debug)]
pub struct ProgressReporter {
    client: InstallationClient,
    store: Store,
    target: JobTarget,
    clock: Arc<dyn Clock>,
    min_interval: Duration,
    comment_id: Option<u64>,
    run: Option<CurrentRun>,
    latest: JobProgress,
    written_body: Option<String>,
    last_edit: Option<SystemTime>,
}

impl ProgressReporter {
    /// A reporter for `target`; `clock` drives the throttle (tests pass the
    /// fake GitHub's manual clock).
    pub fn new(client: InstallationClient, store: Store, target: JobTarget, clock: Arc<dyn Clock>) -> Self {
        let latest = JobProgress::new(target.job_id.clone());
        ProgressReporter {
            client,
            store,
            target,
            clock,
            min_interval: DEFAULT_MIN_INTERVAL,
            comment_id: None,
            run: None,
            latest,
            written_body: None,
            last_edit: None,
        }
    }

    /// Changes the minimum time between two comment edits.
    pub fn with_min_interval(mut self, min_interval: Duration) -> Self {
        self.min_interval = min_interval;
        self
    }

    /// The progress comment's id, once started.
    pub fn comment_id(&self) -> Option<u64> {
        self.comment_id
    }

    /// The current check run's id, once pushed.
    pub fn check_run_id(&self) -> Option<u64> {
        self.run.as_ref().map(|r| r.id)
    }

    /// Reacts 👀 on the trigger and makes sure the job has its one progress
    /// comment (reusing the saved one on a resumed or retried job).
    pub async fn start(&mut self, progress: &JobProgress) -> Result<(), ProgressError> {
        self.latest = progress.clone();
        self.load_saved().await?;
        // Before anything shows on GitHub: should the job end without
        // `finish`, the reconciler knows there is something to settle.
        self.store.open_progress(&self.target.job_id).await?;
        self.react().await?;
        self.ensure_comment().await?;
        self.write_now().await
    }

    /// Remembers `progress` and edits the comment (and the check run) if
    /// the last edit is at least the minimum interval old.
    pub async fn update(&mut self, progress: &JobProgress) -> Result<(), ProgressError> {
        self.latest = progress.clone();
        if self.is_due() {
            self.write_now().await?;
        }
        Ok(())
    }

    /// Writes the latest state now, whatever the throttle says.
    pub async fn flush(&mut self) -> Result<(), ProgressError> {
        self.write_now().await
    }

    /// A new commit was pushed: the check run moves to it. The first push
    /// creates the run; each later one creates a run on the new head with
    /// the progress so far, then concludes the previous run `neutral`.
    pub async fn pushed(&mut self, head_sha: &str) -> Result<(), ProgressError> {
        if self.run.as_ref().is_some_and(|r| r.head_sha == head_sha) {
            return self.update_run().await;
        }
        // The previous run stays current until the new one exists, so a
        // failed create is simply tried again at the next push or report.
        let created = self.create_run(head_sha).await?;
        if let Some(previous) = self.run.replace(created) {
            self.supersede(&previous, head_sha).await?;
        }
        self.write_now().await
    }

    /// The job ended: the check run on the newest head is concluded with
    /// the summary (Retry offered after a failure) and the final state is
    /// written to the comment. A job that never pushed has no check run and
    /// its comment says so.
    pub async fn finish(&mut self, outcome: Outcome, progress: &JobProgress) -> Result<(), ProgressError> {
        self.conclude(outcome, progress).await?;
        self.store.close_progress(&self.target.job_id).await?;
        Ok(())
    }

    /// Brings the saved comment and check run of a job that ended without
    /// [`ProgressReporter::finish`] to their final state (the reconciler's
    /// part; the caller records that it is done). A comment whose id was
    /// never saved is looked for by its marker, never created. `false` when
    /// the job has nothing on GitHub to settle.
    pub async fn settle(&mut self, outcome: Outcome, progress: &JobProgress) -> Result<bool, ProgressError> {
        self.load_saved().await?;
        if self.comment_id.is_none() && self.target.issue_number > 0 {
            let marker = progress_marker(&self.target.job_id);
            let found = self
                .client
                .find_comment(&self.target.repo, self.target.issue_number, &marker)
                .await?;
            self.comment_id = found.map(|comment| comment.id);
        }
        if self.comment_id.is_none() && self.run.is_none() {
            return Ok(false);
        }
        self.conclude(outcome, progress).await?;
        Ok(true)
    }

    /// Concludes the check run and writes the final comment; both are tried
    /// even when the first fails, so one refusal does not hide the other.
    async fn conclude(&mut self, outcome: Outcome, progress: &JobProgress) -> Result<(), ProgressError> {
        self.latest = progress.clone();
        self.latest.status = outcome.status();
        let run = match self.run.clone() {
            Some(run) => {
                let mut fields = self.run_fields(Some(outcome));
                fields.actions = Some(outcome.actions());
                self.client
                    .update_check_run(&self.target.repo, run.id, fields)
                    .await
                    .map(drop)
            }
            None => Ok(()),
        };
        let comment = self.write_now().await;
        run?;
        comment
    }

    async fn load_saved(&mut self) -> Result<(), ProgressError> {
        let Some(saved) = self.store.progress_ids(&self.target.job_id).await? else {
            return Ok(());
        };
        self.comment_id = saved.progress_comment_id.and_then(|id| u64::try_from(id).ok());
        let run_id = saved.check_run_id.and_then(|id| u64::try_from(id).ok());
        if let (Some(id), Some(head_sha)) = (run_id, saved.head_sha) {
            self.run = Some(CurrentRun {
                id,
                head_sha,
                url: None,
            });
        }
        Ok(())
    }

    async fn react(&self) -> Result<(), GitHubError> {
        let repo = &self.target.repo;
        match self.target.trigger_comment_id {
            Some(comment) => self.client.react_to_comment(repo, comment, Reaction::Eyes).await,
            None => {
                self.client
                    .react_to_issue(repo, self.target.issue_number, Reaction::Eyes)
                    .await
            }
        }
    }

    async fn ensure_comment(&mut self) -> Result<(), ProgressError> {
        if self.comment_id.is_some() {
            return Ok(());
        }
        let (repo, issue) = (&self.target.repo, self.target.issue_number);
        let marker = progress_marker(&self.target.job_id);
        let comment = match self.client.find_comment(repo, issue, &marker).await? {
            Some(found) => found,
            None => {
                let body = self.body();
                let created = self
                    .client
                    .create_comment_once(repo, issue, &body, &marker)
                    .await?;
                self.written_body = Some(body);
                self.last_edit = Some(self.clock.now());
                created
            }
        };
        self.comment_id = Some(comment.id);
        self.store
            .set_progress_comment(&self.target.job_id, to_i64(comment.id))
            .await?;
        Ok(())
    }

    fn is_due(&self) -> bool {
        self.last_edit.is_none_or(|last| {
            let since = self.clock.now().duration_since(last).unwrap_or(Duration::ZERO);
            since >= self.min_interval
        })
    }

    /// Edits the comment (when its text changed) and the running check run.
    async fn write_now(&mut self) -> Result<(), ProgressError> {
        let body = self.body();
        if let Some(id) = self.comment_id
            && self.written_body.as_deref() != Some(body.as_str())
        {
            self.client.update_comment(&self.target.repo, id, &body).await?;
            self.written_body = Some(body);
            self.last_edit = Some(self.clock.now());
        }
        if self.latest.status.is_active() {
            self.update_run().await?;
        }
        Ok(())
    }

    async fn update_run(&self) -> Result<(), ProgressError> {
        if let Some(run) = &self.run {
            let fields = self.run_fields(None);
            self.client
                .update_check_run(&self.target.repo, run.id, fields)
                .await?;
        }
        Ok(())
    }

    async fn create_run(&mut self, head_sha: &str) -> Result<CurrentRun, ProgressError> {
        let mut fields = CheckRunFields::create(CHECK_RUN_NAME, head_sha);
        fields.status = Some(CheckStatus::InProgress);
        fields.started_at = Some(iso8601(self.clock.now()));
        fields.external_id = Some(self.target.job_id.clone());
        fields.details_url = self.latest.links.dashboard_url.clone();
        fields.output = Some(render_check_summary(&self.view_at(Some(head_sha))));
        fields.actions = Some(vec![cancel_action()]);
        let run = self.client.create_check_run(&self.target.repo, fields).await?;
        self.store
            .set_check_run(&self.target.job_id, to_i64(run.id), head_sha)
            .await?;
        Ok(CurrentRun {
            id: run.id,
            head_sha: head_sha.to_string(),
            url: run.html_url,
        })
    }

    async fn supersede(&self, previous: &CurrentRun, new_sha: &str) -> Result<(), GitHubError> {
        let fields = CheckRunFields {
            conclusion: Some(CheckConclusion::Neutral),
            completed_at: Some(iso8601(self.clock.now())),
            output: Some(CheckOutput {
                title: format!("superseded by {}", short_sha(new_sha)),
                summary: format!(
                    "The job pushed a newer commit ({}); its check run there shows the progress.",
                    short_sha(new_sha)
                ),
                text: None,
                annotations: Vec::new(),
            }),
            actions: Some(Vec::new()),
            ..CheckRunFields::default()
        };
        self.client
            .update_check_run(&self.target.repo, previous.id, fields)
            .await
            .map(drop)
    }

    /// The fields of an update: in progress, or concluded with `outcome`.
    fn run_fields(&self, outcome: Option<Outcome>) -> CheckRunFields {
        let output = Some(render_check_summary(&self.view()));
        match outcome {
            None => CheckRunFields {
                status: Some(CheckStatus::InProgress),
                output,
                ..CheckRunFields::default()
            },
            Some(outcome) => CheckRunFields {
                conclusion: Some(outcome.conclusion()),
                completed_at: Some(iso8601(self.clock.now())),
                output,
                ..CheckRunFields::default()
            },
        }
    }

    fn body(&self) -> String {
        render_comment(&self.view())
    }

    /// The latest state with what only the reporter knows: the head and the run's page.
    fn view(&self) -> JobProgress {
        self.view_at(self.run.as_ref().map(|r| r.head_sha.as_str()))
    }

    fn view_at(&self, head_sha: Option<&str>) -> JobProgress {
        let mut view = self.latest.clone();
        view.job_id = self.target.job_id.clone();
        if let Some(sha) = head_sha {
            view.head_sha = Some(sha.to_string());
        }
        if view.links.check_run_url.is_none() {
            let current = self
                .run
                .as_ref()
                .filter(|r| Some(r.head_sha.as_str()) == head_sha);
            view.links.check_run_url = current.and_then(|r| r.url.clone());
        }
        view
    }
}

/// The Cancel button shown while the job runs.
pub fn cancel_action() -> CheckAction {
    CheckAction {
        label: "Cancel".into(),
        description: "Stop this job".into(),
        identifier: "cancel".into(),
    }
}

/// The Retry button shown after a failure.
pub fn retry_action() -> CheckAction {
    CheckAction {
        label: "Retry".into(),
        description: "Run this job again".into(),
        identifier: "retry".into(),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as the Checks API wants it.
fn iso8601(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn short_sha(sha: &str) -> String {
    sha.chars().filter(char::is_ascii_hexdigit).take(12).collect()
}

fn to_i64(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}
