//! The unified-diff and full-file parser.
//!
//! Reads the pieces that [`crate::extract`] cut out of an answer. Within a segment it
//! skips prose until a file header (`diff --git`, or `--- ` directly followed by `+++ `),
//! reads git's extended headers, then hunks. The one hard question is where a hunk ends,
//! because LLMs get the `@@` counts wrong and surround patches with prose:
//!
//! 1. The *run* is the longest sequence of lines that can be hunk lines (first character
//!    ` `, `+`, `-` or `\`, or an empty line — LLMs drop the space of empty context
//!    lines), stopping at the next `@@`, `diff --git`, or `---`/`+++`/`@@` file header.
//! 2. If the header counts are met exactly at some point of the run and only blank lines
//!    follow, the counts *confirm* the end. If they are met early, the counts were wrong
//!    or prose with `-`/`+` bullets follows: the whole run is taken when its last line is
//!    a context or removed line (the match then verifies it against the file, so prose
//!    cannot slip in), and refused otherwise ([`ParseErrorKind::CountsEndEarly`]), since
//!    trailing added lines cannot be verified and could add prose to the file.
//! 3. Otherwise (no counts, or never met) the run without its trailing blank lines is the
//!    body. If the run ended at a prose line and hunk-like lines follow before the next
//!    header (or right after the fence that ended the segment), a line inside the hunk
//!    probably lost its prefix: refused ([`ParseErrorKind::AmbiguousHunkEnd`]) rather than
//!    applying half a hunk.
//!
//! Paths: a leading `a/` (old side) or `b/` (new side) is git's prefix and is removed;
//! when a `diff --git` line shows that the diff was made without prefixes, nothing is
//! removed. Text after a tab (a timestamp of `diff -u`) is ignored; C-quoted names are
//! unquoted.

use std::collections::HashMap;

use crate::error::{ParseError, ParseErrorKind};
use crate::extract::{self, Line, Piece};
use crate::model::{FileMode, FileOp, FilePatch, Hunk, HunkLine, LineKind, Patch};
use crate::paths::RepoPath;

/// Parses an answer: unified diff(s), full-file block(s), or both for different files,
/// possibly inside markdown fences and prose. See the crate docs for the grammar.
///
/// A blank answer is an empty patch (the coder's way to say "nothing to change"); an
/// answer with text but no patch is [`ParseErrorKind::NoPatch`].
///
/// Never panics, whatever the input; every refusal names the answer's line.
pub fn parse(text: &str) -> Result<Patch, ParseError> {
    // AGENTS.md: an empty answer means "nothing to change for this step".
    if text.trim().is_empty() {
        return Ok(Patch::default());
    }
    let mut files = Vec::new();
    for piece in extract::split(text)? {
        match piece {
            Piece::FileBlock { line, path, content } => files.push(full_file(line, path, content)?),
            Piece::Segment { lines, after_fence } => {
                SegmentParser::new(&lines, after_fence).run(&mut files)?;
            }
        }
    }
    if files.is_empty() {
        return Err(ParseError::new(1, ParseErrorKind::NoPatch));
    }
    check_distinct_paths(&files)?;
    Ok(Patch { files })
}

fn full_file(line: usize, path: &str, content: Vec<&str>) -> Result<FilePatch, ParseError> {
    Ok(FilePatch {
        op: FileOp::Write {
            path: repo_path(line, path)?,
            lines: content.into_iter().map(str::to_owned).collect(),
        },
        hunks: Vec::new(),
        old_mode: None,
        new_mode: None,
        line,
    })
}

fn repo_path(line: usize, raw: &str) -> Result<RepoPath, ParseError> {
    RepoPath::new(raw).map_err(|reason| {
        ParseError::new(
            line,
            ParseErrorKind::UnsafePath {
                path: raw.to_owned(),
                reason,
            },
        )
    })
}

/// One side of a file header.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Side {
    /// `/dev/null`: the file does not exist on this side.
    DevNull,
    /// A path as written (prefix not yet removed).
    Path(String),
}

