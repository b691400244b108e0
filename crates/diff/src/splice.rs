//! Hunks spliced into a file's content, in memory: the placements come from
//! [`crate::matching`], the line endings and final newline are kept as [`crate::text`]
//! describes. Nothing here touches the disk.

use std::borrow::Cow;

use crate::matching::{self, Placement};
use crate::model::{Hunk, LineKind};
use crate::report::HunkReport;
use crate::text::{self, FileText, OutLine};

/// Lines added and removed between `old` and `new`, counted outside their common prefix
/// and suffix (cheap, and exact for a single changed region).
pub(crate) fn changed_middle(old: &[&[u8]], new: &[&[u8]]) -> (usize, usize) {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let (old_rest, new_rest) = (
        old.get(prefix..).unwrap_or_default(),
        new.get(prefix..).unwrap_or_default(),
    );
    let suffix = old_rest
        .iter()
        .rev()
        .zip(new_rest.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    (new_rest.len() - suffix, old_rest.len() - suffix)
}

/// The result of applying hunks to a file's content.
pub(crate) struct Edit {
    pub bytes: Vec<u8>,
    pub hunks: Vec<HunkReport>,
    pub added: usize,
    pub removed: usize,
    /// Lines in the result (a deletion needs 0).
    pub lines_left: usize,
    /// Pure insertions placed by their stated line alone: (1-based hunk, patch line).
    pub by_line_only: Vec<(usize, usize)>,
}

impl Edit {
    pub(crate) fn unchanged(bytes: Vec<u8>) -> Self {
        let lines_left = FileText::new(&bytes).lines.len();
        Edit {
            bytes,
            hunks: Vec::new(),
            added: 0,
            removed: 0,
            lines_left,
            by_line_only: Vec::new(),
        }
    }
}

/// Places `hunks` in `bytes` and splices them in.
pub(crate) fn edit(bytes: &[u8], hunks: &[Hunk]) -> Result<Edit, Vec<matching::HunkRefusal>> {
    let file = FileText::new(bytes);
    let lines: Vec<&[u8]> = file.lines.iter().map(|l| l.text).collect();
    let placements = matching::place(&lines, hunks)?;
    let mut order: Vec<usize> = (0..hunks.len()).collect();
    order.sort_by_key(|&i| placements.get(i).map(|p| (p.pos, p.old_len > 0)));
    let mut out: Vec<OutLine<'_>> = Vec::with_capacity(file.lines.len());
    let (mut added, mut removed, mut cursor) = (0, 0, 0);
    for &i in &order {
        let (Some(hunk), Some(place)) = (hunks.get(i), placements.get(i)) else {
            continue;
        };
        copy_lines(&file, cursor, place.pos, &mut out);
        let (a, r) = splice_hunk(&file, hunk, place, &mut out);
        added += a;
        removed += r;
        cursor = place.pos + place.old_len;
    }
    copy_lines(&file, cursor, file.lines.len(), &mut out);
    let final_newline = final_newline(&file, hunks, &placements, &order);
    let lines_left = out.len();
    let bytes = text::render(&out, file.dominant, final_newline, file.bom);
    let reports = placements
        .iter()
        .enumerate()
        .map(|(i, p)| HunkReport {
            index: i + 1,
            matched: p.kind,
            line: p.pos + 1,
        })
        .collect();
    let by_line_only = placements
        .iter()
        .zip(hunks)
        .enumerate()
        .filter(|(_, (p, _))| p.by_line_only)
        .map(|(i, (_, h))| (i + 1, h.line))
        .collect();
    Ok(Edit {
        bytes,
        hunks: reports,
        added,
        removed,
        lines_left,
        by_line_only,
    })
}

fn copy_lines<'a>(file: &FileText<'a>, from: usize, to: usize, out: &mut Vec<OutLine<'a>>) {
    for line in file.lines.get(from..to).unwrap_or_default() {
        out.push(OutLine {
            text: Cow::Borrowed(line.text),
            eol: Some(line.eol),
        });
    }
}

