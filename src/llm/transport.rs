//! The HTTP transport under async-openai: a tower service that sends each
//! request with a timeout and retries what is worth retrying.
//!
//! Retried: 429, 5xx, timeouts and connection errors, at most
//! `max_attempts` tries in all. The wait before a retry is the server's
//! `Retry-After` (seconds or an HTTP date) when it sent one, else jittered
//! exponential backoff; either is capped at `max_delay`. Nothing else is
//! retried: a 4xx other than 429 will fail the same way again.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Response, StatusCode};

use super::BoxFuture;

/// How the transport retries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub max_attempts: u32,
    /// The first backoff; doubled per retry.
    pub base_delay: Duration,
    /// No single wait is longer, whatever `Retry-After` says.
    pub max_delay: Duration,
    /// Per-try timeout of the whole HTTP exchange.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            timeout: Duration::from_secs(180),
        }
    }
}

/// Sends requests built by async-openai, with [`RetryPolicy`].
#[derive(Clone)]
pub struct RetryingTransport {
    client: reqwest::Client,
    policy: RetryPolicy,
    /// Called with every wait before it happens (tests and metrics).
    on_wait: Option<Arc<dyn Fn(Duration) + Send + Sync>>,
}

impl std::fmt::Debug for RetryingTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryingTransport")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl RetryingTransport {
    pub fn new(policy: RetryPolicy) -> Result<RetryingTransport, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(policy.timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(RetryingTransport {
            client,
            policy,
            on_wait: None,
        })
    }

    /// Observes each wait (the delay about to be slept).
    pub fn on_wait(mut self, observer: impl Fn(Duration) + Send + Sync + 'static) -> RetryingTransport {
        self.on_wait = Some(Arc::new(observer));
        self
    }

    async fn send(self, factory: HttpRequestFactory) -> Result<Response, OpenAIError> {
        let mut attempt = 1;
        loop {
            let request = factory.build().await?;
            let result = self.client.execute(request).await;
            let delay = match &result {
                Ok(response) if retryable_status(response.status()) => {
                    retry_after(response.headers()).unwrap_or_else(|| self.backoff(attempt))
                }
                Err(err) if err.is_timeout() || err.is_connect() => self.backoff(attempt),
                _ => return result.map_err(OpenAIError::Reqwest),
            };
            if attempt >= self.policy.max_attempts {
                return result.map_err(OpenAIError::Reqwest);
            }
            let delay = delay.min(self.policy.max_delay);
            tracing::warn!(
                attempt,
                delay_ms = delay.as_millis() as u64,
                "LLM call failed; retrying"
            );
            if let Some(observer) = &self.on_wait {
                observer(delay);
            }
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// `base × 2^(attempt-1)`, with full jitter on the upper half so that
    /// workers that failed together do not retry together.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .policy
            .base_delay
            .saturating_mul(1u32 << (attempt - 1).min(16));
        let half = exp / 2;
        half + half.mul_f64(jitter())
    }
}

fn retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// A number in `[0, 1)`; the low bits of the clock are random enough to
/// spread retries, and this needs no random-number generator.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1_000_000) / 1_000_000.0
}

impl tower::Service<HttpRequestFactory> for RetryingTransport {
    type Response = Response;
    type Error = OpenAIError;
    type Future = BoxFuture<'static, Result<Response, OpenAIError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, factory: HttpRequestFactory) -> Self::Future {
        Box::pin(self.clone().send(factory))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(RETRY_AFTER, "0.5".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(500)));
        headers.insert(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(
            retry_after(&headers),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn backoff_doubles_within_jitter() {
        let t = RetryingTransport::new(RetryPolicy {
            base_delay: Duration::from_millis(100),
            ..RetryPolicy::default()
        })
        .unwrap();
        for attempt in 1..=4u32 {
            let full = Duration::from_millis(100 * 2u64.pow(attempt - 1));
            let d = t.backoff(attempt);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn only_rate_limits_and_server_errors_are_retried() {
        assert!(retryable_status(StatusCode::TOO_MANY_REQUESTS));
        assert!(retryable_status(StatusCode::BAD_GATEWAY));
        assert!(!retryable_status(StatusCode::BAD_REQUEST));
        assert!(!retryable_status(StatusCode::UNAUTHORIZED));
    }
}
