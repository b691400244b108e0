//! The dashboard in a real browser: headless Chromium (Debian's `chromium`
//! and `chromium-driver`) driven over WebDriver against a real
//! `orchestrator serve` with seeded jobs and a job that runs against the
//! fake LLM. Screenshots are kept under `<target>/browser-artifacts/`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::fake_openai::FakeOpenAi;
use crate::support::serve::{Served, answer_project, free_port, post_webhook, serve_command};
use crate::support::*;
use crate::webdriver::{Browser, skip_or_require_browser};

const TOKEN: &str = "browser-test-token";

fn start_server(dir: &Path, llm: &FakeOpenAi) -> Served {
    let port = free_port();
    let mut command = serve_command(dir, port);
    command
        .env("HOME", dir)
        .env("DATABASE_URL", format!("sqlite://{}/o.db", dir.display()))
        .env("ORCH_API_TOKEN", TOKEN)
        .env("ORCH_DATA_DIR", dir.join("data"))
        .env("ORCH_WORKERS", "1")
        .env("OPENAI_BASE_URL", &llm.url)
        .env("OPENAI_API_KEY", "sk-test")
        .env("MODEL_CTO", "gpt-4.1")
        .env("MODEL_CODER", "gpt-4.1");
    Served::start(command, port, Some(&dir.join("server.log")))
}

const PLAN: &str = r#"{"steps": [
  {"title": "Fix the answer", "rationale": "It is off by one.", "acceptance": "answer() returns 42",
   "files": ["src/lib.rs"], "commands": ["cargo test"]},
  {"title": "Document the answer", "rationale": "Users should know.", "acceptance": "README mentions 42",
   "files": ["docs/answer.md"], "commands": []}
]}"#;

const STEP1: &str =
    "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,3 +1,3 @@\n pub fn answer() -> u32 {\n-    41\n+    42\n }\n";

/// `<target>/browser-artifacts`, next to the test binaries' scratch directory.
fn artifacts_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("browser-artifacts")
}

async fn deliver(client: &reqwest::Client, base: &str, event: &str, delivery: &str, body: &[u8]) {
    let status = post_webhook(client, base, event, delivery, body).await;
    assert_eq!(status, 202, "{event} {delivery}");
}

