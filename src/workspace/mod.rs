//! A job's git workspace (DESIGN §5 "Git"; ADR 0004).
//!
//! For a GitHub job, [`Workspaces::prepare`] keeps one bare mirror per
//! repository under `<data_dir>/mirrors/<owner>/<repo>.git`, fetched before
//! every job under a per-repository lock, and adds a worktree for the job
//! under `<data_dir>/worktrees/<job-id>` with the job's branch checked out:
//! from the remote branch's head when it already exists (a retry keeps the
//! steps already pushed), otherwise from the default branch's head. Each
//! step becomes one commit ([`Workspace::commit_step`]) which the runner
//! pushes at once ([`Workspace::push`], fast-forward only).
//!
//! For `orchestrator run --repo DIR` ([`Workspaces::open_local`]) the
//! worktree is added to the local repository itself, and the commits land on
//! its branch; nothing is pushed.
//!
//! Local work (worktrees, index, commits, refs) uses git2 inside
//! `spawn_blocking`; fetch and push run the `git` program, which gets the
//! installation token through `GIT_ASKPASS` only (see `git_cli.rs` and ADR 0004).
//!
//! A job, as the runner drives it:
//!
//! ```text
//! let workspaces = Workspaces::new(&config.data_dir);            // once per process
//! let remote = RemoteSpec::from_repository(&inst.repository(&repo).await?)?;
//! let branch = branch_name(Some(issue), &job_id, &issue_title);    // stored on the job
//! let ws = workspaces.prepare(&job_id, &remote, &branch, Some(&inst.token().await?)).await?;
//! let done = ws.commits_since_base().await?;                       // steps kept by a retry
//! for step in remaining_steps {
//!     /* apply the step's patch under ws.root() */
//!     match ws.commit_step(&step.title, &step.rationale, &CommitIdentity::bot(&bot), Some((&login, id))).await {
//!         Ok(Some(_sha)) => ws.push(Some(&inst.token().await?)).await?,  // NonFastForward: fail the job
//!         Ok(None) => { /* step "empty" */ }
//!         Err(WorkspaceError::ProtectedPath(why)) => { ws.discard_changes().await?; /* diff_refused: why */ }
//!         Err(other) => return Err(other.into()),
//!     }
//! }
//! ws.cleanup().await?;
//! ```
//!
//! Worktrees are removed by [`Workspace::cleanup`], which the runner calls
//! when the job ends, whatever the outcome: what matters of a failed job is
//! on the remote branch. A live [`Workspace`] holds an OS lock on
//! `<worktree>.lock`; a worktree left behind by a crash (its lock free) is
//! replaced when the same job, or another job on the same branch, is
//! prepared again, while one in use is never touched.

mod git_cli;
mod local;
pub mod naming;

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use git2::Repository;
use secrecy::SecretString;

pub use naming::{branch_name, commit_message, refuse_protected_paths, slug};

use crate::github::{BotIdentity, RepoRef};
use git_cli::GitCli;

/// Why a workspace operation failed. Callers branch on
/// [`WorkspaceError::NonFastForward`] (someone else moved the branch) and
/// [`WorkspaceError::ProtectedPath`] (a user-facing refusal); the rest are
/// internal errors.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("`{0}` is not a valid branch name")]
    InvalidBranch(String),
    #[error("`{0}` cannot name a worktree (letters, digits, `-` and `_` only)")]
    InvalidJobId(String),
    #[error("`{0}` is not a usable repository name")]
    InvalidRepo(String),
    #[error(
        "the clone URL carries credentials; refusing to use it (tokens go through the credentials prompt only)"
    )]
    CredentialsInUrl,
    #[error("the clone URL cannot start with `-`")]
    InvalidUrl,
    #[error("the remote has no branch `{0}` (is the repository empty?)")]
    MissingDefaultBranch(String),
    #[error("`{0}` is not a git repository with at least one commit")]
    NotARepository(PathBuf),
    #[error("the worktree {} is in use by a running job", .0.display())]
    WorktreeInUse(PathBuf),
    #[error("branch `{branch}` is already checked out in {}", path.display())]
    BranchInUse { branch: String, path: PathBuf },
    #[error(
        "push of `{branch}` rejected: the remote branch has commits this workspace does not have \
         (not a fast-forward; nothing was forced): {detail}"
    )]
    NonFastForward { branch: String, detail: String },
    #[error("push of `{branch}` rejected by the remote: {detail}")]
    PushRejected { branch: String, detail: String },
    #[error("this workspace has no remote (`orchestrator run` mode); nothing can be pushed")]
    NoRemote,
    #[error("{0}")]
    ProtectedPath(String),
    #[error("git {operation} failed (exit {code:?}): {detail}")]
    GitCommand {
        operation: &'static str,
        code: Option<i32>,
        detail: String,
    },
    #[error("could not run `git`: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("workspace I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("workspace task failed: {0}")]
    Task(String),
}

