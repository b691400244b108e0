//! Prometheus metrics: what the process counts, and `GET /metrics`, which
//! shows it in the Prometheus text format.
//!
//! The counters live in the `metrics` facade's global recorder, installed
//! once per process by [`install`] (`serve` does it at start); until then
//! every recording below is a no-op, so library users and tests that never
//! scrape pay nothing. Label values come from closed sets (event names and
//! outcomes are reduced to their code, statuses are numbers or words of
//! ours), never from free text, so the number of series stays bounded.
//!
//! `/metrics` is open unless `ORCH_METRICS_TOKEN` is set; then it wants
//! `Authorization: Bearer <token>` (DESIGN §3).

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use secrecy::ExposeSecret;

use crate::jobs::{JobStatus, now_millis};
use crate::server::{ApiError, AppState};

pub const WEBHOOK_DELIVERIES: &str = "orchestrator_webhook_deliveries_total";
pub const JOBS_ENDED: &str = "orchestrator_jobs_ended_total";
pub const JOB_DURATION: &str = "orchestrator_job_duration_seconds";
pub const QUEUE_DEPTH: &str = "orchestrator_queue_depth";
pub const LLM_REQUESTS: &str = "orchestrator_llm_requests_total";
pub const LLM_TOKENS: &str = "orchestrator_llm_tokens_total";
pub const LLM_COST: &str = "orchestrator_llm_cost_usd";
pub const GITHUB_REQUESTS: &str = "orchestrator_github_requests_total";
pub const GITHUB_RATE_LIMIT_WAITS: &str = "orchestrator_github_rate_limit_waits_total";
pub const CONTEXT_TOKENS: &str = "orchestrator_context_tokens";

/// Job run times: seconds to hours.
const DURATION_BUCKETS: [f64; 12] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
];
/// Context sizes per step, in tokens, up to the hard cap's order.
const TOKEN_BUCKETS: [f64; 10] = [
    500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0, 32000.0, 48000.0, 64000.0, 80000.0,
];
/// How often histogram samples are folded into their buckets.
const UPKEEP: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls return the same
/// handle). `None` when another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(JOB_DURATION.into()), &DURATION_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(CONTEXT_TOKENS.into()), &TOKEN_BUCKETS))
                .map_err(|err| tracing::warn!(error = %err, "metrics: bad buckets"))
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("metrics: another recorder is installed; /metrics stays empty");
                return None;
            }
            describe();
            let upkeep = handle.clone();
            // Histograms keep their samples until folded: bounded memory
            // whether or not anyone scrapes.
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(err) = spawned {
                tracing::warn!(error = %err, "metrics: no upkeep thread");
            }
            Some(handle)
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(WEBHOOK_DELIVERIES, "Webhook deliveries by event and outcome.");
    describe_counter!(JOBS_ENDED, "Job attempts that ended, by final status.");
    describe_histogram!(
        JOB_DURATION,
        Unit::Seconds,
        "Run time of a job attempt, by final status."
    );
    describe_gauge!(
        QUEUE_DEPTH,
        "Active jobs no worker holds (waiting to be claimed)."
    );
    describe_counter!(LLM_REQUESTS, "LLM requests sent, by requested model and outcome.");
    describe_counter!(
        LLM_TOKENS,
        "LLM tokens by requested model and direction (in = prompt, out = completion)."
    );
    describe_gauge!(
        LLM_COST,
        "LLM cost in USD by requested model since the process started (pricing.json)."
    );
    describe_counter!(
        GITHUB_REQUESTS,
        "GitHub API answers by HTTP status (network for no answer)."
    );
    describe_counter!(GITHUB_RATE_LIMIT_WAITS, "Waits for a GitHub rate limit, by kind.");
    describe_histogram!(CONTEXT_TOKENS, "Tokens of the context built for a step.");
}

/// `GET /metrics`.
pub async fn serve(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &state.config.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let ok = presented.is_some_and(|token| {
            crate::server::auth::tokens_equal(token.as_bytes(), expected.expose_secret().as_bytes())
        });
        if !ok {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid bearer token",
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    let Some(handle) = install() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics_unavailable",
            "no metrics recorder",
        )
        .into_response();
    };
    match state.store.queue_depth(now_millis()).await {
        Ok(depth) => metrics::gauge!(QUEUE_DEPTH).set(depth as f64),
        Err(err) => tracing::warn!(error = %err, "metrics: queue depth unavailable"),
    }
    handle.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        handle.render(),
    )
        .into_response()
}

/// A webhook delivery's outcome: the code of what intake recorded
/// (`job_created`, `ignored`, `reply`, …), `duplicate`, or why it was refused.
pub fn webhook_delivery(event: &str, outcome: &str) {
    metrics::counter!(WEBHOOK_DELIVERIES, "event" => label(event), "outcome" => label(outcome)).increment(1);
}

/// A job attempt ended with `status` after `ran` (claim to end).
pub fn job_ended(status: JobStatus, ran: Option<Duration>) {
    metrics::counter!(JOBS_ENDED, "status" => status.as_str()).increment(1);
    if let Some(ran) = ran {
        metrics::histogram!(JOB_DURATION, "status" => status.as_str()).record(ran.as_secs_f64());
    }
}

/// An LLM request was sent for `model`; `outcome` is `ok` or an error code.
pub fn llm_request(model: &str, outcome: &str) {
    metrics::counter!(LLM_REQUESTS, "model" => label(model), "outcome" => label(outcome)).increment(1);
}

/// What an answered LLM request used and cost.
pub fn llm_usage(model: &str, tokens_in: u64, tokens_out: u64, usd: f64) {
    let model = label(model);
    metrics::counter!(LLM_TOKENS, "model" => model.clone(), "direction" => "in").increment(tokens_in);
    metrics::counter!(LLM_TOKENS, "model" => model.clone(), "direction" => "out").increment(tokens_out);
    if usd > 0.0 {
        // Counters are integers in the facade; a gauge that only grows keeps the fractions.
        metrics::gauge!(LLM_COST, "model" => model).increment(usd);
    }
}

/// One answer from GitHub (`None`: no answer, a network error).
pub fn github_request(status: Option<u16>) {
    let status = status.map_or_else(|| "network".to_string(), |s| s.to_string());
    metrics::counter!(GITHUB_REQUESTS, "status" => status).increment(1);
}

/// The client waited for a rate limit: `answer` (GitHub said 403/429) or
/// `reset` (a known exhausted limit).
pub fn github_rate_limit_wait(kind: &'static str) {
    metrics::counter!(GITHUB_RATE_LIMIT_WAITS, "kind" => kind).increment(1);
}

/// The context built for one step.
pub fn context_tokens(tokens: usize) {
    metrics::histogram!(CONTEXT_TOKENS).record(tokens as f64);
}

/// A label value: its code (the part before `:`), at most 64 characters of
/// `[A-Za-z0-9._/-]`; anything else becomes `_`.
fn label(text: &str) -> String {
    let code = text.split(':').next().unwrap_or_default().trim();
    let clean: String = code
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() { "unknown".into() } else { clean }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_codes_from_a_small_alphabet() {
        assert_eq!(label("job_created: 0b5c-11"), "job_created");
        assert_eq!(label("gpt-4.1"), "gpt-4.1");
        assert_eq!(label("a b\n\"c\""), "a_b__c_");
        assert_eq!(label(""), "unknown");
        assert_eq!(label(&"x".repeat(500)).len(), 64);
    }
}
