//! Running a job's plan in a workspace: plan once, then for each step build
//! the context, ask the coder, apply, commit, and hand the commit to the
//! caller (which pushes it and updates GitHub, or prints it).
//!
//! Everything is recorded as it happens (the plan, each step's state and
//! commit, the usage), so a job claimed again after a crash, or retried,
//! continues from its last completed step: a stored plan is reused, and steps
//! recorded `succeeded` or `empty` are not done twice.

use std::path::Path;

use orchestrator_context::{
    BuiltContext, ContextRequest, ContextSettings, DenseHit, IndexOptions, RepoIndex,
    StepInput as ContextStep, build_context,
};
use tokio_util::sync::CancellationToken;

use super::AgentError;
use super::code::{CoderSettings, StepInput, StepOutcome, code_step};
use super::embeddings::{Embedder, dense_ranking};
use super::metered::MeteredModel;
use super::plan::{Plan, PlanInput, PlanStep, PlannerSettings, plan};
use super::sanitize::IssueSnapshot;
use crate::agents::AgentsPolicy;
use crate::config::Config;
use crate::jobs::{JobStatus, now_millis};
use crate::llm::BoxFuture;
use crate::memory::{self, Memory, Recalled};
use crate::store::{JobUsage, StepContextMetrics, Store, StoreError};
use crate::workspace::{CommitIdentity, CommitSha, Workspace, WorkspaceError};

/// Why running the plan stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("internal: {0}")]
    Store(#[from] StoreError),
    #[error("internal: git: {0}")]
    Workspace(#[from] WorkspaceError),
    #[error("internal: {0}")]
    Publish(String),
}

impl ExecuteError {
    /// `code: human text` for the job's `status_reason`.
    pub fn status_reason(&self) -> String {
        match self {
            ExecuteError::Agent(e) => e.status_reason(),
            other => other.to_string(),
        }
    }
}

/// What the caller does around the steps: GitHub pushes and reports, the
/// terminal prints.
pub trait StepObserver: Send + Sync {
    /// The plan is known (new or resumed).
    fn planned(&self, plan: &Plan, resumed: bool);
    /// A step starts (`number` counts from 1).
    fn step_started(&self, number: usize, step: &PlanStep);
    /// A step ended: `commit` is `None` for an empty step. Also called, with
    /// no `files`, for each step an earlier attempt completed.
    fn step_finished(&self, number: usize, step: &PlanStep, commit: Option<&CommitSha>, files: &[String]);
    /// A step's commit exists: push it now (GitHub) or do nothing (local).
    fn committed<'a>(
        &'a self,
        workspace: &'a Workspace,
        commit: &'a CommitSha,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// Everything one run of a job's plan needs.
pub struct Execution<'a> {
    pub store: &'a Store,
    pub config: &'a Config,
    pub policy: &'a AgentsPolicy,
    pub model: &'a MeteredModel<'a>,
    pub job_id: &'a str,
    pub workspace: &'a Workspace,
    pub issue: &'a IssueSnapshot,
    /// The target repository's own AGENTS.md.
    pub repo_agents_md: Option<String>,
    pub author: CommitIdentity,
    /// The requester, credited with a `Co-authored-by` trailer.
    pub co_author: Option<(String, u64)>,
    pub cancel: &'a CancellationToken,
}

/// A step an earlier attempt completed.
struct DoneStep {
    position: usize,
    commit_sha: Option<String>,
}

/// What a finished run did.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    pub plan: Plan,
    /// Every step's commit, in order, those of earlier attempts included.
    pub commits: Vec<CommitSha>,
    pub files_changed: Vec<String>,
}

