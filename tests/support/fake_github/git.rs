//! Bare repositories on disk behind the fake's repositories (clone_url is
//! their `file://` path): git itself is never faked.

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Fake")
        .env("GIT_AUTHOR_EMAIL", "fake@example.com")
        .env("GIT_COMMITTER_NAME", "Fake")
        .env("GIT_COMMITTER_EMAIL", "fake@example.com")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `git init --bare` with one empty commit on `main`.
pub fn init_bare(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let out = Command::new("git")
        .args(["init", "--bare", "--quiet"])
        .arg(dir)
        .output()
        .expect("git init");
    assert!(out.status.success());
    git(dir, &["symbolic-ref", "HEAD", "refs/heads/main"]);
    let tree = git(dir, &["hash-object", "-t", "tree", "-w", "--stdin"]);
    let commit = git(dir, &["commit-tree", &tree, "-m", "initial"]);
    git(dir, &["update-ref", "refs/heads/main", &commit]);
}

/// A new commit on top of `main`, as branch `branch`; returns its sha.
pub fn create_branch(dir: &Path, branch: &str) -> String {
    let tree = git(dir, &["rev-parse", "main^{tree}"]);
    let commit = git(dir, &["commit-tree", &tree, "-p", "main", "-m", branch]);
    git(dir, &["update-ref", &format!("refs/heads/{branch}"), &commit]);
    commit
}

/// The sha of `refs/heads/<branch>`, if it exists.
pub fn branch_sha(dir: &Path, branch: &str) -> Option<String> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(dir)
        .args([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
