use super::*;
use crate::paths::PathError;

fn p(text: &str) -> Patch {
    parse(text).unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
}

fn err(text: &str) -> ParseError {
    match parse(text) {
        Ok(patch) => panic!("expected an error, got {patch:#?}"),
        Err(e) => e,
    }
}

fn path(s: &str) -> RepoPath {
    RepoPath::new(s).unwrap()
}

fn body(h: &Hunk) -> Vec<String> {
    h.lines
        .iter()
        .map(|l| {
            let prefix = match l.kind {
                LineKind::Context => ' ',
                LineKind::Removed => '-',
                LineKind::Added => '+',
            };
            format!("{prefix}{}", l.text)
        })
        .collect()
}

#[test]
fn git_diff_with_prefixes() {
    let patch = p("diff --git a/src/lib.rs b/src/lib.rs\n\
         index 83db48f..bf269f4 100644\n\
         --- a/src/lib.rs\n\
         +++ b/src/lib.rs\n\
         @@ -1,3 +1,3 @@ fn main() {\n\
         \x20a\n\
         -b\n\
         +c\n\
         \x20d\n");
    assert_eq!(patch.files.len(), 1);
    let f = &patch.files[0];
    assert_eq!(
        f.op,
        FileOp::Modify {
            path: path("src/lib.rs")
        }
    );
    let h = &f.hunks[0];
    assert_eq!(
        (h.old_start, h.old_count, h.new_start, h.new_count),
        (Some(1), Some(3), Some(1), Some(3))
    );
    assert_eq!(body(h), vec![" a", "-b", "+c", " d"]);
    assert_eq!(h.line, 5);
}

#[test]
fn plain_diff_with_timestamps_and_no_prefixes() {
    let patch = p("--- src/x.rs\t2024-01-01 00:00:00.000000000 +0000\n\
         +++ src/x.rs\t2024-01-02 00:00:00.000000000 +0000\n\
         @@ -1 +1 @@\n\
         -a\n\
         +b\n");
    assert_eq!(
        patch.files[0].op,
        FileOp::Modify {
            path: path("src/x.rs")
        }
    );
}

#[test]
fn mixed_up_prefixes_are_forgiven() {
    let patch = p("--- a/x.rs\n+++ a/x.rs\n@@ -1 +1 @@\n-a\n+b\n");
    assert_eq!(patch.files[0].op, FileOp::Modify { path: path("x.rs") });
    let patch = p("--- a/x.rs\n+++ x.rs\n@@ -1 +1 @@\n-a\n+b\n");
    assert_eq!(patch.files[0].op, FileOp::Modify { path: path("x.rs") });
}

#[test]
fn git_no_prefix_keeps_a_directory_named_a() {
    let patch = p("diff --git a/x a/x\n--- a/x\n+++ a/x\n@@ -1 +1 @@\n-a\n+b\n");
    assert_eq!(patch.files[0].op, FileOp::Modify { path: path("a/x") });
}

#[test]
fn new_deleted_renamed_and_mode_changes() {
    let patch = p("diff --git a/new.sh b/new.sh\n\
         new file mode 100755\n\
         index 0000000..e69de29\n\
         --- /dev/null\n\
         +++ b/new.sh\n\
         @@ -0,0 +1,2 @@\n\
         +#!/bin/sh\n\
         +echo hi\n\
         diff --git a/old.txt b/old.txt\n\
         deleted file mode 100644\n\
         --- a/old.txt\n\
         +++ /dev/null\n\
         @@ -1 +0,0 @@\n\
         -bye\n\
         diff --git a/a.rs b/b.rs\n\
         similarity index 90%\n\
         rename from a.rs\n\
         rename to b.rs\n\
         --- a/a.rs\n\
         +++ b/b.rs\n\
         @@ -1 +1 @@\n\
         -x\n\
         +y\n\
         diff --git a/run b/run\n\
         old mode 100644\n\
         new mode 100755\n\
         diff --git a/empty b/empty\n\
         new file mode 100644\n\
         index 0000000..e69de29\n");
    let ops: Vec<&FileOp> = patch.files.iter().map(|f| &f.op).collect();
    assert_eq!(
        ops,
        vec![
            &FileOp::Create { path: path("new.sh") },
            &FileOp::Delete {
                path: path("old.txt")
            },
            &FileOp::Rename {
                from: path("a.rs"),
                to: path("b.rs")
            },
            &FileOp::Modify { path: path("run") },
            &FileOp::Create { path: path("empty") },
        ]
    );
    assert_eq!(patch.files[0].new_mode, Some(FileMode::Executable));
    assert_eq!(patch.files[3].old_mode, Some(FileMode::Regular));
    assert_eq!(patch.files[3].new_mode, Some(FileMode::Executable));
    assert!(patch.files[3].hunks.is_empty());
    assert!(patch.files[4].hunks.is_empty());
    let paths: Vec<&str> = patch.paths().map(RepoPath::as_str).collect();
    assert_eq!(paths, vec!["new.sh", "old.txt", "a.rs", "b.rs", "run", "empty"]);
}

