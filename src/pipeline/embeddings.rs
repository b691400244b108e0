//! Dense retrieval for a step's context, when `EMBEDDING_MODEL` is set: the
//! context engine names its BM25 candidate pool, this module gets a vector
//! for each chunk and for the query (from the store's cache, else in batched
//! requests through the job's [`MeteredModel`]: budget gate, retries, cost),
//! and ranks the pool by cosine similarity for the engine to fuse with BM25.
//!
//! Vectors are keyed by model and SHA-256 of the embedded text, so a chunk is
//! embedded once per model whatever job, step or repository meets it again.
//! Without an embedding model nothing here runs and nothing is sent; when
//! embedding fails the step is built on BM25 alone (`docs/adr/0007-embeddings.md`).

use std::collections::HashSet;

use orchestrator_context::{
    ContextRequest, ContextSettings, DenseHit, RepoIndex, TokenCounter, rank_by_similarity, retrieval_pool,
};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::AgentError;
use super::metered::MeteredModel;
use crate::jobs::now_millis;
use crate::llm::EmbeddingRequest;
use crate::store::{Store, StoreError};

/// Most inputs in one embeddings request (OpenAI accepts 2,048).
pub const MAX_INPUTS_PER_REQUEST: usize = 256;
/// Most bytes of input in one request: about 200k tokens at the budget
/// gate's 3 bytes per token, under OpenAI's 300k tokens per request.
pub const MAX_BYTES_PER_REQUEST: usize = 600_000;
/// Inputs are clipped to this many tokens (OpenAI's models take 8,192).
pub const MAX_TOKENS_PER_INPUT: usize = 8_000;

/// Why a dense ranking could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DenseError {
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("embedding cache: {0}")]
    Store(#[from] StoreError),
    #[error("the embeddings endpoint answered {0}")]
    Inconsistent(String),
}

/// Embeds texts with one model, through the cache.
pub struct Embedder<'a> {
    pub store: &'a Store,
    pub model: &'a MeteredModel<'a>,
    /// The embedding model's name (`EMBEDDING_MODEL`).
    pub embedding_model: &'a str,
    pub cancel: &'a CancellationToken,
}

impl Embedder<'_> {
    /// The pool of `request` ranked by similarity to its query, best first.
    pub async fn rank(
        &self,
        index: &RepoIndex,
        request: &ContextRequest,
        settings: &ContextSettings,
    ) -> Result<Vec<DenseHit>, DenseError> {
        let pool = retrieval_pool(index, request, settings);
        if pool.chunks.is_empty() {
            return Ok(Vec::new());
        }
        let mut texts = Vec::with_capacity(pool.chunks.len() + 1);
        texts.push(pool.query.clone());
        texts.extend(pool.chunks.iter().map(|c| c.text.clone()));
        let mut vectors = self.vectors(texts).await?;
        let query = vectors.remove(0);
        let dims = query.len();
        if vectors.iter().any(|v| v.len() != dims) {
            return Err(DenseError::Inconsistent(format!(
                "vectors of different lengths for model {} (stored ones from another configuration?)",
                self.embedding_model
            )));
        }
        Ok(rank_by_similarity(&pool.chunks, &vectors, &query))
    }

    /// One vector per text, in order: stored ones from the cache, the others
    /// requested in bounded batches and stored as each batch arrives.
    pub async fn vectors(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, DenseError> {
        let counter = TokenCounter::for_model(self.embedding_model);
        let inputs: Vec<String> = texts.into_iter().map(|t| clip(&counter, t)).collect();
        let hashes: Vec<String> = inputs.iter().map(|t| content_hash(t)).collect();
        let mut unique: Vec<String> = hashes.clone();
        unique.sort_unstable();
        unique.dedup();
        let mut known = self.store.load_embeddings(self.embedding_model, &unique).await?;
        let mut asked = HashSet::new();
        let missing: Vec<(&str, &str)> = hashes
            .iter()
            .zip(&inputs)
            .filter(|(hash, _)| !known.contains_key(*hash) && asked.insert(hash.as_str()))
            .map(|(hash, text)| (hash.as_str(), text.as_str()))
            .collect();
        for batch in batches(&missing) {
            let fresh = self.request(batch).await?;
            self.store
                .save_embeddings(self.embedding_model, &fresh, now_millis())
                .await?;
            known.extend(fresh);
        }
        hashes
            .iter()
            .map(|h| {
                known
                    .get(h)
                    .cloned()
                    .ok_or_else(|| DenseError::Inconsistent("no vector for an input".into()))
            })
            .collect()
    }

    async fn request(&self, batch: &[(&str, &str)]) -> Result<Vec<(String, Vec<f32>)>, DenseError> {
        let request = EmbeddingRequest {
            model: self.embedding_model.to_string(),
            inputs: batch.iter().map(|(_, text)| (*text).to_string()).collect(),
        };
        let response = self.model.embed(&request, self.cancel).await?;
        if response.vectors.len() != batch.len() {
            return Err(DenseError::Inconsistent(format!(
                "{} vectors for {} inputs",
                response.vectors.len(),
                batch.len()
            )));
        }
        Ok(batch
            .iter()
            .map(|(hash, _)| (*hash).to_string())
            .zip(response.vectors)
            .collect())
    }
}

