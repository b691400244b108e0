//! Fitting candidates into the token budget.
//!
//! The arithmetic, in order:
//! 1. always-kept items (task, step, instruction files) are clipped from the end, task first,
//!    only when they alone pass the hard cap;
//! 2. above `compaction_ratio × budget`, ranked items are compacted, history and memory
//!    first, the least relevant first;
//! 3. items are taken in priority order until `min(budget − output reserve, hard cap −
//!    fixed prompt)`; the item that does not fit is clipped and the rest dropped;
//! 4. the rendered text is recounted as a whole (BPE counts are not additive across joins)
//!    and a bounded loop shrinks it from the end until it holds.

use std::collections::HashSet;

use crate::compact;
use crate::diagnostics::{Decision, SourceKind};
use crate::sources::{Candidate, Pin};
use crate::tokens::TokenCounter;

/// Below this many tokens of room a clipped item is not worth including.
const MIN_CLIP_TOKENS: usize = 48;
/// Iterations of the final hard-cap loop before the last-resort truncation.
const MAX_CAP_ITERATIONS: usize = 16;
/// Separator between rendered items.
pub const SEPARATOR: &str = "\n\n";

/// A candidate being fitted.
#[derive(Debug, Clone)]
pub struct Item {
    pub cand: Candidate,
    pub hint: String,
    pub body: String,
    pub tokens_before: usize,
    pub tokens: usize,
    pub decision: Decision,
    pub reason: String,
}

impl Item {
    /// Wraps a candidate with its hint line and counts it.
    pub fn new(cand: Candidate, counter: &TokenCounter) -> Self {
        let hint = hint_line(&cand);
        let body = cand.body.clone();
        let tokens = counter.count(&render(&hint, &body));
        Self {
            cand,
            hint,
            body,
            tokens_before: tokens,
            tokens,
            decision: Decision::Kept,
            reason: String::new(),
        }
    }

    /// Whether the item is part of the context.
    pub fn included(&self) -> bool {
        self.decision != Decision::Dropped
    }

    /// Replaces the body and recounts.
    fn set_body(&mut self, body: String, counter: &TokenCounter) {
        self.body = body;
        self.tokens = counter.count(&render(&self.hint, &self.body));
    }

    /// Clips the body so the item takes at most `max` tokens; `false` when not even the hint
    /// and a minimal body fit (the caller drops it).
    fn clip_to(&mut self, max: usize, counter: &TokenCounter) -> bool {
        let overhead = counter.count(&render(&self.hint, ""));
        if max < overhead + 1 {
            return false;
        }
        let mut room = max - overhead;
        for _ in 0..4 {
            let body = counter.clip(&self.body, room);
            self.set_body(body, counter);
            if self.tokens <= max {
                return true;
            }
            room = room.saturating_sub(self.tokens - max + 1);
        }
        self.tokens <= max
    }

    fn drop_with(&mut self, reason: &str) {
        self.decision = Decision::Dropped;
        self.reason = reason.into();
        self.tokens = 0;
    }
}

/// `[source score=0.83] title snippet` (the snippet is the first signature or line).
pub fn hint_line(c: &Candidate) -> String {
    let snippet = c
        .body
        .lines()
        .find(|l| compact::is_signature(l))
        .or_else(|| c.body.lines().find(|l| !l.trim().is_empty()))
        .map(|l| crate::sources::first_line(l, 100))
        .unwrap_or_default();
    let snippet = if snippet.is_empty() || c.title.contains(&snippet) {
        String::new()
    } else {
        format!(" {snippet}")
    };
    format!(
        "[{} score={:.2}] {}{snippet}",
        c.source.as_str(),
        c.parts.normalized,
        c.title
    )
}

/// One item as it appears in the prompt.
pub fn render(hint: &str, body: &str) -> String {
    let mut s = String::with_capacity(hint.len() + body.len() + 1);
    s.push_str(hint);
    s.push('\n');
    s.push_str(body.trim_end_matches('\n'));
    s
}

/// The context text of the included items, in order.
pub fn render_all(items: &[Item]) -> String {
    let parts: Vec<String> = items
        .iter()
        .filter(|i| i.included())
        .map(|i| render(&i.hint, &i.body))
        .collect();
    parts.join(SEPARATOR)
}

/// Sum of the tokens of included items.
pub fn total(items: &[Item]) -> usize {
    items.iter().filter(|i| i.included()).map(|i| i.tokens).sum()
}

