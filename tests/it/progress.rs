//! The GitHub face of a job, end to end against the fake GitHub: the 👀
//! reaction, ONE progress comment edited in place (also after a lost answer
//! or a crash), the throttle, and the `orchestrator` check run carried from
//! head to head and concluded with its buttons.

use std::time::Duration;

use orchestrator::github::RepoRef;
use orchestrator::jobs::JobStatus;
use orchestrator::progress::{
    JobProgress, JobTarget, Outcome, ProgressReporter, StepProgress, StepStatus, progress_marker,
};
use serde_json::{Value, json};

use crate::fake_github::{FakeGitHub, INSTALLATION_ID};
use crate::support::{TestApp, labeled};

const REPO: &str = "Codertocat/Hello-World";
const SHA1: &str = "1111111111111111111111111111111111111111";
const SHA2: &str = "2222222222222222222222222222222222222222";

struct Setup {
    app: TestApp,
    fake: FakeGitHub,
    repo: RepoRef,
    job_id: String,
}

/// A queued job on issue 1, created by a label trigger.
async fn setup() -> Setup {
    let app = TestApp::new().await;
    let fake = FakeGitHub::start().await;
    let repo = fake.add_repo(REPO);
    fake.add_issue(&repo, "An issue", "Text");
    app.deliver("issues", "p-1", &labeled(1)).await;
    let outcome = app.outcome("p-1").await;
    let job_id = outcome.rsplit(' ').next().unwrap().to_string();
    Setup {
        app,
        fake,
        repo,
        job_id,
    }
}

impl Setup {
    fn reporter(&self, trigger_comment_id: Option<u64>) -> ProgressReporter {
        let target = JobTarget {
            repo: self.repo.clone(),
            issue_number: 1,
            job_id: self.job_id.clone(),
            trigger_comment_id,
        };
        let client = self.fake.client().installation(INSTALLATION_ID);
        ProgressReporter::new(client, self.app.store.clone(), target, self.fake.clock.clone())
            .with_min_interval(Duration::from_secs(5))
    }

    fn progress(&self, status: JobStatus, done: usize) -> JobProgress {
        let mut p = JobProgress::new(self.job_id.clone());
        p.status = status;
        p.steps = (0..3)
            .map(|i| StepProgress {
                title: format!("Step {}", i + 1),
                status: if i < done {
                    StepStatus::Succeeded
                } else {
                    StepStatus::Pending
                },
            })
            .collect();
        p.files_changed = vec!["src/lib.rs".into()];
        p.tokens_in = 1000 * done as u64;
        p.cost_usd = 0.01 * done as f64;
        p
    }

    fn comment_posts(&self) -> usize {
        self.fake.count("POST", "/repos/*/*/issues/*/comments")
    }

    fn comment_edits(&self) -> usize {
        self.fake.count("PATCH", "/repos/*/*/issues/comments/*")
    }

    fn tick(&self, secs: u64) {
        self.fake.clock.advance(Duration::from_secs(secs));
    }
}

