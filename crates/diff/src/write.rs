//! The only code that changes the tree: a small transaction over files.
//!
//! Everything is prepared before this runs (contents computed, paths checked), so what
//! is left can only fail for machine reasons. The order keeps the tree unchanged for as
//! long as possible and makes each visible step atomic:
//!
//! 1. create missing directories;
//! 2. write every new content to a temporary file *in the target's directory* (so the
//!    rename below cannot cross file systems, and nothing is ever written outside the
//!    repository), with the final permissions, flushed to disk unless the caller opted
//!    out;
//! 3. rename each temporary file over its target (atomic per file: a reader sees the old
//!    or the new content, never a mix);
//! 4. delete the files the patch deletes.
//!
//! A failure in 1–2 removes what was created: the tree is unchanged. A failure in 3–4
//! undoes the steps done so far from the original contents kept in memory.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use crate::error::ApplyError;
use crate::model::FileMode;

/// A file's former content and permissions, kept to undo a step.
#[derive(Clone, Debug)]
pub(crate) struct Original {
    pub bytes: Vec<u8>,
    pub permissions: Permissions,
}

/// The permissions a written file gets.
#[derive(Clone, Debug)]
pub(crate) enum Perms {
    /// An existing file's permissions, adjusted to a mode if one is given.
    Keep(Permissions, Option<FileMode>),
    /// A new file: the default for new files (umask applies), adjusted to a mode.
    New(Option<FileMode>),
}

/// New content for one file.
#[derive(Clone, Debug)]
pub(crate) struct FileWrite {
    pub target: PathBuf,
    pub bytes: Vec<u8>,
    pub perms: Perms,
    /// The content being replaced, if the file exists.
    pub original: Option<Original>,
}

/// A file to delete.
#[derive(Clone, Debug)]
pub(crate) struct FileRemove {
    pub target: PathBuf,
    pub original: Original,
}

/// Everything one call changes.
#[derive(Clone, Debug, Default)]
pub(crate) struct Changes {
    /// Directories to create, each after its parent.
    pub dirs: Vec<PathBuf>,
    pub writes: Vec<FileWrite>,
    pub removes: Vec<FileRemove>,
}

/// A step already done, to undo on failure.
enum Done<'c> {
    Replaced(&'c FileWrite),
    Removed(&'c FileRemove),
}

/// Applies `changes`; see the module docs.
pub(crate) fn commit(changes: &Changes, sync: bool) -> Result<(), ApplyError> {
    let mut created_dirs = Vec::new();
    let mut temps: Vec<PathBuf> = Vec::new();
    let staged = stage(changes, sync, &mut created_dirs, &mut temps);
    if let Err(e) = staged {
        cleanup(&temps, &created_dirs);
        return Err(e);
    }
    let mut done: Vec<Done<'_>> = Vec::new();
    for (temp, write) in temps.iter().zip(&changes.writes) {
        if let Err(source) = fs::rename(temp, &write.target) {
            return Err(undo(
                &done,
                &temps,
                &created_dirs,
                "renaming into place",
                &write.target,
                source,
            ));
        }
        done.push(Done::Replaced(write));
    }
    for remove in &changes.removes {
        if let Err(source) = fs::remove_file(&remove.target) {
            return Err(undo(
                &done,
                &temps,
                &created_dirs,
                "deleting",
                &remove.target,
                source,
            ));
        }
        done.push(Done::Removed(remove));
    }
    Ok(())
}

/// Steps 1 and 2: directories and temporary files.
fn stage(
    changes: &Changes,
    sync: bool,
    created_dirs: &mut Vec<PathBuf>,
    temps: &mut Vec<PathBuf>,
) -> Result<(), ApplyError> {
    for dir in &changes.dirs {
        match fs::create_dir(dir) {
            Ok(()) => created_dirs.push(dir.clone()),
            // Two new files in one new directory: the second finds it made.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(ApplyError::io("creating directory", dir, e)),
        }
    }
    for write in &changes.writes {
        let temp = write_temp(&write.target, &write.bytes, &write.perms, sync)?;
        temps.push(temp);
    }
    Ok(())
}

/// Writes `bytes` to a new temporary file beside `target`; returns its path. On failure
/// the temporary file is removed again.
fn write_temp(target: &Path, bytes: &[u8], perms: &Perms, sync: bool) -> Result<PathBuf, ApplyError> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let (temp, mut file) =
        create_temp(dir).map_err(|e| ApplyError::io("creating a temporary file in", dir, e))?;
    let result = (|| {
        // Permissions first: a private file's content is never readable by others, not
        // even for the moment between writing and renaming.
        let permissions = match perms {
            Perms::Keep(p, mode) => with_mode(p.clone(), *mode),
            Perms::New(mode) => with_mode(file.metadata()?.permissions(), *mode),
        };
        file.set_permissions(permissions)?;
        file.write_all(bytes)?;
        if sync { file.sync_all() } else { Ok(()) }
    })();
    match result {
        Ok(()) => Ok(temp),
        Err(e) => {
            let _ = fs::remove_file(&temp);
            Err(ApplyError::io("writing a temporary file for", target, e))
        }
    }
}