/// `POST /tasks` on the checkout `repo`: the new job's id.
async fn create_task(client: &reqwest::Client, base: &str, repo: &Path, task: &str) -> String {
    let created: serde_json::Value = client
        .post(format!("{base}/tasks"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"path": repo.display().to_string(), "task": task}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["id"].as_str().unwrap().to_string()
}

fn is_active(status: &str) -> bool {
    orchestrator::jobs::JobStatus::parse(status).is_some_and(|s| s.is_active())
}

async fn job_status(client: &reqwest::Client, base: &str, id: &str) -> String {
    let job: serde_json::Value = client
        .get(format!("{base}/jobs/{id}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    job["status"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_list_open_a_job_watch_it_live_and_cancel_it() {
    if skip_or_require_browser() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = answer_project(dir.path());
    let llm = FakeOpenAi::start().await;
    llm.push_answer_as(PLAN, "gpt-4.1", 1200, 300);
    llm.push_answer_as(STEP1, "gpt-4.1", 2400, 150);
    // Step 2 hangs: the job is still running when the browser looks at it.
    llm.push_delay(Duration::from_secs(300));
    llm.push_answer_as(
        "=== FILE: docs/answer.md\nnever used\n=== END FILE\n",
        "gpt-4.1",
        1,
        1,
    );
    let server = start_server(dir.path(), &llm);
    let base = server.base.clone();
    let client = reqwest::Client::new();

    // Seeded history: an installation and two issue jobs (without a GitHub
    // App they end `failed`, with that reason).
    let mut installation: serde_json::Value =
        serde_json::from_slice(&fixture("webhooks/installation/created.1.json")).unwrap();
    installation["installation"]["id"] = INSTALLATION.into();
    let installation = serde_json::to_vec(&installation).unwrap();
    deliver(&client, &base, "installation", "seed-0", &installation).await;
    for n in 1..=2u64 {
        let body = derived("webhooks/issues/labeled.1.json", |v| {
            v["label"]["name"] = "orchestrate".into();
            v["issue"]["number"] = n.into();
            v["issue"]["title"] = format!("Seeded issue {n} <b>not bold</b>").into();
        });
        deliver(&client, &base, "issues", &format!("seed-{n}"), &body).await;
    }
    let id = create_task(
        &client,
        &base,
        &repo,
        "Make answer() return 42\n\nAnd document it.",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while llm.requests().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the job did not reach step 2; server log:\n{}",
            std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Workers record only a job's final state; until then it reads as queued.
    let running_as = job_status(&client, &base, &id).await;
    assert!(is_active(&running_as), "{running_as}");

    let shots = artifacts_dir();
    let browser = Browser::start(1280, 900).await;
    let wait = Duration::from_secs(15);

    // Not logged in: the login page.
    browser.goto(&format!("{base}/")).await;
    browser.wait_for("input#token", wait).await;
    assert!(browser.url().await.starts_with(&format!("{base}/login")));
    browser.screenshot(&shots, "01-login").await;
    browser.type_into("input#token", "wrong-token").await;
    browser.click("form button[type=submit]").await;
    browser
        .wait_for_text("#login-error", wait, |t| t.contains("not right"))
        .await;
    browser.type_into("input#token", TOKEN).await;
    browser.click("form button[type=submit]").await;

    // The list: the running task and the seeded jobs.
    let row = format!("tr[data-job=\"{id}\"]");
    browser.wait_for(&row, wait).await;
    let table = browser.text("#jobs").await;
    assert!(table.contains("Make answer() return 42"), "{table}");
    assert!(
        table.contains("Seeded issue 2 <b>not bold</b>"),
        "escaped text reads as typed: {table}"
    );
    assert!(table.contains(&running_as), "{table}");
    browser.screenshot(&shots, "02-jobs").await;

    // The filter narrows the list.
    browser.goto(&format!("{base}/?status={running_as}")).await;
    browser.wait_for(&row, wait).await;
    assert!(!browser.text("#jobs").await.contains("Seeded issue"));

    // The job page: plan, the first step's diff, and a live event log.
    browser.click(&format!("{row} a")).await;
    browser
        .wait_for_text("#job-status", wait, |t| t == running_as)
        .await;
    browser.wait_for_text("#live", wait, |t| t == "live").await;
    let steps = browser.text("#steps").await;
    assert!(
        steps.contains("Fix the answer") && steps.contains("Document the answer"),
        "{steps}"
    );
    let source = browser.source().await;
    assert!(
        source.contains("<span class=\"add\">+    42</span>"),
        "step 1's diff is shown"
    );
    assert!(
        source.contains("Context:"),
        "step 1's context diagnostics are shown"
    );
    browser.screenshot(&shots, "03-job-running").await;
    browser.click("details.diff-details summary").await;
    browser.click("details.context summary").await;
    browser.screenshot(&shots, "04-job-step-diff").await;
    browser
        .execute("document.querySelector('details.context').scrollIntoView()")
        .await;
    browser.screenshot(&shots, "05-job-context-and-events").await;

    // A new event reaches the open page without a reload.
    let marker = format!("operator note {}", uuid::Uuid::new_v4().simple());
    insert_event(dir.path(), &id, &marker).await;
    browser
        .wait_for_text("#events", wait, |t| t.contains(&marker))
        .await;

    // Cancel: the page shows the request, then the new state arrives live.
    browser.click("#cancel-form button").await;
    browser
        .wait_for_text("#notice", wait, |t| t.contains("Cancel requested"))
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while job_status(&client, &base, &id).await != "cancelled" {
        assert!(Instant::now() < deadline, "the worker did not cancel the job");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser
        .wait_for_text("#job-status", wait, |t| t == "cancelled")
        .await;
    browser
        .wait_for_text("#events", wait, |t| t.contains("cancelled"))
        .await;
    assert_eq!(job_status(&client, &base, &id).await, "cancelled");
    browser.wait_for("#retry-form:not([hidden])", wait).await;
    browser.screenshot(&shots, "06-job-cancelled").await;

    browser.click("nav a[href=\"/dashboard/installations\"]").await;
    browser.wait_for("#installations", wait).await;
    browser.screenshot(&shots, "07-installations").await;

    // The same pages on a phone-sized window.
    browser.set_window(390, 844).await;
    browser.goto(&format!("{base}/")).await;
    browser.wait_for(&row, wait).await;
    browser.screenshot(&shots, "08-jobs-phone").await;
    browser.goto(&format!("{base}/dashboard/jobs/{id}")).await;
    browser.wait_for("#events", wait).await;
    browser.screenshot(&shots, "09-job-phone").await;

    // Logging out ends the session in the browser.
    browser.set_window(1280, 900).await;
    browser.click("nav form button").await;
    browser.wait_for("input#token", wait).await;
    browser.goto(&format!("{base}/")).await;
    browser.wait_for("input#token", wait).await;
    eprintln!("browser screenshots: {}", shots.display());
}

/// A dashboard left open on a running job does not hold up a graceful
/// shutdown: the event stream ends with the server (no browser needed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_event_stream_does_not_hold_up_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let repo = answer_project(dir.path());
    let llm = FakeOpenAi::start().await;
    llm.push_delay(Duration::from_secs(300)); // the plan never comes: the job stays active
    llm.push_answer_as(PLAN, "gpt-4.1", 1, 1);
    let mut server = start_server(dir.path(), &llm);
    let base = server.base.clone();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let id = create_task(&client, &base, &repo, "Wait").await;
    let login = client
        .post(format!("{base}/login"))
        .header("origin", &base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let mut stream = client
        .get(format!("{base}/dashboard/jobs/{id}/events"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut seen = String::new();
    while !seen.contains("event: status") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
            .await
            .expect("the stream speaks")
            .unwrap()
            .expect("the stream is open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }

    let status = server
        .terminate(Duration::from_secs(10))
        .expect("the server did not stop with a stream open");
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(rest.is_ok(), "the stream ended with the server");
}

/// Writes an event the way a worker on another replica would: straight into the database.
async fn insert_event(dir: &Path, job_id: &str, message: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}/o.db", dir.display()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO job_events (job_id, at, kind, status, message) VALUES ($1, $2, 'note', 'running', $3)",
    )
    .bind(job_id)
    .bind(orchestrator::jobs::now_millis())
    .bind(message)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}
