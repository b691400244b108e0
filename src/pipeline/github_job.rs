//! The job handler of `serve`: from a claimed job to a pull request.
//!
//! In order: resolve the installation; the permission gate (write, maintain
//! or admin, else `rejected` — the control applier posts the one
//! explanation); the issue must still be open; the progress reporter starts
//! (👀 and the one progress comment); the workspace is prepared on
//! `orchestrator/issue-<n>-<slug>` (reused on a retry); the plan's steps run
//! (`execute.rs`), each commit pushed at once with a fresh installation token
//! and the check run carried to the new head; then, unless in dry-run mode,
//! the pull request is opened (or the open one reused) with `Closes #<n>`;
//! the check run and the comment are concluded whatever happened.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use secrecy::SecretString;
use tokio::sync::Mutex as AsyncMutex;

use super::execute::{ExecuteError, Executed, Execution, StepObserver};
use super::metered::{Meter, MeteredModel, limits_from_config};
use super::plan::{Plan, PlanStep};
use super::sanitize::IssueSnapshot;
use crate::agents::AgentsPolicy;
use crate::config::Config;
use crate::gate::{GateDecision, check_permission};
use crate::github::{GitHub, InstallationClient, NewPullRequest, RepoRef};
use crate::jobs::{JobStatus, Trigger, now_millis};
use crate::llm::{BoxFuture, LanguageModel};
use crate::pricing::Pricing;
use crate::progress::{JobProgress, JobTarget, Outcome, ProgressReporter, StepProgress, StepStatus};
use crate::runner::{JobContext, JobEnd, JobHandler};
use crate::server::Identity;
use crate::store::{ClaimedJob, Store};
use crate::workspace::{CommitIdentity, CommitSha, RemoteSpec, Workspace, Workspaces, branch_name};

/// What every GitHub job shares; one per process.
pub struct GitHubJobs {
    pub store: Store,
    pub config: Arc<Config>,
    /// `None` when no App is configured: then only local-checkout tasks run.
    pub github: Option<GitHub>,
    pub model: Arc<dyn LanguageModel>,
    pub pricing: Arc<Pricing>,
    pub policy: Arc<AgentsPolicy>,
    pub workspaces: Workspaces,
    pub identity: Arc<Identity>,
}

impl JobHandler for GitHubJobs {
    fn run(&self, job: ClaimedJob, ctx: JobContext) -> BoxFuture<'_, JobEnd> {
        Box::pin(async move {
            match self.run_job(&job, &ctx).await {
                Ok(end) => end,
                Err(end) => end,
            }
        })
    }
}

/// A stop before the steps, already in its final form.
type Stop = JobEnd;

fn failed(reason: impl Into<String>) -> JobEnd {
    JobEnd::Failed {
        reason: reason.into(),
    }
}

