//! The local half of the workspace, with git2: worktrees, the index, commits
//! and refs. Every function here blocks; callers run them inside
//! `tokio::task::spawn_blocking`.

use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use git2::build::CheckoutBuilder;
use git2::{
    BranchType, Commit, IndexAddOption, Oid, Repository, Signature, WorktreeAddOptions, WorktreePruneOptions,
};

use super::naming::refuse_protected_paths;
use super::{CommitIdentity, CommitSha, StepCommit, WorkspaceError};

/// Where the remote's branches live inside a mirror (fetched with
/// `+refs/heads/*:refs/remotes/origin/*`). Keeping them out of `refs/heads`
/// means a fetch never fights a worktree that has the job's branch checked out.
pub(crate) const MIRROR_REMOTE_PREFIX: &str = "refs/remotes/origin/";

fn sha(oid: Oid) -> CommitSha {
    CommitSha(oid.to_string())
}

/// The commit a remote branch points to in the mirror, if it exists.
pub(crate) fn mirror_branch(mirror: &Repository, branch: &str) -> Result<Option<Oid>, WorkspaceError> {
    match mirror.find_reference(&format!("{MIRROR_REMOTE_PREFIX}{branch}")) {
        Ok(reference) => Ok(Some(reference.peel_to_commit()?.id())),
        Err(err) if err.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Where a branch starts and what it is compared with.
#[derive(Debug)]
pub(crate) struct Start {
    pub(crate) start: Oid,
    pub(crate) base: Oid,
    pub(crate) resumed: bool,
}

/// Mirror mode: the remote branch's head when it exists (a retry keeps the
/// steps already pushed), otherwise the default branch's head. The base is
/// where the branch left the default branch.
pub(crate) fn mirror_start(
    mirror: &Repository,
    default_branch: &str,
    branch: &str,
) -> Result<Start, WorkspaceError> {
    let default = mirror_branch(mirror, default_branch)?
        .ok_or_else(|| WorkspaceError::MissingDefaultBranch(default_branch.to_string()))?;
    match mirror_branch(mirror, branch)? {
        Some(head) => {
            let base = mirror.merge_base(head, default).unwrap_or(default);
            Ok(Start {
                start: head,
                base,
                resumed: true,
            })
        }
        None => Ok(Start {
            start: default,
            base: default,
            resumed: false,
        }),
    }
}

/// Local mode (`orchestrator run`): the local branch when it exists (a rerun
/// continues it), otherwise the repository's current `HEAD` commit.
pub(crate) fn local_start(repo: &Repository, branch: &str) -> Result<Start, WorkspaceError> {
    let path = repo.path().to_path_buf();
    let head = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(|_| WorkspaceError::NotARepository(path))?
        .id();
    match repo.find_branch(branch, BranchType::Local) {
        Ok(existing) => {
            let tip = existing.get().peel_to_commit()?.id();
            Ok(Start {
                start: tip,
                base: repo.merge_base(tip, head).unwrap_or(head),
                resumed: true,
            })
        }
        Err(err) if err.code() == git2::ErrorCode::NotFound => Ok(Start {
            start: head,
            base: head,
            resumed: false,
        }),
        Err(err) => Err(err.into()),
    }
}

/// `<worktree>.lock`: the OS lock a live [`super::Workspace`] holds on its
/// worktree. The OS drops it when the process dies, so a lock that can be
/// taken means nobody is using the worktree any more.
pub(crate) fn worktree_lock_path(path: &Path) -> PathBuf {
    let mut lock = path.as_os_str().to_owned();
    lock.push(".lock");
    PathBuf::from(lock)
}

/// Takes the worktree's lock without waiting; `None` when someone holds it.
pub(crate) fn try_lock_worktree(path: &Path) -> Result<Option<File>, WorkspaceError> {
    let lock_path = worktree_lock_path(path);
    if let Some(parent) = lock_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(err)) => Err(err.into()),
    }
}

