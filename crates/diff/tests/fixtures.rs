//! Fixture directories, compared as whole trees (as codex's apply-patch scenarios are):
//!
//! ```text
//! tests/fixtures/NNN_name/
//!   input/        the tree before (absent: empty)
//!   patch.txt     the answer, byte for byte
//!   expected/     the tree after (absent: empty); equal to input/ for a refusal
//!   report.txt    optional: the exact report lines
//!   refusal.txt   present for a refusal: the exact refusal lines
//! ```
//!
//! Trees are compared file by file, bytes exact (git keeps no empty directories, so
//! directories only count through their files). `.gitattributes` in the fixtures folder
//! stops git from converting line endings, which several fixtures depend on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::{Entry, TempDir};
use orchestrator_diff::ApplyError;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// Regular files under `dir` (relative path → bytes); empty when `dir` is absent.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    if !dir.exists() {
        return BTreeMap::new();
    }
    common::snapshot(dir)
        .into_iter()
        .filter_map(|(path, entry)| match entry {
            Entry::File(bytes, _) => Some((path, bytes)),
            _ => None,
        })
        .collect()
}

fn copy_tree(from: &Path, to: &Path) {
    for (path, bytes) in files(from) {
        common::write_file(to, &path, &bytes);
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|s| s.trim_end_matches('\n').to_owned())
}

fn run(case: &Path) -> Result<(), String> {
    let dir = TempDir::new("fixture");
    copy_tree(&case.join("input"), dir.path());
    let patch = fs::read_to_string(case.join("patch.txt")).map_err(|e| format!("patch.txt: {e}"))?;
    let result = common::apply_text(&patch, dir.path());
    match (read_trimmed(&case.join("refusal.txt")), result) {
        (Some(want), Err(e @ ApplyError::Refused(_))) => {
            if e.to_string() != want {
                return Err(format!("refusal:\n  got  {:?}\n  want {want:?}", e.to_string()));
            }
        }
        (Some(_), Ok(report)) => return Err(format!("applied ({report}) but must be refused")),
        (None, Ok(report)) => {
            if let Some(want) = read_trimmed(&case.join("report.txt"))
                && report.to_string() != want
            {
                return Err(format!(
                    "report:\n  got  {:?}\n  want {want:?}",
                    report.to_string()
                ));
            }
        }
        (_, Err(e)) => return Err(format!("failed: {e}")),
    }
    let (got, want) = (files(dir.path()), files(&case.join("expected")));
    if got != want {
        let mut diffs = Vec::new();
        for path in got.keys().chain(want.keys()) {
            let (g, w) = (got.get(path), want.get(path));
            if g != w && !diffs.iter().any(|d: &String| d.starts_with(path.as_str())) {
                let show = |b: Option<&Vec<u8>>| b.map(|b| String::from_utf8_lossy(b).into_owned());
                diffs.push(format!("{path}:\n  got  {:?}\n  want {:?}", show(g), show(w)));
            }
        }
        return Err(format!("tree differs from expected/:\n{}", diffs.join("\n")));
    }
    Ok(())
}

#[test]
fn fixture_directories() {
    let mut cases: Vec<PathBuf> = fs::read_dir(fixtures_dir())
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 12,
        "expected a dozen fixtures, found {}",
        cases.len()
    );
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            let name = case.file_name()?.to_string_lossy().into_owned();
            run(case).err().map(|e| format!("{name}: {e}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