#[test]
fn quoted_paths_are_unquoted() {
    let patch = p("diff --git \"a/sp ace\\tx\" \"b/sp ace\\tx\"\n\
         --- \"a/sp ace\\tx\"\n\
         +++ \"b/sp ace\\tx\"\n\
         @@ -1 +1 @@\n-a\n+b\n");
    assert_eq!(
        patch.files[0].op,
        FileOp::Modify {
            path: path("sp ace\tx")
        }
    );
    let patch = p(
        "diff --git \"a/\\303\\251t\\303\\251\" \"b/\\303\\251t\\303\\251\"\nold mode 100644\nnew mode 100755\n",
    );
    assert_eq!(patch.files[0].op, FileOp::Modify { path: path("été") });
}

#[test]
fn no_newline_markers_go_to_their_side() {
    let patch = p("--- a/x\n+++ b/x\n@@ -1,2 +1,3 @@\n a\n-b\n\\ No newline at end of file\n+b\n+c\n");
    let h = &patch.files[0].hunks[0];
    assert!(h.old_missing_newline);
    assert!(!h.new_missing_newline);
    let patch = p("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n\\ No newline at end of file\n");
    let h = &patch.files[0].hunks[0];
    assert!(!h.old_missing_newline);
    assert!(h.new_missing_newline);
    let patch = p("--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-a\n+b\n c\n\\ No newline at end of file\n");
    let h = &patch.files[0].hunks[0];
    assert!(h.old_missing_newline && h.new_missing_newline);
}

#[test]
fn misplaced_marker_is_refused() {
    let e = err("--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n\\ No newline at end of file\n-b\n+c\n");
    assert_eq!(e.kind, ParseErrorKind::MisplacedNoNewline);
    assert_eq!(e.line, 5);
}

#[test]
fn crlf_patch_reads_like_lf() {
    let lf = p("--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n");
    let crlf = p("--- a/x\r\n+++ b/x\r\n@@ -1,2 +1,2 @@\r\n a\r\n-b\r\n+c\r\n");
    assert_eq!(lf, crlf);
}

#[test]
fn fences_and_prose_around_the_patch() {
    let patch = p(
        "Sure! Here is the fix:\n\n```diff\n--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n```\n\nThis changes b to c.\n- It is safe.\n",
    );
    assert_eq!(body(&patch.files[0].hunks[0]), vec![" a", "-b", "+c"]);
}

#[test]
fn wrong_counts_take_the_whole_run() {
    // Counts too large: never met.
    let patch = p("--- a/x\n+++ b/x\n@@ -1,9 +1,9 @@\n a\n-b\n+c\n d\n");
    assert_eq!(body(&patch.files[0].hunks[0]), vec![" a", "-b", "+c", " d"]);
    // Counts met early, only context follows: the context is kept.
    let patch = p("--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n d\n e\n");
    assert_eq!(body(&patch.files[0].hunks[0]), vec![" a", "-b", "+c", " d", " e"]);
}

#[test]
fn counts_met_early_with_added_lines_at_the_end_are_refused() {
    let e = err("--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n\n+ Also changed d\n");
    assert_eq!(e.kind, ParseErrorKind::CountsEndEarly { end: 6 });
    let e = err("--- a/x\n+++ b/x\n@@ -1,1 +1,1 @@\n-a\n+b\n-c\n+d\n\\ No newline at end of file\n");
    assert_eq!(e.kind, ParseErrorKind::CountsEndEarly { end: 5 });
}

#[test]
fn counts_met_early_with_a_verifiable_end_take_the_whole_run() {
    // Too small counts, more changes, and a context line last: the match checks it.
    let patch = p("--- a/x\n+++ b/x\n@@ -1,1 +1,1 @@\n a\n-b\n+B\n c\n");
    assert_eq!(body(&patch.files[0].hunks[0]), vec![" a", "-b", "+B", " c"]);
    // A `-` bullet after the hunk becomes a removed line that the file must contain.
    let patch = p("--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n\n- Changed b to c\n");
    assert_eq!(
        body(&patch.files[0].hunks[0]),
        vec![" a", "-b", "+c", " ", "- Changed b to c"]
    );
}

