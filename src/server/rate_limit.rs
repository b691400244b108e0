//! Request rate limits per client (`governor`, GCRA): a client may send
//! `burst` requests at once, then `rate_per_minute`; beyond that it gets 429
//! with `Retry-After` and the usual JSON error body.
//!
//! One [`RateLimit`] is one keyed limiter; [`enforce`] is the axum middleware
//! that applies it, so any route group can carry its own limit:
//! `.route_layer(middleware::from_fn_with_state(limit, rate_limit::enforce))`.
//! The webhook carries none: GitHub does not retry a refused delivery.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};

use super::ApiError;
use crate::config::ApiConfig;

/// Forgotten keys are dropped from the limiter's map every this many checks
/// (a keyed limiter otherwise keeps every client it has ever seen).
const CLEANUP_EVERY: u64 = 1024;

/// Who a request is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ClientKey {
    /// The client address; IPv6 clients by their /64 (one host usually owns one).
    Address(IpAddr),
    /// SHA-256 of the presented bearer token (the token itself is never kept).
    Token([u8; 32]),
}

/// One limit: how many requests, counted by what.
#[derive(Debug, Clone, Copy)]
pub struct RateSettings {
    pub per_minute: u32,
    pub burst: u32,
    /// Also count each bearer token on its own, whichever address it comes from.
    pub by_token: bool,
    pub trust_forwarded_for: bool,
}

/// A keyed limiter; cheap to clone. A zero rate means no limit.
#[derive(Clone)]
pub struct RateLimit {
    inner: Option<Arc<Limiter>>,
}

struct Limiter {
    keyed: DefaultKeyedRateLimiter<ClientKey>,
    settings: RateSettings,
    checks: AtomicU64,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Some(limiter) => f.debug_tuple("RateLimit").field(&limiter.settings).finish(),
            None => f.write_str("RateLimit(off)"),
        }
    }
}

impl RateLimit {
    pub fn new(settings: RateSettings) -> RateLimit {
        let (Some(per_minute), Some(burst)) = (
            NonZeroU32::new(settings.per_minute),
            NonZeroU32::new(settings.burst),
        ) else {
            return RateLimit::off();
        };
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        RateLimit {
            inner: Some(Arc::new(Limiter {
                keyed: RateLimiter::keyed(quota),
                settings,
                checks: AtomicU64::new(0),
            })),
        }
    }

    /// No limit at all.
    pub fn off() -> RateLimit {
        RateLimit { inner: None }
    }

    /// `Ok` when the request may pass, or how long the client must wait.
    pub fn check(&self, request: &Request) -> Result<(), Duration> {
        let Some(limiter) = &self.inner else { return Ok(()) };
        if limiter.checks.fetch_add(1, Ordering::Relaxed) % CLEANUP_EVERY == CLEANUP_EVERY - 1 {
            limiter.keyed.retain_recent();
            limiter.keyed.shrink_to_fit();
        }
        let address = ClientKey::Address(client_address(request, limiter.settings.trust_forwarded_for));
        limiter.check_key(&address)?;
        if limiter.settings.by_token
            && let Some(token) = bearer_token(request)
        {
            let mut digest = [0u8; 32];
            digest.copy_from_slice(&Sha256::digest(token.as_bytes()));
            limiter.check_key(&ClientKey::Token(digest))?;
        }
        Ok(())
    }
}

impl Limiter {
    fn check_key(&self, key: &ClientKey) -> Result<(), Duration> {
        self.keyed
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.keyed.clock().now()))
    }
}

/// The middleware: 429 with `Retry-After` once the caller's quota is spent.
pub async fn enforce(State(limit): State<RateLimit>, request: Request, next: Next) -> Response {
    match limit.check(&request) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            tracing::info!(path = %request.uri().path(), wait_ms = wait.as_millis() as u64, "rate limited");
            too_many_requests(wait)
        }
    }
}

