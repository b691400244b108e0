//! Embeddings: the vector cache on both backends, dense ranking through the
//! fake OpenAI-compatible endpoint (batched, never computed twice), fusion
//! with BM25, and whole jobs with and without an embedding model.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use orchestrator::llm::budget::Limits;
use orchestrator::llm::openai::OpenAiModel;
use orchestrator::llm::transport::{RetryPolicy, RetryingTransport};
use orchestrator::pipeline::embeddings::{Embedder, content_hash, dense_ranking};
use orchestrator::pipeline::metered::{MeteredModel, limits_from_config};
use orchestrator::pricing::Pricing;
use orchestrator::store::Store;
use orchestrator_context::{
    ContextRequest, ContextSettings, Decision, IndexOptions, RepoIndex, StepInput, build_context,
};
use secrecy::SecretString;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::fake_openai::FakeOpenAi;
use crate::pipeline::{REPO, only_job, script_happy, world_with_env};
use crate::support::*;

const MODEL: &str = "text-embedding-3-small";
/// USD per 1,000 input tokens of `MODEL` in pricing.json; embeddings have no output price.
const MODEL_PRICE: f64 = 0.00002;

fn transport() -> RetryingTransport {
    RetryingTransport::new(RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(2),
        timeout: Duration::from_secs(10),
    })
    .unwrap()
}

fn pricing() -> Pricing {
    Pricing::parse(orchestrator::pricing::BUILT_IN, "built-in").unwrap()
}

/// A repository about retries with distractors; `obscure.rs` shares no word
/// with the task, so BM25 cannot find it.
fn write_repo(root: &Path) {
    std::fs::create_dir_all(root.join("src")).unwrap();
    let mut retry = String::new();
    for i in 0..6 {
        retry.push_str(&format!(
            "/// Retry backoff policy {i}.\npub fn retry_policy_{i}(attempt: u32) -> u64 {{\n    u64::from(attempt) * {i}\n}}\n\n"
        ));
    }
    std::fs::write(root.join("src/retry.rs"), retry).unwrap();
    for i in 0..8 {
        std::fs::write(
            root.join(format!("src/helper_{i}.rs")),
            format!("pub fn helper_{i}() -> u32 {{\n    // retry budget accounting {i}\n    {i}\n}}\n"),
        )
        .unwrap();
    }
    std::fs::write(
        root.join("src/obscure.rs"),
        "pub fn wait_between_attempts() -> u64 {\n    // sleeps grow with each failure\n    250\n}\n",
    )
    .unwrap();
}

fn request() -> ContextRequest {
    ContextRequest {
        model: "gpt-4.1".into(),
        task: "Retry backoff is too aggressive: the retry policy should add jitter.".into(),
        step: StepInput {
            title: "Add jitter to the retry policy".into(),
            rationale: "Retries hammer the server.".into(),
            acceptance: "A test shows jitter grows.".into(),
            files: vec![],
        },
        ..ContextRequest::default()
    }
}

fn open_index(root: &Path, cache: &Path) -> RepoIndex {
    RepoIndex::open(root, cache, &IndexOptions::default()).unwrap().0
}

/// The repository of [`write_repo`] with its index cache, and a model on the
/// fake OpenAI-compatible endpoint.
struct Rig {
    repo: tempfile::TempDir,
    cache: tempfile::TempDir,
    fake: FakeOpenAi,
    model: OpenAiModel,
    pricing: Pricing,
    cancel: CancellationToken,
}

impl Rig {
    /// `api_key`: the bearer token the model sends, if any.
    async fn new(api_key: Option<&str>) -> Rig {
        let repo = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        write_repo(repo.path());
        let fake = FakeOpenAi::start().await;
        let key = api_key.map(SecretString::from);
        let model = OpenAiModel::new(&fake.url, key.as_ref(), transport());
        Rig {
            repo,
            cache,
            fake,
            model,
            pricing: pricing(),
            cancel: CancellationToken::new(),
        }
    }

