//! The real binary: durability across `kill -9`, graceful shutdown, CLI.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::serve::{BIN, Served, free_port, post_webhook, serve_command};
use crate::support::*;

fn start(dir: &std::path::Path) -> Served {
    start_with(dir, &[], None)
}

fn start_with(dir: &std::path::Path, env: &[(&str, &str)], log: Option<&std::path::Path>) -> Served {
    let port = free_port();
    let mut command = serve_command(dir, port);
    command.env("DATABASE_URL", format!("sqlite://{}/o.db", dir.display()));
    for (k, v) in env {
        command.env(k, v);
    }
    Served::start(command, port, log)
}

async fn post(client: &reqwest::Client, base: &str, delivery: &str, body: &[u8]) -> u16 {
    post_webhook(client, base, "issues", delivery, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_deliveries_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let client = reqwest::Client::new();
    let body = labeled(1);
    let mut acknowledged = Vec::new();
    for n in 0..40 {
        let delivery = format!("kill-{n}");
        let status = post(&client, &server.base, &delivery, &body).await;
        assert_eq!(status, 202);
        acknowledged.push(delivery);
    }
    // SIGKILL the moment after the last acknowledgement: no shutdown code runs.
    server.kill_9();

    let mut server = start(dir.path());
    for delivery in &acknowledged {
        assert_eq!(
            post(&client, &server.base, delivery, &body).await,
            200,
            "{delivery} was lost"
        );
    }
    let fresh = post(&client, &server.base, "after-restart", &body).await;
    assert_eq!(fresh, 202);
    terminate(&mut server);
}

fn terminate(server: &mut Served) {
    let status = server
        .terminate(Duration::from_secs(10))
        .expect("server did not stop on SIGTERM");
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let health = reqwest::get(format!("{}/health", server.base)).await.unwrap();
    assert_eq!(health.status(), 200);
    terminate(&mut server);
}

fn run(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

#[test]
fn config_check_redacts_secrets_and_fails_on_invalid_values() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &["config", "check"],
        &[
            ("GITHUB_WEBHOOK_SECRET", "hush-123"),
            ("OPENAI_API_KEY", "sk-hush-456"),
            ("ORCH_BUDGET__USD", "2.5"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("usd = 2.5"), "{stdout}");
    assert!(stdout.contains("webhook_secret = \"[REDACTED]\""), "{stdout}");
    assert!(!stdout.contains("hush"), "{stdout}");

    let out = run(dir.path(), &["config", "check"], &[("ORCH_WORKERS", "0")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("workers"));

    // .env in the working directory is read.
    std::fs::write(dir.path().join(".env"), "ORCH_BUDGET__REQUESTS=77\n").unwrap();
    let out = run(dir.path(), &["config", "check"], &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("requests = 77"));
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["config", "check", "--help"],
        vec!["diff", "apply", "--help"],
    ] {
        let out = run(dir.path(), &args, &[]);
        assert!(out.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"), "{args:?}");
    }
}

#[test]
fn migrate_creates_the_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["migrate"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        dir.path().join("data/orchestrator.db").exists(),
        "default sqlite://data/orchestrator.db"
    );
}

/// One end-to-end run at TRACE level against the fake GitHub (identity
/// learned, an installation token minted, a reply posted); then the log and
/// the database files are searched for every secret and token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_trace_log_or_the_database() {
    use crate::fake_github::{APP_ID, FakeGitHub, keys::test_keys};
    let fake = FakeGitHub::start().await;
    let repo = fake.add_repo_to(INSTALLATION, "Codertocat/Hello-World");
    while fake.add_issue(&repo, "An issue", "Text") < 3 {}

    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let app_id = APP_ID.to_string();
    let key = test_keys().pkcs1_pem.clone();
    let secrets = [
        ("ORCH_API_TOKEN", "api-token-SECRET-111"),
        ("OPENAI_API_KEY", "sk-SECRET-222"),
        ("ORCH_METRICS_TOKEN", "metrics-SECRET-444"),
        ("ORCH_GITHUB__PREVIOUS_WEBHOOK_SECRETS", "old-webhook-SECRET-555"),
    ];
    let mut env: Vec<(&str, &str)> = secrets.to_vec();
    env.extend([
        ("RUST_LOG", "trace"),
        ("ORCH_LOG__FORMAT", "json"),
        ("GITHUB_APP_ID", app_id.as_str()),
        ("GITHUB_PRIVATE_KEY", key.as_str()),
        ("GITHUB_API_URL", fake.url.as_str()),
    ]);
    let mut server = start_with(dir.path(), &env, Some(&log_path));
    let client = reqwest::Client::new();
    assert_eq!(post(&client, &server.base, "s-1", &labeled(1)).await, 202);
    assert_eq!(post(&client, &server.base, "s-1", &labeled(1)).await, 200);
    let help = comment(3, "/orchestrate help", "NONE");
    let posted = client
        .post(format!("{}/webhook", server.base))
        .header("x-github-event", "issue_comment")
        .header("x-github-delivery", "s-2")
        .header(
            "x-hub-signature-256",
            orchestrator::webhook::signature::sign(SECRET, &help),
        )
        .body(help.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202);
    let denied = client
        .get(format!("{}/jobs", server.base))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    let listed = client
        .get(format!("{}/jobs", server.base))
        .bearer_auth(secrets[0].1)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.comments(&repo, 3).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        fake.comments(&repo, 3).len(),
        1,
        "the reply went out through an installation token"
    );
    terminate(&mut server);

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("delivery recorded"), "the trace log was written");
    let mut haystacks = vec![("log".to_string(), log.into_bytes())];
    for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("o.db") {
            haystacks.push((name, std::fs::read(entry.path()).unwrap()));
        }
    }
    assert!(haystacks.len() >= 2, "the database files were read");
    let tokens = fake.minted_tokens();
    assert!(!tokens.is_empty(), "an installation token was minted");
    let key_lines: Vec<String> = key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::to_string)
        .collect();
    let mut needles: Vec<String> = secrets.iter().map(|(_, s)| s.to_string()).collect();
    needles.push(SECRET.to_string());
    needles.extend(tokens);
    needles.extend(key_lines);
    for needle in &needles {
        for (name, bytes) in &haystacks {
            let found = bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
            assert!(
                !found,
                "a secret ({}…) was found in {name}",
                &needle[..6.min(needle.len())]
            );
        }
    }
}

