//! The archivist: when a job's notes pass 80 % of the item limit or of the
//! byte budget, the oldest (all but the newest [`KEEP_NEWEST`]) move to
//! `<ORCH_DATA_DIR>/memory/<job>/archive_<timestamp>.json`.
//!
//! Two phases, crash-safe without a shared transaction between a file and
//! the database:
//! 1. snapshot: the notes are written to a temporary file, fsynced, renamed
//!    into place, and the directory fsynced. From then on the archive is the
//!    notes' home.
//! 2. delete: the notes the archive holds (by id and creation time) are
//!    deleted from the database.
//!
//! A process dying between the two leaves the notes in both places. Before
//! every compaction (and at start, [`Archivist::recover_all`]) the deletes of
//! every archive of the job are done again, which is idempotent; only then
//! are new candidates chosen, so no note lands in two archives. A temporary
//! file left by a crash during phase 1 names notes still in the database and
//! is removed. A compaction runs in one transaction that holds the job's
//! memory lock (an advisory lock on PostgreSQL, the single writer on
//! SQLite), so compactions of one job never overlap, across replicas too.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::MemoryError;
use crate::config::MemoryConfig;
use crate::jobs::{now_millis, rfc3339};
use crate::store::{MemoryCompaction, MemoryUsage, Store, StoredNote};

/// Notes a compaction always leaves in the database, newest first.
pub const KEEP_NEWEST: usize = 10;

const ARCHIVE_PREFIX: &str = "archive_";
const TEMP_SUFFIX: &str = ".tmp";

/// The content of an archive file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Archive {
    pub job_id: String,
    pub created_at: String,
    /// The ids of `notes`, for people and tools reading the archive.
    pub ids: Vec<i64>,
    pub notes: Vec<StoredNote>,
}

/// What one compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveReport {
    pub path: PathBuf,
    pub archived: usize,
}

/// Compacts jobs' memory into archive files. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Archivist {
    store: Store,
    limits: MemoryConfig,
    /// `<ORCH_DATA_DIR>/memory`.
    root: PathBuf,
}

impl Archivist {
    pub fn new(store: Store, limits: MemoryConfig, root: PathBuf) -> Archivist {
        Archivist { store, limits, root }
    }

    /// Whether `usage` passed 80 % of the item limit or of the byte budget.
    pub fn over_threshold(&self, usage: MemoryUsage) -> bool {
        usage.items * 5 > u64::from(self.limits.max_items) * 4
            || usage.bytes * 5 > self.limits.max_total_bytes * 4
    }

    /// The job's archive directory; job ids are checked to be one plain
    /// path component.
    pub fn job_dir(&self, job_id: &str) -> Result<PathBuf, MemoryError> {
        let plain = !job_id.is_empty()
            && job_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !plain {
            return Err(MemoryError::Invalid {
                field: "job_id",
                message: format!("{job_id:?} cannot name an archive directory"),
            });
        }
        Ok(self.root.join(job_id))
    }

    /// Finishes interrupted compactions of the job, then archives all but
    /// its newest notes, whatever the threshold. `None` when there is
    /// nothing old enough to archive.
    pub async fn compact(&self, job_id: &str) -> Result<Option<ArchiveReport>, MemoryError> {
        let mut tx = self.store.begin_memory_compaction(job_id).await?;
        self.finish_deletes(&mut tx, job_id).await?;
        let report = match self.snapshot_locked(&mut tx, job_id).await? {
            Some((report, archive)) => {
                tx.delete_notes(&archive.notes).await?;
                Some(report)
            }
            None => None,
        };
        tx.commit().await?;
        if let Some(report) = &report {
            tracing::info!(job = job_id, archived = report.archived, path = %report.path.display(), "memory archived");
        }
        Ok(report)
    }

    /// Phase 1 alone: writes the archive of all but the newest notes and
    /// deletes nothing (what a crash right after it leaves behind).
    pub async fn snapshot(&self, job_id: &str) -> Result<Option<ArchiveReport>, MemoryError> {
        let mut tx = self.store.begin_memory_compaction(job_id).await?;
        self.finish_deletes(&mut tx, job_id).await?;
        let report = self
            .snapshot_locked(&mut tx, job_id)
            .await?
            .map(|(report, _)| report);
        tx.commit().await?;
        Ok(report)
    }

