//! Applies a [`Patch`] under a root directory: all files or none.
//!
//! Every file is prepared first — path checked on disk, content read, hunks placed by
//! [`crate::matching`], new content computed — and refusals are collected for all of
//! them. Only when nothing was refused does [`crate::write`] touch the tree. So a refusal
//! leaves the tree byte for byte as it was, and the caller gets every reason at once.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use crate::error::{ApplyError, InsertionProblem, Refusal, RefusalKind};
use crate::matching;
use crate::model::{FileMode, FileOp, FilePatch, Hunk, Patch};
use crate::paths::RepoPath;
use crate::report::{ApplyReport, FileChange, FileReport, HunkReport, MatchKind};
use crate::splice::{Edit, changed_middle, edit};
use crate::text::{self, Eol, FileText, OutLine};
use crate::write::{self, Changes, FileRemove, FileWrite, Original, Perms};

/// How [`apply`] runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Files larger than this (before or after the patch) are refused: matching is
    /// in memory, and an LLM has no business rewriting huge files. Default 8 MiB.
    pub max_file_bytes: u64,
    /// Do everything but write: the report (or the refusals) is what a real run gives.
    pub dry_run: bool,
    /// Flush each new content to disk before renaming it into place, so that a power
    /// loss leaves the old or the new file, never an empty one. Default true; scratch
    /// trees (tests) may turn it off, as it costs a disk flush per file.
    pub sync: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            max_file_bytes: 8 * 1024 * 1024,
            dry_run: false,
            sync: true,
        }
    }
}

/// Applies `patch` to the tree under `root`, all files or none.
///
/// Returns what was done per file and per hunk, or every refusal (the tree unchanged),
/// or an I/O error. Never writes outside `root`: paths are checked lexically by
/// [`RepoPath`] and on disk here (symbolic links leading out, special files), and
/// temporary files are created next to their targets.
pub fn apply(patch: &Patch, root: &Path, opts: &ApplyOptions) -> Result<ApplyReport, ApplyError> {
    let root = canonical_root(root)?;
    if let Err(e) = crate::parse::check_distinct_paths(&patch.files) {
        return Err(ApplyError::from(e));
    }
    let mut refusals = Vec::new();
    let mut prepared = Vec::new();
    for file in &patch.files {
        match prepare(file, &root, opts) {
            Ok(p) => prepared.push(p),
            Err(Failure::Refused(r)) => refusals.extend(r),
            Err(Failure::Io(e)) => return Err(e),
        }
    }
    refusals.extend(same_physical_files(&prepared));
    refusals.extend(insertions_against_drift(&prepared));
    if !refusals.is_empty() {
        return Err(ApplyError::Refused(refusals));
    }
    let mut changes = Changes::default();
    let mut files = Vec::with_capacity(prepared.len());
    for p in prepared {
        for dir in p.dirs {
            if !changes.dirs.contains(&dir) {
                changes.dirs.push(dir);
            }
        }
        changes.writes.extend(p.writes);
        changes.removes.extend(p.removes);
        files.push(p.report);
    }
    if !opts.dry_run {
        write::commit(&changes, opts.sync)?;
    }
    Ok(ApplyReport {
        files,
        dry_run: opts.dry_run,
    })
}

fn canonical_root(root: &Path) -> Result<PathBuf, ApplyError> {
    let canonical = fs::canonicalize(root).map_err(|e| ApplyError::io("opening the root", root, e))?;
    if !canonical.is_dir() {
        let e = io::Error::new(io::ErrorKind::NotADirectory, "not a directory");
        return Err(ApplyError::io("opening the root", root, e));
    }
    Ok(canonical)
}

/// Why a file could not be prepared.
enum Failure {
    Refused(Vec<Refusal>),
    Io(ApplyError),
}

impl From<ApplyError> for Failure {
    fn from(e: ApplyError) -> Self {
        Failure::Io(e)
    }
}

/// One file, ready to be written.
struct Prepared {
    report: FileReport,
    /// Pure insertions placed by their stated line alone: (1-based hunk, patch line).
    by_line_only: Vec<(usize, usize)>,
    /// Physical paths touched, for detecting one file reached through two names.
    physical: Vec<(PathBuf, RepoPath)>,
    dirs: Vec<PathBuf>,
    writes: Vec<FileWrite>,
    removes: Vec<FileRemove>,
}

