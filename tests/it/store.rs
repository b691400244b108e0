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
