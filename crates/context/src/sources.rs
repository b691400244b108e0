//! The six sources, turned into scored candidates.
//!
//! Every candidate is scored with BM25 against the task and step using the repository's
//! term statistics ([`RepoIndex::score_text`] for text that is not in the index), so a memory
//! note and a code chunk are on one scale and can be ranked together.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use crate::chunk;
use crate::dense::{self, DenseHit};
use crate::diagnostics::{ScoreParts, SourceKind};
use crate::engine::{HistoryEntry, MemoryNote};
use crate::index::{ChunkHit, Query, RepoIndex};
use crate::secrets;
use crate::walk::{self, Content};

/// Instruction files of the target repository, always offered, in this order.
pub const INSTRUCTION_FILES: &[&str] = &[
    "AGENTS.md",
    "CLAUDE.md",
    ".github/copilot-instructions.md",
    "CONTRIBUTING.md",
];

/// Documentation file extensions read from the docs folder.
const DOC_EXTENSIONS: &[&str] = &["md", "markdown", "txt", "rst", "adoc"];

/// How a candidate is treated by the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pin {
    /// Task, step, instruction files: always kept (clipped only by the hard cap).
    Always,
    /// A file the step names: kept before ranked items, whole when it fits.
    Named,
    /// Everything else: competes on score.
    Ranked,
}

/// A piece of context offered to the budget.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub source: SourceKind,
    pub id: String,
    pub title: String,
    pub body: String,
    /// Replacement body when the whole does not fit (a named file's relevant chunks).
    pub fallback: Option<String>,
    pub pin: Pin,
    /// Raw BM25 (content + path); normalised later.
    pub raw: f32,
    pub parts: ScoreParts,
    /// Position in the fused order (repository chunks with a dense ranking): breaks ties of
    /// `raw`, which the fused order takes from BM25 scores that can be equal.
    pub fused_rank: Option<usize>,
}

impl Candidate {
    fn pinned(source: SourceKind, id: String, title: String, body: String, pin: Pin) -> Self {
        let parts = ScoreParts {
            normalized: 1.0,
            pinned: true,
            ..ScoreParts::default()
        };
        Self {
            source,
            id,
            title,
            body,
            fallback: None,
            pin,
            raw: 0.0,
            parts,
            fused_rank: None,
        }
    }

    fn ranked(source: SourceKind, id: String, title: String, body: String, content: f32, path: f32) -> Self {
        let parts = ScoreParts {
            content,
            path,
            ..ScoreParts::default()
        };
        Self {
            source,
            id,
            title,
            body,
            fallback: None,
            pin: Pin::Ranked,
            raw: content + path,
            parts,
            fused_rank: None,
        }
    }
}

/// Reads a text file that is safe to show: not secret-named, not binary, no token inside.
pub fn read_safe(path: &Path, rel: &str, max_bytes: u64) -> Option<String> {
    if secrets::is_secret_path(rel) || fs::metadata(path).ok()?.len() > max_bytes {
        return None;
    }
    match walk::classify_content(fs::read(path).ok()?) {
        Content::Text(t) => Some(t),
        _ => None,
    }
}

/// Reads a repository file named by untrusted input (a plan's step, a fixed list): only a
/// relative path without `..` or `.git` components whose real location (symlinks resolved)
/// stays inside the repository, then the [`read_safe`] checks.
pub fn read_repo_file(root: &Path, rel: &str, max_bytes: u64) -> Option<String> {
    let path = Path::new(rel);
    let plain = path.components().all(|c| match c {
        std::path::Component::Normal(name) => name != ".git",
        std::path::Component::CurDir => true,
        _ => false,
    });
    if !plain {
        return None;
    }
    let real = fs::canonicalize(root.join(path)).ok()?;
    if !real.starts_with(root) {
        return None;
    }
    read_safe(&real, rel, max_bytes)
}

/// The repository's instruction files that exist.
pub fn instruction_files(root: &Path, max_bytes: u64) -> Vec<Candidate> {
    INSTRUCTION_FILES
        .iter()
        .filter_map(|rel| {
            let body = read_repo_file(root, rel, max_bytes)?;
            Some(Candidate::pinned(
                SourceKind::Agents,
                (*rel).into(),
                (*rel).into(),
                body,
                Pin::Always,
            ))
        })
        .collect()
}

/// The step's named files: the whole file, with its most relevant chunks as fallback
/// (BM25 fused with the dense ranking when there is one).
/// Returns the candidates and the paths that could not be offered (missing, unsafe).
pub fn named_files(
    index: &RepoIndex,
    query: &Query,
    files: &[String],
    max_bytes: u64,
    dense: Option<&[DenseHit]>,
) -> (Vec<Candidate>, Vec<String>) {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for rel in files {
        let rel = rel.trim_start_matches("./");
        let Some(body) = read_repo_file(index.root(), rel, max_bytes) else {
            missing.push(rel.to_owned());
            continue;
        };
        let mut c = Candidate::pinned(SourceKind::File, rel.to_owned(), rel.to_owned(), body, Pin::Named);
        c.fallback = relevant_chunks(index, query, rel, dense);
        out.push(c);
    }
    (out, missing)
}

