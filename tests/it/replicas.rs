//! Several real `orchestrator serve` processes on one PostgreSQL database,
//! with the fake GitHub and the fake LLM: every job runs exactly once
//! whichever replica gets its deliveries, a replica killed with `kill -9`
//! loses nothing, and one delivery posted to both replicas at once is
//! recorded once. Also: pool settings, statement timeout and the retry
//! classification against a real server.
//!
//! Needs `TEST_DATABASE_URL` (CI sets it); without it each test says why and
//! returns.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrator::github::RepoRef;

use crate::fake_github::{APP_ID, FakeGitHub, keys::test_keys};
use crate::fake_openai::{FakeOpenAi, RecordedRequest, Scripted};
use crate::support::serve::{Served, free_port, post_webhook, serve_command};
use crate::support::*;

const PLANNER_MODEL: &str = "gpt-4.1-mini";
const CODER_MODEL: &str = "gpt-4.1";

async fn postgres_or_skip(test: &str) -> Option<String> {
    let url = fresh_postgres_database().await;
    if url.is_none() {
        eprintln!("{test}: skipped, TEST_DATABASE_URL is not set (these tests need a PostgreSQL server)");
    }
    url
}

// ---- the world: fake GitHub with repositories and issues, fake LLM

/// One job's identity, `r<repo>i<issue>`, carried from the issue title
/// into the plan, the step's file and the commit, so every LLM request,
/// branch and pull request can be traced back to its job.
fn key(repo: usize, issue: u64) -> String {
    format!("r{repo}i{issue:04}")
}

struct Fleet {
    github: FakeGitHub,
    llm: FakeOpenAi,
    repos: Vec<RepoRef>,
    issues_per_repo: u64,
    db_url: String,
    real_time: tokio::task::JoinHandle<()>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.real_time.abort();
    }
}

