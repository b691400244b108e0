//! A job's memory and context over the API, and the archivist, on every
//! backend (SQLite always, PostgreSQL with `TEST_DATABASE_URL`).

use std::collections::HashSet;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use orchestrator::jobs::{Trigger, now_millis};
use orchestrator::memory::{KEEP_NEWEST, Memory, NoteInput};
use orchestrator::store::{NewTask, StepContextMetrics};
use serde_json::{Value, json};

use crate::support::*;

fn post(path: &str, body: &Value) -> Request<Body> {
    Request::post(path)
        .header("authorization", format!("Bearer {API_TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn new_job(app: &TestApp) -> String {
    let task = NewTask {
        trigger: Trigger::Api,
        repo: None,
        local_path: Some(app.dir.path().display().to_string()),
        task: "Remember things".into(),
        requester: "api".into(),
        budget_usd: 1.0,
        budget_requests: 10,
        budget_minutes: 10,
        dry_run: false,
    };
    app.store.create_task_job(&task, now_millis()).await.unwrap()
}

fn note(title: &str, body: &str) -> Value {
    json!({"type": "Decision", "title": title, "body": body, "tags": ["t"], "stepId": "step-1"})
}

fn input(title: &str, body: &str) -> NoteInput {
    NoteInput {
        kind: "Todo".into(),
        title: title.into(),
        body: body.into(),
        tags: Vec::new(),
        step_id: None,
    }
}

fn memory_of(app: &TestApp) -> Memory {
    Memory::new(app.store.clone(), &app.state.config)
}

/// Adds the notes `note {i}` (body `b`) for each `i` of `range`, in order.
async fn add_notes(memory: &Memory, job: &str, range: std::ops::Range<usize>) {
    for i in range {
        memory
            .add_note(job, &input(&format!("note {i}"), "b"), None)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn notes_are_validated_and_limited_on_every_backend() {
    let limits = [
        ("ORCH_MEMORY__MAX_ITEMS", "5"),
        ("ORCH_MEMORY__MAX_ITEM_BYTES", "100"),
    ];
    for (backend, url) in backends().await {
        let app = app_on(&url, &limits).await;
        let job = new_job(&app).await;
        let notes = format!("/memory/{job}/notes");

        let (status, json) = app
            .send(post(&notes, &note("Use sqlx", "One store for both.")))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{backend}: {json}");
        assert_eq!(json["note"]["type"], "Decision");
        assert_eq!(json["note"]["stepId"], "step-1");
        assert_eq!(json["note"]["tags"], json!(["t"]));
        assert_eq!(
            json["note"]["bytes"],
            ("Use sqlx".len() + "One store for both.".len() + 1)
        );

        let broken = [
            (json!({"type": "Opinion", "title": "x", "body": "y"}), "type"),
            (json!({"type": "Todo", "title": " ", "body": "y"}), "title"),
            (json!({"type": "Todo", "title": "x", "body": ""}), "body"),
            (
                json!({"type": "Todo", "title": "x", "body": "y", "tags": ["a b"]}),
                "tags",
            ),
            (
                json!({"type": "Todo", "title": "x", "body": "y", "stepId": ""}),
                "stepId",
            ),
        ];
        for (body, field) in broken {
            let (status, json) = app.send(post(&notes, &body)).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{backend}: {body}");
            assert_eq!(json["error"]["code"], "invalid_field");
            let message = json["error"]["message"].as_str().unwrap();
            assert!(message.starts_with(&format!("invalid {field}: ")), "{message}");
        }
        for body in [
            json!({"type": "Todo", "title": "x"}),
            json!({"type": "Todo", "title": "x", "body": "y", "colour": "red"}),
            json!({"type": "Todo", "title": "x", "body": "y", "tags": "one"}),
        ] {
            let (status, json) = app.send(post(&notes, &body)).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{backend}: {body}");
            assert_eq!(json["error"]["code"], "invalid_body");
        }

        let (status, json) = app.send(post(&notes, &note("big", &"x".repeat(100)))).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{backend}: {json}");
        assert_eq!(json["error"]["code"], "item_too_large");

        for i in 2..=5 {
            let (status, _) = app.send(post(&notes, &note(&format!("n{i}"), "body"))).await;
            assert_eq!(status, StatusCode::CREATED, "{backend}");
        }
        let (status, json) = app.send(post(&notes, &note("n6", "body"))).await;
        assert_eq!(status, StatusCode::CONFLICT, "{backend}: {json}");
        assert_eq!(json["error"]["code"], "memory_full");
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("max_items = 5")
        );

        let (status, listed) = app.api_get(&notes).await;
        assert_eq!(status, StatusCode::OK);
        let titles: Vec<&str> = listed["notes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["title"].as_str().unwrap())
            .collect();
        assert_eq!(
            titles,
            ["Use sqlx", "n2", "n3", "n4", "n5"],
            "{backend}: oldest first"
        );
        assert_eq!(listed["items"], 5);
        assert_eq!(listed["limits"]["max_items"], 5);

        let (status, json) = app.send(post("/memory/no-such-job/notes", &note("x", "y"))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{backend}: {json}");
        assert_eq!(json["error"]["code"], "not_found");
        let (status, _) = app.api_get("/memory/no-such-job/notes").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn the_byte_budget_refuses_a_note_that_would_pass_it() {
    for (backend, url) in backends().await {
        let app = app_on(
            &url,
            &[
                ("ORCH_MEMORY__MAX_ITEM_BYTES", "100"),
                ("ORCH_MEMORY__MAX_TOTAL_BYTES", "250"),
            ],
        )
        .await;
        let job = new_job(&app).await;
        let notes = format!("/memory/{job}/notes");
        let body = "b".repeat(88); // + "nX" + tag "t" = 91 bytes
        for i in 0..2 {
            let (status, _) = app.send(post(&notes, &note(&format!("n{i}"), &body))).await;
            assert_eq!(status, StatusCode::CREATED, "{backend}");
        }
        let (status, json) = app.send(post(&notes, &note("n2", &body))).await;
        assert_eq!(status, StatusCode::CONFLICT, "{backend}: {json}");
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("max_total_bytes = 250")
        );
        // A smaller note still fits.
        let (status, _) = app.send(post(&notes, &note("n3", "small"))).await;
        assert_eq!(status, StatusCode::CREATED, "{backend}");
    }
}

#[tokio::test]
async fn files_are_created_replaced_listed_and_limited_on_every_backend() {
    let limits = [
        ("ORCH_MEMORY__MAX_ITEMS", "2"),
        ("ORCH_MEMORY__MAX_ITEM_BYTES", "50"),
    ];
    for (backend, url) in backends().await {
        let app = app_on(&url, &limits).await;
        let job = new_job(&app).await;
        let files = format!("/memory/{job}/files");
        let (status, json) = app
            .send(post(&files, &json!({"name": "plan.md", "content": "# Plan"})))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{backend}: {json}");
        assert_eq!(json["file"]["bytes"], 6);
        let (status, json) = app
            .send(post(&files, &json!({"name": "plan.md", "content": "# Plan v2"})))
            .await;
        assert_eq!(status, StatusCode::OK, "{backend}: replaced, {json}");
        let (status, _) = app
            .send(post(&files, &json!({"name": "notes.txt", "content": "two"})))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, json) = app
            .send(post(&files, &json!({"name": "third", "content": "three"})))
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{backend}: {json}");
        assert_eq!(json["error"]["code"], "memory_full");
        let (status, json) = app
            .send(post(
                &files,
                &json!({"name": "plan.md", "content": "x".repeat(51)}),
            ))
            .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{backend}: {json}");
        let (status, json) = app.send(post(&files, &json!({"name": "", "content": "x"}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{backend}: {json}");
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("invalid name")
        );

        let (status, listed) = app.api_get(&files).await;
        assert_eq!(status, StatusCode::OK);
        let names: Vec<(&str, &str)> = listed["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["name"].as_str().unwrap(), f["content"].as_str().unwrap()))
            .collect();
        assert_eq!(
            names,
            [("notes.txt", "two"), ("plan.md", "# Plan v2")],
            "{backend}"
        );
        let (status, _) = app.api_get("/memory/nobody/files").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

/// Every note's title in the DB and in the job's archives; panics on a
/// note found twice.
fn all_titles(memory: &Memory, in_db: &[orchestrator::store::StoredNote], job: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    let archived = memory.archivist().archives(job).unwrap();
    for n in in_db.iter().chain(archived.iter().flat_map(|a| a.notes.iter())) {
        assert!(seen.insert(n.title.clone()), "note {:?} is stored twice", n.title);
    }
    seen
}

fn titles(range: std::ops::Range<usize>) -> HashSet<String> {
    range.map(|i| format!("note {i}")).collect()
}

#[tokio::test]
async fn the_archivist_compacts_at_80_percent_of_the_items_keeping_the_newest_ten() {
    for (backend, url) in backends().await {
        let app = app_on(&url, &[("ORCH_MEMORY__MAX_ITEMS", "20")]).await;
        let job = new_job(&app).await;
        let memory = memory_of(&app);
        for i in 0..16 {
            let added = memory
                .add_note(&job, &input(&format!("note {i}"), "b"), None)
                .await
                .unwrap();
            assert!(added.archived.is_none(), "{backend}: 16 of 20 is not past 80 %");
        }
        let added = memory.add_note(&job, &input("note 16", "b"), None).await.unwrap();
        let report = added.archived.expect("17 of 20 passes 80 %");
        assert_eq!(report.archived, 17 - KEEP_NEWEST);
        let name = report.path.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("archive_") && name.ends_with(".json"), "{name}");
        assert_eq!(
            report.path.parent().unwrap(),
            app.dir.path().join("memory").join(&job)
        );

        let (kept, _) = memory.notes(&job).await.unwrap();
        let kept_titles: Vec<String> = kept.iter().map(|n| n.title.clone()).collect();
        let newest: Vec<String> = (7..17).map(|i| format!("note {i}")).collect();
        assert_eq!(kept_titles, newest, "{backend}");
        let archive = &memory.archivist().archives(&job).unwrap()[0];
        assert_eq!(
            archive.ids,
            archive.notes.iter().map(|n| n.id).collect::<Vec<_>>()
        );
        assert_eq!(archive.notes[0].title, "note 0");
        assert_eq!(all_titles(&memory, &kept, &job), titles(0..17), "{backend}");
    }
}

#[tokio::test]
async fn the_archivist_compacts_at_80_percent_of_the_byte_budget() {
    for (backend, url) in backends().await {
        let app = app_on(&url, &[("ORCH_MEMORY__MAX_TOTAL_BYTES", "1000")]).await;
        let job = new_job(&app).await;
        let memory = memory_of(&app);
        let body = "x".repeat(52); // + "note NN" = 59 bytes
        let mut report = None;
        for i in 10..24 {
            let added = memory
                .add_note(&job, &input(&format!("note {i}"), &body), None)
                .await
                .unwrap();
            if let Some(r) = added.archived {
                report = Some((i, r));
                break;
            }
        }
        // 14 notes × 59 = 826 bytes > 800; the item count (14 of 2000) is far below.
        let (at, report) = report.expect("compacted");
        assert_eq!(at, 23, "{backend}");
        assert_eq!(report.archived, 4);
        let (kept, usage) = memory.notes(&job).await.unwrap();
        assert_eq!(usage.items, KEEP_NEWEST as u64);
        assert_eq!(kept[0].title, "note 14");
        assert_eq!(all_titles(&memory, &kept, &job), titles(10..24), "{backend}");
    }
}

#[tokio::test]
async fn a_crash_between_snapshot_and_delete_loses_and_duplicates_nothing() {
    for (backend, url) in backends().await {
        let app = app_on(&url, &[]).await;
        let job = new_job(&app).await;
        let memory = memory_of(&app);
        add_notes(&memory, &job, 0..30).await;
        // Phase 1 only, as if the process died before the delete.
        let report = memory.archivist().snapshot(&job).await.unwrap().unwrap();
        assert_eq!(report.archived, 20);
        let (in_db, _) = memory.notes(&job).await.unwrap();
        assert_eq!(in_db.len(), 30, "{backend}: nothing deleted yet");
        // A crash during a later snapshot leaves a temporary file.
        let stray = report
            .path
            .parent()
            .unwrap()
            .join(".archive_20990101T000000000Z.json.tmp");
        std::fs::write(&stray, b"{\"half\":").unwrap();

        // More notes arrive, then the next compaction (a restarted process)
        // first finishes the interrupted delete, then archives only new notes.
        let restarted = memory_of(&app);
        add_notes(&restarted, &job, 30..45).await;
        let second = restarted.archivist().compact(&job).await.unwrap().unwrap();
        assert_eq!(second.archived, 15, "{backend}: notes 20..35");
        assert!(!stray.exists(), "the stray temporary file is removed");
        let (in_db, _) = restarted.notes(&job).await.unwrap();
        assert_eq!(in_db.len(), KEEP_NEWEST);
        assert_eq!(in_db[0].title, "note 35");
        assert_eq!(all_titles(&restarted, &in_db, &job), titles(0..45), "{backend}");
    }
}

#[tokio::test]
async fn recovery_at_start_finishes_an_interrupted_compaction() {
    for (backend, url) in backends().await {
        let app = app_on(&url, &[]).await;
        let job = new_job(&app).await;
        let memory = memory_of(&app);
        add_notes(&memory, &job, 0..12).await;
        memory.archivist().snapshot(&job).await.unwrap().unwrap();
        assert_eq!(
            memory_of(&app).archivist().recover_all().await.unwrap(),
            2,
            "{backend}"
        );
        let (in_db, _) = memory.notes(&job).await.unwrap();
        assert_eq!(in_db.len(), KEEP_NEWEST);
        assert_eq!(all_titles(&memory, &in_db, &job), titles(0..12));
        // Idempotent: a second recovery deletes nothing more.
        assert_eq!(memory.archivist().recover_all().await.unwrap(), 0);
    }
}

#[tokio::test]
async fn the_same_idempotency_key_stores_one_note() {
    for (backend, url) in backends().await {
        let app = app_on(&url, &[]).await;
        let job = new_job(&app).await;
        let memory = memory_of(&app);
        let first = memory
            .add_note(&job, &input("Step 1", "a"), Some("step:1"))
            .await
            .unwrap();
        let again = memory
            .add_note(&job, &input("Step 1", "a"), Some("step:1"))
            .await
            .unwrap();
        assert!(first.created && !again.created, "{backend}");
        assert_eq!(first.note.id, again.note.id);
        memory.add_note(&job, &input("free", "a"), None).await.unwrap();
        memory.add_note(&job, &input("free", "a"), None).await.unwrap();
        assert_eq!(memory.notes(&job).await.unwrap().0.len(), 3, "{backend}");
    }
}

#[tokio::test]
async fn a_jobs_context_diagnostics_are_served_per_step() {
    for (backend, url) in backends().await {
        let app = app_on(&url, &[]).await;
        let job = new_job(&app).await;
        let (status, json) = app.api_get(&format!("/jobs/{job}/context")).await;
        assert_eq!(status, StatusCode::OK, "{backend}: {json}");
        assert_eq!(json["steps"], json!([]));
        for (position, tokens) in [(1, 300), (0, 100), (1, 200)] {
            let metrics = StepContextMetrics {
                position,
                step_title: format!("step {position}"),
                model: "gpt-4.1".into(),
                context_tokens: tokens,
                prompt_tokens: tokens + 10,
                candidates: 5,
                kept: 3,
                diagnostics: json!({"candidates": [], "context_tokens": tokens}).to_string(),
                created_at: now_millis(),
            };
            app.store.save_context_metrics(&job, &metrics).await.unwrap();
        }
        let (_, json) = app.api_get(&format!("/jobs/{job}/context")).await;
        let steps = json["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 2, "{backend}: a rebuilt step replaces its row");
        assert_eq!(
            (steps[0]["step"].as_i64(), steps[0]["context_tokens"].as_i64()),
            (Some(1), Some(100))
        );
        assert_eq!(steps[1]["diagnostics"]["context_tokens"], 200);
        let (status, json) = app.api_get("/jobs/nope/context").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{json}");
    }
}

#[tokio::test]
async fn a_context_is_built_on_demand_with_the_jobs_memory() {
    let app = TestApp::new().await;
    let repo = retry_library();
    let job = new_job(&app).await;
    let memory = memory_of(&app);
    let added = memory
        .add_note(
            &job,
            &NoteInput {
                kind: "Constraint".into(),
                title: "Backoff is capped".into(),
                body: "The retry backoff never exceeds 30 seconds.".into(),
                tags: vec!["retry".into()],
                step_id: None,
            },
            None,
        )
        .await
        .unwrap();

    let request = json!({
        "path": repo.path(),
        "task": "Cap the retry backoff",
        "step": {"title": "Cap backoff in retry.rs", "rationale": "Unbounded waits", "files": ["src/retry.rs"]},
        "job_id": job,
    });
    let (status, built) = app.send(post("/context/build", &request)).await;
    assert_eq!(status, StatusCode::OK, "{built}");
    let text = built["text"].as_str().unwrap();
    assert!(text.contains("pub fn backoff"), "{text}");
    assert!(
        text.contains("Backoff is capped"),
        "the job's note is offered: {text}"
    );
    let note_id = format!("memory:{}", added.note.id);
    let candidates = built["diagnostics"]["candidates"].as_array().unwrap();
    assert!(
        candidates.iter().any(|c| c["id"] == note_id.as_str()),
        "{candidates:?}"
    );
    assert!(!built["items"].as_array().unwrap().is_empty());

    let mut unknown = request.clone();
    unknown["job_id"] = "nope".into();
    let (status, _) = app.send(post("/context/build", &unknown)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let mut relative = request.clone();
    relative["path"] = "repo".into();
    let (status, json) = app.send(post("/context/build", &relative)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
    let no_token = Request::post("/context/build")
        .header("content-type", "application/json")
        .body(Body::from(request.to_string()))
        .unwrap();
    let (status, _) = app.send(no_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_compactions_of_one_job_archive_each_note_once() {
    for (backend, url) in backends().await {
        let app = app_on(&url, &[]).await;
        let job = new_job(&app).await;
        let memory = memory_of(&app);
        add_notes(&memory, &job, 0..40).await;
        let runs: Vec<_> = (0..20)
            .map(|_| {
                let memory = memory_of(&app);
                let job = job.clone();
                tokio::spawn(async move { memory.archivist().compact(&job).await.unwrap() })
            })
            .collect();
        let mut archived = 0;
        for run in runs {
            archived += run.await.unwrap().map_or(0, |r| r.archived);
        }
        assert_eq!(archived, 30, "{backend}");
        assert_eq!(memory.archivist().archives(&job).unwrap().len(), 1, "{backend}");
        let (in_db, _) = memory.notes(&job).await.unwrap();
        assert_eq!(all_titles(&memory, &in_db, &job), titles(0..40), "{backend}");
    }
}

#[tokio::test]
async fn recovery_deletes_only_the_archived_notes_themselves() {
    for (backend, url) in backends().await {
        let app = app_on(&url, &[]).await;
        let job = new_job(&app).await;
        let memory = memory_of(&app);
        add_notes(&memory, &job, 0..12).await;
        let report = memory.archivist().snapshot(&job).await.unwrap().unwrap();
        // As if the database were restored and a new note got an archived id:
        // same id, another creation time. It is not the archived note.
        let mut archive: Value = serde_json::from_slice(&std::fs::read(&report.path).unwrap()).unwrap();
        let created = archive["notes"][0]["created_at"].as_i64().unwrap();
        archive["notes"][0]["created_at"] = (created - 1).into();
        std::fs::write(&report.path, archive.to_string()).unwrap();

        assert_eq!(memory.archivist().recover(&job).await.unwrap(), 1, "{backend}");
        let (in_db, _) = memory.notes(&job).await.unwrap();
        assert_eq!(in_db.len(), 11, "{backend}");
        assert_eq!(in_db[0].title, "note 0");
    }
}
