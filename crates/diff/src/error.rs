//! Errors: a malformed answer ([`ParseError`]), a patch that cannot be applied with
//! certainty ([`Refusal`]), and the two outcomes of [`crate::apply`] that are not success
//! ([`ApplyError`]).
//!
//! Refusals and I/O errors are separate on purpose: a refusal is the coder agent's to fix
//! (its `Display` is one precise line to feed back to it, and the CLI exits 1), an I/O
//! error is the machine's (the CLI exits 2). Every `Display` here is a single line.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::paths::{PathError, RepoPath};

/// The answer could not be read as a patch; nothing was touched.
///
/// This is a refusal too (the CLI reports it with exit 1): convert it with
/// `ApplyError::from` to handle both the same way.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("patch line {line}: {kind}")]
pub struct ParseError {
    /// 1-based line of the answer where the problem is (0 when the answer is empty).
    pub line: usize,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

impl ParseError {
    pub(crate) fn new(line: usize, kind: ParseErrorKind) -> Self {
        ParseError { line, kind }
    }
}

/// What is wrong with an answer; each message says what to send instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// Neither a unified diff nor a full-file block was found.
    #[error("no unified diff and no `=== FILE:` block found")]
    NoPatch,
    /// `GIT binary patch` or `Binary files … differ`: the content is not in the answer.
    #[error("binary patch for {path}: only text changes can be applied")]
    Binary {
        /// The file, as written.
        path: String,
    },
    /// A `=== FILE:` block without its `=== END FILE`; probably a truncated answer, and
    /// writing it would truncate the file.
    #[error("`=== FILE: {path}` has no `=== END FILE` line (truncated answer?)")]
    UnterminatedFileBlock {
        /// The path of the open block.
        path: String,
    },
    /// A `=== FILE:` line inside another block.
    #[error("`=== FILE:` inside the block of {path}: close each block with `=== END FILE`")]
    NestedFileBlock {
        /// The path of the open block.
        path: String,
    },
    /// `=== END FILE` outside a block: a block's content contained that line and was
    /// cut short there.
    #[error(
        "`=== END FILE` without an open block: a file's content cannot contain that line; send that file as a diff"
    )]
    StrayEndMarker,
    /// A path that is absolute, escapes the repository, or points into `.git`.
    #[error("refused path {path:?}: {reason}")]
    UnsafePath {
        /// The path as written.
        path: String,
        /// Why.
        reason: PathError,
    },
    /// Two changes of one file in one answer: the second one's line numbers could refer
    /// to either version, so the intent is not certain.
    #[error("{path} is changed twice (also at patch line {first}): send one change per file")]
    DuplicatePath {
        /// The path.
        path: RepoPath,
        /// Line of the first change.
        first: usize,
    },
    /// One name used both as a file and as a directory of another changed file.
    #[error(
        "{file} is changed as a file, but {inner} (patch line {other}) puts it under a directory of that name"
    )]
    FileDirectoryConflict {
        /// The path used as a file.
        file: RepoPath,
        /// The path below it.
        inner: RepoPath,
        /// Line of the other change.
        other: usize,
    },
    /// An `@@` line before any file header.
    #[error("hunk without a file header: start each file with `--- a/PATH` and `+++ b/PATH`")]
    HunkWithoutFile,
    /// The hunk body cannot be delimited with certainty: lines that look like hunk lines
    /// follow it after a line that is not one, and the header counts do not settle it.
    #[error(
        "cannot tell where this hunk ends: hunk-like lines follow at patch line {after} after a line without a ` `, `+` or `-` prefix; prefix every line, fix the `@@` counts or close the fence"
    )]
    AmbiguousHunkEnd {
        /// Line of the stray hunk-like line.
        after: usize,
    },
    /// The `@@` counts end the hunk early while lines follow that end with added lines:
    /// either the counts are wrong or prose follows, and added lines cannot be checked
    /// against the file; refusing is safer.
    #[error("the `@@` counts end this hunk at patch line {end}, but more added lines follow: fix the counts")]
    CountsEndEarly {
        /// Last line of the hunk according to its counts.
        end: usize,
    },
    /// A combined (merge) diff: `@@@`.
    #[error("combined (merge) diffs are not supported")]
    CombinedDiff,
    /// A hunk with no lines.
    #[error("empty hunk")]
    EmptyHunk,
    /// Old and new names differ but the answer does not say it is a rename.
    #[error("old and new file names differ ({old} vs {new}) without `rename from`/`rename to`")]
    PathsDiffer {
        /// The old name.
        old: String,
        /// The new name.
        new: String,
    },
    /// A file header whose path could not be read.
    #[error("file header without a usable path")]
    MissingPath,
    /// `copy from`/`copy to`.
    #[error("copies are not supported: send the new file as a new file")]
    Copy,
    /// A mode other than 100644/100755.
    #[error("mode {mode} is not supported: only regular files (100644, 100755) can be written")]
    UnsupportedMode {
        /// The mode as written.
        mode: String,
    },
    /// A `\ No newline at end of file` that does not follow the last line of a side.
    #[error("`\\ No newline at end of file` must follow the last line of the old or new side")]
    MisplacedNoNewline,
    /// A new file whose hunk has context or removed lines, or several hunks.
    #[error("a new file must consist of one hunk of added lines")]
    BadNewFile,
}