impl Fleet {
    /// `repos` repositories of `issues` open issues each, each repository in
    /// an installation of its own (the GitHub client paces its calls per
    /// installation, as GitHub limits them: a few jobs per installation stay
    /// within the burst); the LLM answers every job a one-step plan and a
    /// one-file note, after `latency`.
    async fn new(db_url: String, repos: usize, issues: u64, latency: Duration) -> Fleet {
        let github = FakeGitHub::start().await;
        let repos: Vec<RepoRef> = (0..repos)
            .map(|r| {
                github.add_installation(installation_of(r), &format!("octo-org-{r}"));
                let repo = github.add_repo_to(installation_of(r), &format!("octo-org/notes-{r}"));
                for _ in 0..issues {
                    github.add_issue(&repo, "A note", "Please write the note.");
                }
                github.set_role(&repo, "Codertocat", "write");
                repo
            })
            .collect();
        let llm = FakeOpenAi::start().await;
        llm.respond_with(latency, answer_for);
        // The real processes sign their JWTs with the real time: the fake's
        // clock follows it, so a run of minutes does not look like JWTs from the future.
        let clock = github.clock.clone();
        let real_time = tokio::spawn(async move {
            let mut last = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let now = Instant::now();
                clock.advance(now - last);
                last = now;
            }
        });
        Fleet {
            github,
            llm,
            repos,
            issues_per_repo: issues,
            db_url,
            real_time,
        }
    }

    fn jobs(&self) -> Vec<(usize, u64)> {
        (0..self.repos.len())
            .flat_map(|r| (1..=self.issues_per_repo).map(move |i| (r, i)))
            .collect()
    }

    /// The signed `issues.labeled` delivery (derived from the fixture) of a job.
    fn delivery(&self, repo: usize, issue: u64) -> Vec<u8> {
        let full_name = self.repos[repo].to_string();
        derived("webhooks/issues/labeled.1.json", |v| {
            v["label"]["name"] = "orchestrate".into();
            v["issue"]["number"] = issue.into();
            v["issue"]["title"] = format!("Write note {}", key(repo, issue)).into();
            v["repository"]["full_name"] = full_name.clone().into();
            v["repository"]["name"] = format!("notes-{repo}").into();
            v["repository"]["id"] = (900_000 + repo as u64).into();
            v["installation"]["id"] = installation_of(repo).into();
        })
    }

    fn start_replica(&self, name: &str, extra: &[(&str, &str)]) -> Replica {
        let app_id = APP_ID.to_string();
        let key = test_keys().pkcs1_pem.clone();
        let mut env: Vec<(&str, &str)> = vec![
            ("DATABASE_URL", self.db_url.as_str()),
            ("GITHUB_APP_ID", app_id.as_str()),
            ("GITHUB_PRIVATE_KEY", key.as_str()),
            ("GITHUB_API_URL", self.github.url.as_str()),
            ("OPENAI_BASE_URL", self.llm.url.as_str()),
            ("OPENAI_API_KEY", "sk-test"),
            ("MODEL_CTO", PLANNER_MODEL),
            ("MODEL_CODER", CODER_MODEL),
            // The test server is shared: a few connections per replica suffice.
            ("ORCH_DATABASE__MAX_CONNECTIONS", "6"),
        ];
        env.extend_from_slice(extra);
        Replica::start(name, &env)
    }

    /// Each job: one plan request and one coder request (or more when
    /// `at_least`), counted by the key in the prompt.
    fn llm_requests_per_job(&self) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
        let mut plans = BTreeMap::new();
        let mut steps = BTreeMap::new();
        for request in self.llm.requests() {
            let Some(key) = request_key(&request) else {
                panic!("an LLM request names no job: {:?}", request.messages);
            };
            let counter = if request.model == PLANNER_MODEL {
                &mut plans
            } else {
                &mut steps
            };
            *counter.entry(key).or_insert(0) += 1;
        }
        (plans, steps)
    }

    /// Per repository: the `orchestrator/…` branches of the bare remote with
    /// the number of commits each has above `main`.
    fn branches(&self, repo: usize) -> BTreeMap<String, usize> {
        let bare = self.github.state().repos[&self.repos[repo].to_string()]
            .bare
            .clone();
        let refs = git(
            &bare,
            &[
                "for-each-ref",
                "--format=%(refname:short)",
                "refs/heads/orchestrator/",
            ],
        );
        refs.lines()
            .map(|branch| {
                let count = git(&bare, &["rev-list", "--count", &format!("main..{branch}")]);
                (branch.to_string(), count.trim().parse().unwrap())
            })
            .collect()
    }

    /// Everything GitHub shows for every job: one pull request for the
    /// issue's branch, one progress comment, one branch with one commit.
    fn assert_each_job_published_once(&self) {
        for (r, repo) in self.repos.iter().enumerate() {
            let pulls = self.github.pulls(repo);
            let branches = self.branches(r);
            assert_eq!(
                branches.len() as u64,
                self.issues_per_repo,
                "{repo}: one branch per issue: {branches:?}"
            );
            for (branch, commits) in &branches {
                assert_eq!(*commits, 1, "{repo} {branch}: one commit, never twice");
            }
            let mut pulled: HashMap<u64, usize> = HashMap::new();
            for pull in &pulls {
                let issue = pull
                    .body
                    .lines()
                    .find_map(|l| l.strip_prefix("Closes #"))
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("a pull request closes no issue: {}", pull.body));
                *pulled.entry(issue).or_insert(0) += 1;
                assert!(
                    branches.contains_key(&pull.head),
                    "{repo}: pull request from an unknown branch {}",
                    pull.head
                );
            }
            for issue in 1..=self.issues_per_repo {
                assert_eq!(
                    pulled.get(&issue),
                    Some(&1),
                    "{repo}#{issue}: exactly one pull request"
                );
                let comments = self.github.comments(repo, issue);
                assert_eq!(
                    comments.len(),
                    1,
                    "{repo}#{issue}: exactly one progress comment: {:?}",
                    comments.iter().map(|c| &c.body).collect::<Vec<_>>()
                );
            }
        }
    }
}

fn installation_of(repo: usize) -> u64 {
    50_000 + repo as u64
}

/// The key in a planner prompt (`Write note <key>`) or a coder prompt (`notes/<key>.md`).
fn request_key(request: &RecordedRequest) -> Option<String> {
    let text: String = request.messages.iter().map(|(_, c)| c.as_str()).collect();
    let after = |marker: &str| {
        text.find(marker).map(|at| {
            text[at + marker.len()..]
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect::<String>()
        })
    };
    if request.model == PLANNER_MODEL {
        after("Write note ")
    } else {
        after("notes/")
    }
}