/// A commit id (40 hex digits), as git prints it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommitSha(pub String);

impl fmt::Display for CommitSha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for CommitSha {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Who commits: name and e-mail of the author (and committer). For GitHub
/// jobs this is the bot ([`CommitIdentity::bot`]), so GitHub shows the App's
/// avatar on every step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitIdentity {
    pub name: String,
    pub email: String,
}

impl CommitIdentity {
    pub fn new(name: impl Into<String>, email: impl Into<String>) -> CommitIdentity {
        CommitIdentity {
            name: name.into(),
            email: email.into(),
        }
    }

    /// `<slug>[bot] <<bot-user-id>+<slug>[bot]@users.noreply.github.com>`.
    pub fn bot(bot: &BotIdentity) -> CommitIdentity {
        CommitIdentity::new(bot.commit_name(), bot.commit_email())
    }
}

/// One commit on the job's branch, as the runner needs it to tell which
/// steps a previous attempt already completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepCommit {
    pub sha: CommitSha,
    /// The first line of the message: the step's title.
    pub subject: String,
}

/// The repository a job works on, as `GET /repos/{owner}/{repo}` describes it
/// at job start (so GitHub Enterprise and test remotes work unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    /// Names the mirror directory.
    pub repo: RepoRef,
    /// Fetched from and pushed to; must carry no credentials.
    pub clone_url: String,
    /// New branches start from its head.
    pub default_branch: String,
}

impl RemoteSpec {
    /// From what the GitHub client returned; `None` when `full_name` is not `owner/name`.
    pub fn from_repository(repository: &crate::github::Repository) -> Option<RemoteSpec> {
        Some(RemoteSpec {
            repo: RepoRef::parse(&repository.full_name)?,
            clone_url: repository.clone_url.clone(),
            default_branch: repository.default_branch.clone(),
        })
    }
}

/// Where workspaces live and how git is run; one per process, shared by the
/// workers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Workspaces {
    data_dir: PathBuf,
    git: GitCli,
}

impl Workspaces {
    /// Workspaces under `data_dir` (made absolute, because git runs in other
    /// directories), running `git` from `PATH`.
    pub fn new(data_dir: impl AsRef<Path>) -> Workspaces {
        let data_dir =
            std::path::absolute(data_dir.as_ref()).unwrap_or_else(|_| data_dir.as_ref().to_path_buf());
        Workspaces {
            git: GitCli {
                program: PathBuf::from("git"),
                scratch: data_dir.join("tmp"),
            },
            data_dir,
        }
    }

    /// Runs another `git` program (tests use a wrapper that records its arguments).
    pub fn with_git_program(mut self, program: impl Into<PathBuf>) -> Workspaces {
        self.git.program = program.into();
        self
    }

    /// `<data_dir>/mirrors/<owner>/<repo>.git`.
    pub fn mirror_path(&self, repo: &RepoRef) -> PathBuf {
        self.data_dir
            .join("mirrors")
            .join(&repo.owner)
            .join(format!("{}.git", repo.name))
    }

    /// `<data_dir>/worktrees/<job-id>`.
    pub fn worktree_path(&self, job_id: &str) -> PathBuf {
        self.data_dir.join("worktrees").join(job_id)
    }

