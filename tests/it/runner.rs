//! The worker pool: exactly-once execution, cancellation, lease expiry,
//! shutdown, panics — with a test handler standing in for the pipeline.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orchestrator::jobs::now_millis;
use orchestrator::runner::{BoxFuture, JobContext, JobEnd, JobHandler, PoolSettings, WorkerPool};
use orchestrator::store::ClaimedJob;
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// What the test handler does with a job.
#[derive(Clone, Copy)]
enum Behaviour {
    Succeed,
    /// Waits for cancellation (or shutdown), then reports it.
    WaitForCancel,
    Panic,
}

struct TestHandler {
    behaviour: Behaviour,
    runs: Mutex<Vec<(String, i64)>>,
}

impl TestHandler {
    fn new(behaviour: Behaviour) -> Arc<TestHandler> {
        Arc::new(TestHandler {
            behaviour,
            runs: Mutex::new(Vec::new()),
        })
    }
    fn runs(&self) -> Vec<(String, i64)> {
        self.runs.lock().unwrap().clone()
    }
}

impl JobHandler for TestHandler {
    fn run(&self, job: ClaimedJob, ctx: JobContext) -> BoxFuture<'_, JobEnd> {
        self.runs.lock().unwrap().push((job.id.clone(), job.attempt));
        let behaviour = self.behaviour;
        Box::pin(async move {
            match behaviour {
                Behaviour::Succeed => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    JobEnd::Succeeded
                }
                Behaviour::WaitForCancel => tokio::select! {
                    _ = ctx.cancel.cancelled() => JobEnd::Cancelled { reason: "cancelled_by_user: stopped".into() },
                    _ = ctx.shutdown.cancelled() => JobEnd::Released,
                },
                Behaviour::Panic => panic!("handler bug"),
            }
        })
    }
}

fn settings(workers: u32, lease_ms: u64) -> PoolSettings {
    PoolSettings::new(workers, Duration::from_millis(lease_ms))
}

async fn status_of(app: &TestApp, id: &str) -> (String, Option<String>) {
    let (_, job) = app.api_get(&format!("/jobs/{id}")).await;
    (
        job["status"].as_str().unwrap_or_default().to_string(),
        job["status_reason"].as_str().map(str::to_string),
    )
}

async fn job_ids(app: &TestApp) -> Vec<String> {
    let (_, page) = app.api_get("/jobs").await;
    page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pool_runs_every_job_exactly_once() {
    for (backend, url) in backends().await {
        let app = app_on(&url, &[]).await;
        for n in 1..=12 {
            app.deliver("issues", &format!("r-{n}"), &labeled(n)).await;
        }
        let handler = TestHandler::new(Behaviour::Succeed);
        let pool = WorkerPool::new(app.store.clone(), handler.clone(), settings(3, 30_000));
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(pool.run(shutdown.clone()));
        let deadline = Instant::now() + Duration::from_secs(20);
        while handler.runs().len() < 12 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        shutdown.cancel();
        running.await.unwrap();
        let mut ids: Vec<_> = handler.runs().into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids.len(), 12, "{backend}");
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 12, "{backend}: no job ran twice");
        for id in job_ids(&app).await {
            assert_eq!(status_of(&app, &id).await.0, "succeeded", "{backend}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_stops_a_running_job_within_two_seconds() {
    let app = TestApp::new().await;
    app.deliver("issues", "c-1", &labeled(1)).await;
    let id = job_ids(&app).await.remove(0);
    let handler = TestHandler::new(Behaviour::WaitForCancel);
    let pool = WorkerPool::new(app.store.clone(), handler.clone(), settings(1, 30_000));
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(pool.run(shutdown.clone()));
    while handler.runs().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let asked = Instant::now();
    assert!(app.store.request_cancel(&id, now_millis()).await.unwrap());
    while status_of(&app, &id).await.0 != "cancelled" {
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "not cancelled within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        status_of(&app, &id).await.1.as_deref(),
        Some("cancelled_by_user: stopped")
    );
    shutdown.cancel();
    running.await.unwrap();
}

#[tokio::test]
async fn a_job_whose_worker_died_is_claimed_again_after_its_lease() {
    let app = TestApp::new().await;
    app.deliver("issues", "d-1", &labeled(1)).await;
    // A worker claimed it and died: its lease ran out a moment ago.
    let now = now_millis();
    let dead = app
        .store
        .claim_job("dead-worker", now + 50, now)
        .await
        .unwrap()
        .unwrap();
    let handler = TestHandler::new(Behaviour::Succeed);
    let pool = WorkerPool::new(app.store.clone(), handler.clone(), settings(1, 30_000));
    assert_eq!(pool.run_until_idle().await.unwrap(), 0, "the lease is still live");
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(pool.run_until_idle().await.unwrap(), 1);
    assert_eq!(handler.runs(), vec![(dead.id.clone(), 1)]);
    assert_eq!(status_of(&app, &dead.id).await.0, "succeeded");
    // The dead worker cannot record anything any more.
    assert!(
        !app.store
            .renew_lease(&dead.id, "dead-worker", now + 99_999)
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_running_jobs_for_another_worker() {
    let app = TestApp::new().await;
    app.deliver("issues", "s-1", &labeled(1)).await;
    let id = job_ids(&app).await.remove(0);
    let handler = TestHandler::new(Behaviour::WaitForCancel);
    let pool = WorkerPool::new(app.store.clone(), handler.clone(), settings(1, 30_000));
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(pool.run(shutdown.clone()));
    while handler.runs().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status_of(&app, &id).await.0, "queued", "given back, not ended");
    // Claimable at once, without waiting for the 30 s lease.
    let next = TestHandler::new(Behaviour::Succeed);
    let other = WorkerPool::new(app.store.clone(), next.clone(), settings(1, 30_000));
    assert_eq!(other.run_until_idle().await.unwrap(), 1);
    assert_eq!(status_of(&app, &id).await.0, "succeeded");
}

#[tokio::test]
async fn a_panicking_handler_fails_its_job_not_the_pool() {
    let app = TestApp::new().await;
    app.deliver("issues", "p-1", &labeled(1)).await;
    app.deliver("issues", "p-2", &labeled(2)).await;
    let handler = TestHandler::new(Behaviour::Panic);
    let pool = WorkerPool::new(app.store.clone(), handler.clone(), settings(1, 30_000));
    assert_eq!(
        pool.run_until_idle().await.unwrap(),
        2,
        "the pool went on after the first panic"
    );
    for id in job_ids(&app).await {
        let (status, reason) = status_of(&app, &id).await;
        assert_eq!(status, "failed");
        assert!(reason.unwrap().starts_with("internal: "));
    }
}
