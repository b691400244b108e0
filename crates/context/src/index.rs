//! The repository index: files, their chunks and term counts, cached on disk per repository
//! and refreshed incrementally.
//!
//! Refreshing is cheap on an unchanged tree: a file whose size and modification time match
//! the cache is trusted without being read; one whose stat changed is hashed as a git blob
//! (`sha1("blob <len>\0" + content)`) and only re-chunked when that id changed. The
//! [`IndexReport`] counts each case so callers and tests can see what work was done.

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use sha1::{Digest, Sha1};

use crate::bm25::{self, Bm25};
use crate::chunk::{self, Chunk};
use crate::error::ContextError;
use crate::store;
use crate::tokenize;
use crate::walk::{self, Content, SkipCounts, WalkedFile};

/// How much the path of a file counts next to its content (path terms are few and telling).
const PATH_WEIGHT: f32 = 0.6;
/// How many of a file's best chunks make its score in [`RepoIndex::rank_files`]
/// (`docs/benchmarks.md`: 1, the best chunk alone, and 2 to 5 were measured; 3 was best).
pub const FILE_CHUNKS: usize = 3;
/// Score factor of files that are not source code (docs, manifests, data). A task is
/// carried out in code: prose that merely repeats the task's words (a changelog, a README)
/// must not outrank the code it describes, yet stays retrievable.
const NON_CODE_PRIOR: f32 = 0.5;
/// Extensions treated as source code.
const CODE_EXTENSIONS: &[&str] = &[
    "c", "cc", "cpp", "cs", "cxx", "go", "h", "hpp", "java", "js", "jsx", "kt", "mjs", "cjs", "php", "py",
    "pyi", "rb", "rs", "scala", "sh", "swift", "ts", "tsx", "mts", "cts",
];
/// Extra weight of a chunk's symbol name terms: they say what the chunk is about.
const NAME_REPEAT: u32 = 2;

/// One indexed chunk: its line range and term counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedChunk {
    pub chunk: Chunk,
    pub terms: Vec<(u32, u32)>,
}

/// One indexed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedFile {
    /// Repository-relative path, `/` separators.
    pub path: String,
    /// Git blob id of the content, 40 hex digits.
    pub blob: String,
    pub size: u64,
    pub mtime_ns: u64,
    pub path_terms: Vec<(u32, u32)>,
    pub chunks: Vec<IndexedChunk>,
}

/// Where the cache stood when the index was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheState {
    /// No cache file: built from scratch.
    Missing,
    /// Cache read and used.
    Loaded,
    /// Cache unreadable, corrupt or of another format version: rebuilt from scratch.
    Rebuilt,
    /// The cache directory cannot be created: built in memory, nothing saved.
    Unavailable,
}

/// What opening the index did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexReport {
    pub cache: CacheState,
    /// Files in the index after the refresh.
    pub files: usize,
    pub chunks: usize,
    /// Files read and hashed because their size or modification time changed (or were new).
    pub files_hashed: usize,
    /// Files chunked and tokenized (new content): the real indexing work.
    pub files_reindexed: usize,
    /// Files that left the tree (or became excluded) since the cache was written.
    pub files_removed: usize,
    pub skipped: SkipCounts,
    /// Whether the cache file was (re)written.
    pub saved: bool,
}

/// Indexing knobs.
#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// Files larger than this are not indexed (default 1 MiB).
    pub max_file_bytes: u64,
}

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            max_file_bytes: 1 << 20,
        }
    }
}

/// A chunk found by a query.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkHit {
    /// Position in [`RepoIndex::files`].
    pub file: usize,
    /// Position in that file's chunks.
    pub chunk: usize,
    /// `content_score + path_score`.
    pub score: f32,
    /// Chunk BM25 × the file's [`file_prior`].
    pub content_score: f32,
    /// Path BM25 × `PATH_WEIGHT` (0.6) × the file's [`file_prior`].
    pub path_score: f32,
}

/// A file ranked for a query: it scores by its best [`FILE_CHUNKS`] chunks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RankedFile {
    pub path: String,
    /// The content scores of the file's best chunks, summed, plus its path score.
    pub score: f32,
    /// The best chunk's line range and symbol name.
    pub best_lines: (u32, u32),
    pub best_symbol: Option<String>,
}

/// A query prepared against the index vocabulary.
#[derive(Debug, Clone)]
pub struct Query {
    /// `(term, weight, id in the vocabulary)`; weight is `1 + ln(count in the query)`.
    pub terms: Vec<(String, f32, Option<u32>)>,
}

