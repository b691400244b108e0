//! Dense retrieval support, without the network: the engine names the chunks worth
//! embedding (its BM25 candidate pool), the caller embeds them and the query wherever it
//! likes, and hands back a ranking by similarity that the engine fuses with BM25 by
//! reciprocal-rank fusion.
//!
//! The pool is what BM25 would offer anyway (the top `max_files` chunks) plus the chunks
//! of the step's named files, so the cost of embeddings is bounded per step and a chunk
//! BM25 misses entirely is not found by this path (see `docs/adr/0007-embeddings.md`).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::bm25::fuse_rrf;
use crate::chunk;
use crate::engine::{ContextRequest, ContextSettings, query_text};
use crate::index::RepoIndex;
use crate::sources::{self, Candidate};

/// The customary reciprocal-rank-fusion constant.
pub const RRF_K: f64 = 60.0;

/// One chunk of the candidate pool, with the text to embed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolChunk {
    /// `path#Lstart-end`, the id the chunk's candidate carries.
    pub id: String,
    /// The path, a newline, and the chunk's lines. No line numbers: a chunk that only
    /// moves keeps its text, so its cached vector still applies.
    pub text: String,
}

/// What to embed for one context build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrievalPool {
    /// The query the pool was ranked for (the task and the step, as BM25 sees them).
    pub query: String,
    pub chunks: Vec<PoolChunk>,
}

/// One chunk ranked by embedding similarity to the query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenseHit {
    /// A [`PoolChunk::id`].
    pub id: String,
    /// Cosine similarity of the chunk's vector and the query's.
    pub similarity: f32,
}

/// The chunks a dense ranking should cover for `req`: the BM25 pool
/// [`build_context`](crate::build_context) will rank (the top `max_files` chunks outside
/// the named and instruction files), then the chunks of the step's named files (used to
/// pick a named file's relevant parts when it is too big to show whole).
pub fn retrieval_pool(index: &RepoIndex, req: &ContextRequest, settings: &ContextSettings) -> RetrievalPool {
    let text = query_text(req);
    let query = index.prepare(&text);
    let named: Vec<String> = req
        .step
        .files
        .iter()
        .map(|f| f.trim_start_matches("./").to_owned())
        .collect();
    let mut exclude = named.clone();
    exclude.extend(sources::INSTRUCTION_FILES.iter().map(|s| (*s).to_owned()));
    let mut texts: HashMap<usize, Option<String>> = HashMap::new();
    let mut seen = HashSet::new();
    let mut chunks = Vec::new();
    let mut push = |index: &RepoIndex, file: usize, chunk: usize| {
        let f = &index.files()[file];
        let c = &f.chunks[chunk].chunk;
        let id = format!("{}#L{}-{}", f.path, c.start_line, c.end_line);
        if !seen.insert(id.clone()) {
            return;
        }
        let whole = texts
            .entry(file)
            .or_insert_with(|| std::fs::read_to_string(index.root().join(&f.path)).ok());
        let Some(whole) = whole.as_deref() else {
            return;
        };
        let body = chunk::slice_lines(whole, c.start_line, c.end_line);
        chunks.push(PoolChunk {
            id,
            text: format!("{}\n{body}", f.path),
        });
    };
    for hit in sources::pool_hits(index, &query, &exclude, settings.max_files) {
        push(index, hit.file, hit.chunk);
    }
    for rel in &named {
        if sources::INSTRUCTION_FILES.contains(&rel.as_str()) {
            continue;
        }
        if let Some(file) = index.file_index(rel) {
            for chunk in 0..index.files()[file].chunks.len().min(settings.max_files) {
                push(index, file, chunk);
            }
        }
    }
    RetrievalPool { query: text, chunks }
}

/// BM25 order, dense order → fused order of ids with their RRF scores. Ids of the dense
/// ranking that BM25 did not list are ignored: only what the engine would offer is
/// reordered.
pub(crate) fn fuse_ids(bm25: &[String], dense: &[DenseHit]) -> Vec<(String, f64)> {
    let listed: HashSet<&str> = bm25.iter().map(String::as_str).collect();
    let dense_ids: Vec<String> = dense
        .iter()
        .filter(|h| listed.contains(h.id.as_str()))
        .map(|h| h.id.clone())
        .collect();
    fuse_rrf(&[bm25.to_vec(), dense_ids], RRF_K)
}

