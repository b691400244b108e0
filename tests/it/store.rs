//! The same intake and store behaviour on every backend: SQLite always,
//! PostgreSQL when `TEST_DATABASE_URL` is set (CI sets it).

use axum::http::StatusCode;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_once_intake_on_every_backend() {
    for (backend, url) in backends().await {
        let app = app_on(&url, &[]).await;
        // Migrating again is a no-op (replicas start at the same time).
        app.store.migrate().await.unwrap();

        let body = labeled(1);
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let router = app.router.clone();
            let request = signed_request("issues", "same", &body);
            tasks.push(tokio::spawn(async move {
                tower::ServiceExt::oneshot(router, request)
                    .await
                    .unwrap()
                    .status()
            }));
        }
        let mut accepted = 0;
        for task in tasks {
            if task.await.unwrap() == StatusCode::ACCEPTED {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 1, "{backend}");
        assert_eq!(app.store.count_deliveries().await.unwrap(), 1, "{backend}");
        assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 1, "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_active_job_per_issue_under_concurrency_on_every_backend() {
    for (backend, url) in backends().await {
        let app = app_on(&url, &[]).await;
        let body = labeled(2);
        let mut tasks = Vec::new();
        for i in 0..20 {
            let router = app.router.clone();
            let request = signed_request("issues", &format!("d-{i}"), &body);
            tasks.push(tokio::spawn(async move {
                tower::ServiceExt::oneshot(router, request)
                    .await
                    .unwrap()
                    .status()
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), StatusCode::ACCEPTED, "{backend}");
        }
        assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 1, "{backend}");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM outbox WHERE kind = 'already_running'")
                .await,
            19,
            "{backend}"
        );
    }
}

#[tokio::test]
async fn routing_installations_and_api_on_every_backend() {
    for (backend, url) in backends().await {
        let app = app_on(&url, &[]).await;
        app.deliver(
            "issue_comment",
            "c",
            &comment(3, "/orchestrate add tests", "OWNER"),
        )
        .await;
        app.deliver("issue_comment", "r", &comment(4, "/orchestrate", "NONE"))
            .await;
        app.deliver("issue_comment", "h", &comment(5, "/orchestrate help", "NONE"))
            .await;
        let suspend = derived("webhooks/installation/suspend.1.json", |v| {
            v["installation"]["id"] = (INSTALLATION + 1).into();
        });
        app.deliver("installation", "s", &suspend).await;
        assert_eq!(
            app.store
                .installation_status(INSTALLATION + 1)
                .await
                .unwrap()
                .as_deref(),
            Some("suspended"),
            "{backend}"
        );
        let (status, page) = app.api_get("/jobs?limit=1").await;
        assert_eq!(status, StatusCode::OK, "{backend}");
        assert_eq!(page["jobs"][0]["status"], "rejected", "{backend}");
        let cursor = page["next_cursor"].as_str().unwrap().to_string();
        let (_, next) = app.api_get(&format!("/jobs?limit=1&cursor={cursor}")).await;
        assert_eq!(next["jobs"][0]["instructions"], "add tests", "{backend}");
        assert_eq!(next["next_cursor"], serde_json::Value::Null, "{backend}");
        assert_eq!(app.store.pending_outbox().await.unwrap().len(), 1, "{backend}");
        // Payload retention keeps the metadata.
        let pruned = app.store.prune_payloads(i64::MAX).await.unwrap();
        assert_eq!(pruned, 4, "{backend}");
        assert_eq!(app.store.count_deliveries().await.unwrap(), 4, "{backend}");
        assert!(app.outcome("c").await.starts_with("job_created"), "{backend}");
    }
}

mod queue {
    use orchestrator::jobs::{JobStatus, now_millis};
    use orchestrator::store::RetryOutcome;

    use crate::support::*;