/// The in-memory index of one repository.
#[derive(Debug)]
pub struct RepoIndex {
    root: PathBuf,
    vocab: Vec<String>,
    files: Vec<IndexedFile>,
    /// `(file, chunk)` of each document of `content`.
    owners: Vec<(u32, u32)>,
    content: Bm25,
    paths: Bm25,
}

/// A file left out because of its content (binary, secret); remembered with its stat so an
/// unchanged one is not read again on every refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExcludedFile {
    pub path: String,
    pub size: u64,
    pub mtime_ns: u64,
    pub reason: Exclusion,
}

/// Why a file's content was excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exclusion {
    Binary,
    Secret,
}

/// The result of indexing one file's content on a worker thread. Terms are numbered in a
/// file-local vocabulary (`terms`) so the single-threaded merge into the global vocabulary
/// touches each distinct term of a file once, not once per chunk.
enum Outcome {
    Same,
    New {
        blob: String,
        terms: Vec<String>,
        chunks: Vec<(Chunk, Vec<(u32, u32)>)>,
    },
    Excluded(Exclusion),
    Unreadable,
}

impl RepoIndex {
    /// Opens the index of `repo`, loading the cache under `cache_dir` when valid and bringing
    /// it up to date with the tree; writes the cache back when anything changed.
    pub fn open(
        repo: &Path,
        cache_dir: &Path,
        opts: &IndexOptions,
    ) -> Result<(Self, IndexReport), ContextError> {
        let root = fs::canonicalize(repo).map_err(|e| ContextError::io(repo, e))?;
        if !root.is_dir() {
            return Err(ContextError::NotADirectory(root));
        }
        let cache_file = cache_path(&root, cache_dir)?;
        let read = cache_file.as_deref().map(fs::read);
        let (cache, mut vocab, cached, cached_excluded) = match read {
            None => (CacheState::Unavailable, Vec::new(), Vec::new(), Vec::new()),
            Some(Ok(bytes)) => match store::decode(&bytes) {
                Some((v, f, x)) => (CacheState::Loaded, v, f, x),
                None => (CacheState::Rebuilt, Vec::new(), Vec::new(), Vec::new()),
            },
            Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                (CacheState::Missing, Vec::new(), Vec::new(), Vec::new())
            }
            Some(Err(_)) => (CacheState::Rebuilt, Vec::new(), Vec::new(), Vec::new()),
        };
        let mut skipped = SkipCounts::default();
        let walked = walk::walk(&root, opts.max_file_bytes, &mut skipped);
        let (files, excluded, stats) = refresh(&walked, cached, cached_excluded, &mut vocab, &mut skipped);
        let changed = stats.hashed > 0 || stats.removed > 0 || cache != CacheState::Loaded;
        let saved = changed && cache_file.is_some_and(|f| save(&f, &vocab, &files, &excluded));
        let index = Self::assemble(root, vocab, files);
        let report = IndexReport {
            cache,
            files: index.files.len(),
            chunks: index.owners.len(),
            files_hashed: stats.hashed,
            files_reindexed: stats.reindexed,
            files_removed: stats.removed,
            skipped,
            saved,
        };
        Ok((index, report))
    }

    /// Builds the BM25 structures over the files.
    fn assemble(root: PathBuf, vocab: Vec<String>, files: Vec<IndexedFile>) -> Self {
        let mut owners = Vec::new();
        for (fi, f) in files.iter().enumerate() {
            for ci in 0..f.chunks.len() {
                owners.push((fi as u32, ci as u32));
            }
        }
        let content = Bm25::build(
            files
                .iter()
                .flat_map(|f| f.chunks.iter().map(|c| c.terms.as_slice())),
        );
        let paths = Bm25::build(files.iter().map(|f| f.path_terms.as_slice()));
        Self {
            root,
            vocab,
            files,
            owners,
            content,
            paths,
        }
    }

    /// The canonical repository root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The indexed files, sorted by path.
    pub fn files(&self) -> &[IndexedFile] {
        &self.files
    }

    /// Tokenizes a query and looks its terms up in the vocabulary.
    pub fn prepare(&self, text: &str) -> Query {
        let mut counts: Vec<(String, u32)> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        tokenize::for_each_term(text, |t| match seen.get(t) {
            Some(&i) => counts[i].1 += 1,
            None => {
                seen.insert(t.to_owned(), counts.len());
                counts.push((t.to_owned(), 1));
            }
        });
        // One pass over the vocabulary instead of keeping a 100 000-entry map in memory:
        // a query has a few dozen terms and this costs a few milliseconds.
        let mut ids: FxHashMap<&str, u32> = FxHashMap::default();
        for (id, term) in self.vocab.iter().enumerate() {
            if seen.contains_key(term.as_str()) {
                ids.insert(term.as_str(), id as u32);
            }
        }
        let terms = counts
            .iter()
            .map(|(t, n)| (t.clone(), 1.0 + (*n as f32).ln(), ids.get(t.as_str()).copied()))
            .collect();
        Query { terms }
    }

    /// The `limit` best chunks for a query, best first (ties by file then chunk order).
    pub fn search(&self, query: &Query, limit: usize) -> Vec<ChunkHit> {
        let weighted: Vec<(u32, f32)> = query
            .terms
            .iter()
            .filter_map(|(_, w, id)| Some(((*id)?, *w)))
            .collect();
        let content = self.content.score(&weighted);
        let paths = self.paths.score(&weighted);
        let prior: Vec<f32> = self.files.iter().map(|f| file_prior(&f.path)).collect();
        let mut hits: Vec<ChunkHit> = content
            .iter()
            .enumerate()
            .filter_map(|(doc, &c)| {
                let (file, chunk) = self.owners[doc];
                let w = prior[file as usize];
                let (c, p) = (c * w, paths[file as usize] * PATH_WEIGHT * w);
                (c + p > 0.0).then_some(ChunkHit {
                    file: file as usize,
                    chunk: chunk as usize,
                    score: c + p,
                    content_score: c,
                    path_score: p,
                })
            })
            .collect();
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.file.cmp(&b.file))
                .then(a.chunk.cmp(&b.chunk))
        });
        hits.truncate(limit);
        hits
    }

    /// Ranks files by the content scores of their best [`FILE_CHUNKS`] chunks, summed,
    /// plus the path score; returns the `top` best, best first (ties by the best chunk's
    /// order). A file whose task-related code spreads over several functions outranks one
    /// that mentions the task's words in a single place.
    pub fn rank_files(&self, query: &Query, top: usize) -> Vec<RankedFile> {
        // Per file: (score, chunks counted, position of its best hit).
        let mut by_file: HashMap<usize, (f32, usize, usize)> = HashMap::new();
        let hits = self.search(query, usize::MAX);
        for (at, hit) in hits.iter().enumerate() {
            let entry = by_file.entry(hit.file).or_insert((hit.path_score, 0, at));
            if entry.1 < FILE_CHUNKS {
                entry.0 += hit.content_score;
                entry.1 += 1;
            }
        }
        let mut files: Vec<(f32, usize)> = by_file.into_values().map(|(score, _, at)| (score, at)).collect();
        files.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        files
            .into_iter()
            .take(top)
            .map(|(score, at)| {
                let hit = &hits[at];
                let file = &self.files[hit.file];
                let chunk = &file.chunks[hit.chunk].chunk;
                RankedFile {
                    path: file.path.clone(),
                    score,
                    best_lines: (chunk.start_line, chunk.end_line),
                    best_symbol: chunk.name.clone(),
                }
            })
            .collect()
    }

    /// BM25 of an arbitrary text (a memory note, a doc page) with this repository's term
    /// statistics, so candidates from every source land on the same scale as code chunks.
    /// Query terms the repository never uses get the highest IDF.
    pub fn score_text(&self, query: &Query, text: &str) -> f32 {
        let mut counts: HashMap<&str, u32> = query.terms.iter().map(|(t, _, _)| (t.as_str(), 0)).collect();
        let mut len = 0u32;
        tokenize::for_each_term(text, |t| {
            len += 1;
            if let Some(c) = counts.get_mut(t) {
                *c += 1;
            }
        });
        let max_idf = (1.0 + (self.content.len() as f32 + 0.5) / 0.5).ln();
        query
            .terms
            .iter()
            .map(|(t, w, id)| {
                let tf = counts.get(t.as_str()).copied().unwrap_or(0);
                if tf == 0 {
                    return 0.0;
                }
                let idf = id.map_or(max_idf, |id| self.content.idf(id)).max(0.01);
                w * idf * bm25::term_weight(tf as f32, len as f32, self.content.avg_len())
            })
            .sum()
    }

    /// Reads the current text of a chunk from the working tree.
    pub fn chunk_text(&self, file: usize, chunk: usize) -> Option<String> {
        let f = self.files.get(file)?;
        let c = &f.chunks.get(chunk)?.chunk;
        let text = fs::read_to_string(self.root.join(&f.path)).ok()?;
        Some(chunk::slice_lines(&text, c.start_line, c.end_line))
    }

    /// The position of a path in [`Self::files`].
    pub fn file_index(&self, path: &str) -> Option<usize> {
        self.files.binary_search_by(|f| f.path.as_str().cmp(path)).ok()
    }

    /// Number of distinct terms ever indexed (for diagnostics).
    pub fn vocabulary_size(&self) -> usize {
        self.vocab.len()
    }
}

