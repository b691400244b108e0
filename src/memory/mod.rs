//! A job's memory: notes in the seed's schema and named text files, validated
//! on write and kept within the `[memory]` limits; the [`Archivist`] moves old
//! notes to archive files when a job's memory fills up.
//!
//! Every write goes through [`Memory`], whether it comes from the API or from
//! the pipeline's note per step, so validation, limits and the archivist
//! apply alike.

mod archivist;

use std::path::PathBuf;

use orchestrator_context::{HistoryEntry, MemoryNote};
use serde::{Deserialize, Serialize};

pub use archivist::{Archive, ArchiveReport, Archivist, KEEP_NEWEST};

use crate::config::{Config, MemoryConfig};
use crate::jobs::{now_millis, rfc3339};
use crate::store::{
    FileWrite, MemoryLimit, MemoryUsage, NewNote, NoteInsert, Store, StoreError, StoredFile, StoredNote,
};

/// The note types of the seed's schema.
pub const NOTE_TYPES: &[&str] = &["Decision", "Constraint", "Todo", "Glossary", "Link"];
/// Longest note title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Most tags on a note, and longest tag in characters.
pub const MAX_TAGS: usize = 20;
pub const MAX_TAG_CHARS: usize = 50;
/// Longest `stepId` and file name, in characters.
pub const MAX_STEP_ID_CHARS: usize = 100;
pub const MAX_FILE_NAME_CHARS: usize = 200;

/// A note as a client writes it (`POST /memory/{job}/notes`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteInput {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub body: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, rename = "stepId", alias = "step_id")]
    pub step_id: Option<String>,
}

/// A note as the API shows it: the seed's fields plus id, size and time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NoteView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
    #[serde(rename = "stepId")]
    pub step_id: Option<String>,
    pub bytes: u64,
    pub created_at: String,
}

impl From<&StoredNote> for NoteView {
    fn from(n: &StoredNote) -> Self {
        NoteView {
            id: n.id.to_string(),
            kind: n.kind.clone(),
            title: n.title.clone(),
            body: n.body.clone(),
            tags: n.tags.clone(),
            step_id: n.step_id.clone(),
            bytes: n.bytes,
            created_at: rfc3339(n.created_at),
        }
    }
}

/// A memory file as a client writes it (`POST /memory/{job}/files`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileInput {
    pub name: String,
    pub content: String,
}

/// A memory file as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileView {
    pub name: String,
    pub content: String,
    pub bytes: u64,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&StoredFile> for FileView {
    fn from(f: &StoredFile) -> Self {
        FileView {
            name: f.name.clone(),
            content: f.content.clone(),
            bytes: f.bytes,
            created_at: rfc3339(f.created_at),
            updated_at: rfc3339(f.updated_at),
        }
    }
}

/// Why a memory write was refused.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// A field breaks the schema (HTTP 422).
    #[error("invalid {field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// One note or file is larger than `max_item_bytes` (HTTP 413).
    #[error("the {what} has {bytes} bytes; at most {limit} are allowed per item")]
    TooLarge {
        what: &'static str,
        bytes: u64,
        limit: u64,
    },
    /// The job's memory is at its item or byte limit (HTTP 409).
    #[error("{0}")]
    Full(String),
    #[error("no job {0}")]
    NoJob(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("memory archive: {0}")]
    Io(#[from] std::io::Error),
}

fn invalid(field: &'static str, message: impl Into<String>) -> MemoryError {
    MemoryError::Invalid {
        field,
        message: message.into(),
    }
}

/// What adding a note did.
#[derive(Debug, Clone, PartialEq)]
pub struct AddedNote {
    pub note: StoredNote,
    /// False when a note with the same idempotency key existed already.
    pub created: bool,
    /// The archive written because this note filled the memory past 80 %.
    pub archived: Option<ArchiveReport>,
}

/// The memory of jobs: validation, limits, storage and the archivist.
#[derive(Debug, Clone)]
pub struct Memory {
    store: Store,
    limits: MemoryConfig,
    archivist: Archivist,
}

impl Memory {
    pub fn new(store: Store, config: &Config) -> Memory {
        Memory::with_limits(store, config.memory.clone(), config.data_dir.join("memory"))
    }

    /// `archive_root` is `<ORCH_DATA_DIR>/memory`.
    pub fn with_limits(store: Store, limits: MemoryConfig, archive_root: PathBuf) -> Memory {
        let archivist = Archivist::new(store.clone(), limits.clone(), archive_root);
        Memory {
            store,
            limits,
            archivist,
        }
    }