/// Why one file, or one hunk of it, cannot be applied with certainty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The file (`None` for a refusal of the answer as a whole, such as a parse error).
    pub path: Option<RepoPath>,
    /// The hunk, 1-based within the file, when the refusal is about one hunk.
    pub hunk: Option<usize>,
    /// Line of the answer where the refused file or hunk starts.
    pub patch_line: Option<usize>,
    /// Why.
    pub kind: RefusalKind,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.path, &self.kind) {
            // A parse error already says "patch line N: …".
            (None, RefusalKind::Parse(e)) => return write!(f, "{e}"),
            (Some(path), _) => write!(f, "{path}")?,
            (None, _) => write!(f, "patch")?,
        }
        if let Some(hunk) = self.hunk {
            write!(f, ": hunk {hunk}")?;
        }
        if let Some(line) = self.patch_line {
            write!(f, " (patch line {line})")?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// The reasons for a [`Refusal`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefusalKind {
    /// The answer itself is malformed.
    #[error("{0}")]
    Parse(ParseError),
    /// A path the patch names is unsafe (also checked here in case a [`crate::Patch`] was
    /// built by hand).
    #[error("refused path: {0}")]
    UnsafePath(PathError),
    /// The path goes through a symbolic link that leads outside the repository.
    #[error("goes through the symbolic link {link}, which leads outside the repository")]
    SymlinkEscape {
        /// The link, relative to the root.
        link: String,
    },
    /// The path itself is a symbolic link, a directory or a special file.
    #[error("is {what}, not a regular file")]
    NotRegularFile {
        /// "a symbolic link", "a directory", …
        what: &'static str,
    },
    /// A parent of the path is not a directory.
    #[error("{ancestor} is not a directory")]
    NotADirectory {
        /// The offending ancestor, relative to the root.
        ancestor: String,
    },
    /// The file to change or delete does not exist.
    #[error("file does not exist")]
    FileNotFound,
    /// A file to create already exists with other content.
    #[error("file already exists with different content")]
    AlreadyExists,
    /// The target of a rename already exists.
    #[error("rename target already exists")]
    RenameTargetExists,
    /// Two entries of the patch name the same file through different paths.
    #[error("is the same file as {other} (through a symbolic link): change it once")]
    SameFile {
        /// The other path.
        other: RepoPath,
    },
    /// Larger than [`crate::ApplyOptions::max_file_bytes`].
    #[error("file is {size} bytes, above the limit of {limit}")]
    TooLarge {
        /// Size in bytes (of the existing file, or of the result).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The file holds NUL bytes: not text.
    #[error("file is binary")]
    Binary,
    /// The hunk's context and removed lines are nowhere in the file, not even ignoring
    /// whitespace.
    #[error("context and removed lines not found in the file{}", nearest_hint(*.best))]
    NoMatch {
        /// Where the longest run of the hunk's first lines was found, as a hint.
        best: Option<(usize, usize)>,
    },
    /// Several places match and the header states no line to choose by.
    #[error("matches {} places ({}) and the header states no line number: add context that makes it unique", .candidates.len(), list(.candidates))]
    AmbiguousNoLine {
        /// 1-based lines of the candidates.
        candidates: Vec<usize>,
    },
    /// Every line of the hunk is so common that its places are not even counted.
    #[error(
        "consists of lines that occur {occurrences} times or more in the file: add context that makes it unique"
    )]
    TooManyMatches {
        /// Occurrences of the hunk's rarest line.
        occurrences: usize,
    },
    /// Several places match and the stated line is past the end of the file, so it
    /// cannot say which.
    #[error("matches {} places ({}) and the stated line {stated} is past the end of the file ({len} lines): add context that makes it unique", .candidates.len(), list(.candidates))]
    AmbiguousPastEnd {
        /// 1-based lines of the candidates.
        candidates: Vec<usize>,
        /// The stated line, 1-based.
        stated: usize,
        /// Lines in the file.
        len: usize,
    },
    /// Several places match and two are equally near the stated line.
    #[error("matches {} places ({}), and lines {} and {} are equally near the stated line {}: add context that makes it unique", .candidates.len(), list(.candidates), .tied.0, .tied.1, .stated)]
    AmbiguousTie {
        /// 1-based lines of the candidates.
        candidates: Vec<usize>,
        /// The two equally near ones.
        tied: (usize, usize),
        /// The stated line, 1-based.
        stated: usize,
    },
    /// Several places match; the nearest to the stated line is not the one the offset of
    /// the file's other hunks points at.
    #[error("matches {} places ({}): line {nearest} is nearest to the stated line, but the file's other hunks matched {offset:+} lines off, which points at line {drifted}: add context that makes it unique", .candidates.len(), list(.candidates))]
    AmbiguousDrift {
        /// 1-based lines of the candidates.
        candidates: Vec<usize>,
        /// The candidate nearest to the stated line.
        nearest: usize,
        /// The candidate nearest to the stated line plus the offset.
        drifted: usize,
        /// The offset of the other hunks.
        offset: i64,
    },
    /// Several places match, and the file's other hunks were found at offsets from their
    /// stated lines that differ by `spread` lines: the stated line cannot tell the chosen
    /// place from a rival that close.
    #[error("matches {} places ({}): the file's other hunks were found at offsets that differ by up to {spread} lines, so the stated line cannot choose between lines {chosen} and {rival}: add context that makes it unique", .candidates.len(), list(.candidates))]
    AmbiguousUneven {
        /// 1-based lines of the candidates.
        candidates: Vec<usize>,
        /// The candidate nearest to the stated line (corrected by the offset).
        chosen: usize,
        /// A candidate within the uncertainty.
        rival: usize,
        /// How far the other hunks' offsets are apart.
        spread: u64,
    },
    /// The exact match found by search disagrees with a whitespace-insensitive match
    /// right at the stated line.
    #[error(
        "matches exactly at line {exact}, but also ignoring whitespace at the stated line {stated}: add context that makes it unique"
    )]
    ConflictingMatches {
        /// 1-based line of the exact match.
        exact: usize,
        /// 1-based stated line.
        stated: usize,
    },
    /// A whitespace-insensitive match whose indentation shift differs from line to line,
    /// so the added lines' indentation cannot be derived.
    #[error(
        "matches at line {line} only when ignoring whitespace, and the indentation differs inconsistently there: resend the hunk with the file's exact indentation"
    )]
    InconsistentIndent {
        /// 1-based line of the match.
        line: usize,
    },
    /// A whitespace-insensitive match where the file has one space more than the hunk's
    /// context lines, and no removed line tells whether that is drift or context lines
    /// written without their ` ` prefix: the added lines' indentation is not certain.
    #[error(
        "matches at line {line} only when ignoring whitespace: its context lines look like they lost their leading ` ` prefix; start every context line with a space"
    )]
    ContextPrefixLost {
        /// 1-based line of the match.
        line: usize,
    },
    /// Two hunks claim the same lines.
    #[error("overlaps hunk {other} (both match at lines {start}–{end})")]
    Overlap {
        /// The other hunk, 1-based.
        other: usize,
        /// First line of the overlap, 1-based.
        start: usize,
        /// Last line of the overlap, 1-based.
        end: usize,
    },
    /// A hunk without context or removed lines whose position cannot be known.
    #[error("adds lines without any context{}: add context lines around the insertion", insertion_detail(.why))]
    InsertionPosition {
        /// What was missing.
        why: InsertionProblem,
    },
    /// Deleting the file would drop lines the patch did not show.
    #[error(
        "deletion does not show the whole file ({remaining} more lines): refusing to delete content the patch does not show"
    )]
    IncompleteDeletion {
        /// Lines left over.
        remaining: usize,
    },
    /// A `\ No newline at end of file` on the new side, but the hunk does not end the file.
    #[error("says the file ends without a newline, but matches before the end of the file")]
    MisplacedNoNewline,
}