impl GitHubJobs {
    async fn run_job(&self, job: &ClaimedJob, ctx: &JobContext) -> Result<JobEnd, Stop> {
        if let Some(path) = job.local_path.as_deref() {
            return Ok(self.run_local(job, path, ctx).await);
        }
        let github = self.github.as_ref().ok_or_else(|| {
            failed("internal: no GitHub App is configured (GITHUB_APP_ID and its private key)")
        })?;
        let repo = job.repo.as_deref().and_then(RepoRef::parse).ok_or_else(|| {
            failed("internal: the job names neither a GitHub repository nor a local checkout")
        })?;
        let client = self.installation_client(github, job, &repo).await?;
        self.permission_gate(job, &client, &repo).await?;
        let issue = self.issue_snapshot(job, &client, &repo).await?;
        let target = JobTarget {
            repo: repo.clone(),
            issue_number: job.issue_number.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
            job_id: job.id.clone(),
            trigger_comment_id: job.trigger_comment_id.and_then(|n| u64::try_from(n).ok()),
        };
        let has_issue = job.issue_number.is_some();
        let mut reporter =
            ProgressReporter::new(client.clone(), self.store.clone(), target, github.clock().clone());
        let started = Instant::now();
        let mut progress = JobProgress::new(job.id.clone());
        progress.status = JobStatus::Running;
        if has_issue && let Err(err) = reporter.start(&progress).await {
            tracing::warn!(error = %err, "could not show progress on GitHub");
        }
        let observer = GitHubObserver {
            client: client.clone(),
            default_branch: std::sync::OnceLock::new(),
            repo: repo.clone(),
            reporter: AsyncMutex::new(reporter),
            progress: Mutex::new(progress),
            has_issue,
            dry_run: job.dry_run == 1,
            started,
            fence: LeaseFence {
                store: self.store.clone(),
                job_id: job.id.clone(),
                ctx: ctx.clone(),
            },
        };
        // Shutdown stops the steps too, at once: the job is then given back
        // (Released) with its worktree cleaned up, and resumes elsewhere.
        let ctx = &stop_on_shutdown(ctx);
        let result = self.execute(job, ctx, &client, &repo, &issue, &observer).await;
        let end = self
            .conclude(job, ctx, &client, &repo, &issue, result, &observer)
            .await;
        // The job is over: this also ends the shutdown watcher of `stop_on_shutdown`.
        ctx.cancel.cancel();
        Ok(end)
    }

    async fn installation_client(
        &self,
        github: &GitHub,
        job: &ClaimedJob,
        repo: &RepoRef,
    ) -> Result<InstallationClient, Stop> {
        let id = match job.installation_id.and_then(|id| u64::try_from(id).ok()) {
            Some(id) => id,
            None => {
                let installation = github
                    .repository_installation(repo)
                    .await
                    .map_err(|e| failed(format!("internal: the App is not installed on {}: {e}", repo)))?;
                let _ = self
                    .store
                    .set_installation(&job.id, installation.id, now_millis())
                    .await;
                installation.id
            }
        };
        Ok(github.installation(id))
    }

    /// Work triggered by a person on GitHub needs write, maintain or admin.
    async fn permission_gate(
        &self,
        job: &ClaimedJob,
        client: &InstallationClient,
        repo: &RepoRef,
    ) -> Result<(), Stop> {
        let needs_gate = matches!(
            Trigger::parse(&job.trigger_kind),
            Some(Trigger::Label | Trigger::Comment | Trigger::CheckRun)
        );
        let Some(login) = job.sender_login.as_deref().filter(|_| needs_gate) else {
            return Ok(());
        };
        match check_permission(client, repo, login).await {
            Ok(GateDecision::Allowed(_)) => Ok(()),
            Ok(GateDecision::Denied { reason, .. }) => Err(JobEnd::Rejected { reason }),
            Err(err) => Err(failed(format!(
                "internal: could not check @{login}'s permission: {err}"
            ))),
        }
    }

    /// The issue as snapshotted at trigger time; the job stops if the issue
    /// was closed or locked since.
    async fn issue_snapshot(
        &self,
        job: &ClaimedJob,
        client: &InstallationClient,
        repo: &RepoRef,
    ) -> Result<IssueSnapshot, Stop> {
        let title = job.issue_title.clone().unwrap_or_default();
        let body = job.issue_body.clone().unwrap_or_default();
        if let Some(number) = job.issue_number.and_then(|n| u64::try_from(n).ok()) {
            let current = client
                .issue(repo, number)
                .await
                .map_err(|e| failed(format!("internal: cannot read issue #{number}: {e}")))?;
            if current.state == "closed" || current.locked {
                return Err(JobEnd::Cancelled {
                    reason: format!("issue_closed: issue #{number} was closed or locked"),
                });
            }
        }
        let comments = match job.issue_number.and_then(|n| u64::try_from(n).ok()) {
            Some(number) => writers_comments(client, repo, number, job.trigger_comment_id).await,
            None => Vec::new(),
        };
        // `writers_comments` already kept only authors with write access.
        let snapshot = IssueSnapshot::new(&title, &body, comments, |_| true);
        Ok(match &job.instructions {
            Some(instructions) => snapshot.with_instructions(instructions),
            None => snapshot,
        })
    }