#[test]
fn confirmed_counts_end_the_hunk_before_chatter() {
    let patch = p("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n d\nNotes:\n- Changed b to c\n+ Kept d\n");
    assert_eq!(body(&patch.files[0].hunks[0]), vec![" a", "-b", "+c", " d"]);
}

#[test]
fn unconfirmed_hunk_followed_by_stray_hunk_lines_is_refused() {
    // A context line lost its leading space: the rest must not be silently dropped.
    let e = err("--- a/x\n+++ b/x\n@@ @@\n a\n-b\n+c\nfn main() {\n-d\n+e\n");
    assert_eq!(e.kind, ParseErrorKind::AmbiguousHunkEnd { after: 8 });
    // The same across a fence.
    let e = err("```diff\n--- a/x\n+++ b/x\n@@ @@\n a\n-b\n```\n+c\n```\n");
    assert_eq!(e.kind, ParseErrorKind::AmbiguousHunkEnd { after: 8 });
}

#[test]
fn trailing_blank_lines_are_separators_unless_counted() {
    let patch = p(
        "--- a/x\n+++ b/x\n@@ @@\n a\n-b\n+c\n\n\ndiff --git a/y b/y\n--- a/y\n+++ b/y\n@@ -1 +1 @@\n-1\n+2\n",
    );
    assert_eq!(body(&patch.files[0].hunks[0]), vec![" a", "-b", "+c"]);
    let patch = p("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n\n");
    assert_eq!(body(&patch.files[0].hunks[0]), vec![" a", "-b", "+c", " "]);
    assert_eq!(patch.files[0].hunks[0].lines[3].text, "");
}

#[test]
fn bare_and_partial_hunk_headers() {
    for header in ["@@ @@", "@@", "@@ -3 @@", "@@ -3,x +y @@", "@@ line 3 @@"] {
        let patch = p(&format!("--- a/x\n+++ b/x\n{header}\n a\n-b\n+c\n"));
        assert_eq!(patch.files[0].hunks[0].lines.len(), 3, "{header}");
    }
    let patch = p("--- a/x\n+++ b/x\n@@ -3 +3 @@\n-b\n+c\n");
    let h = &patch.files[0].hunks[0];
    assert_eq!((h.old_start, h.old_count), (Some(3), Some(1)));
    assert_eq!(h.stated_index(), Some(2));
    let patch = p("--- a/x\n+++ b/x\n@@ -3,0 +4 @@\n+c\n");
    assert_eq!(patch.files[0].hunks[0].stated_index(), Some(3));
}

#[test]
fn several_files_several_hunks() {
    let patch = p(
        "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n@@ -10 +10 @@\n-c\n+d\n--- a/y\n+++ b/y\n@@ -1 +1 @@\n-e\n+f\n",
    );
    assert_eq!(patch.files.len(), 2);
    assert_eq!(patch.files[0].hunks.len(), 2);
    assert_eq!(patch.files[1].hunks.len(), 1);
}

#[test]
fn removed_sql_comment_is_not_a_file_header() {
    // "-- x" removed and "++ y" added, not followed by @@: hunk content.
    let patch =
        p("--- a/q.sql\n+++ b/q.sql\n@@ -1,2 +1,2 @@\n--- old comment\n+++ new comment\n select 1;\n");
    assert_eq!(
        body(&patch.files[0].hunks[0]),
        vec!["--- old comment", "+++ new comment", " select 1;"]
    );
}

#[test]
fn full_file_blocks_and_mixing() {
    let patch = p(
        "Here:\n```\n=== FILE: src/new.rs\nfn main() {}\n\n=== END FILE\n```\n```diff\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n```\n",
    );
    assert_eq!(
        patch.files[0].op,
        FileOp::Write {
            path: path("src/new.rs"),
            lines: vec!["fn main() {}".to_owned(), String::new()]
        }
    );
    assert_eq!(patch.files[0].line, 3);
    assert_eq!(patch.files[1].op, FileOp::Modify { path: path("x") });
}

#[test]
fn same_path_twice_is_refused() {
    let e = err("=== FILE: x\na\n=== END FILE\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n");
    assert_eq!(
        e.kind,
        ParseErrorKind::DuplicatePath {
            path: path("x"),
            first: 1
        }
    );
    let e = err("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n--- a/./x\n+++ b/./x\n@@ -5 +5 @@\n-a\n+b\n");
    assert!(matches!(e.kind, ParseErrorKind::DuplicatePath { .. }));
}