/// Builds the refusals of one file.
struct Refuser<'p> {
    file: &'p FilePatch,
}

impl Refuser<'_> {
    fn file(&self, path: &RepoPath, kind: RefusalKind) -> Failure {
        Failure::Refused(vec![Refusal {
            path: Some(path.clone()),
            hunk: None,
            patch_line: Some(self.file.line),
            kind,
        }])
    }

    fn hunks(&self, path: &RepoPath, refusals: Vec<matching::HunkRefusal>) -> Failure {
        let list = refusals
            .into_iter()
            .map(|(i, kind)| Refusal {
                path: Some(path.clone()),
                hunk: Some(i + 1),
                patch_line: self.file.hunks.get(i).map(|h| h.line),
                kind,
            })
            .collect();
        Failure::Refused(list)
    }
}

fn prepare(file: &FilePatch, root: &Path, opts: &ApplyOptions) -> Result<Prepared, Failure> {
    let refuse = Refuser { file };
    match &file.op {
        FileOp::Modify { path } => modify(file, path, root, opts, &refuse),
        FileOp::Create { path } => create(file, path, root, opts, &refuse),
        FileOp::Delete { path } => delete(file, path, root, opts, &refuse),
        FileOp::Rename { from, to } => rename(file, from, to, root, opts, &refuse),
        FileOp::Write { path, lines } => write_whole(path, lines, root, opts, &refuse),
    }
}

fn modify(
    file: &FilePatch,
    path: &RepoPath,
    root: &Path,
    opts: &ApplyOptions,
    refuse: &Refuser<'_>,
) -> Result<Prepared, Failure> {
    let target = resolve(root, path, refuse)?;
    let Some(meta) = &target.meta else {
        return Err(refuse.file(path, RefusalKind::FileNotFound));
    };
    let bytes = read_text(&target.abs, meta, path, opts, refuse)?;
    let edit = edit(&bytes, &file.hunks).map_err(|r| refuse.hunks(path, r))?;
    check_size(edit.bytes.len(), path, opts, refuse)?;
    let mode_changes = file.new_mode.is_some_and(|m| m != mode_of(meta));
    let mut writes = Vec::new();
    if edit.bytes != bytes || mode_changes {
        writes.push(FileWrite {
            target: target.abs.clone(),
            bytes: edit.bytes,
            perms: Perms::Keep(meta.permissions(), file.new_mode),
            original: Some(Original {
                bytes,
                permissions: meta.permissions(),
            }),
        });
    }
    Ok(Prepared {
        by_line_only: edit.by_line_only,
        report: FileReport {
            path: path.clone(),
            change: FileChange::Modified,
            hunks: edit.hunks,
            added: edit.added,
            removed: edit.removed,
            mode: file.new_mode.filter(|_| mode_changes),
        },
        physical: vec![(target.physical, path.clone())],
        dirs: Vec::new(),
        writes,
        removes: Vec::new(),
    })
}

fn create(
    file: &FilePatch,
    path: &RepoPath,
    root: &Path,
    opts: &ApplyOptions,
    refuse: &Refuser<'_>,
) -> Result<Prepared, Failure> {
    let target = resolve(root, path, refuse)?;
    let new_lines: Vec<&str> = file.hunks.iter().flat_map(Hunk::new_lines).collect();
    let no_final_newline = file.hunks.iter().any(|h| h.new_missing_newline);
    let out: Vec<OutLine<'_>> = new_lines
        .iter()
        .map(|l| OutLine {
            text: Cow::Borrowed(l.as_bytes()),
            eol: None,
        })
        .collect();
    let bytes = text::render(&out, Eol::Lf, !no_final_newline, false);
    check_size(bytes.len(), path, opts, refuse)?;
    let hunks = file
        .hunks
        .iter()
        .enumerate()
        .map(|(i, _)| HunkReport {
            index: i + 1,
            matched: MatchKind::Exact,
            line: 1,
        })
        .collect();
    let mut report = FileReport {
        path: path.clone(),
        change: FileChange::Created,
        hunks,
        added: new_lines.len(),
        removed: 0,
        mode: file.new_mode,
    };
    if let Some(meta) = &target.meta {
        let existing = read_limited(&target.abs, meta, path, opts, refuse)?;
        if existing != bytes {
            return Err(refuse.file(path, RefusalKind::AlreadyExists));
        }
        report.change = FileChange::Unchanged;
        return Ok(Prepared {
            by_line_only: Vec::new(),
            report,
            physical: vec![(target.physical, path.clone())],
            dirs: Vec::new(),
            writes: Vec::new(),
            removes: Vec::new(),
        });
    }
    Ok(Prepared {
        by_line_only: Vec::new(),
        report,
        physical: vec![(target.physical, path.clone())],
        dirs: target.missing_dirs,
        writes: vec![FileWrite {
            target: target.abs,
            bytes,
            perms: Perms::New(file.new_mode),
            original: None,
        }],
        removes: Vec::new(),
    })
}