    fn metered(&self, limits: Limits) -> MeteredModel<'_> {
        MeteredModel::new(&self.model, &self.pricing, limits, Instant::now())
    }

    fn embedder<'a>(&'a self, store: &'a Store, metered: &'a MeteredModel<'a>) -> Embedder<'a> {
        Embedder {
            store,
            model: metered,
            embedding_model: MODEL,
            cancel: &self.cancel,
        }
    }

    fn index(&self) -> RepoIndex {
        open_index(self.repo.path(), self.cache.path())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vector_cache_works_on_every_backend() {
    for (backend, url) in backends().await {
        let app = app_on(&url, &[]).await;
        let store = &app.store;
        let a = vec![0.25f32, -1.5, 3.0e-8];
        let b = vec![1.0f32, 0.0, 0.0];
        store
            .save_embeddings(MODEL, &[("h1".into(), a.clone()), ("h2".into(), b.clone())], 1)
            .await
            .unwrap();
        let hashes: Vec<String> = ["h1", "h2", "h3"].iter().map(|s| s.to_string()).collect();
        let found = store.load_embeddings(MODEL, &hashes).await.unwrap();
        assert_eq!(found.len(), 2, "{backend}");
        assert_eq!(found["h1"], a, "{backend}: exact floats");
        assert_eq!(found["h2"], b, "{backend}");
        assert!(
            store
                .load_embeddings("other-model", &hashes)
                .await
                .unwrap()
                .is_empty(),
            "{backend}: keyed by model too"
        );
        // A concurrent job storing the same hash changes nothing.
        store
            .save_embeddings(MODEL, &[("h1".into(), a.clone())], 2)
            .await
            .unwrap();
        assert_eq!(store.count_embeddings(MODEL).await.unwrap(), 2, "{backend}");
        // More hashes than one IN list holds.
        let many: Vec<(String, Vec<f32>)> = (0..1200).map(|i| (format!("m{i}"), vec![i as f32])).collect();
        store.save_embeddings(MODEL, &many, 3).await.unwrap();
        let keys: Vec<String> = many.iter().map(|(h, _)| h.clone()).collect();
        let found = store.load_embeddings(MODEL, &keys).await.unwrap();
        assert_eq!(found.len(), 1200, "{backend}");
        assert_eq!(found["m1199"], vec![1199.0], "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectors_are_computed_once_and_a_changed_chunk_is_the_only_new_input() {
    for (backend, url) in backends().await {
        let app = app_on(&url, &[]).await;
        let rig = Rig::new(Some("sk-test")).await;
        let fake = &rig.fake;
        let metered = rig.metered(limits_from_config(&app.state.config.budget, 100.0));
        let embedder = rig.embedder(&app.store, &metered);
        let settings = ContextSettings::default();
        let req = request();

        let index = rig.index();
        let pool = orchestrator_context::retrieval_pool(&index, &req, &settings);
        assert!(pool.chunks.len() > 10, "{backend}: {}", pool.chunks.len());
        let first = embedder.rank(&index, &req, &settings).await.unwrap();
        let sent = fake.embedding_requests();
        assert_eq!(sent.len(), 1, "{backend}: one batched request");
        assert_eq!(sent[0].model, MODEL);
        assert_eq!(
            sent[0].inputs.len(),
            pool.chunks.len() + 1,
            "{backend}: the chunks and the query"
        );
        assert_eq!(sent[0].inputs[0], pool.query);
        assert_eq!(sent[0].authorization.as_deref(), Some("Bearer sk-test"));
        assert_eq!(first.len(), pool.chunks.len());
        assert!(first.windows(2).all(|w| w[0].similarity >= w[1].similarity));
        assert_eq!(
            app.store.count_embeddings(MODEL).await.unwrap(),
            i64::try_from(pool.chunks.len() + 1).unwrap(),
            "{backend}"
        );

        // The same content again: everything comes from the store.
        let again = embedder.rank(&index, &req, &settings).await.unwrap();
        assert_eq!(again, first, "{backend}");
        assert_eq!(
            fake.embedding_requests().len(),
            1,
            "{backend}: no request for cached vectors"
        );

        // One function changes: its chunk is the only new input.
        let path = rig.repo.path().join("src/retry.rs");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replace("u64::from(attempt) * 3", "u64::from(attempt) * 3 + 1"),
        )
        .unwrap();
        let index = rig.index();
        embedder.rank(&index, &req, &settings).await.unwrap();
        let sent = fake.embedding_requests();
        assert_eq!(sent.len(), 2, "{backend}");
        assert_eq!(sent[1].inputs.len(), 1, "{backend}: {:?}", sent[1].inputs);
        assert!(
            sent[1].inputs[0].contains("* 3 + 1"),
            "{backend}: {}",
            sent[1].inputs[0]
        );
        assert!(sent[1].inputs[0].starts_with("src/retry.rs\n"));

        let meter = metered.meter();
        let tokens: u64 = sent.iter().map(|r| r.embedding_tokens).sum();
        assert_eq!(meter.requests, 2, "{backend}");
        assert!(
            (meter.usd - tokens as f64 * MODEL_PRICE / 1000.0).abs() < 1e-12,
            "{backend}"
        );
        assert_eq!(meter.tokens_in, 0, "{backend}: tokens_in counts chat completions");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dense_ranking_brings_in_a_chunk_bm25_ranks_low() {
    let app = TestApp::new().await;
    let rig = Rig::new(None).await;
    let fake = &rig.fake;
    // The obscure file mentions "retry" once, so it is in the BM25 pool, far down.
    std::fs::write(
        rig.repo.path().join("src/obscure.rs"),
        "pub fn wait_between_attempts() -> u64 {\n    // sleeps grow with each failure (see retry)\n    250\n}\n",
    )
    .unwrap();
    // The embedding model finds the obscure chunk closest to the task.
    let mut axis = vec![0.0f32; crate::fake_openai::EMBEDDING_DIMS];
    axis[0] = 1.0;
    fake.pin_embedding("Retry backoff is too aggressive", axis.clone());
    fake.pin_embedding("wait_between_attempts", axis);
    let metered = rig.metered(limits_from_config(&app.state.config.budget, 100.0));
    let embedder = rig.embedder(&app.store, &metered);
    // 15 chunks match the task; the 6 retry policies share every signal and stay on top.
    let settings = ContextSettings {
        top_k: 8,
        min_score: 0.0,
        ..ContextSettings::default()
    };
    let index = rig.index();
    let mut req = request();
    let obscure = |built: &orchestrator_context::BuiltContext| {
        built
            .diagnostics
            .candidates
            .iter()
            .find(|c| c.id.starts_with("src/obscure.rs#"))
            .cloned()
            .unwrap()
    };
    let bm25_only = build_context(&index, &req, &settings);
    assert_eq!(obscure(&bm25_only).reason, "outside the top 8");
    assert_eq!(fake.requests().len(), 0);

    let dense = dense_ranking(Some(&embedder), &index, &req, &settings)
        .await
        .unwrap()
        .unwrap();
    assert!(dense[0].id.starts_with("src/obscure.rs#"), "{dense:?}");
    req.dense = Some(dense);
    let fused = build_context(&index, &req, &settings);
    let moved = obscure(&fused);
    assert_ne!(moved.decision, Decision::Dropped, "{moved:?}");
    assert!((moved.score.dense.unwrap() - 1.0).abs() < 1e-6);
    assert!(moved.score.fused.is_some() && moved.score.content > 0.0);
    assert!(fused.text.contains("wait_between_attempts"));
    assert!(
        fused
            .diagnostics
            .notes
            .iter()
            .any(|n| n.contains("reciprocal-rank fusion")),
        "{:?}",
        fused.diagnostics.notes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_are_retried_on_429_and_a_failure_leaves_bm25() {
    let app = TestApp::new().await;
    let rig = Rig::new(None).await;
    let fake = &rig.fake;
    let metered = rig.metered(limits_from_config(&app.state.config.budget, 100.0));
    let embedder = rig.embedder(&app.store, &metered);
    let settings = ContextSettings::default();
    let index = rig.index();
    let req = request();

    // A 400 is not retried: BM25 alone, with the reason in the note.
    fake.push_embedding_fault(400, None);
    let note = dense_ranking(Some(&embedder), &index, &req, &settings)
        .await
        .unwrap_err();
    assert!(note.contains("ranked by BM25 alone"), "{note}");
    assert!(note.contains(MODEL) && !note.contains("sk-"), "{note}");
    assert_eq!(fake.embedding_requests().len(), 1);
    assert_eq!(app.store.count_embeddings(MODEL).await.unwrap(), 0);

    // A 429 with Retry-After is retried by the transport, within one metered request.
    fake.push_embedding_fault(429, Some("0"));
    let dense = dense_ranking(Some(&embedder), &index, &req, &settings)
        .await
        .unwrap();
    assert!(dense.is_some_and(|d| !d.is_empty()));
    assert_eq!(fake.embedding_requests().len(), 3);
    assert_eq!(metered.meter().requests, 2, "the failed call and the retried one");

    // No embedding model: nothing is sent.
    let before = fake.requests().len();
    assert_eq!(dense_ranking(None, &index, &req, &settings).await, Ok(None));
    assert_eq!(fake.requests().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_that_cannot_pay_for_embeddings_leaves_bm25_and_sends_nothing() {
    let app = TestApp::new().await;
    let rig = Rig::new(None).await;
    let fake = &rig.fake;
    let mut limits = limits_from_config(&app.state.config.budget, 100.0);
    limits.usd = 1e-9;
    let metered = rig.metered(limits);
    let embedder = rig.embedder(&app.store, &metered);
    let index = rig.index();
    let note = dense_ranking(Some(&embedder), &index, &request(), &ContextSettings::default())
        .await
        .unwrap_err();
    assert!(note.contains("budget_usd"), "{note}");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn the_fake_speaks_the_embeddings_wire_format_in_floats_and_base64() {
    let fake = FakeOpenAi::start().await;
    let client = reqwest::Client::new();
    let ask = |format: Option<&str>| {
        let mut body = serde_json::json!({"model": MODEL, "input": ["retry jitter", "jitter retry policy"]});
        if let Some(f) = format {
            body["encoding_format"] = f.into();
        }
        client.post(format!("{}/embeddings", fake.url)).json(&body).send()
    };
    let floats: Value = ask(None).await.unwrap().json().await.unwrap();
    assert_eq!(floats["object"], "list");
    assert_eq!(floats["model"], MODEL);
    assert_eq!(floats["data"][1]["index"], 1);
    assert_eq!(floats["data"][1]["object"], "embedding");
    assert_eq!(floats["usage"]["prompt_tokens"], floats["usage"]["total_tokens"]);
    let first: Vec<f32> = serde_json::from_value(floats["data"][0]["embedding"].clone()).unwrap();
    assert_eq!(first.len(), crate::fake_openai::EMBEDDING_DIMS);
    let second: Vec<f32> = serde_json::from_value(floats["data"][1]["embedding"].clone()).unwrap();
    assert!(
        orchestrator_context::cosine(&first, &second) > 0.7,
        "shared words are near"
    );

    let encoded: Value = ask(Some("base64")).await.unwrap().json().await.unwrap();
    let text = encoded["data"][0]["embedding"].as_str().unwrap();
    assert_eq!(decode_base64_f32(text), first);

    let empty = client
        .post(format!("{}/embeddings", fake.url))
        .json(&serde_json::json!({"model": MODEL, "input": [""]}))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status().as_u16(), 400, "OpenAI refuses empty inputs");
}

fn decode_base64_f32(text: &str) -> Vec<f32> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut held = 0;
    let mut bytes = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = alphabet.iter().position(|&a| a == c).unwrap() as u32;
        bits = (bits << 6) | v;
        held += 6;
        if held >= 8 {
            held -= 8;
            bytes.push((bits >> held) as u8);
        }
    }
    orchestrator::store::decode_vector(&bytes).unwrap()
}

/// Commits `files` on `main` of the fake GitHub's bare repository.
fn seed(bare: &Path, files: &[(&str, &str)]) {
    let work = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=Seed", "-c", "user.email=seed@example.com"])
            .args(args)
            .current_dir(work.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["clone", "--quiet", bare.to_str().unwrap(), "."]);
    for (path, text) in files {
        let path = work.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    git(&["add", "-A"]);
    git(&["commit", "--quiet", "-m", "seed"]);
    git(&["push", "--quiet", "origin", "HEAD:main"]);
}

const SEED: &[(&str, &str)] = &[
    (
        "README.md",
        "# Hello World\n\nA spelling guide for newcomers. See the docs folder.\n",
    ),
    (
        "docs/index.md",
        "# Docs\n\nThe guide and the changelog live here.\n",
    ),
    (
        "src/lib.rs",
        "/// Spelling checks for the README.\npub fn check_spelling(text: &str) -> bool {\n    !text.is_empty()\n}\n",
    ),
];

/// Every context diagnostics file the job wrote.
fn diagnostics(w: &crate::pipeline::World, job_id: &str) -> Vec<Value> {
    let dir = w.app.state.config.data_dir.join("artifacts").join(job_id);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("context_") && name.ends_with(".json") {
            out.push(serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap());
        }
    }
    assert_eq!(out.len(), 2, "one per step");
    out
}

fn notes(d: &Value) -> Vec<String> {
    d["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_embedding_model_a_job_sends_no_embeddings_request() {
    let w = world_with_env(&[]).await;
    let bare = w.github.state().repos[REPO].bare.clone();
    seed(&bare, SEED);
    script_happy(&w.llm);
    w.app.deliver("issues", "no-embed-1", &labeled(1)).await;
    assert_eq!(w.pool.run_until_idle().await.unwrap(), 1);
    let job = only_job(&w.app).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(w.llm.embedding_requests().is_empty());
    assert_eq!(w.llm.requests().len(), 3);
    for d in diagnostics(&w, job["id"].as_str().unwrap()) {
        let files = d["candidates"].as_array().unwrap();
        assert!(files.iter().all(|c| c["score"].get("dense").is_none()), "{d}");
        assert!(notes(&d).iter().all(|n| !n.contains("embedding")), "{d}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_an_embedding_model_pays_for_and_counts_its_embeddings() {
    let w = world_with_env(&[("EMBEDDING_MODEL", MODEL)]).await;
    let bare = w.github.state().repos[REPO].bare.clone();
    seed(&bare, SEED);
    script_happy(&w.llm);
    w.app.deliver("issues", "embed-1", &labeled(1)).await;
    assert_eq!(w.pool.run_until_idle().await.unwrap(), 1);
    let job = only_job(&w.app).await;
    assert_eq!(job["status"], "succeeded", "{job}");

    let embedded = w.llm.embedding_requests();
    assert_eq!(embedded.len(), 2, "one batched request per step");
    assert!(embedded.iter().all(|r| r.model == MODEL));
    // Step 2 re-uses step 1's chunk vectors: only its own query and new chunks are sent.
    let first: std::collections::HashSet<&String> = embedded[0].inputs.iter().collect();
    assert!(
        embedded[1].inputs.iter().all(|i| !first.contains(i)),
        "{embedded:?}"
    );
    let tokens: u64 = embedded.iter().map(|r| r.embedding_tokens).sum();
    // Chat: the plan by gpt-4.1-mini and two steps by gpt-4.1 (see the pipeline test);
    // embeddings: input tokens only.
    let expected = 0.0132 + tokens as f64 * MODEL_PRICE / 1000.0;
    assert!(
        (job["cost_usd"].as_f64().unwrap() - expected).abs() < 1e-12,
        "{job} vs {expected}"
    );
    assert_eq!(job["requests"], 5, "{job}");
    assert_eq!(
        (job["tokens_in"].as_i64(), job["tokens_out"].as_i64()),
        (Some(3000), Some(1500))
    );
    let hashes: Vec<String> = embedded
        .iter()
        .flat_map(|r| r.inputs.iter().map(|i| content_hash(i)))
        .collect();
    let stored = w.app.store.load_embeddings(MODEL, &hashes).await.unwrap();
    assert_eq!(stored.len(), hashes.len(), "every vector is cached");
    for d in diagnostics(&w, job["id"].as_str().unwrap()) {
        assert!(
            notes(&d).iter().any(|n| n.contains("reciprocal-rank fusion")),
            "{d}"
        );
        let dense_parts = d["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["score"]["dense"].is_number())
            .count();
        assert!(dense_parts > 0, "{d}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embeddings_failure_does_not_fail_the_job() {
    let w = world_with_env(&[("EMBEDDING_MODEL", MODEL)]).await;
    let bare = w.github.state().repos[REPO].bare.clone();
    seed(&bare, SEED);
    script_happy(&w.llm);
    w.llm.push_embedding_fault(400, None);
    w.llm.push_embedding_fault(401, None);
    w.app.deliver("issues", "embed-fail-1", &labeled(1)).await;
    assert_eq!(w.pool.run_until_idle().await.unwrap(), 1);
    let job = only_job(&w.app).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(w.llm.embedding_requests().len(), 2);
    assert_eq!(job["requests"], 5, "failed requests count: {job}");
    assert!(
        (job["cost_usd"].as_f64().unwrap() - 0.0132).abs() < 1e-12,
        "{job}"
    );
    for d in diagnostics(&w, job["id"].as_str().unwrap()) {
        assert!(
            notes(&d).iter().any(|n| n.contains("ranked by BM25 alone")),
            "{d}"
        );
        assert!(
            d["candidates"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["score"].get("dense").is_none())
        );
    }
}