    async fn execute(
        &self,
        job: &ClaimedJob,
        ctx: &JobContext,
        client: &InstallationClient,
        repo: &RepoRef,
        issue: &IssueSnapshot,
        observer: &GitHubObserver,
    ) -> Result<(Executed, Meter), ExecuteError> {
        let repository = client
            .repository(repo)
            .await
            .map_err(|e| ExecuteError::Publish(e.to_string()))?;
        let spec = RemoteSpec::from_repository(&repository).ok_or_else(|| {
            ExecuteError::Publish(format!("unexpected repository name {}", repository.full_name))
        })?;
        let issue_number = job.issue_number.and_then(|n| u64::try_from(n).ok());
        let branch = job
            .branch
            .clone()
            .unwrap_or_else(|| branch_name(issue_number, &job.id, &issue.title));
        let token = client
            .token()
            .await
            .map_err(|e| ExecuteError::Publish(e.to_string()))?;
        let workspace = self
            .workspaces
            .prepare(&job.id, &spec, &branch, Some(&token))
            .await?;
        self.store.set_branch(&job.id, &branch, now_millis()).await?;
        observer.set_branch(&branch);
        let _ = observer.default_branch.set(spec.default_branch.clone());
        let author = match self.identity.bot() {
            Some(bot) => CommitIdentity::bot(bot),
            None => CommitIdentity::new("orchestrator[bot]", "orchestrator[bot]@users.noreply.github.com"),
        };
        let usage = self.store.load_usage(&job.id).await?;
        let meter = Meter::from(usage);
        let daily_remaining = self.daily_remaining(job).await?;
        let limits = self.job_limits(job, daily_remaining);
        let metered = MeteredModel::resume(
            self.model.as_ref(),
            &self.pricing,
            limits,
            observer.started,
            meter,
        );
        let execution = Execution {
            store: &self.store,
            config: &self.config,
            policy: &self.policy,
            model: &metered,
            job_id: &job.id,
            workspace: &workspace,
            issue,
            repo_agents_md: std::fs::read_to_string(workspace.root().join("AGENTS.md")).ok(),
            author,
            co_author: match (&job.sender_login, job.sender_id) {
                (Some(login), Some(id)) => u64::try_from(id).ok().map(|id| (login.clone(), id)),
                _ => None,
            },
            cancel: &ctx.cancel,
        };
        let mut result = execution.run(observer).await;
        if let Ok(done) = &result
            && self.direct_push()
            && job.dry_run != 1
            && !done.commits.is_empty()
        {
            // `direct_push` (only with `allow_direct_push`): the commits land on
            // the default branch, fast-forward only; no pull request.
            let landed = match observer.fence.confirm().await {
                Err(lost) => Err(ExecuteError::Publish(lost)),
                Ok(()) => match client.token().await {
                    Ok(token) => workspace
                        .push_to(&spec.default_branch, Some(&token))
                        .await
                        .map_err(Into::into),
                    Err(e) => Err(ExecuteError::Publish(format!("installation token: {e}"))),
                },
            };
            if let Err(err) = landed {
                result = Err(err);
            }
        }
        let meter = metered.meter();
        if let Err(err) = workspace.cleanup().await {
            tracing::warn!(error = %err, "could not remove the worktree");
        }
        result.map(|done| (done, meter))
    }

    /// The job's own budgets (a task may override the configured ones).
    fn job_limits(&self, job: &ClaimedJob, daily_remaining: f64) -> crate::llm::budget::Limits {
        let mut limits = limits_from_config(&self.config.budget, daily_remaining);
        limits.usd = job.budget_usd;
        limits.requests = u32::try_from(job.budget_requests).unwrap_or(limits.requests);
        limits.wall_clock =
            std::time::Duration::from_secs(u64::try_from(job.budget_minutes).unwrap_or(0) * 60);
        limits
    }