/// Adds the worktree `name` at `path` with `branch` checked out at `start`,
/// and returns the worktree's lock, to be held while it is in use.
///
/// A leftover worktree of the same name (a previous attempt of the same job)
/// is replaced. Another worktree of ours that holds the branch is replaced
/// too when its lock is free (its job died without cleaning up); one whose
/// lock is held, or a checkout outside our worktrees directory (a person's),
/// is refused rather than taken over.
pub(crate) fn add_worktree(
    repo: &Repository,
    name: &str,
    path: &Path,
    branch: &str,
    start: Oid,
) -> Result<File, WorkspaceError> {
    let lock = try_lock_worktree(path)?.ok_or_else(|| WorkspaceError::WorktreeInUse(path.to_path_buf()))?;
    remove_worktree(repo, name, path)?;
    prune_stale_worktrees(repo)?;
    let full = format!("refs/heads/{branch}");
    if let Some((holder_name, holder_path)) = checked_out_in(repo, &full)? {
        let ours = holder_name.is_some() && holder_path.parent() == path.parent();
        let free = if ours {
            try_lock_worktree(&holder_path)?
        } else {
            None
        };
        match (holder_name, free) {
            (Some(holder_name), Some(_free)) => {
                tracing::warn!(
                    branch,
                    stale = %holder_path.display(),
                    "replacing a worktree left behind by a job that ended without cleanup"
                );
                remove_worktree(repo, &holder_name, &holder_path)?;
                let _ = std::fs::remove_file(worktree_lock_path(&holder_path));
            }
            _ => {
                return Err(WorkspaceError::BranchInUse {
                    branch: branch.to_string(),
                    path: holder_path,
                });
            }
        }
    }
    let commit = repo.find_commit(start)?;
    // force: a leftover local branch (commits that never reached the remote)
    // is reset to the start; the remote is the record of what was done.
    let reference = repo.branch(branch, &commit, true)?.into_reference();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut opts = WorktreeAddOptions::new();
    opts.reference(Some(&reference));
    repo.worktree(name, path, Some(&opts))?;
    // libgit2 checks out "safely" into the new directory; force makes sure
    // every file of the start commit is there.
    let worktree = Repository::open(path)?;
    worktree.checkout_head(Some(CheckoutBuilder::new().force()))?;
    Ok(lock)
}

/// Which worktree (name and path; no name for the main checkout) has
/// `full_ref` as its `HEAD`.
fn checked_out_in(
    repo: &Repository,
    full_ref: &str,
) -> Result<Option<(Option<String>, PathBuf)>, WorkspaceError> {
    if !repo.is_bare()
        && let Ok(head) = repo.find_reference("HEAD")
        && head.symbolic_target_bytes() == Some(full_ref.as_bytes())
    {
        return Ok(Some((None, repo.workdir().unwrap_or(repo.path()).to_path_buf())));
    }
    for name in repo.worktrees()?.iter().flatten().flatten() {
        let Ok(worktree) = repo.find_worktree(name) else {
            continue;
        };
        let Ok(wt_repo) = Repository::open_from_worktree(&worktree) else {
            continue;
        };
        if let Ok(head) = wt_repo.find_reference("HEAD")
            && head.symbolic_target_bytes() == Some(full_ref.as_bytes())
        {
            return Ok(Some((Some(name.to_string()), worktree.path().to_path_buf())));
        }
    }
    Ok(None)
}

/// Forgets worktrees whose directory is gone (a crash, a wiped disk).
fn prune_stale_worktrees(repo: &Repository) -> Result<(), WorkspaceError> {
    for name in repo.worktrees()?.iter().flatten().flatten() {
        if let Ok(worktree) = repo.find_worktree(name)
            && worktree.validate().is_err()
        {
            worktree.prune(Some(WorktreePruneOptions::new().locked(true)))?;
        }
    }
    Ok(())
}

/// Deletes the worktree `name`: its directory and git's record of it. The
/// branch stays.
pub(crate) fn remove_worktree(repo: &Repository, name: &str, path: &Path) -> Result<(), WorkspaceError> {
    if let Ok(worktree) = repo.find_worktree(name) {
        worktree.prune(Some(
            WorktreePruneOptions::new()
                .valid(true)
                .locked(true)
                .working_tree(true),
        ))?;
    }
    if path.exists() {
        std::fs::remove_dir_all(path)?;
    }
    Ok(())
}

