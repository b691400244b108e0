//! What the dashboard reads besides the database: the context diagnostics
//! under `<data_dir>/artifacts/<job>/context_<step>.json`, and each step's
//! commit as a patch from the repository that holds it.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::store::JobRecord;

/// Diagnostics files larger than this are not read.
const MAX_DIAGNOSTICS_BYTES: u64 = 8 * 1024 * 1024;

/// A patch is cut after this many bytes.
pub const MAX_DIFF_BYTES: usize = 256 * 1024;

/// One source's share of a step's context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTokens {
    pub source: String,
    pub offered: usize,
    pub kept: usize,
    /// Tokens in the final context.
    pub tokens: usize,
}

/// A step's context build, summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextSummary {
    pub model: String,
    pub context_tokens: u64,
    pub prompt_tokens: u64,
    pub context_limit_tokens: u64,
    pub compaction_applied: bool,
    pub notes: Vec<String>,
    pub by_source: Vec<SourceTokens>,
}

/// Job ids are UUIDs; anything else never reaches a path.
fn safe_id(job_id: &str) -> bool {
    !job_id.is_empty() && job_id.len() <= 64 && job_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The step's diagnostics, if the pipeline wrote them.
pub fn context_summary(data_dir: &Path, job_id: &str, step_title: &str) -> Option<ContextSummary> {
    if !safe_id(job_id) {
        return None;
    }
    let name = crate::workspace::slug(step_title);
    let path = data_dir
        .join("artifacts")
        .join(job_id)
        .join(format!("context_{name}.json"));
    if std::fs::metadata(&path).ok()?.len() > MAX_DIAGNOSTICS_BYTES {
        return None;
    }
    let value: Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    Some(summarise(&value))
}

fn summarise(value: &Value) -> ContextSummary {
    let number = |key: &str| value[key].as_u64().unwrap_or(0);
    let mut by_source: Vec<SourceTokens> = Vec::new();
    for candidate in value["candidates"].as_array().into_iter().flatten() {
        let source = candidate["source"].as_str().unwrap_or("other").to_string();
        let tokens = usize::try_from(candidate["tokens_after"].as_u64().unwrap_or(0)).unwrap_or(0);
        let kept = candidate["decision"].as_str().is_some_and(|d| d != "dropped");
        let entry = match by_source.iter_mut().position(|s| s.source == source) {
            Some(i) => &mut by_source[i],
            None => {
                by_source.push(SourceTokens {
                    source,
                    offered: 0,
                    kept: 0,
                    tokens: 0,
                });
                let last = by_source.len() - 1;
                &mut by_source[last]
            }
        };
        entry.offered += 1;
        entry.kept += usize::from(kept);
        entry.tokens += tokens;
    }
    by_source.sort_by(|a, b| b.tokens.cmp(&a.tokens).then_with(|| a.source.cmp(&b.source)));
    ContextSummary {
        model: value["model"].as_str().unwrap_or("").to_string(),
        context_tokens: number("context_tokens"),
        prompt_tokens: number("prompt_tokens"),
        context_limit_tokens: number("context_limit_tokens"),
        compaction_applied: value["compaction_applied"].as_bool().unwrap_or(false),
        notes: value["notes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect(),
        by_source,
    }
}

/// The repository that holds the job's commits: the local checkout of a
/// local task, else the repository's mirror under the data directory.
pub fn commit_repository(data_dir: &Path, job: &JobRecord) -> Option<PathBuf> {
    if let Some(local) = &job.local_path {
        return Some(PathBuf::from(local));
    }
    let (owner, name) = job.repo.as_deref()?.split_once('/')?;
    let safe = |p: &str| !p.is_empty() && p != "." && p != ".." && !p.contains(['/', '\\']);
    (safe(owner) && safe(name)).then(|| data_dir.join("mirrors").join(owner).join(format!("{name}.git")))
}

/// A commit's patch against its first parent, cut at [`MAX_DIFF_BYTES`];
/// `None` when the repository or the commit cannot be read.
pub async fn commit_patch(repository: PathBuf, sha: String) -> Option<String> {
    if sha.len() < 7 || sha.len() > 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    tokio::task::spawn_blocking(move || read_patch(&repository, &sha))
        .await
        .ok()
        .flatten()
}

fn read_patch(repository: &Path, sha: &str) -> Option<String> {
    let repo = git2::Repository::open(repository).ok()?;
    let commit = repo.find_commit(git2::Oid::from_str(sha).ok()?).ok()?;
    let tree = commit.tree().ok()?;
    let parent = commit.parent(0).ok().and_then(|p| p.tree().ok());
    let diff = repo.diff_tree_to_tree(parent.as_ref(), Some(&tree), None).ok()?;
    let mut out = String::new();
    let mut truncated = false;
    let _ = diff.print(git2::DiffFormat::Patch, |_, _, line| {
        if out.len() > MAX_DIFF_BYTES {
            truncated = true;
            return false;
        }
        if matches!(line.origin(), '+' | '-' | ' ') {
            out.push(line.origin());
        }
        out.push_str(&String::from_utf8_lossy(line.content()));
        true
    });
    if truncated {
        out.push_str("\n… (patch cut here; see the commit on the branch)\n");
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_are_summed_by_source() {
        let value = serde_json::json!({
            "model": "gpt-4.1", "context_tokens": 900, "prompt_tokens": 1200, "context_limit_tokens": 56000,
            "compaction_applied": false, "notes": ["a note"],
            "candidates": [
                {"source": "file", "tokens_after": 500, "decision": "kept"},
                {"source": "file", "tokens_after": 0, "decision": "dropped"},
                {"source": "task", "tokens_after": 300, "decision": "kept"},
                {"source": "file", "tokens_after": 100, "decision": "compacted"}
            ]
        });
        let summary = summarise(&value);
        assert_eq!(summary.context_tokens, 900);
        assert_eq!(summary.notes, ["a note"]);
        assert_eq!(
            summary.by_source,
            [
                SourceTokens {
                    source: "file".into(),
                    offered: 3,
                    kept: 2,
                    tokens: 600
                },
                SourceTokens {
                    source: "task".into(),
                    offered: 1,
                    kept: 1,
                    tokens: 300
                },
            ]
        );
    }

    #[test]
    fn only_plain_ids_reach_a_path() {
        assert!(safe_id("3f1c0a4e-1b2c-4d5e-8f90-123456789abc"));
        assert!(!safe_id("../etc"));
        assert!(!safe_id(""));
    }
}