fn actions(run: &Value) -> Vec<String> {
    run["actions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x["identifier"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_job_shows_one_comment_and_a_check_run_carried_to_the_newest_head() {
    let s = setup().await;
    let mut reporter = s.reporter(None);
    reporter.start(&s.progress(JobStatus::Planning, 0)).await.unwrap();
    assert_eq!(
        s.fake.reactions(),
        vec![(format!("issue:{REPO}#1"), "eyes".to_string())]
    );
    let comments = s.fake.comments(&s.repo, 1);
    assert_eq!(comments.len(), 1);
    assert!(comments[0].body.starts_with(&progress_marker(&s.job_id)));
    let saved = s.app.store.progress_ids(&s.job_id).await.unwrap().unwrap();
    assert_eq!(saved.progress_comment_id, Some(comments[0].id as i64));

    s.tick(6);
    reporter.update(&s.progress(JobStatus::Running, 0)).await.unwrap();
    reporter.pushed(SHA1).await.unwrap();
    let runs = s.fake.check_runs();
    assert_eq!(runs.len(), 1);
    let first = &runs[0].current;
    assert_eq!(first["name"], "orchestrator");
    assert_eq!(first["head_sha"], SHA1);
    assert_eq!(first["status"], "in_progress");
    assert_eq!(first["external_id"], json!(s.job_id));
    assert_eq!(actions(first), ["cancel"]);

    s.tick(6);
    reporter.update(&s.progress(JobStatus::Running, 1)).await.unwrap();
    reporter.pushed(SHA2).await.unwrap();
    let runs = s.fake.check_runs();
    assert_eq!(runs.len(), 2, "a new run on the new head");
    assert_eq!(runs[0].current["conclusion"], "neutral");
    assert_eq!(
        runs[0].current["output"]["title"],
        format!("superseded by {}", &SHA2[..12])
    );
    assert_eq!(actions(&runs[0].current), Vec::<String>::new());
    assert_eq!(runs[1].current["head_sha"], SHA2);
    assert_eq!(runs[1].current["status"], "in_progress");
    assert!(
        runs[1].history[0]["output"]["summary"]
            .as_str()
            .unwrap()
            .contains("Step 1 — succeeded"),
        "the new run carries the progress so far"
    );
    let saved = s.app.store.progress_ids(&s.job_id).await.unwrap().unwrap();
    assert_eq!(saved.check_run_id, Some(runs[1].id as i64));
    assert_eq!(saved.head_sha.as_deref(), Some(SHA2));

    s.tick(6);
    reporter.update(&s.progress(JobStatus::Running, 2)).await.unwrap();
    reporter
        .finish(Outcome::Succeeded, &s.progress(JobStatus::Publishing, 3))
        .await
        .unwrap();
    let runs = s.fake.check_runs();
    let last = &runs[1].current;
    assert_eq!(last["conclusion"], "success");
    assert_eq!(last["status"], "completed");
    assert_eq!(actions(last), Vec::<String>::new(), "no Cancel once ended");
    let summary = last["output"]["summary"].as_str().unwrap();
    assert!(summary.contains("Step 3 — succeeded") && summary.contains("`src/lib.rs`"));
    assert!(summary.contains("tokens 3000 in"), "{summary}");

    let comments = s.fake.comments(&s.repo, 1);
    assert_eq!(comments.len(), 1, "never a second comment");
    assert_eq!(s.comment_posts(), 1);
    assert!(
        comments[0].history.len() >= 4,
        "edited in place: {}",
        comments[0].history.len()
    );
    assert!(comments[0].body.contains("Succeeded"), "{}", comments[0].body);
    assert!(!comments[0].body.contains("no check run"));
    assert!(!s.fake.calls().iter().any(|c| {
        c.body
            .as_ref()
            .is_some_and(|b| b.to_string().contains("\"/orchestrate"))
    }));
}

#[tokio::test]
async fn a_failed_job_offers_retry_and_a_comment_trigger_gets_the_reaction() {
    let s = setup().await;
    let mut reporter = s.reporter(Some(777));
    reporter.start(&s.progress(JobStatus::Running, 0)).await.unwrap();
    assert_eq!(
        s.fake.reactions(),
        vec![("comment:777".to_string(), "eyes".to_string())]
    );
    reporter.pushed(SHA1).await.unwrap();
    let mut failed = s.progress(JobStatus::Running, 1);
    failed.status_reason = Some("budget_usd: the job reached its budget".into());
    reporter.finish(Outcome::Failed, &failed).await.unwrap();
    let run = &s.fake.check_runs()[0].current;
    assert_eq!(run["conclusion"], "failure");
    assert_eq!(actions(run), ["retry"]);
    let body = &s.fake.comments(&s.repo, 1)[0].body;
    assert!(body.contains("Failed") && body.contains("budget_usd"), "{body}");
}

#[tokio::test]
async fn a_job_that_ends_before_its_first_push_has_no_check_run_and_says_why() {
    let s = setup().await;
    let mut reporter = s.reporter(None);
    reporter.start(&s.progress(JobStatus::Planning, 0)).await.unwrap();
    let mut failed = s.progress(JobStatus::Planning, 0);
    failed.status_reason = Some("plan_invalid: the planner answered no steps".into());
    reporter.finish(Outcome::Failed, &failed).await.unwrap();
    assert!(s.fake.check_runs().is_empty());
    let comments = s.fake.comments(&s.repo, 1);
    assert_eq!(comments.len(), 1);
    let body = &comments[0].body;
    assert!(body.contains("no check run"), "{body}");
    assert!(body.contains("`/orchestrate retry`"), "{body}");
    assert!(!orchestrator_commands::contains_command_line(body));
}

#[tokio::test]
async fn a_lost_answer_or_a_crash_never_yields_a_second_comment() {
    let s = setup().await;
    s.fake.lose_next_answer("POST", "/repos/*/*/issues/*/comments");
    let mut reporter = s.reporter(None);
    reporter.start(&s.progress(JobStatus::Planning, 0)).await.unwrap();
    assert_eq!(s.fake.comments(&s.repo, 1).len(), 1, "lost answer");

    // A crash after GitHub's 201 but before the id was saved.
    let pool = s.app.pool().await;
    sqlx::query("UPDATE jobs SET progress_comment_id = NULL")
        .execute(&pool)
        .await
        .unwrap();
    let mut resumed = s.reporter(None);
    resumed.start(&s.progress(JobStatus::Running, 1)).await.unwrap();
    let comments = s.fake.comments(&s.repo, 1);
    assert_eq!(comments.len(), 1, "found by its marker");
    assert!(comments[0].body.contains("Step 1 — succeeded"));

    // A retried job reuses the saved comment without searching.
    s.fake.clear_calls();
    let mut retried = s.reporter(None);
    retried.start(&s.progress(JobStatus::Queued, 0)).await.unwrap();
    assert_eq!(s.fake.count("GET", "/repos/*/*/issues/*/comments"), 0);
    assert_eq!(s.comment_posts(), 0);
    assert_eq!(s.fake.comments(&s.repo, 1).len(), 1);
}

#[tokio::test]
async fn a_resumed_job_carries_its_check_run_on() {
    let s = setup().await;
    let mut reporter = s.reporter(None);
    reporter.start(&s.progress(JobStatus::Running, 0)).await.unwrap();
    reporter.pushed(SHA1).await.unwrap();
    let mut resumed = s.reporter(None);
    resumed.start(&s.progress(JobStatus::Running, 1)).await.unwrap();
    assert_eq!(resumed.check_run_id(), Some(s.fake.check_runs()[0].id));
    resumed.pushed(SHA2).await.unwrap();
    let runs = s.fake.check_runs();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].current["conclusion"], "neutral");
}