/// 429 with whole seconds to wait (at least one) in `Retry-After`.
pub fn too_many_requests(wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests; retry in {seconds} s"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// The limits the server applies, built from `[api]`.
#[derive(Debug, Clone)]
pub struct RateLimits {
    /// The JSON API: per client address and per bearer token.
    pub api: RateLimit,
    /// The dashboard's `POST /login`: per client address.
    pub login: RateLimit,
}

impl RateLimits {
    pub fn from_config(api: &ApiConfig) -> RateLimits {
        RateLimits {
            api: RateLimit::new(RateSettings {
                per_minute: api.rate_per_minute,
                burst: api.burst,
                by_token: true,
                trust_forwarded_for: api.trust_forwarded_for,
            }),
            login: RateLimit::new(RateSettings {
                per_minute: api.login_rate_per_minute,
                burst: api.login_burst,
                by_token: false,
                trust_forwarded_for: api.trust_forwarded_for,
            }),
        }
    }
}

/// The peer address (from `into_make_service_with_connect_info`), or the last
/// `X-Forwarded-For` entry when a trusted proxy sets it. Requests without
/// either (in-process calls) share one key.
fn client_address(request: &Request, trust_forwarded_for: bool) -> IpAddr {
    let forwarded = trust_forwarded_for
        .then(|| {
            request
                .headers()
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|entry| entry.trim().parse::<IpAddr>().ok())
                .next_back()
        })
        .flatten();
    let peer = || {
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
    };
    let address = forwarded
        .or_else(peer)
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !((1u128 << 64) - 1))),
        },
        v4 => v4,
    }
}

fn bearer_token(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::body::Body;

    fn request(peer: &str, forwarded: Option<&str>, token: Option<&str>) -> Request {
        let mut builder = Request::get("/jobs");
        if let Some(f) = forwarded {
            builder = builder.header("x-forwarded-for", f);
        }
        if let Some(t) = token {
            builder = builder.header("authorization", format!("Bearer {t}"));
        }
        let mut request = builder.body(Body::empty()).unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        request
    }

    fn limit(burst: u32, by_token: bool, trust_forwarded_for: bool) -> RateLimit {
        RateLimit::new(RateSettings {
            per_minute: 1,
            burst,
            by_token,
            trust_forwarded_for,
        })
    }

    #[test]
    fn each_address_has_its_own_burst() {
        let limit = limit(2, false, false);
        let a = request("10.0.0.1:5000", None, None);
        let b = request("10.0.0.2:5000", None, None);
        assert!(limit.check(&a).is_ok());
        assert!(limit.check(&a).is_ok());
        let wait = limit.check(&a).unwrap_err();
        assert!(
            wait > Duration::from_secs(1) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        assert!(limit.check(&b).is_ok(), "another address is not affected");
    }

    #[test]
    fn a_token_is_limited_across_addresses() {
        let limit = limit(1, true, false);
        assert!(limit.check(&request("10.0.0.1:1", None, Some("t1"))).is_ok());
        assert!(limit.check(&request("10.0.0.2:1", None, Some("t1"))).is_err());
        assert!(limit.check(&request("10.0.0.3:1", None, Some("t2"))).is_ok());
    }

    #[test]
    fn forwarded_for_counts_only_when_trusted() {
        let trusted = limit(1, false, true);
        let proxy = "127.0.0.1:4000";
        assert!(
            trusted
                .check(&request(proxy, Some("203.0.113.9, 198.51.100.1"), None))
                .is_ok()
        );
        assert!(
            trusted
                .check(&request(proxy, Some("203.0.113.9, 198.51.100.2"), None))
                .is_ok()
        );
        assert!(
            trusted
                .check(&request(proxy, Some("1.1.1.1, 198.51.100.1"), None))
                .is_err()
        );
        let untrusted = limit(1, false, false);
        assert!(
            untrusted
                .check(&request(proxy, Some("198.51.100.1"), None))
                .is_ok()
        );
        assert!(
            untrusted
                .check(&request(proxy, Some("198.51.100.2"), None))
                .is_err()
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let limit = limit(1, false, false);
        assert!(limit.check(&request("[2001:db8:1:2::1]:1", None, None)).is_ok());
        assert!(
            limit
                .check(&request("[2001:db8:1:2::ffff]:1", None, None))
                .is_err()
        );
        assert!(limit.check(&request("[2001:db8:1:3::1]:1", None, None)).is_ok());
    }

    #[test]
    fn a_zero_rate_never_limits() {
        let off = RateLimit::new(RateSettings {
            per_minute: 0,
            burst: 1,
            by_token: true,
            trust_forwarded_for: false,
        });
        for _ in 0..100 {
            assert!(off.check(&request("10.0.0.1:1", None, Some("t"))).is_ok());
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let response = too_many_requests(Duration::from_millis(1500));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(
            too_many_requests(Duration::ZERO).headers()[header::RETRY_AFTER],
            "1"
        );
    }
}
