//! `orchestrator run` on a temporary repository with the fake LLM: the real
//! binary, the real OpenAI client, the real diff engine and git.

use std::path::Path;

use crate::fake_openai::FakeOpenAi;
use crate::support::serve::{BIN, answer_project, git_in as git};

const PLAN: &str = r#"Here is the plan:
```json
{"steps": [
  {"title": "Fix the answer", "rationale": "It is off by one.", "acceptance": "answer() returns 42",
   "files": ["src/lib.rs"], "commands": ["cargo test"]},
  {"title": "Document the answer", "rationale": "Users should know.", "acceptance": "README mentions 42",
   "files": ["docs/answer.md"], "commands": []}
]}
```"#;

const STEP1: &str =
    "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,3 +1,3 @@\n pub fn answer() -> u32 {\n-    41\n+    42\n }\n";
const STEP2: &str = "=== FILE: docs/answer.md\nThe answer is 42.\n=== END FILE\n";

async fn run(repo: &Path, data: &Path, fake: &FakeOpenAi) -> std::process::Output {
    tokio::process::Command::new(BIN)
        .args(["run", "--repo"])
        .arg(repo)
        .args(["--task", "Make answer() return 42 and document it"])
        .current_dir(data)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", format!("sqlite://{}/o.db", data.display()))
        .env("ORCH_DATA_DIR", data)
        .env("OPENAI_BASE_URL", &fake.url)
        .env("OPENAI_API_KEY", "sk-test")
        .env("MODEL_CTO", "gpt-4.1")
        .env("MODEL_CODER", "gpt-4.1")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_plans_codes_and_commits_on_a_new_branch() {
    let dir = tempfile::tempdir().unwrap();
    let repo = answer_project(dir.path());
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let head_before = git(&repo, &["rev-parse", "HEAD"]);
    let fake = FakeOpenAi::start().await;
    for answer in [PLAN, STEP1, STEP2] {
        fake.push_answer(answer, 1000, 500);
    }
    let out = run(&repo, &data, &fake).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1. Fix the answer"), "{stdout}");
    assert!(stdout.contains("2. Document the answer"), "{stdout}");
    assert!(
        stdout.contains("LLM: 3 request(s), 3000 tokens in, 1500 tokens out, $0.0180"),
        "{stdout}"
    );
    let branch = stdout
        .lines()
        .find_map(|l| l.strip_prefix("branch "))
        .unwrap()
        .to_string();
    assert!(branch.starts_with("orchestrator/task-"), "{branch}");

    assert_eq!(
        git(&repo, &["show", &format!("{branch}:src/lib.rs")]),
        "pub fn answer() -> u32 {\n    42\n}"
    );
    assert_eq!(
        git(&repo, &["show", &format!("{branch}:docs/answer.md")]),
        "The answer is 42."
    );
    let log = git(&repo, &["log", "--format=%s|%an", &format!("main..{branch}")]);
    assert_eq!(
        log,
        "Document the answer|orchestrator\nFix the answer|orchestrator"
    );
    // The user's checkout is untouched.
    assert_eq!(git(&repo, &["rev-parse", "HEAD"]), head_before);
    assert_eq!(git(&repo, &["status", "--porcelain"]), "");
    assert_eq!(
        std::fs::read_to_string(repo.join("src/lib.rs")).unwrap(),
        "pub fn answer() -> u32 {\n    41\n}\n"
    );
    // The coder's prompt named the step it worked on.
    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    assert!(format!("{:?}", requests[1]).contains("Fix the answer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_fails_with_a_readable_reason_when_the_plan_is_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let repo = answer_project(dir.path());
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let fake = FakeOpenAi::start().await;
    fake.push_answer("I think you should refactor everything.", 100, 10);
    fake.push_answer("{\"steps\": [", 100, 10);
    let out = run(&repo, &data, &fake).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("failed: plan_invalid: "), "{stdout}");
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}/o.db", data.display()))
        .await
        .unwrap();
    let (status, reason): (String, String) = sqlx::query_as("SELECT status, status_reason FROM jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "failed");
    assert!(reason.starts_with("plan_invalid: "), "{reason}");
}