fn answer_for(request: &RecordedRequest) -> Scripted {
    let content = match request_key(request) {
        Some(key) if request.model == PLANNER_MODEL => format!(
            r#"{{"steps": [{{"title": "Add note {key}", "rationale": "Asked for.", "acceptance": "notes/{key}.md exists",
                "files": ["notes/{key}.md"], "commands": []}}]}}"#
        ),
        Some(key) => format!("=== FILE: notes/{key}.md\nNote {key}\n=== END FILE\n"),
        None => "no job named in this request".to_string(),
    };
    Scripted::Answer {
        content,
        model: request.model.clone(),
        prompt_tokens: 100,
        completion_tokens: 20,
    }
}

fn git(bare: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(bare)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

// ---- a real replica

struct Replica {
    name: String,
    server: Served,
    _data: tempfile::TempDir,
}

impl Replica {
    fn start(name: &str, env: &[(&str, &str)]) -> Replica {
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut command = serve_command(data.path(), port);
        command.env("ORCH_API_TOKEN", API_TOKEN).env(
            "RUST_LOG",
            std::env::var("REPLICA_LOG").unwrap_or_else(|_| "warn".into()),
        );
        for (k, v) in env {
            command.env(k, v);
        }
        let server = Served::start(command, port, Some(&data.path().join("server.log")));
        Replica {
            name: name.to_string(),
            server,
            _data: data,
        }
    }

    fn base(&self) -> &str {
        &self.server.base
    }

    /// SIGTERM, and SIGKILL when it has not stopped within 15 s.
    fn stop(&mut self) {
        if self.server.terminate(Duration::from_secs(15)).is_none() {
            self.server.kill_9();
        }
    }
}

async fn post_delivery(client: &reqwest::Client, base: &str, delivery: &str, body: &[u8]) -> u16 {
    post_webhook(client, base, "issues", delivery, body).await
}

/// A plan of posts: each delivery id to one or more replicas (indices).
struct Post {
    delivery: String,
    body: Vec<u8>,
    targets: Vec<usize>,
}

/// Sends every post, eight deliveries at a time, all posts of one delivery
/// at once; returns each delivery's answers.
async fn post_all(bases: &[String], posts: Vec<Post>) -> HashMap<String, Vec<u16>> {
    let client = reqwest::Client::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    for post in posts {
        let permit = limit.clone().acquire_owned().await.unwrap();
        let client = client.clone();
        let bases: Vec<String> = post.targets.iter().map(|t| bases[*t].clone()).collect();
        tasks.spawn(async move {
            let sends = bases
                .iter()
                .map(|base| post_delivery(&client, base, &post.delivery, &post.body));
            let mut answers = Vec::new();
            for answer in join_all(sends).await {
                answers.push(answer);
            }
            drop(permit);
            (post.delivery, answers)
        });
    }
    let mut out = HashMap::new();
    while let Some(done) = tasks.join_next().await {
        let (delivery, answers) = done.unwrap();
        out.insert(delivery, answers);
    }
    out
}

/// Runs the futures concurrently on this task, answers in order.
async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in pinned.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

/// Every delivery id answered 202 exactly once; its other posts 200.
fn assert_recorded_once(answers: &HashMap<String, Vec<u16>>) {
    for (delivery, statuses) in answers {
        let new = statuses.iter().filter(|s| **s == 202).count();
        let seen = statuses.iter().filter(|s| **s == 200).count();
        assert_eq!(
            (new, seen),
            (1, statuses.len() - 1),
            "{delivery}: one 202, the rest 200: {statuses:?}"
        );
    }
}

/// Drops a test database made by `fresh_postgres_database` (on success only:
/// a failed run leaves it for a look).
async fn drop_database(url: &str) {
    let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
        return;
    };
    let Some((_, name)) = url.rsplit_once('/') else {
        return;
    };
    let admin = db(&admin_url).await;
    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&admin).await;
    admin.close().await;
}

async fn db(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .unwrap()
}

