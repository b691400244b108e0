//! The one place where requests leave for GitHub: authentication, pacing,
//! rate-limit waits and retries. `client.rs` only says *what* to ask.
//!
//! Retry rules (GitHub's documented behaviour, github-contract.md §3):
//! * primary limit (403/429 with `x-ratelimit-remaining: 0`): wait until
//!   `x-ratelimit-reset`; a success that leaves `remaining: 0` also makes the
//!   next call of that installation wait for the reset;
//! * secondary limit (403/429 with `Retry-After`, or a 403 whose message
//!   mentions the secondary rate limit): wait `Retry-After`, else at least
//!   60 s, doubling on each repeat; a rate-limited request was not applied, so
//!   every request, even a POST, may be resent;
//! * 5xx and network errors: jittered exponential backoff, bounded — but only
//!   for [`Replay::Safe`] calls. An [`Replay::Unsafe`] call (creating a
//!   comment or a check run) may have been applied before the answer was lost,
//!   so it is returned to the caller, who knows how to look for it;
//! * 401 on an installation token: the token is dropped, one fresh token is
//!   minted and the call is sent once more;
//! * any other 4xx is final and becomes a typed [`GitHubError`].
//!
//! All waits go through the injected [`Clock`].

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use http::Method;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, USER_AGENT};
use octocrab::Octocrab;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::auth::{AppCredentials, InstallationToken, TokenCache};
use super::clock::{BoxFuture, Clock, GovernorClock, unix_secs};
use super::error::{GitHubError, ValidationDetail};

/// The REST API version every request pins (github-contract.md §0).
pub const API_VERSION: &str = "2022-11-28";
/// Without `Retry-After`, a secondary limit waits at least this long (GitHub: "at least one minute").
pub const SECONDARY_MIN_WAIT: Duration = Duration::from_secs(60);
/// The longest single rate-limit wait (a primary window is one hour).
pub const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(3600);
/// Pages followed at most by one paginated read (10,000 items at 100 a page).
pub const MAX_PAGES: usize = 100;

/// Tunables of the GitHub client; the defaults follow GitHub's documented limits.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// REST base URL, possibly with a path prefix (GHES: `https://ghe.example/api/v3`).
    pub api_url: String,
    pub user_agent: String,
    /// Retries of a safe call after a 5xx or a network error.
    pub max_retries: usize,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Rate-limit waits per call before giving up with [`GitHubError::RateLimited`].
    pub max_rate_limit_waits: usize,
    /// Our own pacing of all calls per installation.
    pub requests_per_hour: NonZeroU32,
    pub request_burst: NonZeroU32,
    /// GitHub's content-creation limits per installation: 80 a minute, 500 an hour.
    pub writes_per_minute: NonZeroU32,
    pub writes_per_hour: NonZeroU32,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            api_url: "https://api.github.com".into(),
            user_agent: concat!("orchestrator/", env!("CARGO_PKG_VERSION")).into(),
            max_retries: 4,
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_rate_limit_waits: 5,
            requests_per_hour: nz(5000),
            request_burst: nz(100),
            writes_per_minute: nz(80),
            writes_per_hour: nz(500),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        }
    }
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// Who a call authenticates as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    /// The App's JWT (`/app/...`).
    App,
    /// An installation token.
    Installation(u64),
    /// No credentials (public reads such as `GET /users/{login}`).
    Anonymous,
}

/// May the call be sent again after a 5xx or a lost connection?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    Safe,
    Unsafe,
}

/// One request, described.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub method: Method,
    /// A path under the base URL (`/repos/o/r`), or a full URL under it (a `Link` target).
    pub target: String,
    pub body: Option<Value>,
    pub auth: Auth,
    pub replay: Replay,
}

impl Call {
    pub fn new(method: Method, auth: Auth, target: impl Into<String>) -> Call {
        let replay = if method == Method::POST {
            Replay::Unsafe
        } else {
            Replay::Safe
        };
        Call {
            method,
            target: target.into(),
            body: None,
            auth,
            replay,
        }
    }