impl Execution<'_> {
    /// Plans (or reloads the plan) and runs every step not yet done.
    pub async fn run(&self, observer: &dyn StepObserver) -> Result<Executed, ExecuteError> {
        self.store
            .advance_status(self.job_id, JobStatus::Planning, now_millis())
            .await?;
        let (plan, resumed) = self.plan_or_resume().await?;
        self.store
            .advance_status(self.job_id, JobStatus::Running, now_millis())
            .await?;
        observer.planned(&plan, resumed);
        let done = self.completed_steps().await?;
        let mut commits = Vec::new();
        let total = plan.steps.len();
        for (index, step) in plan.steps.iter().enumerate() {
            if let Some(earlier) = done.iter().find(|s| s.position == index) {
                // Done by an earlier attempt: its commit is on the branch
                // already and counts for the pull request.
                let commit = earlier.commit_sha.clone().map(CommitSha);
                commits.extend(commit.clone());
                observer.step_finished(index + 1, step, commit.as_ref(), &[]);
                continue;
            }
            let number = index + 1;
            observer.step_started(number, step);
            self.store
                .set_step(self.job_id, index, "running", None, None, now_millis())
                .await?;
            let outcome = self.run_step(step, number, total).await;
            self.save_usage().await?;
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(err) => {
                    let detail = err.status_reason();
                    self.store
                        .set_step(self.job_id, index, "failed", Some(&detail), None, now_millis())
                        .await?;
                    return Err(err);
                }
            };
            let (commit, files) = match outcome {
                StepOutcome::Empty => (None, Vec::new()),
                StepOutcome::Applied(report) => {
                    let files = report.files.iter().map(|f| f.path.to_string()).collect();
                    (self.commit(step).await?, files)
                }
            };
            if let Some(sha) = &commit {
                observer
                    .committed(self.workspace, sha)
                    .await
                    .map_err(ExecuteError::Publish)?;
                commits.push(sha.clone());
            }
            let status = if commit.is_some() { "succeeded" } else { "empty" };
            let sha = commit.as_ref().map(|c| c.0.as_str());
            self.store
                .set_step(self.job_id, index, status, None, sha, now_millis())
                .await?;
            self.remember_step(index, step, &files, sha).await;
            observer.step_finished(number, step, commit.as_ref(), &files);
        }
        let files_changed = self.workspace.changed_files_since_base().await?;
        Ok(Executed {
            plan,
            commits,
            files_changed,
        })
    }

    async fn plan_or_resume(&self) -> Result<(Plan, bool), ExecuteError> {
        if let Some(stored) = self.store.load_plan(self.job_id).await? {
            if let Ok(plan) = serde_json::from_str::<Plan>(&stored) {
                return Ok((plan, true));
            }
            tracing::warn!(job = self.job_id, "stored plan is unreadable; planning again");
        }
        let overview = overview(&self.index()?, self.workspace.root());
        let input = PlanInput {
            policy: self.policy,
            repo_agents_md: self.repo_agents_md.as_deref(),
            issue: self.issue,
            overview: &overview,
        };
        let settings = PlannerSettings::from_config(self.config);
        let result = plan(self.model, &input, &settings, self.cancel).await;
        self.save_usage().await?;
        let plan = result?;
        let json = serde_json::to_string(&plan).map_err(|e| ExecuteError::Publish(e.to_string()))?;
        let titles: Vec<String> = plan.steps.iter().map(|s| s.title.clone()).collect();
        self.store
            .save_plan(self.job_id, &json, &titles, &self.policy.hash, now_millis())
            .await?;
        Ok((plan, false))
    }

    /// Steps a previous attempt completed (`succeeded` or `empty`), with
    /// their commits.
    async fn completed_steps(&self) -> Result<Vec<DoneStep>, ExecuteError> {
        Ok(self
            .store
            .stored_steps(self.job_id)
            .await?
            .into_iter()
            .filter(|s| s.status == "succeeded" || s.status == "empty")
            .filter_map(|s| {
                Some(DoneStep {
                    position: usize::try_from(s.position).ok()?,
                    commit_sha: s.commit_sha,
                })
            })
            .collect())
    }

    async fn run_step(
        &self,
        step: &PlanStep,
        number: usize,
        total: usize,
    ) -> Result<StepOutcome, ExecuteError> {
        let recalled = self.recall(number - 1).await;
        let context = self.context_for(step, recalled).await?;
        self.record_context(number - 1, step, &context).await;
        let input = StepInput {
            policy: self.policy,
            repo_agents_md: None,
            issue: Some(self.issue),
            step,
            number,
            total,
            context: &context.text,
            root: self.workspace.root(),
        };
        let settings = CoderSettings::from_config(self.config);
        let outcome = code_step(self.model, &input, &settings, self.cancel).await;
        if outcome.is_err() {
            // Nothing of a refused or interrupted step stays in the worktree.
            self.workspace.discard_changes().await?;
        }
        Ok(outcome?)
    }

    async fn context_for(&self, step: &PlanStep, recalled: Recalled) -> Result<BuiltContext, ExecuteError> {
        let settings = context_settings(self.config);
        let index = self.index()?;
        let mut request = ContextRequest {
            model: self.config.models.coder.clone(),
            task: self.issue.render(),
            step: ContextStep {
                title: step.title.clone(),
                rationale: step.rationale.clone(),
                acceptance: step.acceptance.clone(),
                files: step.files.clone(),
            },
            artifacts_dir: Some(self.config.data_dir.join("artifacts").join(self.job_id)),
            memory: recalled.memory,
            history: recalled.history,
            ..ContextRequest::default()
        };
        let dense = self.dense_ranking(&index, &request, &settings).await;
        let embeddings_failed = dense.as_ref().err().cloned();
        request.dense = dense.ok().flatten();
        let mut built = build_context(&index, &request, &settings);
        built.diagnostics.notes.extend(embeddings_failed);
        crate::metrics::context_tokens(built.diagnostics.context_tokens);
        write_diagnostics(&self.config.data_dir, self.job_id, &step.title, &built);
        Ok(built)
    }

    /// The job's notes and the summaries of the steps before `index`; a
    /// failure to read them costs the step that context, not the job.
    async fn recall(&self, index: usize) -> Recalled {
        memory::recall(self.store, self.job_id, Some(index))
            .await
            .unwrap_or_else(|err| {
                tracing::warn!(job = self.job_id, error = %err, "could not read the job's memory");
                Recalled::default()
            })
    }

    /// Stores the step's context diagnostics (`GET /jobs/{id}/context`).
    async fn record_context(&self, index: usize, step: &PlanStep, built: &BuiltContext) {
        let d = &built.diagnostics;
        let metrics = StepContextMetrics {
            position: i64::try_from(index).unwrap_or(i64::MAX),
            step_title: step.title.clone(),
            model: d.model.clone(),
            context_tokens: i64::try_from(d.context_tokens).unwrap_or(i64::MAX),
            prompt_tokens: i64::try_from(d.prompt_tokens).unwrap_or(i64::MAX),
            candidates: i64::try_from(d.candidates.len()).unwrap_or(i64::MAX),
            kept: i64::try_from(
                d.candidates
                    .iter()
                    .filter(|c| c.decision != orchestrator_context::Decision::Dropped)
                    .count(),
            )
            .unwrap_or(i64::MAX),
            diagnostics: serde_json::to_string(d).unwrap_or_else(|_| "null".into()),
            created_at: now_millis(),
        };
        if let Err(err) = self.store.save_context_metrics(self.job_id, &metrics).await {
            tracing::warn!(job = self.job_id, error = %err, "could not store the context diagnostics");
        }
    }

    /// The memory of a completed step: a `Decision` note (through the
    /// validated path, so limits and the archivist apply) and a summary
    /// offered to later steps as history. Both are written once per step,
    /// however often a resumed job gets here.
    async fn remember_step(&self, index: usize, step: &PlanStep, files: &[String], commit: Option<&str>) {
        let number = index + 1;
        let memory = Memory::new(self.store.clone(), self.config);
        let max_bytes = u64::from(self.config.memory.max_item_bytes);
        let note = memory::step_note(number, &step.title, &step.rationale, files, max_bytes);
        let key = format!("step:{number}");
        if let Err(err) = memory.add_note(self.job_id, &note, Some(&key)).await {
            tracing::warn!(job = self.job_id, step = number, error = %err, "could not store the step's note");
        }
        let summary = step_summary(number, &step.title, files, commit);
        if let Err(err) = self
            .store
            .save_step_summary(self.job_id, index, &summary, now_millis())
            .await
        {
            tracing::warn!(job = self.job_id, step = number, error = %err, "could not store the step's summary");
        }
    }

    /// The step's candidate pool ranked by embedding similarity, when an
    /// embedding model is configured (see [`super::embeddings`]).
    async fn dense_ranking(
        &self,
        index: &RepoIndex,
        request: &ContextRequest,
        settings: &ContextSettings,
    ) -> Result<Option<Vec<DenseHit>>, String> {
        let embedder = self
            .config
            .models
            .embedding
            .as_deref()
            .filter(|m| !m.trim().is_empty())
            .map(|embedding_model| Embedder {
                store: self.store,
                model: self.model,
                embedding_model,
                cancel: self.cancel,
            });
        dense_ranking(embedder.as_ref(), index, request, settings).await
    }

    /// The worktree's index (cached under `ORCH_DATA_DIR/indexes`, brought up
    /// to date incrementally, so opening it before each step is cheap).
    fn index(&self) -> Result<RepoIndex, ExecuteError> {
        let cache = self.config.data_dir.join("indexes");
        let options = IndexOptions {
            max_file_bytes: self.config.context.max_file_bytes,
        };
        let (index, _) = RepoIndex::open(self.workspace.root(), &cache, &options)
            .map_err(|e| ExecuteError::Publish(format!("context index: {e}")))?;
        Ok(index)
    }

    async fn commit(&self, step: &PlanStep) -> Result<Option<CommitSha>, ExecuteError> {
        let co_author = self.co_author.as_ref().map(|(login, id)| (login.as_str(), *id));
        Ok(self
            .workspace
            .commit_step(&step.title, &step.rationale, &self.author, co_author)
            .await?)
    }

    async fn save_usage(&self) -> Result<(), ExecuteError> {
        let usage = JobUsage::from(&self.model.meter());
        self.store.save_usage(self.job_id, &usage, now_millis()).await?;
        Ok(())
    }
}