/// Stages everything in the worktree (honouring `.gitignore`, deletions
/// included) and commits it on the checked-out branch. `None` when nothing
/// changed. A change to a protected path is refused before anything is
/// committed.
pub(crate) fn commit_all(
    root: &Path,
    message: &str,
    author: &CommitIdentity,
) -> Result<Option<CommitSha>, WorkspaceError> {
    let repo = Repository::open(root)?;
    let mut index = repo.index()?;
    index.add_all(["*"], IndexAddOption::DEFAULT, None)?;
    index.update_all(["*"], None)?;
    let tree_id = index.write_tree()?;
    let parent = repo.head()?.peel_to_commit()?;
    if tree_id == parent.tree_id() {
        return Ok(None);
    }
    let tree = repo.find_tree(tree_id)?;
    let changed = changed_paths(&repo, &parent.tree()?, &tree)?;
    refuse_protected_paths(&changed).map_err(WorkspaceError::ProtectedPath)?;
    let signature = Signature::now(&author.name, &author.email)?;
    let oid = repo.commit(Some("HEAD"), &signature, &signature, message, &tree, &[&parent])?;
    index.write()?;
    Ok(Some(sha(oid)))
}

fn changed_paths(
    repo: &Repository,
    old: &git2::Tree<'_>,
    new: &git2::Tree<'_>,
) -> Result<Vec<String>, WorkspaceError> {
    let diff = repo.diff_tree_to_tree(Some(old), Some(new), None)?;
    let mut paths = Vec::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            // Lossy, never skipped: a non-UTF-8 name must not slip past the
            // protected-path check.
            if let Some(path) = file.path().map(|p| p.to_string_lossy().into_owned())
                && !paths.contains(&path)
            {
                paths.push(path);
            }
        }
    }
    Ok(paths)
}

/// Puts the worktree back to `HEAD`: tracked files restored, untracked
/// ones removed (ignored files stay), the index matching `HEAD`.
pub(crate) fn reset_to_head(root: &Path) -> Result<(), WorkspaceError> {
    let repo = Repository::open(root)?;
    let head = repo.head()?.peel_to_commit()?;
    repo.reset(
        head.as_object(),
        git2::ResetType::Hard,
        Some(CheckoutBuilder::new().force()),
    )?;
    // libgit2's checkout leaves untracked directories alone: remove the
    // untracked files one by one, then the directories they leave empty.
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false);
    let mut dirs = Vec::new();
    for entry in repo.statuses(Some(&mut opts))?.iter() {
        if entry.status().contains(git2::Status::WT_NEW) {
            let full = root.join(std::ffi::OsStr::from_bytes(entry.path_bytes()));
            std::fs::remove_file(&full)?;
            dirs.extend(
                full.ancestors()
                    .skip(1)
                    .take_while(|d| *d != root)
                    .map(Path::to_path_buf),
            );
        }
    }
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    dirs.dedup();
    for dir in dirs {
        // Fails (and is ignored) when the directory still holds something.
        let _ = std::fs::remove_dir(dir);
    }
    Ok(())
}

/// The worktree's `HEAD` commit.
pub(crate) fn head(root: &Path) -> Result<CommitSha, WorkspaceError> {
    let repo = Repository::open(root)?;
    Ok(sha(repo.head()?.peel_to_commit()?.id()))
}

/// Paths that differ between `base` and `HEAD` (committed changes only).
pub(crate) fn changed_since(root: &Path, base: &CommitSha) -> Result<Vec<String>, WorkspaceError> {
    let repo = Repository::open(root)?;
    let base = repo.find_commit(Oid::from_str(&base.0)?)?;
    let head = repo.head()?.peel_to_commit()?;
    changed_paths(&repo, &base.tree()?, &head.tree()?)
}

/// The commits from `base` (excluded) to `HEAD`, oldest first.
pub(crate) fn commits_since(root: &Path, base: &CommitSha) -> Result<Vec<StepCommit>, WorkspaceError> {
    let repo = Repository::open(root)?;
    let mut walk = repo.revwalk()?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)?;
    walk.push_head()?;
    walk.hide(Oid::from_str(&base.0)?)?;
    let mut commits = Vec::new();
    for oid in walk {
        let commit: Commit<'_> = repo.find_commit(oid?)?;
        commits.push(StepCommit {
            sha: sha(commit.id()),
            subject: String::from_utf8_lossy(commit.summary_bytes().unwrap_or_default()).into_owned(),
        });
    }
    Ok(commits)
}