    pub fn json(mut self, body: Value) -> Call {
        self.body = Some(body);
        self
    }

    pub fn replay(mut self, replay: Replay) -> Call {
        self.replay = replay;
        self
    }
}

/// GitHub's answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, GitHubError> {
        serde_json::from_str(&self.body).map_err(|e| GitHubError::Decode(e.to_string()))
    }

    /// The `rel="next"` target of the `Link` header.
    pub fn next_link(&self) -> Option<String> {
        let link = self.headers.get("link")?.to_str().ok()?;
        link.split(',').find_map(|part| {
            let (url, params) = part.split_once(';')?;
            params.split(';').any(|p| p.trim() == "rel=\"next\"").then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
        })
    }
}

type Keyed = RateLimiter<u64, HashMapStateStore<u64>, GovernorClock, NoOpMiddleware<Duration>>;

/// Our pacing: a keyed limiter per concern, and primary-limit resets seen.
struct Pacer {
    requests: Keyed,
    writes_minute: Keyed,
    writes_hour: Keyed,
    blocked_until: Mutex<HashMap<u64, SystemTime>>,
}

/// What [`Core::send`] does after an attempt.
enum Step {
    Done(Reply),
    Fail(GitHubError),
    Wait(Duration),
    /// Drop this token and send again with a fresh one (once per call).
    Refresh {
        installation: u64,
        generation: u64,
    },
}

/// What one call may still spend on retries.
struct Budget {
    backoff: ExponentialBackoff,
    rate_limit_waits: usize,
    refreshed: bool,
}

impl Budget {
    /// A transient error of a replay-safe call waits for the next backoff
    /// step; anything else, or an exhausted backoff, ends the call.
    fn retry_or_fail(&mut self, call: &Call, error: GitHubError) -> Step {
        if !(error.is_transient() && call.replay == Replay::Safe) {
            return Step::Fail(error);
        }
        match self.backoff.next() {
            Some(delay) => {
                tracing::warn!(error = %error, delay_ms = delay.as_millis() as u64, target = %call.target, "GitHub call failed; retrying");
                Step::Wait(delay)
            }
            None => Step::Fail(error),
        }
    }
}

/// The key of the App's own (JWT or anonymous) calls in the pacing maps.
const APP_KEY: u64 = 0;

impl Pacer {
    fn new(options: &ClientOptions, clock: &Arc<dyn Clock>) -> Pacer {
        let keyed = |quota: Quota| RateLimiter::hashmap_with_clock(quota, GovernorClock(clock.clone()));
        Pacer {
            requests: keyed(Quota::per_hour(options.requests_per_hour).allow_burst(options.request_burst)),
            writes_minute: keyed(Quota::per_minute(options.writes_per_minute)),
            writes_hour: keyed(Quota::per_hour(options.writes_per_hour)),
            blocked_until: Mutex::new(HashMap::new()),
        }
    }
}

/// The shared engine behind [`super::GitHub`] and its installation clients.
pub(crate) struct Core {
    http: Octocrab,
    base: String,
    credentials: AppCredentials,
    tokens: TokenCache,
    clock: Arc<dyn Clock>,
    options: ClientOptions,
    pacer: Pacer,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubCore")
            .field("base", &self.base)
            .field("credentials", &self.credentials)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: SecretString,
    expires_at: chrono::DateTime<chrono::Utc>,
}