    /// Fetches (or first creates) the repository's mirror and adds the job's
    /// worktree with `branch` checked out: at the remote branch's head when
    /// it exists, else at the default branch's head. `token` answers the
    /// remote's credential prompt (`None` for `file://` remotes).
    pub async fn prepare(
        &self,
        job_id: &str,
        remote: &RemoteSpec,
        branch: &str,
        token: Option<&SecretString>,
    ) -> Result<Workspace, WorkspaceError> {
        check_job_id(job_id)?;
        check_branch(branch)?;
        check_branch(&remote.default_branch)?;
        check_url(&remote.clone_url)?;
        for part in [&remote.repo.owner, &remote.repo.name] {
            let ok = !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !ok {
                return Err(WorkspaceError::InvalidRepo(remote.repo.to_string()));
            }
        }
        let mirror = self.mirror_path(&remote.repo);
        let _lock = lock_mirror(&mirror).await?;
        self.fetch_mirror(&mirror, &remote.clone_url, token).await?;

        let root = self.worktree_path(job_id);
        let (name, path, branch_owned, default) = (
            job_id.to_string(),
            root.clone(),
            branch.to_string(),
            remote.default_branch.clone(),
        );
        let mirror_dir = mirror.clone();
        let (start, lock) = blocking(move || {
            let repo = Repository::open_bare(&mirror_dir)?;
            let start = local::mirror_start(&repo, &default, &branch_owned)?;
            let lock = local::add_worktree(&repo, &name, &path, &branch_owned, start.start)?;
            Ok((start, lock))
        })
        .await?;
        tracing::info!(
            job_id,
            branch,
            resumed = start.resumed,
            start = %start.start,
            "workspace prepared"
        );
        Ok(Workspace {
            root,
            repo_dir: mirror,
            name: job_id.to_string(),
            branch: branch.to_string(),
            base: CommitSha(start.base.to_string()),
            start: CommitSha(start.start.to_string()),
            resumed: start.resumed,
            remote: Some(remote.clone()),
            git: self.git.clone(),
            _lock: lock,
        })
    }

    /// `orchestrator run` mode: adds the job's worktree to the local
    /// repository at `repo_path`, on `branch` (continued if it exists, else
    /// started from the repository's `HEAD`). The user's own checkout is
    /// never touched; the commits stay on the branch after cleanup.
    pub async fn open_local(
        &self,
        job_id: &str,
        repo_path: &Path,
        branch: &str,
    ) -> Result<Workspace, WorkspaceError> {
        check_job_id(job_id)?;
        check_branch(branch)?;
        let root = self.worktree_path(job_id);
        let (name, path, branch_owned, repo_path) = (
            job_id.to_string(),
            root.clone(),
            branch.to_string(),
            repo_path.to_path_buf(),
        );
        let (repo_dir, start, lock) = blocking(move || {
            let repo = Repository::open(&repo_path)
                .map_err(|_| WorkspaceError::NotARepository(repo_path.clone()))?;
            let start = local::local_start(&repo, &branch_owned)?;
            let lock = local::add_worktree(&repo, &name, &path, &branch_owned, start.start)?;
            Ok((repo.path().to_path_buf(), start, lock))
        })
        .await?;
        Ok(Workspace {
            root,
            repo_dir,
            name: job_id.to_string(),
            branch: branch.to_string(),
            base: CommitSha(start.base.to_string()),
            start: CommitSha(start.start.to_string()),
            resumed: start.resumed,
            remote: None,
            git: self.git.clone(),
            _lock: lock,
        })
    }

    /// Creates the mirror on first use (into a temporary directory renamed
    /// into place, so a crash never leaves a half-made mirror), then fetches
    /// every branch of the remote into `refs/remotes/origin/*`, pruning
    /// deleted ones.
    async fn fetch_mirror(
        &self,
        mirror: &Path,
        clone_url: &str,
        token: Option<&SecretString>,
    ) -> Result<(), WorkspaceError> {
        let fetch_args = |url: &str| -> Vec<OsString> {
            [
                "fetch",
                "--prune",
                "--no-tags",
                "--quiet",
                url,
                "+refs/heads/*:refs/remotes/origin/*",
            ]
            .map(OsString::from)
            .to_vec()
        };
        if mirror.join("HEAD").exists() {
            self.git
                .run_ok(mirror, "fetch", &fetch_args(clone_url), token)
                .await?;
            return Ok(());
        }
        let parent = mirror
            .parent()
            .ok_or_else(|| WorkspaceError::InvalidRepo(mirror.display().to_string()))?;
        tokio::fs::create_dir_all(parent).await?;
        let temp = parent.join(format!(".new-{}", uuid::Uuid::new_v4().simple()));
        let temp_dir = temp.clone();
        blocking(move || Ok(Repository::init_bare(&temp_dir).map(drop)?)).await?;
        let fetched = self
            .git
            .run_ok(&temp, "fetch", &fetch_args(clone_url), token)
            .await;
        if let Err(err) = fetched {
            let _ = tokio::fs::remove_dir_all(&temp).await;
            return Err(err);
        }
        if mirror.exists() {
            // A directory without HEAD: the remains of something broken.
            tokio::fs::remove_dir_all(mirror).await?;
        }
        tokio::fs::rename(&temp, mirror).await?;
        tracing::info!(mirror = %mirror.display(), "mirror created");
        Ok(())
    }
}

