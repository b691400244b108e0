//! Cancel and retry end to end: a signed webhook (a `/orchestrate cancel|retry`
//! comment, or a click on the check run's button) → an outbox row → the
//! control applier → the right job state and at most one reply. Also the
//! one explanation of a job rejected at intake.

use orchestrator::control::ControlApplier;
use orchestrator::jobs::{JobStatus, now_millis};
use orchestrator::store::Store;
use serde_json::Value;

use crate::fake_github::FakeGitHub;
use crate::support::{TestApp, comment, derived, labeled};

const REPO: &str = "Codertocat/Hello-World";
/// The sender of the issue and comment fixtures.
const FIXTURE_SENDER: &str = "Codertocat";

struct Setup {
    app: TestApp,
    fake: FakeGitHub,
    repo: orchestrator::github::RepoRef,
    applier: ControlApplier,
}

async fn setup_on(url: &Option<String>) -> Setup {
    let app = crate::support::app_on(url, &[]).await;
    let fake = FakeGitHub::start().await;
    let repo = fake.add_repo(REPO);
    for _ in 0..3 {
        fake.add_issue(&repo, "An issue", "Text");
    }
    fake.set_role(&repo, FIXTURE_SENDER, "admin");
    let applier = ControlApplier::new(app.store.clone(), fake.client());
    Setup {
        app,
        fake,
        repo,
        applier,
    }
}

async fn setup() -> Setup {
    setup_on(&None).await
}

impl Setup {
    /// A queued job on `issue`, by label.
    async fn job(&self, issue: u64, delivery: &str) -> String {
        self.app.deliver("issues", delivery, &labeled(issue)).await;
        let outcome = self.app.outcome(delivery).await;
        assert!(outcome.starts_with("job_created"), "{outcome}");
        outcome.rsplit(' ').next().unwrap().to_string()
    }

    /// Runs `job` to `status` as a worker would.
    async fn end_job(&self, job: &str, status: JobStatus) {
        let store: &Store = &self.app.store;
        let now = now_millis();
        let claimed = store
            .claim_job("worker", now + 60_000, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed.id, job);
        assert!(
            store
                .set_job_status(job, "worker", status, Some("internal: test"), now)
                .await
                .unwrap()
        );
    }

    async fn command(&self, issue: u64, delivery: &str, text: &str) {
        let (status, _) = self
            .app
            .deliver("issue_comment", delivery, &comment(issue, text, "OWNER"))
            .await;
        assert_eq!(status.as_u16(), 202);
    }

    async fn click(&self, delivery: &str, job: &str, action: Option<&str>, login: &str) {
        let fixture = if action.is_some() {
            "webhooks/check_run/requested_action.1.json"
        } else {
            "webhooks/check_run/rerequested.1.json"
        };
        let body = derived(fixture, |v| {
            v["check_run"]["name"] = "orchestrator".into();
            v["check_run"]["external_id"] = job.into();
            v["repository"]["full_name"] = REPO.into();
            v["repository"]["name"] = "Hello-World".into();
            v["repository"]["owner"]["login"] = "Codertocat".into();
            v["sender"]["login"] = login.into();
            if let Some(action) = action {
                v["requested_action"]["identifier"] = action.into();
            }
        });
        self.app.deliver("check_run", delivery, &body).await;
        let outcome = self.app.outcome(delivery).await;
        assert!(outcome.starts_with("control: "), "{outcome}");
    }

    async fn job_json(&self, job: &str) -> Value {
        self.app.api_get(&format!("/jobs/{job}")).await.1
    }

    async fn apply(&self) -> usize {
        self.applier.run_until_idle().await.unwrap()
    }

    fn replies(&self, issue: u64) -> Vec<String> {
        self.fake
            .comments(&self.repo, issue)
            .into_iter()
            .map(|c| c.body)
            .collect()
    }
}

#[tokio::test]
async fn a_cancel_comment_stops_the_running_job_without_a_reply() {
    let s = setup().await;
    let job = s.job(1, "c-1").await;
    s.command(1, "c-2", "/orchestrate cancel").await;
    assert_eq!(s.apply().await, 1);
    assert!(s.app.store.cancel_requested(&job).await.unwrap());
    assert!(s.replies(1).is_empty());
    assert_eq!(s.apply().await, 0, "nothing left");
}

#[tokio::test]
async fn a_cancel_with_nothing_running_gets_one_short_reply() {
    let s = setup().await;
    s.command(2, "c-1", "/orchestrate cancel").await;
    s.apply().await;
    let replies = s.replies(2);
    assert_eq!(replies.len(), 1);
    assert!(replies[0].contains("nothing to cancel"), "{}", replies[0]);
    assert!(!orchestrator_commands::contains_command_line(&replies[0]));
    // Reclaimed after a crash before it was marked sent: still one reply.
    let pool = s.app.pool().await;
    sqlx::query("UPDATE outbox SET sent_at = NULL, lease_until = NULL")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(s.apply().await, 1);
    assert_eq!(s.replies(2).len(), 1);
}