#[test]
fn file_and_directory_of_the_same_name_are_refused() {
    let e = err("=== FILE: a\nx\n=== END FILE\n=== FILE: a/b\ny\n=== END FILE\n");
    assert!(matches!(e.kind, ParseErrorKind::FileDirectoryConflict { .. }));
}

#[test]
fn unsafe_paths_are_refused_at_parse_time() {
    for (text, reason) in [
        (
            "--- a/../x\n+++ b/../x\n@@ -1 +1 @@\n-a\n+b\n",
            PathError::Escapes,
        ),
        (
            "--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-a\n+b\n",
            PathError::Absolute,
        ),
        (
            "--- a/.git/config\n+++ b/.git/config\n@@ -1 +1 @@\n-a\n+b\n",
            PathError::GitDir,
        ),
        (
            "=== FILE: ../../etc/cron.d/x\nboom\n=== END FILE\n",
            PathError::Escapes,
        ),
        ("=== FILE: /tmp/x\nboom\n=== END FILE\n", PathError::Absolute),
        (
            "diff --git a/x b/y\nrename from x\nrename to .git/hooks/pre-commit\n",
            PathError::GitDir,
        ),
    ] {
        let e = err(text);
        assert!(
            matches!(&e.kind, ParseErrorKind::UnsafePath { reason: r, .. } if *r == reason),
            "{text}: {e}"
        );
    }
}

#[test]
fn binary_and_unsupported_forms_are_refused() {
    let e = err("diff --git a/img.png b/img.png\nindex 1..2 100644\nGIT binary patch\nliteral 5\nxyz\n");
    assert_eq!(
        e.kind,
        ParseErrorKind::Binary {
            path: "b/img.png".to_owned()
        }
    );
    let e = err("diff --git a/img.png b/img.png\nBinary files a/img.png and b/img.png differ\n");
    assert!(matches!(e.kind, ParseErrorKind::Binary { .. }));
    let e = err("diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+target\n");
    assert!(matches!(e.kind, ParseErrorKind::UnsupportedMode { .. }));
    let e = err("diff --cc x\n--- a/x\n+++ b/x\n@@@ -1,1 -1,1 +1,1 @@@\n- a\n +b\n");
    assert_eq!(e.kind, ParseErrorKind::CombinedDiff);
    let e = err("diff --git a/x b/y\ncopy from x\ncopy to y\n");
    assert_eq!(e.kind, ParseErrorKind::Copy);
}

#[test]
fn structural_errors() {
    assert_eq!(err("just some prose\n").kind, ParseErrorKind::NoPatch);
    assert_eq!(err("@@ -1 +1 @@\n-a\n+b\n").kind, ParseErrorKind::HunkWithoutFile);
    assert_eq!(
        err("--- a/x\n+++ b/x\n@@ -1 +1 @@\nprose\n").kind,
        ParseErrorKind::EmptyHunk
    );
    assert!(matches!(
        err("--- a/x\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n").kind,
        ParseErrorKind::PathsDiffer { .. }
    ));
    assert_eq!(
        err("--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n a\n+b\n").kind,
        ParseErrorKind::BadNewFile
    );
    assert_eq!(parse("").unwrap(), Patch::default());
    assert_eq!(parse(" \n\n").unwrap(), Patch::default());
}

#[test]
fn error_display_names_the_line() {
    let e = err("x\n--- a/x\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n");
    assert_eq!(
        e.to_string(),
        "patch line 2: old and new file names differ (a/x vs b/y) without `rename from`/`rename to`"
    );
}

#[test]
fn never_panics_on_odd_inputs() {
    for text in [
        "@@",
        "--- \n+++ \n@@",
        "diff --git ",
        "diff --git \"unterminated",
        "diff --git \"a\\",
        "--- a/x\n+++ b/x\n@@ -99999999999999999999999,1 +1 @@\n-a\n",
        "--- a/x\n+++ b/x\n@@ -1,18446744073709551615 +1 @@\n-a\n",
        "--- a/x\n+++ b/x\n\\\n",
        "--- a/x\n+++ b/x\n@@ @@\n\\ x\n",
        "=== FILE:\n=== END FILE",
        "=== FILE: é\n=== END FILE",
        "```\n```\n```",
        "\r\n\r\n",
        "\u{FEFF}",
        "diff --git a/ä b/ä\n",
    ] {
        let _ = parse(text);
    }
}