/// Step 1: clips the always-kept items to `room`: the task first, then the step, then the
/// instruction files. Returns whether anything was clipped.
pub fn clip_always(items: &mut [Item], room: usize, counter: &TokenCounter) -> bool {
    let always: usize = items
        .iter()
        .filter(|i| i.cand.pin == Pin::Always)
        .map(|i| i.tokens)
        .sum();
    let mut excess = always.saturating_sub(room);
    if excess == 0 {
        return false;
    }
    let order = [SourceKind::Task, SourceKind::Step, SourceKind::Agents];
    for kind in order {
        for item in items
            .iter_mut()
            .filter(|i| i.cand.pin == Pin::Always && i.cand.source == kind)
        {
            if excess == 0 {
                return true;
            }
            let target = item.tokens.saturating_sub(excess);
            let before = item.tokens;
            if !item.clip_to(target, counter) {
                item.drop_with("always-kept items alone exceed the hard cap; no room left");
                excess = excess.saturating_sub(before);
                continue;
            }
            item.decision = Decision::Clipped;
            item.reason = "always-kept items alone exceed the hard cap; clipped from the end".into();
            excess = excess.saturating_sub(before - item.tokens);
        }
    }
    true
}

/// Step 2: compacts ranked items (history and memory first, lowest score first) until the
/// total is at most `threshold`. Returns whether anything was compacted.
pub fn compact_over(
    items: &mut [Item],
    threshold: usize,
    query: &HashSet<String>,
    counter: &TokenCounter,
) -> bool {
    let mut order: Vec<usize> = (0..items.len())
        .filter(|&i| items[i].cand.pin == Pin::Ranked && items[i].included())
        .collect();
    let summary_first = |s: SourceKind| !matches!(s, SourceKind::History | SourceKind::Memory);
    order.sort_by(|&a, &b| {
        let (x, y) = (&items[a].cand, &items[b].cand);
        summary_first(x.source)
            .cmp(&summary_first(y.source))
            .then(x.parts.normalized.total_cmp(&y.parts.normalized))
            .then(b.cmp(&a))
    });
    let mut any = false;
    for i in order {
        if total(items) <= threshold {
            break;
        }
        let compacted = compact::compact(&items[i].body, query);
        if compacted.len() < items[i].body.len() {
            let item = &mut items[i];
            item.set_body(compacted, counter);
            item.decision = Decision::Compacted;
            item.reason = "compacted to signatures and lines around query hits (context above the compaction threshold)".into();
            any = true;
        }
    }
    any
}

/// Step 3: takes pinned-named then ranked items in order while they fit in `room`; the first
/// that does not fit is replaced by its fallback or clipped, everything after it dropped.
pub fn fit(items: &mut [Item], room: usize, counter: &TokenCounter) {
    let mut used: usize = items
        .iter()
        .filter(|i| i.cand.pin == Pin::Always && i.included())
        .map(|i| i.tokens)
        .sum();
    let mut exhausted = false;
    for item in items
        .iter_mut()
        .filter(|i| i.cand.pin != Pin::Always && i.included())
    {
        if exhausted {
            item.drop_with("budget exhausted by higher-priority items");
            continue;
        }
        if used + item.tokens <= room {
            used += item.tokens;
            continue;
        }
        if let Some(fallback) = item.cand.fallback.clone() {
            let before = (item.body.clone(), item.tokens);
            item.set_body(fallback, counter);
            if used + item.tokens <= room {
                item.decision = Decision::Compacted;
                item.reason = "the whole file did not fit; its most relevant chunks are shown".into();
                used += item.tokens;
                continue;
            }
            (item.body, item.tokens) = before;
        }
        exhausted = true;
        let left = room.saturating_sub(used);
        if left >= MIN_CLIP_TOKENS && item.clip_to(left, counter) {
            item.decision = Decision::Clipped;
            item.reason = "clipped at the end to fill the remaining budget".into();
            used += item.tokens;
        } else {
            item.drop_with("did not fit in the remaining budget");
        }
    }
}

/// Step 4: recounts the rendered text and shrinks it from the end until it is at most
/// `limit` tokens. Returns the text, its token count and the iterations used.
pub fn enforce_cap(items: &mut [Item], limit: usize, counter: &TokenCounter) -> (String, usize, usize) {
    for iteration in 0..MAX_CAP_ITERATIONS {
        let text = render_all(items);
        let n = counter.count(&text);
        if n <= limit {
            return (text, n, iteration);
        }
        let excess = n - limit + 2;
        let victim = items
            .iter()
            .rposition(|i| i.included() && i.cand.pin != Pin::Always)
            .or_else(|| {
                // Only always-kept items left: shrink the task, then the step, then the rest.
                [SourceKind::Task, SourceKind::Step, SourceKind::Agents]
                    .iter()
                    .find_map(|k| {
                        items
                            .iter()
                            .position(|i| i.included() && i.cand.source == *k && i.tokens > MIN_CLIP_TOKENS)
                    })
            });
        let Some(v) = victim else { break };
        let item = &mut items[v];
        let target = item.tokens.saturating_sub(excess);
        if target >= MIN_CLIP_TOKENS.min(item.tokens) && item.clip_to(target, counter) {
            item.decision = Decision::Clipped;
            item.reason = "clipped by the hard-cap check on the whole text".into();
        } else {
            item.drop_with("dropped by the hard-cap check on the whole text");
        }
    }
    // Last resort, never expected: cut the whole text.
    let text = counter.clip(&render_all(items), limit);
    let n = counter.count(&text);
    (text, n, MAX_CAP_ITERATIONS)
}