/// One line on what a step did, for later steps' history.
fn step_summary(number: usize, title: &str, files: &[String], commit: Option<&str>) -> String {
    let outcome = match commit {
        Some(sha) => format!("committed {}", &sha[..sha.len().min(12)]),
        None => "made no change".to_string(),
    };
    let files = if files.is_empty() {
        String::new()
    } else {
        format!("; files: {}", files.join(", "))
    };
    format!("Step {number} \"{title}\": {outcome}{files}")
}

/// The context engine's settings from the configuration.
pub fn context_settings(config: &Config) -> ContextSettings {
    let c = &config.context;
    ContextSettings {
        budget_tokens: c.budget_tokens as usize,
        output_reserve_tokens: c.output_reserve_tokens as usize,
        hard_cap_tokens: c.hard_cap_tokens as usize,
        compaction_ratio: c.compaction_ratio,
        top_k: c.top_k as usize,
        min_score: c.min_score,
        max_files: c.max_files as usize,
        snippet_tokens: c.snippet_tokens as usize,
        history_limit: c.history_limit as usize,
        max_file_bytes: c.max_file_bytes,
        docs_dir: c.docs_dir.clone(),
    }
}

/// `artifacts/<job>/context_<step>.json`; a failure to write is logged, not fatal.
fn write_diagnostics(data_dir: &Path, job_id: &str, step_title: &str, built: &BuiltContext) {
    let dir = data_dir.join("artifacts").join(job_id);
    let name = crate::workspace::slug(step_title);
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        let json = serde_json::to_vec_pretty(&built.diagnostics).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(format!("context_{name}.json")), json)
    };
    if let Err(err) = write() {
        tracing::warn!(error = %err, "could not write context diagnostics");
    }
}