    /// Finishes compactions a crash interrupted (at start); failures are
    /// logged, the next compaction of the job tries again.
    pub async fn recover_archives(&self) {
        match self.archivist.recover_all().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "finished interrupted memory compactions"),
            Err(err) => tracing::warn!(error = %err, "could not finish interrupted memory compactions"),
        }
    }

    pub fn limits(&self) -> &MemoryConfig {
        &self.limits
    }

    pub fn archivist(&self) -> &Archivist {
        &self.archivist
    }

    /// Validates and stores a note, then lets the archivist compact the
    /// job's memory if it passed 80 % of a limit. With an
    /// `idempotency_key`, writing the same key twice stores one note.
    pub async fn add_note(
        &self,
        job_id: &str,
        input: &NoteInput,
        idempotency_key: Option<&str>,
    ) -> Result<AddedNote, MemoryError> {
        let bytes = validate_note(input)?;
        let limit = u64::from(self.limits.max_item_bytes);
        if bytes > limit {
            return Err(MemoryError::TooLarge {
                what: "note",
                bytes,
                limit,
            });
        }
        let note = NewNote {
            kind: &input.kind,
            title: input.title.trim(),
            body: &input.body,
            tags: &input.tags,
            step_id: input.step_id.as_deref(),
            idempotency_key,
            bytes,
        };
        match self
            .store
            .insert_memory_note(job_id, &note, &self.limits, now_millis())
            .await?
        {
            NoteInsert::Inserted { note, usage } => {
                // The note is stored: a failed compaction is retried on the
                // next write, it does not undo this one.
                let archived = if self.archivist.over_threshold(usage) {
                    self.archivist.compact(job_id).await.unwrap_or_else(|err| {
                        tracing::error!(job = job_id, error = %err, "memory compaction failed");
                        None
                    })
                } else {
                    None
                };
                Ok(AddedNote {
                    note,
                    created: true,
                    archived,
                })
            }
            NoteInsert::Existing { note, .. } => Ok(AddedNote {
                note,
                created: false,
                archived: None,
            }),
            NoteInsert::NoJob => Err(MemoryError::NoJob(job_id.to_string())),
            NoteInsert::Full { limit, usage } => Err(self.full("notes", limit, usage)),
        }
    }

    /// The job's notes, oldest first.
    pub async fn notes(&self, job_id: &str) -> Result<(Vec<StoredNote>, MemoryUsage), MemoryError> {
        self.existing(job_id).await?;
        let notes = self.store.memory_notes(job_id).await?;
        let usage = MemoryUsage {
            items: notes.len() as u64,
            bytes: notes.iter().map(|n| n.bytes).sum(),
        };
        Ok((notes, usage))
    }

    /// Validates and creates or replaces a file; `true` when it is new.
    pub async fn put_file(&self, job_id: &str, input: &FileInput) -> Result<(StoredFile, bool), MemoryError> {
        validate_file(input)?;
        let bytes = input.content.len() as u64;
        let limit = u64::from(self.limits.max_item_bytes);
        if bytes > limit {
            return Err(MemoryError::TooLarge {
                what: "file",
                bytes,
                limit,
            });
        }
        match self
            .store
            .put_memory_file(job_id, &input.name, &input.content, &self.limits, now_millis())
            .await?
        {
            FileWrite::Created(file) => Ok((file, true)),
            FileWrite::Replaced(file) => Ok((file, false)),
            FileWrite::NoJob => Err(MemoryError::NoJob(job_id.to_string())),
            FileWrite::Full { limit, usage } => Err(self.full("files", limit, usage)),
        }
    }

    /// The job's files, by name.
    pub async fn files(&self, job_id: &str) -> Result<Vec<StoredFile>, MemoryError> {
        self.existing(job_id).await?;
        Ok(self.store.memory_files(job_id).await?)
    }

    async fn existing(&self, job_id: &str) -> Result<(), MemoryError> {
        if self.store.job_exists(job_id).await? {
            Ok(())
        } else {
            Err(MemoryError::NoJob(job_id.to_string()))
        }
    }

    fn full(&self, what: &str, limit: MemoryLimit, usage: MemoryUsage) -> MemoryError {
        MemoryError::Full(match limit {
            MemoryLimit::Items => format!(
                "the job's memory holds {} {what}, its limit (memory.max_items = {})",
                usage.items, self.limits.max_items
            ),
            MemoryLimit::TotalBytes => format!(
                "the job's {what} use {} bytes; this one would pass memory.max_total_bytes = {}",
                usage.bytes, self.limits.max_total_bytes
            ),
        })
    }
}

