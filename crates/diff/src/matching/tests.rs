use super::*;
use crate::model::HunkLine;

/// A hunk from `(prefix, text)` lines and a stated old start/count.
fn hunk(old_start: Option<usize>, old_count: Option<usize>, body: &[&str]) -> Hunk {
    let lines = body
        .iter()
        .map(|l| {
            let (kind, text) = match l.as_bytes().first() {
                Some(b'-') => (LineKind::Removed, &l[1..]),
                Some(b'+') => (LineKind::Added, &l[1..]),
                _ => (LineKind::Context, l.get(1..).unwrap_or("")),
            };
            HunkLine {
                kind,
                text: text.to_owned(),
            }
        })
        .collect();
    Hunk {
        old_start,
        old_count,
        new_start: None,
        new_count: None,
        lines,
        old_missing_newline: false,
        new_missing_newline: false,
        line: 1,
    }
}

fn file(text: &str) -> Vec<&[u8]> {
    text.lines().map(str::as_bytes).collect()
}

fn one(file_text: &str, h: Hunk) -> Result<Placement, RefusalKind> {
    let lines = file(file_text);
    match place(&lines, std::slice::from_ref(&h)) {
        Ok(mut p) => Ok(p.remove(0)),
        Err(mut r) => Err(r.remove(0).1),
    }
}

const ABC: &str = "a\nb\nc\nd\ne\nf\n";

#[test]
fn exact_at_stated_line() {
    let p = one(ABC, hunk(Some(2), Some(2), &[" b", "-c", "+C"])).unwrap();
    assert_eq!((p.pos, p.kind), (1, MatchKind::Exact));
}

#[test]
fn wrong_line_number_gives_offset() {
    let p = one(ABC, hunk(Some(5), Some(2), &[" b", "-c", "+C"])).unwrap();
    assert_eq!((p.pos, p.kind), (1, MatchKind::Offset { by: -3 }));
}

#[test]
fn bare_header_unique_match_is_searched() {
    let p = one(ABC, hunk(None, None, &[" b", "-c", "+C"])).unwrap();
    assert_eq!((p.pos, p.kind), (1, MatchKind::Searched));
}

const REPEATED: &str = "x\n}\ny\n}\nz\n}\n";

#[test]
fn several_matches_take_the_strictly_nearest() {
    let p = one(REPEATED, hunk(Some(6), Some(1), &["-}", "+};"])).unwrap();
    assert_eq!(p.pos, 5);
    let p = one(REPEATED, hunk(Some(3), Some(1), &["-}", "+};"]));
    assert!(p.is_err(), "line 3 is equally near lines 2 and 4");
    let p = one(REPEATED, hunk(Some(1), Some(1), &["-}", "+};"])).unwrap();
    assert_eq!(p.pos, 1);
}

#[test]
fn several_matches_with_a_stated_line_past_the_end_are_refused() {
    let e = one(REPEATED, hunk(Some(40), Some(1), &["-}", "+};"])).unwrap_err();
    assert_eq!(
        e,
        RefusalKind::AmbiguousPastEnd {
            candidates: vec![2, 4, 6],
            stated: 40,
            len: 6
        }
    );
}

#[test]
fn uneven_offsets_of_other_hunks_widen_the_doubt() {
    // Anchors: "p" stated 1 found at line 1 (offset 0); "q" stated 20 found at line 14
    // (offset -6). "}" stated at line 9 has candidates 5, 8 and 12.
    let text = "p\nx\nx\nx\n}\nx\nx\n}\nx\nx\nx\n}\nx\nq\n";
    let lines = file(text);
    let hunks = [
        hunk(Some(1), Some(1), &["-p", "+P"]),
        hunk(Some(20), Some(1), &["-q", "+Q"]),
        hunk(Some(9), Some(1), &["-}", "+};"]),
    ];
    let e = place(&lines, &hunks).unwrap_err();
    assert_eq!(
        e,
        vec![(
            2,
            RefusalKind::AmbiguousUneven {
                candidates: vec![5, 8, 12],
                chosen: 8,
                rival: 5,
                spread: 6
            }
        )]
    );
    // With consistent offsets the nearest one is taken.
    let hunks = [
        hunk(Some(1), Some(1), &["-p", "+P"]),
        hunk(Some(14), Some(1), &["-q", "+Q"]),
        hunk(Some(9), Some(1), &["-}", "+};"]),
    ];
    assert_eq!(place(&lines, &hunks).unwrap()[2].pos, 7);
}