/// 1 for source code, [`NON_CODE_PRIOR`] for everything else.
pub fn file_prior(path: &str) -> f32 {
    let ext = path
        .rsplit('/')
        .next()
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase());
    if ext.is_some_and(|e| CODE_EXTENSIONS.contains(&e.as_str())) {
        1.0
    } else {
        NON_CODE_PRIOR
    }
}

/// The cache file of a repository: `<cache_dir>/<dir name>-<sha1 of the path, 16 hex>/index.bin`.
///
/// Refuses a cache directory inside the repository (it would index its own cache and pollute
/// the checkout); the check is made before anything is created. `Ok(None)` when the
/// directory cannot be created: the index is then built in memory only, a query never fails
/// because of the cache.
pub fn cache_path(root: &Path, cache_dir: &Path) -> Result<Option<PathBuf>, ContextError> {
    let Some(cache_abs) = resolve(cache_dir) else {
        return Ok(None);
    };
    if cache_abs.starts_with(root) {
        return Err(ContextError::CacheInsideRepo(cache_abs));
    }
    if fs::create_dir_all(&cache_abs).is_err() || !cache_abs.is_dir() {
        return Ok(None);
    }
    let digest = hex(&Sha1::digest(root.to_string_lossy().as_bytes()));
    let name: String = root
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect()
        })
        .unwrap_or_else(|| "root".into());
    Ok(Some(
        cache_abs
            .join(format!("{name}-{}", &digest[..16]))
            .join("index.bin"),
    ))
}

