//! Everything a job step does besides waiting for the LLM, on a repository
//! of about 5,000 files with a warm mirror: claim, workspace (fetch + worktree),
//! context, diff apply, commit, push.
//!
//! Run with `cargo bench --bench job_steps` (`JOB_STEPS_JOBS=N` changes the
//! number of jobs, 6 by default). The repository is real code: the first
//! 5,000 files (by path) of the local cargo registry's unpacked sources,
//! filled up with synthetic Rust files when the registry has fewer, committed
//! into a git repository whose bare clone is the remote (`file://`). The LLM
//! is a scripted model that answers at once.
//!
//! Two measurements:
//! * per phase, calling each part as the pipeline does (`Workspaces::prepare`,
//!   `RepoIndex::open` + `build_context`, `code_step`, `commit_step`, `push`);
//! * end to end: `Execution::run` of a three-step plan, each step timed from
//!   its start to its pushed commit (store writes and diagnostics included).
//!
//! Prints Markdown tables (median, 90th percentile, max, in ms) and the load
//! average at the start and the end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orchestrator::agents::AgentsPolicy;
use orchestrator::config::{Config, ConfigSources};
use orchestrator::github::RepoRef;
use orchestrator::jobs::{JobStatus, Trigger, now_millis};
use orchestrator::llm::BoxFuture;
use orchestrator::pipeline::code::{CoderSettings, StepInput, code_step};
use orchestrator::pipeline::execute::{Execution, StepObserver, context_settings};
use orchestrator::pipeline::metered::{MeteredModel, limits_from_config};
use orchestrator::pipeline::plan::{Plan, PlanStep};
use orchestrator::pipeline::sanitize::IssueSnapshot;
use orchestrator::pipeline::scripted::ScriptedModel;
use orchestrator::pricing::Pricing;
use orchestrator::store::{NewTask, Store};
use orchestrator::workspace::{CommitIdentity, CommitSha, RemoteSpec, Workspace, Workspaces, branch_name};
use orchestrator_context::{
    ContextRequest, IndexOptions, RepoIndex, StepInput as ContextStep, build_context,
};
use tokio_util::sync::CancellationToken;

const FILES: usize = 5_000;
const STEPS: usize = 3;
const TASK: &str = "Parsing a config file with a missing key should return an error instead of \
    panicking; add a test for the map entry API and retry the read with backoff";