/// Reorders repository candidates (given best BM25 first) by fusing with `dense`.
///
/// The i-th candidate of the fused order takes the i-th best BM25 score of the pool: the
/// order is the fusion's, the scale stays BM25's, so memory notes, artifacts and docs
/// (BM25-scored) still compete on one scale and `min_score` keeps its meaning. Each
/// candidate's own BM25 parts stay in its score parts, next to its similarity and RRF
/// score. Returns how many candidates had a vector.
pub(crate) fn fuse_candidates(candidates: &mut Vec<Candidate>, dense: &[DenseHit]) -> usize {
    let similarity: HashMap<&str, f32> = dense.iter().map(|h| (h.id.as_str(), h.similarity)).collect();
    let bm25: Vec<String> = candidates.iter().map(|c| c.id.clone()).collect();
    let mut raws: Vec<f32> = candidates.iter().map(|c| c.raw).collect();
    raws.sort_by(|a, b| b.total_cmp(a));
    let mut by_id: HashMap<String, Candidate> = candidates.drain(..).map(|c| (c.id.clone(), c)).collect();
    let mut with_vector = 0;
    for (rank, ((id, rrf), raw)) in fuse_ids(&bm25, dense).into_iter().zip(raws).enumerate() {
        let Some(mut c) = by_id.remove(&id) else {
            continue;
        };
        c.parts.dense = similarity.get(id.as_str()).copied();
        with_vector += usize::from(c.parts.dense.is_some());
        c.parts.fused = Some(rrf as f32);
        c.raw = raw;
        c.fused_rank = Some(rank);
        candidates.push(c);
    }
    with_vector
}

/// Orders chunk indices of one file: `bm25` (best first, by id) fused with `dense`.
pub(crate) fn fuse_chunk_order(bm25: Vec<(String, usize)>, dense: &[DenseHit]) -> Vec<usize> {
    let ids: Vec<String> = bm25.iter().map(|(id, _)| id.clone()).collect();
    let position: HashMap<String, usize> = bm25.into_iter().collect();
    fuse_ids(&ids, dense)
        .into_iter()
        .filter_map(|(id, _)| position.get(&id).copied())
        .collect()
}

/// Cosine similarity; 0 for a zero vector or vectors of different lengths.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    (dot / (na.sqrt() * nb.sqrt())) as f32
}

/// Ranks pool chunks by similarity of `vectors[i]` (of `chunks[i]`) to `query`, best
/// first; ties keep the pool's (BM25) order.
pub fn rank_by_similarity(chunks: &[PoolChunk], vectors: &[Vec<f32>], query: &[f32]) -> Vec<DenseHit> {
    let mut hits: Vec<DenseHit> = chunks
        .iter()
        .zip(vectors)
        .map(|(c, v)| DenseHit {
            id: c.id.clone(),
            similarity: cosine(query, v),
        })
        .collect();
    hits.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: &str) -> PoolChunk {
        PoolChunk {
            id: id.into(),
            text: id.into(),
        }
    }

    #[test]
    fn cosine_is_scale_free_and_safe_on_degenerate_vectors() {
        assert!((cosine(&[1.0, 0.0], &[3.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 2.0]).abs() < 1e-6);
        assert!((cosine(&[1.0, 1.0], &[-1.0, -1.0]) + 1.0).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), 0.0, "different lengths");
    }

    #[test]
    fn similarity_ranks_best_first_and_ties_keep_pool_order() {
        let chunks = [chunk("a"), chunk("b"), chunk("c")];
        let vectors = [vec![0.0, 1.0], vec![1.0, 0.0], vec![2.0, 0.0]];
        let hits = rank_by_similarity(&chunks, &vectors, &[1.0, 0.0]);
        let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, ["b", "c", "a"]);
    }

    #[test]
    fn fusion_ignores_dense_ids_bm25_did_not_offer() {
        let bm25 = vec!["a".to_string(), "b".to_string()];
        let dense = vec![
            DenseHit {
                id: "z".into(),
                similarity: 1.0,
            },
            DenseHit {
                id: "b".into(),
                similarity: 0.5,
            },
        ];
        let fused = fuse_ids(&bm25, &dense);
        let ids: Vec<&str> = fused.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["b", "a"], "b is first in dense among offered ids");
        assert!((fused[0].1 - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-12);
        assert_eq!(
            fuse_chunk_order(vec![("a".into(), 7), ("b".into(), 3)], &dense),
            [3, 7]
        );
    }
}