/// The absolute, symlink-free form of a path that may not exist yet: its nearest existing
/// ancestor canonicalized, plus the remaining names. `None` for paths with `..` in the
/// missing part or without any existing ancestor.
fn resolve(dir: &Path) -> Option<PathBuf> {
    let abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(dir)
    };
    let mut existing = abs.as_path();
    let mut missing = Vec::new();
    loop {
        if let Ok(mut real) = fs::canonicalize(existing) {
            real.extend(missing.iter().rev());
            return Some(real);
        }
        missing.push(existing.file_name()?.to_owned());
        existing = existing.parent()?;
    }
}

/// Writes the cache atomically (temporary file + rename); a failure only costs a rebuild
/// next time, so it is reported as `false`, not as an error.
fn save(path: &Path, vocab: &[String], files: &[IndexedFile], excluded: &[ExcludedFile]) -> bool {
    let Some(dir) = path.parent() else {
        return false;
    };
    if fs::create_dir_all(dir).is_err() {
        return false;
    }
    let tmp = dir.join(format!("index.bin.tmp{}", std::process::id()));
    let ok = fs::write(&tmp, store::encode(vocab, files, excluded)).is_ok() && fs::rename(&tmp, path).is_ok();
    if !ok {
        let _ = fs::remove_file(&tmp);
    }
    ok
}

/// Lower-case hex of bytes.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The git blob id of content.
pub fn blob_id(content: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", content.len()).as_bytes());
    h.update(content);
    hex(&h.finalize())
}

#[derive(Default)]
struct RefreshStats {
    hashed: usize,
    reindexed: usize,
    removed: usize,
}