/// What a job remembers, in the context engine's terms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recalled {
    /// The job's notes, oldest first.
    pub memory: Vec<MemoryNote>,
    /// Summaries of the job's completed steps, in step order.
    pub history: Vec<HistoryEntry>,
}

/// The job's notes and the summaries of its steps before `before_step`
/// (0-based; all steps when `None`), for the context engine.
pub async fn recall(
    store: &Store,
    job_id: &str,
    before_step: Option<usize>,
) -> Result<Recalled, MemoryError> {
    if !store.job_exists(job_id).await? {
        return Err(MemoryError::NoJob(job_id.to_string()));
    }
    let memory = store
        .memory_notes(job_id)
        .await?
        .into_iter()
        .map(|n| MemoryNote {
            id: n.id.to_string(),
            kind: n.kind,
            title: n.title,
            body: n.body,
            tags: n.tags,
        })
        .collect();
    let history = store
        .step_summaries(job_id)
        .await?
        .into_iter()
        .filter(|(position, _)| {
            before_step.is_none_or(|before| usize::try_from(*position).is_ok_and(|p| p < before))
        })
        .map(|(position, summary)| HistoryEntry {
            id: format!("step-{}", position + 1),
            summary,
        })
        .collect();
    Ok(Recalled { memory, history })
}

fn has_control(s: &str, allow_line_breaks: bool) -> bool {
    s.chars()
        .any(|c| c.is_control() && !(allow_line_breaks && matches!(c, '\n' | '\r' | '\t')))
}

/// Checks a note against the schema; returns its size in bytes (title,
/// body and tags together).
pub fn validate_note(note: &NoteInput) -> Result<u64, MemoryError> {
    if !NOTE_TYPES.contains(&note.kind.as_str()) {
        return Err(invalid(
            "type",
            format!("{:?} is not one of {}", note.kind, NOTE_TYPES.join(", ")),
        ));
    }
    let title = note.title.trim();
    if title.is_empty() {
        return Err(invalid("title", "must not be empty"));
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(invalid(
            "title",
            format!("has more than {MAX_TITLE_CHARS} characters"),
        ));
    }
    if has_control(title, false) {
        return Err(invalid("title", "must be one line without control characters"));
    }
    if note.body.trim().is_empty() {
        return Err(invalid("body", "must not be empty"));
    }
    if has_control(&note.body, true) {
        return Err(invalid(
            "body",
            "must not contain control characters other than line breaks and tabs",
        ));
    }
    if note.tags.len() > MAX_TAGS {
        return Err(invalid("tags", format!("at most {MAX_TAGS} tags are allowed")));
    }
    for (i, tag) in note.tags.iter().enumerate() {
        if tag.is_empty() || tag.chars().count() > MAX_TAG_CHARS {
            return Err(invalid(
                "tags",
                format!("tag {i} must have 1 to {MAX_TAG_CHARS} characters"),
            ));
        }
        if tag.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "tags",
                format!("tag {tag:?} must not contain spaces or control characters"),
            ));
        }
        if note.tags[..i].contains(tag) {
            return Err(invalid("tags", format!("tag {tag:?} is given twice")));
        }
    }
    if let Some(step) = &note.step_id
        && (step.trim().is_empty() || step.chars().count() > MAX_STEP_ID_CHARS || has_control(step, false))
    {
        return Err(invalid(
            "stepId",
            format!("must have 1 to {MAX_STEP_ID_CHARS} characters, without control characters"),
        ));
    }
    let tags: usize = note.tags.iter().map(String::len).sum();
    Ok((title.len() + note.body.len() + tags) as u64)
}

/// Checks a memory file's name and content.
pub fn validate_file(file: &FileInput) -> Result<(), MemoryError> {
    let name = &file.name;
    if name.is_empty() || name.chars().count() > MAX_FILE_NAME_CHARS {
        return Err(invalid(
            "name",
            format!("must have 1 to {MAX_FILE_NAME_CHARS} characters"),
        ));
    }
    if name.trim() != name || has_control(name, false) {
        return Err(invalid(
            "name",
            "must not start or end with spaces or contain control characters",
        ));
    }
    if file.content.contains('\0') {
        return Err(invalid("content", "must be text (it contains a NUL byte)"));
    }
    Ok(())
}