/// A file section being read.
#[derive(Debug, Default)]
struct FileHeader {
    line: usize,
    /// Paths of the `diff --git` line, when there was one and it could be split.
    git_paths: Option<(String, String)>,
    /// Whether the `diff --git` line shows `a/` and `b/` prefixes (None: no git line,
    /// or it could not be told).
    git_prefixed: Option<bool>,
    old: Option<Side>,
    new: Option<Side>,
    rename_from: Option<String>,
    rename_to: Option<String>,
    copy: bool,
    new_file: bool,
    deleted: bool,
    old_mode: Option<FileMode>,
    new_mode: Option<FileMode>,
    hunks: Vec<Hunk>,
}

struct SegmentParser<'s, 'a> {
    lines: &'s [Line<'a>],
    after_fence: Option<Line<'a>>,
}

impl<'s, 'a> SegmentParser<'s, 'a> {
    fn new(lines: &'s [Line<'a>], after_fence: Option<Line<'a>>) -> Self {
        SegmentParser { lines, after_fence }
    }

    fn text(&self, i: usize) -> &'a str {
        self.lines.get(i).map_or("", |l| l.text)
    }

    fn no(&self, i: usize) -> usize {
        self.lines.get(i).map_or(0, |l| l.no)
    }

    fn run(&self, out: &mut Vec<FilePatch>) -> Result<(), ParseError> {
        let mut current: Option<FileHeader> = None;
        let mut i = 0;
        while i < self.lines.len() {
            let text = self.text(i);
            if let Some(rest) = text.strip_prefix("diff --git ") {
                finish(current.take(), out)?;
                let mut header = FileHeader {
                    line: self.no(i),
                    ..FileHeader::default()
                };
                header.git_paths = split_git_paths(rest);
                header.git_prefixed = header
                    .git_paths
                    .as_ref()
                    .map(|(a, b)| a.starts_with("a/") && b.starts_with("b/"));
                i = self.extended_headers(i + 1, &mut header)?;
                current = Some(header);
            } else if self.is_file_header_pair(i) {
                let continues_git = current
                    .as_ref()
                    .is_some_and(|h| h.git_paths.is_some() && h.old.is_none() && h.hunks.is_empty());
                if !continues_git {
                    finish(current.take(), out)?;
                    current = Some(FileHeader {
                        line: self.no(i),
                        ..FileHeader::default()
                    });
                }
                if let Some(header) = current.as_mut() {
                    header.old = Some(side(self.text(i).get(4..).unwrap_or_default()));
                    header.new = Some(side(self.text(i + 1).get(4..).unwrap_or_default()));
                }
                i += 2;
            } else if text.starts_with("@@") {
                let Some(header) = current.as_mut() else {
                    return Err(ParseError::new(self.no(i), ParseErrorKind::HunkWithoutFile));
                };
                let (hunk, next) = self.hunk(i)?;
                header.hunks.push(hunk);
                i = next;
            } else if is_binary_marker(text) {
                return Err(self.binary(i, current.as_ref()));
            } else {
                // Prose, or a header line we do not need (`index …` outside a git header).
                i += 1;
            }
        }
        finish(current, out)
    }

    fn binary(&self, i: usize, header: Option<&FileHeader>) -> ParseError {
        let path = header
            .and_then(|h| {
                h.git_paths
                    .as_ref()
                    .map(|(_, b)| b.clone())
                    .or_else(|| match &h.new {
                        Some(Side::Path(p)) => Some(p.clone()),
                        _ => None,
                    })
            })
            .unwrap_or_else(|| self.text(i).to_owned());
        ParseError::new(self.no(i), ParseErrorKind::Binary { path })
    }

    /// Reads git's extended header lines from `i`; returns the first line after them.
    fn extended_headers(&self, mut i: usize, h: &mut FileHeader) -> Result<usize, ParseError> {
        while i < self.lines.len() {
            let text = self.text(i);
            let line = self.no(i);
            if let Some(m) = text.strip_prefix("old mode ") {
                h.old_mode = Some(mode(line, m)?);
            } else if let Some(m) = text.strip_prefix("new mode ") {
                h.new_mode = Some(mode(line, m)?);
            } else if let Some(m) = text.strip_prefix("deleted file mode ") {
                h.deleted = true;
                h.old_mode = Some(mode(line, m)?);
            } else if let Some(m) = text.strip_prefix("new file mode ") {
                h.new_file = true;
                h.new_mode = Some(mode(line, m)?);
            } else if let Some(p) = text
                .strip_prefix("rename from ")
                .or_else(|| text.strip_prefix("rename old "))
            {
                h.rename_from = Some(unquote(p));
            } else if let Some(p) = text
                .strip_prefix("rename to ")
                .or_else(|| text.strip_prefix("rename new "))
            {
                h.rename_to = Some(unquote(p));
            } else if text.starts_with("copy from ") || text.starts_with("copy to ") {
                h.copy = true;
            } else if text.starts_with("index ")
                || text.starts_with("similarity index ")
                || text.starts_with("dissimilarity index ")
            {
                // Informative only.
            } else {
                return Ok(i);
            }
            i += 1;
        }
        Ok(i)
    }

    /// `--- X` directly followed by `+++ Y`.
    fn is_file_header_pair(&self, i: usize) -> bool {
        self.text(i).starts_with("--- ") && self.text(i + 1).starts_with("+++ ")
    }

    /// A line that starts a new file or hunk, which ends any hunk before it.
    fn is_header(&self, i: usize) -> bool {
        let text = self.text(i);
        text.starts_with("@@")
            || text.starts_with("diff --git ")
            || self.is_file_header_pair(i)
            || is_binary_marker(text)
    }

    /// Reads the hunk whose `@@` line is at `i`; returns it and the index after it.
    fn hunk(&self, i: usize) -> Result<(Hunk, usize), ParseError> {
        let header_no = self.no(i);
        let counts = hunk_header(self.text(i)).map_err(|k| ParseError::new(header_no, k))?;
        let run_end = self.run_end(i + 1);
        let run = self.lines.get(i + 1..run_end).unwrap_or_default();
        let content_end = run.len() - run.iter().rev().take_while(|l| l.text.is_empty()).count();
        let (body_len, confirmed) = body_length(run, content_end, &counts)?;
        if !confirmed {
            self.check_nothing_stray(run_end)?;
        }
        let body = run.get(..body_len).unwrap_or_default();
        let hunk = build_hunk(header_no, counts, body)?;
        Ok((hunk, i + 1 + body_len))
    }

    /// The end (exclusive) of the run of hunk-like lines starting at `i`.
    fn run_end(&self, mut i: usize) -> usize {
        while i < self.lines.len() {
            let text = self.text(i);
            let file_header = self.is_file_header_pair(i) && self.text(i + 2).starts_with("@@");
            if text.starts_with("@@") || !is_hunk_like(text) || file_header {
                break;
            }
            i += 1;
        }
        i
    }

    /// After a hunk whose end the counts did not confirm: refuse if lines that look like
    /// hunk content follow before the next header, since they may belong to the hunk.
    fn check_nothing_stray(&self, run_end: usize) -> Result<(), ParseError> {
        if run_end >= self.lines.len() {
            return match self.after_fence {
                Some(line) if is_content_like(line.text) => Err(ParseError::new(
                    line.no,
                    ParseErrorKind::AmbiguousHunkEnd { after: line.no },
                )),
                _ => Ok(()),
            };
        }
        let mut j = run_end;
        while j < self.lines.len() && !self.is_header(j) {
            if is_content_like(self.text(j)) {
                let after = self.no(j);
                return Err(ParseError::new(after, ParseErrorKind::AmbiguousHunkEnd { after }));
            }
            j += 1;
        }
        Ok(())
    }
}

