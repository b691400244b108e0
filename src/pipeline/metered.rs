//! Every LLM call of a job passes here: the budget gate before it, usage and
//! cost recorded after it.
//!
//! The gate reserves the call's worst case (DESIGN §5), so a job stops
//! before the call that could cross a budget instead of after it. The prompt
//! side of the worst case is [`estimate_prompt_tokens`], a conservative
//! estimate from the text's length until the context engine's BPE counter is
//! wired in. The real cost uses the endpoint's usage numbers, priced by the
//! model name we asked for (DESIGN §3).
//!
//! Embedding calls pass the same gate and count as requests; they are priced
//! on their input only, add to the job's cost, and stay out of `tokens_in` /
//! `tokens_out`, which count chat completions (DESIGN §5).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::AgentError;
use crate::llm::budget::{self, Limits, Spent};
use crate::llm::{
    ChatMessage, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, LanguageModel,
};
use crate::pricing::Pricing;

/// Usage of one model within a job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelUsage {
    pub requests: u32,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub usd: f64,
}

/// What a job has used so far; the runner persists it on the job and seeds
/// a resumed job's meter with it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meter {
    pub usd: f64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// Requests sent, including those that failed.
    pub requests: u32,
    /// Keyed by the requested model name.
    pub per_model: BTreeMap<String, ModelUsage>,
}

impl From<crate::store::JobUsage> for Meter {
    /// A resumed job's meter starts from the totals stored on the job.
    fn from(usage: crate::store::JobUsage) -> Meter {
        let per_model = usage
            .per_model
            .into_iter()
            .map(|m| {
                let line = ModelUsage {
                    requests: m.requests,
                    tokens_in: m.tokens_in,
                    tokens_out: m.tokens_out,
                    usd: m.usd,
                };
                (m.model, line)
            })
            .collect();
        Meter {
            usd: usage.usd,
            tokens_in: usage.tokens_in,
            tokens_out: usage.tokens_out,
            requests: usage.requests,
            per_model,
        }
    }
}

impl From<&Meter> for crate::store::JobUsage {
    fn from(meter: &Meter) -> crate::store::JobUsage {
        crate::store::JobUsage {
            usd: meter.usd,
            tokens_in: meter.tokens_in,
            tokens_out: meter.tokens_out,
            requests: meter.requests,
            per_model: meter
                .per_model
                .iter()
                .map(|(model, m)| crate::store::ModelUsageRecord {
                    model: model.clone(),
                    requests: m.requests,
                    tokens_in: m.tokens_in,
                    tokens_out: m.tokens_out,
                    usd: m.usd,
                })
                .collect(),
        }
    }
}

/// One call, for the job's cost entries.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    /// The model we asked for (the one priced).
    pub model: String,
    /// The model the endpoint says answered (often a dated name).
    pub answered_model: String,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub usd: f64,
}

/// A job's limits from the configuration (`budget.*`); the daily headroom
/// is what the installation may still spend today, which only the store
/// knows.
pub fn limits_from_config(budget: &crate::config::BudgetConfig, daily_remaining_usd: f64) -> Limits {
    Limits {
        usd: budget.usd,
        requests: budget.requests,
        wall_clock: std::time::Duration::from_secs(u64::from(budget.minutes) * 60),
        daily_remaining_usd,
    }
}

/// Upper-bound estimate of a prompt's tokens: one token per 3 bytes of
/// text, rounded up, plus 4 per message for the chat framing. BPE
/// tokenizers average about 4 bytes per token on English and code, so this
/// over-reserves; text with unusually many tokens per byte (random
/// identifiers, some scripts) could exceed it, which the BPE counter will
/// settle once the context engine provides it.
pub fn estimate_prompt_tokens(messages: &[ChatMessage]) -> u64 {
    messages
        .iter()
        .map(|m| (m.content.len() as u64).div_ceil(3) + 4)
        .sum()
}

/// The same upper-bound estimate for embedding inputs (no chat framing).
pub fn estimate_input_tokens(inputs: &[String]) -> u64 {
    inputs.iter().map(|t| (t.len() as u64).div_ceil(3)).sum()
}