fn main() {
    let jobs: usize = std::env::var("JOB_STEPS_JOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(6);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(jobs.max(2)));
}

/// Samples per phase, in milliseconds.
#[derive(Default)]
struct Timings(Vec<(&'static str, Vec<f64>)>);

impl Timings {
    fn add(&mut self, phase: &'static str, elapsed: Duration) {
        let ms = elapsed.as_secs_f64() * 1000.0;
        match self.0.iter_mut().find(|(name, _)| *name == phase) {
            Some((_, samples)) => samples.push(ms),
            None => self.0.push((phase, vec![ms])),
        }
    }

    fn median(&self, phase: &str) -> f64 {
        self.0
            .iter()
            .find(|(name, _)| *name == phase)
            .map(|(_, s)| percentile(s, 0.5))
            .unwrap_or(0.0)
    }

    fn print(&self, title: &str) {
        println!("\n### {title}\n\n| phase | n | median | p90 | max |\n|---|---:|---:|---:|---:|");
        for (phase, samples) in &self.0 {
            let max = samples.iter().cloned().fold(0.0, f64::max);
            println!(
                "| {phase} | {} | {:.1} | {:.1} | {max:.1} |",
                samples.len(),
                percentile(samples, 0.5),
                percentile(samples, 0.9)
            );
        }
    }
}

fn percentile(samples: &[f64], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(rank).copied().unwrap_or(0.0)
}

/// Everything the jobs share.
struct Bench {
    dir: tempfile::TempDir,
    config: Arc<Config>,
    store: Store,
    workspaces: Workspaces,
    spec: RemoteSpec,
    pricing: Pricing,
    policy: AgentsPolicy,
    /// Files the steps edit (a different one per step and job).
    targets: Vec<String>,
}

async fn run(jobs: usize) {
    println!("load average at start: {}", load_average());
    let started = Instant::now();
    let bench = setup().await;
    println!(
        "repository: {} files, {:.1} MB; set-up (copy, commit, bare clone) {:.1} s",
        tracked_files(&bench),
        repo_bytes(&bench) as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    // Warm the mirror: the first job of a repository clones it.
    let cold = Instant::now();
    let workspace = bench
        .workspaces
        .prepare("warmup", &bench.spec, "orchestrator/warmup", None)
        .await
        .unwrap();
    workspace.cleanup().await.unwrap();
    println!(
        "cold mirror (first fetch of the repository + worktree): {:.0} ms",
        cold.elapsed().as_secs_f64() * 1000.0
    );

    let mut phases = Timings::default();
    for job in 0..jobs {
        phased_job(&bench, job, &mut phases).await;
    }
    phases.print("Per phase (warm mirror)");
    let step = ["context", "apply (code_step, instant LLM)", "commit", "push"];
    let per_step: f64 = step.iter().map(|p| phases.median(p)).sum();
    println!(
        "\nsum of the per-step medians (context + apply + commit + push): {per_step:.1} ms; \
         per job once: claim {:.1} ms + workspace {:.1} ms + cold index {:.1} ms",
        phases.median("claim"),
        phases.median("workspace (fetch + worktree)"),
        phases.median("index, first open in the job's worktree (once per job)")
    );

    let mut whole = Timings::default();
    for job in 0..jobs {
        end_to_end_job(&bench, job, &mut whole).await;
    }
    whole.print("End to end (Execution::run, three steps per job)");
    println!("\nload average at end: {}", load_average());
    bench.store.close().await;
}

async fn setup() -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    fs::create_dir_all(&source).unwrap();
    make_corpus(&source);
    git(&source, &["init", "-q", "-b", "main"]);
    git(&source, &["add", "-A", "-f"]);
    git(&source, &["commit", "-q", "-m", "initial"]);
    let remote = dir.path().join("remote.git");
    let out = Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(&source)
        .arg(&remote)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let targets = pick_targets(&source);

    let data = dir.path().join("data");
    let toml = dir.path().join("orchestrator.toml");
    fs::write(&toml, "").unwrap();
    let env: HashMap<String, String> = [
        (
            "DATABASE_URL",
            format!("sqlite://{}/bench.db", dir.path().display()),
        ),
        ("ORCH_DATA_DIR", data.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let config = Config::load(&ConfigSources {
        file: Some(toml),
        dotenv: None,
        env,
    })
    .unwrap();
    let url = secrecy::ExposeSecret::expose_secret(&config.database_url).to_string();
    let store = Store::connect(&url, &config.database).await.unwrap();
    store.migrate().await.unwrap();
    Bench {
        workspaces: Workspaces::new(&data),
        spec: RemoteSpec {
            repo: RepoRef::parse("bench/repo").unwrap(),
            clone_url: format!("file://{}", remote.display()),
            default_branch: "main".into(),
        },
        config: Arc::new(config),
        store,
        pricing: Pricing::parse(orchestrator::pricing::BUILT_IN, "built-in").unwrap(),
        policy: AgentsPolicy::parse(orchestrator::agents::BUILT_IN, "built-in").unwrap(),
        targets,
        dir,
    }
}

/// Queues a job and claims it, timing the claim.
async fn claim(bench: &Bench, timings: &mut Timings) -> String {
    let task = NewTask {
        trigger: Trigger::Api,
        repo: Some("bench/repo".into()),
        local_path: None,
        task: TASK.into(),
        requester: "bench".into(),
        budget_usd: 5.0,
        budget_requests: 300,
        budget_minutes: 60,
        dry_run: false,
    };
    let id = bench.store.create_task_job(&task, now_millis()).await.unwrap();
    let start = Instant::now();
    let now = now_millis();
    let claimed = bench.store.claim_job("bench", now + 60_000, now).await.unwrap();
    timings.add("claim", start.elapsed());
    assert_eq!(claimed.map(|j| j.id), Some(id.clone()));
    id
}

fn plan_step(bench: &Bench, job: usize, step: usize) -> PlanStep {
    let file = bench.targets[(job * STEPS + step) % bench.targets.len()].clone();
    PlanStep {
        title: format!("Handle the missing key in step {}", step + 1),
        rationale: "A missing key must be an error, not a panic.".into(),
        acceptance: "The file returns an error for a missing key.".into(),
        files: vec![file],
        commands: Vec::new(),
    }
}

async fn phased_job(bench: &Bench, job: usize, timings: &mut Timings) {
    let job_id = claim(bench, timings).await;
    let branch = branch_name(None, &job_id, "phased");
    let start = Instant::now();
    let workspace = bench
        .workspaces
        .prepare(&job_id, &bench.spec, &branch, None)
        .await
        .unwrap();
    timings.add("workspace (fetch + worktree)", start.elapsed());
    let cache = bench.config.data_dir.join("indexes");
    let options = IndexOptions {
        max_file_bytes: bench.config.context.max_file_bytes,
    };
    let start = Instant::now();
    RepoIndex::open(workspace.root(), &cache, &options).unwrap();
    timings.add(
        "index, first open in the job's worktree (once per job)",
        start.elapsed(),
    );

    let model = ScriptedModel::new();
    let limits = limits_from_config(&bench.config.budget, 50.0);
    let metered = MeteredModel::new(&model, &bench.pricing, limits, Instant::now());
    let issue = IssueSnapshot::new("Missing keys panic", TASK, Vec::new(), |_| false);
    let cancel = CancellationToken::new();
    let author = CommitIdentity::new("orchestrator[bot]", "bot@users.noreply.github.com");
    for step_no in 0..STEPS {
        let step = plan_step(bench, job, step_no);
        let start = Instant::now();
        let (index, _) = RepoIndex::open(workspace.root(), &cache, &options).unwrap();
        let request = ContextRequest {
            model: bench.config.models.coder.clone(),
            task: issue.render(),
            step: ContextStep {
                title: step.title.clone(),
                rationale: step.rationale.clone(),
                acceptance: step.acceptance.clone(),
                files: step.files.clone(),
            },
            ..ContextRequest::default()
        };
        let context = build_context(&index, &request, &context_settings(&bench.config));
        timings.add("context", start.elapsed());

        model.push_reply(&edit_diff(
            workspace.root(),
            &step.files[0],
            job * STEPS + step_no,
        ));
        let input = StepInput {
            policy: &bench.policy,
            repo_agents_md: None,
            issue: Some(&issue),
            step: &step,
            number: step_no + 1,
            total: STEPS,
            context: &context.text,
            root: workspace.root(),
        };
        let start = Instant::now();
        let settings = CoderSettings::from_config(&bench.config);
        code_step(&metered, &input, &settings, &cancel).await.unwrap();
        timings.add("apply (code_step, instant LLM)", start.elapsed());

        let start = Instant::now();
        let commit = workspace
            .commit_step(&step.title, &step.rationale, &author, None)
            .await
            .unwrap();
        timings.add("commit", start.elapsed());
        assert!(commit.is_some(), "the step changed a file");

        let start = Instant::now();
        workspace.push(None).await.unwrap();
        timings.add("push", start.elapsed());
    }
    workspace.cleanup().await.unwrap();
    end(bench, &job_id).await;
}

/// Records the job's end, so the next claim takes the next job.
async fn end(bench: &Bench, job_id: &str) {
    let ended = bench
        .store
        .set_job_status(job_id, "bench", JobStatus::Succeeded, None, now_millis())
        .await
        .unwrap();
    assert!(ended);
}

/// Records when each step starts and when its commit is pushed.
struct StepClock {
    started: Mutex<Option<Instant>>,
    steps: Mutex<Vec<Duration>>,
}

impl StepObserver for StepClock {
    fn planned(&self, _plan: &Plan, _resumed: bool) {}

    fn step_started(&self, _number: usize, _step: &PlanStep) {
        *self.started.lock().unwrap() = Some(Instant::now());
    }

    fn step_finished(&self, _: usize, _: &PlanStep, commit: Option<&CommitSha>, _: &[String]) {
        assert!(commit.is_some());
        if let Some(start) = self.started.lock().unwrap().take() {
            self.steps.lock().unwrap().push(start.elapsed());
        }
    }

    fn committed<'a>(
        &'a self,
        workspace: &'a Workspace,
        _commit: &'a CommitSha,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { workspace.push(None).await.map_err(|e| e.to_string()) })
    }
}

async fn end_to_end_job(bench: &Bench, job: usize, timings: &mut Timings) {
    let job_id = claim(bench, timings).await;
    let branch = branch_name(None, &job_id, "end-to-end");
    let start = Instant::now();
    let workspace = bench
        .workspaces
        .prepare(&job_id, &bench.spec, &branch, None)
        .await
        .unwrap();
    timings.add("workspace (fetch + worktree)", start.elapsed());
    let model = ScriptedModel::new();
    // Other files than the phased jobs edited (those are on other branches).
    let offset = 1000;
    let steps: Vec<PlanStep> = (0..STEPS).map(|s| plan_step(bench, offset + job, s)).collect();
    model.push_reply(&serde_json::to_string(&Plan { steps: steps.clone() }).unwrap());
    for (n, step) in steps.iter().enumerate() {
        model.push_reply(&edit_diff(
            workspace.root(),
            &step.files[0],
            (offset + job) * STEPS + n,
        ));
    }
    let limits = limits_from_config(&bench.config.budget, 50.0);
    let metered = MeteredModel::new(&model, &bench.pricing, limits, Instant::now());
    let issue = IssueSnapshot::new("Missing keys panic", TASK, Vec::new(), |_| false);
    let cancel = CancellationToken::new();
    let execution = Execution {
        store: &bench.store,
        config: &bench.config,
        policy: &bench.policy,
        model: &metered,
        job_id: &job_id,
        workspace: &workspace,
        issue: &issue,
        repo_agents_md: None,
        author: CommitIdentity::new("orchestrator[bot]", "bot@users.noreply.github.com"),
        co_author: None,
        cancel: &cancel,
    };
    let clock = StepClock {
        started: Mutex::new(None),
        steps: Mutex::new(Vec::new()),
    };
    let start = Instant::now();
    let done = execution.run(&clock).await.unwrap();
    let total = start.elapsed();
    assert_eq!(done.commits.len(), STEPS);
    let steps = clock.steps.lock().unwrap().clone();
    let step_sum: Duration = steps.iter().sum();
    timings.add(
        "plan (cold index of the new worktree + instant planner)",
        total.saturating_sub(step_sum),
    );
    for (n, step) in steps.iter().enumerate() {
        timings.add(
            match n {
                0 => "step 1 (context, apply, commit, push, store)",
                1 => "step 2",
                _ => "step 3",
            },
            *step,
        );
    }
    workspace.cleanup().await.unwrap();
    end(bench, &job_id).await;
}

/// A unified diff that edits one line in the middle of `path` (as it is in
/// the worktree now), with three lines of context on each side.
fn edit_diff(root: &Path, path: &str, salt: usize) -> String {
    let text = fs::read_to_string(root.join(path)).unwrap();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let target = lines.len() / 2;
    let (from, to) = (target.saturating_sub(3), (target + 4).min(lines.len()));
    let count = to - from;
    let mut diff = format!(
        "--- a/{path}\n+++ b/{path}\n@@ -{},{count} +{},{count} @@\n",
        from + 1,
        from + 1
    );
    for (i, line) in lines.iter().enumerate().take(to).skip(from) {
        if i == target {
            diff.push_str(&format!("-{line}"));
            diff.push_str(&format!("+{} // edited {salt}\n", line.trim_end_matches('\n')));
        } else {
            diff.push_str(&format!(" {line}"));
        }
    }
    diff
}

/// Rust files of ordinary size whose lines all end in `\n`, by path.
fn pick_targets(root: &Path) -> Vec<String> {
    let listed = git_output(root, &["ls-files", "*.rs"]);
    let mut targets: Vec<String> = listed
        .lines()
        .filter(|path| {
            let Ok(text) = fs::read_to_string(root.join(path)) else {
                return false;
            };
            (2_000..40_000).contains(&text.len())
                && text.ends_with('\n')
                && !text.contains('\r')
                && text.lines().count() >= 20
                && !path.contains("/tests/")
                && !path.starts_with(".")
        })
        .map(str::to_string)
        .collect();
    // Spread over the tree rather than the first crate's files.
    let stride = (targets.len() / 64).max(1);
    targets = targets.into_iter().step_by(stride).collect();
    assert!(targets.len() >= STEPS, "too few candidate files");
    targets
}

/// Files above this size (generated bindings, test data) are left out of the
/// corpus: a source repository of 5,000 files rarely carries many of them.
const MAX_CORPUS_FILE_BYTES: u64 = 256 * 1024;

/// Copies up to `FILES` files from the local cargo registry, then synthetic ones.
fn make_corpus(dst: &Path) {
    let mut copied = 0;
    if let Some(src) = registry_src() {
        let mut files = Vec::new();
        collect(&src, &mut files);
        files.sort();
        files.retain(|f| fs::metadata(f).is_ok_and(|m| m.len() <= MAX_CORPUS_FILE_BYTES));
        for file in files.into_iter().take(FILES) {
            let Ok(rel) = file.strip_prefix(&src) else {
                continue;
            };
            let target = dst.join(rel);
            if let Some(parent) = target.parent() {
                let _ = fs::create_dir_all(parent);
            }
            if fs::copy(&file, &target).is_ok() {
                copied += 1;
            }
        }
    }
    for i in copied..FILES {
        let dir = dst.join(format!("synthetic/m{}", i / 100));
        let _ = fs::create_dir_all(&dir);
        let mut body = format!("//! Module {i}.\n\nuse std::collections::HashMap;\n\n");
        for f in 0..40 {
            body.push_str(&format!(
                "/// Reads entry {f}.\npub fn handler_{i}_{f}(map: &HashMap<String, u32>) -> Option<u32> {{\n    map.get(\"key_{f}\").copied().map(|v| v + {i})\n}}\n\n"
            ));
        }
        let _ = fs::write(dir.join(format!("f{i}.rs")), body);
    }
}

fn registry_src() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let mut dirs: Vec<PathBuf> = fs::read_dir(home.join("registry/src"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs.into_iter().next()
}

/// Regular files under `dir`, without nested `.git` directories.
fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.filter_map(Result::ok) {
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() && entry.file_name() != ".git" {
            collect(&entry.path(), out);
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "Bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn git_output(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").args(args).current_dir(dir).output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn tracked_files(bench: &Bench) -> usize {
    git_output(&source_dir(bench), &["ls-files"]).lines().count()
}

fn repo_bytes(bench: &Bench) -> u64 {
    git_output(&source_dir(bench), &["ls-files", "-z"])
        .split('\0')
        .filter(|p| !p.is_empty())
        .filter_map(|p| fs::metadata(source_dir(bench).join(p)).ok())
        .map(|m| m.len())
        .sum()
}

fn source_dir(bench: &Bench) -> PathBuf {
    bench.dir.path().join("source")
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