fn delete(
    file: &FilePatch,
    path: &RepoPath,
    root: &Path,
    opts: &ApplyOptions,
    refuse: &Refuser<'_>,
) -> Result<Prepared, Failure> {
    let target = resolve(root, path, refuse)?;
    let Some(meta) = &target.meta else {
        return Err(refuse.file(path, RefusalKind::FileNotFound));
    };
    let bytes = read_text(&target.abs, meta, path, opts, refuse)?;
    let edit = edit(&bytes, &file.hunks).map_err(|r| refuse.hunks(path, r))?;
    // The patch must have shown every line: what is left would be lost unseen.
    if edit.lines_left > 0 {
        let kind = RefusalKind::IncompleteDeletion {
            remaining: edit.lines_left,
        };
        return Err(refuse.file(path, kind));
    }
    Ok(Prepared {
        by_line_only: edit.by_line_only,
        report: FileReport {
            path: path.clone(),
            change: FileChange::Deleted,
            hunks: edit.hunks,
            added: edit.added,
            removed: edit.removed,
            mode: None,
        },
        physical: vec![(target.physical, path.clone())],
        dirs: Vec::new(),
        writes: Vec::new(),
        removes: vec![FileRemove {
            target: target.abs,
            original: Original {
                bytes,
                permissions: meta.permissions(),
            },
        }],
    })
}

fn rename(
    file: &FilePatch,
    from: &RepoPath,
    to: &RepoPath,
    root: &Path,
    opts: &ApplyOptions,
    refuse: &Refuser<'_>,
) -> Result<Prepared, Failure> {
    let source = resolve(root, from, refuse)?;
    let target = resolve(root, to, refuse)?;
    let Some(meta) = &source.meta else {
        return Err(refuse.file(from, RefusalKind::FileNotFound));
    };
    if target.meta.is_some() {
        return Err(refuse.file(to, RefusalKind::RenameTargetExists));
    }
    // A pure rename moves the bytes as they are, text or not.
    let bytes = if file.hunks.is_empty() {
        read_limited(&source.abs, meta, from, opts, refuse)?
    } else {
        read_text(&source.abs, meta, from, opts, refuse)?
    };
    let edit = if file.hunks.is_empty() {
        Edit::unchanged(bytes.clone())
    } else {
        edit(&bytes, &file.hunks).map_err(|r| refuse.hunks(to, r))?
    };
    check_size(edit.bytes.len(), to, opts, refuse)?;
    let permissions = meta.permissions();
    Ok(Prepared {
        by_line_only: edit.by_line_only,
        report: FileReport {
            path: to.clone(),
            change: FileChange::Renamed { from: from.clone() },
            hunks: edit.hunks,
            added: edit.added,
            removed: edit.removed,
            mode: file.new_mode.filter(|m| *m != mode_of(meta)),
        },
        physical: vec![(source.physical, from.clone()), (target.physical, to.clone())],
        dirs: target.missing_dirs,
        writes: vec![FileWrite {
            target: target.abs,
            bytes: edit.bytes,
            perms: Perms::Keep(permissions.clone(), file.new_mode),
            original: None,
        }],
        removes: vec![FileRemove {
            target: source.abs,
            original: Original { bytes, permissions },
        }],
    })
}

