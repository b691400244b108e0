//! A job's memory (notes and files), its step summaries and its context
//! diagnostics. Limits are checked in the same transaction as the write, so
//! concurrent writers never push a job past them.

use sqlx::{AssertSqlSafe, Transaction};

use super::{Backend, Result, Store, StoreError};
use crate::config::MemoryConfig;
use crate::jobs::UnixMillis;

/// A note as the memory layer hands it to the store (already validated).
#[derive(Debug, Clone, Copy)]
pub struct NewNote<'a> {
    pub kind: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub tags: &'a [String],
    pub step_id: Option<&'a str>,
    /// Writing a second note with the same key for the job is a no-op.
    pub idempotency_key: Option<&'a str>,
    pub bytes: u64,
}

/// A stored note.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredNote {
    pub id: i64,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
    pub step_id: Option<String>,
    pub bytes: u64,
    pub created_at: UnixMillis,
}

/// How much of its memory a job uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MemoryUsage {
    pub items: u64,
    pub bytes: u64,
}

/// Which per-job limit a write would cross.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryLimit {
    Items,
    TotalBytes,
}

/// What a note insert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteInsert {
    /// Stored; `usage` includes it.
    Inserted {
        note: StoredNote,
        usage: MemoryUsage,
    },
    /// A note with the same idempotency key exists already; nothing changed.
    Existing {
        note: StoredNote,
        usage: MemoryUsage,
    },
    NoJob,
    Full {
        limit: MemoryLimit,
        usage: MemoryUsage,
    },
}

/// A stored memory file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub name: String,
    pub content: String,
    pub bytes: u64,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// What a file write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileWrite {
    Created(StoredFile),
    Replaced(StoredFile),
    NoJob,
    Full { limit: MemoryLimit, usage: MemoryUsage },
}

/// One step's stored context diagnostics.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StepContextMetrics {
    pub position: i64,
    pub step_title: String,
    pub model: String,
    pub context_tokens: i64,
    pub prompt_tokens: i64,
    pub candidates: i64,
    pub kept: i64,
    /// The engine's diagnostics as JSON.
    pub diagnostics: String,
    pub created_at: UnixMillis,
}

type NoteRow = (i64, String, String, String, String, Option<String>, i64, i64);

const NOTE_COLUMNS: &str = "id, kind, title, body, tags, step_id, bytes, created_at";

fn note_of(row: NoteRow) -> Result<StoredNote> {
    let (id, kind, title, body, tags, step_id, bytes, created_at) = row;
    let tags = serde_json::from_str(&tags)
        .map_err(|e| StoreError::Corrupt(format!("memory note {id} has unreadable tags: {e}")))?;
    Ok(StoredNote {
        id,
        kind,
        title,
        body,
        tags,
        step_id,
        bytes: u64::try_from(bytes).unwrap_or(0),
        created_at,
    })
}

/// The job's notes, oldest first, read through `executor`.
async fn notes_of<'e, E>(executor: E, job_id: &str) -> Result<Vec<StoredNote>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows: Vec<NoteRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {NOTE_COLUMNS} FROM memory_items WHERE job_id = $1 ORDER BY id"
    )))
    .bind(job_id)
    .fetch_all(executor)
    .await?;
    rows.into_iter().map(note_of).collect()
}

/// The two tables whose rows count against a job's memory limits.
#[derive(Debug, Clone, Copy)]
enum MemoryTable {
    Notes,
    Files,
}

impl MemoryTable {
    fn name(self) -> &'static str {
        match self {
            MemoryTable::Notes => "memory_items",
            MemoryTable::Files => "memory_files",
        }
    }
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The archivist's transaction on one job's notes, holding its memory lock.
pub struct MemoryCompaction {
    tx: Transaction<'static, sqlx::Any>,
    job_id: String,
}

impl MemoryCompaction {
    /// The job's notes, oldest first.
    pub async fn notes(&mut self) -> Result<Vec<StoredNote>> {
        notes_of(&mut *self.tx, &self.job_id).await
    }

    /// Deletes these notes of the job, matched by id and creation time (so
    /// an id reused by a restored database is never mistaken for an archived
    /// note); those already gone are ignored. Returns how many were deleted.
    pub async fn delete_notes(&mut self, notes: &[StoredNote]) -> Result<u64> {
        let mut deleted = 0;
        // Bounded statements: SQLite caps the number of placeholders.
        for chunk in notes.chunks(400) {
            let matches: Vec<String> = (0..chunk.len())
                .map(|i| format!("(id = ${} AND created_at = ${})", 2 * i + 2, 2 * i + 3))
                .collect();
            let sql = format!(
                "DELETE FROM memory_items WHERE job_id = $1 AND ({})",
                matches.join(" OR ")
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).bind(self.job_id.as_str());
            for note in chunk {
                query = query.bind(note.id).bind(note.created_at);
            }
            deleted += query.execute(&mut *self.tx).await?.rows_affected();
        }
        Ok(deleted)
    }

