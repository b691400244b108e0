//! Routing of App deliveries (payloads DERIVED from the captured fixtures:
//! an `installation` is added and the label or comment set, then re-signed).

use axum::http::StatusCode;
use serde_json::Value;

use crate::support::*;

async fn job_of(app: &TestApp, delivery: &str) -> Value {
    let outcome = app.outcome(delivery).await;
    let id = outcome.rsplit(' ').next().unwrap().to_string();
    let (status, job) = app.api_get(&format!("/jobs/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{outcome}: {job}");
    job
}

#[tokio::test]
async fn the_trigger_label_creates_a_queued_job_with_a_snapshot() {
    let app = TestApp::new().await;
    let (status, _) = app.deliver("issues", "l-1", &labeled(1)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(app.outcome("l-1").await.starts_with("job_created: "));
    let job = job_of(&app, "l-1").await;
    assert_eq!(job["status"], "queued");
    assert_eq!(job["repo"], "Codertocat/Hello-World");
    assert_eq!(job["issue_number"], 1);
    assert_eq!(job["trigger"], "label");
    assert_eq!(job["sender"], "Codertocat");
    assert_eq!(job["attempt"], 1);
    assert_eq!(job["steps"], serde_json::json!([]));
    assert!(job["created_at"].as_str().unwrap().ends_with('Z'));
    let title: String = {
        let pool = sqlx::any::AnyPoolOptions::new()
            .connect(&format!("sqlite://{}/orchestrator.db", app.dir.path().display()))
            .await
            .unwrap();
        sqlx::query_scalar("SELECT issue_title FROM jobs")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(title, "Spelling error in the README file");
}

#[tokio::test]
async fn the_label_is_configurable_and_compared_case_insensitively() {
    let app = TestApp::with_env(&[("ORCH_GITHUB__TRIGGER_LABEL", "AI-Fix")]).await;
    app.deliver("issues", "a", &labeled(1)).await;
    assert_eq!(app.outcome("a").await, "ignored: not the trigger label");
    let body = derived("webhooks/issues/labeled.1.json", |v| {
        v["label"]["name"] = "ai-fix".into()
    });
    app.deliver("issues", "b", &body).await;
    assert!(app.outcome("b").await.starts_with("job_created"));
}

#[tokio::test]
async fn other_labels_and_actions_do_nothing() {
    let app = TestApp::new().await;
    let bug = derived("webhooks/issues/labeled.1.json", |_| {});
    app.deliver("issues", "bug", &bug).await;
    assert_eq!(app.outcome("bug").await, "ignored: not the trigger label");
    let unlabeled = derived("webhooks/issues/unlabeled.1.json", |v| {
        v["label"]["name"] = "orchestrate".into()
    });
    app.deliver("issues", "un", &unlabeled).await;
    assert_eq!(app.outcome("un").await, "ignored: issues action not handled");
    let closed = derived("webhooks/issues/labeled.1.json", |v| {
        v["label"]["name"] = "orchestrate".into();
        v["issue"]["state"] = "closed".into(); // synthetic: no `closed` capture exists
    });
    app.deliver("issues", "closed", &closed).await;
    assert_eq!(app.outcome("closed").await, "ignored: issue is closed");
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 0);
}

#[tokio::test]
async fn bots_never_start_work() {
    let app = TestApp::new().await;
    let by_bot = derived("webhooks/issues/labeled.1.json", |v| {
        v["label"]["name"] = "orchestrate".into();
        v["sender"]["type"] = "Bot".into();
        v["sender"]["login"] = "some-ci[bot]".into();
    });
    app.deliver("issues", "bot-1", &by_bot).await;
    assert_eq!(app.outcome("bot-1").await, "ignored: sender is a bot");

    // Our own bot user is recognised by id, whatever its login or type says.
    app.state.identity.set_bot_user_id(21031067);
    let ours = derived("webhooks/issue_comment/created.1.json", |v| {
        v["comment"]["body"] = "/orchestrate".into();
        v["sender"]["id"] = 21031067.into();
        v["sender"]["login"] = "renamed-without-suffix".into();
        v["sender"]["type"] = "User".into();
    });
    app.deliver("issue_comment", "bot-2", &ours).await;
    assert_eq!(app.outcome("bot-2").await, "ignored: sender is a bot");
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox").await, 0);
}

#[tokio::test]
async fn a_comment_command_creates_a_job_with_instructions() {
    let app = TestApp::new().await;
    app.deliver(
        "issue_comment",
        "c-1",
        &comment(3, "/orchestrate please also update the docs", "OWNER"),
    )
    .await;
    let job = job_of(&app, "c-1").await;
    assert_eq!(job["trigger"], "comment");
    assert_eq!(job["status"], "queued");
    assert_eq!(job["instructions"], "please also update the docs");

    app.deliver(
        "issue_comment",
        "c-2",
        &comment(4, "/orchestrate", "COLLABORATOR"),
    )
    .await;
    let job = job_of(&app, "c-2").await;
    assert_eq!(job["instructions"], Value::Null);
}

#[tokio::test]
async fn quoted_fenced_and_mid_sentence_commands_are_not_commands() {
    let app = TestApp::new().await;
    for (i, body) in [
        "> /orchestrate",
        "```\n/orchestrate\n```",
        "`/orchestrate`",
        "please run /orchestrate",
        "thanks!\n/orchestrate",
    ]
    .iter()
    .enumerate()
    {
        let delivery = format!("q-{i}");
        app.deliver("issue_comment", &delivery, &comment(5, body, "OWNER"))
            .await;
        assert_eq!(app.outcome(&delivery).await, "ignored: no command", "{body:?}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 0);
}

#[tokio::test]
async fn outsiders_get_a_rejected_job_that_blocks_nothing() {
    let app = TestApp::new().await;
    app.deliver("issue_comment", "o-1", &comment(6, "/orchestrate", "CONTRIBUTOR"))
        .await;
    assert!(app.outcome("o-1").await.starts_with("job_rejected: "));
    let job = job_of(&app, "o-1").await;
    assert_eq!(job["status"], "rejected");
    assert!(job["status_reason"].as_str().unwrap().starts_with("permission: "));
    // A member can still start the job on the same issue.
    app.deliver("issue_comment", "o-2", &comment(6, "/orchestrate", "MEMBER"))
        .await;
    assert!(app.outcome("o-2").await.starts_with("job_created: "));
    // An outsider cannot cancel it.
    app.deliver("issue_comment", "o-3", &comment(6, "/orchestrate cancel", "NONE"))
        .await;
    assert_eq!(app.outcome("o-3").await, "reply: not_permitted");
}

#[tokio::test]
async fn one_active_job_per_issue() {
    let app = TestApp::new().await;
    app.deliver("issues", "a-1", &labeled(8)).await;
    app.deliver("issue_comment", "a-2", &comment(8, "/orchestrate", "OWNER"))
        .await;
    let first = app.outcome("a-1").await;
    let running = first.strip_prefix("job_created: ").unwrap();
    assert_eq!(app.outcome("a-2").await, format!("already_running: {running}"));
    let outbox = app.store.pending_outbox().await.unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].0, "already_running");
    let payload: Value = serde_json::from_str(&outbox[0].3).unwrap();
    assert_eq!(payload["job_id"], running);
    // Another issue is independent.
    app.deliver("issues", "a-3", &labeled(9)).await;
    assert!(app.outcome("a-3").await.starts_with("job_created"));
}

#[tokio::test]
async fn subcommands_go_to_the_outbox_and_help_is_rate_limited() {
    let app = TestApp::new().await;
    app.deliver("issue_comment", "s-1", &comment(10, "/orchestrate help", "NONE"))
        .await;
    assert_eq!(app.outcome("s-1").await, "reply: help");
    app.deliver(
        "issue_comment",
        "s-2",
        &comment(10, "/orchestrate status", "NONE"),
    )
    .await;
    assert_eq!(app.outcome("s-2").await, "ignored: status reply rate-limited");
    app.deliver(
        "issue_comment",
        "s-3",
        &comment(11, "/orchestrate cancle", "OWNER"),
    )
    .await;
    assert_eq!(app.outcome("s-3").await, "reply: usage");
    app.deliver(
        "issue_comment",
        "s-4",
        &comment(12, "/orchestrate retry", "OWNER"),
    )
    .await;
    assert_eq!(app.outcome("s-4").await, "control: retry");
    app.deliver(
        "issue_comment",
        "s-5",
        &comment(12, "/orchestrate CANCEL now", "OWNER"),
    )
    .await;
    assert_eq!(app.outcome("s-5").await, "control: cancel");
    let kinds: Vec<String> = app
        .store
        .pending_outbox()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(kinds, ["help", "usage", "retry", "cancel"]);
    let usage: Value = serde_json::from_str(&app.store.pending_outbox().await.unwrap()[1].3).unwrap();
    assert_eq!(usage["suggestion"], "cancel");
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 0);
}

#[tokio::test]
async fn a_command_on_a_pull_request_is_recorded_only() {
    let app = TestApp::new().await;
    let body = derived(
        "webhooks-supplementary/issue_comment/created.on-pull-request.1.json",
        |v| {
            v["comment"]["body"] = "/orchestrate fix the build".into();
            v["comment"]["author_association"] = "OWNER".into();
        },
    );
    let (status, _) = app.deliver("issue_comment", "pr-1", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(
        app.outcome("pr-1")
            .await
            .starts_with("ignored: command on a pull request")
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 0);
}

#[tokio::test]
async fn installations_are_tracked_and_suspended_ones_start_nothing() {
    let app = TestApp::new().await;
    // First seen in any event: active.
    app.deliver("issues", "i-0", &derived("webhooks/issues/opened.1.json", |_| {}))
        .await;
    assert_eq!(
        app.store
            .installation_status(INSTALLATION)
            .await
            .unwrap()
            .as_deref(),
        Some("active")
    );

    let suspend = derived("webhooks/installation/suspend.1.json", |v| {
        v["installation"]["id"] = INSTALLATION.into()
    });
    app.deliver("installation", "i-1", &suspend).await;
    assert_eq!(app.outcome("i-1").await, "installation: suspended");
    app.deliver("issues", "i-2", &labeled(20)).await;
    assert_eq!(app.outcome("i-2").await, "ignored: installation suspended");

    let unsuspend = derived("webhooks/installation/unsuspend.1.json", |v| {
        v["installation"]["id"] = INSTALLATION.into()
    });
    app.deliver("installation", "i-3", &unsuspend).await;
    app.deliver("issues", "i-4", &labeled(20)).await;
    assert!(app.outcome("i-4").await.starts_with("job_created"));

    let deleted = derived("webhooks/installation/deleted.1.json", |v| {
        v["installation"]["id"] = INSTALLATION.into()
    });
    app.deliver("installation", "i-5", &deleted).await;
    assert_eq!(
        app.store
            .installation_status(INSTALLATION)
            .await
            .unwrap()
            .as_deref(),
        Some("deleted")
    );
    app.deliver("issue_comment", "i-6", &comment(21, "/orchestrate help", "OWNER"))
        .await;
    assert_eq!(app.outcome("i-6").await, "ignored: installation deleted");
}

#[tokio::test]
async fn installation_repositories_keep_the_repository_list() {
    let app = TestApp::new().await;
    let added = fixture("webhooks/installation_repositories/added.1.json");
    app.deliver("installation_repositories", "r-1", &added).await;
    assert!(
        app.outcome("r-1")
            .await
            .starts_with("installation: repositories +")
    );
    let n = app.count("SELECT COUNT(*) FROM installation_repositories").await;
    let expected: Value = serde_json::from_slice(&added).unwrap();
    assert_eq!(n, expected["repositories_added"].as_array().unwrap().len() as i64);
    let removed = fixture("webhooks/installation_repositories/removed.1.json");
    app.deliver("installation_repositories", "r-2", &removed).await;
    let expected_removed: Value = serde_json::from_slice(&removed).unwrap();
    assert!(app.outcome("r-2").await.ends_with(&format!(
        "-{}",
        expected_removed["repositories_removed"].as_array().unwrap().len()
    )));
}

#[tokio::test]
async fn check_run_buttons_steer_the_job_they_name() {
    let app = TestApp::new().await;
    let body = derived("webhooks/check_run/requested_action.1.json", |v| {
        v["check_run"]["name"] = "orchestrator".into();
        v["check_run"]["external_id"] = "job-123".into();
        v["requested_action"]["identifier"] = "cancel".into();
    });
    app.deliver("check_run", "cr-1", &body).await;
    assert_eq!(app.outcome("cr-1").await, "control: cancel");
    let rerun = derived("webhooks/check_run/rerequested.1.json", |v| {
        v["check_run"]["name"] = "orchestrator".into();
        v["check_run"]["external_id"] = "job-123".into();
    });
    app.deliver("check_run", "cr-2", &rerun).await;
    assert_eq!(app.outcome("cr-2").await, "control: retry");
    let other = derived("webhooks/check_run/rerequested.1.json", |_| {});
    app.deliver("check_run", "cr-3", &other).await;
    assert_eq!(
        app.outcome("cr-3").await,
        "ignored: not the orchestrator check run"
    );
}
