//! The reconciler's settling pass: a job that ended without concluding its
//! GitHub progress (a panicking handler, a dead worker, a cancel while no
//! worker held it) gets its check run concluded and its comment written in
//! the final state — once, by one replica, retried after GitHub errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use orchestrator::jobs::{JobStatus, now_millis};
use orchestrator::llm::{BoxFuture, ChatRequest, ChatResponse, LanguageModel, LlmError};
use orchestrator::pipeline::github_job::GitHubJobs;
use orchestrator::runner::{PoolSettings, WorkerPool};
use orchestrator::settle::{CANCELLED_WHILE_WAITING, SettlePass, Settler};
use tokio_util::sync::CancellationToken;

use crate::pipeline::{PLAN, STEP_1, STEP_2, World, only_job, script_happy, wait_for, world};
use crate::support::*;

/// A model with a bug: call number `panic_at` (1-based) panics; the others
/// go to the real client.
struct PanicsOnCall {
    inner: Arc<dyn LanguageModel>,
    panic_at: usize,
    calls: AtomicUsize,
}

impl LanguageModel for PanicsOnCall {
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        assert_ne!(call, self.panic_at, "a bug in the pipeline");
        self.inner.chat(request, cancel)
    }
}

/// The world's pool, with a model that panics at call `panic_at`.
fn panicking_pool(w: &World, panic_at: usize) -> WorkerPool {
    let h = &w.handler;
    let handler = GitHubJobs {
        store: h.store.clone(),
        config: h.config.clone(),
        github: h.github.clone(),
        model: Arc::new(PanicsOnCall {
            inner: h.model.clone(),
            panic_at,
            calls: AtomicUsize::new(0),
        }),
        pricing: h.pricing.clone(),
        policy: h.policy.clone(),
        workspaces: h.workspaces.clone(),
        identity: h.identity.clone(),
    };
    WorkerPool::new(
        w.app.store.clone(),
        Arc::new(handler),
        PoolSettings::new(1, Duration::from_secs(30)),
    )
}

fn settler(w: &World) -> Settler {
    Settler::new(w.app.store.clone(), Some(w.github.client())).with_first_backoff(Duration::from_millis(1))
}

fn progress_comment(w: &World) -> String {
    let comments = w.github.comments(&w.repo, 1);
    assert_eq!(comments.len(), 1, "one progress comment: {comments:?}");
    comments[0].body.clone()
}

