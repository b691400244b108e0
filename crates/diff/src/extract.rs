//! Cuts an LLM answer into the pieces the parser reads: full-file blocks, and segments of
//! lines that may hold unified diffs.
//!
//! An answer mixes the patch with prose and markdown. Rather than guess which fence holds
//! the patch, this module only draws *boundaries* that no hunk can cross:
//!
//! - a markdown fence line (```` ``` ```` or `~~~` at column 0, with or without an info
//!   string) ends a segment. A hunk line never starts at column 0 with a backtick or a
//!   tilde (its first character is ` `, `+`, `-` or `\`), so a fence is never hunk content;
//! - a full-file block (`=== FILE:` … `=== END FILE`) is taken out whole, first, so that
//!   fences *inside* a file's content (a README with code blocks) stay content.
//!
//! Prose inside a segment is skipped by the parser, which only starts reading at file and
//! hunk headers. Lines are split on `\n` with trailing `\r`s removed, so a patch that
//! went through a CRLF channel reads like any other; a leading byte-order mark is dropped.

use crate::error::{ParseError, ParseErrorKind};

/// One line of the answer with its 1-based number, for messages.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Line<'a> {
    /// 1-based line number in the whole answer.
    pub no: usize,
    /// The text, without `\n` and without trailing `\r`s.
    pub text: &'a str,
}

/// A piece of the answer, in order.
#[derive(Debug)]
pub(crate) enum Piece<'a> {
    /// Lines between boundaries; may hold diffs, prose, or both.
    Segment {
        /// The lines.
        lines: Vec<Line<'a>>,
        /// When the segment was ended by a fence line: the line right after that fence.
        /// A hunk cut short by a fence must not silently lose lines that follow it, so
        /// the parser looks at this line.
        after_fence: Option<Line<'a>>,
    },
    /// A full-file block.
    FileBlock {
        /// Line of the `=== FILE:` marker.
        line: usize,
        /// The path as written after the marker, trimmed.
        path: &'a str,
        /// The content lines, verbatim.
        content: Vec<&'a str>,
    },
}

/// The marker that opens a full-file block.
pub(crate) const FILE_START: &str = "=== FILE:";
/// The marker that closes a full-file block.
pub(crate) const FILE_END: &str = "=== END FILE";

/// Splits `text` into lines and then into pieces; see the module docs.
pub(crate) fn split(text: &str) -> Result<Vec<Piece<'_>>, ParseError> {
    let lines = lines(text);
    let mut pieces = Vec::new();
    let mut current: Vec<Line<'_>> = Vec::new();
    let mut i = 0;
    while let Some(line) = lines.get(i) {
        if line.text.starts_with(FILE_START) {
            flush(&mut pieces, &mut current, None);
            let (block, next) = file_block(&lines, i)?;
            pieces.push(block);
            i = next;
        } else if line.text.trim_end() == FILE_END {
            // A block's content held a line `=== END FILE`, which closed it early: the
            // rest of that content would be lost without a word.
            return Err(ParseError::new(line.no, ParseErrorKind::StrayEndMarker));
        } else if is_fence(line.text) {
            let after = lines.get(i + 1).copied();
            flush(&mut pieces, &mut current, after);
            i += 1;
        } else {
            current.push(*line);
            i += 1;
        }
    }
    flush(&mut pieces, &mut current, None);
    Ok(pieces)
}

/// All lines of `text`, numbered from 1.
pub(crate) fn lines(text: &str) -> Vec<Line<'_>> {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let body = text.strip_suffix('\n').unwrap_or(text);
    if text.is_empty() {
        return Vec::new();
    }
    body.split('\n')
        .enumerate()
        .map(|(i, raw)| Line {
            no: i + 1,
            // All trailing CRs: a CRLF file's diff sent through a CRLF channel has two.
            text: raw.trim_end_matches('\r'),
        })
        .collect()
}

/// A markdown code-fence line at column 0.
pub(crate) fn is_fence(text: &str) -> bool {
    text.starts_with("```") || text.starts_with("~~~")
}

fn flush<'a>(pieces: &mut Vec<Piece<'a>>, current: &mut Vec<Line<'a>>, after: Option<Line<'a>>) {
    if !current.is_empty() {
        pieces.push(Piece::Segment {
            lines: std::mem::take(current),
            after_fence: after,
        });
    }
}