#[tokio::test]
async fn a_retry_comment_queues_the_failed_job_again() {
    let s = setup().await;
    let job = s.job(1, "r-1").await;
    s.end_job(&job, JobStatus::Failed).await;
    s.command(1, "r-2", "/orchestrate retry").await;
    s.apply().await;
    let view = s.job_json(&job).await;
    assert_eq!(view["status"], "queued");
    assert_eq!(view["attempt"], 2);
    assert!(s.replies(1).is_empty());

    // A second retry while it is queued again: one polite reply.
    s.command(1, "r-3", "/orchestrate retry").await;
    s.apply().await;
    let replies = s.replies(1);
    assert_eq!(replies.len(), 1);
    assert!(
        replies[0].contains("only failed or cancelled jobs"),
        "{}",
        replies[0]
    );
}

#[tokio::test]
async fn a_triage_user_is_denied_politely_and_nothing_changes() {
    let s = setup().await;
    let job = s.job(1, "t-1").await;
    s.end_job(&job, JobStatus::Failed).await;
    s.fake.set_role(&s.repo, FIXTURE_SENDER, "triage");
    s.command(1, "t-2", "/orchestrate retry").await;
    s.apply().await;
    assert_eq!(s.job_json(&job).await["status"], "failed");
    let replies = s.replies(1);
    assert_eq!(replies.len(), 1);
    assert!(
        replies[0].contains("@Codertocat") && replies[0].contains("write, maintain or admin"),
        "{}",
        replies[0]
    );
    assert!(!orchestrator_commands::contains_command_line(&replies[0]));
}

#[tokio::test]
async fn the_check_run_buttons_cancel_and_retry_the_job_they_name() {
    let s = setup().await;
    s.fake.set_role(&s.repo, "maintainer", "maintain");
    let job = s.job(1, "b-1").await;
    s.click("b-2", &job, Some("cancel"), "maintainer").await;
    s.apply().await;
    assert!(s.app.store.cancel_requested(&job).await.unwrap());

    s.end_job(&job, JobStatus::Cancelled).await;
    s.click("b-3", &job, Some("retry"), "maintainer").await;
    s.apply().await;
    let view = s.job_json(&job).await;
    assert_eq!(
        (view["status"].as_str(), view["attempt"].as_i64()),
        (Some("queued"), Some(2))
    );

    s.end_job(&job, JobStatus::Failed).await;
    s.click("b-4", &job, None, "maintainer").await;
    s.apply().await;
    assert_eq!(s.job_json(&job).await["attempt"], 3, "Re-run means retry");
    assert!(s.replies(1).is_empty());
}

#[tokio::test]
async fn a_reader_clicking_retry_is_denied_on_the_jobs_issue() {
    let s = setup().await;
    s.fake.set_role(&s.repo, "reader", "read");
    let job = s.job(3, "d-1").await;
    s.end_job(&job, JobStatus::Failed).await;
    s.click("d-2", &job, Some("retry"), "reader").await;
    s.apply().await;
    assert_eq!(s.job_json(&job).await["status"], "failed");
    let replies = s.replies(3);
    assert_eq!(replies.len(), 1);
    assert!(replies[0].contains("@reader"), "{}", replies[0]);
}

#[tokio::test]
async fn a_job_rejected_at_intake_gets_one_explanation_on_every_backend() {
    for (backend, url) in crate::support::backends().await {
        let s = setup_on(&url).await;
        s.app
            .deliver("issue_comment", "x-1", &comment(2, "/orchestrate", "NONE"))
            .await;
        assert!(
            s.app.outcome("x-1").await.starts_with("job_rejected"),
            "{backend}"
        );
        assert_eq!(s.apply().await, 1, "{backend}");
        assert_eq!(s.apply().await, 0, "{backend}: posted once");
        let replies = s.replies(2);
        assert_eq!(replies.len(), 1, "{backend}");
        assert!(replies[0].contains("write, maintain or admin"), "{backend}");

        // Claimed again after a crash before it was recorded: found, not reposted.
        let pool = s.app.pool().await;
        sqlx::query("UPDATE jobs SET rejection_notified_at = NULL")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(s.apply().await, 1, "{backend}");
        assert_eq!(s.replies(2).len(), 1, "{backend}");

        // Cancel and retry rows are claimed on this backend too.
        let job = s.job(1, "x-2").await;
        s.command(1, "x-3", "/orchestrate cancel").await;
        assert_eq!(s.apply().await, 1, "{backend}");
        assert!(s.app.store.cancel_requested(&job).await.unwrap(), "{backend}");
    }
}