/// The file's chunks that match the query, best first up to four, shown in file order.
fn relevant_chunks(
    index: &RepoIndex,
    query: &Query,
    rel: &str,
    dense: Option<&[DenseHit]>,
) -> Option<String> {
    let fi = index.file_index(rel)?;
    let file = &index.files()[fi];
    let text = read_repo_file(index.root(), rel, u64::MAX)?;
    let mut scored: Vec<(f32, usize)> = file
        .chunks
        .iter()
        .enumerate()
        .map(|(ci, c)| {
            (
                index.score_text(
                    query,
                    &chunk::slice_lines(&text, c.chunk.start_line, c.chunk.end_line),
                ),
                ci,
            )
        })
        .filter(|(s, _)| *s > 0.0)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let order: Vec<usize> = match dense {
        Some(dense) => {
            let chunk_id = |ci: usize| {
                let c = &file.chunks[ci].chunk;
                format!("{rel}#L{}-{}", c.start_line, c.end_line)
            };
            dense::fuse_chunk_order(scored.iter().map(|&(_, ci)| (chunk_id(ci), ci)).collect(), dense)
        }
        None => scored.iter().map(|(_, ci)| *ci).collect(),
    };
    let mut best: Vec<usize> = order.into_iter().take(4).collect();
    best.sort_unstable();
    let parts: Vec<String> = best
        .iter()
        .map(|&ci| {
            let c = &file.chunks[ci].chunk;
            format!(
                "// lines {}-{}\n{}",
                c.start_line,
                c.end_line,
                chunk::slice_lines(&text, c.start_line, c.end_line)
            )
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n"))
}

/// The BM25 candidate pool: the best `limit` chunks for the query outside `exclude`.
pub fn pool_hits(index: &RepoIndex, query: &Query, exclude: &[String], limit: usize) -> Vec<ChunkHit> {
    let excluded_chunks: usize = exclude
        .iter()
        .filter_map(|p| index.file_index(p))
        .map(|fi| index.files()[fi].chunks.len())
        .sum();
    index
        .search(query, limit.saturating_add(excluded_chunks))
        .into_iter()
        .filter(|h| !exclude.iter().any(|e| *e == index.files()[h.file].path))
        .take(limit)
        .collect()
}

/// The best repository chunks for the query, outside the named and instruction files,
/// best BM25 first ([`dense::fuse_candidates`] reorders them when there is a dense
/// ranking).
pub fn repo_chunks(index: &RepoIndex, query: &Query, exclude: &[String], limit: usize) -> Vec<Candidate> {
    // Each file is read once however many of its chunks are offered.
    let mut texts: HashMap<usize, Option<String>> = HashMap::new();
    pool_hits(index, query, exclude, limit)
        .into_iter()
        .filter_map(|h| {
            let file = &index.files()[h.file];
            let c = &file.chunks[h.chunk].chunk;
            let text = texts
                .entry(h.file)
                .or_insert_with(|| fs::read_to_string(index.root().join(&file.path)).ok())
                .as_deref()?;
            let body = chunk::slice_lines(text, c.start_line, c.end_line);
            let id = format!("{}#L{}-{}", file.path, c.start_line, c.end_line);
            Some(Candidate::ranked(
                SourceKind::File,
                id,
                file.path.clone(),
                body,
                h.content_score,
                h.path_score,
            ))
        })
        .collect()
}

/// Memory notes, scored on their type, title, body and tags.
pub fn memory(index: &RepoIndex, query: &Query, notes: &[MemoryNote]) -> Vec<Candidate> {
    notes
        .iter()
        .filter(|n| !secrets::contains_secret(&n.body) && !secrets::contains_secret(&n.title))
        .map(|n| {
            let title = if n.kind.is_empty() {
                n.title.clone()
            } else {
                format!("{}: {}", n.kind, n.title)
            };
            let tags = if n.tags.is_empty() {
                String::new()
            } else {
                format!("\ntags: {}", n.tags.join(", "))
            };
            let body = format!("{}{tags}", n.body);
            let s = index.score_text(query, &format!("{title}\n{body}"));
            Candidate::ranked(
                SourceKind::Memory,
                format!("memory:{}", n.id),
                title,
                body,
                s,
                0.0,
            )
        })
        .collect()
}

/// The job's artifacts: `*.json` files directly in `dir`, by name.
pub fn artifacts(index: &RepoIndex, query: &Query, dir: &Path, max_bytes: u64) -> Vec<Candidate> {
    let mut names: Vec<String> = list_dir(dir)
        .into_iter()
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| {
            let body = read_safe(&dir.join(&name), &name, max_bytes)?;
            let s = index.score_text(query, &body);
            Some(Candidate::ranked(
                SourceKind::Artifact,
                format!("artifact:{name}"),
                name,
                body,
                s,
                0.0,
            ))
        })
        .collect()
}

/// The last `limit` history summaries (the caller passes them oldest first).
pub fn history(index: &RepoIndex, query: &Query, entries: &[HistoryEntry], limit: usize) -> Vec<Candidate> {
    let start = entries.len().saturating_sub(limit);
    entries[start..]
        .iter()
        .filter(|h| !secrets::contains_secret(&h.summary))
        .map(|h| {
            let s = index.score_text(query, &h.summary);
            let title = first_line(&h.summary, 80);
            Candidate::ranked(
                SourceKind::History,
                format!("history:{}", h.id),
                title,
                h.summary.clone(),
                s,
                0.0,
            )
        })
        .collect()
}

/// External documentation: Markdown/text files under `dir` (recursive, sorted), split at
/// headings (or in line windows) so a long manual offers its relevant section only.
pub fn docs(index: &RepoIndex, query: &Query, dir: &Path, max_bytes: u64) -> Vec<Candidate> {
    let mut skips = walk::SkipCounts::default();
    walk::walk(dir, max_bytes, &mut skips)
        .into_iter()
        .filter(|f| {
            f.rel
                .rsplit_once('.')
                .is_some_and(|(_, e)| DOC_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .filter_map(|f| Some((read_safe(&f.abs, &f.rel, max_bytes)?, f.rel)))
        .flat_map(|(text, rel)| {
            sections(&text)
                .into_iter()
                .map(|(start, end, body)| {
                    let s = index.score_text(query, &body);
                    let title = format!("{rel} {}", first_line(&body, 60));
                    Candidate::ranked(
                        SourceKind::Docs,
                        format!("docs:{rel}#L{start}-{end}"),
                        title,
                        body,
                        s,
                        0.0,
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Splits a document at Markdown headings; sections longer than 80 lines are windowed.
fn sections(text: &str) -> Vec<(usize, usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut starts: Vec<usize> = vec![0];
    for (i, l) in lines.iter().enumerate().skip(1) {
        let is_heading = l.starts_with('#') && l.trim_start_matches('#').starts_with(' ');
        if is_heading || i - starts.last().copied().unwrap_or(0) >= 80 {
            starts.push(i);
        }
    }
    starts.push(lines.len());
    starts
        .windows(2)
        .filter(|w| w[1] > w[0])
        .map(|w| (w[0] + 1, w[1], lines[w[0]..w[1]].join("\n")))
        .filter(|(_, _, body)| !body.trim().is_empty())
        .collect()
}

/// File names directly in a directory (empty when it does not exist).
fn list_dir(dir: &Path) -> Vec<String> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect()
}

/// The first non-empty line, trimmed to `max` characters.
pub fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let mut out: String = line.chars().take(max).collect();
    if line.chars().count() > max {
        out.push('…');
    }
    out
}

/// The task as a pinned candidate.
pub fn task(text: &str) -> Candidate {
    Candidate::pinned(
        SourceKind::Task,
        "task".into(),
        "Task".into(),
        text.to_owned(),
        Pin::Always,
    )
}

/// The step as a pinned candidate.
pub fn step(title: &str, body: String) -> Candidate {
    Candidate::pinned(
        SourceKind::Step,
        "step".into(),
        format!("Step: {title}"),
        body,
        Pin::Always,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_paths_cannot_leave_the_repository_or_enter_git() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("repo");
        fs::create_dir_all(root.join(".git")).unwrap();
        fs::create_dir_all(root.join("src")).unwrap();
        fs::write(outer.path().join("outside.txt"), "private").unwrap();
        fs::write(root.join(".git/config"), "[core]").unwrap();
        fs::write(root.join("src/lib.rs"), "fn a() {}").unwrap();
        let root = fs::canonicalize(&root).unwrap();
        assert_eq!(
            read_repo_file(&root, "src/lib.rs", 1 << 20).as_deref(),
            Some("fn a() {}")
        );
        assert_eq!(
            read_repo_file(&root, "./src/lib.rs", 1 << 20).as_deref(),
            Some("fn a() {}")
        );
        for bad in [
            "../outside.txt",
            "src/../../outside.txt",
            ".git/config",
            "/etc/hostname",
        ] {
            assert_eq!(read_repo_file(&root, bad, 1 << 20), None, "{bad}");
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(outer.path().join("outside.txt"), root.join("src/link.rs")).unwrap();
            assert_eq!(
                read_repo_file(&root, "src/link.rs", 1 << 20),
                None,
                "symlink out of the repository"
            );
        }
    }
}
