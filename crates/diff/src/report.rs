//! What [`crate::apply`] did: per file, and per hunk how and where it matched.
//!
//! The pipeline logs this and shows it to the coder agent, so a hunk that only applied
//! ignoring whitespace, or far from its stated line, is visible rather than silent.
//! `Display` gives the CLI's one summary line per file.

use std::fmt;

use crate::model::FileMode;
use crate::paths::RepoPath;

/// The outcome of a successful [`crate::apply`] (or of a dry run that would succeed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyReport {
    /// One entry per file of the patch, in patch order.
    pub files: Vec<FileReport>,
    /// True when nothing was written ([`crate::ApplyOptions::dry_run`]).
    pub dry_run: bool,
}

impl fmt::Display for ApplyReport {
    /// One line per file, separated by `\n` (no trailing newline).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, file) in self.files.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{file}")?;
        }
        Ok(())
    }
}

/// What happened to one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileReport {
    /// The file's path after the patch.
    pub path: RepoPath,
    /// The kind of change.
    pub change: FileChange,
    /// Each hunk, in patch order.
    pub hunks: Vec<HunkReport>,
    /// Lines added. For a full-file block, the lines between the common prefix and suffix
    /// of old and new content (an estimate; no diff is computed).
    pub added: usize,
    /// Lines removed, counted the same way.
    pub removed: usize,
    /// The mode set on the file, when the patch set one.
    pub mode: Option<FileMode>,
}

impl fmt::Display for FileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.change {
            FileChange::Renamed { from } => write!(f, "renamed {from} -> {}", self.path)?,
            other => write!(f, "{} {}", other.verb(), self.path)?,
        }
        write!(f, " (+{} -{})", self.added, self.removed)?;
        match self.mode {
            Some(FileMode::Executable) => write!(f, " mode 100755")?,
            Some(FileMode::Regular) => write!(f, " mode 100644")?,
            None => {}
        }
        for (i, hunk) in self.hunks.iter().enumerate() {
            let sep = if i == 0 { ": " } else { "; " };
            write!(f, "{sep}{hunk}")?;
        }
        Ok(())
    }
}

/// The kind of change made to a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileChange {
    /// The file did not exist.
    Created,
    /// The file's content or mode changed in place.
    Modified,
    /// The file was removed.
    Deleted,
    /// The file was moved (and maybe edited).
    Renamed {
        /// Its former path.
        from: RepoPath,
    },
    /// The patch was already applied: a new file exists with exactly the patch's content.
    Unchanged,
}

impl FileChange {
    fn verb(&self) -> &'static str {
        match self {
            FileChange::Created => "created",
            FileChange::Modified => "modified",
            FileChange::Deleted => "deleted",
            FileChange::Renamed { .. } => "renamed",
            FileChange::Unchanged => "unchanged (already present)",
        }
    }
}

/// How and where one hunk applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HunkReport {
    /// 1-based index of the hunk within its file, in patch order.
    pub index: usize,
    /// How it matched.
    pub matched: MatchKind,
    /// 1-based line of the old file where the hunk's old side starts (for a pure
    /// insertion: the line before which the new lines went; one past the end for an
    /// append).
    pub line: usize,
}

impl fmt::Display for HunkReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hunk {} {} at line {}", self.index, self.matched, self.line)
    }
}

/// How a hunk's position was found, from most to least certain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchKind {
    /// At the stated line, byte for byte (line endings aside).
    Exact,
    /// Byte for byte, but `by` lines away from the stated line.
    Offset {
        /// Found line minus stated line.
        by: i64,
    },
    /// Byte for byte at the only place that matches; the header stated no line.
    Searched,
    /// Only when ignoring whitespace; added lines were re-indented by the shift seen on
    /// the matched lines.
    WhitespaceInsensitive,
}

impl fmt::Display for MatchKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MatchKind::Exact => write!(f, "exact"),
            MatchKind::Offset { by } => write!(f, "offset {by:+}"),
            MatchKind::Searched => write!(f, "found by search"),
            MatchKind::WhitespaceInsensitive => write!(f, "whitespace-insensitive"),
        }
    }
}