async fn scalar(pool: &sqlx::AnyPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// `(id, status, lease_owner, lease_until, run_after)` of a job that has not succeeded.
type StuckJob = (String, String, Option<String>, Option<i64>, i64);

/// Waits until `expected` jobs have succeeded; fails at once on a job that
/// ended otherwise, or after `limit`, with the replicas' logs.
async fn wait_for_success(pool: &sqlx::AnyPool, expected: i64, limit: Duration, replicas: &[&Replica]) {
    let deadline = Instant::now() + limit;
    loop {
        let ended: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT id, status, status_reason FROM jobs WHERE status IN ('failed', 'cancelled', 'rejected')",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        let logs = || {
            replicas
                .iter()
                .map(|r| format!("--- {} ---\n{}", r.name, r.server.log_tail()))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert!(ended.is_empty(), "jobs ended badly: {ended:?}\n{}", logs());
        let succeeded = scalar(pool, "SELECT COUNT(*) FROM jobs WHERE status = 'succeeded'").await;
        if succeeded == expected {
            return;
        }
        if Instant::now() >= deadline {
            let stuck: Vec<StuckJob> = sqlx::query_as(
                "SELECT id, status, lease_owner, lease_until, run_after FROM jobs WHERE status <> 'succeeded'",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            panic!(
                "{succeeded} of {expected} jobs succeeded in {limit:?}; now {}: {stuck:#?}\n{}",
                orchestrator::jobs::now_millis(),
                logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Jobs per second of `replicas` (1 or 2) on a fresh fleet of `repos` × `issues` jobs.
async fn throughput(
    db_url: String,
    replicas: usize,
    (repos, issues): (usize, u64),
    workers: &str,
    latency: Duration,
) -> f64 {
    let fleet = Fleet::new(db_url, repos, issues, latency).await;
    let env = [("ORCH_WORKERS", workers)];
    let started: Vec<Replica> = (0..replicas)
        .map(|n| fleet.start_replica(&format!("solo-{n}"), &env))
        .collect();
    let bases: Vec<String> = started.iter().map(|r| r.base().to_string()).collect();
    let posts = fleet
        .jobs()
        .into_iter()
        .enumerate()
        .map(|(n, (r, i))| Post {
            delivery: format!("tp-{r}-{i}"),
            body: fleet.delivery(r, i),
            targets: vec![n % replicas],
        })
        .collect();
    let pool = db(&fleet.db_url).await;
    let clock = Instant::now();
    let answers = post_all(&bases, posts).await;
    assert_recorded_once(&answers);
    let refs: Vec<&Replica> = started.iter().collect();
    let jobs = fleet.jobs().len();
    wait_for_success(&pool, jobs as i64, Duration::from_secs(120), &refs).await;
    let rate = jobs as f64 / clock.elapsed().as_secs_f64();
    pool.close().await;
    for mut replica in started {
        replica.stop();
    }
    drop_database(&fleet.db_url).await;
    rate
}

/// 200 jobs fed to two replicas, a fifth of them posted three times (to
/// both replicas and again to the first): each job planned, coded, pushed,
/// opened as a pull request and commented on exactly once. Then the
/// throughput of one replica is measured on a smaller fleet and the ratio
/// printed (never asserted: the machine is shared).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_run_200_jobs_exactly_once() {
    let Some(db_url) = postgres_or_skip("two_replicas_run_200_jobs_exactly_once").await else {
        return;
    };
    let (repos, issues) = (50, 4);
    let fleet = Fleet::new(db_url, repos, issues, Duration::from_millis(150)).await;
    let env = [("ORCH_WORKERS", "3")];
    let mut a = fleet.start_replica("a", &env);
    let mut b = fleet.start_replica("b", &env);
    let bases = vec![a.base().to_string(), b.base().to_string()];
    let posts: Vec<Post> = fleet
        .jobs()
        .into_iter()
        .enumerate()
        .map(|(n, (r, i))| {
            let first = n % 2;
            let targets = if n % 5 == 0 {
                vec![first, 1 - first, first]
            } else {
                vec![first]
            };
            Post {
                delivery: format!("d-{r}-{i}"),
                body: fleet.delivery(r, i),
                targets,
            }
        })
        .collect();
    let pool = db(&fleet.db_url).await;
    let clock = Instant::now();
    let answers = post_all(&bases, posts).await;
    assert_eq!(answers.len(), 200);
    assert_eq!(answers.values().map(Vec::len).sum::<usize>(), 200 + 40 * 2);
    assert_recorded_once(&answers);
    wait_for_success(&pool, 200, Duration::from_secs(300), &[&a, &b]).await;
    let two_rate = 200.0 / clock.elapsed().as_secs_f64();

    assert_eq!(scalar(&pool, "SELECT COUNT(*) FROM deliveries").await, 200);
    assert_eq!(scalar(&pool, "SELECT COUNT(*) FROM jobs").await, 200);
    assert_eq!(
        scalar(&pool, "SELECT COUNT(DISTINCT delivery_id) FROM jobs").await,
        200,
        "one job per delivery"
    );
    let (plans, steps) = fleet.llm_requests_per_job();
    let all: HashSet<String> = fleet.jobs().iter().map(|(r, i)| key(*r, *i)).collect();
    for k in &all {
        assert_eq!(plans.get(k), Some(&1), "{k}: planned exactly once");
        assert_eq!(steps.get(k), Some(&1), "{k}: coded exactly once");
    }
    assert_eq!(plans.len() + steps.len(), 400, "no request for an unknown job");
    fleet.assert_each_job_published_once();
    pool.close().await;
    a.stop();
    b.stop();
    drop_database(&fleet.db_url).await;
    drop(fleet);

    println!(
        "200 jobs on two replicas (3 workers each, 150 ms LLM latency), duplicates included: {two_rate:.2} jobs/s"
    );

    // Throughput where a job mostly waits for the LLM, as in production: the
    // same 16 jobs for one replica, then for two, 2 workers each, 1 s per LLM answer.
    let (Some(solo_db), Some(pair_db)) = (fresh_postgres_database().await, fresh_postgres_database().await)
    else {
        return;
    };
    let latency = Duration::from_secs(1);
    let one = throughput(solo_db, 1, (4, 4), "2", latency).await;
    let two = throughput(pair_db, 2, (4, 4), "2", latency).await;
    println!(
        "16 jobs, 2 workers per replica, 1 s LLM latency: one replica {one:.2} jobs/s, two replicas {two:.2} jobs/s, \
         ratio {:.2}",
        two / one
    );
}

/// A replica killed with `kill -9` mid-run: the jobs it held are finished
/// by the other once their leases expire, and nothing is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_jobs_are_finished_by_the_other() {
    let Some(db_url) = postgres_or_skip("a_killed_replicas_jobs_are_finished_by_the_other").await else {
        return;
    };
    let fleet = Fleet::new(db_url, 8, 3, Duration::from_millis(400)).await;
    let env = [("ORCH_WORKERS", "3"), ("ORCH_LEASE_SECS", "6")];
    let pool = db(&fleet.db_url).await;
    let jobs = fleet.jobs();
    let body = |n: usize| fleet.delivery(jobs[n].0, jobs[n].1);
    let delivery = |n: usize| format!("k-{}-{}", jobs[n].0, jobs[n].1);

    // Replica a alone first, to learn its lease owner name from its first claim.
    let mut a = fleet.start_replica("a", &env);
    let client = reqwest::Client::new();
    assert_eq!(
        post_delivery(&client, a.base(), &delivery(0), &body(0)).await,
        202
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let a_owner = loop {
        let owner: Option<String> =
            sqlx::query_scalar("SELECT lease_owner FROM jobs WHERE lease_owner IS NOT NULL LIMIT 1")
                .fetch_optional(&pool)
                .await
                .unwrap();
        if let Some(owner) = owner {
            break owner.rsplit_once("-w").unwrap().0.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "a claimed nothing:\n{}",
            a.server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let b = fleet.start_replica("b", &env);
    let bases = vec![a.base().to_string(), b.base().to_string()];
    let posts = (1..jobs.len())
        .map(|n| Post {
            delivery: delivery(n),
            body: body(n),
            targets: vec![n % 2],
        })
        .collect();
    assert_recorded_once(&post_all(&bases, posts).await);

    // Kill a while it holds leases, after some jobs are done.
    let deadline = Instant::now() + Duration::from_secs(60);
    let held = loop {
        let done = scalar(&pool, "SELECT COUNT(*) FROM jobs WHERE status = 'succeeded'").await;
        let held: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, lease_until FROM jobs WHERE lease_owner LIKE $1 \
             AND status IN ('queued', 'planning', 'running', 'publishing')",
        )
        .bind(format!("{a_owner}-w%"))
        .fetch_all(&pool)
        .await
        .unwrap();
        if done >= 3 && held.len() >= 2 {
            a.server.kill_9();
            break held;
        }
        assert!(Instant::now() < deadline, "never caught a holding leases");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let killed_at = Instant::now();
    let killed_at_ms = orchestrator::jobs::now_millis();

    wait_for_success(&pool, jobs.len() as i64, Duration::from_secs(90), &[&b]).await;
    for (id, _) in &held {
        let status: String = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(status, "succeeded", "{id} was held by the killed replica");
    }
    // Nobody touched a held job before its lease expired: its LLM requests
    // after the kill came after the lease's end.
    let held_keys = held_job_keys(&pool, &held).await;
    for request in fleet.llm.requests() {
        let key = request_key(&request).unwrap();
        if let Some(lease_until) = held_keys.get(&key)
            && request.at > killed_at
        {
            let expiry =
                killed_at + Duration::from_millis(u64::try_from(lease_until - killed_at_ms).unwrap_or(0));
            assert!(
                request.at + Duration::from_millis(50) >= expiry,
                "{key} was resumed before its lease expired"
            );
        }
    }
    // Jobs the killed replica never held ran once; held ones at most twice.
    let (plans, steps) = fleet.llm_requests_per_job();
    for (r, i) in &jobs {
        let k = key(*r, *i);
        let limit = if held_keys.contains_key(&k) { 2 } else { 1 };
        for (what, counts) in [("planned", &plans), ("coded", &steps)] {
            let n = counts.get(&k).copied().unwrap_or(0);
            assert!((1..=limit).contains(&n), "{k} {what} {n} times");
        }
    }
    fleet.assert_each_job_published_once();
    assert_eq!(
        scalar(&pool, "SELECT COUNT(*) FROM jobs").await,
        jobs.len() as i64
    );
    pool.close().await;
    let mut b = b;
    b.stop();
    drop_database(&fleet.db_url).await;
}

/// The keys (see [`key`]) of the given jobs, from their issue titles, with
/// the end of the lease the killed replica held.
async fn held_job_keys(pool: &sqlx::AnyPool, held: &[(String, i64)]) -> HashMap<String, i64> {
    let mut keys = HashMap::new();
    for (id, lease_until) in held {
        let title: String = sqlx::query_scalar("SELECT issue_title FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap();
        keys.insert(title.trim_start_matches("Write note ").to_string(), *lease_until);
    }
    keys
}

/// The same delivery posted to both replicas at the same moment, round
/// after round: recorded once, one job, one 202 and one 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_delivery_posted_to_both_replicas_at_once_is_recorded_once() {
    let Some(db_url) =
        postgres_or_skip("one_delivery_posted_to_both_replicas_at_once_is_recorded_once").await
    else {
        return;
    };
    // No GitHub App: the jobs are only recorded (and fail at once when run).
    let env = [("DATABASE_URL", db_url.as_str()), ("ORCH_WORKERS", "1")];
    let mut a = Replica::start("a", &env);
    let mut b = Replica::start("b", &env);
    let rounds = 60u64;
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let mut racers = Vec::new();
    for base in [a.base().to_string(), b.base().to_string()] {
        let barrier = barrier.clone();
        racers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            // A warm connection, so both posts leave together.
            client.get(format!("{base}/health")).send().await.unwrap();
            let mut answers = Vec::new();
            for round in 1..=rounds {
                let body = labeled(round);
                barrier.wait().await;
                answers.push(post_delivery(&client, &base, &format!("race-{round}"), &body).await);
            }
            answers
        }));
    }
    let mut answers: HashMap<String, Vec<u16>> = HashMap::new();
    for racer in racers {
        for (round, status) in racer.await.unwrap().into_iter().enumerate() {
            answers
                .entry(format!("race-{}", round + 1))
                .or_default()
                .push(status);
        }
    }
    assert_recorded_once(&answers);
    let pool = db(&db_url).await;
    assert_eq!(
        scalar(&pool, "SELECT COUNT(*) FROM deliveries").await,
        rounds as i64
    );
    assert_eq!(scalar(&pool, "SELECT COUNT(*) FROM jobs").await, rounds as i64);
    assert_eq!(
        scalar(&pool, "SELECT COUNT(DISTINCT delivery_id) FROM jobs").await,
        rounds as i64,
        "one job per delivery"
    );
    pool.close().await;
    a.stop();
    b.stop();
    drop_database(&db_url).await;
}

/// Transient errors from a real server are classified as such: a deadlock
/// (SQLSTATE 40P01) between two transactions, and a connection terminated
/// by the server (57P01).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_deadlock_and_a_terminated_connection_are_transient() {
    let Some(db_url) = postgres_or_skip("a_real_deadlock_and_a_terminated_connection_are_transient").await
    else {
        return;
    };
    use sqlx::Connection;
    let pool = db(&db_url).await;
    let mut first = pool.acquire().await.unwrap().detach();
    let mut second = pool.acquire().await.unwrap().detach();
    let lock = |n: i64| sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(n);
    let mut tx1 = first.begin().await.unwrap();
    let mut tx2 = second.begin().await.unwrap();
    sqlx::query("SET LOCAL deadlock_timeout = '100ms'")
        .execute(&mut *tx1)
        .await
        .unwrap();
    lock(1).execute(&mut *tx1).await.unwrap();
    lock(2).execute(&mut *tx2).await.unwrap();
    let (one, two) = tokio::join!(lock(2).execute(&mut *tx1), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        lock(1).execute(&mut *tx2).await
    });
    let errors: Vec<sqlx::Error> = [one.err(), two.err()].into_iter().flatten().collect();
    assert_eq!(errors.len(), 1, "one deadlock victim: {errors:?}");
    let code = errors[0]
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.to_string());
    assert_eq!(code.as_deref(), Some("40P01"), "{:?}", errors[0]);
    assert!(orchestrator::store::is_transient(&errors[0]));
    drop((tx1, tx2));

    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut first)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(&mut second)
        .await
        .unwrap();
    let err = sqlx::query("SELECT 1").execute(&mut first).await.unwrap_err();
    assert!(orchestrator::store::is_transient(&err), "{err:?}");
    let _ = second.close().await;
    pool.close().await;
    drop_database(&db_url).await;
}