impl Core {
    pub fn new(
        credentials: AppCredentials,
        options: ClientOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Core, GitHubError> {
        let base = options.api_url.trim_end_matches('/').to_string();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(GitHubError::InvalidRequest(format!(
                "GITHUB_API_URL must be an http(s) URL, got {base:?}"
            )));
        }
        let http = Octocrab::builder()
            .set_connect_timeout(Some(options.connect_timeout))
            .set_read_timeout(Some(options.read_timeout))
            .build()
            .map_err(|e| GitHubError::Network(e.to_string()))?;
        Ok(Core {
            pacer: Pacer::new(&options, &clock),
            http,
            base,
            credentials,
            tokens: TokenCache::default(),
            clock,
            options,
        })
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// A fresh installation token, from the cache or minted (single flight).
    pub async fn installation_token(&self, id: u64) -> Result<InstallationToken, GitHubError> {
        self.tokens.get(id, || self.clock.now(), || self.mint(id)).await
    }

    async fn mint(&self, id: u64) -> Result<(SecretString, SystemTime), GitHubError> {
        let call = Call::new(
            Method::POST,
            Auth::App,
            format!("/app/installations/{id}/access_tokens"),
        )
        // A second token is harmless: minting may be repeated.
        .replay(Replay::Safe);
        let reply = self.send_boxed(call).await?;
        let answer: TokenAnswer = reply.json()?;
        Ok((answer.token, answer.expires_at.into()))
    }

    fn send_boxed(&self, call: Call) -> BoxFuture<'_, Result<Reply, GitHubError>> {
        Box::pin(self.send(call))
    }

    /// Sends `call` with pacing, authentication, rate-limit waits and retries.
    pub async fn send(&self, call: Call) -> Result<Reply, GitHubError> {
        let mut budget = Budget {
            backoff: ExponentialBuilder::default()
                .with_min_delay(self.options.min_backoff)
                .with_max_delay(self.options.max_backoff)
                .with_max_times(self.options.max_retries)
                .with_jitter()
                .build(),
            rate_limit_waits: 0,
            refreshed: false,
        };
        loop {
            self.pace(&call).await;
            let (authorization, generation) = self.authorize(call.auth).await?;
            let outcome = self.send_once(&call, authorization).await;
            match self.judge(&call, outcome, generation, &mut budget) {
                Step::Done(reply) => return Ok(reply),
                Step::Fail(error) => return Err(error),
                Step::Wait(delay) => self.clock.sleep(delay).await,
                Step::Refresh {
                    installation,
                    generation,
                } => {
                    tracing::info!(installation, "installation token refused; minting a new one");
                    self.tokens.invalidate(installation, generation).await;
                }
            }
        }
    }

    /// What one attempt's outcome means for the call.
    fn judge(
        &self,
        call: &Call,
        outcome: Result<Reply, GitHubError>,
        generation: Option<u64>,
        budget: &mut Budget,
    ) -> Step {
        let reply = match outcome {
            Ok(reply) => reply,
            Err(error) => {
                crate::metrics::github_request(None);
                return budget.retry_or_fail(call, error);
            }
        };
        crate::metrics::github_request(Some(reply.status));
        self.note_limits(call.auth, &reply.headers);
        if reply.status < 400 {
            return Step::Done(reply);
        }
        if let Some(wait) = self.rate_limit_wait(&reply, budget.rate_limit_waits) {
            if budget.rate_limit_waits >= self.options.max_rate_limit_waits {
                return Step::Fail(rate_limited(&reply, wait));
            }
            budget.rate_limit_waits += 1;
            crate::metrics::github_rate_limit_wait("answer");
            tracing::warn!(status = reply.status, wait_secs = wait.as_secs(), target = %call.target, "GitHub rate limit: waiting");
            return Step::Wait(wait);
        }
        if let (401, Auth::Installation(installation), Some(generation), false) =
            (reply.status, call.auth, generation, budget.refreshed)
        {
            budget.refreshed = true;
            return Step::Refresh {
                installation,
                generation,
            };
        }
        budget.retry_or_fail(call, error_from(&reply))
    }

    /// Waits for our own limiters and any primary-limit reset seen earlier.
    async fn pace(&self, call: &Call) {
        let key = pacing_key(call.auth);
        let blocked = self
            .pacer
            .blocked_until
            .lock()
            .ok()
            .and_then(|m| m.get(&key).copied());
        if let Some(until) = blocked
            && let Ok(wait) = until.duration_since(self.clock.now())
        {
            crate::metrics::github_rate_limit_wait("reset");
            self.clock.sleep(wait.min(MAX_RATE_LIMIT_WAIT)).await;
        }
        let Auth::Installation(id) = call.auth else {
            return;
        };
        self.wait_for(&self.pacer.requests, id).await;
        if call.method != Method::GET {
            self.wait_for(&self.pacer.writes_minute, id).await;
            self.wait_for(&self.pacer.writes_hour, id).await;
        }
    }