/// Reconciles the cached files with the walked tree, re-indexing only what changed.
fn refresh(
    walked: &[WalkedFile],
    cached: Vec<IndexedFile>,
    cached_excluded: Vec<ExcludedFile>,
    vocab: &mut Vec<String>,
    skipped: &mut SkipCounts,
) -> (Vec<IndexedFile>, Vec<ExcludedFile>, RefreshStats) {
    let mut stats = RefreshStats::default();
    let mut by_path: FxHashMap<String, IndexedFile> =
        cached.into_iter().map(|f| (f.path.clone(), f)).collect();
    let mut excluded_by_path: FxHashMap<String, ExcludedFile> =
        cached_excluded.into_iter().map(|f| (f.path.clone(), f)).collect();
    let mut excluded = Vec::new();
    let mut slots: Vec<Option<IndexedFile>> = Vec::with_capacity(walked.len());
    let mut todo: Vec<(usize, Option<String>)> = Vec::new();
    for w in walked {
        if let Some(x) = excluded_by_path.remove(&w.rel)
            && x.size == w.size
            && x.mtime_ns == w.mtime_ns
        {
            count_exclusion(skipped, x.reason);
            excluded.push(x);
            slots.push(None);
            continue;
        }
        match by_path.remove(&w.rel) {
            Some(f) if f.size == w.size && f.mtime_ns == w.mtime_ns => slots.push(Some(f)),
            prev => {
                todo.push((slots.len(), prev.as_ref().map(|p| p.blob.clone())));
                slots.push(prev);
            }
        }
    }
    stats.removed = by_path.len();
    stats.hashed = todo.len();
    let outcomes = index_parallel(walked, &todo);
    let mut ids: Option<FxHashMap<String, u32>> = None;
    for ((slot, _), outcome) in todo.iter().zip(outcomes) {
        let w = &walked[*slot];
        match outcome {
            Outcome::Same => {
                if let Some(f) = slots[*slot].as_mut() {
                    f.mtime_ns = w.mtime_ns;
                    f.size = w.size;
                }
            }
            Outcome::New { blob, terms, chunks } => {
                stats.reindexed += 1;
                let ids = ids.get_or_insert_with(|| {
                    vocab
                        .iter()
                        .enumerate()
                        .map(|(i, t)| (t.clone(), i as u32))
                        .collect()
                });
                slots[*slot] = Some(intern_file(w, blob, terms, chunks, vocab, ids));
            }
            other => {
                if slots[*slot].take().is_some() {
                    stats.removed += 1;
                }
                match other {
                    Outcome::Excluded(reason) => {
                        count_exclusion(skipped, reason);
                        excluded.push(ExcludedFile {
                            path: w.rel.clone(),
                            size: w.size,
                            mtime_ns: w.mtime_ns,
                            reason,
                        });
                    }
                    _ => skipped.unreadable += 1,
                }
            }
        }
    }
    (slots.into_iter().flatten().collect(), excluded, stats)
}

fn count_exclusion(skipped: &mut SkipCounts, reason: Exclusion) {
    match reason {
        Exclusion::Binary => skipped.binary += 1,
        Exclusion::Secret => skipped.secret += 1,
    }
}

/// Runs [`index_one`] over `todo` on all cores (the work is CPU-bound parsing).
fn index_parallel(walked: &[WalkedFile], todo: &[(usize, Option<String>)]) -> Vec<Outcome> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
        .min(todo.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Outcome)>> = Mutex::new(Vec::with_capacity(todo.len()));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut local = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((slot, prev)) = todo.get(i) else {
                        break;
                    };
                    local.push((i, index_one(&walked[*slot], prev.as_deref())));
                }
                if let Ok(mut r) = results.lock() {
                    r.extend(local);
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_default();
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, o)| o).collect()
}

/// Reads, classifies, hashes and (when the blob changed) chunks and tokenizes one file.
fn index_one(file: &WalkedFile, prev_blob: Option<&str>) -> Outcome {
    let Ok(bytes) = fs::read(&file.abs) else {
        return Outcome::Unreadable;
    };
    let blob = blob_id(&bytes);
    if prev_blob == Some(blob.as_str()) {
        return Outcome::Same;
    }
    let text = match walk::classify_content(bytes) {
        Content::Text(t) => t,
        Content::Binary => return Outcome::Excluded(Exclusion::Binary),
        Content::Secret => return Outcome::Excluded(Exclusion::Secret),
    };
    let offsets = line_offsets(&text);
    let mut local: FxHashMap<String, u32> = FxHashMap::default();
    let mut terms: Vec<String> = Vec::new();
    let chunks = chunk::chunk_file(&file.rel, &text)
        .into_iter()
        .map(|c| {
            let slice = chunk_slice(&text, &offsets, &c);
            let counts = count_terms(slice, c.name.as_deref(), &mut local, &mut terms);
            (c, counts)
        })
        .collect();
    Outcome::New { blob, terms, chunks }
}