/// PostgreSQL `LISTEN`/`NOTIFY`: a queued job wakes the listeners of every
/// replica at its commit; a duplicate delivery (rolled back) wakes nobody;
/// SQLite has no listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_wakes_the_idle_workers_of_every_replica() {
    let Some(db_url) = postgres_or_skip("a_queued_job_wakes_the_idle_workers_of_every_replica").await else {
        return;
    };
    let app = app_on(&Some(db_url.clone()), &[]).await;
    let other = orchestrator::store::Store::connect(&db_url, &app.state.config.database)
        .await
        .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let here = app.store.job_wakeups(shutdown.clone()).await.unwrap().unwrap();
    let there = other.job_wakeups(shutdown.clone()).await.unwrap().unwrap();

    let (woken_here, woken_there) = (here.notified(), there.notified());
    tokio::pin!(woken_here, woken_there);
    woken_here.as_mut().enable();
    woken_there.as_mut().enable();
    let (status, _) = app.deliver("issues", "wake-1", &labeled(1)).await;
    assert_eq!(status.as_u16(), 202);
    let limit = Duration::from_secs(10);
    tokio::time::timeout(limit, woken_here)
        .await
        .expect("this replica woken");
    tokio::time::timeout(limit, woken_there)
        .await
        .expect("the other replica woken");

    let again = there.notified();
    tokio::pin!(again);
    again.as_mut().enable();
    let (status, _) = app.deliver("issues", "wake-1", &labeled(1)).await;
    assert_eq!(status.as_u16(), 200);
    assert!(
        tokio::time::timeout(Duration::from_millis(700), again)
            .await
            .is_err(),
        "a duplicate queues nothing and wakes nobody"
    );

    let sqlite = TestApp::new().await;
    assert!(
        sqlite
            .store
            .job_wakeups(shutdown.clone())
            .await
            .unwrap()
            .is_none()
    );
    shutdown.cancel();
    other.close().await;
    app.store.close().await;
    drop_database(&db_url).await;
}

