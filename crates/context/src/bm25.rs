//! A small hand-written BM25 (k1 = 1.2, b = 0.75) over pre-tokenized documents, and
//! reciprocal-rank fusion to combine it with other signals.
//!
//! Documents are lists of `(term id, frequency)`; the caller owns the vocabulary. Postings
//! are dense vectors indexed by term id, so scoring does no hashing.

use std::collections::HashMap;
use std::hash::Hash;

const K1: f32 = 1.2;
const B: f32 = 0.75;

/// An inverted index over documents `0..n`, in compressed-sparse-row layout: the postings
/// of term `t` are `postings[offsets[t]..offsets[t + 1]]` (one allocation, built in two
/// passes, cheap to build and to drop for 100 000+ chunks).
#[derive(Debug, Default, Clone)]
pub struct Bm25 {
    offsets: Vec<u32>,
    /// `(doc, term frequency)` pairs, docs ascending within a term.
    postings: Vec<(u32, u32)>,
    doc_len: Vec<u32>,
    avg_len: f32,
}

impl Bm25 {
    /// Builds the index; `docs[i]` holds the `(term id, tf)` pairs of document `i`.
    pub fn build<'a, I>(docs: I) -> Self
    where
        I: IntoIterator<Item = &'a [(u32, u32)]>,
        I::IntoIter: Clone,
    {
        let docs = docs.into_iter();
        let mut counts: Vec<u32> = Vec::new();
        let mut doc_len = Vec::new();
        for terms in docs.clone() {
            let mut len = 0u32;
            for &(term, tf) in terms {
                let t = term as usize;
                if counts.len() <= t {
                    counts.resize(t + 1, 0);
                }
                counts[t] += 1;
                len = len.saturating_add(tf);
            }
            doc_len.push(len);
        }
        let mut offsets = Vec::with_capacity(counts.len() + 1);
        let mut acc = 0u32;
        offsets.push(0);
        for c in &counts {
            acc += c;
            offsets.push(acc);
        }
        let mut fill: Vec<u32> = offsets[..counts.len()].to_vec();
        let mut postings = vec![(0u32, 0u32); acc as usize];
        for (doc, terms) in docs.enumerate() {
            let doc = u32::try_from(doc).unwrap_or(u32::MAX);
            for &(term, tf) in terms {
                let slot = &mut fill[term as usize];
                postings[*slot as usize] = (doc, tf);
                *slot += 1;
            }
        }
        let total: f64 = doc_len.iter().map(|&l| f64::from(l)).sum();
        let avg_len = if doc_len.is_empty() {
            1.0
        } else {
            (total / doc_len.len() as f64).max(1.0) as f32
        };
        Self {
            offsets,
            postings,
            doc_len,
            avg_len,
        }
    }

    /// The postings of a term (empty for an unknown term).
    fn list(&self, term: u32) -> &[(u32, u32)] {
        let t = term as usize;
        match (self.offsets.get(t), self.offsets.get(t + 1)) {
            (Some(&a), Some(&b)) => &self.postings[a as usize..b as usize],
            _ => &[],
        }
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.doc_len.len()
    }

    /// Inverse document frequency of a term (0 for a term no document has).
    pub fn idf(&self, term: u32) -> f32 {
        let df = self.list(term).len() as f32;
        if df == 0.0 {
            return 0.0;
        }
        let n = self.doc_len.len() as f32;
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }

    /// Average document length in terms.
    pub fn avg_len(&self) -> f32 {
        self.avg_len
    }

    /// Scores every document for weighted query terms; the result is indexed by document.
    pub fn score(&self, query: &[(u32, f32)]) -> Vec<f32> {
        let mut scores = vec![0.0f32; self.doc_len.len()];
        for &(term, weight) in query {
            let idf = self.idf(term);
            for &(doc, tf) in self.list(term) {
                let len = self.doc_len[doc as usize] as f32;
                scores[doc as usize] += weight * idf * term_weight(tf as f32, len, self.avg_len);
            }
        }
        scores
    }
}

/// The BM25 saturation of one term frequency in a document of `len` terms.
pub fn term_weight(tf: f32, len: f32, avg_len: f32) -> f32 {
    tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / avg_len))
}

/// Reciprocal-rank fusion: each ranking contributes `1 / (k + rank)` (rank from 1) to every
/// item it lists. Returns items best first; ties keep the order of first appearance, so the
/// result is deterministic. `k = 60` is the customary constant.
///
/// This is how a second signal (embedding similarity) joins BM25 without calibrating their
/// incomparable score scales.
pub fn fuse_rrf<K: Clone + Eq + Hash>(rankings: &[Vec<K>], k: f64) -> Vec<(K, f64)> {
    let mut scores: HashMap<K, (f64, usize)> = HashMap::new();
    let mut order = 0usize;
    for ranking in rankings {
        for (rank, item) in ranking.iter().enumerate() {
            let entry = scores.entry(item.clone()).or_insert_with(|| {
                order += 1;
                (0.0, order)
            });
            entry.0 += 1.0 / (k + rank as f64 + 1.0);
        }
    }
    let mut out: Vec<(K, f64, usize)> = scores.into_iter().map(|(key, (s, o))| (key, s, o)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)));
    out.into_iter().map(|(key, s, _)| (key, s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rarer_terms_and_shorter_documents_score_higher() {
        // term 0 is everywhere, term 1 only in docs 1 and 2; doc 2 is long.
        let docs: Vec<Vec<(u32, u32)>> =
            vec![vec![(0, 1)], vec![(0, 1), (1, 1)], vec![(0, 1), (1, 1), (2, 30)]];
        let index = Bm25::build(docs.iter().map(Vec::as_slice));
        assert!(index.idf(1) > index.idf(0));
        let s = index.score(&[(1, 1.0)]);
        assert_eq!(s[0], 0.0);
        assert!(s[1] > s[2], "{s:?}");
        assert_eq!(
            index.score(&[(99, 1.0)]),
            vec![0.0; 3],
            "unknown terms are ignored"
        );
    }

    #[test]
    fn rrf_rewards_agreement_between_rankings() {
        let bm25 = vec!["a", "b", "c"];
        let dense = vec!["b", "c", "a"];
        let fused = fuse_rrf(&[bm25, dense], 60.0);
        let order: Vec<&str> = fused.iter().map(|(k, _)| *k).collect();
        assert_eq!(order, ["b", "a", "c"]);
        let expected_b = 1.0 / 62.0 + 1.0 / 61.0;
        assert!((fused[0].1 - expected_b).abs() < 1e-12);
    }

    #[test]
    fn rrf_is_deterministic_on_ties_and_handles_one_sided_items() {
        let fused = fuse_rrf(&[vec![1, 2], vec![2, 1], vec![3]], 60.0);
        let order: Vec<i32> = fused.iter().map(|(k, _)| *k).collect();
        assert_eq!(order, [1, 2, 3], "1 and 2 tie; 1 appeared first");
        assert!(fuse_rrf::<u8>(&[], 60.0).is_empty());
    }
}