#[test]
fn several_matches_without_line_or_with_a_tie_are_refused() {
    let e = one(REPEATED, hunk(None, None, &["-}", "+};"])).unwrap_err();
    assert_eq!(
        e,
        RefusalKind::AmbiguousNoLine {
            candidates: vec![2, 4, 6]
        }
    );
    // Stated line 3 ("y"): lines 2 and 4 are equally near.
    let e = one(REPEATED, hunk(Some(3), Some(1), &["-}", "+};"])).unwrap_err();
    assert_eq!(
        e,
        RefusalKind::AmbiguousTie {
            candidates: vec![2, 4, 6],
            tied: (2, 4),
            stated: 3
        }
    );
}

#[test]
fn drift_of_other_hunks_that_disagrees_with_nearest_is_refused() {
    let text = "a\n}\nb\n}\nc\n}\nd\ne\nf\ng\n";
    let lines = file(text);
    // Hunk 1 is unique ("g" at line 10) but stated at line 14: offset -4.
    // Hunk 2 ("}" stated at line 8) is nearest to line 6, but -4 points at line 4.
    let hunks = [
        hunk(Some(14), Some(1), &["-g", "+G"]),
        hunk(Some(8), Some(1), &["-}", "+};"]),
    ];
    let e = place(&lines, &hunks).unwrap_err();
    assert_eq!(
        e[0].1,
        RefusalKind::AmbiguousDrift {
            candidates: vec![2, 4, 6],
            nearest: 6,
            drifted: 4,
            offset: -4
        }
    );
    // When the offset leads to a tie, that is no agreement either.
    let hunks = [
        hunk(Some(14), Some(1), &["-g", "+G"]),
        hunk(Some(7), Some(1), &["-}", "+};"]),
    ];
    let e = place(&lines, &hunks).unwrap_err();
    assert!(
        matches!(e[0].1, RefusalKind::AmbiguousDrift { nearest: 6, .. }),
        "{e:?}"
    );
    // An exact match at the stated line wins regardless (DESIGN §8, rule 1).
    let hunks = [
        hunk(Some(14), Some(1), &["-g", "+G"]),
        hunk(Some(2), Some(1), &["-}", "+};"]),
    ];
    assert_eq!(place(&lines, &hunks).unwrap()[1].pos, 1);
}

#[test]
fn whitespace_insensitive_fallback_reindents_added_lines() {
    let text = "fn f() {\n        let a = 1;\n        let b = 2;\n}\n";
    let h = hunk(
        Some(2),
        Some(2),
        &[
            "     let a = 1;",
            "-    let b = 2;",
            "+    let b = 3;",
            "+    if a {",
            "+        go();",
            "+    }",
        ],
    );
    let lines = file(text);
    let p = place(&lines, std::slice::from_ref(&h)).unwrap().remove(0);
    assert_eq!(p.kind, MatchKind::WhitespaceInsensitive);
    let shift = p.shift.unwrap();
    assert_eq!(shift, Shift::Add(b"    ".to_vec()));
    assert_eq!(
        shift.apply(b"        go();").unwrap().as_ref(),
        b"            go();"
    );
}

#[test]
fn inconsistent_indentation_shift_is_refused() {
    let text = "  a\n      b\nc\n";
    let e = one(text, hunk(Some(1), Some(2), &["    a", "     b", "+  new"])).unwrap_err();
    assert_eq!(e, RefusalKind::InconsistentIndent { line: 1 });
}