    /// A task on a local checkout (`POST /tasks` with `"path"`): the same
    /// steps on a new branch of that repository, no GitHub.
    async fn run_local(&self, job: &ClaimedJob, path: &str, ctx: &JobContext) -> JobEnd {
        let ctx = &stop_on_shutdown(ctx);
        let title = job.issue_title.clone().unwrap_or_default();
        let body = job.issue_body.clone().unwrap_or_default();
        let branch = job
            .branch
            .clone()
            .unwrap_or_else(|| branch_name(None, &job.id, &title));
        let workspace = match self
            .workspaces
            .open_local(&job.id, std::path::Path::new(path), &branch)
            .await
        {
            Ok(workspace) => workspace,
            Err(err) => return failed(format!("internal: git: {err}")),
        };
        if let Err(err) = self.store.set_branch(&job.id, &branch, now_millis()).await {
            return failed(format!("internal: {err}"));
        }
        let usage = self.store.load_usage(&job.id).await.unwrap_or_default();
        let meter = Meter::from(usage);
        let limits = self.job_limits(job, self.config.budget.daily_usd_per_installation);
        let metered = MeteredModel::resume(self.model.as_ref(), &self.pricing, limits, Instant::now(), meter);
        let issue = IssueSnapshot::new(&title, &body, Vec::new(), |_| false);
        let execution = Execution {
            store: &self.store,
            config: &self.config,
            policy: &self.policy,
            model: &metered,
            job_id: &job.id,
            workspace: &workspace,
            issue: &issue,
            repo_agents_md: std::fs::read_to_string(std::path::Path::new(path).join("AGENTS.md")).ok(),
            author: CommitIdentity::new("orchestrator", "orchestrator@localhost"),
            co_author: None,
            cancel: &ctx.cancel,
        };
        let result = execution.run(&super::execute::LogObserver).await;
        if let Err(err) = workspace.cleanup().await {
            tracing::warn!(error = %err, "could not remove the worktree");
        }
        let end = match result {
            Ok(_) => JobEnd::Succeeded,
            Err(_) if ctx.cancel.is_cancelled() => match self.store.cancel_requested(&job.id).await {
                Ok(true) => JobEnd::Cancelled {
                    reason: "cancelled_by_user: stopped on request".into(),
                },
                _ => JobEnd::Released,
            },
            Err(err) => failed(err.status_reason()),
        };
        ctx.cancel.cancel();
        end
    }

    /// Whether finished work is pushed to the default branch instead of a PR
    /// (configuration validation already demands `allow_direct_push`).
    fn direct_push(&self) -> bool {
        self.config.policy.merge_strategy == crate::config::MergeStrategy::DirectPush
            && self.config.policy.allow_direct_push
    }

