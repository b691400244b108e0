//! The context pipeline for one step: sources → ranking (top-k, min score) → compaction →
//! fitting → hard cap → hints and diagnostics.

use std::collections::HashSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::budget::{self, Item};
use crate::dense::{self, DenseHit};
use crate::diagnostics::{CandidateDiagnostic, ContextDiagnostics, Decision, SourceKind};
use crate::index::{Query, RepoIndex};
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
    /// The candidate pool ranked by embedding similarity, best first (see
    /// [`retrieval_pool`](crate::retrieval_pool)); fused with BM25 by reciprocal-rank
    /// fusion. `None`: BM25 alone.
    pub dense: Option<Vec<DenseHit>>,
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
pub fn build_context(index: &RepoIndex, req: &ContextRequest, settings: &ContextSettings) -> BuiltContext {
    let counter = TokenCounter::for_model(&req.model);
    let step_text = step_body(&req.step);
    let query = index.prepare(&query_text(req));
    let query_terms: HashSet<String> = query.terms.iter().map(|(t, _, _)| t.clone()).collect();
    let mut notes = Vec::new();

    let (candidates, mut rejected) = gather(index, &query, req, settings, &step_text, &mut notes);
    let mut items: Vec<Item> = candidates.into_iter().map(|c| Item::new(c, &counter)).collect();
    limit_snippets(&mut items, settings.snippet_tokens, &query_terms, &counter);

    let fit_room = settings
        .budget_tokens
        .saturating_sub(settings.output_reserve_tokens);
    let cap_room = settings.hard_cap_tokens.saturating_sub(req.fixed_prompt_tokens);
    let room = fit_room.min(cap_room);
    let always_clipped = budget::clip_always(&mut items, cap_room, &counter);
    if always_clipped {
        notes.push(format!("the task, step and instruction files alone exceeded the hard cap ({cap_room} tokens for the context); they were clipped from the end, task first"));
    }
    let threshold = (settings.budget_tokens as f64 * settings.compaction_ratio) as usize;
    let compacted = budget::total(&items) > threshold
        && budget::compact_over(&mut items, threshold, &query_terms, &counter);
    budget::fit(&mut items, room, &counter);
    // Counted on their rendered text: the separators between items cost tokens too.
    let always_items: Vec<Item> = items
        .iter()
        .filter(|i| i.cand.pin == Pin::Always && i.included())
        .cloned()
        .collect();
    let always = counter.count(&budget::render_all(&always_items));
    if always > room {
        notes.push(format!(
            "the task, step and instruction files take {always} tokens, more than budget − output reserve ({room}); \
             they are kept whole up to the hard cap and nothing else was added"
        ));
    }
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

/// What BM25 (and a dense ranking) match against: the task and the step.
pub(crate) fn query_text(req: &ContextRequest) -> String {
    format!("{}\n{}", req.task, step_body(&req.step))
}

/// The step as the model reads it.
fn step_body(step: &StepInput) -> String {
    let mut s = format!("Title: {}\n", step.title);
    for (label, value) in [("Rationale", &step.rationale), ("Acceptance", &step.acceptance)] {
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
    query: &Query,
    req: &ContextRequest,
    settings: &ContextSettings,
    step_text: &str,
    notes: &mut Vec<String>,
) -> (Vec<Candidate>, Vec<CandidateDiagnostic>) {
    let root = index.root();
    let mut out = vec![
        sources::task(&req.task),
        sources::step(&req.step.title, step_text.to_owned()),
    ];
    let instructions = sources::instruction_files(root, settings.max_file_bytes);
    // A step that names an instruction file already sees it whole: offer it once.
    let wanted: Vec<String> = req
        .step
        .files
        .iter()
        .filter(|f| !instructions.iter().any(|i| i.id == f.trim_start_matches("./")))
        .cloned()
        .collect();
    out.extend(instructions);
    let dense = req.dense.as_deref();
    let (named, missing) = sources::named_files(index, query, &wanted, settings.max_file_bytes, dense);
    let mut rejected: Vec<CandidateDiagnostic> = missing
        .iter()
        .map(|p| rejected_diag(SourceKind::File, p, "named by the step but absent, unreadable or secret-looking (a file the step creates is expected to be absent)"))
        .collect();
    let mut exclude: Vec<String> = named.iter().map(|c| c.id.clone()).collect();
    exclude.extend(sources::INSTRUCTION_FILES.iter().map(|s| (*s).to_owned()));
    out.extend(named);

    let mut ranked = sources::repo_chunks(index, query, &exclude, settings.max_files);
    if let Some(dense) = dense {
        let pool = ranked.len();
        let with_vector = dense::fuse_candidates(&mut ranked, dense);
        notes.push(format!(
            "repository chunks ranked by reciprocal-rank fusion of BM25 and embedding similarity \
             ({with_vector} of {pool} pool chunks had a vector)"
        ));
    }
    ranked.extend(sources::memory(index, query, &req.memory));
    if let Some(dir) = &req.artifacts_dir {
        ranked.extend(sources::artifacts(index, query, dir, settings.max_file_bytes));
    }
    ranked.extend(sources::history(
        index,
        query,
        &req.history,
        settings.history_limit,
    ));
    if let Some(dir) = &settings.docs_dir {
        ranked.extend(sources::docs(index, query, dir, settings.max_file_bytes));
    }
    let (kept, mut dropped) = select(ranked, settings);
    if kept.is_empty() {
        notes.push("no ranked candidate matched the task and step".into());
    }
    out.extend(kept);
    rejected.append(&mut dropped);
    (out, rejected)
}

/// Normalises ranked scores by the best one, sorts (score, then source kind, then the fused
/// order when there is one) and applies min score and top-k.
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
            .then(a.fused_rank.cmp(&b.fused_rank))
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
            let clipped = counter.clip(&item.body, max.saturating_sub(counter.count(&item.hint) + 2));
            item.body = clipped;
            item.tokens = counter.count(&budget::render(&item.hint, &item.body));
            item.decision = Decision::Clipped;
            item.reason = format!("longer than the snippet limit of {max} tokens; compacted and clipped");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::IndexOptions;
    use std::fs;
    use std::path::Path;

    struct Fixture {
        repo: tempfile::TempDir,
        _cache: tempfile::TempDir,
        extra: tempfile::TempDir,
        index: RepoIndex,
    }

    /// A repository about retries, with distractors, instruction files and a docs folder.
    fn fixture() -> Fixture {
        let repo = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let extra = tempfile::tempdir().unwrap();
        let r = repo.path();
        fs::create_dir_all(r.join("src/net")).unwrap();
        fs::create_dir_all(r.join(".github")).unwrap();
        let mut retry = String::from("//! Retries with exponential backoff.\n\n");
        for i in 0..30 {
            retry.push_str(&format!(
                "/// Backoff policy number {i}.\npub fn retry_policy_{i}(attempt: u32) -> u64 {{\n    let base = {i} * 10;\n    let jitter = attempt * 3;\n    base + jitter\n}}\n\n"
            ));
        }
        fs::write(r.join("src/net/retry.rs"), &retry).unwrap();
        for i in 0..20 {
            let body =
                format!("pub fn helper_{i}() -> u32 {{\n    // retry budget accounting {i}\n    {i}\n}}\n");
            fs::write(r.join(format!("src/helper_{i}.rs")), body).unwrap();
        }
        fs::write(
            r.join("src/config.rs"),
            "pub struct Config { pub max_retries: u32 }\n",
        )
        .unwrap();
        let mut client = String::from("pub fn send_request(url: &str) -> Response {\n");
        for i in 0..60 {
            client.push_str(&format!("    let step_{i} = prepare(url, {i});\n"));
            if i == 30 {
                client.push_str("    let delay = retry_policy_3(attempt) + jitter;\n");
            }
        }
        client.push_str("    finish()\n}\n");
        fs::write(r.join("src/net/client.rs"), client).unwrap();
        fs::write(
            r.join("AGENTS.md"),
            "# Agents\nRun `make check` before every commit.\n",
        )
        .unwrap();
        fs::write(r.join("CONTRIBUTING.md"), "Contributions welcome.\n").unwrap();
        fs::write(
            r.join(".github/copilot-instructions.md"),
            "Prefer small functions.\n",
        )
        .unwrap();
        fs::write(r.join(".env"), "RETRY_TOKEN=abc\n").unwrap();
        let (index, _) = RepoIndex::open(r, cache.path(), &IndexOptions::default()).unwrap();
        Fixture {
            repo,
            _cache: cache,
            extra,
            index,
        }
    }

    fn request() -> ContextRequest {
        ContextRequest {
            model: "gpt-4.1".into(),
            task: "Retry backoff is too aggressive: the retry policy should add jitter.".into(),
            step: StepInput {
                title: "Add jitter to the retry policy".into(),
                rationale: "Retries hammer the server.".into(),
                acceptance: "A test shows jitter grows with the attempt.".into(),
                files: vec!["src/config.rs".into(), "src/net/new_file.rs".into()],
            },
            ..ContextRequest::default()
        }
    }

    fn decision_of<'a>(built: &'a BuiltContext, id: &str) -> Option<&'a CandidateDiagnostic> {
        built.diagnostics.candidates.iter().find(|c| c.id == id)
    }

    #[test]
    fn budget_never_passes_the_hard_cap_and_keeps_the_output_reserve() {
        let f = fixture();
        let counter = TokenCounter::for_model("gpt-4.1");
        for (budget, reserve, cap, fixed) in [
            (600, 100, 650, 50),
            (1500, 500, 1800, 200),
            (4000, 1000, 3200, 100),
            (64_000, 8_000, 70_000, 3_000),
        ] {
            let settings = ContextSettings {
                budget_tokens: budget,
                output_reserve_tokens: reserve,
                hard_cap_tokens: cap,
                ..ContextSettings::default()
            };
            let req = ContextRequest {
                fixed_prompt_tokens: fixed,
                ..request()
            };
            let built = build_context(&f.index, &req, &settings);
            let d = &built.diagnostics;
            let limit = (budget - reserve).min(cap - fixed);
            assert_eq!(d.context_limit_tokens, limit);
            assert_eq!(
                counter.count(&built.text),
                d.context_tokens,
                "the count is of the real text"
            );
            assert!(
                d.context_tokens <= limit,
                "{budget}: {} > {limit}",
                d.context_tokens
            );
            assert!(d.prompt_tokens <= cap);
            assert!(!d.always_kept_clipped);
            // Only the last candidate that partly fits is clipped; everything after it is dropped.
            let offered: Vec<Decision> = d
                .candidates
                .iter()
                .filter(|c| !c.score.pinned && c.tokens_before > 0)
                .map(|c| c.decision)
                .collect();
            if let Some(at) = offered.iter().position(|x| *x == Decision::Clipped) {
                assert!(
                    offered[at + 1..].iter().all(|x| *x == Decision::Dropped),
                    "{offered:?}"
                );
            }
            let used: usize = d.candidates.iter().map(|c| c.tokens_after).sum();
            assert!(
                used <= limit + 8 * built.items.len(),
                "per-item counts add up to about the total"
            );
        }
    }

    #[test]
    fn budget_invariants_hold_across_a_sweep_of_settings() {
        let f = fixture();
        let counter = TokenCounter::for_model("gpt-4o");
        let mut seed = 0x2545_f491_u64;
        let mut next = |m: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % m as u64) as usize
        };
        for _ in 0..24 {
            let budget = 400 + next(6_000);
            let reserve = next(budget / 2);
            let fixed = next(300);
            let cap = fixed + 300 + next(budget);
            let settings = ContextSettings {
                budget_tokens: budget,
                output_reserve_tokens: reserve,
                hard_cap_tokens: cap,
                compaction_ratio: next(100) as f64 / 100.0,
                top_k: 1 + next(30),
                min_score: next(50) as f64 / 100.0,
                ..ContextSettings::default()
            };
            let req = ContextRequest {
                model: "gpt-4o".into(),
                fixed_prompt_tokens: fixed,
                ..request()
            };
            let built = build_context(&f.index, &req, &settings);
            let d = &built.diagnostics;
            let case = format!("{settings:?} fixed {fixed}: {} tokens", d.context_tokens);
            assert_eq!(counter.count(&built.text), d.context_tokens, "{case}");
            assert!(d.prompt_tokens <= cap, "{case}");
            assert!(d.context_tokens <= (budget - reserve).min(cap - fixed), "{case}");
            assert_eq!(
                built,
                build_context(&f.index, &req, &settings),
                "deterministic: {case}"
            );
        }
    }

    #[test]
    fn the_same_inputs_give_the_same_context() {
        let f = fixture();
        let settings = ContextSettings {
            budget_tokens: 1500,
            output_reserve_tokens: 300,
            ..ContextSettings::default()
        };
        let a = build_context(&f.index, &request(), &settings);
        let b = build_context(&f.index, &request(), &settings);
        assert_eq!(a, b);
        assert_eq!(
            serde_json::to_string(&a.diagnostics).unwrap(),
            serde_json::to_string(&b.diagnostics).unwrap()
        );
    }

    #[test]
    fn items_come_in_priority_order_with_hints() {
        let f = fixture();
        let built = build_context(&f.index, &request(), &ContextSettings::default());
        let ids: Vec<&str> = built.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(
            &ids[..6],
            [
                "task",
                "step",
                "AGENTS.md",
                ".github/copilot-instructions.md",
                "CONTRIBUTING.md",
                "src/config.rs"
            ]
        );
        assert!(
            built
                .text
                .starts_with("[task score=1.00] Task Retry backoff is too aggressive")
        );
        assert!(built.text.contains("[agents score=1.00] AGENTS.md # Agents\n"));
        let first_ranked = &built.items[6];
        assert!(first_ranked.id.starts_with("src/net/retry.rs#L"), "{ids:?}");
        assert!(
            first_ranked
                .hint
                .starts_with("[file score=1.00] src/net/retry.rs pub fn retry_policy_"),
            "{}",
            first_ranked.hint
        );
        let absent = decision_of(&built, "src/net/new_file.rs").unwrap();
        assert_eq!(absent.decision, Decision::Dropped);
        assert!(absent.reason.contains("absent"));
        assert!(!built.text.contains("RETRY_TOKEN"), ".env is never offered");
        let mut req = request();
        req.step.files = vec!["AGENTS.md".into(), ".env".into(), "../outside.rs".into()];
        let built = build_context(&f.index, &req, &ContextSettings::default());
        assert_eq!(
            built
                .text
                .matches("Run `make check` before every commit.")
                .count(),
            1,
            "offered once"
        );
        for p in [".env", "../outside.rs"] {
            assert_eq!(decision_of(&built, p).unwrap().decision, Decision::Dropped, "{p}");
        }
    }

    #[test]
    fn top_k_and_min_score_limit_ranked_items() {
        let f = fixture();
        let settings = ContextSettings {
            top_k: 3,
            ..ContextSettings::default()
        };
        let built = build_context(&f.index, &request(), &settings);
        let ranked = built
            .diagnostics
            .candidates
            .iter()
            .filter(|c| !c.score.pinned && c.decision != Decision::Dropped)
            .count();
        assert_eq!(ranked, 3);
        assert!(
            built
                .diagnostics
                .candidates
                .iter()
                .any(|c| c.reason == "outside the top 3")
        );
        let strict = ContextSettings {
            min_score: 0.99,
            ..ContextSettings::default()
        };
        let built = build_context(&f.index, &request(), &strict);
        let kept: Vec<&CandidateDiagnostic> = built
            .diagnostics
            .candidates
            .iter()
            .filter(|c| !c.score.pinned && c.decision != Decision::Dropped)
            .collect();
        assert!(kept.iter().all(|c| c.score.normalized >= 0.99), "{kept:?}");
        assert!(
            built
                .diagnostics
                .candidates
                .iter()
                .any(|c| c.reason.starts_with("score below the minimum"))
        );
    }

    #[test]
    fn always_kept_items_over_the_hard_cap_are_clipped_and_reported() {
        let f = fixture();
        let req = ContextRequest {
            task: "The retry loop never stops. ".repeat(400),
            ..request()
        };
        let settings = ContextSettings {
            budget_tokens: 800,
            output_reserve_tokens: 200,
            hard_cap_tokens: 900,
            ..ContextSettings::default()
        };
        let built = build_context(
            &f.index,
            &ContextRequest {
                fixed_prompt_tokens: 100,
                ..req
            },
            &settings,
        );
        let d = &built.diagnostics;
        assert!(d.always_kept_clipped);
        assert!(d.notes.iter().any(|n| n.contains("clipped from the end")));
        assert_eq!(decision_of(&built, "task").unwrap().decision, Decision::Clipped);
        assert_eq!(decision_of(&built, "step").unwrap().decision, Decision::Kept);
        assert!(d.prompt_tokens <= 900, "{}", d.prompt_tokens);
        assert!(
            built
                .text
                .starts_with("[task score=1.00] Task The retry loop never stops.")
        );
        assert!(
            built.text.contains("Title: Add jitter to the retry policy"),
            "the step survives"
        );
    }

    #[test]
    fn always_kept_items_above_the_budget_but_under_the_cap_stay_whole() {
        let f = fixture();
        let req = ContextRequest {
            task: "The retry loop never stops. ".repeat(120),
            ..request()
        };
        let settings = ContextSettings {
            budget_tokens: 700,
            output_reserve_tokens: 200,
            hard_cap_tokens: 5_000,
            ..ContextSettings::default()
        };
        let built = build_context(&f.index, &req, &settings);
        let d = &built.diagnostics;
        assert!(!d.always_kept_clipped);
        assert_eq!(decision_of(&built, "task").unwrap().decision, Decision::Kept);
        assert!(
            d.notes.iter().any(|n| n.contains("nothing else was added")),
            "{:?}",
            d.notes
        );
        assert!(
            built
                .items
                .iter()
                .all(|i| matches!(i.source, SourceKind::Task | SourceKind::Step | SourceKind::Agents))
        );
        assert!(d.context_tokens > 500 && d.prompt_tokens <= 5_000);
    }

    #[test]
    fn compaction_starts_above_the_threshold_ratio() {
        let f = fixture();
        let mut req = request();
        req.step.files.clear();
        let relaxed = build_context(&f.index, &req, &ContextSettings::default());
        assert!(!relaxed.diagnostics.compaction_applied);
        let tight = ContextSettings {
            compaction_ratio: 0.001,
            min_score: 0.0,
            top_k: 100,
            ..ContextSettings::default()
        };
        let built = build_context(&f.index, &req, &tight);
        assert!(built.diagnostics.compaction_applied);
        let compacted: Vec<_> = built
            .diagnostics
            .candidates
            .iter()
            .filter(|c| c.decision == Decision::Compacted)
            .collect();
        assert!(!compacted.is_empty());
        assert!(compacted.iter().all(|c| c.tokens_after < c.tokens_before));
        assert!(built.text.contains("lines omitted)"));
    }

    #[test]
    fn a_named_file_too_big_to_fit_shows_its_relevant_chunks() {
        let f = fixture();
        let mut req = request();
        req.step.files = vec!["src/net/retry.rs".into()];
        let settings = ContextSettings {
            budget_tokens: 1200,
            output_reserve_tokens: 200,
            ..ContextSettings::default()
        };
        let built = build_context(&f.index, &req, &settings);
        let named = decision_of(&built, "src/net/retry.rs").unwrap();
        assert_eq!(named.decision, Decision::Compacted, "{named:?}");
        assert!(named.reason.contains("most relevant chunks"));
        let whole = build_context(&f.index, &req, &ContextSettings::default());
        assert_eq!(
            decision_of(&whole, "src/net/retry.rs").unwrap().decision,
            Decision::Kept
        );
        assert!(whole.text.contains("pub fn retry_policy_29"));
    }

    #[test]
    fn every_source_is_offered_and_secrets_are_not() {
        let f = fixture();
        let extra = f.extra.path();
        let artifacts = extra.join("artifacts/job1");
        let docs = extra.join("docs");
        fs::create_dir_all(&artifacts).unwrap();
        fs::create_dir_all(docs.join("guide")).unwrap();
        fs::write(
            artifacts.join("plan.json"),
            r#"{"steps":[{"title":"Add jitter to the retry policy"}]}"#,
        )
        .unwrap();
        fs::write(
            artifacts.join("leak.json"),
            format!(r#"{{"token":"ghp_{}"}}"#, "x1Y2".repeat(9)),
        )
        .unwrap();
        fs::write(artifacts.join("notes.txt"), "retry jitter").unwrap();
        fs::write(
            docs.join("guide/retries.md"),
            "# Intro\nUnrelated words.\n\n# Retry jitter\nFull jitter picks a delay uniformly.\n",
        )
        .unwrap();
        let mut req = request();
        req.artifacts_dir = Some(artifacts);
        req.memory = vec![
            MemoryNote {
                id: "n1".into(),
                kind: "Decision".into(),
                title: "Jitter is proportional to the attempt".into(),
                body: "Chosen to keep retry policy tests deterministic.".into(),
                tags: vec!["retry".into()],
            },
            MemoryNote {
                id: "n2".into(),
                kind: "Link".into(),
                title: "Credentials".into(),
                body: format!("retry key sk-{}", "a".repeat(30)),
                tags: vec![],
            },
        ];
        req.history = (0..12)
            .map(|i| HistoryEntry {
                id: format!("h{i}"),
                summary: format!("Attempt {i}: the retry jitter patch was refused."),
            })
            .collect();
        let settings = ContextSettings {
            docs_dir: Some(docs),
            top_k: 100,
            min_score: 0.0,
            ..ContextSettings::default()
        };
        let built = build_context(&f.index, &req, &settings);
        let kept = |id: &str| decision_of(&built, id).is_some_and(|d| d.decision != Decision::Dropped);
        assert!(kept("memory:n1"));
        assert!(kept("artifact:plan.json"));
        assert!(kept("history:h11") && kept("history:h2"));
        assert!(
            decision_of(&built, "history:h1").is_none(),
            "only the last history_limit entries"
        );
        assert!(
            kept("docs:guide/retries.md#L4-5"),
            "{:#?}",
            built
                .diagnostics
                .candidates
                .iter()
                .map(|c| (&c.id, c.score.normalized, c.decision, &c.reason))
                .collect::<Vec<_>>()
        );
        assert!(
            decision_of(&built, "memory:n2").is_none() && decision_of(&built, "artifact:leak.json").is_none()
        );
        assert!(
            decision_of(&built, "artifact:notes.txt").is_none(),
            "artifacts are the json files"
        );
        assert!(built.text.contains("[memory score="));
        assert!(
            built
                .text
                .contains("] Decision: Jitter is proportional to the attempt")
        );
        assert!(!built.text.contains("ghp_") && !built.text.contains("sk-a"));
        let json = serde_json::to_value(&built.diagnostics).unwrap();
        assert_eq!(json["candidates"][0]["source"], "task");
        assert!(json["candidates"][0]["decision"].is_string());
    }

    /// The pool's repository chunks (not the named files') in BM25 order.
    fn bm25_pool(f: &Fixture, req: &ContextRequest, settings: &ContextSettings) -> Vec<String> {
        crate::retrieval_pool(&f.index, req, settings)
            .chunks
            .into_iter()
            .map(|c| c.id)
            .filter(|id| !req.step.files.iter().any(|n| id.starts_with(&format!("{n}#"))))
            .collect()
    }

    #[test]
    fn the_retrieval_pool_is_the_bm25_pool_plus_the_named_files_chunks() {
        let f = fixture();
        let settings = ContextSettings {
            top_k: 100,
            min_score: 0.0,
            ..ContextSettings::default()
        };
        let req = request();
        let pool = crate::retrieval_pool(&f.index, &req, &settings);
        assert_eq!(pool.query, query_text(&req));
        let built = build_context(&f.index, &req, &settings);
        let offered: Vec<&str> = built
            .diagnostics
            .candidates
            .iter()
            .filter(|c| c.source == SourceKind::File && !c.score.pinned)
            .map(|c| c.id.as_str())
            .collect();
        let ranked = bm25_pool(&f, &req, &settings);
        let mut sorted = ranked.clone();
        sorted.sort();
        let mut offered: Vec<&str> = offered.into_iter().filter(|id| id.contains('#')).collect();
        offered.sort_unstable();
        assert_eq!(sorted, offered, "the pool is exactly what BM25 offers");
        assert!(pool.chunks.iter().any(|c| c.id.starts_with("src/config.rs#L1-")));
        assert!(pool.chunks.iter().all(|c| !c.id.starts_with("AGENTS.md")));
        let retry = pool
            .chunks
            .iter()
            .find(|c| c.id.starts_with("src/net/retry.rs#"))
            .unwrap();
        assert!(retry.text.starts_with("src/net/retry.rs\n"), "{}", retry.text);
        let small = ContextSettings {
            max_files: 3,
            ..settings
        };
        assert_eq!(bm25_pool(&f, &req, &small), ranked[..3]);
    }

    #[test]
    fn a_dense_ranking_moves_a_chunk_bm25_ranks_low_into_the_kept_set() {
        let f = fixture();
        let settings = ContextSettings {
            top_k: 4,
            min_score: 0.0,
            ..ContextSettings::default()
        };
        let req = request();
        let ranked = bm25_pool(&f, &req, &settings);
        assert!(ranked.len() > 20, "{ranked:?}");
        let low = ranked.last().unwrap().clone();
        let bm25_only = build_context(&f.index, &req, &settings);
        assert_eq!(decision_of(&bm25_only, &low).unwrap().reason, "outside the top 4");

        // The embedding model disagrees: the lowest BM25 chunk first, the rest reversed.
        let mut order = vec![low.clone()];
        order.extend(ranked.iter().rev().skip(1).cloned());
        let dense: Vec<DenseHit> = order
            .iter()
            .enumerate()
            .map(|(i, id)| DenseHit {
                id: id.clone(),
                similarity: 0.9 - i as f32 * 0.01,
            })
            .collect();
        let fused_req = ContextRequest {
            dense: Some(dense),
            ..req.clone()
        };
        let fused = build_context(&f.index, &fused_req, &settings);
        let moved = decision_of(&fused, &low).unwrap();
        assert_ne!(moved.decision, Decision::Dropped, "{moved:?}");
        assert!(
            fused
                .text
                .contains(&format!("] {}", low.split('#').next().unwrap()))
        );
        assert_eq!(moved.score.dense, Some(0.9));
        let expected_rrf = 1.0 / 61.0 + 1.0 / (60.0 + ranked.len() as f64);
        assert!((f64::from(moved.score.fused.unwrap()) - expected_rrf).abs() < 1e-6);
        assert!(moved.score.content > 0.0, "its own BM25 parts are kept");
        assert!(
            fused.diagnostics.notes.iter().any(|n| n.contains(&format!(
                "({} of {} pool chunks had a vector)",
                ranked.len(),
                ranked.len()
            ))),
            "{:?}",
            fused.diagnostics.notes
        );
        let json = serde_json::to_value(moved).unwrap();
        assert!(json["score"]["dense"].is_number() && json["score"]["fused"].is_number());
        let plain = serde_json::to_value(decision_of(&bm25_only, &low).unwrap()).unwrap();
        assert!(
            plain["score"].get("dense").is_none(),
            "no dense part without a ranking"
        );
        assert_eq!(
            fused,
            build_context(&f.index, &fused_req, &settings),
            "deterministic"
        );
    }

    #[test]
    fn a_dense_ranking_that_agrees_with_bm25_keeps_every_score() {
        let f = fixture();
        let settings = ContextSettings::default();
        let req = request();
        let dense: Vec<DenseHit> = bm25_pool(&f, &req, &settings)
            .into_iter()
            .map(|id| DenseHit { id, similarity: 0.5 })
            .collect();
        let plain = build_context(&f.index, &req, &settings);
        let fused = build_context(
            &f.index,
            &ContextRequest {
                dense: Some(dense),
                ..req
            },
            &settings,
        );
        let chunks = |b: &BuiltContext| {
            let mut v: Vec<(String, f32)> = b
                .diagnostics
                .candidates
                .iter()
                .filter(|c| c.id.contains('#'))
                .map(|c| (c.id.clone(), c.score.normalized))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        assert_eq!(
            chunks(&plain),
            chunks(&fused),
            "each chunk keeps its own BM25 score"
        );
        let kept = |b: &BuiltContext| b.items.len();
        assert_eq!(kept(&plain), kept(&fused));
        assert_eq!(plain.diagnostics.context_tokens, fused.diagnostics.context_tokens);
    }

    #[test]
    fn unknown_models_are_estimated_with_cl100k() {
        let f = fixture();
        let req = ContextRequest {
            model: "qwen2.5-coder:7b".into(),
            ..request()
        };
        let built = build_context(&f.index, &req, &ContextSettings::default());
        assert!(!built.diagnostics.exact_token_counts);
        assert_eq!(built.diagnostics.encoding, crate::tokens::Encoding::Cl100kBase);
        let _ = Path::new(f.repo.path());
    }
}
