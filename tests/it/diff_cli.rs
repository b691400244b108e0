//! `orchestrator diff apply`: the real binary's exit codes and output.

use std::io::Write;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_orchestrator");

fn apply(root: &std::path::Path, patch: &str, via_stdin: bool) -> std::process::Output {
    let mut command = Command::new(BIN);
    command.args(["diff", "apply", "--root"]).arg(root);
    if via_stdin {
        command.arg("-").stdin(Stdio::piped());
    } else {
        let file = root.parent().unwrap().join("change.patch");
        std::fs::write(&file, patch).unwrap();
        command.arg(file).stdin(Stdio::null());
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if via_stdin {
        child.stdin.take().unwrap().write_all(patch.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn tree() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(root.join("src/lib.rs"), "fn a() {}\n\nfn b() {\n    1\n}\n").unwrap();
    (dir, root)
}

const GOOD: &str = "diff --git a/src/lib.rs b/src/lib.rs\n--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -3,3 +3,3 @@\n fn b() {\n-    1\n+    2\n }\n";

#[test]
fn an_applicable_patch_exits_0_with_one_line_per_file() {
    let (_dir, root) = tree();
    let out = apply(&root, GOOD, false);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("src/lib.rs"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(root.join("src/lib.rs")).unwrap(),
        "fn a() {}\n\nfn b() {\n    2\n}\n"
    );
}

#[test]
fn the_patch_can_come_from_standard_input() {
    let (_dir, root) = tree();
    let out = apply(&root, GOOD, true);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_refused_patch_exits_1_and_changes_nothing() {
    let (_dir, root) = tree();
    let before = std::fs::read(root.join("src/lib.rs")).unwrap();
    let wrong = GOOD.replace("-    1", "-    7");
    let out = apply(&root, &wrong, false);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("src/lib.rs"),
        "the reason names the file: {stderr}"
    );
    assert_eq!(std::fs::read(root.join("src/lib.rs")).unwrap(), before);

    let escape = "--- a/../outside.txt\n+++ b/../outside.txt\n@@ -0,0 +1 @@\n+x\n";
    let out = apply(&root, escape, false);
    assert_eq!(out.status.code(), Some(1));
    assert!(!root.parent().unwrap().join("outside.txt").exists());
}

#[test]
fn usage_and_io_errors_exit_2() {
    let (dir, root) = tree();
    let missing = Command::new(BIN)
        .args(["diff", "apply", "--root"])
        .arg(&root)
        .arg(dir.path().join("no-such.patch"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let no_root = Command::new(BIN)
        .args(["diff", "apply", "x.patch"])
        .output()
        .unwrap();
    assert_eq!(no_root.status.code(), Some(2));
    let bad_root = apply(&dir.path().join("nope"), GOOD, false);
    assert_eq!(bad_root.status.code(), Some(2));
}

#[test]
fn context_rank_prints_the_best_files_first_and_caches_outside_the_repo() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::write(
        repo.join("src/parser.rs"),
        "pub fn parse_config(text: &str) -> Config { todo }\n",
    )
    .unwrap();
    std::fs::write(repo.join("src/network.rs"), "pub fn open_socket(addr: &str) {}\n").unwrap();
    std::fs::write(repo.join("README.md"), "A small tool.\n").unwrap();
    let query = dir.path().join("query.txt");
    std::fs::write(&query, "The config parser fails on empty text").unwrap();
    let data = dir.path().join("data");
    let out = Command::new(BIN)
        .args(["context", "rank", "--repo"])
        .arg(&repo)
        .arg("--query-file")
        .arg(&query)
        .args(["--top", "2"])
        .env("ORCH_DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"src/parser.rs"), "{stdout}");
    assert!(lines.len() <= 2);
    assert!(
        data.join("indexes").exists(),
        "the index cache is under ORCH_DATA_DIR"
    );
    let inside: Vec<_> = std::fs::read_dir(&repo)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        inside.len(),
        2,
        "nothing was written into the repository: {inside:?}"
    );
}