/// The mutable side of a [`MeteredModel`].
#[derive(Debug, Default)]
struct Ledger {
    meter: Meter,
    calls: Vec<CallRecord>,
    /// Worst cases of the calls in flight: concurrent calls (embeddings
    /// next to a chat, say) must not each see the same headroom.
    reserved_usd: f64,
}

/// A [`LanguageModel`] with the job's budget gate and meter around it.
pub struct MeteredModel<'a> {
    model: &'a dyn LanguageModel,
    pricing: &'a Pricing,
    limits: Limits,
    started: Instant,
    /// `meter.usd` when this meter was made: `limits.daily_remaining_usd`
    /// was computed then, so only spending since counts against it.
    usd_at_start: f64,
    ledger: Mutex<Ledger>,
}

impl<'a> MeteredModel<'a> {
    /// A fresh meter; `started` is when the job's wall clock started (an
    /// earlier instant for a resumed job, a past one in tests).
    pub fn new(model: &'a dyn LanguageModel, pricing: &'a Pricing, limits: Limits, started: Instant) -> Self {
        MeteredModel::resume(model, pricing, limits, started, Meter::default())
    }

    /// Continues from what an earlier attempt of the job already used;
    /// `limits.daily_remaining_usd` must be what the installation may still
    /// spend today, as of now.
    pub fn resume(
        model: &'a dyn LanguageModel,
        pricing: &'a Pricing,
        limits: Limits,
        started: Instant,
        meter: Meter,
    ) -> Self {
        MeteredModel {
            model,
            pricing,
            limits,
            started,
            usd_at_start: meter.usd,
            ledger: Mutex::new(Ledger {
                meter,
                ..Ledger::default()
            }),
        }
    }

    /// What the job has used so far.
    pub fn meter(&self) -> Meter {
        self.lock().meter.clone()
    }

    /// The calls made since the last drain, for the job's cost entries.
    pub fn drain_calls(&self) -> Vec<CallRecord> {
        std::mem::take(&mut self.lock().calls)
    }

    /// Gate, call, record. Nothing is sent when the gate refuses or the job
    /// is cancelled; a sent request counts even when it fails.
    pub async fn chat(
        &self,
        request: &ChatRequest,
        cancel: &CancellationToken,
    ) -> Result<ChatResponse, AgentError> {
        if cancel.is_cancelled() {
            return Err(AgentError::Cancelled);
        }
        let reservation = self.reserve(request)?;
        let response = self.model.chat(request, cancel).await;
        drop(reservation);
        crate::metrics::llm_request(&request.model, llm_outcome(&response));
        let response = response?;
        self.record(&request.model, &response);
        Ok(response)
    }

    /// Gate, embed, record, like [`MeteredModel::chat`]: the worst case is
    /// the inputs' estimated tokens at the model's input price.
    pub async fn embed(
        &self,
        request: &EmbeddingRequest,
        cancel: &CancellationToken,
    ) -> Result<EmbeddingResponse, AgentError> {
        if cancel.is_cancelled() {
            return Err(AgentError::Cancelled);
        }
        let tokens = estimate_input_tokens(&request.inputs);
        let worst = budget::worst_case_usd(self.pricing, &request.model, tokens, 0);
        let reservation = self.reserve_usd(&request.model, worst)?;
        let response = self.model.embed(request, cancel).await;
        drop(reservation);
        let response = response?;
        self.record_embeddings(&request.model, &response);
        Ok(response)
    }

    /// Checks the budgets with this call's worst case and, under the same
    /// lock, counts the request and reserves the worst case until the call
    /// ends (the guard releases it, also when the call's future is dropped).
    fn reserve(&self, request: &ChatRequest) -> Result<Reservation<'_, 'a>, AgentError> {
        let prompt = estimate_prompt_tokens(&request.messages);
        let worst = budget::worst_case_usd(
            self.pricing,
            &request.model,
            prompt,
            request.max_completion_tokens,
        );
        self.reserve_usd(&request.model, worst)
    }