    /// Makes the deletes durable and releases the lock.
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// Whether the job exists.
    pub async fn job_exists(&self, job_id: &str) -> Result<bool> {
        let found: Option<String> = sqlx::query_scalar("SELECT id FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_optional(&self.read)
            .await?;
        Ok(found.is_some())
    }

    /// Serialises memory writes of one job across PostgreSQL replicas until
    /// the transaction ends (SQLite has a single writer already).
    async fn lock_job_memory(&self, tx: &mut Transaction<'_, sqlx::Any>, job_id: &str) -> Result<()> {
        if self.backend == Backend::Postgres {
            // The lock function returns `void`, which the Any driver cannot carry.
            sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtext('memory:' || $1))) AS locked")
                .bind(job_id)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Opens a transaction on the job's notes that holds its memory lock
    /// (the archivist keeps it across its file write, so compactions of one
    /// job never overlap).
    pub async fn begin_memory_compaction(&self, job_id: &str) -> Result<MemoryCompaction> {
        let mut tx = self.write.begin().await?;
        self.lock_job_memory(&mut tx, job_id).await?;
        Ok(MemoryCompaction {
            tx,
            job_id: job_id.to_string(),
        })
    }

    /// What the job's rows in `table` (`memory_items` or `memory_files`) use.
    async fn usage_in(
        tx: &mut Transaction<'_, sqlx::Any>,
        table: MemoryTable,
        job_id: &str,
    ) -> Result<MemoryUsage> {
        let sql = format!(
            "SELECT COUNT(*), CAST(SUM(bytes) AS BIGINT) FROM {} WHERE job_id = $1",
            table.name()
        );
        let (items, bytes): (i64, Option<i64>) = sqlx::query_as(AssertSqlSafe(sql))
            .bind(job_id)
            .fetch_one(&mut **tx)
            .await?;
        Ok(MemoryUsage {
            items: u64::try_from(items).unwrap_or(0),
            bytes: u64::try_from(bytes.unwrap_or(0)).unwrap_or(0),
        })
    }

    /// Opens a write transaction on the job's memory holding its lock;
    /// `None` when the job does not exist.
    async fn begin_memory_write(&self, job_id: &str) -> Result<Option<Transaction<'static, sqlx::Any>>> {
        let mut tx = self.write.begin().await?;
        self.lock_job_memory(&mut tx, job_id).await?;
        let job: Option<String> = sqlx::query_scalar("SELECT id FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_optional(&mut *tx)
            .await?;
        Ok(job.map(|_| tx))
    }

    /// Stores a note unless the job is missing, a note with the same
    /// idempotency key exists, or the job's item count or byte total would
    /// pass its limit.
    pub async fn insert_memory_note(
        &self,
        job_id: &str,
        note: &NewNote<'_>,
        limits: &MemoryConfig,
        now: UnixMillis,
    ) -> Result<NoteInsert> {
        let Some(mut tx) = self.begin_memory_write(job_id).await? else {
            return Ok(NoteInsert::NoJob);
        };
        let usage = Self::usage_in(&mut tx, MemoryTable::Notes, job_id).await?;
        if let Some(key) = note.idempotency_key {
            let existing: Option<NoteRow> = sqlx::query_as(AssertSqlSafe(format!(
                "SELECT {NOTE_COLUMNS} FROM memory_items WHERE job_id = $1 AND idempotency_key = $2"
            )))
            .bind(job_id)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = existing {
                return Ok(NoteInsert::Existing {
                    note: note_of(row)?,
                    usage,
                });
            }
        }
        if usage.items + 1 > u64::from(limits.max_items) {
            return Ok(NoteInsert::Full {
                limit: MemoryLimit::Items,
                usage,
            });
        }
        if usage.bytes + note.bytes > limits.max_total_bytes {
            return Ok(NoteInsert::Full {
                limit: MemoryLimit::TotalBytes,
                usage,
            });
        }
        let tags = serde_json::to_string(note.tags).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO memory_items (job_id, kind, title, body, tags, step_id, idempotency_key, bytes, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(job_id)
        .bind(note.kind)
        .bind(note.title)
        .bind(note.body)
        .bind(tags.as_str())
        .bind(note.step_id)
        .bind(note.idempotency_key)
        .bind(as_i64(note.bytes))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(NoteInsert::Inserted {
            note: StoredNote {
                id,
                kind: note.kind.to_string(),
                title: note.title.to_string(),
                body: note.body.to_string(),
                tags: note.tags.to_vec(),
                step_id: note.step_id.map(str::to_string),
                bytes: note.bytes,
                created_at: now,
            },
            usage: MemoryUsage {
                items: usage.items + 1,
                bytes: usage.bytes + note.bytes,
            },
        })
    }

    /// The job's notes, oldest first.
    pub async fn memory_notes(&self, job_id: &str) -> Result<Vec<StoredNote>> {
        notes_of(&self.write, job_id).await
    }

    /// How many notes the job has and their bytes.
    pub async fn memory_usage(&self, job_id: &str) -> Result<MemoryUsage> {
        let mut tx = self.write.begin().await?;
        let usage = Self::usage_in(&mut tx, MemoryTable::Notes, job_id).await?;
        tx.commit().await?;
        Ok(usage)
    }

    /// Creates or replaces a memory file, within the job's limits (files are
    /// counted apart from notes, with the same limits).
    pub async fn put_memory_file(
        &self,
        job_id: &str,
        name: &str,
        content: &str,
        limits: &MemoryConfig,
        now: UnixMillis,
    ) -> Result<FileWrite> {
        let Some(mut tx) = self.begin_memory_write(job_id).await? else {
            return Ok(FileWrite::NoJob);
        };
        let usage = Self::usage_in(&mut tx, MemoryTable::Files, job_id).await?;
        let existing: Option<(i64, i64)> =
            sqlx::query_as("SELECT bytes, created_at FROM memory_files WHERE job_id = $1 AND name = $2")
                .bind(job_id)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        let new_bytes = content.len() as u64;
        let replaced_bytes = existing.map_or(0, |(b, _)| u64::try_from(b).unwrap_or(0));
        if existing.is_none() && usage.items + 1 > u64::from(limits.max_items) {
            return Ok(FileWrite::Full {
                limit: MemoryLimit::Items,
                usage,
            });
        }
        if usage.bytes - replaced_bytes.min(usage.bytes) + new_bytes > limits.max_total_bytes {
            return Ok(FileWrite::Full {
                limit: MemoryLimit::TotalBytes,
                usage,
            });
        }
        sqlx::query(
            "INSERT INTO memory_files (job_id, name, content, bytes, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (job_id, name) DO UPDATE SET \
             content = excluded.content, bytes = excluded.bytes, updated_at = excluded.updated_at",
        )
        .bind(job_id)
        .bind(name)
        .bind(content)
        .bind(as_i64(new_bytes))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let file = StoredFile {
            name: name.to_string(),
            content: content.to_string(),
            bytes: new_bytes,
            created_at: existing.map_or(now, |(_, created)| created),
            updated_at: now,
        };
        Ok(if existing.is_some() {
            FileWrite::Replaced(file)
        } else {
            FileWrite::Created(file)
        })
    }

    /// The job's memory files, by name.
    pub async fn memory_files(&self, job_id: &str) -> Result<Vec<StoredFile>> {
        let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT name, content, bytes, created_at, updated_at FROM memory_files WHERE job_id = $1 ORDER BY name",
        )
        .bind(job_id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(name, content, bytes, created_at, updated_at)| StoredFile {
                name,
                content,
                bytes: u64::try_from(bytes).unwrap_or(0),
                created_at,
                updated_at,
            })
            .collect())
    }