/// The pipeline's note for a completed step: a `Decision` titled
/// `Step N: <title>`, with the rationale and the files touched, clipped to
/// the per-item limit so it always validates.
pub fn step_note(number: usize, title: &str, rationale: &str, files: &[String], max_bytes: u64) -> NoteInput {
    let title: String = single_line(&format!("Step {number}: {}", title.trim()))
        .chars()
        .take(MAX_TITLE_CHARS)
        .collect();
    let touched = if files.is_empty() {
        "Files touched: none (nothing to change).".to_string()
    } else {
        format!("Files touched: {}.", files.join(", "))
    };
    let rationale = rationale.trim();
    let mut body = if rationale.is_empty() {
        touched
    } else {
        format!("{rationale}\n{touched}")
    };
    body.retain(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'));
    let tag = "step";
    let room = usize::try_from(max_bytes)
        .unwrap_or(usize::MAX)
        .saturating_sub(title.len() + tag.len());
    if body.len() > room {
        let mut cut = room.saturating_sub(3);
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
        body.push_str("...");
    }
    NoteInput {
        kind: "Decision".into(),
        title,
        body,
        tags: vec![tag.into()],
        step_id: Some(format!("step-{number}")),
    }
}

fn single_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note() -> NoteInput {
        NoteInput {
            kind: "Constraint".into(),
            title: "No unsafe".into(),
            body: "The crate forbids unsafe code.".into(),
            tags: vec!["rust".into(), "safety".into()],
            step_id: None,
        }
    }

    fn field_of(err: MemoryError) -> &'static str {
        match err {
            MemoryError::Invalid { field, .. } => field,
            other => panic!("not a validation error: {other}"),
        }
    }

    #[test]
    fn a_valid_note_counts_title_body_and_tags() {
        let n = note();
        assert_eq!(
            validate_note(&n).unwrap(),
            (n.title.len() + n.body.len() + "rust".len() + "safety".len()) as u64
        );
    }

    #[test]
    fn each_broken_field_is_named() {
        type Breaker = Box<dyn Fn(&mut NoteInput)>;
        let cases: Vec<(&str, Breaker)> = vec![
            ("type", Box::new(|n| n.kind = "decision".into())),
            ("type", Box::new(|n| n.kind = String::new())),
            ("title", Box::new(|n| n.title = "  ".into())),
            ("title", Box::new(|n| n.title = "x".repeat(MAX_TITLE_CHARS + 1))),
            ("title", Box::new(|n| n.title = "two\nlines".into())),
            ("body", Box::new(|n| n.body = "\n".into())),
            ("body", Box::new(|n| n.body = "nul\0byte".into())),
            ("tags", Box::new(|n| n.tags = vec![String::new()])),
            ("tags", Box::new(|n| n.tags = vec!["has space".into()])),
            ("tags", Box::new(|n| n.tags = vec!["a".into(), "a".into()])),
            (
                "tags",
                Box::new(|n| n.tags = (0..=MAX_TAGS).map(|i| i.to_string()).collect()),
            ),
            ("stepId", Box::new(|n| n.step_id = Some(String::new()))),
        ];
        for (field, break_it) in cases {
            let mut n = note();
            break_it(&mut n);
            assert_eq!(field_of(validate_note(&n).unwrap_err()), field, "{n:?}");
        }
    }

    #[test]
    fn file_names_and_contents_are_checked() {
        let ok = FileInput {
            name: "plan.md".into(),
            content: "# Plan".into(),
        };
        validate_file(&ok).unwrap();
        for (name, content) in [("", "x"), (" lead", "x"), ("a\tb", "x"), ("ok", "a\0b")] {
            let f = FileInput {
                name: name.into(),
                content: content.into(),
            };
            assert!(validate_file(&f).is_err(), "{f:?}");
        }
    }

    #[test]
    fn a_step_note_always_fits_and_validates() {
        let files = vec!["docs/guide.md".to_string()];
        let n = step_note(1, "Add the guide", "Newcomers need it.", &files, 20_000);
        assert_eq!(n.title, "Step 1: Add the guide");
        assert_eq!(n.body, "Newcomers need it.\nFiles touched: docs/guide.md.");
        assert_eq!(n.step_id.as_deref(), Some("step-1"));
        validate_note(&n).unwrap();

        let long = "é".repeat(30_000);
        let n = step_note(2, &long, &long, &files, 1_000);
        let bytes = validate_note(&n).unwrap();
        assert!(bytes <= 1_000, "{bytes}");
        assert_eq!(n.title.chars().count(), MAX_TITLE_CHARS);
    }
}