/// Appends the hunk's new side; context lines keep the file's bytes. Returns (added,
/// removed).
fn splice_hunk<'a>(
    file: &FileText<'a>,
    hunk: &'a Hunk,
    place: &Placement,
    out: &mut Vec<OutLine<'a>>,
) -> (usize, usize) {
    let (mut added, mut removed) = (0, 0);
    let mut at = place.pos;
    for line in &hunk.lines {
        match line.kind {
            LineKind::Context => {
                if let Some(old) = file.lines.get(at) {
                    out.push(OutLine {
                        text: Cow::Borrowed(old.text),
                        eol: Some(old.eol),
                    });
                }
                at += 1;
            }
            LineKind::Removed => {
                removed += 1;
                at += 1;
            }
            LineKind::Added => {
                let bytes = line.text.as_bytes();
                let text = match &place.shift {
                    // `place` checked that every added line can be shifted.
                    Some(shift) => shift.apply(bytes).unwrap_or(Cow::Borrowed(bytes)),
                    None => Cow::Borrowed(bytes),
                };
                out.push(OutLine { text, eol: None });
                added += 1;
            }
        }
    }
    (added, removed)
}

/// Whether the result ends with a newline: as the file did, unless the hunk that ends
/// the file says otherwise with `\ No newline at end of file` markers.
fn final_newline(file: &FileText<'_>, hunks: &[Hunk], placements: &[Placement], order: &[usize]) -> bool {
    let n = file.lines.len();
    let last = order
        .last()
        .and_then(|&i| Some((hunks.get(i)?, placements.get(i)?)));
    match last {
        Some((hunk, place)) if place.pos + place.old_len == n => {
            if hunk.new_missing_newline {
                false
            } else if hunk.old_missing_newline {
                true
            } else {
                file.final_newline() || n == 0
            }
        }
        _ => file.final_newline(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::HunkLine;

    fn hunk(start: usize, count: usize, body: &[(LineKind, &str)]) -> Hunk {
        Hunk {
            old_start: Some(start),
            old_count: Some(count),
            new_start: None,
            new_count: None,
            lines: body
                .iter()
                .map(|(kind, text)| HunkLine {
                    kind: *kind,
                    text: (*text).to_owned(),
                })
                .collect(),
            old_missing_newline: false,
            new_missing_newline: false,
            line: 1,
        }
    }

    use LineKind::{Added as A, Context as C, Removed as R};

    #[test]
    fn mixed_endings_keep_each_line_and_new_lines_take_the_dominant_one() {
        let e = edit(
            b"a\r\nb\nc\r\nd\r\n",
            &[hunk(2, 2, &[(C, "b"), (R, "c"), (A, "C")])],
        )
        .unwrap();
        assert_eq!(e.bytes, b"a\r\nb\nC\r\nd\r\n");
        assert_eq!((e.added, e.removed, e.lines_left), (1, 1, 4));
    }

    #[test]
    fn appending_after_a_last_line_without_newline_gives_it_one() {
        let e = edit(b"a\nb", &[hunk(2, 1, &[(C, "b"), (A, "c")])]).unwrap();
        assert_eq!(e.bytes, b"a\nb\nc");
        let mut h = hunk(2, 1, &[(R, "b"), (A, "b"), (A, "c")]);
        h.old_missing_newline = true;
        assert_eq!(edit(b"a\nb", &[h]).unwrap().bytes, b"a\nb\nc\n");
    }

    #[test]
    fn byte_order_mark_is_kept() {
        let e = edit(b"\xEF\xBB\xBFa\nb\n", &[hunk(1, 1, &[(R, "a"), (A, "A")])]).unwrap();
        assert_eq!(e.bytes, b"\xEF\xBB\xBFA\nb\n");
    }

    #[test]
    fn changed_middle_counts_outside_common_ends() {
        let l = |s: &'static str| s.as_bytes();
        assert_eq!(
            changed_middle(&[l("a"), l("b"), l("c")], &[l("a"), l("x"), l("y"), l("c")]),
            (2, 1)
        );
        assert_eq!(changed_middle(&[], &[l("a")]), (1, 0));
        assert_eq!(changed_middle(&[l("a")], &[l("a")]), (0, 0));
    }
}
