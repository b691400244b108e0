//! End to end: a signed webhook → an outbox row → the outbox sender → the
//! fake GitHub receives exactly one reply comment, whatever goes wrong.

use orchestrator::github::RepoRef;
use orchestrator::outbox::{OutboxSender, marker};

use crate::fake_github::FakeGitHub;
use crate::support::{TestApp, comment};

/// The repository of the captured `issue_comment` fixture.
const REPO: &str = "Codertocat/Hello-World";

async fn setup(issue_number: u64) -> (TestApp, FakeGitHub, RepoRef, OutboxSender) {
    let app = TestApp::new().await;
    let fake = FakeGitHub::start().await;
    let repo = fake.add_repo(REPO);
    while fake.add_issue(&repo, "An issue", "Text") < issue_number {}
    let sender = OutboxSender::new(app.store.clone(), fake.client(), "orchestrate");
    (app, fake, repo, sender)
}

async fn sql(app: &TestApp, statement: &'static str) {
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}/orchestrator.db", app.dir.path().display()))
        .await
        .unwrap();
    sqlx::query(statement).execute(&pool).await.unwrap();
    pool.close().await;
}

#[tokio::test]
async fn a_help_command_gets_exactly_one_reply() {
    let (app, fake, repo, sender) = setup(3).await;
    let (status, _) = app
        .deliver("issue_comment", "o-1", &comment(3, "/orchestrate help", "NONE"))
        .await;
    assert_eq!(status.as_u16(), 202);
    assert_eq!(sender.run_until_idle().await.unwrap(), 1);
    assert_eq!(sender.run_until_idle().await.unwrap(), 0, "nothing left");
    let comments = fake.comments(&repo, 3);
    assert_eq!(comments.len(), 1);
    assert!(
        comments[0]
            .body
            .contains(&orchestrator_commands::usage_text("orchestrate"))
    );
    assert!(comments[0].body.contains("<!-- orchestrator:outbox:"));
    assert!(app.store.pending_outbox().await.unwrap().is_empty());
    let posts: Vec<_> = fake
        .calls()
        .into_iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/comments"))
        .collect();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].path, "/repos/Codertocat/Hello-World/issues/3/comments");
}

#[tokio::test]
async fn an_unknown_word_gets_the_usage_reply() {
    let (app, fake, repo, sender) = setup(4).await;
    app.deliver(
        "issue_comment",
        "o-2",
        &comment(4, "/orchestrate stauts", "OWNER"),
    )
    .await;
    sender.run_until_idle().await.unwrap();
    let body = &fake.comments(&repo, 4)[0].body;
    assert!(body.contains("stauts"), "{body}");
}

#[tokio::test]
async fn a_lost_answer_does_not_post_twice() {
    let (app, fake, repo, sender) = setup(2).await;
    app.deliver("issue_comment", "o-3", &comment(2, "/orchestrate help", "NONE"))
        .await;
    fake.lose_next_answer("POST", "/repos/*/*/issues/*/comments");
    sender.run_until_idle().await.unwrap();
    assert_eq!(fake.comments(&repo, 2).len(), 1);
    assert!(app.store.pending_outbox().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_crash_between_posting_and_marking_sent_does_not_post_twice() {
    let (app, fake, repo, sender) = setup(2).await;
    app.deliver("issue_comment", "o-4", &comment(2, "/orchestrate help", "NONE"))
        .await;
    sender.run_until_idle().await.unwrap();
    // As if the worker died after GitHub's 201 but before its UPDATE: the
    // row is pending again and already claimed once.
    sql(&app, "UPDATE outbox SET sent_at = NULL").await;
    assert_eq!(sender.run_until_idle().await.unwrap(), 1);
    let comments = fake.comments(&repo, 2);
    assert_eq!(comments.len(), 1);
    assert!(comments[0].body.contains(&marker(1)));
    assert_eq!(fake.count("POST", "/repos/*/*/issues/*/comments"), 1);
}

#[tokio::test]
async fn failures_are_retried_later_and_permanent_ones_abandoned() {
    let (app, fake, repo, sender) = setup(2).await;
    app.deliver("issue_comment", "o-5", &comment(2, "/orchestrate help", "NONE"))
        .await;
    fake.fail_next("POST", "/repos/*/*/issues/*/comments", 500, 3);
    sender.run_until_idle().await.unwrap();
    assert!(fake.comments(&repo, 2).is_empty());
    assert_eq!(
        app.store.pending_outbox().await.unwrap().len(),
        1,
        "kept for later"
    );
    sql(&app, "UPDATE outbox SET run_after = 0").await;
    sender.run_until_idle().await.unwrap();
    assert_eq!(fake.comments(&repo, 2).len(), 1);

    app.deliver("issue_comment", "o-6", &comment(77, "/orchestrate help", "NONE"))
        .await;
    sender.run_until_idle().await.unwrap();
    assert!(
        app.store.pending_outbox().await.unwrap().is_empty(),
        "404: abandoned"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox WHERE last_error LIKE 'abandoned:%'")
            .await,
        1
    );
}

#[tokio::test]
async fn cancel_and_retry_rows_are_left_to_the_job_runner() {
    let (app, fake, _repo, sender) = setup(2).await;
    app.deliver(
        "issue_comment",
        "o-7",
        &comment(2, "/orchestrate cancel", "OWNER"),
    )
    .await;
    assert_eq!(sender.run_until_idle().await.unwrap(), 0);
    assert_eq!(app.store.pending_outbox().await.unwrap()[0].0, "cancel");
    assert_eq!(fake.count("POST", "/repos/*/*/issues/*/comments"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_post_each_reply_once_on_every_backend() {
    for (backend, url) in crate::support::backends().await {
        let app = crate::support::app_on(&url, &[]).await;
        let fake = FakeGitHub::start().await;
        let repo = fake.add_repo(REPO);
        for n in 1..=8u64 {
            fake.add_issue(&repo, "An issue", "Text");
            let delivery = format!("{backend}-{n}");
            app.deliver(
                "issue_comment",
                &delivery,
                &comment(n, "/orchestrate help", "NONE"),
            )
            .await;
        }
        let runs = (0..3).map(|_| {
            let sender = OutboxSender::new(app.store.clone(), fake.client(), "orchestrate");
            tokio::spawn(async move { sender.run_until_idle().await.unwrap() })
        });
        let mut handled = 0;
        for run in runs.collect::<Vec<_>>() {
            handled += run.await.unwrap();
        }
        assert_eq!(handled, 8, "{backend}");
        for n in 1..=8u64 {
            assert_eq!(fake.comments(&repo, n).len(), 1, "{backend} issue {n}");
        }
        assert_eq!(
            app.count("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
                .await,
            0,
            "{backend}"
        );
    }
}