#[test]
fn exact_elsewhere_conflicts_with_loose_match_at_stated_line() {
    // Stated line 1 matches ignoring whitespace; line 3 matches exactly.
    let text = "  x\n  y\nx\ny\n";
    let e = one(text, hunk(Some(1), Some(2), &[" x", "-y", "+Y"])).unwrap_err();
    assert_eq!(e, RefusalKind::ConflictingMatches { exact: 3, stated: 1 });
}

#[test]
fn nothing_found_gives_a_hint() {
    let e = one(ABC, hunk(Some(1), Some(3), &[" b", " c", "-x"])).unwrap_err();
    assert_eq!(e, RefusalKind::NoMatch { best: Some((2, 2)) });
}

#[test]
fn pure_insertion_rules() {
    // Consistent header, line exists: placed there.
    let p = one(ABC, hunk(Some(2), Some(0), &["+new"])).unwrap();
    assert_eq!((p.pos, p.old_len), (2, 0));
    // Bare header into a non-empty file: refused.
    let e = one(ABC, hunk(None, None, &["+new"])).unwrap_err();
    assert_eq!(
        e,
        RefusalKind::InsertionPosition {
            why: InsertionProblem::NoLine
        }
    );
    // "-2" means "-2,1": contradicts the empty old side.
    let e = one(ABC, hunk(Some(2), Some(1), &["+new"])).unwrap_err();
    assert_eq!(
        e,
        RefusalKind::InsertionPosition {
            why: InsertionProblem::InconsistentHeader
        }
    );
    let e = one(ABC, hunk(Some(9), Some(0), &["+new"])).unwrap_err();
    assert_eq!(
        e,
        RefusalKind::InsertionPosition {
            why: InsertionProblem::PastEnd { stated: 9, len: 6 }
        }
    );
    // An empty file has one place.
    let p = one("", hunk(None, None, &["+new"])).unwrap();
    assert_eq!(p.pos, 0);
}

#[test]
fn pure_insertion_refused_when_other_hunks_drifted() {
    let lines = file(ABC);
    let hunks = [
        hunk(Some(4), Some(1), &["-b", "+B"]),
        hunk(Some(3), Some(0), &["+new"]),
    ];
    let e = place(&lines, &hunks).unwrap_err();
    assert_eq!(
        e[0],
        (
            1,
            RefusalKind::InsertionPosition {
                why: InsertionProblem::Drift { offset: -2 }
            }
        )
    );
}

#[test]
fn overlapping_hunks_are_refused() {
    let lines = file(ABC);
    let hunks = [
        hunk(Some(2), Some(2), &[" b", "-c", "+C"]),
        hunk(Some(3), Some(2), &["-c", " d", "+D"]),
    ];
    let e = place(&lines, &hunks).unwrap_err();
    assert_eq!(
        e,
        vec![(
            1,
            RefusalKind::Overlap {
                other: 1,
                start: 3,
                end: 3
            }
        )]
    );
    let hunks = [hunk(Some(2), Some(0), &["+x"]), hunk(Some(2), Some(0), &["+y"])];
    let e = place(&lines, &hunks).unwrap_err();
    assert_eq!(
        e[0].1,
        RefusalKind::InsertionPosition {
            why: InsertionProblem::SamePlace { other: 1 }
        }
    );
}

#[test]
fn adjacent_hunks_and_any_order_are_fine() {
    let lines = file(ABC);
    let hunks = [
        hunk(Some(4), Some(2), &["-d", " e", "+E"]),
        hunk(Some(1), Some(3), &[" a", "-b", " c"]),
    ];
    let p = place(&lines, &hunks).unwrap();
    assert_eq!((p[0].pos, p[1].pos), (3, 0));
}

#[test]
fn no_newline_marker_pins_the_hunk_to_the_end() {
    let text = "x\ny\nx\ny";
    let mut h = hunk(None, None, &[" x", "-y", "+z"]);
    h.old_missing_newline = true;
    let p = one(text, h).unwrap();
    assert_eq!(p.pos, 2);
}

#[test]
fn normalize_folds_whitespace() {
    assert_eq!(normalize(b"  a \t b  "), b"a b");
    assert_eq!(normalize(b"\t"), b"");
}

