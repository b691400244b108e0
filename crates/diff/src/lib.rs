//! A tolerant but never-wrong patch engine for diffs written by an LLM.
//!
//! LLM-written diffs are often damaged: wrong `@@` numbers and counts, bare `@@ @@`
//! headers, drifted whitespace, missing `a/`/`b/` prefixes, hunks out of order, thin
//! context, CRLF, missing final newlines, markdown fences and chatter around the patch.
//! This crate applies every such diff whose intent is unambiguous, refuses every one whose
//! intent is not — with a one-line reason per file or hunk that can be fed back to the
//! coder agent — and never writes outside the repository. A wrong application is the
//! worst outcome, so every leniency below is bounded by a uniqueness check.
//!
//! ```no_run
//! # fn main() -> Result<(), orchestrator_diff::ApplyError> {
//! let answer = std::fs::read_to_string("answer.md").unwrap_or_default();
//! let patch = orchestrator_diff::parse(&answer)?;
//! if patch.paths().any(|p| p.as_str().starts_with(".github/workflows/")) {
//!     // policy: refuse before touching anything
//! }
//! let report = orchestrator_diff::apply(&patch, "repo".as_ref(), &Default::default())?;
//! println!("{report}"); // one line per file
//! # Ok(()) }
//! ```
//!
//! # What an answer may contain
//!
//! An answer is unified diff(s), full-file block(s), or both for *different* files (a
//! path changed twice in one answer is refused), anywhere among prose and markdown fences.
//!
//! **Unified diffs**, git-style (`diff --git`, extended headers) or plain (`---`/`+++`):
//! many files; new (`--- /dev/null`, `new file mode`), deleted (`+++ /dev/null`,
//! `deleted file mode`) and renamed (`rename from`/`rename to`, with or without hunks)
//! files; `old mode`/`new mode` (100644 and 100755 only); `\ No newline at end of file`;
//! CRLF. Binary patches, copies, symlinks, submodules and combined diffs are refused.
//!
//! **Full-file blocks** give the whole new content of one file:
//!
//! ```text
//! === FILE: relative/path/to/file.ext
//! <the complete new content of the file, verbatim>
//! === END FILE
//! ```
//!
//! Both marker lines start at column 0 (backticks or quotes around the path are
//! dropped). The content is the lines between them, verbatim (markdown fences inside it
//! are content). The written file ends with a newline unless it is empty; if the file
//! exists and mostly uses CRLF, the content is written with CRLF (and a byte-order mark
//! is kept). A block without its `=== END FILE` (a truncated answer), a `=== FILE:` line
//! inside a block and an `=== END FILE` outside one are refused: content cannot contain
//! the marker lines, so such a file has to be sent as a diff. A blank answer is an
//! empty patch ("nothing to change").
//!
//! # Leniencies, and what bounds them
//!
//! | damage | handled by | bounded by |
//! |---|---|---|
//! | prose, fences around the patch | skipped: parsing starts at file and hunk headers | a hunk cut short by prose or a fence is refused when hunk-like lines follow |
//! | wrong `@@` counts | the body is read to the end of its hunk lines | counts that end the hunk while added lines follow are refused |
//! | wrong or missing line numbers | content search, nearest to the stated line | no line stated, two equally near, or other hunks' offsets disagreeing → refused |
//! | drifted whitespace | whitespace-insensitive fallback, added lines re-indented | inconsistent indentation shift, context lines that lost their ` ` prefix → refused |
//! | hunks out of order, thin context | each hunk matched independently | overlapping hunks, non-unique matches → refused |
//! | missing `a/`/`b/` prefixes | paths are taken as written | — |
//! | CRLF patch or file | line endings are not content; each file keeps its own | — |
//! | missing final newline | each file keeps its state unless markers say otherwise | — |
//!
//! The matching rules in full are in the `matching` module docs (DESIGN §8).
//!
//! # Guarantees
//!
//! - [`parse`] never panics, on any input.
//! - [`apply`] changes all files or none: refusals for every file are collected before
//!   anything is written, and writes go through temporary files renamed into place.
//!   Each file keeps its line-ending style, final-newline state, byte-order mark and
//!   permissions (unless the patch sets a mode).
//! - Nothing outside the root is written: absolute paths, `..` escapes and `.git` are
//!   refused by [`RepoPath`]; symbolic links leading out of the root, links as targets,
//!   special files and files over [`ApplyOptions::max_file_bytes`] are refused by [`apply`].
//! - Deleting a file requires the patch to show its whole content; creating a file that
//!   exists with other content is refused.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod apply;
mod error;
mod extract;
mod matching;
mod model;
mod parse;
mod paths;
mod report;
mod splice;
mod text;
mod write;

pub use apply::{ApplyOptions, apply};
pub use error::{ApplyError, InsertionProblem, ParseError, ParseErrorKind, Refusal, RefusalKind};
pub use model::{FileMode, FileOp, FilePatch, Hunk, HunkLine, LineKind, Patch};
pub use parse::parse;
pub use paths::{PathError, RepoPath};
pub use report::{ApplyReport, FileChange, FileReport, HunkReport, MatchKind};
