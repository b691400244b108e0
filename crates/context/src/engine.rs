//! The context pipeline for one step: sources → ranking (top-k, min score) → compaction →
//! fitting → hard cap → hints and diagnostics.

use std::collections::HashSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::budget::{self, Item};
use crate::diagnostics::{CandidateDiagnostic, ContextDiagnostics, Decision, SourceKind};
use crate::index::RepoIndex;
use crate::sources::{self, Candidate, Pin};
use crate::tokens::TokenCounter;

/// The engine's knobs; the defaults are DESIGN §3's (the `[context]` configuration section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextSettings {
    pub budget_tokens: usize,
    pub output_reserve_tokens: usize,
    pub hard_cap_tokens: usize,
    pub compaction_ratio: f64,
    pub top_k: usize,
    pub min_score: f64,
    /// Repository chunks considered before top-k (the retriever's candidate pool).
    pub max_files: usize,
    /// Largest ranked snippet, in tokens; longer ones are compacted, then clipped.
    pub snippet_tokens: usize,
    pub history_limit: usize,
    pub max_file_bytes: u64,
    /// A folder of Markdown/text offered as external documentation.
    pub docs_dir: Option<PathBuf>,
}

impl Default for ContextSettings {
    fn default() -> Self {
        Self {
            budget_tokens: 64_000,
            output_reserve_tokens: 8_000,
            hard_cap_tokens: 70_000,
            compaction_ratio: 0.6,
            top_k: 12,
            min_score: 0.12,
            max_files: 200,
            snippet_tokens: 2_000,
            history_limit: 10,
            max_file_bytes: 1 << 20,
            docs_dir: None,
        }
    }
}

/// The step being carried out, as the planner wrote it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepInput {
    pub title: String,
    pub rationale: String,
    pub acceptance: String,
    /// Repository-relative paths the step creates or changes.
    pub files: Vec<String>,
}

/// A memory note (the archivist's), as stored by the caller.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryNote {
    pub id: String,
    /// `Decision`, `Constraint`, `Todo`, `Glossary`, `Link`.
    pub kind: String,
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
}

/// One summary of an earlier message exchange.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub id: String,
    pub summary: String,
}

/// Everything one context build needs besides the repository index.
#[derive(Debug, Clone, Default)]
pub struct ContextRequest {
    /// The model that will read the prompt (chooses the tokenizer).
    pub model: String,
    /// The issue and the instructions of the person who started the job.
    pub task: String,
    pub step: StepInput,
    pub memory: Vec<MemoryNote>,
    /// `artifacts/<job>/`: its `*.json` files are offered.
    pub artifacts_dir: Option<PathBuf>,
    /// Message history summaries, oldest first; the last `history_limit` are offered.
    pub history: Vec<HistoryEntry>,
    /// Tokens of the rest of the prompt (system prompt, policy), counted against the hard cap.
    pub fixed_prompt_tokens: usize,
}

/// One item of the final context.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContextItem {
    pub source: SourceKind,
    pub id: String,
    pub hint: String,
    pub body: String,
    pub tokens: usize,
}

/// The result: the text to put in the prompt, its items and the diagnostics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuiltContext {
    pub text: String,
    pub items: Vec<ContextItem>,
    pub diagnostics: ContextDiagnostics,
}