#[test]
fn shift_derivation() {
    let pairs = [(&b"  a"[..], &b"\t  a"[..]), (b"b", b"\tb"), (b"", b"   ")];
    assert_eq!(Shift::derive(pairs.into_iter()), Some(Shift::Add(b"\t".to_vec())));
    let pairs = [(&b"    a"[..], &b"a"[..]), (b"      b", b"  b")];
    let s = Shift::derive(pairs.into_iter()).unwrap();
    assert_eq!(s, Shift::Strip(b"    ".to_vec()));
    assert_eq!(s.apply(b"  c"), None);
    let pairs = [(&b"\ta"[..], &b"    a"[..])];
    assert_eq!(Shift::derive(pairs.into_iter()), None);
}

#[test]
fn huge_stated_lines_do_not_overflow() {
    let p = one(ABC, hunk(Some(usize::MAX), Some(1), &["-c", "+C"])).unwrap();
    assert_eq!(p.pos, 2);
    let e = one(REPEATED, hunk(Some(usize::MAX), Some(1), &["-}", "+};"])).unwrap_err();
    assert!(matches!(e, RefusalKind::AmbiguousPastEnd { len: 6, .. }), "{e:?}");
    let e = one(ABC, hunk(Some(usize::MAX), Some(0), &["+x"])).unwrap_err();
    assert!(matches!(e, RefusalKind::InsertionPosition { .. }));
}

#[test]
fn hunks_of_only_trivial_lines_in_huge_files_are_refused_without_search() {
    let text = "}\n".repeat(MAX_OCCURRENCES + 1);
    let e = one(&text, hunk(None, None, &[" }", "-}", "+};"])).unwrap_err();
    assert_eq!(
        e,
        RefusalKind::TooManyMatches {
            occurrences: MAX_OCCURRENCES + 1
        }
    );
    // At the stated line it is still exact.
    let p = one(&text, hunk(Some(5), Some(2), &[" }", "-}", "+};"])).unwrap();
    assert_eq!(p.kind, MatchKind::Exact);
}

#[test]
fn context_lines_without_their_prefix_space_are_refused_not_reindented() {
    // The LLM wrote "    x" for the context line "    x", dropping the ` ` prefix, so it
    // reads as "   x"; its added line is right as written.
    let text = "fn f() {\n    x();\n}\n";
    let e = one(text, hunk(Some(2), Some(1), &["    x();", "+    y();"])).unwrap_err();
    assert_eq!(e, RefusalKind::ContextPrefixLost { line: 2 });
    // A removed line showing the same one-space drift makes it real drift.
    let text = "fn f() {\n    x();\n    z();\n}\n";
    let p = one(
        text,
        hunk(Some(2), Some(2), &["    x();", "-   z();", "+   y();"]),
    )
    .unwrap();
    assert_eq!(p.shift, Some(Shift::Add(b" ".to_vec())));
}

#[test]
fn exact_at_stated_line_is_refused_when_the_offset_finds_another_exact_match() {
    // "u" (line 10) is stated at line 3: offset +7. "x/y" is exact at its stated line 2,
    // and also 7 lines further, where the offset points.
    let text = "a\nx\ny\nb\nc\nd\ne\nf\nx\ny\nu\n";
    let lines = file(text);
    let hunks = [
        hunk(Some(4), Some(1), &["-u", "+U"]),
        hunk(Some(2), Some(2), &["-x", " y", "+X"]),
    ];
    let e = place(&lines, &hunks).unwrap_err();
    assert_eq!(
        e,
        vec![(
            1,
            RefusalKind::AmbiguousDrift {
                candidates: vec![2, 9],
                nearest: 2,
                drifted: 9,
                offset: 7
            }
        )]
    );
    // Without a second exact match there, the stated line stands.
    let lines = file("a\nx\ny\nb\nc\nd\ne\nf\nq\ny\nu\n");
    assert_eq!(place(&lines, &hunks).unwrap()[1].pos, 1);
}