/// The worker process is killed (`kill -9`) while step 2's LLM call is in
/// flight, then started again: the job completes with one pull request, one
/// progress comment, and each step's commit once on the branch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_survives_kill_9_during_step_2() {
    use crate::fake_github::{APP_ID, FakeGitHub, keys::test_keys};
    use crate::fake_openai::FakeOpenAi;
    let github = FakeGitHub::start().await;
    let repo = github.add_repo_to(INSTALLATION, "Codertocat/Hello-World");
    github.add_issue(&repo, "Add docs", "Please add docs.");
    github.set_role(&repo, "Codertocat", "write");
    let llm = FakeOpenAi::start().await;
    llm.push_answer(
        r#"{"steps": [{"title": "Add the guide", "rationale": "r", "acceptance": "a", "files": ["docs/guide.md"], "commands": []},
                      {"title": "Add the changelog", "rationale": "r", "acceptance": "a", "files": ["CHANGELOG.md"], "commands": []}]}"#,
        100,
        50,
    );
    llm.push_answer("=== FILE: docs/guide.md\nGuide\n=== END FILE\n", 100, 50);
    llm.push_delay(Duration::from_secs(30)); // step 2, first attempt: the worker dies meanwhile
    llm.push_answer("=== FILE: CHANGELOG.md\nnever used\n=== END FILE\n", 100, 50);
    llm.push_answer("=== FILE: CHANGELOG.md\n# Changelog\n=== END FILE\n", 100, 50);

    let dir = tempfile::tempdir().unwrap();
    let app_id = APP_ID.to_string();
    let key = test_keys().pkcs1_pem.clone();
    let env = [
        ("GITHUB_APP_ID", app_id.as_str()),
        ("GITHUB_PRIVATE_KEY", key.as_str()),
        ("GITHUB_API_URL", github.url.as_str()),
        ("OPENAI_BASE_URL", llm.url.as_str()),
        ("OPENAI_API_KEY", "sk-test"),
        ("ORCH_LEASE_SECS", "5"),
        ("ORCH_WORKERS", "1"),
    ];
    let mut server = start_with(dir.path(), &env, None);
    let client = reqwest::Client::new();
    assert_eq!(post(&client, &server.base, "crash-1", &labeled(1)).await, 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    while llm.requests().len() < 3 {
        assert!(Instant::now() < deadline, "step 2 never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill_9();

    let mut server = start_with(dir.path(), &env, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while github.pulls(&repo).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the job did not complete after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    terminate(&mut server);
    let pulls = github.pulls(&repo);
    assert_eq!(pulls.len(), 1, "exactly one pull request");
    assert_eq!(github.comments(&repo, 1).len(), 1, "exactly one progress comment");
    let bare = github.state().repos["Codertocat/Hello-World"].bare.clone();
    let log = Command::new("git")
        .arg("--git-dir")
        .arg(&bare)
        .args(["log", "--format=%s", &format!("main..{}", pulls[0].head)])
        .output()
        .unwrap();
    let subjects = String::from_utf8_lossy(&log.stdout).to_string();
    assert_eq!(
        subjects, "Add the changelog\nAdd the guide\n",
        "each step's commit once"
    );
    let requests = llm.requests();
    assert_eq!(requests.len(), 4, "no second plan and no second step 1");
}
