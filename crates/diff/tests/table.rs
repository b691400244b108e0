//! A table of hand-written damaged and hostile answers, each with its exact outcome: the
//! tree afterwards and the report line(s), or the refusal line(s) and an unchanged tree.
//! Cases that need more than regular files (symbolic links, modes, special files, options)
//! follow the table as their own tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;

use common::{TempDir, snapshot, write_file};
use orchestrator_diff::{ApplyError, ApplyOptions, apply, parse};

/// How a case ends.
enum Outcome {
    /// Applied: these files hold exactly this content afterwards (`None`: absent), and
    /// the report's `Display` is exactly this.
    Applied(&'static [(&'static str, Option<&'static str>)], &'static str),
    /// Refused with exactly these lines; the tree is unchanged.
    Refused(&'static str),
}

use Outcome::{Applied, Refused};

struct Case {
    name: &'static str,
    tree: &'static [(&'static str, &'static str)],
    patch: &'static str,
    outcome: Outcome,
}

const SRC: &str = "fn main() {\n    let a = 1;\n    let b = 2;\n    println!(\"{}\", a + b);\n}\n";

const LIB: &str = "pub fn one() -> u32 {\n    1\n}\n\npub fn two() -> u32 {\n    2\n}\n\npub fn three() -> u32 {\n    3\n}\n";

const CASES: &[Case] = &[
    Case {
        name: "a correct git diff applies exactly",
        tree: &[("src/main.rs", SRC)],
        patch: "diff --git a/src/main.rs b/src/main.rs\nindex 1..2 100644\n--- a/src/main.rs\n+++ b/src/main.rs\n@@ -1,4 +1,4 @@\n fn main() {\n     let a = 1;\n-    let b = 2;\n+    let b = 3;\n     println!(\"{}\", a + b);\n",
        outcome: Applied(
            &[(
                "src/main.rs",
                Some("fn main() {\n    let a = 1;\n    let b = 3;\n    println!(\"{}\", a + b);\n}\n"),
            )],
            "modified src/main.rs (+1 -1): hunk 1 exact at line 1",
        ),
    },
    Case {
        name: "wrong line numbers: found by content, reported as an offset",
        tree: &[("src/main.rs", SRC)],
        patch: "--- a/src/main.rs\n+++ b/src/main.rs\n@@ -40,3 +40,3 @@\n     let a = 1;\n-    let b = 2;\n+    let b = 3;\n     println!(\"{}\", a + b);\n",
        outcome: Applied(
            &[(
                "src/main.rs",
                Some("fn main() {\n    let a = 1;\n    let b = 3;\n    println!(\"{}\", a + b);\n}\n"),
            )],
            "modified src/main.rs (+1 -1): hunk 1 offset -38 at line 2",
        ),
    },
    Case {
        name: "bare @@ header, wrong counts, no a/ b/ prefixes",
        tree: &[("src/main.rs", SRC)],
        patch: "--- src/main.rs\n+++ src/main.rs\n@@ @@\n-    let b = 2;\n+    let b = 3;\n+    let c = 4;\n@@ -1,99 +1,1 @@\n fn main() {\n+    // sum\n",
        outcome: Applied(
            &[(
                "src/main.rs",
                Some(
                    "fn main() {\n    // sum\n    let a = 1;\n    let b = 3;\n    let c = 4;\n    println!(\"{}\", a + b);\n}\n",
                ),
            )],
            "modified src/main.rs (+3 -1): hunk 1 found by search at line 3; hunk 2 exact at line 1",
        ),
    },
    Case {
        name: "hunks out of order",
        tree: &[("src/lib.rs", LIB)],
        patch: "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -9,3 +9,3 @@\n pub fn three() -> u32 {\n-    3\n+    30\n }\n@@ -1,3 +1,3 @@\n pub fn one() -> u32 {\n-    1\n+    10\n }\n",
        outcome: Applied(
            &[(
                "src/lib.rs",
                Some(
                    "pub fn one() -> u32 {\n    10\n}\n\npub fn two() -> u32 {\n    2\n}\n\npub fn three() -> u32 {\n    30\n}\n",
                ),
            )],
            "modified src/lib.rs (+2 -2): hunk 1 exact at line 9; hunk 2 exact at line 1",
        ),
    },
    Case {
        name: "thin context is fine while unique; the nearest of several wins",
        tree: &[("src/lib.rs", LIB)],
        patch: "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -6 +6 @@\n-    2\n+    20\n@@ -8 +8,2 @@\n }\n+// end of two\n",
        outcome: Applied(
            &[(
                "src/lib.rs",
                Some(
                    "pub fn one() -> u32 {\n    1\n}\n\npub fn two() -> u32 {\n    20\n}\n// end of two\n\npub fn three() -> u32 {\n    3\n}\n",
                ),
            )],
            "modified src/lib.rs (+2 -1): hunk 1 exact at line 6; hunk 2 offset -1 at line 7",
        ),
    },
    Case {
        name: "drifted indentation: matched ignoring whitespace, added lines re-indented",
        tree: &[("src/main.rs", SRC)],
        patch: "--- a/src/main.rs\n+++ b/src/main.rs\n@@ -2,2 +2,5 @@\n let a = 1;\n-let b = 2;\n+let b = 2;\n+if a > 0 {\n+    println!(\"pos\");\n+}\n",
        outcome: Applied(
            &[(
                "src/main.rs",
                Some(
                    "fn main() {\n    let a = 1;\n    let b = 2;\n    if a > 0 {\n        println!(\"pos\");\n    }\n    println!(\"{}\", a + b);\n}\n",
                ),
            )],
            "modified src/main.rs (+4 -1): hunk 1 whitespace-insensitive at line 2",
        ),
    },
    Case {
        name: "trailing whitespace in context: the file keeps its bytes",
        tree: &[("a.txt", "one  \ntwo\nthree\n")],
        patch: "--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three   \n",
        outcome: Applied(
            &[("a.txt", Some("one  \nTWO\nthree\n"))],
            "modified a.txt (+1 -1): hunk 1 whitespace-insensitive at line 1",
        ),
    },
    Case {
        name: "CRLF answer on an LF file",
        tree: &[("a.txt", "one\ntwo\nthree\n")],
        patch: "--- a/a.txt\r\n+++ b/a.txt\r\n@@ -1,3 +1,3 @@\r\n one\r\n-two\r\n+TWO\r\n three\r\n",
        outcome: Applied(
            &[("a.txt", Some("one\nTWO\nthree\n"))],
            "modified a.txt (+1 -1): hunk 1 exact at line 1",
        ),
    },
    Case {
        name: "LF answer on a CRLF file: the file stays CRLF",
        tree: &[("a.txt", "one\r\ntwo\r\nthree\r\n")],
        patch: "--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,4 @@\n one\n-two\n+TWO\n+2.5\n three\n",
        outcome: Applied(
            &[("a.txt", Some("one\r\nTWO\r\n2.5\r\nthree\r\n"))],
            "modified a.txt (+2 -1): hunk 1 exact at line 1",
        ),
    },
    Case {
        name: "a file without final newline keeps that state when the answer does not say",
        tree: &[("a.txt", "one\ntwo")],
        patch: "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,3 @@\n one\n two\n+three\n",
        outcome: Applied(
            &[("a.txt", Some("one\ntwo\nthree"))],
            "modified a.txt (+1 -0): hunk 1 exact at line 1",
        ),
    },
    Case {
        name: "`\\ No newline at end of file` markers are honoured",
        tree: &[("a.txt", "one\ntwo"), ("b.txt", "x\ny\n")],
        patch: "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n one\n-two\n\\ No newline at end of file\n+two\n--- a/b.txt\n+++ b/b.txt\n@@ -1,2 +1,2 @@\n x\n-y\n+y\n\\ No newline at end of file\n",
        outcome: Applied(
            &[("a.txt", Some("one\ntwo\n")), ("b.txt", Some("x\ny"))],
            "modified a.txt (+1 -1): hunk 1 exact at line 1\nmodified b.txt (+1 -1): hunk 1 exact at line 1",
        ),
    },
    Case {
        name: "markdown fence and chatter around the patch",
        tree: &[("a.txt", "one\ntwo\nthree\n")],
        patch: "I fixed the typo.\n\n```diff\n--- a/a.txt\n+++ b/a.txt\n@@ -2 +2 @@\n-two\n+2\n```\n\nSummary:\n- replaced two\n+ nothing else\n",
        outcome: Applied(
            &[("a.txt", Some("one\n2\nthree\n"))],
            "modified a.txt (+1 -1): hunk 1 exact at line 2",
        ),
    },
    Case {
        name: "blank context lines written without their space",
        tree: &[("src/lib.rs", LIB)],
        patch: "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -3,4 +3,4 @@\n }\n\n-pub fn two() -> u32 {\n+pub fn two() -> u64 {\n     2\n",
        outcome: Applied(
            &[(
                "src/lib.rs",
                Some(
                    "pub fn one() -> u32 {\n    1\n}\n\npub fn two() -> u64 {\n    2\n}\n\npub fn three() -> u32 {\n    3\n}\n",
                ),
            )],
            "modified src/lib.rs (+1 -1): hunk 1 exact at line 3",
        ),
    },
    Case {
        name: "new, deleted and renamed files in one answer",
        tree: &[("old.txt", "bye\n"), ("a.rs", "fn a() {}\nfn b() {}\n")],
        patch: "diff --git a/new/dir/n.txt b/new/dir/n.txt\nnew file mode 100644\n--- /dev/null\n+++ b/new/dir/n.txt\n@@ -0,0 +1,2 @@\n+hello\n+world\ndiff --git a/old.txt b/old.txt\ndeleted file mode 100644\n--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\ndiff --git a/a.rs b/src/b.rs\nsimilarity index 60%\nrename from a.rs\nrename to src/b.rs\n--- a/a.rs\n+++ b/src/b.rs\n@@ -1,2 +1,2 @@\n fn a() {}\n-fn b() {}\n+fn b() { a() }\n",
        outcome: Applied(
            &[
                ("new/dir/n.txt", Some("hello\nworld\n")),
                ("old.txt", None),
                ("a.rs", None),
                ("src/b.rs", Some("fn a() {}\nfn b() { a() }\n")),
            ],
            "created new/dir/n.txt (+2 -0) mode 100644: hunk 1 exact at line 1\ndeleted old.txt (+0 -1): hunk 1 exact at line 1\nrenamed a.rs -> src/b.rs (+1 -1): hunk 1 exact at line 1",
        ),
    },
    Case {
        name: "pure rename without hunks",
        tree: &[("a.txt", "x\n")],
        patch: "diff --git a/a.txt b/b.txt\nsimilarity index 100%\nrename from a.txt\nrename to b.txt\n",
        outcome: Applied(
            &[("a.txt", None), ("b.txt", Some("x\n"))],
            "renamed a.txt -> b.txt (+0 -0)",
        ),
    },
    Case {
        name: "full-file blocks: create, and replace a CRLF file in CRLF",
        tree: &[("win.txt", "a\r\nb\r\n")],
        patch: "Here you go:\n```\n=== FILE: docs/new.md\n# Title\n\n```sh\nls\n```\n=== END FILE\n```\n\n=== FILE: win.txt\na\nB\nc\n=== END FILE\n",
        outcome: Applied(
            &[
                ("docs/new.md", Some("# Title\n\n```sh\nls\n```\n")),
                ("win.txt", Some("a\r\nB\r\nc\r\n")),
            ],
            "created docs/new.md (+5 -0)\nmodified win.txt (+2 -1)",
        ),
    },
    Case {
        name: "full-file block with empty content writes an empty file",
        tree: &[("a.txt", "x\n")],
        patch: "=== FILE: a.txt\n=== END FILE\n",
        outcome: Applied(&[("a.txt", Some(""))], "modified a.txt (+0 -1)"),
    },
    Case {
        name: "creating a file that exists with the same content is a no-op",
        tree: &[("a.txt", "x\n")],
        patch: "--- /dev/null\n+++ b/a.txt\n@@ -0,0 +1 @@\n+x\n",
        outcome: Applied(
            &[("a.txt", Some("x\n"))],
            "unchanged (already present) a.txt (+1 -0): hunk 1 exact at line 1",
        ),
    },
    Case {
        name: "a pure insertion at a consistent stated line",
        tree: &[("a.txt", "one\ntwo\n")],
        patch: "--- a/a.txt\n+++ b/a.txt\n@@ -1,0 +2 @@\n+one and a half\n",
        outcome: Applied(
            &[("a.txt", Some("one\none and a half\ntwo\n"))],
            "modified a.txt (+1 -0): hunk 1 exact at line 2",
        ),
    },
    Case {
        name: "an empty answer changes nothing",
        tree: &[("a.txt", "x\n")],
        patch: "\n",
        outcome: Applied(&[("a.txt", Some("x\n"))], ""),
    },
    // ---- refusals: ambiguity ----
    Case {
        name: "ambiguous: bare header, context occurs twice",
        tree: &[("src/lib.rs", LIB)],
        patch: "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ @@\n }\n \n+// separator\n",
        outcome: Refused(
            "src/lib.rs: hunk 1 (patch line 3): matches 2 places (lines 3, 7) and the header states no line number: add context that makes it unique",
        ),
    },
    Case {
        name: "ambiguous: two matches equally near the stated line",
        tree: &[("src/lib.rs", LIB)],
        patch: "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -5 +5 @@\n-}\n+};\n",
        outcome: Refused(
            "src/lib.rs: hunk 1 (patch line 3): matches 3 places (lines 3, 7, 11), and lines 3 and 7 are equally near the stated line 5: add context that makes it unique",
        ),
    },
    Case {
        name: "pure insertion without context at a bare header",
        tree: &[("a.txt", "one\ntwo\n")],
        patch: "--- a/a.txt\n+++ b/a.txt\n@@ @@\n+inserted\n",
        outcome: Refused(
            "a.txt: hunk 1 (patch line 3): adds lines without any context and the header states no line number: add context lines around the insertion",
        ),
    },
    Case {
        name: "pure insertion by line number when another file's hunk was found off its line",
        tree: &[("a.txt", "one\ntwo\n"), ("b.txt", "x\ny\nz\n")],
        patch: "--- a/b.txt\n+++ b/b.txt\n@@ -7,1 +7,1 @@\n-y\n+Y\n--- a/a.txt\n+++ b/a.txt\n@@ -1,0 +2 @@\n+inserted\n",
        outcome: Refused(
            "a.txt: hunk 1 (patch line 8): adds lines without any context, and other hunks of this answer were found -5 lines away from their stated lines: add context lines around the insertion",
        ),
    },
    Case {
        name: "context not in the file: refused with a hint",
        tree: &[("src/main.rs", SRC)],
        patch: "--- a/src/main.rs\n+++ b/src/main.rs\n@@ -1,3 +1,3 @@\n fn main() {\n     let a = 1;\n-    let b = 5;\n+    let b = 6;\n",
        outcome: Refused(
            "src/main.rs: hunk 1 (patch line 3): context and removed lines not found in the file (its first 2 lines match at line 1, the next one differs)",
        ),
    },
    Case {
        name: "overlapping hunks",
        tree: &[("a.txt", "1\n2\n3\n4\n")],
        patch: "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n 1\n-2\n+two\n@@ -2,2 +2,2 @@\n-2\n+deux\n 3\n",
        outcome: Refused("a.txt: hunk 2 (patch line 7): overlaps hunk 1 (both match at lines 2–2)"),
    },
    Case {
        name: "inconsistent indentation shift",
        tree: &[("a.py", "def f():\n    if x:\n        y()\n")],
        patch: "--- a/a.py\n+++ b/a.py\n@@ -1,3 +1,4 @@\n def f():\n   if x:\n   y()\n+  z()\n",
        outcome: Refused(
            "a.py: hunk 1 (patch line 3): matches at line 1 only when ignoring whitespace, and the indentation differs inconsistently there: resend the hunk with the file's exact indentation",
        ),
    },
    Case {
        name: "exact match elsewhere against a whitespace match at the stated line",
        tree: &[("a.txt", "  x\n  y\nx\ny\n")],
        patch: "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n x\n-y\n+z\n",
        outcome: Refused(
            "a.txt: hunk 1 (patch line 3): matches exactly at line 3, but also ignoring whitespace at the stated line 1: add context that makes it unique",
        ),
    },
    Case {
        name: "counts end the hunk before changed lines",
        tree: &[("a.txt", "a\nb\nc\n")],
        patch: "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n a\n-b\n+B\n-c\n+C\n",
        outcome: Refused(
            "patch line 6: the `@@` counts end this hunk at patch line 6, but more added lines follow: fix the counts",
        ),
    },
    Case {
        name: "counts too small, but the hunk ends with a line the file must contain",
        tree: &[("a.txt", "a\nb\nc\nd\n")],
        patch: "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n a\n-b\n+B\n-c\n+C\n d\n",
        outcome: Applied(
            &[("a.txt", Some("a\nB\nC\nd\n"))],
            "modified a.txt (+2 -2): hunk 1 exact at line 1",
        ),
    },
    Case {
        name: "a line that lost its prefix in the middle of a bare hunk",
        tree: &[("a.txt", "a\nb\nc\n")],
        patch: "--- a/a.txt\n+++ b/a.txt\n@@ @@\n a\n-b\n+B\nc\n+d\n",
        outcome: Refused(
            "patch line 8: cannot tell where this hunk ends: hunk-like lines follow at patch line 8 after a line without a ` `, `+` or `-` prefix; prefix every line, fix the `@@` counts or close the fence",
        ),
    },
    // ---- refusals: file operations ----
    Case {
        name: "deleting a file whose content differs",
        tree: &[("old.txt", "bye\n")],
        patch: "--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-hello\n",
        outcome: Refused("old.txt: hunk 1 (patch line 3): context and removed lines not found in the file"),
    },
    Case {
        name: "deleting a file the patch shows only in part",
        tree: &[("old.txt", "a\nb\nc\n")],
        patch: "diff --git a/old.txt b/old.txt\ndeleted file mode 100644\n--- a/old.txt\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n",
        outcome: Refused(
            "old.txt (patch line 1): deletion does not show the whole file (1 more lines): refusing to delete content the patch does not show",
        ),
    },
    Case {
        name: "deleting a file without showing content",
        tree: &[("old.txt", "a\n")],
        patch: "diff --git a/old.txt b/old.txt\ndeleted file mode 100644\n",
        outcome: Refused(
            "old.txt (patch line 1): deletion does not show the whole file (1 more lines): refusing to delete content the patch does not show",
        ),
    },
    Case {
        name: "creating a file that exists with other content",
        tree: &[("a.txt", "x\n")],
        patch: "--- /dev/null\n+++ b/a.txt\n@@ -0,0 +1 @@\n+y\n",
        outcome: Refused("a.txt (patch line 1): file already exists with different content"),
    },
    Case {
        name: "renaming onto an existing file",
        tree: &[("a.txt", "x\n"), ("b.txt", "y\n")],
        patch: "diff --git a/a.txt b/b.txt\nrename from a.txt\nrename to b.txt\n",
        outcome: Refused("b.txt (patch line 1): rename target already exists"),
    },
    Case {
        name: "modifying a file that does not exist",
        tree: &[],
        patch: "--- a/nope.txt\n+++ b/nope.txt\n@@ -1 +1 @@\n-a\n+b\n",
        outcome: Refused("nope.txt (patch line 1): file does not exist"),
    },
    Case {
        name: "all or nothing: one refused file keeps the other unchanged; every reason is given",
        tree: &[("a.txt", "a\n"), ("b.txt", "b\n"), ("c.txt", "c\n")],
        patch: "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-a\n+A\n--- a/b.txt\n+++ b/b.txt\n@@ -1 +1 @@\n-x\n+X\n--- a/c.txt\n+++ b/c.txt\n@@ -1 +1 @@\n-y\n+Y\n",
        outcome: Refused(
            "b.txt: hunk 1 (patch line 8): context and removed lines not found in the file\nc.txt: hunk 1 (patch line 13): context and removed lines not found in the file",
        ),
    },
    Case {
        name: "a binary file is not edited",
        tree: &[("bin.dat", "a\0b\n")],
        patch: "--- a/bin.dat\n+++ b/bin.dat\n@@ -1 +1 @@\n-a\n+b\n",
        outcome: Refused("bin.dat (patch line 1): file is binary"),
    },
    Case {
        name: "a binary patch is refused",
        tree: &[],
        patch: "diff --git a/logo.png b/logo.png\nindex 1..2 100644\nGIT binary patch\nliteral 4\nLcmZ?d00001\n",
        outcome: Refused("patch line 3: binary patch for b/logo.png: only text changes can be applied"),
    },
    Case {
        name: "the same file twice in one answer",
        tree: &[("a.txt", "a\n")],
        patch: "=== FILE: a.txt\nb\n=== END FILE\n--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-a\n+c\n",
        outcome: Refused(
            "patch line 4: a.txt is changed twice (also at patch line 1): send one change per file",
        ),
    },
    Case {
        name: "a truncated full-file block",
        tree: &[("a.txt", "a\n")],
        patch: "=== FILE: a.txt\nfirst half of the fi",
        outcome: Refused("patch line 1: `=== FILE: a.txt` has no `=== END FILE` line (truncated answer?)"),
    },
    Case {
        name: "prose only",
        tree: &[],
        patch: "I could not find the bug, sorry.",
        outcome: Refused("patch line 1: no unified diff and no `=== FILE:` block found"),
    },
    // ---- refusals: hostile paths ----
    Case {
        name: "`..` escape",
        tree: &[],
        patch: "--- /dev/null\n+++ b/../../etc/cron.d/evil\n@@ -0,0 +1 @@\n+* * * * * root sh\n",
        outcome: Refused(
            "patch line 1: refused path \"../../etc/cron.d/evil\": path escapes the repository through `..`",
        ),
    },
    Case {
        name: "absolute path in a full-file block",
        tree: &[],
        patch: "=== FILE: /etc/passwd\nroot::0:0::/:/bin/sh\n=== END FILE\n",
        outcome: Refused("patch line 1: refused path \"/etc/passwd\": absolute path"),
    },
    Case {
        name: "a git hook",
        tree: &[],
        patch: "--- /dev/null\n+++ b/.git/hooks/post-checkout\n@@ -0,0 +1 @@\n+rm -rf ~\n",
        outcome: Refused(
            "patch line 1: refused path \".git/hooks/post-checkout\": path is inside a `.git` directory",
        ),
    },
    Case {
        name: "a git directory in another case, through a rename",
        tree: &[("a.txt", "x\n")],
        patch: "diff --git a/a.txt b/x\nrename from a.txt\nrename to sub/.GIT/config\n",
        outcome: Refused("patch line 1: refused path \"sub/.GIT/config\": path is inside a `.git` directory"),
    },
    Case {
        name: "a file used as a directory",
        tree: &[("a.txt", "x\n")],
        patch: "--- /dev/null\n+++ b/a.txt/inner\n@@ -0,0 +1 @@\n+y\n",
        outcome: Refused("a.txt/inner (patch line 1): a.txt is not a directory"),
    },
];

#[test]
fn table() {
    let mut failures = Vec::new();
    for case in CASES {
        if let Err(msg) = run(case) {
            failures.push(format!("{}: {msg}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n\n")
    );
}

fn run(case: &Case) -> Result<(), String> {
    let dir = TempDir::new("table");
    for (path, content) in case.tree {
        write_file(dir.path(), path, content.as_bytes());
    }
    let before = snapshot(dir.path());
    let result = common::apply_text(case.patch, dir.path());
    match (&case.outcome, result) {
        (Applied(files, report), Ok(got)) => {
            if got.to_string() != *report {
                return Err(format!(
                    "report:\n  got  {:?}\n  want {:?}",
                    got.to_string(),
                    report
                ));
            }
            for (path, want) in *files {
                let got = fs::read(dir.path().join(path))
                    .ok()
                    .map(|b| String::from_utf8_lossy(&b).into_owned());
                if got.as_deref() != *want {
                    return Err(format!("{path}:\n  got  {got:?}\n  want {want:?}"));
                }
            }
            Ok(())
        }
        (Refused(want), Err(ApplyError::Refused(r))) => {
            let got = ApplyError::Refused(r).to_string();
            if got != *want {
                return Err(format!("refusal:\n  got  {got:?}\n  want {want:?}"));
            }
            if snapshot(dir.path()) != before {
                return Err("the refusal changed the tree".to_owned());
            }
            Ok(())
        }
        (_, Ok(got)) => Err(format!("applied: {got}")),
        (_, Err(e)) => Err(format!("failed: {e}")),
    }
}

fn refusal(patch: &str, root: &Path) -> String {
    match common::apply_text(patch, root) {
        Err(e @ ApplyError::Refused(_)) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[cfg(unix)]
#[test]
fn symlinked_directory_leading_outside_is_refused() {
    let outside = TempDir::new("outside");
    write_file(outside.path(), "secret.txt", b"s\n");
    let dir = TempDir::new("root");
    std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
    let before_out = snapshot(outside.path());
    let before = snapshot(dir.path());
    for patch in [
        "--- a/link/secret.txt\n+++ b/link/secret.txt\n@@ -1 +1 @@\n-s\n+pwned\n",
        "--- /dev/null\n+++ b/link/new.txt\n@@ -0,0 +1 @@\n+pwned\n",
        "=== FILE: link/deeper/new.txt\npwned\n=== END FILE\n",
    ] {
        let got = refusal(patch, dir.path());
        assert!(
            got.contains("goes through the symbolic link link, which leads outside the repository"),
            "{got}"
        );
    }
    assert_eq!(snapshot(outside.path()), before_out);
    assert_eq!(snapshot(dir.path()), before);
}

#[cfg(unix)]
#[test]
fn symlink_as_target_is_refused_and_inner_links_are_followed() {
    let dir = TempDir::new("root");
    write_file(dir.path(), "real/a.txt", b"a\n");
    std::os::unix::fs::symlink("real/a.txt", dir.path().join("file-link")).unwrap();
    std::os::unix::fs::symlink("real", dir.path().join("dir-link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/nowhere", dir.path().join("dangling")).unwrap();
    let got = refusal(
        "--- a/file-link\n+++ b/file-link\n@@ -1 +1 @@\n-a\n+b\n",
        dir.path(),
    );
    assert_eq!(
        got,
        "file-link (patch line 1): is a symbolic link, not a regular file"
    );
    let got = refusal("=== FILE: dangling/x\ny\n=== END FILE\n", dir.path());
    assert_eq!(
        got,
        "dangling/x (patch line 1): goes through the symbolic link dangling, which leads outside the repository"
    );
    // The same file through two names is one file changed twice.
    let got = refusal(
        "--- a/real/a.txt\n+++ b/real/a.txt\n@@ -1 +1 @@\n-a\n+b\n--- a/dir-link/a.txt\n+++ b/dir-link/a.txt\n@@ -1 +1 @@\n-a\n+c\n",
        dir.path(),
    );
    assert_eq!(
        got,
        "dir-link/a.txt: is the same file as real/a.txt (through a symbolic link): change it once"
    );
    // A link to a directory inside the root is followed.
    let report = common::apply_text(
        "--- a/dir-link/a.txt\n+++ b/dir-link/a.txt\n@@ -1 +1 @@\n-a\n+b\n",
        dir.path(),
    )
    .unwrap();
    assert_eq!(
        report.to_string(),
        "modified dir-link/a.txt (+1 -1): hunk 1 exact at line 1"
    );
    assert_eq!(fs::read(dir.path().join("real/a.txt")).unwrap(), b"b\n");
    assert!(
        fs::symlink_metadata(dir.path().join("dir-link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[cfg(unix)]
#[test]
fn special_files_are_refused_without_being_opened() {
    let dir = TempDir::new("root");
    let fifo = dir.path().join("pipe");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    // Opening a FIFO for reading would block forever: the refusal proves it was not.
    let got = refusal("--- a/pipe\n+++ b/pipe\n@@ -1 +1 @@\n-a\n+b\n", dir.path());
    assert_eq!(got, "pipe (patch line 1): is a special file, not a regular file");
    fs::create_dir(dir.path().join("d")).unwrap();
    let got = refusal("=== FILE: d\nx\n=== END FILE\n", dir.path());
    assert_eq!(got, "d (patch line 1): is a directory, not a regular file");
}

#[cfg(unix)]
#[test]
fn modes_are_honoured_and_kept() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("root");
    write_file(dir.path(), "run.sh", b"echo a\n");
    write_file(dir.path(), "keep.sh", b"echo k\n");
    write_file(dir.path(), "plain.sh", b"echo p\n");
    let set =
        |p: &str, m: u32| fs::set_permissions(dir.path().join(p), fs::Permissions::from_mode(m)).unwrap();
    set("run.sh", 0o644);
    set("keep.sh", 0o750);
    set("plain.sh", 0o755);
    let patch = "diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n\
diff --git a/keep.sh b/keep.sh\n--- a/keep.sh\n+++ b/keep.sh\n@@ -1 +1 @@\n-echo k\n+echo K\n\
diff --git a/plain.sh b/plain.sh\nold mode 100755\nnew mode 100644\n--- a/plain.sh\n+++ b/plain.sh\n@@ -1 +1 @@\n-echo p\n+echo P\n\
diff --git a/new.sh b/new.sh\nnew file mode 100755\n--- /dev/null\n+++ b/new.sh\n@@ -0,0 +1 @@\n+echo n\n";
    let report = common::apply_text(patch, dir.path()).unwrap();
    assert_eq!(
        report.to_string(),
        "modified run.sh (+0 -0) mode 100755\nmodified keep.sh (+1 -1): hunk 1 exact at line 1\nmodified plain.sh (+1 -1) mode 100644: hunk 1 exact at line 1\ncreated new.sh (+1 -0) mode 100755: hunk 1 exact at line 1"
    );
    let mode = |p: &str| fs::metadata(dir.path().join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("run.sh"), 0o755);
    assert_eq!(mode("keep.sh"), 0o750, "an edit keeps the permissions");
    assert_eq!(mode("plain.sh"), 0o644);
    assert_eq!(mode("new.sh") & 0o111, 0o111);
    assert_eq!(fs::read(dir.path().join("run.sh")).unwrap(), b"echo a\n");
}

#[test]
fn size_cap_is_enforced_before_and_after() {
    let dir = TempDir::new("root");
    write_file(dir.path(), "big.txt", &b"x\n".repeat(100));
    write_file(dir.path(), "small.txt", b"x\n");
    let opts = ApplyOptions {
        max_file_bytes: 50,
        ..ApplyOptions::default()
    };
    let patch = parse("--- a/big.txt\n+++ b/big.txt\n@@ -1 +1 @@\n-x\n+y\n").unwrap();
    let err = apply(&patch, dir.path(), &opts).unwrap_err();
    assert_eq!(
        err.to_string(),
        "big.txt (patch line 1): file is 200 bytes, above the limit of 50"
    );
    let grow = format!("=== FILE: small.txt\n{}=== END FILE\n", "y\n".repeat(30));
    let err = apply(&parse(&grow).unwrap(), dir.path(), &opts).unwrap_err();
    assert_eq!(
        err.to_string(),
        "small.txt (patch line 1): file is 60 bytes, above the limit of 50"
    );
    assert_eq!(fs::read(dir.path().join("small.txt")).unwrap(), b"x\n");
}

#[test]
fn dry_run_reports_without_writing() {
    let dir = TempDir::new("root");
    write_file(dir.path(), "a.txt", b"a\n");
    let before = snapshot(dir.path());
    let patch = parse(
        "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-a\n+b\n--- /dev/null\n+++ b/n.txt\n@@ -0,0 +1 @@\n+n\n",
    )
    .unwrap();
    let opts = ApplyOptions {
        dry_run: true,
        ..ApplyOptions::default()
    };
    let report = apply(&patch, dir.path(), &opts).unwrap();
    assert!(report.dry_run);
    assert_eq!(report.files.len(), 2);
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn io_errors_are_not_refusals() {
    let patch = parse("--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-a\n+b\n").unwrap();
    let err = apply(
        &patch,
        Path::new("/nonexistent/root/for/sure"),
        &ApplyOptions::default(),
    )
    .unwrap_err();
    assert!(!err.is_refusal());
    assert!(matches!(
        err,
        ApplyError::Io {
            tree_restored: true,
            ..
        }
    ));
    assert!(
        err.to_string()
            .starts_with("I/O error while opening the root /nonexistent/root/for/sure:"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn unwritable_directory_is_an_io_error_and_changes_nothing() {
    use std::os::unix::fs::PermissionsExt;
    // Root ignores permissions; the test only means something for other users.
    let probe = TempDir::new("probe");
    fs::set_permissions(probe.path(), fs::Permissions::from_mode(0o555)).unwrap();
    let root_user = fs::write(probe.path().join("x"), b"x").is_ok();
    fs::set_permissions(probe.path(), fs::Permissions::from_mode(0o755)).unwrap();
    if root_user {
        eprintln!("note: running as root, permission test skipped");
        return;
    }
    let dir = TempDir::new("root");
    write_file(dir.path(), "a.txt", b"a\n");
    write_file(dir.path(), "locked/b.txt", b"b\n");
    fs::set_permissions(dir.path().join("locked"), fs::Permissions::from_mode(0o555)).unwrap();
    let before = snapshot(dir.path());
    let err = common::apply_text(
        "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-a\n+A\n--- a/locked/b.txt\n+++ b/locked/b.txt\n@@ -1 +1 @@\n-b\n+B\n",
        dir.path(),
    )
    .unwrap_err();
    fs::set_permissions(dir.path().join("locked"), fs::Permissions::from_mode(0o755)).unwrap();
    assert!(!err.is_refusal(), "{err}");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn patch_paths_lists_every_touched_path() {
    let patch = parse("diff --git a/a b/b\nrename from a\nrename to b\n=== FILE: .github/workflows/ci.yml\nx\n=== END FILE\n").unwrap();
    let paths: Vec<&str> = patch.paths().map(|p| p.as_str()).collect();
    assert_eq!(paths, vec!["a", "b", ".github/workflows/ci.yml"]);
}
