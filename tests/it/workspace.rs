//! The git workspace (src/workspace) against real repositories: bare remotes
//! on disk (`file://`, as the fake GitHub serves them) and, for push
//! authentication, a bare repository behind `git http-backend` that demands
//! Basic auth with the installation token.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use orchestrator::github::{BotIdentity, RepoRef};
use orchestrator::workspace::{CommitIdentity, RemoteSpec, WorkspaceError, Workspaces, branch_name};
use secrecy::SecretString;

use crate::fake_github::git as bare;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Human")
        .env("GIT_AUTHOR_EMAIL", "human@example.com")
        .env("GIT_COMMITTER_NAME", "Human")
        .env("GIT_COMMITTER_EMAIL", "human@example.com")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare remote whose `main` holds `README.md`; returns its path.
fn remote_with_readme(dir: &Path) -> PathBuf {
    let remote = dir.join("remote.git");
    bare::init_bare(&remote);
    commit_on_remote(dir, &remote, "main", "README.md", "# demo\n");
    remote
}

/// A human's commit on `branch` of `remote` (created from `main` if missing).
fn commit_on_remote(dir: &Path, remote: &Path, branch: &str, file: &str, content: &str) -> String {
    let work = dir.join(format!("human-{}", uuid::Uuid::new_v4().simple()));
    git(
        dir,
        &[
            "clone",
            "--quiet",
            remote.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    if git(&work, &["ls-remote", "--heads", "origin", branch]).is_empty() {
        git(&work, &["checkout", "--quiet", "-b", branch, "origin/main"]);
    } else {
        git(&work, &["checkout", "--quiet", branch]);
    }
    std::fs::write(work.join(file), content).unwrap();
    git(&work, &["add", "-A"]);
    git(
        &work,
        &["commit", "--quiet", "-m", &format!("human edits {file}")],
    );
    git(&work, &["push", "--quiet", "origin", branch]);
    git(&work, &["rev-parse", "HEAD"])
}

fn spec(remote: &Path) -> RemoteSpec {
    RemoteSpec {
        repo: RepoRef::new("octo", "demo"),
        clone_url: format!("file://{}", remote.display()),
        default_branch: "main".into(),
    }
}

fn bot() -> CommitIdentity {
    CommitIdentity::bot(&BotIdentity {
        slug: "orch-test".into(),
        login: "orch-test[bot]".into(),
        user_id: 9001,
    })
}

/// `path -> content` of every file on `rev` of a repository.
fn tree_at(git_dir: &Path, rev: &str) -> Vec<(String, String)> {
    let names = git(git_dir, &["ls-tree", "-r", "--name-only", rev]);
    names
        .lines()
        .map(|name| {
            (
                name.to_string(),
                git(git_dir, &["show", &format!("{rev}:{name}")]),
            )
        })
        .collect()
}

fn files(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

const BRANCH: &str = "orchestrator/issue-5-workspace";

#[tokio::test]
async fn mirror_is_created_once_then_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let remote = remote_with_readme(dir.path());
    let workspaces = Workspaces::new(dir.path().join("data"));
    let mirror = workspaces.mirror_path(&RepoRef::new("octo", "demo"));

    let first = workspaces
        .prepare("job-1", &spec(&remote), BRANCH, None)
        .await
        .unwrap();
    assert!(
        mirror.join("HEAD").exists(),
        "mirror under <data>/mirrors/<owner>/<repo>.git"
    );
    assert_eq!(first.root(), dir.path().join("data/worktrees/job-1"));
    assert_eq!(
        std::fs::read_to_string(first.root().join("README.md")).unwrap(),
        "# demo\n"
    );
    let main_before = bare::branch_sha(&remote, "main").unwrap();
    assert_eq!(
        first.start().0,
        main_before,
        "a new branch starts at the default branch head"
    );
    assert!(!first.resumed());
    first.cleanup().await.unwrap();
    assert!(!dir.path().join("data/worktrees/job-1").exists());

    // The remote moves on; the second job fetches into the same mirror.
    std::fs::write(mirror.join("marker"), "kept").unwrap();
    let new_main = commit_on_remote(dir.path(), &remote, "main", "NEWS.md", "news\n");
    let second = workspaces
        .prepare("job-2", &spec(&remote), BRANCH, None)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(mirror.join("marker")).unwrap(),
        "kept",
        "not re-cloned"
    );
    assert_eq!(second.start().0, new_main, "fetched before the job");
    assert!(second.root().join("NEWS.md").exists());
    second.cleanup().await.unwrap();
}

#[tokio::test]
async fn steps_are_committed_and_pushed_with_bot_author_and_trailer() {
    let dir = tempfile::tempdir().unwrap();
    let remote = remote_with_readme(dir.path());
    let workspaces = Workspaces::new(dir.path().join("data"));
    let ws = workspaces
        .prepare("job-1", &spec(&remote), BRANCH, None)
        .await
        .unwrap();

    std::fs::create_dir_all(ws.root().join("src")).unwrap();
    std::fs::write(ws.root().join("src/lib.rs"), "pub fn answer() -> u32 { 42 }\n").unwrap();
    let first = ws
        .commit_step(
            "Add answer",
            "The issue asks for it.",
            &bot(),
            Some(("octocat", 583231)),
        )
        .await
        .unwrap()
        .expect("a commit");
    ws.push(None).await.unwrap();
    assert_eq!(
        bare::branch_sha(&remote, BRANCH).unwrap(),
        first.0,
        "pushed as soon as it exists"
    );

    // An empty step makes no commit.
    assert_eq!(ws.commit_step("Nothing", "", &bot(), None).await.unwrap(), None);
    assert_eq!(ws.head().await.unwrap(), first);

    std::fs::remove_file(ws.root().join("README.md")).unwrap();
    std::fs::write(ws.root().join("src/lib.rs"), "pub fn answer() -> u32 { 43 }\n").unwrap();
    let second = ws
        .commit_step("Change answer", "", &bot(), None)
        .await
        .unwrap()
        .unwrap();
    ws.push(None).await.unwrap();
    assert_eq!(bare::branch_sha(&remote, BRANCH).unwrap(), second.0);

    assert_eq!(
        tree_at(&remote, BRANCH),
        files(&[("src/lib.rs", "pub fn answer() -> u32 { 43 }")])
    );
    let log = git(&remote, &["log", "--format=%an <%ae>|%cn|%B%x00", BRANCH]);
    let entries: Vec<&str> = log.split('\0').map(str::trim).filter(|e| !e.is_empty()).collect();
    assert_eq!(entries.len(), 4, "two steps on top of main's two commits: {log}");
    assert_eq!(
        entries[0],
        "orch-test[bot] <9001+orch-test[bot]@users.noreply.github.com>|orch-test[bot]|Change answer"
    );
    assert_eq!(
        entries[1],
        "orch-test[bot] <9001+orch-test[bot]@users.noreply.github.com>|orch-test[bot]|Add answer\n\n\
         The issue asks for it.\n\nCo-authored-by: octocat <583231+octocat@users.noreply.github.com>"
    );
    assert_eq!(
        ws.changed_files_since_base().await.unwrap(),
        vec!["README.md".to_string(), "src/lib.rs".to_string()]
    );
    assert_eq!(
        bare::branch_sha(&remote, "main"),
        Some(ws.base().0.clone()),
        "main untouched"
    );
    ws.cleanup().await.unwrap();
}

#[tokio::test]
async fn a_retry_resumes_from_the_pushed_branch() {
    let dir = tempfile::tempdir().unwrap();
    let remote = remote_with_readme(dir.path());
    let workspaces = Workspaces::new(dir.path().join("data"));

    let ws = workspaces
        .prepare("job-1", &spec(&remote), BRANCH, None)
        .await
        .unwrap();
    std::fs::write(ws.root().join("a.txt"), "step 1\n").unwrap();
    let pushed = ws.commit_step("Step 1", "", &bot(), None).await.unwrap().unwrap();
    ws.push(None).await.unwrap();
    // A second commit that never reached the remote (the worker died before
    // its push): the retry starts from what the remote has.
    std::fs::write(ws.root().join("b.txt"), "lost\n").unwrap();
    ws.commit_step("Step 2", "", &bot(), None).await.unwrap().unwrap();
    drop(ws); // no cleanup: a crash leaves the worktree behind

    // The default branch moves meanwhile; the retry keeps its own base.
    commit_on_remote(dir.path(), &remote, "main", "other.txt", "x\n");

    let retry = workspaces
        .prepare("job-1", &spec(&remote), BRANCH, None)
        .await
        .unwrap();
    assert!(retry.resumed());
    assert_eq!(retry.start(), &pushed);
    assert_eq!(retry.head().await.unwrap(), pushed);
    assert!(
        !retry.root().join("b.txt").exists(),
        "unpushed work is not resurrected"
    );
    let done = retry.commits_since_base().await.unwrap();
    assert_eq!(
        done.iter().map(|c| c.subject.as_str()).collect::<Vec<_>>(),
        ["Step 1"]
    );

    std::fs::write(retry.root().join("b.txt"), "step 2\n").unwrap();
    let second = retry
        .commit_step("Step 2", "", &bot(), None)
        .await
        .unwrap()
        .unwrap();
    retry.push(None).await.unwrap();
    assert_eq!(bare::branch_sha(&remote, BRANCH).unwrap(), second.0);
    assert_eq!(
        git(&remote, &["rev-parse", &format!("{BRANCH}~1")]),
        pushed.0,
        "fast-forward"
    );
    retry.cleanup().await.unwrap();
}

#[tokio::test]
async fn a_diverged_remote_branch_is_refused_not_forced() {
    let dir = tempfile::tempdir().unwrap();
    let remote = remote_with_readme(dir.path());
    let workspaces = Workspaces::new(dir.path().join("data"));
    let ws = workspaces
        .prepare("job-1", &spec(&remote), BRANCH, None)
        .await
        .unwrap();
    std::fs::write(ws.root().join("a.txt"), "bot\n").unwrap();
    ws.commit_step("Bot step", "", &bot(), None)
        .await
        .unwrap()
        .unwrap();

    // Someone pushes to the branch first.
    let theirs = commit_on_remote(dir.path(), &remote, BRANCH, "human.txt", "human\n");
    let err = ws.push(None).await.unwrap_err();
    assert!(matches!(err, WorkspaceError::NonFastForward { .. }), "{err:?}");
    assert_eq!(
        bare::branch_sha(&remote, BRANCH).unwrap(),
        theirs,
        "nothing forced"
    );
    ws.cleanup().await.unwrap();
}

#[tokio::test]
async fn workflow_changes_are_refused_before_committing() {
    let dir = tempfile::tempdir().unwrap();
    let remote = remote_with_readme(dir.path());
    let workspaces = Workspaces::new(dir.path().join("data"));
    let ws = workspaces
        .prepare("job-1", &spec(&remote), BRANCH, None)
        .await
        .unwrap();
    std::fs::create_dir_all(ws.root().join(".github/workflows")).unwrap();
    std::fs::write(ws.root().join(".github/workflows/ci.yml"), "on: push\n").unwrap();
    let start = ws.head().await.unwrap();
    let err = ws.commit_step("Add CI", "", &bot(), None).await.unwrap_err();
    match &err {
        WorkspaceError::ProtectedPath(reason) => {
            assert!(
                reason.contains(".github/workflows/ci.yml") && reason.contains("workflows"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ws.head().await.unwrap(), start, "nothing committed");

    // Discarding the refused change leaves a clean worktree for the next step.
    std::fs::write(ws.root().join("README.md"), "edited\n").unwrap();
    ws.discard_changes().await.unwrap();
    assert!(!ws.root().join(".github/workflows/ci.yml").exists());
    assert_eq!(
        std::fs::read_to_string(ws.root().join("README.md")).unwrap(),
        "# demo\n"
    );
    assert_eq!(
        ws.commit_step("Nothing left", "", &bot(), None).await.unwrap(),
        None
    );
    ws.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_jobs_share_one_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let remote = remote_with_readme(dir.path());
    let workspaces = Workspaces::new(dir.path().join("data"));
    let spec = spec(&remote);
    let (a, b) = tokio::join!(
        workspaces.prepare("job-a", &spec, "orchestrator/issue-1-a", None),
        workspaces.prepare("job-b", &spec, "orchestrator/issue-2-b", None),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let mirrors = std::fs::read_dir(dir.path().join("data/mirrors/octo")).unwrap();
    let names: Vec<String> = mirrors
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.contains(&"demo.git".to_string()), "{names:?}");
    assert!(
        names.iter().all(|n| !n.starts_with(".new-")),
        "no half-made mirror left: {names:?}"
    );
    for (ws, file) in [(&a, "a.txt"), (&b, "b.txt")] {
        std::fs::write(ws.root().join(file), file).unwrap();
        ws.commit_step(file, "", &bot(), None).await.unwrap().unwrap();
        ws.push(None).await.unwrap();
    }
    assert_eq!(
        tree_at(&remote, "orchestrator/issue-1-a"),
        files(&[("README.md", "# demo"), ("a.txt", "a.txt")])
    );
    assert_eq!(
        tree_at(&remote, "orchestrator/issue-2-b"),
        files(&[("README.md", "# demo"), ("b.txt", "b.txt")])
    );
    a.cleanup().await.unwrap();
    b.cleanup().await.unwrap();
}

#[tokio::test]
async fn an_empty_remote_has_no_default_branch_to_start_from() {
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("empty.git");
    git(
        dir.path(),
        &["init", "--bare", "--quiet", remote.to_str().unwrap()],
    );
    let workspaces = Workspaces::new(dir.path().join("data"));
    let err = workspaces
        .prepare("job-1", &spec(&remote), BRANCH, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, WorkspaceError::MissingDefaultBranch(b) if b == "main"),
        "{err:?}"
    );
}

#[tokio::test]
async fn two_jobs_cannot_share_a_branch() {
    let dir = tempfile::tempdir().unwrap();
    let remote = remote_with_readme(dir.path());
    let workspaces = Workspaces::new(dir.path().join("data"));
    let ws = workspaces
        .prepare("job-1", &spec(&remote), BRANCH, None)
        .await
        .unwrap();
    let err = workspaces
        .prepare("job-2", &spec(&remote), BRANCH, None)
        .await
        .unwrap_err();
    assert!(matches!(err, WorkspaceError::BranchInUse { .. }), "{err:?}");
    let same_job = workspaces
        .prepare("job-1", &spec(&remote), BRANCH, None)
        .await
        .unwrap_err();
    assert!(
        matches!(same_job, WorkspaceError::WorktreeInUse(_)),
        "{same_job:?}"
    );
    assert!(
        ws.root().join("README.md").exists(),
        "a live worktree is left alone"
    );
    // Another branch of the same repository is fine, at the same time.
    let other = workspaces
        .prepare("job-3", &spec(&remote), "orchestrator/issue-6-other", None)
        .await
        .unwrap();
    other.cleanup().await.unwrap();
    ws.cleanup().await.unwrap();
}

#[tokio::test]
async fn a_worktree_left_by_a_dead_job_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let remote = remote_with_readme(dir.path());
    let workspaces = Workspaces::new(dir.path().join("data"));
    let ws = workspaces
        .prepare("job-1", &spec(&remote), BRANCH, None)
        .await
        .unwrap();
    let stale = ws.root().to_path_buf();
    drop(ws); // the worker died without cleanup: its lock is gone
    let next = workspaces
        .prepare("job-2", &spec(&remote), BRANCH, None)
        .await
        .unwrap();
    assert!(!stale.exists(), "the dead job's worktree was removed");
    assert_eq!(
        std::fs::read_to_string(next.root().join("README.md")).unwrap(),
        "# demo\n"
    );
    next.cleanup().await.unwrap();
    let left: Vec<_> = std::fs::read_dir(dir.path().join("data/worktrees"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "no worktree or lock file left: {left:?}");
}

#[tokio::test]
async fn open_local_commits_on_a_branch_of_the_local_repository() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("checkout");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "--quiet", "-b", "main"]);
    std::fs::write(repo.join("README.md"), "local\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "--quiet", "-m", "initial"]);
    // The user's uncommitted work must stay untouched.
    std::fs::write(repo.join("README.md"), "dirty\n").unwrap();

    let job_id = "0f3a9c2e-1111-2222-3333-444455556666";
    let branch = branch_name(None, job_id, "Add a greeting");
    assert_eq!(branch, "orchestrator/task-0f3a9c2e-add-a-greeting");
    let workspaces = Workspaces::new(dir.path().join("data"));
    let ws = workspaces.open_local(job_id, &repo, &branch).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(ws.root().join("README.md")).unwrap(),
        "local\n"
    );
    std::fs::write(ws.root().join("hello.txt"), "hello\n").unwrap();
    let sha = ws
        .commit_step(
            "Add a greeting",
            "",
            &CommitIdentity::new("orchestrator", "orchestrator@localhost"),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(ws.push(None).await, Err(WorkspaceError::NoRemote)));
    ws.cleanup().await.unwrap();

    assert_eq!(
        git(&repo, &["rev-parse", &branch]),
        sha.0,
        "the commit is on the local branch"
    );
    assert_eq!(git(&repo, &["show", &format!("{branch}:hello.txt")]), "hello");
    assert_eq!(git(&repo, &["symbolic-ref", "--short", "HEAD"]), "main");
    assert_eq!(
        std::fs::read_to_string(repo.join("README.md")).unwrap(),
        "dirty\n"
    );
    assert!(!repo.join("hello.txt").exists());
    assert_eq!(
        git(&repo, &["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        1
    );

    // A rerun continues the branch.
    let again = workspaces.open_local(job_id, &repo, &branch).await.unwrap();
    assert!(again.resumed());
    assert_eq!(again.head().await.unwrap(), sha);
    again.cleanup().await.unwrap();
}

#[tokio::test]
async fn a_job_on_the_fake_github_pushes_its_branch_and_opens_a_pull_request() {
    use crate::fake_github::{APP_SLUG, BOT_USER_ID, FakeGitHub, INSTALLATION_ID};
    use orchestrator::github::NewPullRequest;
    use orchestrator::workspace::RemoteSpec;

    let fake = FakeGitHub::start().await;
    let repo = fake.add_repo("octo-org/app");
    let gh = fake.client();
    let inst = gh.installation(INSTALLATION_ID);
    let identity = CommitIdentity::bot(&gh.learn_identity().await.unwrap());
    assert_eq!(
        identity,
        CommitIdentity::new(
            format!("{APP_SLUG}[bot]"),
            format!("{BOT_USER_ID}+{APP_SLUG}[bot]@users.noreply.github.com")
        )
    );
    let remote = RemoteSpec::from_repository(&inst.repository(&repo).await.unwrap()).unwrap();
    let branch = branch_name(Some(7), "job", "Fix the typo");

    let dir = tempfile::tempdir().unwrap();
    let workspaces = Workspaces::new(dir.path());
    let token = inst.token().await.unwrap();
    let ws = workspaces
        .prepare("job-7", &remote, &branch, Some(&token))
        .await
        .unwrap();
    std::fs::write(ws.root().join("typo.txt"), "fixed\n").unwrap();
    let sha = ws
        .commit_step("Fix the typo", "As asked.", &identity, Some(("octocat", 1)))
        .await
        .unwrap()
        .unwrap();
    ws.push(Some(&inst.token().await.unwrap())).await.unwrap();
    let bare_dir = fake.state().repos["octo-org/app"].bare.clone();
    assert_eq!(bare::branch_sha(&bare_dir, &branch), Some(sha.0));
    let pull = inst
        .create_pull_request(
            &repo,
            &NewPullRequest {
                title: "Fix the typo".into(),
                head: branch.clone(),
                base: remote.default_branch.clone(),
                body: "Closes #7".into(),
                draft: false,
                maintainer_can_modify: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(fake.pulls(&repo).len(), 1, "{pull:?}");
    ws.cleanup().await.unwrap();
}

// --- push authentication over smart HTTP -----------------------------------

const TOKEN: &str = "ghs_TestInstallationToken0123456789";

#[derive(Clone)]
struct HttpGit {
    root: PathBuf,
    /// The `Authorization` header of every request.
    auth: Arc<Mutex<Vec<Option<String>>>>,
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A CGI shim: requests with the right Basic credentials go to
/// `git http-backend`; anything else gets the 401 that makes git ask.
async fn http_backend(
    State(st): State<HttpGit>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    st.auth.lock().unwrap().push(auth.clone());
    let expected = format!("Basic {}", base64(format!("x-access-token:{TOKEN}").as_bytes()));
    if auth.as_deref() != Some(expected.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"git\"")],
            "",
        )
            .into_response();
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", &st.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", "x-access-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, &body)
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2)))
        .unwrap();
    let mut response = Response::builder();
    let mut status = 200;
    for line in String::from_utf8_lossy(&raw[..split.0]).lines() {
        let (name, value) = line.split_once(':').unwrap();
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            status = value[..3].parse().unwrap();
        } else {
            response = response.header(name, value);
        }
    }
    response
        .status(status)
        .body(axum::body::Body::from(raw[split.1..].to_vec()))
        .unwrap()
}