    /// Writes the archive; returns it and the ids to delete.
    async fn snapshot_locked(
        &self,
        tx: &mut MemoryCompaction,
        job_id: &str,
    ) -> Result<Option<(ArchiveReport, Archive)>, MemoryError> {
        let mut notes = tx.notes().await?;
        if notes.len() <= KEEP_NEWEST {
            return Ok(None);
        }
        notes.truncate(notes.len() - KEEP_NEWEST);
        let archive = Archive {
            job_id: job_id.to_string(),
            created_at: rfc3339(now_millis()),
            ids: notes.iter().map(|n| n.id).collect(),
            notes,
        };
        let dir = self.job_dir(job_id)?;
        let bytes = serde_json::to_vec_pretty(&archive).map_err(std::io::Error::other)?;
        let path = tokio::task::spawn_blocking(move || write_archive(&dir, &bytes))
            .await
            .map_err(std::io::Error::other)??;
        let report = ArchiveReport {
            path,
            archived: archive.ids.len(),
        };
        Ok(Some((report, archive)))
    }

    /// The deletes of every archive of the job, done again (idempotent);
    /// stray temporary files of an interrupted snapshot are removed. Returns
    /// how many notes were still in the database.
    async fn finish_deletes(&self, tx: &mut MemoryCompaction, job_id: &str) -> Result<u64, MemoryError> {
        let dir = self.job_dir(job_id)?;
        let archives = tokio::task::spawn_blocking(move || read_archives(&dir))
            .await
            .map_err(std::io::Error::other)??;
        let mut deleted = 0;
        for archive in archives {
            deleted += tx.delete_notes(&archive.notes).await?;
        }
        if deleted > 0 {
            tracing::info!(
                job = job_id,
                deleted,
                "finishing an interrupted memory compaction"
            );
        }
        Ok(deleted)
    }

    /// Finishes the interrupted compactions of one job.
    pub async fn recover(&self, job_id: &str) -> Result<u64, MemoryError> {
        let mut tx = self.store.begin_memory_compaction(job_id).await?;
        let deleted = self.finish_deletes(&mut tx, job_id).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    /// Finishes the interrupted compactions of every job with archives
    /// (run at start).
    pub async fn recover_all(&self) -> Result<u64, MemoryError> {
        let jobs = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect::<Vec<_>>(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(err) => return Err(err.into()),
        };
        let mut deleted = 0;
        for job in jobs {
            if self.job_dir(&job).is_ok() {
                deleted += self.recover(&job).await?;
            }
        }
        Ok(deleted)
    }

    /// Every archive of the job, oldest first.
    pub fn archives(&self, job_id: &str) -> Result<Vec<Archive>, MemoryError> {
        Ok(read_archives(&self.job_dir(job_id)?)?)
    }
}

/// Writes `bytes` as a new `archive_<timestamp>.json` in `dir`: temporary
/// file, fsync, rename, fsync of the directory. Never replaces an archive.
fn write_archive(dir: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%3fZ").to_string();
    let mut name = format!("{ARCHIVE_PREFIX}{stamp}.json");
    let mut n = 1;
    while dir.join(&name).exists() {
        name = format!("{ARCHIVE_PREFIX}{stamp}-{n}.json");
        n += 1;
    }
    let temp = dir.join(format!(".{name}{TEMP_SUFFIX}"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    let path = dir.join(&name);
    std::fs::rename(&temp, &path)?;
    sync_dir(dir)?;
    Ok(path)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

/// The archives in `dir`, oldest first; removes temporary files a crash left.
fn read_archives(dir: &Path) -> std::io::Result<Vec<Archive>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let path = dir.join(&name);
        if name.ends_with(TEMP_SUFFIX) {
            // Never renamed into place: its notes are all still in the database.
            std::fs::remove_file(&path)?;
            continue;
        }
        if !(name.starts_with(ARCHIVE_PREFIX) && name.ends_with(".json")) {
            continue;
        }
        let archive: Archive = serde_json::from_slice(&std::fs::read(&path)?).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        out.push(archive);
    }
    Ok(out)
}