    fn reserve_usd(&self, model: &str, worst: f64) -> Result<Reservation<'_, 'a>, AgentError> {
        let mut ledger = self.lock();
        let spent = Spent {
            usd: ledger.meter.usd + ledger.reserved_usd,
            requests: ledger.meter.requests,
            elapsed: self.started.elapsed(),
            usd_today_by_this_job: ledger.meter.usd + ledger.reserved_usd - self.usd_at_start,
        };
        budget::check(&self.limits, &spent, worst)?;
        ledger.meter.requests += 1;
        // Counted when sent, like the total: failed calls are requests too.
        ledger
            .meter
            .per_model
            .entry(model.to_string())
            .or_default()
            .requests += 1;
        ledger.reserved_usd += worst;
        Ok(Reservation {
            owner: self,
            usd: worst,
        })
    }

    fn record(&self, model: &str, response: &ChatResponse) {
        let usage = response.usage;
        let usd = self
            .pricing
            .cost(model, usage.prompt_tokens, usage.completion_tokens);
        crate::metrics::llm_usage(model, usage.prompt_tokens, usage.completion_tokens, usd);
        let mut ledger = self.lock();
        let meter = &mut ledger.meter;
        meter.usd += usd;
        meter.tokens_in += usage.prompt_tokens;
        meter.tokens_out += usage.completion_tokens;
        let m = meter.per_model.entry(model.to_string()).or_default();
        m.tokens_in += usage.prompt_tokens;
        m.tokens_out += usage.completion_tokens;
        m.usd += usd;
        ledger.calls.push(CallRecord {
            model: model.to_string(),
            answered_model: response.model.clone(),
            tokens_in: usage.prompt_tokens,
            tokens_out: usage.completion_tokens,
            usd,
        });
    }

    /// Cost and request only: the embedding's tokens are in its per-model
    /// line and its call record, not in the job's chat token totals.
    fn record_embeddings(&self, model: &str, response: &EmbeddingResponse) {
        let tokens = response.prompt_tokens;
        let usd = self.pricing.cost(model, tokens, 0);
        let mut ledger = self.lock();
        ledger.meter.usd += usd;
        let m = ledger.meter.per_model.entry(model.to_string()).or_default();
        m.tokens_in += tokens;
        m.usd += usd;
        ledger.calls.push(CallRecord {
            model: model.to_string(),
            answered_model: response.model.clone(),
            tokens_in: tokens,
            tokens_out: 0,
            usd,
        });
    }

    /// The ledger stays usable even if a thread panicked while holding it:
    /// its numbers are plain counters.
    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How a sent request went, as the metrics label it.
fn llm_outcome(response: &Result<ChatResponse, crate::llm::LlmError>) -> &'static str {
    use crate::llm::LlmError;
    match response {
        Ok(_) => "ok",
        Err(LlmError::RateLimited { .. }) => "rate_limited",
        Err(LlmError::Server { .. }) => "server_error",
        Err(LlmError::Timeout) => "timeout",
        Err(LlmError::Network(_)) => "network",
        Err(LlmError::Unauthorized { .. }) => "unauthorized",
        Err(LlmError::ContextTooLong(_)) => "context_too_long",
        Err(LlmError::BadRequest { .. }) => "bad_request",
        Err(LlmError::BadResponse(_)) => "bad_response",
        Err(LlmError::Cancelled) => "cancelled",
    }
}

/// A call's worst case, held while the call is in flight.
struct Reservation<'m, 'a> {
    owner: &'m MeteredModel<'a>,
    usd: f64,
}