fn write_whole(
    path: &RepoPath,
    lines: &[String],
    root: &Path,
    opts: &ApplyOptions,
    refuse: &Refuser<'_>,
) -> Result<Prepared, Failure> {
    let target = resolve(root, path, refuse)?;
    let existing = match &target.meta {
        Some(meta) => Some((read_text(&target.abs, meta, path, opts, refuse)?, meta)),
        None => None,
    };
    let old = existing.as_ref().map(|(b, _)| FileText::new(b));
    let (dominant, bom) = old.as_ref().map_or((Eol::Lf, false), |t| (t.dominant, t.bom));
    let out: Vec<OutLine<'_>> = lines
        .iter()
        .map(|l| OutLine {
            text: Cow::Borrowed(l.as_bytes()),
            eol: None,
        })
        .collect();
    let bytes = text::render(&out, dominant, !lines.is_empty(), bom && !lines.is_empty());
    check_size(bytes.len(), path, opts, refuse)?;
    let old_lines: Vec<&[u8]> = old
        .as_ref()
        .map(|t| t.lines.iter().map(|l| l.text).collect())
        .unwrap_or_default();
    let new_lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    let (added, removed) = changed_middle(&old_lines, &new_lines);
    let mut prepared = Prepared {
        by_line_only: Vec::new(),
        report: FileReport {
            path: path.clone(),
            change: FileChange::Created,
            hunks: Vec::new(),
            added,
            removed,
            mode: None,
        },
        physical: vec![(target.physical.clone(), path.clone())],
        dirs: Vec::new(),
        writes: Vec::new(),
        removes: Vec::new(),
    };
    match existing {
        Some((old_bytes, meta)) => {
            prepared.report.change = FileChange::Modified;
            if old_bytes != bytes {
                prepared.writes.push(FileWrite {
                    target: target.abs,
                    bytes,
                    perms: Perms::Keep(meta.permissions(), None),
                    original: Some(Original {
                        bytes: old_bytes,
                        permissions: meta.permissions(),
                    }),
                });
            }
        }
        None => {
            prepared.dirs = target.missing_dirs;
            prepared.writes.push(FileWrite {
                target: target.abs,
                bytes,
                perms: Perms::New(None),
                original: None,
            });
        }
    }
    Ok(prepared)
}

/// A path checked on disk.
struct Resolved {
    /// `root` joined with the path (what is opened and written).
    abs: PathBuf,
    /// The same file with every symbolic link resolved, for detecting aliases.
    physical: PathBuf,
    /// `symlink_metadata` of the file, `None` when it does not exist.
    meta: Option<Metadata>,
    /// Directories to create before writing, outermost first.
    missing_dirs: Vec<PathBuf>,
}

/// Checks `path` under `root` on disk: every existing directory on the way must be a
/// directory inside the root (a symbolic link is followed only if it stays inside), and
/// the file itself, if it exists, must be a regular file (not a link).
fn resolve(root: &Path, path: &RepoPath, refuse: &Refuser<'_>) -> Result<Resolved, Failure> {
    let components: Vec<&str> = path.components().collect();
    let Some((name, dirs)) = components.split_last() else {
        return Err(refuse.file(path, RefusalKind::UnsafePath(crate::PathError::Empty)));
    };
    let mut abs = root.to_path_buf();
    let mut existing = root.to_path_buf();
    let mut missing_dirs = Vec::new();
    for (depth, dir) in dirs.iter().enumerate() {
        abs.push(dir);
        if !missing_dirs.is_empty() {
            missing_dirs.push(abs.clone());
            continue;
        }
        let shown = components.get(..=depth).unwrap_or_default().join("/");
        match fs::symlink_metadata(&abs) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing_dirs.push(abs.clone()),
            Err(e) => return Err(ApplyError::io("inspecting", &abs, e).into()),
            Ok(meta) if meta.file_type().is_symlink() => {
                let Ok(real) = fs::canonicalize(&abs) else {
                    return Err(refuse.file(path, RefusalKind::SymlinkEscape { link: shown }));
                };
                if !real.starts_with(root) {
                    return Err(refuse.file(path, RefusalKind::SymlinkEscape { link: shown }));
                }
                if !real.is_dir() {
                    return Err(refuse.file(path, RefusalKind::NotADirectory { ancestor: shown }));
                }
                existing = real;
            }
            Ok(meta) if meta.is_dir() => existing.push(dir),
            Ok(_) => return Err(refuse.file(path, RefusalKind::NotADirectory { ancestor: shown })),
        }
    }
    abs.push(name);
    let meta = if missing_dirs.is_empty() {
        file_metadata(&abs, path, refuse)?
    } else {
        None
    };
    let mut physical = fs::canonicalize(&existing).map_err(|e| ApplyError::io("inspecting", &existing, e))?;
    if !physical.starts_with(root) {
        return Err(refuse.file(
            path,
            RefusalKind::SymlinkEscape {
                link: path.to_string(),
            },
        ));
    }
    let tail = components
        .get(dirs.len() - missing_dirs.len()..)
        .unwrap_or_default();
    physical.extend(tail);
    Ok(Resolved {
        abs,
        physical,
        meta,
        missing_dirs,
    })
}