/// The dense ranking for one context build, or `Ok(None)` without an
/// embedding model. `Err` carries the diagnostics note of a failure, already
/// logged: the caller builds the context on BM25 alone.
pub async fn dense_ranking(
    embedder: Option<&Embedder<'_>>,
    index: &RepoIndex,
    request: &ContextRequest,
    settings: &ContextSettings,
) -> Result<Option<Vec<DenseHit>>, String> {
    let Some(embedder) = embedder else {
        return Ok(None);
    };
    match embedder.rank(index, request, settings).await {
        Ok(hits) => Ok(Some(hits)),
        Err(err) => {
            if !matches!(err, DenseError::Agent(AgentError::Cancelled)) {
                tracing::warn!(
                    model = embedder.embedding_model,
                    error = %err,
                    "embeddings failed; ranking the context with BM25 alone"
                );
            }
            Err(format!(
                "embeddings with {} failed ({err}); repository chunks were ranked by BM25 alone",
                embedder.embedding_model
            ))
        }
    }
}

/// Lowercase hex SHA-256 of the text as sent.
pub fn content_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Texts of up to `MAX_TOKENS_PER_INPUT` bytes cannot have more tokens than
/// that (a token is at least one byte); only longer ones are counted.
fn clip(counter: &TokenCounter, text: String) -> String {
    if text.len() <= MAX_TOKENS_PER_INPUT {
        return text;
    }
    counter.clip(&text, MAX_TOKENS_PER_INPUT)
}

/// Consecutive runs of at most `MAX_INPUTS_PER_REQUEST` inputs and
/// `MAX_BYTES_PER_REQUEST` bytes (a single larger input goes alone).
fn batches<'s, 't>(items: &'s [(&'t str, &'t str)]) -> Vec<&'s [(&'t str, &'t str)]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, (_, text)) in items.iter().enumerate() {
        let full =
            i - start >= MAX_INPUTS_PER_REQUEST || (i > start && bytes + text.len() > MAX_BYTES_PER_REQUEST);
        if full {
            out.push(&items[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += text.len();
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_bounded_by_inputs_and_bytes() {
        let small: Vec<(&str, &str)> = (0..600).map(|_| ("h", "x")).collect();
        let sizes: Vec<usize> = batches(&small).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [256, 256, 88]);
        let big = "y".repeat(250_000);
        let large: Vec<(&str, &str)> = vec![("a", &big), ("b", &big), ("c", &big), ("d", "z")];
        let sizes: Vec<usize> = batches(&large).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [2, 2], "600 kB per request at most");
        let huge = "w".repeat(700_000);
        let alone: Vec<(&str, &str)> = vec![("a", &huge), ("b", "z")];
        assert_eq!(
            batches(&alone).iter().map(|b| b.len()).collect::<Vec<_>>(),
            [1, 1]
        );
        assert!(batches(&[]).is_empty());
    }

    #[test]
    fn long_inputs_are_clipped_to_the_model_limit() {
        let counter = TokenCounter::for_model("text-embedding-3-small");
        let short = "fn main() {}".to_string();
        assert_eq!(clip(&counter, short.clone()), short);
        let long = "alpha beta gamma ".repeat(5_000);
        let clipped = clip(&counter, long.clone());
        assert!(long.starts_with(&clipped));
        assert!(counter.count(&clipped) <= MAX_TOKENS_PER_INPUT);
        assert!(counter.count(&clipped) > MAX_TOKENS_PER_INPUT - 10);
    }

    #[test]
    fn content_hashes_are_sha256_hex() {
        assert_eq!(
            content_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
