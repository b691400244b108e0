//! A labelled issue becomes a pull request: the real router and store, the
//! worker pool with the GitHub job handler, the fake GitHub (bare git repos
//! behind it) and the fake OpenAI-compatible server.

use std::sync::Arc;
use std::time::Duration;

use orchestrator::agents::AgentsPolicy;
use orchestrator::github::RepoRef;
use orchestrator::llm::openai::OpenAiModel;
use orchestrator::llm::transport::{RetryPolicy, RetryingTransport};
use orchestrator::pipeline::github_job::GitHubJobs;
use orchestrator::pricing::Pricing;
use orchestrator::runner::{PoolSettings, WorkerPool};
use orchestrator::workspace::Workspaces;
use secrecy::SecretString;
use serde_json::Value;

use crate::fake_github::FakeGitHub;
use crate::fake_openai::FakeOpenAi;
use crate::support::*;

const REPO: &str = "Codertocat/Hello-World";

const PLAN: &str = r#"{"steps": [
  {"title": "Add the guide", "rationale": "Newcomers need it.", "acceptance": "docs/guide.md exists",
   "files": ["docs/guide.md"], "commands": []},
  {"title": "Add the changelog", "rationale": "Track releases.", "acceptance": "CHANGELOG.md exists",
   "files": ["CHANGELOG.md"], "commands": ["cat CHANGELOG.md"]}
]}"#;

struct World {
    app: TestApp,
    github: FakeGitHub,
    llm: FakeOpenAi,
    repo: RepoRef,
    pool: WorkerPool,
}

async fn world() -> World {
    let app = TestApp::new().await;
    let github = FakeGitHub::start().await;
    let repo = github.add_repo(REPO);
    github.add_issue(&repo, "Spelling error in the README file", "Please add docs.");
    github.set_role(&repo, "Codertocat", "write");
    let llm = FakeOpenAi::start().await;
    let transport = RetryingTransport::new(RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(2),
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    let model = OpenAiModel::new(&llm.url, Some(&SecretString::from("sk-test")), transport);
    let config = app.state.config.clone();
    let handler = GitHubJobs {
        store: app.store.clone(),
        config: config.clone(),
        github: github.client(),
        model: Arc::new(model),
        pricing: Arc::new(Pricing::parse(orchestrator::pricing::BUILT_IN, "built-in").unwrap()),
        policy: Arc::new(AgentsPolicy::parse(orchestrator::agents::BUILT_IN, "built-in").unwrap()),
        workspaces: Workspaces::new(app.dir.path().join("data")),
        identity: app.state.identity.clone(),
    };
    let pool = WorkerPool::new(
        app.store.clone(),
        Arc::new(handler),
        PoolSettings::new(1, Duration::from_secs(30)),
    );
    World {
        app,
        github,
        llm,
        repo,
        pool,
    }
}

fn show(world: &World, rev: &str) -> Option<String> {
    let bare = world.github.state().repos[REPO].bare.clone();
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(bare)
        .args(["show", rev])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

async fn only_job(app: &TestApp) -> Value {
    let (_, page) = app.api_get("/jobs").await;
    page["jobs"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_labelled_issue_becomes_one_pull_request() {
    let w = world().await;
    w.llm.push_answer(PLAN, 1000, 500);
    w.llm.push_answer(
        "=== FILE: docs/guide.md\n# Guide\n\nStart here.\n=== END FILE\n",
        1000,
        500,
    );
    w.llm
        .push_answer("=== FILE: CHANGELOG.md\n# Changelog\n=== END FILE\n", 1000, 500);
    let (status, _) = w.app.deliver("issues", "happy-1", &labeled(1)).await;
    assert_eq!(status.as_u16(), 202);

    assert_eq!(w.pool.run_until_idle().await.unwrap(), 1);
    let job = only_job(&w.app).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let branch = job["branch"].as_str().unwrap().to_string();
    assert!(branch.starts_with("orchestrator/issue-1-"), "{branch}");
    assert_eq!(job["steps"].as_array().unwrap().len(), 2);
    assert!(
        job["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "succeeded"),
        "{job}"
    );
    // Each call 1000 + 500 tokens: the plan by gpt-4.1-mini ($0.0004 + $0.0008),
    // two steps by gpt-4.1 ($0.002 + $0.004 each), per pricing.json.
    assert!((job["cost_usd"].as_f64().unwrap() - 0.0132).abs() < 1e-9, "{job}");
    assert_eq!(
        (job["tokens_in"].as_i64(), job["tokens_out"].as_i64()),
        (Some(3000), Some(1500))
    );
    assert_eq!(job["requests"], 3);

    // The branch holds exactly the expected files, one commit per step.
    assert_eq!(
        show(&w, &format!("{branch}:docs/guide.md")).as_deref(),
        Some("# Guide\n\nStart here.\n")
    );
    assert_eq!(
        show(&w, &format!("{branch}:CHANGELOG.md")).as_deref(),
        Some("# Changelog\n")
    );
    let log = show(&w, &branch).unwrap();
    assert!(log.contains("Co-authored-by: Codertocat"), "{log}");

    // One pull request that closes the issue, linked on the job.
    let pulls = w.github.pulls(&w.repo);
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0].head, branch);
    assert!(pulls[0].body.contains("Closes #1"), "{}", pulls[0].body);
    let link = job["pr_links"][0].as_str().unwrap();
    assert!(link.ends_with(&format!("/pull/{}", pulls[0].number)), "{link}");

    // One progress comment, edited in place; a check run concluded success.
    let comments = w.github.comments(&w.repo, 1);
    assert_eq!(comments.len(), 1, "never a second comment");
    let runs = w.github.check_runs();
    let last = runs.last().unwrap();
    assert_eq!(last.current["conclusion"], "success", "{:?}", last.current);
    assert_eq!(last.current["name"], "orchestrator");
    assert!(w.github.reactions().iter().any(|(_, content)| content == "eyes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_is_rejected_before_any_work() {
    let w = world().await;
    w.github.set_role(&w.repo, "Codertocat", "read");
    w.app.deliver("issues", "reader-1", &labeled(1)).await;
    assert_eq!(w.pool.run_until_idle().await.unwrap(), 1);
    let job = only_job(&w.app).await;
    assert_eq!(job["status"], "rejected");
    assert!(
        job["status_reason"].as_str().unwrap().starts_with("permission: "),
        "{job}"
    );
    assert!(w.llm.requests().is_empty(), "no LLM call before the gate");
    assert!(w.github.pulls(&w.repo).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_plan_fails_with_a_readable_reason_and_no_check_run() {
    let w = world().await;
    w.llm.push_answer("Sure! I will fix it.", 100, 10);
    w.llm.push_answer("{\"steps\": 3}", 100, 10);
    w.app.deliver("issues", "garbage-1", &labeled(1)).await;
    assert_eq!(w.pool.run_until_idle().await.unwrap(), 1);
    let job = only_job(&w.app).await;
    assert_eq!(job["status"], "failed");
    assert!(
        job["status_reason"]
            .as_str()
            .unwrap()
            .starts_with("plan_invalid: "),
        "{job}"
    );
    assert!(w.github.check_runs().is_empty(), "no push, no check run");
    let comments = w.github.comments(&w.repo, 1);
    assert_eq!(comments.len(), 1);
    assert!(
        comments[0].body.contains("/orchestrate retry") || comments[0].body.contains("retry"),
        "{}",
        comments[0].body
    );
}
