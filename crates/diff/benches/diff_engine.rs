//! Diff engine benchmarks (issue 3 targets): a 1,000-hunk diff against a 100,000-line
//! file applies in under 50 ms; parsing 10 MB of diff runs at over 100 MB/s.
//!
//! Run with `cargo bench -p orchestrator-diff --bench diff_engine`. With
//! `DIFF_BENCH_DUMP=DIR` the inputs are also written to `DIR` so that `git apply` can be
//! timed on the very same bytes (see `docs/benchmarks.md`, section "Diff engine").

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use orchestrator_diff::{ApplyOptions, apply, parse};

const FILE_LINES: usize = 100_000;
const HUNKS: usize = 1_000;

/// A file of distinct lines, like source code with an id per line.
fn big_file() -> String {
    let mut out = String::with_capacity(FILE_LINES * 40);
    for i in 1..=FILE_LINES {
        let indent = ["", "    ", "        "][i % 3];
        writeln!(out, "{indent}let value_{i} = compute({i}, \"item\");").unwrap();
    }
    out
}

/// How the generated diff is damaged.
#[derive(Clone, Copy)]
enum Form {
    /// Correct numbers, as `git diff` writes them.
    Exact,
    /// `@@ @@` headers, hunks in reverse order: every hunk is found by search.
    BareReversed,
    /// Every stated line 7 too high: every hunk is found away from its line.
    Shifted,
}

/// One hunk every 100 lines: 3 context lines, one line replaced, 3 context lines.
fn diff(path: &str, form: Form) -> String {
    let step = FILE_LINES / HUNKS;
    let mut hunks = Vec::with_capacity(HUNKS);
    for h in 0..HUNKS {
        let target = h * step + step / 2; // 1-based line replaced
        let start = target - 3;
        let mut hunk = match form {
            Form::Exact => format!("@@ -{start},7 +{start},7 @@\n"),
            Form::BareReversed => "@@ @@\n".to_owned(),
            Form::Shifted => format!("@@ -{},7 +{},7 @@\n", start + 7, start + 7),
        };
        for line in start..start + 7 {
            let indent = ["", "    ", "        "][line % 3];
            let text = format!("{indent}let value_{line} = compute({line}, \"item\");");
            if line == target {
                writeln!(hunk, "-{text}").unwrap();
                writeln!(hunk, "+{indent}let value_{line} = compute({line}, \"changed\");").unwrap();
            } else {
                writeln!(hunk, " {text}").unwrap();
            }
        }
        hunks.push(hunk);
    }
    if matches!(form, Form::BareReversed) {
        hunks.reverse();
    }
    format!(
        "diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n{}",
        hunks.concat()
    )
}

/// About 10 MB of diff: the 1,000-hunk diff (400 kB) for 25 files.
fn ten_megabytes() -> String {
    let one = diff("src/big.rs", Form::Exact);
    let mut out = String::with_capacity(one.len() * 26);
    for i in 0..25 {
        out.push_str(&one.replace("src/big.rs", &format!("src/file{i}.rs")));
    }
    out
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("orch-diff-bench-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("src")).unwrap();
    dir
}

/// Writes the inputs where `git apply` can be timed on them.
fn dump(dir: &Path, file: &str, diffs: [(&str, &str); 4]) {
    fs::create_dir_all(dir.join("src")).unwrap();
    fs::write(dir.join("src/big.rs"), file).unwrap();
    fs::write(dir.join("big.rs.orig"), file).unwrap();
    for (name, text) in diffs {
        fs::write(dir.join(name), text).unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let file = big_file();
    let exact = diff("src/big.rs", Form::Exact);
    let bare = diff("src/big.rs", Form::BareReversed);
    let shifted = diff("src/big.rs", Form::Shifted);
    let big = ten_megabytes();
    if let Some(dir) = std::env::var_os("DIFF_BENCH_DUMP") {
        let diffs = [
            ("exact.diff", exact.as_str()),
            ("bare.diff", bare.as_str()),
            ("shifted.diff", shifted.as_str()),
            ("ten_mb.diff", big.as_str()),
        ];
        dump(Path::new(&dir), &file, diffs);
    }

    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(big.len() as u64));
    group.sample_size(20);
    group.bench_function("10MB_diff", |b| b.iter(|| parse(black_box(&big)).unwrap()));
    group.finish();

    let root = scratch("apply");
    fs::write(root.join("src/big.rs"), &file).unwrap();
    let dry = ApplyOptions {
        dry_run: true,
        ..ApplyOptions::default()
    };
    let mut group = c.benchmark_group("apply_1000_hunks_100k_lines");
    group.sample_size(20);
    for (name, text) in [("exact", &exact), ("bare_reversed", &bare), ("shifted", &shifted)] {
        let patch = parse(text).unwrap();
        let report = apply(&patch, &root, &dry).unwrap();
        assert_eq!(report.files[0].hunks.len(), HUNKS);
        group.bench_function(format!("{name}_in_memory"), |b| {
            b.iter(|| apply(black_box(&patch), &root, &dry).unwrap())
        });
    }
    group.bench_function("exact_parse_and_in_memory", |b| {
        b.iter(|| apply(&parse(black_box(&exact)).unwrap(), &root, &dry).unwrap())
    });
    let patch = parse(&exact).unwrap();
    for (name, sync) in [("exact_written_synced", true), ("exact_written_unsynced", false)] {
        let opts = ApplyOptions {
            sync,
            ..ApplyOptions::default()
        };
        group.bench_function(name, |b| {
            b.iter_batched(
                || fs::write(root.join("src/big.rs"), &file).unwrap(),
                |()| apply(&patch, &root, &opts).unwrap(),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
    let _ = fs::remove_dir_all(&root);
}

criterion_group!(benches, bench);
criterion_main!(benches);