    /// What the job's installation may still spend today, across its other jobs.
    async fn daily_remaining(&self, job: &ClaimedJob) -> Result<f64, ExecuteError> {
        let cap = self.config.budget.daily_usd_per_installation;
        let Some(installation) = job.installation_id.and_then(|id| u64::try_from(id).ok()) else {
            return Ok(cap);
        };
        let now = chrono::Utc::now();
        let midnight = now
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis())
            .unwrap_or(0);
        let spent = self
            .store
            .installation_spent_since(installation, &job.id, midnight)
            .await?;
        Ok((cap - spent).max(0.0))
    }

    /// Opens the PR (when something was pushed), concludes the check run and
    /// the comment, and says how the job ended.
    #[allow(clippy::too_many_arguments)]
    async fn conclude(
        &self,
        job: &ClaimedJob,
        ctx: &JobContext,
        client: &InstallationClient,
        repo: &RepoRef,
        issue: &IssueSnapshot,
        result: Result<(Executed, Meter), ExecuteError>,
        observer: &GitHubObserver,
    ) -> JobEnd {
        let end = match result {
            Ok((done, meter)) => {
                observer.set_usage(&meter);
                observer.set_files(&done.files_changed);
                self.publish(job, client, repo, issue, &done, observer).await
            }
            Err(err) if ctx.cancel.is_cancelled() => match self.store.cancel_requested(&job.id).await {
                Ok(true) => JobEnd::Cancelled {
                    reason: "cancelled_by_user: stopped on request".into(),
                },
                // Our lease was lost (another worker owns the job) or we are shutting down.
                _ if ctx.shutdown.is_cancelled() => JobEnd::Released,
                _ => {
                    tracing::warn!(error = %err, "stopped: lease lost");
                    JobEnd::Released
                }
            },
            Err(err) => failed(err.status_reason()),
        };
        if let Ok(usage) = self.store.load_usage(&job.id).await {
            observer.set_cost(usage.usd, usage.tokens_in, usage.tokens_out);
        }
        let outcome = match &end {
            JobEnd::Succeeded => Some((Outcome::Succeeded, JobStatus::Succeeded, None)),
            JobEnd::Failed { reason } => Some((Outcome::Failed, JobStatus::Failed, Some(reason.clone()))),
            JobEnd::Cancelled { reason } => {
                Some((Outcome::Cancelled, JobStatus::Cancelled, Some(reason.clone())))
            }
            JobEnd::Rejected { .. } | JobEnd::Released => None,
        };
        if let Some((outcome, status, reason)) = outcome {
            observer.finish(outcome, status, reason).await;
        }
        end
    }

    async fn publish(
        &self,
        job: &ClaimedJob,
        client: &InstallationClient,
        repo: &RepoRef,
        issue: &IssueSnapshot,
        done: &Executed,
        observer: &GitHubObserver,
    ) -> JobEnd {
        if job.dry_run == 1 || done.commits.is_empty() || self.direct_push() {
            return JobEnd::Succeeded;
        }
        if let Err(err) = self
            .store
            .advance_status(&job.id, JobStatus::Publishing, now_millis())
            .await
        {
            tracing::warn!(error = %err, "could not record the publishing phase");
        }
        let issue_number = job.issue_number.and_then(|n| u64::try_from(n).ok());
        if let Some(number) = issue_number {
            match client.issue(repo, number).await {
                Ok(current) if current.state == "closed" || current.locked => {
                    return JobEnd::Cancelled {
                        reason: format!(
                            "issue_closed: issue #{number} was closed or locked; no pull request opened"
                        ),
                    };
                }
                Ok(_) => {}
                Err(err) => return failed(format!("internal: cannot read issue #{number}: {err}")),
            }
        }
        let Some(branch) = observer.branch() else {
            return failed("internal: no branch");
        };
        let Some(base) = observer.default_branch.get().cloned() else {
            return failed("internal: the default branch is unknown");
        };
        if let Err(reason) = observer.fence.confirm().await {
            if observer.fence.ctx.cancel.is_cancelled() {
                // Another worker holds the job now and opens the pull request.
                return JobEnd::Released;
            }
            return failed(reason);
        }
        let new = NewPullRequest {
            title: pr_title(issue, issue_number),
            head: branch,
            base,
            body: pr_body(&done.plan, issue_number, &observer.snapshot()),
            draft: false,
            maintainer_can_modify: true,
        };
        match client.create_pull_request(repo, &new).await {
            Ok(pr) => {
                let _ = self
                    .store
                    .set_pull_request(&job.id, pr.number, &pr.html_url, now_millis())
                    .await;
                observer.set_pr(&pr.html_url);
                JobEnd::Succeeded
            }
            Err(err) => failed(format!("internal: could not open the pull request: {err}")),
        }
    }
}