fn file_metadata(abs: &Path, path: &RepoPath, refuse: &Refuser<'_>) -> Result<Option<Metadata>, Failure> {
    match fs::symlink_metadata(abs) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ApplyError::io("inspecting", abs, e).into()),
        Ok(meta) => {
            let what = if meta.file_type().is_symlink() {
                "a symbolic link"
            } else if meta.is_dir() {
                "a directory"
            } else if !meta.is_file() {
                "a special file"
            } else {
                return Ok(Some(meta));
            };
            Err(refuse.file(path, RefusalKind::NotRegularFile { what }))
        }
    }
}

/// Reads a file that must be text.
fn read_text(
    abs: &Path,
    meta: &Metadata,
    path: &RepoPath,
    opts: &ApplyOptions,
    refuse: &Refuser<'_>,
) -> Result<Vec<u8>, Failure> {
    let bytes = read_limited(abs, meta, path, opts, refuse)?;
    if text::is_binary(&bytes) {
        return Err(refuse.file(path, RefusalKind::Binary));
    }
    Ok(bytes)
}

/// Reads a file, refusing it when it is over the limit (checked before reading, and
/// again while reading in case it grew).
fn read_limited(
    abs: &Path,
    meta: &Metadata,
    path: &RepoPath,
    opts: &ApplyOptions,
    refuse: &Refuser<'_>,
) -> Result<Vec<u8>, Failure> {
    let limit = opts.max_file_bytes;
    let too_large = |size| refuse.file(path, RefusalKind::TooLarge { size, limit });
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::new();
    File::open(abs)
        .and_then(|f| f.take(limit.saturating_add(1)).read_to_end(&mut bytes))
        .map_err(|e| ApplyError::io("reading", abs, e))?;
    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if size > limit {
        return Err(too_large(size));
    }
    Ok(bytes)
}

fn check_size(len: usize, path: &RepoPath, opts: &ApplyOptions, refuse: &Refuser<'_>) -> Result<(), Failure> {
    let size = u64::try_from(len).unwrap_or(u64::MAX);
    if size > opts.max_file_bytes {
        let limit = opts.max_file_bytes;
        return Err(refuse.file(path, RefusalKind::TooLarge { size, limit }));
    }
    Ok(())
}

/// The mode git would record for a file.
fn mode_of(meta: &Metadata) -> FileMode {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o111 != 0 {
            return FileMode::Executable;
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    FileMode::Regular
}

/// Refuses pure insertions placed by their stated line alone when some hunk of the
/// answer, in any file, was found away from its stated line: the same author wrote all
/// the numbers, so this one is not to be trusted either.
fn insertions_against_drift(prepared: &[Prepared]) -> Vec<Refusal> {
    let offset = prepared
        .iter()
        .flat_map(|p| &p.report.hunks)
        .find_map(|h| match h.matched {
            MatchKind::Offset { by } if by != 0 => Some(by),
            _ => None,
        });
    let Some(offset) = offset else {
        return Vec::new();
    };
    prepared
        .iter()
        .flat_map(|p| {
            p.by_line_only.iter().map(|(hunk, line)| Refusal {
                path: Some(p.report.path.clone()),
                hunk: Some(*hunk),
                patch_line: Some(*line),
                kind: RefusalKind::InsertionPosition {
                    why: InsertionProblem::Drift { offset },
                },
            })
        })
        .collect()
}

/// Refuses entries that reach the same file through different names (a symbolic link
/// to a directory inside the root): applying both would apply one over the other.
fn same_physical_files(prepared: &[Prepared]) -> Vec<Refusal> {
    let mut seen: HashMap<&Path, &RepoPath> = HashMap::new();
    let mut refusals = Vec::new();
    for p in prepared {
        for (physical, path) in &p.physical {
            if let Some(other) = seen.insert(physical.as_path(), path) {
                refusals.push(Refusal {
                    path: Some(path.clone()),
                    hunk: None,
                    patch_line: None,
                    kind: RefusalKind::SameFile { other: other.clone() },
                });
            }
        }
    }
    refusals
}