impl Drop for Reservation<'_, '_> {
    fn drop(&mut self) {
        let mut ledger = self.owner.lock();
        ledger.reserved_usd = (ledger.reserved_usd - self.usd).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::llm::{LlmError, Usage};
    use crate::pipeline::scripted::ScriptedModel;

    fn pricing() -> Pricing {
        Pricing::parse(crate::pricing::BUILT_IN, "test").unwrap()
    }

    fn limits() -> Limits {
        Limits {
            usd: 1.0,
            requests: 10,
            wall_clock: Duration::from_secs(600),
            daily_remaining_usd: 10.0,
        }
    }

    fn request(model: &str, text: &str, max: u32) -> ChatRequest {
        ChatRequest {
            model: model.into(),
            messages: vec![ChatMessage::user(text)],
            max_completion_tokens: max,
            temperature: None,
        }
    }

    #[tokio::test]
    async fn usage_and_cost_are_recorded_with_the_requested_model() {
        let fake = ScriptedModel::new();
        fake.push_reply_as(
            "hi",
            "gpt-4.1-2025-04-14",
            Usage {
                prompt_tokens: 1000,
                completion_tokens: 500,
            },
        );
        let pricing = pricing();
        let m = MeteredModel::new(&fake, &pricing, limits(), Instant::now());
        m.chat(&request("gpt-4.1", "hello", 100), &CancellationToken::new())
            .await
            .unwrap();
        let meter = m.meter();
        assert!((meter.usd - 0.006).abs() < 1e-12, "{}", meter.usd);
        assert_eq!(
            (meter.tokens_in, meter.tokens_out, meter.requests),
            (1000, 500, 1)
        );
        assert_eq!(meter.per_model["gpt-4.1"].requests, 1);
        let calls = m.drain_calls();
        assert_eq!(calls[0].answered_model, "gpt-4.1-2025-04-14");
        assert!(m.drain_calls().is_empty());
    }

    #[tokio::test]
    async fn a_call_that_could_cross_the_budget_is_never_sent() {
        let fake = ScriptedModel::new();
        fake.push_reply("never");
        let pricing = pricing();
        // 1000 max completion tokens of gpt-4.1 = $0.008 worst case > $0.005.
        let tight = Limits {
            usd: 0.005,
            ..limits()
        };
        let m = MeteredModel::new(&fake, &pricing, tight, Instant::now());
        let err = m
            .chat(&request("gpt-4.1", "x", 1000), &CancellationToken::new())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "budget_usd");
        assert!(fake.requests().is_empty());
        assert_eq!(m.meter().requests, 0);
    }

    #[tokio::test]
    async fn requests_and_wall_clock_budgets_are_checked_before_each_call() {
        let fake = ScriptedModel::new();
        fake.push_reply("one");
        fake.push_reply("two");
        let pricing = pricing();
        let one = Limits {
            requests: 1,
            ..limits()
        };
        let m = MeteredModel::new(&fake, &pricing, one, Instant::now());
        let cancel = CancellationToken::new();
        m.chat(&request("gpt-4.1", "x", 10), &cancel).await.unwrap();
        let err = m.chat(&request("gpt-4.1", "x", 10), &cancel).await.unwrap_err();
        assert_eq!(err.code(), "budget_requests");
        assert_eq!(fake.requests().len(), 1);

        let long_ago = Instant::now().checked_sub(Duration::from_secs(601)).unwrap();
        let m = MeteredModel::new(&fake, &pricing, limits(), long_ago);
        let err = m.chat(&request("gpt-4.1", "x", 10), &cancel).await.unwrap_err();
        assert_eq!(err.code(), "budget_minutes");
    }

    #[tokio::test]
    async fn failed_calls_count_as_requests_and_cancellation_sends_nothing() {
        let fake = ScriptedModel::new();
        fake.push_error(LlmError::Server { status: 500 });
        let pricing = pricing();
        let m = MeteredModel::new(&fake, &pricing, limits(), Instant::now());
        let cancel = CancellationToken::new();
        let err = m.chat(&request("gpt-4.1", "x", 10), &cancel).await.unwrap_err();
        assert!(matches!(err, AgentError::Llm(LlmError::Server { status: 500 })));
        assert_eq!(m.meter().requests, 1);
        cancel.cancel();
        let err = m.chat(&request("gpt-4.1", "x", 10), &cancel).await.unwrap_err();
        assert!(matches!(err, AgentError::Cancelled));
        assert_eq!(fake.requests().len(), 1);
    }

    #[tokio::test]
    async fn calls_in_flight_hold_their_worst_case() {
        let fake = ScriptedModel::new();
        let pricing = pricing();
        // Each call's worst case is 1000 × $0.008/1k = $0.008; two fit in $0.01 only one at a time.
        let tight = Limits {
            usd: 0.01,
            ..limits()
        };
        let m = MeteredModel::new(&fake, &pricing, tight, Instant::now());
        let r = request("gpt-4.1", "x", 1000);
        let held = m.reserve(&r).unwrap();
        assert_eq!(m.reserve(&r).err().map(|e| e.code()), Some("budget_usd"));
        drop(held);
        assert!(m.reserve(&r).is_ok(), "released when the call ends");
    }

