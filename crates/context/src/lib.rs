//! The context engine of the orchestrator: it decides what code and notes the coder model
//! sees for one step, within a token budget, and explains every choice.
//!
//! * [`RepoIndex`] walks a repository (`.gitignore` honoured, secrets and binaries skipped),
//!   splits files into symbol-aware chunks with tree-sitter and ranks them with a
//!   code-aware BM25; it is cached on disk and refreshed incrementally by git blob id.
//! * [`build_context`] gathers the six sources, ranks, compacts, fits to the budget with
//!   real BPE token counts and returns the text with [`ContextDiagnostics`].
//! * [`rank_files`] backs `orchestrator context rank`.
//! * [`retrieval_pool`] names the chunks worth embedding; a caller with an embedding model
//!   passes their ranking by similarity back in [`ContextRequest::dense`], and the engine
//!   fuses it with BM25 by reciprocal-rank fusion.
//!
//! The crate is synchronous and pure: no database, no network. Callers run it on a blocking
//! thread.

mod bm25;
mod budget;
mod chunk;
mod compact;
mod dense;
mod diagnostics;
mod engine;
mod error;
mod index;
mod secrets;
mod sources;
mod store;
mod tokenize;
mod tokens;
mod walk;

use std::path::Path;

pub use bm25::fuse_rrf;
pub use chunk::{Chunk, chunk_file};
pub use dense::{DenseHit, PoolChunk, RRF_K, RetrievalPool, cosine, rank_by_similarity, retrieval_pool};
pub use diagnostics::{CandidateDiagnostic, ContextDiagnostics, Decision, ScoreParts, SourceKind};
pub use engine::{
    BuiltContext, ContextItem, ContextRequest, ContextSettings, HistoryEntry, MemoryNote, StepInput,
    build_context,
};
pub use error::ContextError;
pub use index::{
    CacheState, ChunkHit, FILE_CHUNKS, IndexOptions, IndexReport, IndexedChunk, IndexedFile, Query,
    RankedFile, RepoIndex, blob_id, file_prior,
};
pub use secrets::{contains_secret, is_secret_path};
pub use tokenize::{path_terms, terms};
pub use tokens::{Encoding, TokenCounter};
pub use walk::SkipCounts;

/// Ranks the files of `repo` for `query`; returns at most `top`, best first. A file scores
/// by its best [`FILE_CHUNKS`] chunks. The index cache lives under `cache_dir` (never inside `repo`) and is
/// reused and refreshed incrementally.
pub fn rank_files(
    repo: &Path,
    query: &str,
    top: usize,
    cache_dir: &Path,
) -> Result<Vec<RankedFile>, ContextError> {
    rank_files_with(repo, query, top, cache_dir, &IndexOptions::default())
}

/// [`rank_files`] with explicit index options (the configured `max_file_bytes`).
pub fn rank_files_with(
    repo: &Path,
    query: &str,
    top: usize,
    cache_dir: &Path,
    opts: &IndexOptions,
) -> Result<Vec<RankedFile>, ContextError> {
    let (index, _report) = RepoIndex::open(repo, cache_dir, opts)?;
    let q = index.prepare(query);
    Ok(index.rank_files(&q, top))
}
