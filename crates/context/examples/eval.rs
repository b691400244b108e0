//! Retrieval evaluation on real history: released versions of crates in the local cargo
//! registry, and the commits of this repository.
//!
//! For every crate present in two or more versions under `~/.cargo/registry/src/*/`, each
//! consecutive pair (old, new) gives one query:
//! * query: the changelog entries of the new version's CHANGELOG (CHANGELOG.md, CHANGES.md,
//!   RELEASE-NOTES.md, RELEASES.md or NEWS.md) for versions after `old` up to `new`;
//! * gold: the non-test source files of the old tree whose content differs in the new one
//!   (files only in the new tree cannot be retrieved from the old corpus and are left out);
//! * corpus: the old tree.
//!
//! Every non-merge commit of this repository's history (`EVAL_GIT_REPO`, default the
//! repository the example is in, `none` to skip; from `EVAL_GIT_REV`, default `HEAD`) gives
//! another query:
//! * query: the commit message;
//! * gold: the non-test source files the commit modified or deleted;
//! * corpus: the tree of its parent (`git archive`).
//!
//! Systems compared, all on the same files (those the engine's walk accepts):
//! * `engine`: [`RepoIndex::rank_files`] (symbol chunks, code tokenizer, path terms, a file
//!   scores by its best three chunks);
//! * `baseline`: plain whole-file BM25, words split on non-alphanumerics, no path terms;
//! * `whole-file + code tokenizer`: an ablation between the two;
//! * `engine without the non-code prior`: the engine with [`file_prior`] undone;
//! * `engine, a file scored by its best chunk alone`: the file aggregation before;
//! * `oracle`: gold files first, the ceiling (recall@10 < 1 when a change touched more than
//!   10 files).
//!
//! [`file_prior`]: orchestrator_context::file_prior
//!
//! Run: `cargo run -p orchestrator-context --release --example eval [REGISTRY_SRC_DIR]`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use orchestrator_context::{IndexOptions, RepoIndex};

const EXTENSIONS: &[&str] = &["rs", "py", "js", "ts", "go", "c", "h", "cc", "cpp"];
const CHANGELOGS: &[&str] = &[
    "CHANGELOG.md",
    "CHANGES.md",
    "RELEASE-NOTES.md",
    "RELEASES.md",
    "NEWS.md",
];
const KS: [usize; 3] = [1, 5, 10];

type Version = (u64, u64, u64);

fn main() {
    let src = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .or_else(default_registry)
        .unwrap_or_default();
    let Ok(entries) = fs::read_dir(&src) else {
        eprintln!("no registry source directory at {}", src.display());
        std::process::exit(2);
    };
    let mut crates: BTreeMap<String, Vec<(Version, PathBuf)>> = BTreeMap::new();
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some((krate, version)) = split_name(&name) {
            crates.entry(krate).or_default().push((version, e.path()));
        }
    }
    let cache = std::env::temp_dir().join(format!("orch-eval-{}", std::process::id()));
    let mut registry = Systems::new();
    println!("| pair | gold files | corpus files | engine first gold rank | baseline first gold rank |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (krate, mut versions) in crates {
        versions.sort();
        for pair in versions.windows(2) {
            let ((old_v, old), (new_v, new)) = (&pair[0], &pair[1]);
            let label = format!("{krate} {} → {}", fmt_v(*old_v), fmt_v(*new_v));
            let Some(query) = changelog_query(new, *old_v, *new_v) else {
                eprintln!("skip {label}: no changelog entries between the versions");
                continue;
            };
            registry.case(&label, &query, old, &cache, |corpus| gold_files(old, new, corpus));
        }
    }
    let mut history = Systems::new();
    if let Some((repo, rev)) = git_source() {
        println!();
        println!(
            "| commit | gold files | corpus files | engine first gold rank | baseline first gold rank |"
        );
        println!("| --- | ---: | ---: | ---: | ---: |");
        let tree = std::env::temp_dir().join(format!("orch-eval-tree-{}", std::process::id()));
        for commit in git_commits(&repo, &rev) {
            let label = format!("{} {}", &commit.sha[..7], first_line(&commit.message, 60));
            if commit.message.split_whitespace().count() < 3 {
                continue;
            }
            if !extract_tree(&repo, &commit.parent, &tree) {
                eprintln!("skip {label}: cannot extract the parent tree");
                continue;
            }
            history.case(&label, &commit.message, &tree, &cache, |corpus| {
                let corpus: HashSet<&String> = corpus.iter().collect();
                commit
                    .changed
                    .iter()
                    .filter(|p| corpus.contains(p) && is_source(p))
                    .cloned()
                    .collect()
            });
        }
        let _ = fs::remove_dir_all(&tree);
    }
    let _ = fs::remove_dir_all(&cache);
    for (title, systems) in [("registry releases", &registry), ("git history", &history)] {
        println!();
        println!("{title}:");
        systems.print();
    }
    println!();
    println!("all queries:");
    registry.merged(&history).print();
}