/// A worker that stalled past its lease while another took the job writes
/// nothing to GitHub when it wakes: the lease check before the push stops
/// it, the job stays with its new holder, and no failure is recorded or shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_lease_was_taken_pushes_nothing() {
    use orchestrator::llm::transport::{RetryPolicy, RetryingTransport};
    use orchestrator::runner::{PoolSettings, WorkerPool};

    let app = TestApp::new().await;
    let github = FakeGitHub::start().await;
    let repo = github.add_repo_to(INSTALLATION, "Codertocat/Hello-World");
    github.add_issue(&repo, "Add docs", "Please add docs.");
    github.set_role(&repo, "Codertocat", "write");
    let llm = FakeOpenAi::start().await;
    llm.push_answer(
        r#"{"steps": [{"title": "Add the guide", "rationale": "r", "acceptance": "a", "files": ["docs/guide.md"], "commands": []}]}"#,
        100,
        20,
    );
    llm.push_delay(Duration::from_secs(3)); // the coder's answer: the worker "stalls" meanwhile
    llm.push_answer("=== FILE: docs/guide.md\nGuide\n=== END FILE\n", 100, 20);
    let transport = RetryingTransport::new(RetryPolicy {
        max_attempts: 1,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(10),
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    let model = orchestrator::llm::openai::OpenAiModel::new(
        &llm.url,
        Some(&secrecy::SecretString::from("sk-test")),
        transport,
    );
    let handler = orchestrator::pipeline::github_job::GitHubJobs {
        store: app.store.clone(),
        config: app.state.config.clone(),
        github: Some(github.client()),
        model: Arc::new(model),
        pricing: Arc::new(
            orchestrator::pricing::Pricing::parse(orchestrator::pricing::BUILT_IN, "built-in").unwrap(),
        ),
        policy: Arc::new(
            orchestrator::agents::AgentsPolicy::parse(orchestrator::agents::BUILT_IN, "built-in").unwrap(),
        ),
        workspaces: orchestrator::workspace::Workspaces::new(app.dir.path().join("data")),
        identity: app.state.identity.clone(),
    };
    let pool = WorkerPool::new(
        app.store.clone(),
        Arc::new(handler),
        PoolSettings::new(1, Duration::from_secs(30)),
    );
    let (status, _) = app.deliver("issues", "fence-1", &labeled(1)).await;
    assert_eq!(status.as_u16(), 202);
    let worker = tokio::spawn(async move { pool.run_until_idle().await });
    let deadline = Instant::now() + Duration::from_secs(20);
    while llm.requests().len() < 2 {
        assert!(Instant::now() < deadline, "the coder was never asked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another replica claims the job, as if this worker's lease had expired.
    let db = app.pool().await;
    let taken = sqlx::query("UPDATE jobs SET lease_owner = 'other-replica-w0', lease_until = $1")
        .bind(orchestrator::jobs::now_millis() + 60_000)
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(taken.rows_affected(), 1);

    let ran = tokio::time::timeout(Duration::from_secs(30), worker)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ran.unwrap(),
        1,
        "the stalled run ended; the job is not claimable again"
    );
    let bare = github.state().repos["Codertocat/Hello-World"].bare.clone();
    let branches = git(
        &bare,
        &[
            "for-each-ref",
            "--format=%(refname:short)",
            "refs/heads/orchestrator/",
        ],
    );
    assert_eq!(branches, "", "nothing was pushed");
    assert!(github.pulls(&repo).is_empty(), "no pull request");
    assert!(
        github.check_runs().is_empty(),
        "no check run (it follows the first push)"
    );
    let (status, owner): (String, Option<String>) = sqlx::query_as("SELECT status, lease_owner FROM jobs")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(
        ["queued", "planning", "running"].contains(&status.as_str()),
        "nothing recorded by the loser: {status}"
    );
    assert_eq!(owner.as_deref(), Some("other-replica-w0"));
    let comments = github.comments(&repo, 1);
    assert_eq!(comments.len(), 1, "the progress comment, once");
    assert!(!comments[0].body.contains("Failed"), "{}", comments[0].body);
    db.close().await;
}