/// Runs passes until one settles something; at most `ticks`.
async fn settle_within(settler: &Settler, ticks: usize) -> SettlePass {
    let mut total = SettlePass::default();
    for _ in 0..ticks {
        let pass = settler.run_once().await.unwrap();
        total.cancelled += pass.cancelled;
        total.settled += pass.settled;
        total.deferred += pass.deferred;
        total.abandoned += pass.abandoned;
        if pass.settled > 0 {
            return total;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("nothing settled within {ticks} ticks: {total:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_mid_job_has_its_check_run_and_comment_settled_failed() {
    let w = world().await;
    script_happy(&w.llm);
    w.app.deliver("issues", "panic-1", &labeled(1)).await;
    // The plan and step 1 go through; step 1 is pushed; step 2's call panics.
    assert_eq!(panicking_pool(&w, 3).run_until_idle().await.unwrap(), 1);
    let job = only_job(&w.app).await;
    assert_eq!(job["status"], "failed", "{job}");
    let reason = job["status_reason"].as_str().unwrap().to_string();
    assert!(reason.starts_with("internal: "), "{reason}");
    let runs = w.github.check_runs();
    assert_eq!(runs.len(), 1, "step 1 was pushed: {runs:?}");
    assert_eq!(
        runs[0].current["status"], "in_progress",
        "left spinning by the panic"
    );
    assert!(
        progress_comment(&w).contains("Running"),
        "{}",
        progress_comment(&w)
    );

    // Two replicas' reconcilers at once; the first pass also meets a 502 storm.
    w.github.fail_next("PATCH", "/repos/*/*/check-runs/*", 502, 5);
    let (a, b) = (settler(&w), settler(&w));
    let (first, second) = tokio::join!(a.run_once(), b.run_once());
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.deferred + second.deferred, 1, "{first:?} {second:?}");
    assert_eq!(first.settled + second.settled, 0, "{first:?} {second:?}");
    assert!(
        w.app
            .store
            .progress_open(job["id"].as_str().unwrap())
            .await
            .unwrap(),
        "still owed after the failure"
    );
    let pass = settle_within(&a, 5).await;
    assert_eq!(pass.settled, 1, "{pass:?}");

    let run = &w.github.check_runs()[0].current;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["conclusion"], "failure", "{run}");
    let summary = run["output"]["summary"].as_str().unwrap();
    assert!(summary.contains(&reason), "{summary}");
    let actions: Vec<_> = run["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["identifier"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions, ["retry"], "Retry offered after a failure");
    let body = progress_comment(&w);
    assert!(body.contains("Failed") && body.contains(&reason), "{body}");
    assert!(body.contains("1. Add the guide — succeeded"), "{body}");
    assert!(body.contains("2. Add the changelog — failed"), "{body}");
    assert!(
        !body.contains("— running") && !body.contains('⏳'),
        "no step or job shown running: {body}"
    );

    // Settled jobs are left alone: no GitHub call at all.
    w.github.clear_calls();
    assert_eq!(a.run_once().await.unwrap(), SettlePass::default());
    assert_eq!(b.run_once().await.unwrap(), SettlePass::default());
    assert!(w.github.calls().is_empty(), "{:?}", w.github.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_while_no_worker_holds_it_is_ended_and_settled() {
    let w = world().await;
    w.llm.push_answer(PLAN, 1000, 500);
    w.llm.push_answer(STEP_1, 1000, 500);
    w.llm.push_delay(Duration::from_secs(8));
    w.llm.push_answer(STEP_2, 1000, 500);
    w.app.deliver("issues", "waiting-1", &labeled(1)).await;

    // The worker dies during step 2: its handler is dropped, nothing concluded.
    let mut settings = PoolSettings::new(1, Duration::from_secs(30));
    settings.grace = Duration::from_millis(100);
    let doomed = WorkerPool::new(w.app.store.clone(), w.handler.clone(), settings);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(doomed.run(shutdown.clone()));
    let llm = &w.llm;
    wait_for(Duration::from_secs(10), "step 2's request", async || {
        llm.requests().len() == 3
    })
    .await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .unwrap()
        .unwrap();
    let id = only_job(&w.app).await["id"].as_str().unwrap().to_string();
    let now = now_millis();
    let held = w
        .app
        .store
        .claim_job("dead-worker", now + 400, now)
        .await
        .unwrap();
    assert_eq!(held.map(|j| j.id), Some(id.clone()));

    let request = axum::http::Request::post(format!("/jobs/{id}/cancel"))
        .header("authorization", format!("Bearer {API_TOKEN}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let (status, _) = w.app.send(request).await;
    assert_eq!(status.as_u16(), 202);

    let settler = settler(&w);
    assert_eq!(
        settler.run_once().await.unwrap(),
        SettlePass::default(),
        "the dead worker's lease is still live"
    );
    assert_eq!(only_job(&w.app).await["status"], "queued");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pass = settle_within(&settler, 3).await;
    assert_eq!((pass.cancelled, pass.settled), (1, 1), "{pass:?}");

    let job = only_job(&w.app).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    assert_eq!(job["status_reason"], CANCELLED_WHILE_WAITING);
    let runs = w.github.check_runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        runs[0].current["conclusion"], "cancelled",
        "{:?}",
        runs[0].current
    );
    assert_eq!(
        runs[0].current["actions"],
        serde_json::json!([]),
        "no Cancel button left"
    );
    let body = progress_comment(&w);
    assert!(
        body.contains("Cancelled") && body.contains("cancelled while no worker was running it"),
        "{body}"
    );
    assert!(!body.contains("— running") && !body.contains('⏳'), "{body}");
    assert_eq!(w.llm.requests().len(), 3, "nothing more was asked");
    assert!(w.github.pulls(&w.repo).is_empty());
    // And nothing runs it afterwards.
    assert_eq!(w.pool.run_until_idle().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_ends_a_job_cancelled_before_it_ran_without_running_it() {
    let w = world().await;
    script_happy(&w.llm);
    w.app.deliver("issues", "early-1", &labeled(1)).await;
    let id = only_job(&w.app).await["id"].as_str().unwrap().to_string();
    assert!(w.app.store.request_cancel(&id, now_millis()).await.unwrap());
    assert_eq!(w.pool.run_until_idle().await.unwrap(), 1);
    let job = only_job(&w.app).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    assert_eq!(job["status_reason"], CANCELLED_WHILE_WAITING);
    assert!(w.llm.requests().is_empty(), "no work was done");
    assert!(w.github.calls().is_empty(), "nothing was shown on GitHub");
    assert_eq!(settler(&w).run_once().await.unwrap(), SettlePass::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_concluded_itself_is_never_touched_by_the_reconciler() {
    let w = world().await;
    script_happy(&w.llm);
    w.app.deliver("issues", "done-1", &labeled(1)).await;
    assert_eq!(w.pool.run_until_idle().await.unwrap(), 1);
    let job = only_job(&w.app).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(
        !w.app
            .store
            .progress_open(job["id"].as_str().unwrap())
            .await
            .unwrap()
    );
    w.github.clear_calls();
    assert_eq!(settler(&w).run_once().await.unwrap(), SettlePass::default());
    assert!(w.github.calls().is_empty(), "{:?}", w.github.calls());
}

#[tokio::test]
async fn one_replica_at_a_time_claims_an_unsettled_job_on_both_backends() {
    for (backend, url) in backends().await {
        let app = app_on(&url, &[]).await;
        app.deliver("issues", "claim-1", &labeled(1)).await;
        app.deliver("issues", "claim-2", &labeled(2)).await;
        let now = now_millis();
        let first = app
            .store
            .claim_job("w", now + 60_000, now)
            .await
            .unwrap()
            .unwrap();
        app.store.open_progress(&first.id).await.unwrap();
        app.store.set_progress_comment(&first.id, 77).await.unwrap();
        assert!(
            app.store
                .set_job_status(&first.id, "w", JobStatus::Failed, Some("internal: x"), now)
                .await
                .unwrap()
        );

        let (a, b) = tokio::join!(
            app.store.claim_unsettled_job("replica-a", now, 60_000),
            app.store.claim_unsettled_job("replica-b", now, 60_000)
        );
        let claims: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
        assert_eq!(claims.len(), 1, "{backend}: exactly one replica holds it");
        assert_eq!(claims[0].id, first.id, "{backend}");
        assert_eq!(claims[0].progress_comment_id, Some(77), "{backend}");
        assert!(
            !app.store
                .progress_settled(&first.id, "someone-else")
                .await
                .unwrap(),
            "{backend}"
        );
        let winner = if app.store.progress_settled(&first.id, "replica-a").await.unwrap() {
            "replica-a"
        } else {
            assert!(app.store.progress_settled(&first.id, "replica-b").await.unwrap());
            "replica-b"
        };
        assert!(
            !app.store.progress_open(&first.id).await.unwrap(),
            "{backend} {winner}"
        );
        let later = now + 120_000;
        assert!(
            app.store
                .claim_unsettled_job("replica-a", later, 60_000)
                .await
                .unwrap()
                .is_none(),
            "{backend}: settled once"
        );

        // The second job: cancelled while nobody held it, with a comment saved.
        let (_, page) = app.api_get("/jobs?status=queued").await;
        let second = page["jobs"][0]["id"].as_str().unwrap().to_string();
        app.store.set_progress_comment(&second, 78).await.unwrap();
        assert!(app.store.request_cancel(&second, now).await.unwrap());
        let waiting = app.store.cancelled_waiting_jobs(now, 10).await.unwrap();
        assert_eq!(waiting, std::slice::from_ref(&second), "{backend}");
        let reason = "cancelled_by_user: test";
        assert!(
            app.store
                .cancel_waiting_job(&second, None, reason, now)
                .await
                .unwrap()
        );
        assert!(
            !app.store
                .cancel_waiting_job(&second, None, reason, now)
                .await
                .unwrap(),
            "{backend}: ended once"
        );
        assert!(
            app.store.progress_open(&second).await.unwrap(),
            "{backend}: now owed"
        );
        let claim = app
            .store
            .claim_unsettled_job("replica-a", later, 60_000)
            .await
            .unwrap();
        assert_eq!(
            claim.map(|j| (j.id, j.status)),
            Some((second, "cancelled".into())),
            "{backend}"
        );
    }
}
