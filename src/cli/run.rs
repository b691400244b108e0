//! `orchestrator run --repo DIR --task TEXT`: the whole pipeline on a local
//! git repository, no GitHub. Commits land on a new branch
//! `orchestrator/task-<id8>-<slug>` of that repository (the user's own
//! checkout is not touched); the plan, each step, the branch, tokens and
//! cost are printed as they happen.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::agents::AgentsPolicy;
use crate::config::Config;
use crate::jobs::{JobStatus, Trigger, now_millis, task_title};
use crate::llm::BoxFuture;
use crate::llm::openai::OpenAiModel;
use crate::pipeline::execute::{Executed, Execution, StepObserver};
use crate::pipeline::metered::{MeteredModel, limits_from_config};
use crate::pipeline::plan::{Plan, PlanStep};
use crate::pipeline::sanitize::IssueSnapshot;
use crate::pricing::Pricing;
use crate::store::{NewTask, Store};
use crate::workspace::{CommitIdentity, CommitSha, Workspace, Workspaces, branch_name};

/// The lease owner of jobs run from the command line.
const OWNER: &str = "cli";

/// Runs `task` on the repository at `repo`; `Ok(false)` when the job did not succeed.
pub async fn run(config: Arc<Config>, repo: PathBuf, task: String) -> anyhow::Result<bool> {
    let repo = std::path::absolute(&repo)?;
    if !repo.join(".git").exists() {
        anyhow::bail!("{} is not a git repository (no .git)", repo.display());
    }
    let store = super::open_store(&config).await?;
    let pricing = Pricing::load(config.pricing_path.as_deref())?;
    let policy = AgentsPolicy::load(config.agents_path.as_deref())?;
    let job_id = queue_job(&store, &config, &repo, &task).await?;
    let title = match task_title(&task) {
        title if title.is_empty() => "task".to_string(),
        title => title,
    };
    let branch = branch_name(None, &job_id, &title);
    println!("job {job_id}\nbranch {branch}");
    let workspaces = Workspaces::new(&config.data_dir);
    let workspace = workspaces.open_local(&job_id, &repo, &branch).await?;
    store.set_branch(&job_id, &branch, now_millis()).await?;

    let model = OpenAiModel::with_defaults(&config.openai.base_url, config.openai.api_key.as_ref())?;
    let limits = limits_from_config(&config.budget, config.budget.daily_usd_per_installation);
    let metered = MeteredModel::new(&model, &pricing, limits, Instant::now());
    let issue = IssueSnapshot::new(&title, &task, Vec::new(), |_| false);
    let cancel = CancellationToken::new();
    let ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("cancelling…");
            ctrl_c.cancel();
        }
    });
    let execution = Execution {
        store: &store,
        config: &config,
        policy: &policy,
        model: &metered,
        job_id: &job_id,
        workspace: &workspace,
        issue: &issue,
        repo_agents_md: std::fs::read_to_string(repo.join("AGENTS.md")).ok(),
        author: CommitIdentity::new("orchestrator", "orchestrator@localhost"),
        co_author: None,
        cancel: &cancel,
    };
    let result = execution.run(&Terminal).await;
    let meter = metered.meter();
    let ok = finish(&store, &job_id, &result, cancel.is_cancelled()).await?;
    print_summary(
        &branch,
        &result,
        meter.tokens_in,
        meter.tokens_out,
        meter.requests,
        meter.usd,
    );
    cleanup(workspace).await;
    store.close().await;
    Ok(ok)
}

async fn queue_job(store: &Store, config: &Config, repo: &Path, task: &str) -> anyhow::Result<String> {
    let new = NewTask {
        trigger: Trigger::Cli,
        repo: None,
        local_path: Some(repo.display().to_string()),
        task: task.to_string(),
        requester: std::env::var("USER").unwrap_or_else(|_| "cli".into()),
        budget_usd: config.budget.usd,
        budget_requests: config.budget.requests,
        budget_minutes: config.budget.minutes,
        dry_run: config.dry_run,
    };
    let id = store.create_task_job(&new, now_millis()).await?;
    // The job belongs to this process for as long as its wall-clock budget.
    let lease = i64::from(config.budget.minutes) * 60_000 + 60_000;
    let now = now_millis();
    if !store.claim_job_by_id(&id, OWNER, now + lease, now).await? {
        anyhow::bail!("could not claim job {id}");
    }
    Ok(id)
}

async fn finish(
    store: &Store,
    job_id: &str,
    result: &Result<Executed, crate::pipeline::execute::ExecuteError>,
    cancelled: bool,
) -> anyhow::Result<bool> {
    let (status, reason) = match result {
        Ok(_) => (JobStatus::Succeeded, None),
        Err(_) if cancelled => (
            JobStatus::Cancelled,
            Some("cancelled_by_user: interrupted".to_string()),
        ),
        Err(err) => (JobStatus::Failed, Some(err.status_reason())),
    };
    store
        .set_job_status(job_id, OWNER, status, reason.as_deref(), now_millis())
        .await?;
    Ok(status == JobStatus::Succeeded)
}

fn print_summary(
    branch: &str,
    result: &Result<Executed, crate::pipeline::execute::ExecuteError>,
    tokens_in: u64,
    tokens_out: u64,
    requests: u32,
    usd: f64,
) {
    match result {
        Ok(done) => {
            println!("\ndone: {} commit(s) on {branch}", done.commits.len());
            for file in &done.files_changed {
                println!("  {file}");
            }
        }
        Err(err) => println!("\nfailed: {}", err.status_reason()),
    }
    println!("LLM: {requests} request(s), {tokens_in} tokens in, {tokens_out} tokens out, ${usd:.4}");
}

async fn cleanup(workspace: Workspace) {
    if let Err(err) = workspace.cleanup().await {
        tracing::warn!(error = %err, "could not remove the worktree");
    }
}

/// Prints progress lines on standard output.
struct Terminal;

impl StepObserver for Terminal {
    fn planned(&self, plan: &Plan, resumed: bool) {
        let how = if resumed { "resumed plan" } else { "plan" };
        println!("\n{how}: {} step(s)", plan.steps.len());
        for (i, step) in plan.steps.iter().enumerate() {
            println!("  {}. {}", i + 1, step.title);
        }
        println!();
    }

    fn step_started(&self, number: usize, step: &PlanStep) {
        println!("[{number}] {} …", step.title);
    }

    fn step_finished(&self, number: usize, _step: &PlanStep, commit: Option<&CommitSha>, files: &[String]) {
        match commit {
            Some(sha) => println!(
                "[{number}] committed {} ({})",
                &sha.0[..sha.0.len().min(10)],
                files.join(", ")
            ),
            None => println!("[{number}] nothing to change"),
        }
    }

    fn committed<'a>(&'a self, _: &'a Workspace, _: &'a CommitSha) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}