/// Builds the context of one step. Deterministic: same inputs, same output.
pub fn build_context(
    index: &RepoIndex,
    req: &ContextRequest,
    settings: &ContextSettings,
) -> BuiltContext {
    let counter = TokenCounter::for_model(&req.model);
    let step_text = step_body(&req.step);
    let query = index.prepare(&format!("{}\n{}", req.task, step_text));
    let query_terms: HashSet<String> = query.terms.iter().map(|(t, _, _)| t.clone()).collect();
    let mut notes = Vec::new();

    let (candidates, mut rejected) = gather(index, req, settings, &step_text, &mut notes);
    let mut items: Vec<Item> = candidates
        .into_iter()
        .map(|c| Item::new(c, &counter))
        .collect();
    limit_snippets(&mut items, settings.snippet_tokens, &query_terms, &counter);

    let fit_room = settings
        .budget_tokens
        .saturating_sub(settings.output_reserve_tokens);
    let cap_room = settings
        .hard_cap_tokens
        .saturating_sub(req.fixed_prompt_tokens);
    let room = fit_room.min(cap_room);
    let always_clipped = budget::clip_always(&mut items, cap_room, &counter);
    if always_clipped {
        notes.push(format!("the task, step and instruction files alone exceeded the hard cap ({cap_room} tokens for the context); they were clipped from the end, task first"));
    }
    let threshold = (settings.budget_tokens as f64 * settings.compaction_ratio) as usize;
    let compacted = budget::total(&items) > threshold
        && budget::compact_over(&mut items, threshold, &query_terms, &counter);
    budget::fit(&mut items, room, &counter);
    let always: usize = items
        .iter()
        .filter(|i| i.cand.pin == Pin::Always && i.included())
        .map(|i| i.tokens)
        .sum();
    let limit = room.max(always).min(cap_room);
    let (text, context_tokens, cap_iterations) = budget::enforce_cap(&mut items, limit, &counter);
    if cap_iterations >= 16 {
        notes.push("the hard-cap loop did not converge; the text was cut at the limit".into());
    }

    let mut diagnostics: Vec<CandidateDiagnostic> = items.iter().map(diagnostic).collect();
    diagnostics.append(&mut rejected);
    BuiltContext {
        text,
        items: items
            .iter()
            .filter(|i| i.included())
            .map(|i| ContextItem {
                source: i.cand.source,
                id: i.cand.id.clone(),
                hint: i.hint.clone(),
                body: i.body.clone(),
                tokens: i.tokens,
            })
            .collect(),
        diagnostics: ContextDiagnostics {
            model: req.model.clone(),
            encoding: counter.encoding(),
            exact_token_counts: counter.exact(),
            budget_tokens: settings.budget_tokens,
            output_reserve_tokens: settings.output_reserve_tokens,
            hard_cap_tokens: settings.hard_cap_tokens,
            fixed_prompt_tokens: req.fixed_prompt_tokens,
            context_limit_tokens: room,
            compaction_threshold_tokens: threshold,
            compaction_applied: compacted,
            always_kept_clipped: always_clipped,
            context_tokens,
            prompt_tokens: req.fixed_prompt_tokens + context_tokens,
            cap_iterations,
            notes,
            candidates: diagnostics,
        },
    }
}

/// The step as the model reads it.
fn step_body(step: &StepInput) -> String {
    let mut s = format!("Title: {}\n", step.title);
    for (label, value) in [
        ("Rationale", &step.rationale),
        ("Acceptance", &step.acceptance),
    ] {
        if !value.is_empty() {
            s.push_str(&format!("{label}: {value}\n"));
        }
    }
    if !step.files.is_empty() {
        s.push_str(&format!("Files: {}\n", step.files.join(", ")));
    }
    s
}

/// Collects the candidates in priority order (always, named, ranked best first) and the
/// diagnostics of those rejected before fitting (below min score, past top-k, missing).
fn gather(
    index: &RepoIndex,
    req: &ContextRequest,
    settings: &ContextSettings,
    step_text: &str,
    notes: &mut Vec<String>,
) -> (Vec<Candidate>, Vec<CandidateDiagnostic>) {
    let query = index.prepare(&format!("{}\n{}", req.task, step_text));
    let root = index.root();
    let mut out = vec![
        sources::task(&req.task),
        sources::step(&req.step.title, step_text.to_owned()),
    ];
    out.extend(sources::instruction_files(root, settings.max_file_bytes));
    let (named, missing) =
        sources::named_files(index, &query, &req.step.files, settings.max_file_bytes);
    let mut rejected: Vec<CandidateDiagnostic> = missing
        .iter()
        .map(|p| rejected_diag(SourceKind::File, p, "named by the step but absent, unreadable or secret-looking (a file the step creates is expected to be absent)"))
        .collect();
    let mut exclude: Vec<String> = named.iter().map(|c| c.id.clone()).collect();
    exclude.extend(sources::INSTRUCTION_FILES.iter().map(|s| (*s).to_owned()));
    out.extend(named);

    let mut ranked = sources::repo_chunks(index, &query, &exclude, settings.max_files);
    ranked.extend(sources::memory(index, &query, &req.memory));
    if let Some(dir) = &req.artifacts_dir {
        ranked.extend(sources::artifacts(
            index,
            &query,
            dir,
            settings.max_file_bytes,
        ));
    }
    ranked.extend(sources::history(
        index,
        &query,
        &req.history,
        settings.history_limit,
    ));
    if let Some(dir) = &settings.docs_dir {
        ranked.extend(sources::docs(index, &query, dir, settings.max_file_bytes));
    }
    let (kept, mut dropped) = select(ranked, settings);
    if kept.is_empty() {
        notes.push("no ranked candidate matched the task and step".into());
    }
    out.extend(kept);
    rejected.append(&mut dropped);
    (out, rejected)
}