/// Byte offset of the start of each line, plus the end of the text.
fn line_offsets(text: &str) -> Vec<usize> {
    let mut v = vec![0];
    v.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    if v.last() != Some(&text.len()) {
        v.push(text.len());
    }
    v
}

/// The bytes of a chunk's lines, without copying.
fn chunk_slice<'a>(text: &'a str, offsets: &[usize], c: &Chunk) -> &'a str {
    let last = offsets.len() - 1;
    let start = offsets[(c.start_line as usize).saturating_sub(1).min(last)];
    let end = offsets[(c.end_line as usize).min(last)];
    text.get(start..end.max(start)).unwrap_or("")
}

/// Term frequencies of a chunk in the file-local vocabulary; the symbol name's terms count
/// extra.
fn count_terms(
    text: &str,
    name: Option<&str>,
    local: &mut FxHashMap<String, u32>,
    terms: &mut Vec<String>,
) -> Vec<(u32, u32)> {
    let mut counts: FxHashMap<u32, u32> = FxHashMap::default();
    let mut add = |t: &str, n: u32| {
        let id = match local.get(t) {
            Some(&id) => id,
            None => {
                let id = terms.len() as u32;
                terms.push(t.to_owned());
                local.insert(t.to_owned(), id);
                id
            }
        };
        *counts.entry(id).or_insert(0) += n;
    };
    tokenize::for_each_term(text, |t| add(t, 1));
    if let Some(name) = name {
        tokenize::for_each_term(name, |t| add(t, NAME_REPEAT));
    }
    counts.into_iter().collect()
}

/// The global id of a term, adding it to the vocabulary when new.
fn global_id(term: &str, vocab: &mut Vec<String>, ids: &mut FxHashMap<String, u32>) -> u32 {
    if let Some(&id) = ids.get(term) {
        return id;
    }
    let id = u32::try_from(vocab.len()).unwrap_or(u32::MAX);
    vocab.push(term.to_owned());
    ids.insert(term.to_owned(), id);
    id
}