/// The issue's comments by people with write access (bots, the App and the
/// triggering comment left out — the latter's text is the instructions), up
/// to the triggering comment when there is one. A failure to read them is
/// logged and the job goes on with the issue text alone.
async fn writers_comments(
    client: &InstallationClient,
    repo: &RepoRef,
    number: u64,
    trigger_comment: Option<i64>,
) -> Vec<(String, String)> {
    let comments = match client.list_comments(repo, number).await {
        Ok(comments) => comments,
        Err(err) => {
            tracing::warn!(error = %err, "could not read the issue's comments");
            return Vec::new();
        }
    };
    let trigger = trigger_comment.and_then(|id| u64::try_from(id).ok());
    let mut allowed: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    let mut kept = Vec::new();
    for comment in comments {
        if trigger.is_some_and(|t| comment.id >= t) {
            break;
        }
        let Some(user) = comment.user.filter(|u| u.kind != "Bot") else {
            continue;
        };
        let can_write = match allowed.get(&user.login) {
            Some(known) => *known,
            None => {
                let verdict = client
                    .collaborator_permission(repo, &user.login)
                    .await
                    .map(|p| p.can_write())
                    .unwrap_or(false);
                allowed.insert(user.login.clone(), verdict);
                verdict
            }
        };
        if can_write {
            kept.push((user.login, comment.body));
        }
    }
    kept
}

/// A context whose `cancel` also fires on shutdown.
fn stop_on_shutdown(ctx: &JobContext) -> JobContext {
    let stop = ctx.cancel.child_token();
    let (shutdown, trigger) = (ctx.shutdown.clone(), stop.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown.cancelled() => trigger.cancel(),
            _ = trigger.cancelled() => {}
        }
    });
    JobContext {
        cancel: stop,
        ..ctx.clone()
    }
}

fn pr_title(issue: &IssueSnapshot, number: Option<u64>) -> String {
    let title: String = issue.title.chars().take(200).collect();
    match number {
        Some(n) if !title.is_empty() => format!("{title} (#{n})"),
        _ if !title.is_empty() => title,
        _ => "orchestrator changes".into(),
    }
}

fn pr_body(plan: &Plan, number: Option<u64>, progress: &JobProgress) -> String {
    let mut body = String::from(
        "This pull request was written by orchestrator. Review it like any other.\n\n## Plan\n\n",
    );
    for (i, step) in plan.steps.iter().enumerate() {
        body.push_str(&format!("{}. **{}**: {}\n", i + 1, step.title, step.rationale));
        for command in &step.commands {
            body.push_str(&format!("   - suggested check (not run): `{command}`\n"));
        }
    }
    body.push_str(&format!(
        "\nLLM usage: {} tokens in, {} tokens out, ${:.4}.\n",
        progress.tokens_in, progress.tokens_out, progress.cost_usd
    ));
    if let Some(n) = number {
        body.push_str(&format!("\nCloses #{n}\n"));
    }
    orchestrator_commands::neutralize_commands(&body)
}

/// Checks that this worker still holds the job before each effect on GitHub.
struct LeaseFence {
    store: Store,
    job_id: String,
    ctx: JobContext,
}

impl LeaseFence {
    /// `Err` when the effect must not happen: the lease is lost (the job's
    /// `cancel` has fired) or could not be confirmed.
    async fn confirm(&self) -> Result<(), String> {
        match self.ctx.confirm_lease(&self.store, &self.job_id).await {
            Ok(true) => Ok(()),
            Ok(false) => Err("internal: the job's lease was lost to another worker".into()),
            Err(err) => Err(format!("internal: cannot confirm the job's lease: {err}")),
        }
    }
}

/// Pushes each commit, and keeps GitHub's view of the job current.
struct GitHubObserver {
    client: InstallationClient,
    /// The PR's base, as `GET /repos/{o}/{r}` said at job start.
    default_branch: std::sync::OnceLock<String>,
    repo: RepoRef,
    reporter: AsyncMutex<ProgressReporter>,
    progress: Mutex<JobProgress>,
    has_issue: bool,
    dry_run: bool,
    started: Instant,
    fence: LeaseFence,
}

impl GitHubObserver {
    fn with_progress<T>(&self, f: impl FnOnce(&mut JobProgress) -> T) -> T {
        let mut guard = match self.progress.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        guard.elapsed = self.started.elapsed();
        f(&mut guard)
    }

