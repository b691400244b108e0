//! A corpus from real history: sources of crates in the local cargo registry
//! (`$CARGO_HOME/registry/src/*/`). Where two versions of a crate are there (hashbrown,
//! base64, syn, getrandom, rand, …), each changed file is diffed between them with `git
//! diff --no-index`; files of other crates are diffed against a copy mutated by a seeded
//! generator (edits, and duplicated lines, which make contexts repeat). Every diff is then
//! damaged in each way of issue 3, one at a time, and checked against the oracle of
//! `common`: applied exactly where the intent is unique, refused where it is not.
//!
//! The corpus is a deterministic sample, so a run takes seconds. Without a registry (or
//! without any crate in two versions) the test prints a note and passes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::{Damage, Rng, Scenario, Tool, Verdict};

/// Files diffed between two versions of a crate.
const VERSION_PAIR_FILES: usize = 80;
/// Files diffed against a mutated copy.
const MUTATED_FILES: usize = 32;
/// Larger files are skipped: they add time, not coverage.
const MAX_BYTES: u64 = 200 * 1024;

fn registry_dirs() -> Vec<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry").join("src")) else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir(src) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    dirs.sort();
    dirs
}

/// `name-1.2.3` → (`name`, [1, 2, 3]).
fn name_and_version(dir: &str) -> Option<(String, Vec<u64>)> {
    let (idx, _) = dir
        .rmatch_indices('-')
        .find(|(i, _)| dir[i + 1..].starts_with(|c: char| c.is_ascii_digit()))?;
    let version = dir[idx + 1..]
        .split(['.', '-', '+'])
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    Some((dir[..idx].to_owned(), version))
}

/// Every crate in the registry, by name, versions sorted.
fn crates() -> BTreeMap<String, Vec<(Vec<u64>, PathBuf)>> {
    let mut by_name: BTreeMap<String, Vec<(Vec<u64>, PathBuf)>> = BTreeMap::new();
    for registry in registry_dirs() {
        let Ok(entries) = fs::read_dir(&registry) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some((krate, version)) = name_and_version(&name) {
                by_name.entry(krate).or_default().push((version, entry.path()));
            }
        }
    }
    for versions in by_name.values_mut() {
        versions.sort();
        versions.dedup_by(|a, b| a.0 == b.0);
    }
    by_name
}

/// Text source files under `root`, relative, sorted.
fn source_files(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                walk(root, &path, out);
            } else if meta.is_file()
                && meta.len() <= MAX_BYTES
                && path
                    .extension()
                    .is_some_and(|e| e == "rs" || e == "md" || e == "toml")
            {
                out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Readable text that the tools and the answer format can carry.
fn text(path: &Path) -> Option<Vec<u8>> {
    let bytes = fs::read(path).ok()?;
    (std::str::from_utf8(&bytes).is_ok() && !bytes.contains(&0)).then_some(bytes)
}

/// Evenly spaced picks of at most `n` items.
fn sample<T: Clone>(items: &[T], n: usize) -> Vec<T> {
    if items.len() <= n {
        return items.to_vec();
    }
    (0..n).map(|i| items[i * items.len() / n].clone()).collect()
}

/// (label, path, old, new) for changed files between the two newest versions of each
/// crate that has two.
fn version_pairs(
    crates: &BTreeMap<String, Vec<(Vec<u64>, PathBuf)>>,
) -> Vec<(String, String, PathBuf, PathBuf)> {
    let mut candidates = Vec::new();
    for (name, versions) in crates {
        let [.., (_, older), (_, newer)] = versions.as_slice() else {
            continue;
        };
        for rel in source_files(older) {
            let (a, b) = (older.join(&rel), newer.join(&rel));
            if b.is_file() && fs::read(&a).ok() != fs::read(&b).ok() {
                candidates.push((name.clone(), rel, a, b));
            }
        }
    }
    sample(&candidates, VERSION_PAIR_FILES)
}

/// A copy of `lines` with seeded edits: changed, deleted, inserted and duplicated lines.
fn mutate(bytes: &[u8], seed: u64) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    let mut rng = Rng::new(seed);
    for _ in 0..1 + rng.below(8) {
        if lines.is_empty() {
            lines.push("// started\n".to_owned());
            continue;
        }
        let i = rng.below(lines.len());
        match rng.below(4) {
            0 => {
                let eol = if lines[i].ends_with('\n') { "\n" } else { "" };
                lines[i] = format!(
                    "{} // changed {}{eol}",
                    lines[i].trim_end_matches('\n'),
                    rng.below(100)
                );
            }
            1 => {
                lines.remove(i);
            }
            2 => lines.insert(i, format!("// inserted {}\n", rng.below(100))),
            _ => {
                let copy = lines[i].clone();
                let eol = if copy.ends_with('\n') { "" } else { "\n" };
                lines.insert(i, format!("{copy}{eol}"));
            }
        }
    }
    lines.concat().into_bytes()
}

