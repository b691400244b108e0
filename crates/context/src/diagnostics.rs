//! What the engine decided about every candidate, and why. Serialisable: the caller stores
//! it with the step and writes `artifacts/<job>/context_<step>.json`; people read it to
//! understand what the model saw.

use serde::Serialize;

use crate::tokens::Encoding;

/// Where a candidate comes from; also the word used in its hint line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Task,
    Step,
    /// The target repository's instruction files (AGENTS.md, CLAUDE.md…).
    Agents,
    /// Repository files and chunks.
    File,
    Memory,
    Artifact,
    History,
    Docs,
}

impl SourceKind {
    /// The name used in hints (`[file score=0.83] …`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Task => "task",
            Self::Step => "step",
            Self::Agents => "agents",
            Self::File => "file",
            Self::Memory => "memory",
            Self::Artifact => "artifact",
            Self::History => "history",
            Self::Docs => "docs",
        }
    }
}

/// The fate of a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// In the context as it was.
    Kept,
    /// In the context, shortened to signatures and the lines around query hits.
    Compacted,
    /// In the context, cut at the end to fit.
    Clipped,
    /// Not in the context.
    Dropped,
}

/// The parts a candidate's score is made of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ScoreParts {
    /// BM25 of the content against the task and step.
    pub content: f32,
    /// Weighted BM25 of the file path (repository candidates).
    pub path: f32,
    /// The final score: raw score divided by the best raw score among ranked candidates
    /// (1.0 for pinned items). The raw score is `content + path`; with a dense ranking, a
    /// repository chunk's raw score is the BM25 score found at its fused rank in the pool.
    pub normalized: f32,
    /// Whether the item is kept regardless of score (task, step, instruction files, the
    /// step's named files).
    pub pinned: bool,
    /// Cosine similarity of the chunk's embedding and the query's (repository chunks,
    /// when an embedding model is configured and the chunk was embedded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dense: Option<f32>,
    /// Reciprocal-rank fusion score of the BM25 and dense rankings (repository chunks,
    /// when a dense ranking was used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fused: Option<f32>,
}

/// One candidate's record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateDiagnostic {
    pub source: SourceKind,
    /// Stable id: a path with a line range, a note id, a history entry id.
    pub id: String,
    pub title: String,
    pub score: ScoreParts,
    /// Tokens of the hint and body as offered.
    pub tokens_before: usize,
    /// Tokens in the final context (0 when dropped).
    pub tokens_after: usize,
    pub decision: Decision,
    /// Why, in words.
    pub reason: String,
}

/// The whole record of one context build.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContextDiagnostics {
    pub model: String,
    pub encoding: Encoding,
    /// False when the model is unknown and cl100k_base counts are an estimate.
    pub exact_token_counts: bool,
    pub budget_tokens: usize,
    pub output_reserve_tokens: usize,
    pub hard_cap_tokens: usize,
    /// Tokens of the prompt outside the context (system prompt…), counted by the caller.
    pub fixed_prompt_tokens: usize,
    /// What the context may use: `min(budget − reserve, hard cap − fixed)`.
    pub context_limit_tokens: usize,
    pub compaction_threshold_tokens: usize,
    pub compaction_applied: bool,
    /// True when the task or step had to be clipped to respect the hard cap.
    pub always_kept_clipped: bool,
    /// Tokens of the final context text, counted on the text as a whole.
    pub context_tokens: usize,
    /// `fixed_prompt_tokens + context_tokens`, never above the hard cap.
    pub prompt_tokens: usize,
    /// Iterations of the hard-cap loop (0 when the first fit held).
    pub cap_iterations: usize,
    /// Notable events in words.
    pub notes: Vec<String>,
    pub candidates: Vec<CandidateDiagnostic>,
}