    /// Records the summary of a completed step (once: a resumed job's
    /// second write changes nothing).
    pub async fn save_step_summary(
        &self,
        job_id: &str,
        position: usize,
        summary: &str,
        now: UnixMillis,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO message_summaries (job_id, position, summary, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (job_id, position) DO NOTHING",
        )
        .bind(job_id)
        .bind(as_i64(position as u64))
        .bind(summary)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The job's step summaries, `(position, summary)` in step order.
    pub async fn step_summaries(&self, job_id: &str) -> Result<Vec<(i64, String)>> {
        Ok(sqlx::query_as(
            "SELECT position, summary FROM message_summaries WHERE job_id = $1 ORDER BY position",
        )
        .bind(job_id)
        .fetch_all(&self.write)
        .await?)
    }

    /// Stores a step's context diagnostics, replacing an earlier build's.
    pub async fn save_context_metrics(&self, job_id: &str, metrics: &StepContextMetrics) -> Result<()> {
        sqlx::query(
            "INSERT INTO context_metrics (job_id, position, step_title, model, context_tokens, prompt_tokens, \
             candidates, kept, diagnostics, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (job_id, position) DO UPDATE SET step_title = excluded.step_title, \
             model = excluded.model, context_tokens = excluded.context_tokens, \
             prompt_tokens = excluded.prompt_tokens, candidates = excluded.candidates, kept = excluded.kept, \
             diagnostics = excluded.diagnostics, created_at = excluded.created_at",
        )
        .bind(job_id)
        .bind(metrics.position)
        .bind(metrics.step_title.as_str())
        .bind(metrics.model.as_str())
        .bind(metrics.context_tokens)
        .bind(metrics.prompt_tokens)
        .bind(metrics.candidates)
        .bind(metrics.kept)
        .bind(metrics.diagnostics.as_str())
        .bind(metrics.created_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The job's stored context diagnostics, in step order.
    pub async fn context_metrics(&self, job_id: &str) -> Result<Vec<StepContextMetrics>> {
        Ok(sqlx::query_as(
            "SELECT position, step_title, model, context_tokens, prompt_tokens, candidates, kept, diagnostics, \
             created_at FROM context_metrics WHERE job_id = $1 ORDER BY position",
        )
        .bind(job_id)
        .fetch_all(&self.read)
        .await?)
    }
}