    async fn wait_for(&self, limiter: &Keyed, key: u64) {
        let clock = GovernorClock(self.clock.clone());
        while let Err(not_until) = limiter.check_key(&key) {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&clock));
            self.clock.sleep(wait.max(Duration::from_millis(1))).await;
        }
    }

    /// Remembers a primary-limit reset when GitHub says nothing is left.
    fn note_limits(&self, auth: Auth, headers: &HeaderMap) {
        if header(headers, "x-ratelimit-remaining").as_deref() != Some("0") {
            return;
        }
        if let Some(reset) = header_u64(headers, "x-ratelimit-reset")
            && let Ok(mut blocked) = self.pacer.blocked_until.lock()
        {
            let until = SystemTime::UNIX_EPOCH + Duration::from_secs(reset + 1);
            blocked.insert(pacing_key(auth), until);
        }
    }

    /// How long to wait when `reply` is a rate-limit answer; `None` otherwise.
    fn rate_limit_wait(&self, reply: &Reply, previous_waits: usize) -> Option<Duration> {
        if reply.status != 403 && reply.status != 429 {
            return None;
        }
        let headers = &reply.headers;
        if let Some(secs) = header_u64(headers, "retry-after") {
            return Some(Duration::from_secs(secs).min(MAX_RATE_LIMIT_WAIT));
        }
        if header(headers, "x-ratelimit-remaining").as_deref() == Some("0")
            && let Some(reset) = header_u64(headers, "x-ratelimit-reset")
        {
            let now = unix_secs(self.clock.now());
            let wait = Duration::from_secs(reset.saturating_sub(now) + 1);
            return Some(wait.min(MAX_RATE_LIMIT_WAIT));
        }
        let message = error_body(&reply.body).message.to_lowercase();
        if reply.status == 429 || message.contains("secondary rate limit") {
            let factor = 1u32 << previous_waits.min(4);
            return Some((SECONDARY_MIN_WAIT * factor).min(MAX_RATE_LIMIT_WAIT));
        }
        None
    }

    /// The `Authorization` header for `auth`, and the token's generation.
    async fn authorize(&self, auth: Auth) -> Result<(Option<HeaderValue>, Option<u64>), GitHubError> {
        let (secret, generation) = match auth {
            Auth::Anonymous => return Ok((None, None)),
            Auth::App => (self.credentials.jwt(self.clock.now())?, None),
            Auth::Installation(id) => {
                let token = self.installation_token(id).await?;
                (token.token, Some(token.generation))
            }
        };
        let mut value = HeaderValue::from_str(&format!("Bearer {}", secret.expose_secret()))
            .map_err(|_| GitHubError::Decode("credential is not a valid header value".into()))?;
        value.set_sensitive(true);
        Ok((Some(value), generation))
    }

    /// The absolute URL of a call; a full URL must lie under the base URL, so
    /// credentials never follow a `Link` elsewhere.
    fn url(&self, target: &str) -> Result<String, GitHubError> {
        if target.starts_with('/') {
            return Ok(format!("{}{target}", self.base));
        }
        if target.starts_with(&format!("{}/", self.base)) {
            return Ok(target.to_string());
        }
        Err(GitHubError::InvalidRequest(format!(
            "refusing to follow a link outside the API base: {target}"
        )))
    }

    async fn send_once(&self, call: &Call, authorization: Option<HeaderValue>) -> Result<Reply, GitHubError> {
        let mut builder = http::Request::builder()
            .method(call.method.clone())
            .uri(self.url(&call.target)?)
            .header(ACCEPT, "application/vnd.github+json")
            .header("x-github-api-version", API_VERSION)
            .header(USER_AGENT, self.options.user_agent.as_str());
        if let Some(value) = authorization {
            builder = builder.header(AUTHORIZATION, value);
        }
        let body = match &call.body {
            Some(json) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                json.to_string()
            }
            None => String::new(),
        };
        let request = builder
            .body(body)
            .map_err(|e| GitHubError::InvalidRequest(e.to_string()))?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| GitHubError::Network(e.to_string()))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = self
            .http
            .body_to_string(response)
            .await
            .map_err(|e| GitHubError::Network(e.to_string()))?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// Follows `Link: rel="next"` from `first`, collecting each page's items.
    pub async fn paginate<T>(
        &self,
        auth: Auth,
        first: String,
        items: impl Fn(&Reply) -> Result<Vec<T>, GitHubError>,
    ) -> Result<Vec<T>, GitHubError> {
        let mut out = Vec::new();
        let mut next = Some(first);
        for _ in 0..MAX_PAGES {
            let Some(target) = next.take() else { break };
            let reply = self.send(Call::new(Method::GET, auth, target)).await?;
            out.extend(items(&reply)?);
            next = reply.next_link();
        }
        Ok(out)
    }
}