/// Normalises ranked scores by the best one, sorts (score, then source, then id) and applies
/// min score and top-k.
fn select(
    mut ranked: Vec<Candidate>,
    settings: &ContextSettings,
) -> (Vec<Candidate>, Vec<CandidateDiagnostic>) {
    let best = ranked.iter().map(|c| c.raw).fold(0.0f32, f32::max);
    for c in &mut ranked {
        c.parts.normalized = if best > 0.0 { c.raw / best } else { 0.0 };
    }
    ranked.sort_by(|a, b| {
        b.parts
            .normalized
            .total_cmp(&a.parts.normalized)
            .then((a.source as u8).cmp(&(b.source as u8)))
            .then(a.id.cmp(&b.id))
    });
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for c in ranked {
        let reason = if f64::from(c.parts.normalized) < settings.min_score {
            Some(format!("score below the minimum {:.2}", settings.min_score))
        } else if kept.len() >= settings.top_k {
            Some(format!("outside the top {}", settings.top_k))
        } else {
            None
        };
        match reason {
            Some(r) => {
                let mut d = rejected_diag(c.source, &c.id, &r);
                d.title = c.title.clone();
                d.score = c.parts;
                dropped.push(d);
            }
            None => kept.push(c),
        }
    }
    (kept, dropped)
}

/// Ranked snippets above `max` tokens are compacted, then clipped.
fn limit_snippets(items: &mut [Item], max: usize, query: &HashSet<String>, counter: &TokenCounter) {
    for item in items
        .iter_mut()
        .filter(|i| i.cand.pin == Pin::Ranked && i.tokens > max)
    {
        let one = std::slice::from_mut(item);
        budget::compact_over(one, max, query, counter);
        let item = &mut one[0];
        if item.tokens > max {
            let clipped = counter.clip(
                &item.body,
                max.saturating_sub(counter.count(&item.hint) + 2),
            );
            item.body = clipped;
            item.tokens = counter.count(&budget::render(&item.hint, &item.body));
            item.decision = Decision::Clipped;
            item.reason =
                format!("longer than the snippet limit of {max} tokens; compacted and clipped");
        } else {
            item.reason = format!("longer than the snippet limit of {max} tokens; compacted");
        }
    }
}

fn diagnostic(i: &Item) -> CandidateDiagnostic {
    let reason = if i.reason.is_empty() {
        match i.cand.pin {
            Pin::Always => "always kept".to_owned(),
            Pin::Named => "named by the step".to_owned(),
            Pin::Ranked => "ranked within the top-k and above the minimum score".to_owned(),
        }
    } else {
        i.reason.clone()
    };
    CandidateDiagnostic {
        source: i.cand.source,
        id: i.cand.id.clone(),
        title: i.cand.title.clone(),
        score: i.cand.parts,
        tokens_before: i.tokens_before,
        tokens_after: if i.included() { i.tokens } else { 0 },
        decision: i.decision,
        reason,
    }
}

fn rejected_diag(source: SourceKind, id: &str, reason: &str) -> CandidateDiagnostic {
    CandidateDiagnostic {
        source,
        id: id.to_owned(),
        title: id.to_owned(),
        score: crate::diagnostics::ScoreParts::default(),
        tokens_before: 0,
        tokens_after: 0,
        decision: Decision::Dropped,
        reason: reason.to_owned(),
    }
}
