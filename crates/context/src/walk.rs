//! Walks a repository and decides which files may be indexed at all.
//!
//! The walk honours `.gitignore` (also in a plain directory that is not a git checkout, so
//! the answer does not depend on how the tree was obtained), never enters `.git/`, and skips
//! vendored and generated trees, lock files, oversized files and secret-looking names. The
//! checks that need the content (binary, secret tokens) happen in [`classify_content`].

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::Serialize;

use crate::secrets;

/// Directory names whose content is third-party or generated, never hand-written.
const VENDORED_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    ".venv",
    ".tox",
    ".yarn",
    ".next",
    "__pycache__",
    "bower_components",
    "node_modules",
    "third_party",
    "vendor",
    "vendored",
    "venv",
];

/// File names that are generated and only add noise to search.
const GENERATED_NAMES: &[&str] = &[
    "Cargo.lock",
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "poetry.lock",
    "go.sum",
    "Pipfile.lock",
    "composer.lock",
    "Gemfile.lock",
];

/// Suffixes of generated or minified files.
const GENERATED_SUFFIXES: &[&str] = &[".min.js", ".min.css", ".map", ".pb.go", "_pb2.py"];

/// A file the walk accepted, before its content was read.
#[derive(Debug, Clone)]
pub struct WalkedFile {
    /// Repository-relative path with `/` separators.
    pub rel: String,
    pub abs: PathBuf,
    pub size: u64,
    /// Modification time in nanoseconds since the epoch (0 when unknown).
    pub mtime_ns: u64,
}

/// How many files each rule excluded, for the index report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SkipCounts {
    pub vendored_or_generated: usize,
    pub oversized: usize,
    pub secret: usize,
    pub binary: usize,
    pub unreadable: usize,
}

/// Lists the indexable files under `root`, sorted by path (deterministic order).
pub fn walk(root: &Path, max_file_bytes: u64, skips: &mut SkipCounts) -> Vec<WalkedFile> {
    let mut builder = ignore::WalkBuilder::new(root);
    builder
        .hidden(false)
        .git_ignore(true)
        .git_exclude(true)
        .git_global(false)
        .require_git(false)
        .parents(false)
        .ignore(true)
        .follow_links(false)
        .filter_entry(|e| {
            let dir = e.file_type().is_some_and(|t| t.is_dir());
            !(dir && VENDORED_DIRS.contains(&e.file_name().to_string_lossy().as_ref()))
        });
    let mut out = Vec::new();
    for entry in builder.build() {
        let Ok(entry) = entry else {
            skips.unreadable += 1;
            continue;
        };
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let Some(rel) = relative(root, entry.path()) else {
            continue;
        };
        if let Some(file) = accept(entry.path(), rel, max_file_bytes, skips) {
            out.push(file);
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    out
}

/// `path` relative to `root`, with `/` separators; `None` for non-UTF-8 names.
fn relative(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

/// Applies the name and size rules to one file.
fn accept(abs: &Path, rel: String, max_bytes: u64, skips: &mut SkipCounts) -> Option<WalkedFile> {
    if is_generated(&rel) {
        skips.vendored_or_generated += 1;
        return None;
    }
    if secrets::is_secret_path(&rel) {
        skips.secret += 1;
        return None;
    }
    let Ok(meta) = std::fs::metadata(abs) else {
        skips.unreadable += 1;
        return None;
    };
    if meta.len() > max_bytes {
        skips.oversized += 1;
        return None;
    }
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    Some(WalkedFile {
        rel,
        abs: abs.to_path_buf(),
        size: meta.len(),
        mtime_ns,
    })
}

/// Whether the name marks a lock file, a minified bundle or generated code.
fn is_generated(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    GENERATED_NAMES.contains(&name) || GENERATED_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// What reading a file's bytes revealed.
#[derive(Debug, PartialEq, Eq)]
pub enum Content {
    Text(String),
    Binary,
    Secret,
}

/// Classifies file bytes: binary (a NUL byte early on, or not UTF-8), secret-bearing, or text.
pub fn classify_content(bytes: Vec<u8>) -> Content {
    let head = &bytes[..bytes.len().min(8192)];
    if head.contains(&0) {
        return Content::Binary;
    }
    match String::from_utf8(bytes) {
        Ok(text) if secrets::contains_secret(&text) => Content::Secret,
        Ok(text) => Content::Text(text),
        Err(_) => Content::Binary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn names(files: &[WalkedFile]) -> Vec<&str> {
        files.iter().map(|f| f.rel.as_str()).collect()
    }

    #[test]
    fn gitignore_is_honoured_in_a_plain_directory() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path();
        fs::create_dir_all(root.join("src")).unwrap_or_else(|e| panic!("{e}"));
        fs::create_dir_all(root.join("build/out")).unwrap_or_else(|e| panic!("{e}"));
        fs::write(root.join(".gitignore"), "build/\n*.log\n").unwrap_or_else(|e| panic!("{e}"));
        fs::write(root.join("src/main.rs"), "fn main() {}").unwrap_or_else(|e| panic!("{e}"));
        fs::write(root.join("debug.log"), "noise").unwrap_or_else(|e| panic!("{e}"));
        fs::write(root.join("build/out/gen.rs"), "fn x() {}").unwrap_or_else(|e| panic!("{e}"));
        let files = walk(root, 1 << 20, &mut SkipCounts::default());
        assert_eq!(names(&files), [".gitignore", "src/main.rs"]);
    }

    #[test]
    fn vendored_generated_secret_and_oversized_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path();
        for d in ["node_modules/x", "vendor", ".git", "src", ".github"] {
            fs::create_dir_all(root.join(d)).unwrap_or_else(|e| panic!("{e}"));
        }
        for f in [
            "node_modules/x/i.js",
            "vendor/v.go",
            ".git/config",
            "Cargo.lock",
            "app.min.js",
            ".env",
            "server.pem",
            "src/lib.rs",
            ".github/copilot-instructions.md",
        ] {
            fs::write(root.join(f), "content").unwrap_or_else(|e| panic!("{e}"));
        }
        fs::write(root.join("src/big.rs"), "x".repeat(2000)).unwrap_or_else(|e| panic!("{e}"));
        let mut skips = SkipCounts::default();
        let files = walk(root, 1000, &mut skips);
        assert_eq!(names(&files), [".github/copilot-instructions.md", "src/lib.rs"]);
        assert_eq!(skips.secret, 2);
        assert_eq!(skips.oversized, 1);
        assert_eq!(skips.vendored_or_generated, 2);
    }

    #[test]
    fn content_is_classified() {
        assert_eq!(
            classify_content(b"fn a() {}".to_vec()),
            Content::Text("fn a() {}".into())
        );
        assert_eq!(
            classify_content(vec![0x89, b'P', b'N', b'G', 0, 0]),
            Content::Binary
        );
        assert_eq!(classify_content(vec![0xff, 0xfe, b'a']), Content::Binary);
        let key = format!("-----BEGIN {}-----\n", "PRIVATE KEY");
        assert_eq!(classify_content(key.into_bytes()), Content::Secret);
    }
}