/// Reads the block whose `=== FILE:` line is `lines[start]`; returns it and the index of
/// the line after `=== END FILE`.
fn file_block<'a>(lines: &[Line<'a>], start: usize) -> Result<(Piece<'a>, usize), ParseError> {
    let header = lines.get(start).copied().unwrap_or(Line { no: 0, text: "" });
    let path = unwrap_path(header.text.strip_prefix(FILE_START).unwrap_or_default());
    let mut content = Vec::new();
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        if line.text.trim_end() == FILE_END {
            let block = Piece::FileBlock {
                line: header.no,
                path,
                content,
            };
            return Ok((block, i + 1));
        }
        if line.text.starts_with(FILE_START) {
            // Content is verbatim, so this could be content; but a missing END marker
            // (a truncated or sloppy answer) is far likelier, and guessing wrong would
            // write half of one file into another.
            return Err(ParseError::new(
                line.no,
                ParseErrorKind::NestedFileBlock {
                    path: path.to_owned(),
                },
            ));
        }
        content.push(line.text);
    }
    Err(ParseError::new(
        header.no,
        ParseErrorKind::UnterminatedFileBlock {
            path: path.to_owned(),
        },
    ))
}

/// The path of a `=== FILE:` line: trimmed, and out of the backticks or quotes an LLM
/// may put around it (a file name that starts *and* ends with one is not credible).
fn unwrap_path(raw: &str) -> &str {
    let path = raw.trim();
    for quote in ['`', '"', '\''] {
        if let Some(inner) = path.strip_prefix(quote).and_then(|p| p.strip_suffix(quote)) {
            return inner.trim();
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(text: &str) -> Vec<Vec<&str>> {
        split(text)
            .unwrap()
            .into_iter()
            .filter_map(|p| match p {
                Piece::Segment { lines, .. } => Some(lines.iter().map(|l| l.text).collect()),
                Piece::FileBlock { .. } => None,
            })
            .collect()
    }

    #[test]
    fn fences_split_segments_and_crlf_is_stripped() {
        let text = "Here:\r\n```diff\r\n--- a/x\r\n```\r\nThanks";
        assert_eq!(
            segments(text),
            vec![vec!["Here:"], vec!["--- a/x"], vec!["Thanks"]]
        );
    }

    #[test]
    fn file_block_keeps_inner_fences_verbatim() {
        let text = "```\n=== FILE: README.md\n# T\n```sh\nls\n```\n=== END FILE\n```\n";
        let pieces = split(text).unwrap();
        assert_eq!(pieces.len(), 1);
        match &pieces[0] {
            Piece::FileBlock { path, content, line } => {
                assert_eq!(*path, "README.md");
                assert_eq!(*line, 2);
                assert_eq!(content, &vec!["# T", "```sh", "ls", "```"]);
            }
            Piece::Segment { .. } => panic!("expected a file block"),
        }
    }

    #[test]
    fn unterminated_and_nested_blocks_are_refused() {
        let err = split("=== FILE: a\nx\n").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(matches!(err.kind, ParseErrorKind::UnterminatedFileBlock { .. }));
        let err = split("=== FILE: a\nx\n=== FILE: b\ny\n=== END FILE\n").unwrap_err();
        assert_eq!(err.line, 3);
    }

    #[test]
    fn stray_end_marker_is_refused() {
        // Content that itself holds `=== END FILE` closes the block early.
        let err = split("=== FILE: a.md\nx\n=== END FILE\nmore content\n=== END FILE\n").unwrap_err();
        assert_eq!((err.line, err.kind), (5, ParseErrorKind::StrayEndMarker));
    }

    #[test]
    fn quoted_paths_in_file_blocks_are_unwrapped() {
        for header in [
            "=== FILE: `src/a.rs`",
            "=== FILE: \"src/a.rs\" ",
            "=== FILE:src/a.rs",
        ] {
            let text = format!("{header}\nx\n=== END FILE\n");
            let pieces = split(&text).unwrap();
            match &pieces[0] {
                Piece::FileBlock { path, .. } => assert_eq!(*path, "src/a.rs", "{header}"),
                Piece::Segment { .. } => panic!("expected a file block"),
            }
        }
    }

    #[test]
    fn segment_cut_by_fence_remembers_the_next_line() {
        let pieces = split("a\n```\n+b\n").unwrap();
        match &pieces[0] {
            Piece::Segment { after_fence, .. } => {
                assert_eq!(after_fence.map(|l| (l.no, l.text)), Some((3, "+b")))
            }
            Piece::FileBlock { .. } => panic!("expected a segment"),
        }
    }

    #[test]
    fn numbering_and_bom() {
        let l = lines("\u{FEFF}a\nb\n");
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].no, l[0].text), (1, "a"));
        assert!(lines("").is_empty());
        assert_eq!(lines("\n").len(), 1);
    }
}