/// Creates a fresh file in `dir` that did not exist before (never clobbers anything).
fn create_temp(dir: &Path) -> io::Result<(PathBuf, File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let mut last_error = io::Error::other("no temporary name available");
    for _ in 0..100 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".orch-diff-{pid}-{n}.tmp"));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = e,
            Err(e) => return Err(e),
        }
    }
    Err(last_error)
}

/// `permissions` with the executable bits set or cleared for `mode` (where a read bit is
/// set, as git does), or unchanged without a mode.
fn with_mode(permissions: Permissions, mode: Option<FileMode>) -> Permissions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let bits = permissions.mode();
        let bits = match mode {
            Some(FileMode::Executable) => bits | ((bits & 0o444) >> 2),
            Some(FileMode::Regular) => bits & !0o111,
            None => bits,
        };
        Permissions::from_mode(bits)
    }
    #[cfg(not(unix))]
    {
        let _ = mode;
        permissions
    }
}

/// Undoes `done` after a failure at `path`; the returned error says whether that worked.
fn undo(
    done: &[Done<'_>],
    temps: &[PathBuf],
    created_dirs: &[PathBuf],
    action: &'static str,
    path: &Path,
    source: io::Error,
) -> ApplyError {
    let mut restored = true;
    for step in done.iter().rev() {
        let ok = match step {
            Done::Replaced(w) => match &w.original {
                Some(original) => restore(&w.target, original).is_ok(),
                None => fs::remove_file(&w.target).is_ok(),
            },
            Done::Removed(r) => restore(&r.target, &r.original).is_ok(),
        };
        restored &= ok;
    }
    cleanup(temps, created_dirs);
    ApplyError::Io {
        action,
        path: path.to_path_buf(),
        source,
        tree_restored: restored,
    }
}

/// Puts `original` back at `target`, atomically.
fn restore(target: &Path, original: &Original) -> Result<(), ApplyError> {
    let perms = Perms::Keep(original.permissions.clone(), None);
    let temp = write_temp(target, &original.bytes, &perms, true)?;
    fs::rename(&temp, target).map_err(|e| {
        let _ = fs::remove_file(&temp);
        ApplyError::io("restoring", target, e)
    })
}

/// Removes leftover temporary files and the directories this call created (those that
/// are empty again; `remove_dir` refuses the others).
fn cleanup(temps: &[PathBuf], created_dirs: &[PathBuf]) {
    for temp in temps {
        let _ = fs::remove_file(temp);
    }
    for dir in created_dirs.iter().rev() {
        let _ = fs::remove_dir(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let path = std::env::temp_dir().join(format!("orch-diff-write-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            Scratch(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn listing(dir: &Path) -> Vec<(String, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                let rel = path.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                if path.is_dir() {
                    stack.push(path);
                    out.push((rel, None));
                } else {
                    out.push((rel, Some(fs::read(&path).unwrap())));
                }
            }
        }
        out.sort();
        out
    }

    fn replace(dir: &Path, name: &str, bytes: &[u8]) -> FileWrite {
        let target = dir.join(name);
        let original = fs::read(&target).ok().map(|b| Original {
            bytes: b,
            permissions: fs::metadata(&target).unwrap().permissions(),
        });
        FileWrite {
            target,
            bytes: bytes.to_vec(),
            perms: Perms::New(None),
            original,
        }
    }

    #[test]
    fn commit_writes_creates_and_removes() {
        let s = Scratch::new("ok");
        fs::write(s.0.join("a.txt"), b"a").unwrap();
        fs::write(s.0.join("gone.txt"), b"g").unwrap();
        let changes = Changes {
            dirs: vec![s.0.join("new"), s.0.join("new/deeper")],
            writes: vec![
                replace(&s.0, "a.txt", b"A"),
                replace(&s.0, "new/deeper/n.txt", b"n"),
            ],
            removes: vec![FileRemove {
                target: s.0.join("gone.txt"),
                original: Original {
                    bytes: b"g".to_vec(),
                    permissions: fs::metadata(s.0.join("gone.txt")).unwrap().permissions(),
                },
            }],
        };
        commit(&changes, true).unwrap();
        let got = listing(&s.0);
        let want = vec![
            ("a.txt".to_owned(), Some(b"A".to_vec())),
            ("new".to_owned(), None),
            ("new/deeper".to_owned(), None),
            ("new/deeper/n.txt".to_owned(), Some(b"n".to_vec())),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn failure_while_staging_leaves_nothing_behind() {
        let s = Scratch::new("stage");
        fs::write(s.0.join("a.txt"), b"a").unwrap();
        let before = listing(&s.0);
        // The second target's directory is neither there nor to be created.
        let changes = Changes {
            dirs: vec![s.0.join("made")],
            writes: vec![replace(&s.0, "a.txt", b"A"), replace(&s.0, "missing/x.txt", b"x")],
            removes: Vec::new(),
        };
        let err = commit(&changes, false).unwrap_err();
        assert!(
            matches!(
                err,
                ApplyError::Io {
                    tree_restored: true,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            listing(&s.0),
            before,
            "temporary files and new directories are removed"
        );
    }

    #[test]
    fn failure_while_renaming_restores_what_was_done() {
        let s = Scratch::new("rename");
        fs::write(s.0.join("a.txt"), b"a").unwrap();
        fs::create_dir(s.0.join("busy")).unwrap();
        fs::write(s.0.join("busy/inside"), b"i").unwrap();
        let before = listing(&s.0);
        // Renaming a file over a non-empty directory fails, even for root.
        let changes = Changes {
            dirs: Vec::new(),
            writes: vec![
                replace(&s.0, "a.txt", b"A"),
                replace(&s.0, "new.txt", b"n"),
                replace(&s.0, "busy", b"x"),
            ],
            removes: Vec::new(),
        };
        let err = commit(&changes, false).unwrap_err();
        assert!(
            matches!(
                err,
                ApplyError::Io {
                    tree_restored: true,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(listing(&s.0), before);
    }

    #[test]
    fn failure_while_deleting_restores_what_was_done() {
        let s = Scratch::new("remove");
        fs::write(s.0.join("a.txt"), b"a").unwrap();
        fs::write(s.0.join("b.txt"), b"b").unwrap();
        fs::create_dir(s.0.join("dir")).unwrap();
        let before = listing(&s.0);
        let original = |name: &str| Original {
            bytes: fs::read(s.0.join(name)).unwrap_or_default(),
            permissions: fs::metadata(s.0.join(name)).unwrap().permissions(),
        };
        let changes = Changes {
            dirs: Vec::new(),
            writes: vec![replace(&s.0, "a.txt", b"A")],
            removes: vec![
                FileRemove {
                    target: s.0.join("b.txt"),
                    original: original("b.txt"),
                },
                // `remove_file` on a directory fails.
                FileRemove {
                    target: s.0.join("dir"),
                    original: original("dir"),
                },
            ],
        };
        let err = commit(&changes, false).unwrap_err();
        assert!(
            matches!(
                err,
                ApplyError::Io {
                    tree_restored: true,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(listing(&s.0), before);
    }

    #[cfg(unix)]
    #[test]
    fn modes_set_and_clear_executable_bits_where_readable() {
        use std::os::unix::fs::PermissionsExt;
        let p = |m| Permissions::from_mode(m);
        assert_eq!(with_mode(p(0o644), Some(FileMode::Executable)).mode(), 0o755);
        assert_eq!(with_mode(p(0o640), Some(FileMode::Executable)).mode(), 0o750);
        assert_eq!(with_mode(p(0o755), Some(FileMode::Regular)).mode(), 0o644);
        assert_eq!(with_mode(p(0o600), None).mode(), 0o600);
    }
}