    fn embedding(model: &str, inputs: &[&str]) -> EmbeddingRequest {
        EmbeddingRequest {
            model: model.into(),
            inputs: inputs.iter().map(|s| (*s).to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn embeddings_add_cost_and_requests_priced_on_input_only() {
        let fake = ScriptedModel::new();
        fake.push_reply_as(
            "hi",
            "gpt-4.1",
            Usage {
                prompt_tokens: 1000,
                completion_tokens: 500,
            },
        );
        let pricing = pricing();
        let m = MeteredModel::new(&fake, &pricing, limits(), Instant::now());
        let cancel = CancellationToken::new();
        m.chat(&request("gpt-4.1", "hello", 100), &cancel).await.unwrap();
        // The scripted endpoint counts one token per 4 bytes: 4000 + 4000 bytes = 2000 tokens.
        let inputs = ["a".repeat(4000), "b".repeat(4000)];
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let answer = m
            .embed(&embedding("text-embedding-3-small", &inputs), &cancel)
            .await
            .unwrap();
        assert_eq!(answer.vectors.len(), 2);
        assert_eq!(answer.prompt_tokens, 2000);
        let meter = m.meter();
        // $0.006 of chat, and 2000 × $0.00002 / 1000 of embeddings.
        assert!((meter.usd - (0.006 + 0.00004)).abs() < 1e-12, "{}", meter.usd);
        assert_eq!(meter.requests, 2);
        assert_eq!(
            (meter.tokens_in, meter.tokens_out),
            (1000, 500),
            "chat tokens only"
        );
        let line = &meter.per_model["text-embedding-3-small"];
        assert_eq!((line.requests, line.tokens_in, line.tokens_out), (1, 2000, 0));
        let calls = m.drain_calls();
        assert_eq!(calls[1].tokens_out, 0);
    }

    #[tokio::test]
    async fn embeddings_pass_the_budget_gate_before_they_are_sent() {
        let fake = ScriptedModel::new();
        let pricing = pricing();
        let cancel = CancellationToken::new();
        let no_requests_left = Limits {
            requests: 0,
            ..limits()
        };
        let m = MeteredModel::new(&fake, &pricing, no_requests_left, Instant::now());
        let err = m
            .embed(&embedding("text-embedding-3-small", &["x"]), &cancel)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "budget_requests");
        // 3 MB of input is at most 1M tokens: $0.13 at text-embedding-3-large's price.
        let tight = Limits { usd: 0.1, ..limits() };
        let m = MeteredModel::new(&fake, &pricing, tight, Instant::now());
        let big = "x".repeat(3_000_000);
        let err = m
            .embed(&embedding("text-embedding-3-large", &[&big]), &cancel)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "budget_usd");
        assert!(fake.embedding_requests().is_empty());
        m.embed(&embedding("text-embedding-3-small", &[&big]), &cancel)
            .await
            .unwrap();
        assert_eq!(fake.embedding_requests().len(), 1, "the cheaper model fits");
    }

    #[tokio::test]
    async fn a_failed_embedding_call_counts_as_a_request() {
        let fake = ScriptedModel::new();
        fake.push_embedding_error(LlmError::Server { status: 503 });
        let pricing = pricing();
        let m = MeteredModel::new(&fake, &pricing, limits(), Instant::now());
        let err = m
            .embed(
                &embedding("text-embedding-3-small", &["x"]),
                &CancellationToken::new(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, AgentError::Llm(LlmError::Server { status: 503 })));
        assert_eq!((m.meter().requests, m.meter().usd), (1, 0.0));
    }

    #[test]
    fn the_prompt_estimate_rounds_up_per_message() {
        let msgs = [ChatMessage::system("abcd"), ChatMessage::user("")];
        assert_eq!(estimate_prompt_tokens(&msgs), 2 + 4 + 4);
    }
}