#[tokio::test]
async fn the_throttle_keeps_edits_few_and_the_final_state_is_always_written() {
    let s = setup().await;
    let mut reporter = s.reporter(None);
    reporter.start(&s.progress(JobStatus::Running, 0)).await.unwrap();
    for i in 0..30u64 {
        let mut p = s.progress(JobStatus::Running, 0);
        p.tokens_in = i;
        reporter.update(&p).await.unwrap();
        s.fake.clock.advance(Duration::from_millis(100));
    }
    assert_eq!(s.comment_edits(), 0, "3 s of updates inside the 5 s interval");
    s.tick(5);
    let mut p = s.progress(JobStatus::Running, 1);
    reporter.update(&p).await.unwrap();
    assert_eq!(s.comment_edits(), 1);
    for i in 0..10u64 {
        p.tokens_out = 100 + i;
        reporter.update(&p).await.unwrap();
    }
    assert_eq!(s.comment_edits(), 1);
    reporter.flush().await.unwrap();
    assert_eq!(s.comment_edits(), 2);
    assert!(s.fake.comments(&s.repo, 1)[0].body.contains("/ 109 out"));
    reporter.flush().await.unwrap();
    assert_eq!(s.comment_edits(), 2, "an unchanged text is not sent again");
    reporter
        .finish(Outcome::Cancelled, &s.progress(JobStatus::Running, 1))
        .await
        .unwrap();
    assert_eq!(s.comment_edits(), 3, "the final state ignores the throttle");
    assert!(s.fake.comments(&s.repo, 1)[0].body.contains("Cancelled"));
    assert_eq!(s.comment_posts(), 1);
}

#[tokio::test]
async fn a_failed_check_run_create_keeps_the_current_run_until_a_new_one_exists() {
    let s = setup().await;
    let mut reporter = s.reporter(None);
    reporter.start(&s.progress(JobStatus::Running, 0)).await.unwrap();
    reporter.pushed(SHA1).await.unwrap();
    let first = s.fake.check_runs()[0].id;
    s.fake.fail_next("POST", "/repos/*/*/check-runs", 422, 1);
    assert!(reporter.pushed(SHA2).await.is_err());
    assert_eq!(reporter.check_run_id(), Some(first));
    assert_eq!(s.fake.check_runs()[0].current["status"], "in_progress");
    reporter.pushed(SHA2).await.unwrap();
    let runs = s.fake.check_runs();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].current["conclusion"], "neutral");
    assert_eq!(reporter.check_run_id(), Some(runs[1].id));
}