/// A short overview for the planner: the indexed files (at most 300 paths;
/// `.gitignore`d, vendored, binary and secret-looking files are not indexed)
/// and the README's start.
pub fn overview(index: &RepoIndex, root: &Path) -> String {
    let mut files: Vec<&str> = index.files().iter().map(|f| f.path.as_str()).collect();
    files.sort_unstable();
    files.truncate(300);
    let mut out = format!("Repository files ({} shown):\n", files.len());
    for file in &files {
        out.push_str(file);
        out.push('\n');
    }
    for readme in ["README.md", "README", "README.rst", "readme.md"] {
        if let Ok(text) = std::fs::read_to_string(root.join(readme)) {
            let start: String = text.chars().take(3000).collect();
            out.push_str(&format!("\n{readme} (start):\n{start}\n"));
            break;
        }
    }
    out
}

/// An observer that only logs: local-checkout tasks run by `serve`.
pub struct LogObserver;

impl StepObserver for LogObserver {
    fn planned(&self, plan: &Plan, resumed: bool) {
        tracing::info!(steps = plan.steps.len(), resumed, "plan");
    }

    fn step_started(&self, number: usize, step: &PlanStep) {
        tracing::info!(number, title = %step.title, "step started");
    }

    fn step_finished(&self, number: usize, _step: &PlanStep, commit: Option<&CommitSha>, _files: &[String]) {
        tracing::info!(
            number,
            commit = commit.map(|c| c.0.as_str()).unwrap_or("(nothing to change)"),
            "step finished"
        );
    }

    fn committed<'a>(&'a self, _: &'a Workspace, _: &'a CommitSha) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}