fn pacing_key(auth: Auth) -> u64 {
    match auth {
        Auth::Installation(id) => id,
        Auth::App | Auth::Anonymous => APP_KEY,
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name)?.to_str().ok().map(|s| s.trim().to_string())
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    header(headers, name)?.parse().ok()
}

/// GitHub's error body: `{"message", "errors", "documentation_url"}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ErrorBody {
    pub message: String,
    pub errors: Vec<ValidationDetail>,
}

pub(crate) fn error_body(body: &str) -> ErrorBody {
    serde_json::from_str(body).unwrap_or_else(|_| ErrorBody {
        message: body.chars().take(200).collect(),
        errors: Vec::new(),
    })
}

fn rate_limited(reply: &Reply, wait: Duration) -> GitHubError {
    GitHubError::RateLimited {
        message: error_body(&reply.body).message,
        retry_after: Some(wait),
    }
}

/// The typed error of a final (non-2xx, non-rate-limit) answer.
pub(crate) fn error_from(reply: &Reply) -> GitHubError {
    let ErrorBody { message, errors } = error_body(&reply.body);
    match reply.status {
        401 => GitHubError::Unauthorized { message },
        403 => GitHubError::Forbidden { message },
        404 => GitHubError::NotFound { message },
        422 => GitHubError::Validation { message, errors },
        429 => GitHubError::RateLimited {
            message,
            retry_after: None,
        },
        status @ 500..=599 => GitHubError::Server { status, message },
        status => GitHubError::Status { status, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply_with_link(link: &str) -> Reply {
        let mut headers = HeaderMap::new();
        headers.insert("link", HeaderValue::from_str(link).unwrap());
        Reply {
            status: 200,
            headers,
            body: String::new(),
        }
    }

    #[test]
    fn next_link_is_found_among_others() {
        let reply = reply_with_link(
            r#"<https://api.github.com/x?page=3>; rel="next", <https://api.github.com/x?page=9>; rel="last""#,
        );
        assert_eq!(
            reply.next_link().as_deref(),
            Some("https://api.github.com/x?page=3")
        );
        let last = reply_with_link(r#"<https://api.github.com/x?page=1>; rel="prev""#);
        assert_eq!(last.next_link(), None);
    }

    #[test]
    fn error_bodies_become_typed_errors() {
        let reply = Reply {
            status: 422,
            headers: HeaderMap::new(),
            body: r#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","code":"custom","message":"A pull request already exists for o:b."}]}"#.into(),
        };
        match error_from(&reply) {
            GitHubError::Validation { message, errors } => {
                assert_eq!(message, "Validation Failed");
                assert_eq!(errors.len(), 1);
            }
            other => panic!("{other:?}"),
        }
    }
}
