//! The parsed form of a patch: what [`crate::parse`] produces and [`crate::apply`] consumes.
//!
//! The model keeps everything the answer *stated* (line numbers, counts, modes) next to
//! what it *showed* (the lines), because the applier weighs one against the other: stated
//! numbers are hints, shown lines are evidence.

use crate::paths::RepoPath;

/// A parsed answer: one entry per file it changes, in the order the answer gave them.
///
/// The parser guarantees that no path appears in two entries (an answer that edits a
/// file twice is refused: the second edit's line numbers could mean either version).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Patch {
    /// The files, in the order of the answer.
    pub files: Vec<FilePatch>,
}

impl Patch {
    /// Every path the patch reads or writes (both sides of a rename), so that the caller
    /// can apply its own policy before anything is touched — the pipeline refuses
    /// `.github/workflows/` this way, since the App holds no `workflows` permission.
    pub fn paths(&self) -> impl Iterator<Item = &RepoPath> {
        self.files.iter().flat_map(|f| f.op.paths())
    }
}

/// The change to one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilePatch {
    /// What happens to the file as a whole.
    pub op: FileOp,
    /// The hunks, in the order the answer gave them (which need not be file order).
    /// Empty for a full-file block, a pure rename, a mode change or an empty new file.
    pub hunks: Vec<Hunk>,
    /// `old mode` / `deleted file mode`: informative only, never checked against the disk
    /// (a mode is not content, and a wrong one says nothing about where hunks go).
    pub old_mode: Option<FileMode>,
    /// `new mode` / `new file mode`: the mode the file ends with. `None` keeps the mode
    /// the file has (or the default for a new file).
    pub new_mode: Option<FileMode>,
    /// 1-based line of the answer where this file's section starts, for messages.
    pub line: usize,
}

/// What a [`FilePatch`] does to its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileOp {
    /// Edit an existing file in place with the hunks.
    Modify {
        /// The file.
        path: RepoPath,
    },
    /// Create a file that must not exist yet (`--- /dev/null`, `new file mode`); its
    /// content is the added lines of the hunks.
    Create {
        /// The new file.
        path: RepoPath,
    },
    /// Delete a file (`+++ /dev/null`, `deleted file mode`). The hunks must show the whole
    /// content, so a stale or mistaken deletion is refused instead of losing work.
    Delete {
        /// The file to delete.
        path: RepoPath,
    },
    /// `rename from` / `rename to`, optionally with hunks applied to the content on the way.
    Rename {
        /// The existing file.
        from: RepoPath,
        /// The name it ends with; must not exist yet.
        to: RepoPath,
    },
    /// A full-file block (`=== FILE: path`): create the file, or replace all of its
    /// content, with exactly these lines.
    Write {
        /// The file.
        path: RepoPath,
        /// The lines between the markers, without line endings.
        lines: Vec<String>,
    },
}

impl FileOp {
    /// The path the file has once the patch is applied (for a deletion: the path deleted).
    pub fn path(&self) -> &RepoPath {
        match self {
            FileOp::Modify { path }
            | FileOp::Create { path }
            | FileOp::Delete { path }
            | FileOp::Write { path, .. } => path,
            FileOp::Rename { to, .. } => to,
        }
    }

    /// Every path this operation reads or writes.
    pub fn paths(&self) -> impl Iterator<Item = &RepoPath> {
        let from = match self {
            FileOp::Rename { from, .. } => Some(from),
            _ => None,
        };
        from.into_iter().chain(std::iter::once(self.path()))
    }
}

/// The two regular-file modes git records; anything else (symlinks, submodules) is refused
/// by the parser because writing it as a regular file would be wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileMode {
    /// `100644` (also git's legacy `100664`).
    Regular,
    /// `100755`.
    Executable,
}

/// One `@@` hunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hunk {
    /// The old-side start line the header states (`-a,b`), if any. A hint: the applier
    /// prefers matches near it, but never trusts it over the shown lines.
    pub old_start: Option<usize>,
    /// The old-side count the header states, if any. Only used to find where the hunk
    /// body ends; LLMs often get it wrong.
    pub old_count: Option<usize>,
    /// The new-side start line the header states (`+c,d`), if any.
    pub new_start: Option<usize>,
    /// The new-side count the header states, if any.
    pub new_count: Option<usize>,
    /// The body, in order.
    pub lines: Vec<HunkLine>,
    /// A `\ No newline at end of file` follows the last old-side line: in the old file
    /// that line was the last one and had no line ending.
    pub old_missing_newline: bool,
    /// The same for the new side: the new file must end without a line ending.
    pub new_missing_newline: bool,
    /// 1-based line of the `@@` header in the answer, for messages.
    pub line: usize,
}

impl Hunk {
    /// The lines the old file must contain (context and removed), in order.
    pub fn old_lines(&self) -> impl Iterator<Item = &str> {
        self.lines
            .iter()
            .filter(|l| l.kind != LineKind::Added)
            .map(|l| l.text.as_str())
    }

    /// The lines the new file will contain (context and added), in order.
    pub fn new_lines(&self) -> impl Iterator<Item = &str> {
        self.lines
            .iter()
            .filter(|l| l.kind != LineKind::Removed)
            .map(|l| l.text.as_str())
    }

    /// The 0-based index in the old file where the header says the old side starts; for a
    /// pure insertion (`-a,0`) that is the index *after* line `a`, which is how unified
    /// diffs number insertions.
    pub fn stated_index(&self) -> Option<usize> {
        match (self.old_start, self.old_count) {
            (Some(start), Some(0)) => Some(start),
            (Some(start), _) => Some(start.saturating_sub(1)),
            // No old side stated: the new side is the only hint left. It is in new-file
            // numbers, which is close enough for choosing the nearest of several matches.
            (None, _) => self.new_start.map(|s| s.saturating_sub(1)),
        }
    }
}

/// One body line of a hunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HunkLine {
    /// Context, removed or added.
    pub kind: LineKind,
    /// The text after the one-character prefix, without line ending.
    pub text: String,
}

/// The role of a [`HunkLine`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// ` ` (or an empty line, which LLMs write for an empty context line): kept.
    Context,
    /// `-`: must be present, is removed.
    Removed,
    /// `+`: inserted.
    Added,
}