/// Maps a file's local term ids to global ones.
fn intern_file(
    w: &WalkedFile,
    blob: String,
    terms: Vec<String>,
    chunks: Vec<(Chunk, Vec<(u32, u32)>)>,
    vocab: &mut Vec<String>,
    ids: &mut FxHashMap<String, u32>,
) -> IndexedFile {
    let map: Vec<u32> = terms.iter().map(|t| global_id(t, vocab, ids)).collect();
    let mut path_counts: FxHashMap<u32, u32> = FxHashMap::default();
    for t in tokenize::path_terms(&w.rel) {
        *path_counts.entry(global_id(&t, vocab, ids)).or_insert(0) += 1;
    }
    let mut path_terms: Vec<(u32, u32)> = path_counts.into_iter().collect();
    path_terms.sort_unstable();
    let chunks = chunks
        .into_iter()
        .map(|(chunk, local)| {
            let mut terms: Vec<(u32, u32)> = local.into_iter().map(|(t, n)| (map[t as usize], n)).collect();
            terms.sort_unstable();
            IndexedChunk { chunk, terms }
        })
        .collect();
    IndexedFile {
        path: w.rel.clone(),
        blob,
        size: w.size,
        mtime_ns: w.mtime_ns,
        path_terms,
        chunks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A small repository and a cache directory outside it.
    fn fixture() -> (tempfile::TempDir, tempfile::TempDir) {
        let repo = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let r = repo.path();
        fs::create_dir_all(r.join("src/net")).unwrap();
        fs::write(r.join("src/config.rs"), "/// Loads the settings file.\npub fn load_config(path: &str) -> Config {\n    parse_toml(path)\n}\n").unwrap();
        fs::write(
            r.join("src/net/retry.rs"),
            "pub fn retry_with_backoff(attempts: u32) {\n    sleep(backoff_delay(attempts));\n}\n",
        )
        .unwrap();
        fs::write(
            r.join("src/main.rs"),
            "fn main() {\n    println!(\"hello\");\n}\n",
        )
        .unwrap();
        fs::write(r.join("README.md"), "# Demo\nA demo service with retries.\n").unwrap();
        (repo, cache)
    }

    fn open(repo: &Path, cache: &Path) -> (RepoIndex, IndexReport) {
        RepoIndex::open(repo, cache, &IndexOptions::default()).unwrap()
    }

    fn top_paths(index: &RepoIndex, q: &str) -> Vec<String> {
        index
            .rank_files(&index.prepare(q), 10)
            .into_iter()
            .map(|f| f.path)
            .collect()
    }

    #[test]
    fn a_file_scores_by_its_best_chunks_together() {
        let repo = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let r = repo.path();
        fs::create_dir_all(r.join("src")).unwrap();
        // One strong mention against the same words spread over three functions.
        fs::write(
            r.join("src/once.rs"),
            "pub fn jitter_backoff_jitter_backoff() -> u32 {\n    1\n}\n",
        )
        .unwrap();
        let mut spread = String::new();
        for name in ["jitter", "backoff", "retry_jitter"] {
            spread.push_str(&format!("pub fn {name}_delay() -> u32 {{\n    2\n}}\n\n"));
        }
        fs::write(r.join("src/spread.rs"), spread).unwrap();
        let (index, _) = open(r, cache.path());
        let q = index.prepare("jitter backoff");
        let hits = index.search(&q, 1);
        assert_eq!(
            index.files()[hits[0].file].path,
            "src/once.rs",
            "the best single chunk"
        );
        let ranked = index.rank_files(&q, 10);
        assert_eq!(ranked[0].path, "src/spread.rs", "{ranked:?}");
        let sum: f32 = index
            .search(&q, usize::MAX)
            .iter()
            .filter(|h| index.files()[h.file].path == "src/spread.rs")
            .take(FILE_CHUNKS)
            .map(|h| h.content_score)
            .sum();
        assert!(
            (ranked[0].score - sum).abs() < 1e-4,
            "no path match: content only"
        );
    }

    #[test]
    fn ranks_by_content_and_path() {
        let (repo, cache) = fixture();
        let (index, report) = open(repo.path(), cache.path());
        assert_eq!(report.cache, CacheState::Missing);
        assert_eq!(report.files, 4);
        assert_eq!(
            top_paths(&index, "loadConfig fails on a missing settings file")[0],
            "src/config.rs"
        );
        assert_eq!(
            top_paths(&index, "retry backoff is too aggressive")[0],
            "src/net/retry.rs"
        );
        let ranked = index.rank_files(&index.prepare("load config"), 1);
        assert_eq!(ranked[0].best_symbol.as_deref(), Some("load_config"));
        assert_eq!(ranked[0].best_lines, (1, 4));
    }

    #[test]
    fn second_open_does_no_work_and_one_change_reindexes_one_file() {
        let (repo, cache) = fixture();
        let (_, first) = open(repo.path(), cache.path());
        assert_eq!((first.files_reindexed, first.saved), (4, true));

        let (_, second) = open(repo.path(), cache.path());
        assert_eq!(second.cache, CacheState::Loaded);
        assert_eq!(
            (second.files_hashed, second.files_reindexed, second.saved),
            (0, 0, false)
        );

        fs::write(
            repo.path().join("src/main.rs"),
            "fn main() {\n    serve_forever();\n}\n",
        )
        .unwrap();
        let (index, third) = open(repo.path(), cache.path());
        assert_eq!(
            (third.files_hashed, third.files_reindexed, third.files_removed),
            (1, 1, 0)
        );
        assert_eq!(top_paths(&index, "serve forever")[0], "src/main.rs");

        fs::remove_file(repo.path().join("README.md")).unwrap();
        fs::write(repo.path().join("src/new.rs"), "fn fresh() {}\n").unwrap();
        let (index, fourth) = open(repo.path(), cache.path());
        assert_eq!(
            (fourth.files_reindexed, fourth.files_removed, fourth.files),
            (1, 1, 4)
        );
        assert!(index.file_index("README.md").is_none());
    }

    #[test]
    fn touching_without_changing_content_hashes_but_does_not_reindex() {
        let (repo, cache) = fixture();
        open(repo.path(), cache.path());
        let path = repo.path().join("src/config.rs");
        let content = fs::read(&path).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&path, content).unwrap();
        let (_, report) = open(repo.path(), cache.path());
        assert_eq!((report.files_hashed, report.files_reindexed), (1, 0));
    }

    #[test]
    fn corrupt_or_foreign_cache_is_rebuilt_not_an_error() {
        let (repo, cache) = fixture();
        open(repo.path(), cache.path());
        let root = fs::canonicalize(repo.path()).unwrap();
        let file = cache_path(&root, cache.path()).unwrap().unwrap();
        fs::write(&file, b"garbage").unwrap();
        let (index, report) = open(repo.path(), cache.path());
        assert_eq!(
            (report.cache, report.files_reindexed, report.saved),
            (CacheState::Rebuilt, 4, true)
        );
        assert_eq!(top_paths(&index, "retry")[0], "src/net/retry.rs");
        let (_, again) = open(repo.path(), cache.path());
        assert_eq!(again.cache, CacheState::Loaded);
    }

    #[test]
    fn cache_never_lives_inside_the_repository() {
        let (repo, _cache) = fixture();
        let inside = repo.path().join(".cache/indexes");
        let err = RepoIndex::open(repo.path(), &inside, &IndexOptions::default()).unwrap_err();
        assert!(matches!(err, ContextError::CacheInsideRepo(_)), "{err}");
        assert!(
            !repo.path().join(".cache").exists(),
            "refused before creating anything"
        );
    }

    #[test]
    fn an_unusable_cache_directory_does_not_fail_the_query() {
        let (repo, cache) = fixture();
        let not_a_dir = cache.path().join("file");
        fs::write(&not_a_dir, "x").unwrap();
        let (index, report) = open(repo.path(), &not_a_dir.join("indexes"));
        assert_eq!((report.cache, report.saved), (CacheState::Unavailable, false));
        assert_eq!(top_paths(&index, "retry")[0], "src/net/retry.rs");
    }

    #[test]
    fn secret_and_binary_content_and_ignored_files_are_never_indexed() {
        let (repo, cache) = fixture();
        let r = repo.path();
        fs::write(
            r.join("src/tokens.rs"),
            format!("const T: &str = \"ghp_{}\";\n", "Ab1".repeat(12)),
        )
        .unwrap();
        fs::write(r.join(".env"), "PASSWORD=retry\n").unwrap();
        fs::write(r.join("logo.png"), [0x89, b'P', b'N', b'G', 0, 0, 1]).unwrap();
        fs::write(r.join(".gitignore"), "generated/\n").unwrap();
        fs::create_dir_all(r.join("generated")).unwrap();
        fs::write(r.join("generated/retry_gen.rs"), "fn retry_generated() {}\n").unwrap();
        let (index, report) = open(r, cache.path());
        let paths: Vec<&str> = index.files().iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                ".gitignore",
                "README.md",
                "src/config.rs",
                "src/main.rs",
                "src/net/retry.rs"
            ]
        );
        assert_eq!((report.skipped.secret, report.skipped.binary), (2, 1));
        let (_, again) = open(r, cache.path());
        assert_eq!(
            (
                again.files_hashed,
                again.saved,
                again.skipped.secret,
                again.skipped.binary
            ),
            (0, false, 2, 1),
            "excluded files are remembered, not re-read"
        );
        assert!(
            !top_paths(&index, "ghp retry generated")
                .iter()
                .any(|p| p.contains("tokens") || p.contains("generated/"))
        );
    }

    #[test]
    fn prose_repeating_the_query_does_not_outrank_the_code() {
        let (repo, cache) = fixture();
        fs::write(
            repo.path().join("CHANGELOG.md"),
            "- retry backoff now waits longer between retries\n",
        )
        .unwrap();
        let (index, _) = open(repo.path(), cache.path());
        assert_eq!(
            top_paths(&index, "retry backoff waits longer")[..2],
            ["src/net/retry.rs", "CHANGELOG.md"]
        );
        assert_eq!(
            (
                file_prior("src/a.rs"),
                file_prior("web/App.TSX"),
                file_prior("README.md")
            ),
            (1.0, 1.0, NON_CODE_PRIOR)
        );
    }

    #[test]
    fn blob_ids_match_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(blob_id(b"hello\n"), "ce013625030ba8dba906f756967f9e9ca394464a");
        assert_eq!(blob_id(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
    }

    #[test]
    fn a_file_that_gains_a_secret_leaves_the_index() {
        let (repo, cache) = fixture();
        open(repo.path(), cache.path());
        fs::write(
            repo.path().join("src/main.rs"),
            format!("// AKIA{}\nfn main() {{}}\n", "ABCDEFGHIJKLMNOP"),
        )
        .unwrap();
        let (index, report) = open(repo.path(), cache.path());
        assert_eq!((report.files_removed, report.skipped.secret), (1, 1));
        assert!(index.file_index("src/main.rs").is_none());
    }
}