/// One job's worktree, with its branch checked out.
#[derive(Debug)]
pub struct Workspace {
    root: PathBuf,
    repo_dir: PathBuf,
    name: String,
    branch: String,
    base: CommitSha,
    start: CommitSha,
    resumed: bool,
    remote: Option<RemoteSpec>,
    git: GitCli,
    /// Held while this value lives: tells a later `prepare` that the
    /// worktree is in use (released by the OS if the process dies).
    _lock: std::fs::File,
}

impl Workspace {
    /// The worktree's directory: where the diff engine applies changes.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The branch this workspace commits to (without `refs/heads/`).
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// Where the branch left the default branch (or the local `HEAD`):
    /// what the PR compares against.
    pub fn base(&self) -> &CommitSha {
        &self.base
    }

    /// The commit the worktree started from: the remote branch's head on a
    /// retry, else the same as [`Workspace::base`].
    pub fn start(&self) -> &CommitSha {
        &self.start
    }

    /// Whether the branch already existed (remote branch in mirror mode,
    /// local branch in local mode): the job is a retry or a rerun.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Commits everything changed in the worktree as one step: author and
    /// committer `author`, message = title + rationale + `Co-authored-by`
    /// trailer for `co_author` (login, user id). `None` when the step changed
    /// nothing (no empty commits). A change under `.github/workflows/` or
    /// `.git/` is refused and nothing is committed.
    pub async fn commit_step(
        &self,
        title: &str,
        rationale: &str,
        author: &CommitIdentity,
        co_author: Option<(&str, u64)>,
    ) -> Result<Option<CommitSha>, WorkspaceError> {
        let message = commit_message(title, rationale, co_author);
        let (root, author) = (self.root.clone(), author.clone());
        let sha = blocking(move || local::commit_all(&root, &message, &author)).await?;
        if let Some(sha) = &sha {
            tracing::info!(branch = %self.branch, %sha, "step committed");
        }
        Ok(sha)
    }

    /// Pushes `HEAD` to the remote branch, fast-forward only (never forced).
    /// A remote branch that moved elsewhere is
    /// [`WorkspaceError::NonFastForward`]. `token` answers the credential
    /// prompt; ask the GitHub client for a fresh one before each push.
    pub async fn push(&self, token: Option<&SecretString>) -> Result<(), WorkspaceError> {
        self.push_to(&self.branch.clone(), token).await
    }

    /// Pushes `HEAD` to `target` on the remote, fast-forward only: the
    /// `direct_push` merge strategy lands the job's commits on the default
    /// branch this way, and a default branch that moved meanwhile is
    /// [`WorkspaceError::NonFastForward`], never overwritten.
    pub async fn push_to(&self, target: &str, token: Option<&SecretString>) -> Result<(), WorkspaceError> {
        check_branch(target)?;
        let remote = self.remote.as_ref().ok_or(WorkspaceError::NoRemote)?;
        let refspec = format!("HEAD:refs/heads/{target}");
        let args: Vec<OsString> = ["push", "--porcelain", &remote.clone_url, &refspec]
            .map(OsString::from)
            .to_vec();
        let out = self.git.run(&self.root, "push", &args, token).await?;
        // `--porcelain` prints one line per ref: `<flag>\t<from>:<to>\t<summary>`.
        let rejected = out.stdout.lines().find(|line| line.starts_with('!'));
        if let Some(line) = rejected {
            let detail = line.rsplit('\t').next().unwrap_or(line).trim().to_string();
            let branch = target.to_string();
            return Err(if detail.starts_with("[rejected]") {
                WorkspaceError::NonFastForward { branch, detail }
            } else {
                WorkspaceError::PushRejected { branch, detail }
            });
        }
        if !out.success {
            return Err(WorkspaceError::GitCommand {
                operation: "push",
                code: out.code,
                detail: out.stderr.trim().to_string(),
            });
        }
        tracing::info!(branch = %target, "branch pushed");
        Ok(())
    }

