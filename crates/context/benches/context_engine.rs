//! Context engine benchmarks on a repository of about 5 000 files.
//!
//! The corpus is real code: the first 5 000 files (by path) of the local cargo registry's
//! unpacked sources (`~/.cargo/registry/src/*/`), copied into a temporary directory; when
//! the registry has fewer files, synthetic Rust files fill up the rest.
//!
//! * `cold_index_build`: walk, hash, chunk and tokenize everything, write the cache;
//! * `warm_query`: rank files with the index in memory (what a long-running worker does);
//! * `rank_files_cached`: [`rank_files`] end to end on an unchanged tree with a warm cache
//!   (load the cache, stat every file, rank);
//! * `reindex_one_changed_file`: open the cached index after one file changed (one file
//!   re-indexed, the cache rewritten);
//! * `build_context`: one step's context with the default settings, index in memory.

use std::fs;
use std::path::{Path, PathBuf};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use orchestrator_context::{
    ContextRequest, ContextSettings, IndexOptions, RepoIndex, StepInput, TokenCounter, build_context,
    rank_files,
};

const FILES: usize = 5_000;
const QUERY: &str = "Parsing a config file with a missing key should return an error instead of panicking; \
    add a test for the HashMap entry API and retry the read with backoff";

/// Fills `dst` with up to `FILES` files copied from the registry, then synthetic ones.
fn make_corpus(dst: &Path) -> usize {
    let mut copied = 0;
    if let Some(src) = registry_src() {
        let mut files = Vec::new();
        collect(&src, &mut files);
        files.sort();
        for f in files.into_iter().take(FILES) {
            let Ok(rel) = f.strip_prefix(&src) else {
                continue;
            };
            let target = dst.join(rel);
            if let Some(parent) = target.parent() {
                let _ = fs::create_dir_all(parent);
            }
            if fs::copy(&f, &target).is_ok() {
                copied += 1;
            }
        }
    }
    for i in copied..FILES {
        let dir = dst.join(format!("synthetic/m{}", i / 100));
        let _ = fs::create_dir_all(&dir);
        let body = format!(
            "/// Module {i}.\npub fn handler_{i}(input: &str) -> Result<u32, Error> {{\n    parse_config(input).map(|c| c.retries + {i})\n}}\n"
        );
        let _ = fs::write(dir.join(format!("f{i}.rs")), body);
    }
    FILES
}

fn registry_src() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let mut dirs: Vec<PathBuf> = fs::read_dir(home.join("registry/src"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs.into_iter().next()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.filter_map(Result::ok) {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            collect(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

fn benches(c: &mut Criterion) {
    let repo = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    make_corpus(repo.path());
    let opts = IndexOptions::default();
    let (index, report) =
        RepoIndex::open(repo.path(), cache.path(), &opts).unwrap_or_else(|e| panic!("index: {e}"));
    eprintln!(
        "corpus: {} files indexed, {} chunks, skipped {:?}",
        report.files, report.chunks, report.skipped
    );
    TokenCounter::for_model("gpt-4.1"); // load the BPE tables outside the measurements

    let mut g = c.benchmark_group("context");
    g.sample_size(10);
    g.bench_function("cold_index_build", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")),
            |fresh| RepoIndex::open(repo.path(), fresh.path(), &opts).map(|(i, _)| i.files().len()),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("rank_files_cached", |b| {
        b.iter(|| rank_files(repo.path(), QUERY, 10, cache.path()))
    });
    let touched = repo.path().join(&index.files()[index.files().len() / 2].path);
    let original = fs::read_to_string(&touched).unwrap_or_default();
    let mut round = 0u64;
    g.bench_function("reindex_one_changed_file", |b| {
        b.iter_batched(
            || {
                round += 1;
                let _ = fs::write(&touched, format!("{original}\n// edit {round}\n"));
            },
            |()| RepoIndex::open(repo.path(), cache.path(), &opts).map(|(_, r)| r.files_reindexed),
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("context");
    g.sample_size(30);
    g.bench_function("warm_query", |b| {
        b.iter(|| index.rank_files(&index.prepare(QUERY), 10))
    });
    let step = StepInput {
        title: "Return an error for a missing config key".into(),
        rationale: "Parsing panics on a missing key.".into(),
        acceptance: "A test parses a config without the key and gets an error.".into(),
        files: index
            .files()
            .iter()
            .filter(|f| f.path.ends_with(".rs"))
            .take(2)
            .map(|f| f.path.clone())
            .collect(),
    };
    let req = ContextRequest {
        model: "gpt-4.1".into(),
        task: QUERY.into(),
        step,
        ..ContextRequest::default()
    };
    let settings = ContextSettings::default();
    g.bench_function("build_context", |b| {
        b.iter(|| build_context(&index, &req, &settings).diagnostics.context_tokens)
    });
    g.finish();
}

criterion_group!(context, benches);
criterion_main!(context);