/// Why a pure insertion could not be placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InsertionProblem {
    /// The header states no line (`@@ @@`).
    NoLine,
    /// The header states `-a,b` with `b` ≠ 0, which contradicts an empty old side.
    InconsistentHeader,
    /// The stated line is past the end of the file.
    PastEnd {
        /// Stated line.
        stated: usize,
        /// Lines in the file.
        len: usize,
    },
    /// Other hunks of the answer (in this file or another) were found away from their
    /// stated lines, so this hunk's stated line is not trustworthy either.
    Drift {
        /// The other hunks' offset.
        offset: i64,
    },
    /// Another hunk inserts at the same place: their order is not certain.
    SamePlace {
        /// The other hunk, 1-based.
        other: usize,
    },
}

fn insertion_detail(why: &InsertionProblem) -> String {
    match why {
        InsertionProblem::NoLine => " and the header states no line number".to_owned(),
        InsertionProblem::InconsistentHeader => {
            " and the header's old count is not 0, so its line number is unclear".to_owned()
        }
        InsertionProblem::PastEnd { stated, len } => {
            format!(" at line {stated}, past the end of the file ({len} lines)")
        }
        InsertionProblem::Drift { offset } => {
            format!(
                ", and other hunks of this answer were found {offset:+} lines away from their stated lines"
            )
        }
        InsertionProblem::SamePlace { other } => {
            format!(" at the same place as hunk {other}, so their order is unclear")
        }
    }
}