    /// Throws away every uncommitted change (tracked files restored,
    /// untracked files removed, ignored ones kept): after a refused step, so
    /// its files do not slip into the next step's commit.
    pub async fn discard_changes(&self) -> Result<(), WorkspaceError> {
        let root = self.root.clone();
        blocking(move || local::reset_to_head(&root)).await
    }

    /// The commit at the tip of the branch.
    pub async fn head(&self) -> Result<CommitSha, WorkspaceError> {
        let root = self.root.clone();
        blocking(move || local::head(&root)).await
    }

    /// Files changed by the branch's commits since [`Workspace::base`]
    /// (uncommitted edits are not counted): for the PR body and the check run.
    pub async fn changed_files_since_base(&self) -> Result<Vec<String>, WorkspaceError> {
        let (root, base) = (self.root.clone(), self.base.clone());
        blocking(move || local::changed_since(&root, &base)).await
    }

    /// The branch's commits since [`Workspace::base`], oldest first: on a
    /// retry, the steps a previous attempt already pushed.
    pub async fn commits_since_base(&self) -> Result<Vec<StepCommit>, WorkspaceError> {
        let (root, base) = (self.root.clone(), self.base.clone());
        blocking(move || local::commits_since(&root, &base)).await
    }

    /// Removes the worktree (directory and git's record of it). The branch
    /// stays: on the remote in mirror mode, in the repository in local mode.
    pub async fn cleanup(self) -> Result<(), WorkspaceError> {
        let (repo_dir, name, root, lock) = (self.repo_dir, self.name, self.root, self._lock);
        blocking(move || {
            let repo = Repository::open(&repo_dir)?;
            local::remove_worktree(&repo, &name, &root)?;
            std::fs::remove_file(local::worktree_lock_path(&root))?;
            drop(lock);
            Ok(())
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, WorkspaceError> + Send + 'static,
) -> Result<T, WorkspaceError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| WorkspaceError::Task(err.to_string()))?
}

/// Holds `<mirror>.lock` (an OS file lock: it also excludes other processes
/// sharing the data directory, and is released if the process dies) so two
/// jobs never fetch the same mirror or add worktrees to it at once.
async fn lock_mirror(mirror: &Path) -> Result<std::fs::File, WorkspaceError> {
    let mut lock_path = mirror.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    blocking(move || {
        if let Some(parent) = lock_path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        file.lock()?;
        Ok(file)
    })
    .await
}

fn check_job_id(job_id: &str) -> Result<(), WorkspaceError> {
    let ok = !job_id.is_empty()
        && job_id.len() <= 64
        && job_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(WorkspaceError::InvalidJobId(job_id.to_string()))
    }
}

fn check_branch(branch: &str) -> Result<(), WorkspaceError> {
    if git2::Reference::is_valid_name(&format!("refs/heads/{branch}")) && !branch.starts_with('-') {
        Ok(())
    } else {
        Err(WorkspaceError::InvalidBranch(branch.to_string()))
    }
}

/// Refuses `scheme://user[:password]@host/…`: a token must never sit in a URL.
fn check_url(url: &str) -> Result<(), WorkspaceError> {
    if url.starts_with('-') {
        return Err(WorkspaceError::InvalidUrl);
    }
    if let Some((_, rest)) = url.split_once("://") {
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.contains('@') {
            return Err(WorkspaceError::CredentialsInUrl);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_credentials_are_refused() {
        assert!(check_url("https://github.com/o/r.git").is_ok());
        assert!(check_url("file:///tmp/x.git").is_ok());
        assert!(check_url("https://x-access-token:ghs_1@github.com/o/r.git").is_err());
        assert!(check_url("https://user@github.com/o/r.git").is_err());
    }

    #[test]
    fn job_ids_and_branches_are_checked() {
        assert!(check_job_id("0f3a9c2e-1111-2222-3333-444455556666").is_ok());
        assert!(check_job_id("../x").is_err());
        assert!(check_job_id("").is_err());
        assert!(check_branch("orchestrator/issue-5-x").is_ok());
        assert!(check_branch("bad..name").is_err());
        assert!(check_branch("-x").is_err());
    }
}