#[test]
fn registry_corpus_applies_damaged_real_diffs() {
    let crates = crates();
    let pairs = version_pairs(&crates);
    if pairs.is_empty() {
        eprintln!("note: no crate with two versions in the local cargo registry; corpus test skipped");
        return;
    }
    let mut scenarios: Vec<(String, Scenario)> = Vec::new();
    for (name, rel, old, new) in &pairs {
        if let (Some(o), Some(n)) = (text(old), text(new)) {
            scenarios.push((format!("{name}: {rel}"), vec![(rel.clone(), Some(o), Some(n))]));
        }
    }
    let singles: Vec<(String, PathBuf)> = crates
        .iter()
        .filter_map(|(name, versions)| Some((name.clone(), versions.last()?.1.clone())))
        .flat_map(|(name, dir)| {
            source_files(&dir)
                .into_iter()
                .map(move |rel| (format!("{name}/{rel}"), dir.join(rel)))
        })
        .collect();
    for (i, (label, path)) in sample(&singles, MUTATED_FILES).into_iter().enumerate() {
        if let Some(old) = text(&path) {
            let new = mutate(&old, i as u64 + 1);
            scenarios.push((
                format!("{label} (mutated)"),
                vec![(format!("src/{i}.rs"), Some(old), Some(new))],
            ));
        }
    }

    let mut tally: BTreeMap<(&str, String), usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for (i, (label, scenario)) in scenarios.iter().enumerate() {
        let tool = if i % 3 == 2 { Tool::DiffU } else { Tool::Git };
        let context = [3, 3, 1, 5][i % 4];
        let Some(diffed) = common::diff_scenario(scenario, tool, context) else {
            continue;
        };
        for (j, (damage_name, damage)) in Damage::each().into_iter().enumerate() {
            let seed = (i * 100 + j) as u64;
            match common::run_damaged(&diffed, |_, _| damage, seed) {
                Ok(verdict) => *tally.entry((damage_name, verdict_name(verdict))).or_default() += 1,
                Err(e) => failures.push(format!("{label} [{damage_name}, {tool:?} -U{context}]: {e}")),
            }
        }
    }
    eprintln!(
        "registry corpus: {} files ({} from version pairs), each damaged {} ways",
        scenarios.len(),
        pairs.len(),
        Damage::each().len()
    );
    for ((damage, verdict), n) in &tally {
        eprintln!("  {damage:<28} {verdict:<28} {n}");
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

fn verdict_name(v: Verdict) -> String {
    match v {
        Verdict::Applied => "applied exactly".to_owned(),
        Verdict::Refused => "refused (not unique)".to_owned(),
        Verdict::EitherApplied { correct: true } => "misleading numbers, applied right".to_owned(),
        Verdict::EitherApplied { correct: false } => "misleading numbers, applied WRONG".to_owned(),
        Verdict::EitherRefused => "misleading numbers, refused".to_owned(),
        Verdict::NotWrongApplied => "applied exactly".to_owned(),
        Verdict::NotWrongRefused => "refused (damage not seen through)".to_owned(),
    }
}