fn nearest_hint(best: Option<(usize, usize)>) -> String {
    match best {
        Some((line, count)) if count > 0 => {
            format!(" (its first {count} lines match at line {line}, the next one differs)")
        }
        _ => String::new(),
    }
}

/// `1, 5, 9` — at most 10 entries, then "and N more".
fn list(lines: &[usize]) -> String {
    const SHOWN: usize = 10;
    let mut out = String::from("lines ");
    for (i, l) in lines.iter().take(SHOWN).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&l.to_string());
    }
    if lines.len() > SHOWN {
        out.push_str(&format!(" and {} more", lines.len() - SHOWN));
    }
    out
}

/// Why [`crate::apply`] changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The patch cannot be applied with certainty: one entry per refused file or hunk
    /// (all of them, not just the first). The tree is unchanged.
    #[error("{}", join_lines(.0))]
    Refused(Vec<Refusal>),
    /// The machine failed (permissions, disk full, missing root). `tree_restored` says
    /// whether the tree is as before: always true unless the failure happened while
    /// renaming files into place *and* undoing the renames failed too.
    #[error("I/O error while {action} {}: {source}{}", .path.display(), if *.tree_restored { "" } else { " (and restoring the previous content failed: the tree may be partly changed)" })]
    Io {
        /// What the engine was doing.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: io::Error,
        /// Whether the tree is as it was before the call.
        tree_restored: bool,
    },
}

impl ApplyError {
    /// True for a refusal (CLI exit 1), false for an I/O error (exit 2).
    pub fn is_refusal(&self) -> bool {
        matches!(self, ApplyError::Refused(_))
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ApplyError::Io {
            action,
            path: path.into(),
            source,
            tree_restored: true,
        }
    }
}

impl From<ParseError> for ApplyError {
    /// A malformed answer is refused like an inapplicable one, so one `?` chain maps both
    /// to exit 1.
    fn from(e: ParseError) -> Self {
        ApplyError::Refused(vec![Refusal {
            path: None,
            hunk: None,
            patch_line: None,
            kind: RefusalKind::Parse(e),
        }])
    }
}

fn join_lines(refusals: &[Refusal]) -> String {
    refusals
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