    async fn queue_jobs(app: &TestApp, issues: std::ops::Range<u64>) {
        for n in issues {
            app.deliver("issues", &format!("q-{n}"), &labeled(n)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_workers_claim_each_job_exactly_once() {
        for (backend, url) in backends().await {
            let app = app_on(&url, &[]).await;
            queue_jobs(&app, 1..31).await;
            let mut workers = Vec::new();
            for w in 0..6 {
                let store = app.store.clone();
                workers.push(tokio::spawn(async move {
                    let mut mine = Vec::new();
                    let now = now_millis();
                    while let Some(job) = store
                        .claim_job(&format!("w{w}"), now + 60_000, now)
                        .await
                        .unwrap()
                    {
                        mine.push(job.id);
                    }
                    mine
                }));
            }
            let mut all = Vec::new();
            for worker in workers {
                all.extend(worker.await.unwrap());
            }
            let total = all.len();
            all.sort();
            all.dedup();
            assert_eq!(total, 30, "{backend}: every job claimed");
            assert_eq!(all.len(), 30, "{backend}: no job claimed twice");
            assert_eq!(app.store.queue_depth(now_millis()).await.unwrap(), 0, "{backend}");
        }
    }

    #[tokio::test]
    async fn an_expired_lease_is_claimed_again_and_the_old_holder_loses_it() {
        for (backend, url) in backends().await {
            let app = app_on(&url, &[]).await;
            queue_jobs(&app, 1..2).await;
            let t0 = now_millis();
            let first = app.store.claim_job("a", t0 + 1_000, t0).await.unwrap().unwrap();
            assert_eq!(first.status, "queued", "{backend}");
            assert!(
                app.store
                    .claim_job("b", t0 + 1_500, t0 + 500)
                    .await
                    .unwrap()
                    .is_none(),
                "{backend}: leased"
            );
            assert!(
                app.store.renew_lease(&first.id, "a", t0 + 1_200).await.unwrap(),
                "{backend}"
            );
            let again = app
                .store
                .claim_job("b", t0 + 9_000, t0 + 2_000)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(again.id, first.id, "{backend}: claimed after expiry");
            assert!(
                !app.store.renew_lease(&first.id, "a", t0 + 3_000).await.unwrap(),
                "{backend}: lost"
            );
            assert!(
                !app.store
                    .set_job_status(&first.id, "a", JobStatus::Running, None, t0)
                    .await
                    .unwrap(),
                "{backend}: only the holder changes state"
            );
            // A graceful release makes it claimable at once.
            assert!(
                app.store.release_lease(&first.id, "b").await.unwrap(),
                "{backend}"
            );
            assert!(
                app.store
                    .claim_job("c", t0 + 9_000, t0 + 2_001)
                    .await
                    .unwrap()
                    .is_some(),
                "{backend}"
            );
        }
    }

    #[tokio::test]
    async fn ended_jobs_are_never_claimed_and_can_be_retried() {
        for (backend, url) in backends().await {
            let app = app_on(&url, &[]).await;
            queue_jobs(&app, 7..8).await;
            let now = now_millis();
            let job = app
                .store
                .claim_job("w", now + 60_000, now)
                .await
                .unwrap()
                .unwrap();
            let store = &app.store;
            assert!(
                store
                    .set_job_status(&job.id, "w", JobStatus::Planning, None, now)
                    .await
                    .unwrap()
            );
            assert!(store.request_cancel(&job.id, now).await.unwrap(), "{backend}");
            assert!(store.cancel_requested(&job.id).await.unwrap(), "{backend}");
            let reason = "budget_usd: the job's budget of $5.00 is spent";
            assert!(
                store
                    .set_job_status(&job.id, "w", JobStatus::Failed, Some(reason), now)
                    .await
                    .unwrap()
            );
            assert!(
                store
                    .claim_job("x", now + 60_000, now + 1)
                    .await
                    .unwrap()
                    .is_none(),
                "{backend}"
            );
            assert!(
                !store.request_cancel(&job.id, now).await.unwrap(),
                "{backend}: ended"
            );
            let (_, view) = app.api_get(&format!("/jobs/{}", job.id)).await;
            assert_eq!(view["status"], "failed", "{backend}");
            assert_eq!(view["status_reason"], reason, "{backend}");

            assert_eq!(
                store.retry_job(&job.id, now + 2).await.unwrap(),
                RetryOutcome::Queued { attempt: 2 }
            );
            assert!(
                !store.cancel_requested(&job.id).await.unwrap(),
                "{backend}: a retry starts afresh"
            );
            assert_eq!(
                store.retry_job(&job.id, now + 3).await.unwrap(),
                RetryOutcome::NotRetryable
            );
            let again = store
                .claim_job("y", now + 60_000, now + 4)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                (again.id.as_str(), again.attempt),
                (job.id.as_str(), 2),
                "{backend}"
            );

            // While the retried job is active, a new trigger links to it; once it
            // has failed again and another job took the issue, retry reports it.
            assert!(
                store
                    .set_job_status(&job.id, "y", JobStatus::Failed, None, now + 5)
                    .await
                    .unwrap()
            );
            app.deliver("issues", "other", &labeled(7)).await;
            assert!(app.outcome("other").await.starts_with("job_created"), "{backend}");
            assert_eq!(
                store.retry_job(&job.id, now + 6).await.unwrap(),
                RetryOutcome::IssueBusy,
                "{backend}"
            );
            let n_events = app.count("SELECT COUNT(*) FROM job_events").await;
            assert!(n_events >= 6, "{backend}: every change is recorded ({n_events})");
        }
    }
}

mod spending {
    use orchestrator::jobs::now_millis;
    use orchestrator::store::JobUsage;

    use crate::support::*;

    #[tokio::test]
    async fn an_installations_spending_today_sums_its_other_jobs() {
        for (backend, url) in backends().await {
            let app = app_on(&url, &[]).await;
            for n in 1..=3 {
                app.deliver("issues", &format!("s-{n}"), &labeled(n)).await;
            }
            let now = now_millis();
            let mut ids = Vec::new();
            while let Some(job) = app.store.claim_job("w", now + 60_000, now).await.unwrap() {
                ids.push(job.id);
            }
            assert_eq!(ids.len(), 3, "{backend}");
            for (i, id) in ids.iter().enumerate() {
                let usage = JobUsage {
                    usd: 0.5 * (i + 1) as f64,
                    ..JobUsage::default()
                };
                app.store.save_usage(id, &usage, now).await.unwrap();
            }
            let spent = app
                .store
                .installation_spent_since(INSTALLATION, &ids[0], now - 1_000)
                .await
                .unwrap();
            assert!(
                (spent - 2.5).abs() < 1e-9,
                "{backend}: the others' 1.0 + 1.5, got {spent}"
            );
            let later = app
                .store
                .installation_spent_since(INSTALLATION, &ids[0], now + 1_000)
                .await
                .unwrap();
            assert_eq!(later, 0.0, "{backend}: jobs started before the day do not count");
            let other = app
                .store
                .installation_spent_since(INSTALLATION + 1, "x", 0)
                .await
                .unwrap();
            assert_eq!(other, 0.0, "{backend}");
        }
    }
}