#[tokio::test]
async fn push_over_https_gets_the_token_through_askpass_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("served");
    std::fs::create_dir_all(&root).unwrap();
    let remote = root.join("demo.git");
    bare::init_bare(&remote);
    commit_on_remote(dir.path(), &remote, "main", "README.md", "# demo\n");

    let state = HttpGit {
        root: root.clone(),
        auth: Arc::default(),
    };
    let app = Router::new().fallback(http_backend).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    // A `git` that records its argument list and environment, then runs git.
    let record = dir.path().join("git-calls.log");
    let wrapper = dir.path().join("git-wrapper.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf 'ARGV %s\\n' \"$*\" >> '{log}'\nenv >> '{log}'\nexec git \"$@\"\n",
            log = record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let workspaces = Workspaces::new(dir.path().join("data")).with_git_program(&wrapper);
    let spec = RemoteSpec {
        repo: RepoRef::new("octo", "demo"),
        clone_url: format!("http://{addr}/demo.git"),
        default_branch: "main".into(),
    };
    let token = SecretString::from(TOKEN.to_string());

    // Without the token the remote refuses, and git does not hang on a prompt.
    let denied = workspaces
        .prepare("job-0", &spec, BRANCH, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            denied,
            WorkspaceError::GitCommand {
                operation: "fetch",
                ..
            }
        ),
        "{denied:?}"
    );

    let ws = workspaces
        .prepare("job-1", &spec, BRANCH, Some(&token))
        .await
        .unwrap();
    std::fs::write(ws.root().join("a.txt"), "over http\n").unwrap();
    let sha = ws.commit_step("Step", "", &bot(), None).await.unwrap().unwrap();
    ws.push(Some(&token)).await.unwrap();
    assert_eq!(bare::branch_sha(&remote, BRANCH).unwrap(), sha.0);
    ws.cleanup().await.unwrap();

    let auth = state.auth.lock().unwrap().clone();
    assert!(auth.iter().any(Option::is_some), "git sent credentials: {auth:?}");
    let calls = std::fs::read_to_string(&record).unwrap();
    assert!(
        calls.contains("ARGV ") && calls.contains(" push ") && calls.contains("GIT_ASKPASS="),
        "{calls}"
    );
    assert!(
        !calls.contains(TOKEN),
        "the token leaked into argv or the environment:\n{calls}"
    );
    if std::env::var_os("CARGO_MANIFEST_DIR").is_some() {
        assert!(
            !calls.contains("CARGO_MANIFEST_DIR="),
            "git inherits only a short list of variables"
        );
    }
    let scratch = dir.path().join("data/tmp");
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "askpass files are deleted"
    );
}