/// Decides how many lines of `run` form the body, and whether the counts confirmed it.
fn body_length(
    run: &[Line<'_>],
    content_end: usize,
    counts: &HunkCounts,
) -> Result<(usize, bool), ParseError> {
    let Some(mut k) = counted_prefix(run, counts) else {
        return Ok((content_end, false));
    };
    while run.get(k).is_some_and(|l| l.text.starts_with('\\')) {
        k += 1;
    }
    if k >= content_end {
        return Ok((k, true));
    }
    // The counts end the hunk early and hunk lines follow: the counts are wrong, or
    // prose with `-`/`+` bullets follows. Taking the lines is safe when the run ends with
    // a line the file must contain (context or removed), because the match then checks
    // it; a run that ends with added lines could add prose to the file.
    let leftover = run.get(k..content_end).unwrap_or_default();
    let last = leftover.iter().rev().find(|l| !l.text.starts_with('\\'));
    if !last.is_some_and(|l| l.text.starts_with('+')) {
        return Ok((content_end, false));
    }
    let end = k
        .checked_sub(1)
        .and_then(|e| run.get(e))
        .or_else(|| run.first())
        .map_or(0, |l| l.no);
    Err(ParseError::new(end, ParseErrorKind::CountsEndEarly { end }))
}

/// The shortest prefix of `run` whose old and new line tallies equal the header counts.
fn counted_prefix(run: &[Line<'_>], counts: &HunkCounts) -> Option<usize> {
    let (want_old, want_new) = (counts.old_count?, counts.new_count?);
    let (mut old, mut new) = (0usize, 0usize);
    if old == want_old && new == want_new {
        return Some(0);
    }
    for (i, line) in run.iter().enumerate() {
        match line.text.as_bytes().first() {
            None | Some(b' ') => {
                old += 1;
                new += 1;
            }
            Some(b'-') => old += 1,
            Some(b'+') => new += 1,
            _ => {}
        }
        if old == want_old && new == want_new {
            return Some(i + 1);
        }
        if old > want_old || new > want_new {
            return None;
        }
    }
    None
}

fn build_hunk(header_no: usize, counts: HunkCounts, body: &[Line<'_>]) -> Result<Hunk, ParseError> {
    let mut lines: Vec<HunkLine> = Vec::with_capacity(body.len());
    // Index into `lines` of the line each side's marker refers to.
    let (mut old_marker, mut new_marker) = (None, None);
    for line in body {
        let (kind, text) = match line.text.as_bytes().first() {
            None => (LineKind::Context, ""),
            Some(b'\\') => {
                let Some(last) = lines.last() else {
                    return Err(ParseError::new(line.no, ParseErrorKind::MisplacedNoNewline));
                };
                let at = lines.len() - 1;
                if last.kind != LineKind::Added {
                    old_marker = Some((at, line.no));
                }
                if last.kind != LineKind::Removed {
                    new_marker = Some((at, line.no));
                }
                continue;
            }
            Some(b'+') => (LineKind::Added, line.text.get(1..).unwrap_or_default()),
            Some(b'-') => (LineKind::Removed, line.text.get(1..).unwrap_or_default()),
            _ => (LineKind::Context, line.text.get(1..).unwrap_or_default()),
        };
        lines.push(HunkLine {
            kind,
            text: text.to_owned(),
        });
    }
    if lines.is_empty() {
        return Err(ParseError::new(header_no, ParseErrorKind::EmptyHunk));
    }
    check_marker(&lines, old_marker, LineKind::Added)?;
    check_marker(&lines, new_marker, LineKind::Removed)?;
    Ok(Hunk {
        old_start: counts.old_start,
        old_count: counts.old_count,
        new_start: counts.new_start,
        new_count: counts.new_count,
        lines,
        old_missing_newline: old_marker.is_some(),
        new_missing_newline: new_marker.is_some(),
        line: header_no,
    })
}

/// A side's marker must refer to that side's last line: no line of the side (all kinds
/// but `other_side`) may follow it.
fn check_marker(
    lines: &[HunkLine],
    marker: Option<(usize, usize)>,
    other_side: LineKind,
) -> Result<(), ParseError> {
    let Some((at, no)) = marker else {
        return Ok(());
    };
    let later = lines.get(at + 1..).unwrap_or_default();
    if later.iter().any(|l| l.kind != other_side) {
        return Err(ParseError::new(no, ParseErrorKind::MisplacedNoNewline));
    }
    Ok(())
}

/// The numbers of an `@@` line; any may be missing.
#[derive(Clone, Copy, Debug, Default)]
struct HunkCounts {
    old_start: Option<usize>,
    old_count: Option<usize>,
    new_start: Option<usize>,
    new_count: Option<usize>,
}

/// Reads `@@ -a,b +c,d @@ heading` leniently: `@@ @@`, `@@`, `@@ -a +c @@` and missing
/// closing `@@` are all accepted; unreadable numbers count as not stated.
fn hunk_header(text: &str) -> Result<HunkCounts, ParseErrorKind> {
    if text.starts_with("@@@") {
        return Err(ParseErrorKind::CombinedDiff);
    }
    let inner = text.get(2..).unwrap_or_default();
    let inner = inner.split("@@").next().unwrap_or_default();
    let mut counts = HunkCounts::default();
    let (mut seen_old, mut seen_new) = (false, false);
    for token in inner.split_whitespace() {
        if let Some(range) = token.strip_prefix('-').filter(|_| !seen_old) {
            seen_old = true;
            (counts.old_start, counts.old_count) = range_numbers(range);
        } else if let Some(range) = token.strip_prefix('+').filter(|_| !seen_new) {
            seen_new = true;
            (counts.new_start, counts.new_count) = range_numbers(range);
        }
    }
    Ok(counts)
}

/// `a,b` → (a, b); `a` → (a, 1), the unified-diff convention for an omitted count.
fn range_numbers(range: &str) -> (Option<usize>, Option<usize>) {
    match range.split_once(',') {
        Some((start, count)) => (start.parse().ok(), count.parse().ok()),
        None => match range.parse().ok() {
            Some(start) => (Some(start), Some(1)),
            None => (None, None),
        },
    }
}

/// Could be a hunk body line: ` `, `+`, `-`, `\` or empty.
fn is_hunk_like(text: &str) -> bool {
    matches!(text.as_bytes().first(), None | Some(b' ' | b'+' | b'-' | b'\\'))
}

/// A hunk-like line that carries content (not a blank context line).
fn is_content_like(text: &str) -> bool {
    match text.as_bytes().first() {
        Some(b'+' | b'-') => true,
        Some(b' ') => !text.trim().is_empty(),
        _ => false,
    }
}

fn is_binary_marker(text: &str) -> bool {
    text.starts_with("GIT binary patch") || (text.starts_with("Binary files ") && text.ends_with(" differ"))
}

fn mode(line: usize, text: &str) -> Result<FileMode, ParseError> {
    match text.trim() {
        "100644" | "100664" | "644" => Ok(FileMode::Regular),
        "100755" | "755" => Ok(FileMode::Executable),
        other => Err(ParseError::new(
            line,
            ParseErrorKind::UnsupportedMode {
                mode: other.to_owned(),
            },
        )),
    }
}

/// The path of a `---`/`+++` line: unquoted, cut at a tab (timestamps), trimmed.
fn side(rest: &str) -> Side {
    let path = if rest.starts_with('"') {
        unquote(rest)
    } else {
        rest.split('\t').next().unwrap_or_default().trim_end().to_owned()
    };
    if path == "/dev/null" {
        Side::DevNull
    } else {
        Side::Path(path)
    }
}

/// Splits the rest of a `diff --git` line into its two paths, when that can be done
/// without guessing: quoted names, or two halves that name the same file.
fn split_git_paths(rest: &str) -> Option<(String, String)> {
    if rest.starts_with('"') {
        let (first, after) = take_quoted(rest)?;
        let second = after.strip_prefix(' ')?;
        return Some((first, unquote(second)));
    }
    if let Some(idx) = rest.find(" \"") {
        let first = rest.get(..idx)?.to_owned();
        return Some((first, unquote(rest.get(idx + 1..)?)));
    }
    // Same name on both sides: "a/P b/P" or, without prefixes, "P P".
    let half = rest.len().checked_sub(1)? / 2;
    let (a, b) = (rest.get(..half)?, rest.get(half + 1..)?);
    let same = a == b || (a.starts_with("a/") && b.starts_with("b/") && a.get(2..) == b.get(2..));
    if rest.get(half..half + 1) == Some(" ") && same {
        return Some((a.to_owned(), b.to_owned()));
    }
    // Different names (a rename): split at " b/" when that is unique.
    let mut splits = rest.match_indices(" b/");
    match (splits.next(), splits.next()) {
        (Some((idx, _)), None) if rest.starts_with("a/") => {
            Some((rest.get(..idx)?.to_owned(), rest.get(idx + 1..)?.to_owned()))
        }
        _ => None,
    }
}

/// Unquotes a C-style quoted name if `s` is one; otherwise returns it trimmed.
fn unquote(s: &str) -> String {
    match take_quoted(s) {
        Some((name, _)) => name,
        None => s.trim_end().to_owned(),
    }
}

/// Reads a C-quoted string at the start of `s`; returns it and the rest after the quote.
fn take_quoted(s: &str) -> Option<(String, &str)> {
    let mut bytes = Vec::new();
    let mut chars = s.strip_prefix('"')?.char_indices();
    let body = s.get(1..)?;
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let name = String::from_utf8(bytes).ok()?;
                return Some((name, body.get(i + 1..)?));
            }
            '\\' => {
                let (_, e) = chars.next()?;
                match e {
                    'n' => bytes.push(b'\n'),
                    't' => bytes.push(b'\t'),
                    'r' => bytes.push(b'\r'),
                    'a' => bytes.push(7),
                    'b' => bytes.push(8),
                    'f' => bytes.push(12),
                    'v' => bytes.push(11),
                    '0'..='7' => {
                        let mut value = e.to_digit(8)?;
                        for _ in 0..2 {
                            let (_, d) = chars.next()?;
                            value = value * 8 + d.to_digit(8)?;
                        }
                        bytes.push(u8::try_from(value).ok()?);
                    }
                    other => {
                        let mut buf = [0u8; 4];
                        bytes.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
                    }
                }
            }
            other => {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    None
}

/// Turns a finished section into a [`FilePatch`].
fn finish(header: Option<FileHeader>, out: &mut Vec<FilePatch>) -> Result<(), ParseError> {
    let Some(h) = header else {
        return Ok(());
    };
    let line = h.line;
    if h.copy {
        return Err(ParseError::new(line, ParseErrorKind::Copy));
    }
    let op = file_op(&h)?;
    if matches!(op, FileOp::Create { .. }) && !is_valid_new_file(&h.hunks) {
        return Err(ParseError::new(line, ParseErrorKind::BadNewFile));
    }
    out.push(FilePatch {
        op,
        hunks: h.hunks,
        old_mode: h.old_mode,
        new_mode: h.new_mode,
        line,
    });
    Ok(())
}

fn is_valid_new_file(hunks: &[Hunk]) -> bool {
    hunks.len() <= 1
        && hunks
            .iter()
            .all(|h| h.lines.iter().all(|l| l.kind == LineKind::Added))
}

fn file_op(h: &FileHeader) -> Result<FileOp, ParseError> {
    let line = h.line;
    if h.rename_from.is_some() || h.rename_to.is_some() {
        let (Some(from), Some(to)) = (&h.rename_from, &h.rename_to) else {
            return Err(ParseError::new(line, ParseErrorKind::MissingPath));
        };
        return Ok(FileOp::Rename {
            from: repo_path(line, from)?,
            to: repo_path(line, to)?,
        });
    }
    let (git_old, git_new) = match &h.git_paths {
        Some((a, b)) => (Some(Side::Path(a.clone())), Some(Side::Path(b.clone()))),
        None => (None, None),
    };
    let old = h.old.clone().or(git_old);
    let new = h.new.clone().or(git_new);
    let creates = h.new_file || old == Some(Side::DevNull);
    let deletes = h.deleted || new == Some(Side::DevNull);
    let path_of = |side: &Option<Side>| match side {
        Some(Side::Path(p)) => Some(p.clone()),
        _ => None,
    };
    let (old, new) = (path_of(&old), path_of(&new));
    let raw = match (creates, deletes) {
        (true, true) => return Err(ParseError::new(line, ParseErrorKind::MissingPath)),
        (true, false) => strip_one(new.as_deref(), "b/", h.git_prefixed),
        (false, true) => strip_one(old.as_deref(), "a/", h.git_prefixed),
        (false, false) => same_path(line, old.as_deref(), new.as_deref(), h.git_prefixed)?,
    };
    let Some(raw) = raw else {
        return Err(ParseError::new(line, ParseErrorKind::MissingPath));
    };
    let path = repo_path(line, &raw)?;
    Ok(match (creates, deletes) {
        (true, _) => FileOp::Create { path },
        (_, true) => FileOp::Delete { path },
        _ => FileOp::Modify { path },
    })
}

/// Removes git's prefix from a lone path (the other side being `/dev/null`).
fn strip_one(path: Option<&str>, prefix: &str, git_prefixed: Option<bool>) -> Option<String> {
    let path = path?;
    Some(match git_prefixed {
        Some(true) => path.strip_prefix(prefix).unwrap_or(path).to_owned(),
        Some(false) => path.to_owned(),
        None => strip_any(path).to_owned(),
    })
}

/// `a/x` or `b/x` → `x`: LLMs mix the two prefixes up.
fn strip_any(path: &str) -> &str {
    path.strip_prefix("a/")
        .or_else(|| path.strip_prefix("b/"))
        .unwrap_or(path)
}

/// The path of a modification: both sides must name the same file.
fn same_path(
    line: usize,
    old: Option<&str>,
    new: Option<&str>,
    git_prefixed: Option<bool>,
) -> Result<Option<String>, ParseError> {
    let (old, new) = match (old, new) {
        (Some(o), Some(n)) => (o, n),
        (Some(p), None) | (None, Some(p)) => return Ok(Some(strip_any(p).to_owned())),
        (None, None) => return Ok(None),
    };
    let stripped = match git_prefixed {
        Some(true) => (
            old.strip_prefix("a/").unwrap_or(old),
            new.strip_prefix("b/").unwrap_or(new),
        ),
        Some(false) => (old, new),
        None => (strip_any(old), strip_any(new)),
    };
    if stripped.0 == stripped.1 {
        return Ok(Some(stripped.0.to_owned()));
    }
    if old == new {
        return Ok(Some(old.to_owned()));
    }
    Err(ParseError::new(
        line,
        ParseErrorKind::PathsDiffer {
            old: old.to_owned(),
            new: new.to_owned(),
        },
    ))
}

/// Refuses answers that change a path twice, or use a path both as a file and as a
/// directory.
pub(crate) fn check_distinct_paths(files: &[FilePatch]) -> Result<(), ParseError> {
    let mut seen: HashMap<&RepoPath, usize> = HashMap::new();
    for file in files {
        for path in file.op.paths() {
            if let Some(first) = seen.insert(path, file.line) {
                return Err(ParseError::new(
                    file.line,
                    ParseErrorKind::DuplicatePath {
                        path: path.clone(),
                        first,
                    },
                ));
            }
        }
    }
    let by_str: HashMap<&str, &RepoPath> = seen.keys().map(|p| (p.as_str(), *p)).collect();
    for file in files {
        for inner in file.op.paths() {
            let s = inner.as_str();
            let ancestor = s
                .match_indices('/')
                .find_map(|(idx, _)| s.get(..idx).and_then(|a| by_str.get(a)));
            if let Some(outer) = ancestor {
                return Err(ParseError::new(
                    file.line,
                    ParseErrorKind::FileDirectoryConflict {
                        file: (*outer).clone(),
                        inner: inner.clone(),
                        other: file.line,
                    },
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