    fn snapshot(&self) -> JobProgress {
        self.with_progress(|p| p.clone())
    }

    fn set_branch(&self, branch: &str) {
        self.with_progress(|p| p.links.branch = Some(branch.to_string()));
    }

    fn branch(&self) -> Option<String> {
        self.with_progress(|p| p.links.branch.clone())
    }

    fn set_pr(&self, url: &str) {
        self.with_progress(|p| p.links.pr_url = Some(url.to_string()));
    }

    fn set_files(&self, files: &[String]) {
        self.with_progress(|p| p.files_changed = files.to_vec());
    }

    fn set_usage(&self, meter: &Meter) {
        self.set_cost(meter.usd, meter.tokens_in, meter.tokens_out);
    }

    fn set_cost(&self, usd: f64, tokens_in: u64, tokens_out: u64) {
        self.with_progress(|p| {
            p.cost_usd = usd;
            p.tokens_in = tokens_in;
            p.tokens_out = tokens_out;
        });
    }

    fn set_step(&self, number: usize, status: StepStatus) {
        self.with_progress(|p| {
            if let Some(step) = p.steps.get_mut(number.saturating_sub(1)) {
                step.status = status;
            }
        });
    }

    async fn report(&self) {
        if !self.has_issue {
            return;
        }
        let progress = self.snapshot();
        if let Err(err) = self.reporter.lock().await.update(&progress).await {
            tracing::warn!(error = %err, "could not update progress on GitHub");
        }
    }

    async fn finish(&self, outcome: Outcome, status: JobStatus, reason: Option<String>) {
        if !self.has_issue {
            return;
        }
        let progress = self.with_progress(|p| {
            p.status = status;
            p.status_reason = reason;
            // A step still running was interrupted (failed, cancelled, out
            // of budget); the store records it `failed`, and so do we.
            for step in &mut p.steps {
                if matches!(step.status, StepStatus::Running) {
                    step.status = StepStatus::Failed;
                }
            }
            p.clone()
        });
        if let Err(err) = self.reporter.lock().await.finish(outcome, &progress).await {
            tracing::warn!(error = %err, "could not conclude progress on GitHub");
        }
    }

    async fn push(&self, workspace: &Workspace, commit: &CommitSha) -> Result<(), String> {
        self.fence.confirm().await?;
        // A fresh token before every push: a job may outlive a token.
        let token: SecretString = self
            .client
            .token()
            .await
            .map_err(|e| format!("installation token: {e}"))?;
        workspace
            .push(Some(&token))
            .await
            .map_err(|e| format!("push: {e}"))?;
        if self.has_issue {
            let mut reporter = self.reporter.lock().await;
            if let Err(err) = reporter.pushed(&commit.0).await {
                tracing::warn!(error = %err, "could not move the check run to the new head");
            }
        }
        tracing::info!(repo = %self.repo, sha = %commit.0, "step pushed");
        Ok(())
    }
}

impl StepObserver for GitHubObserver {
    fn planned(&self, plan: &Plan, _resumed: bool) {
        self.with_progress(|p| {
            p.steps = plan
                .steps
                .iter()
                .map(|s| StepProgress {
                    title: s.title.clone(),
                    status: StepStatus::Pending,
                })
                .collect();
        });
    }

    fn step_started(&self, number: usize, _step: &PlanStep) {
        self.set_step(number, StepStatus::Running);
    }

    fn step_finished(&self, number: usize, _step: &PlanStep, commit: Option<&CommitSha>, _files: &[String]) {
        let status = if commit.is_some() {
            StepStatus::Succeeded
        } else {
            StepStatus::Empty
        };
        self.set_step(number, status);
    }

    fn committed<'a>(
        &'a self,
        workspace: &'a Workspace,
        commit: &'a CommitSha,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if !self.dry_run {
                self.push(workspace, commit).await?;
            }
            self.report().await;
            Ok(())
        })
    }
}