/// The systems compared and their scores per query.
struct Systems(Vec<(&'static str, Vec<Score>)>);

impl Systems {
    fn new() -> Self {
        Self(
            [
                "engine",
                "baseline",
                "whole-file + code tokenizer",
                "engine without the non-code prior",
                "engine, a file scored by its best chunk alone",
                "oracle (ceiling)",
            ]
            .into_iter()
            .map(|n| (n, Vec::new()))
            .collect(),
        )
    }

    /// Ranks `root` for `query` with every system and scores against the gold files
    /// `gold(corpus)`; prints one table row. Skips a case without gold.
    fn case(
        &mut self,
        label: &str,
        query: &str,
        root: &Path,
        cache: &Path,
        gold: impl FnOnce(&[String]) -> HashSet<String>,
    ) {
        let Ok((index, _)) = RepoIndex::open(root, cache, &IndexOptions::default()) else {
            return;
        };
        let corpus: Vec<String> = index.files().iter().map(|f| f.path.clone()).collect();
        let gold = gold(&corpus);
        if gold.is_empty() {
            eprintln!("skip {label}: no changed source file");
            return;
        }
        let engine: Vec<String> = index
            .rank_files(&index.prepare(query), 10)
            .into_iter()
            .map(|f| f.path)
            .collect();
        let texts: Vec<String> = corpus
            .iter()
            .map(|p| fs::read_to_string(root.join(p)).unwrap_or_default())
            .collect();
        let baseline = whole_file_bm25(&corpus, &texts, query, plain_terms);
        let ablation = whole_file_bm25(&corpus, &texts, query, orchestrator_context::terms);
        let no_prior = file_ranking(&index, query, orchestrator_context::FILE_CHUNKS, true);
        let best_chunk = file_ranking(&index, query, 1, false);
        let scores = [
            score(&engine, &gold),
            score(&baseline, &gold),
            score(&ablation, &gold),
            score(&no_prior, &gold),
            score(&best_chunk, &gold),
            oracle(&gold),
        ];
        if std::env::var_os("EVAL_VERBOSE").is_some() {
            let mark = |v: &[String]| {
                v.iter()
                    .map(|p| {
                        if gold.contains(p) {
                            format!("*{p}")
                        } else {
                            p.clone()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            eprintln!(
                "{label}\n  engine:   {}\n  baseline: {}",
                mark(&engine),
                mark(&baseline)
            );
        }
        let rank = |s: &Score| {
            if s.rr > 0.0 {
                format!("{}", (1.0 / s.rr).round())
            } else {
                "—".into()
            }
        };
        println!(
            "| {label} | {} | {} | {} | {} |",
            gold.len(),
            corpus.len(),
            rank(&scores[0]),
            rank(&scores[1])
        );
        for (sys, s) in self.0.iter_mut().zip(scores) {
            sys.1.push(s);
        }
    }

    fn merged(&self, other: &Systems) -> Systems {
        Systems(
            self.0
                .iter()
                .zip(&other.0)
                .map(|((name, a), (_, b))| (*name, a.iter().chain(b).cloned().collect()))
                .collect(),
        )
    }

    fn print(&self) {
        println!("| system | queries | recall@1 | recall@5 | recall@10 | MRR |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: |");
        for (name, scores) in &self.0 {
            let n = scores.len().max(1) as f64;
            let mean = |f: &dyn Fn(&Score) -> f64| scores.iter().map(f).sum::<f64>() / n;
            println!(
                "| {name} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
                scores.len(),
                mean(&|s| s.recall[0]),
                mean(&|s| s.recall[1]),
                mean(&|s| s.recall[2]),
                mean(&|s| s.rr)
            );
        }
    }
}

/// One commit of the history source.
struct Commit {
    sha: String,
    parent: String,
    /// Subject and body.
    message: String,
    /// Paths modified or deleted (so present in the parent's tree); renames count as a
    /// deletion of the old path.
    changed: Vec<String>,
}

/// The repository whose history is evaluated and the revision to walk back from:
/// `EVAL_GIT_REPO` (default: the repository this example is in; `none` to skip) and
/// `EVAL_GIT_REV` (default `HEAD`).
fn git_source() -> Option<(PathBuf, String)> {
    let repo = match std::env::var("EVAL_GIT_REPO") {
        Ok(r) if r == "none" => return None,
        Ok(r) => PathBuf::from(r),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."),
    };
    let rev = std::env::var("EVAL_GIT_REV").unwrap_or_else(|_| "HEAD".into());
    git(&repo, &["rev-parse", "--verify", &rev]).map(|sha| (repo, sha.trim().to_owned()))
}

fn git(repo: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Non-merge commits reachable from `rev` that have a parent, oldest first.
fn git_commits(repo: &Path, rev: &str) -> Vec<Commit> {
    let Some(list) = git(repo, &["rev-list", "--no-merges", "--reverse", rev]) else {
        return Vec::new();
    };
    list.lines()
        .filter_map(|sha| {
            let parent = git(repo, &["rev-parse", "--verify", "--quiet", &format!("{sha}^")])?;
            let message = git(repo, &["log", "-1", "--format=%B", sha])?;
            let status = git(
                repo,
                &["diff", "--no-renames", "--name-status", parent.trim(), sha],
            )?;
            let changed = status
                .lines()
                .filter_map(|l| {
                    let (kind, path) = l.split_once('\t')?;
                    matches!(kind, "M" | "D").then(|| path.to_owned())
                })
                .collect();
            Some(Commit {
                sha: sha.to_owned(),
                parent: parent.trim().to_owned(),
                message,
                changed,
            })
        })
        .collect()
}

/// Replaces `dir`'s content with the tree of `rev` (`git archive | tar -x`); the same
/// directory every time, so the index cache is refreshed incrementally.
fn extract_tree(repo: &Path, rev: &str, dir: &Path) -> bool {
    let _ = fs::remove_dir_all(dir);
    if fs::create_dir_all(dir).is_err() {
        return false;
    }
    let script = "git -C \"$1\" archive \"$2\" | tar -x -C \"$3\"";
    std::process::Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(repo)
        .arg(rev)
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("").replace('|', "/");
    let mut out: String = line.chars().take(max).collect();
    if line.chars().count() > max {
        out.push('…');
    }
    out
}

fn is_source(p: &str) -> bool {
    p.rsplit_once('.').is_some_and(|(_, e)| EXTENSIONS.contains(&e)) && !is_test_path(p)
}

/// `~/.cargo/registry/src/<the first index dir>`.
fn default_registry() -> Option<PathBuf> {
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

/// `serde_json-1.0.1` → (`serde_json`, (1, 0, 1)); pre-release versions are skipped.
fn split_name(dir: &str) -> Option<(String, Version)> {
    let at = dir
        .match_indices('-')
        .map(|(i, _)| i)
        .find(|&i| dir[i + 1..].starts_with(|c: char| c.is_ascii_digit()))?;
    Some((dir[..at].to_owned(), parse_v(&dir[at + 1..])?))
}

fn parse_v(s: &str) -> Option<Version> {
    let mut it = s.split('.');
    let (a, b, c) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    Some((a.parse().ok()?, b.parse().ok()?, c.parse().ok()?))
}

fn fmt_v(v: Version) -> String {
    format!("{}.{}.{}", v.0, v.1, v.2)
}

/// The first `x.y.z` in a heading line.
fn heading_version(line: &str) -> Option<Version> {
    line.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|w| w.matches('.').count() == 2)
        .find_map(|w| parse_v(w.trim_matches('.')))
}

/// Changelog sections for versions in `(old, new]`, concatenated.
fn changelog_query(new_tree: &Path, old: Version, new: Version) -> Option<String> {
    let text = CHANGELOGS
        .iter()
        .find_map(|n| fs::read_to_string(new_tree.join(n)).ok())?;
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if (line.starts_with('#') || line.starts_with("Version "))
            && let Some(v) = heading_version(line)
        {
            inside = v > old && v <= new;
            continue;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    (out.split_whitespace().count() >= 3).then_some(out)
}

/// Whether a path is test, bench or example code (not what a change is "about").
fn is_test_path(p: &str) -> bool {
    p.split('/').any(|seg| {
        matches!(
            seg,
            "tests" | "test" | "benches" | "examples" | "fuzz" | "testdata"
        )
    }) || p.rsplit('/').next().is_some_and(|n| n.contains("test"))
}

/// Non-test source files of the corpus whose content differs (or that vanished) in `new`.
fn gold_files(old: &Path, new: &Path, corpus: &[String]) -> HashSet<String> {
    corpus
        .iter()
        .filter(|p| is_source(p))
        .filter(|p| fs::read(old.join(p)).ok() != fs::read(new.join(p)).ok())
        .cloned()
        .collect()
}

/// The baseline tokenizer: lower-case alphanumeric words (underscores kept), nothing else.
fn plain_terms(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Whole-file BM25 (k1 1.2, b 0.75) with a given tokenizer; top 10 paths.
fn whole_file_bm25(
    paths: &[String],
    texts: &[String],
    query: &str,
    tok: fn(&str) -> Vec<String>,
) -> Vec<String> {
    let docs: Vec<HashMap<String, u32>> = texts
        .iter()
        .map(|t| {
            let mut m = HashMap::new();
            for w in tok(t) {
                *m.entry(w).or_insert(0) += 1;
            }
            m
        })
        .collect();
    let lens: Vec<f64> = docs.iter().map(|d| d.values().sum::<u32>() as f64).collect();
    let avg = (lens.iter().sum::<f64>() / lens.len().max(1) as f64).max(1.0);
    let n = docs.len() as f64;
    let qterms: HashSet<String> = tok(query).into_iter().collect();
    let mut scored: Vec<(f64, usize)> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let s = qterms
                .iter()
                .filter_map(|q| {
                    let tf = f64::from(*d.get(q)?);
                    let df = docs.iter().filter(|o| o.contains_key(q)).count() as f64;
                    let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                    Some(idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * lens[i] / avg)))
                })
                .sum();
            (s, i)
        })
        .filter(|(s, _)| *s > 0.0)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored
        .into_iter()
        .take(10)
        .map(|(_, i)| paths[i].clone())
        .collect()
}

/// The engine's file ranking rebuilt from its chunk hits: each file scores by the content
/// scores of its best `chunks` chunks plus its path score, as [`RepoIndex::rank_files`] does
/// with [`FILE_CHUNKS`](orchestrator_context::FILE_CHUNKS); `undo_prior` scales non-code
/// files back up first (an ablation).
fn file_ranking(index: &RepoIndex, query: &str, chunks: usize, undo_prior: bool) -> Vec<String> {
    let mut by_file: HashMap<usize, (f32, usize, usize)> = HashMap::new();
    for (at, h) in index.search(&index.prepare(query), usize::MAX).iter().enumerate() {
        let undo = if undo_prior {
            orchestrator_context::file_prior(&index.files()[h.file].path)
        } else {
            1.0
        };
        let e = by_file.entry(h.file).or_insert((h.path_score / undo, 0, at));
        if e.1 < chunks {
            e.0 += h.content_score / undo;
            e.1 += 1;
        }
    }
    let mut v: Vec<(f32, usize, usize)> = by_file.into_iter().map(|(f, (s, _, at))| (s, at, f)).collect();
    v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    v.into_iter()
        .take(10)
        .map(|(_, _, f)| index.files()[f].path.clone())
        .collect()
}

/// The best any ranking can do: gold files first.
fn oracle(gold: &HashSet<String>) -> Score {
    let mut ranked: Vec<String> = gold.iter().cloned().collect();
    ranked.sort();
    score(&ranked, gold)
}

#[derive(Clone)]
struct Score {
    recall: [f64; 3],
    rr: f64,
}

fn score(ranked: &[String], gold: &HashSet<String>) -> Score {
    let recall =
        KS.map(|k| ranked.iter().take(k).filter(|p| gold.contains(*p)).count() as f64 / gold.len() as f64);
    let rr = ranked
        .iter()
        .position(|p| gold.contains(p))
        .map_or(0.0, |i| 1.0 / (i + 1) as f64);
    Score { recall, rr }
}
