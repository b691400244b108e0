//! Dashboard sessions and CSRF protection.
//!
//! A login with `ORCH_API_TOKEN` sets a cookie `<expires>.<nonce>.<mac>`:
//! a random nonce, an expiry, and an HMAC-SHA256 over both under a key
//! derived from the API token. The cookie never carries the token; every
//! replica that knows the token can check it without shared state, and
//! changing the token ends every session. The CSRF token of a session is an
//! HMAC of its nonce under the same key, so it needs no storage either.
//!
//! State-changing requests must carry that CSRF token in a form field and
//! come from this origin (`Origin`, else `Referer`, naming the `Host`).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::super::AppState;
use crate::config::SecureCookie;
use crate::jobs::{UnixMillis, now_millis};

type HmacSha256 = Hmac<Sha256>;

/// The cookie's name.
pub const SESSION_COOKIE: &str = "orch_session";

/// A valid dashboard session (put into the request's extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    nonce: String,
    expires_at: UnixMillis,
}

/// The key sessions are signed with: derived from the API token, so the
/// cookie proves knowledge of the token without containing it.
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    pub fn derive(api_token: &SecretString) -> SessionKey {
        let mut mac = mac_with(api_token.expose_secret().as_bytes());
        mac.update(b"orchestrator dashboard session key v1");
        let mut key = [0u8; 32];
        key.copy_from_slice(&mac.finalize().into_bytes());
        SessionKey(key)
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = mac_with(&self.0);
        for part in parts {
            mac.update(part);
            mac.update(b"\x00");
        }
        mac
    }
}

fn mac_with(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    }
}

impl Session {
    /// A fresh session lasting `hours`.
    pub fn start(hours: u32, now: UnixMillis) -> Session {
        let nonce = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        Session {
            nonce,
            expires_at: now + i64::from(hours) * 3600 * 1000,
        }
    }

    /// The cookie value: `<expires>.<nonce>.<mac>`.
    pub fn cookie_value(&self, key: &SessionKey) -> String {
        let expires = self.expires_at.to_string();
        let mac = key.mac(&[b"session", expires.as_bytes(), self.nonce.as_bytes()]);
        format!(
            "{expires}.{}.{}",
            self.nonce,
            hex::encode(mac.finalize().into_bytes())
        )
    }

    /// The session a cookie value stands for, if its MAC holds and it has not expired.
    pub fn verify(value: &str, key: &SessionKey, now: UnixMillis) -> Option<Session> {
        let mut parts = value.split('.');
        let (expires, nonce, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || nonce.len() != 64 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let expires_at: UnixMillis = expires.parse().ok()?;
        let presented = hex::decode(mac).ok()?;
        key.mac(&[b"session", expires.as_bytes(), nonce.as_bytes()])
            .verify_slice(&presented)
            .ok()?;
        (expires_at > now).then(|| Session {
            nonce: nonce.to_string(),
            expires_at,
        })
    }

    /// The session's CSRF token.
    pub fn csrf_token(&self, key: &SessionKey) -> String {
        hex::encode(key.mac(&[b"csrf", self.nonce.as_bytes()]).finalize().into_bytes())
    }

    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, key: &SessionKey, presented: &str) -> bool {
        let Ok(bytes) = hex::decode(presented) else {
            return false;
        };
        key.mac(&[b"csrf", self.nonce.as_bytes()])
            .verify_slice(&bytes)
            .is_ok()
    }
}

/// The session key, when the dashboard is enabled (`ORCH_API_TOKEN` set).
pub fn key_of(state: &AppState) -> Option<SessionKey> {
    state.config.api_token.as_ref().map(SessionKey::derive)
}

/// The session the request's cookie carries, if valid.
pub fn session_of(headers: &HeaderMap, key: &SessionKey) -> Option<Session> {
    let now = now_millis();
    cookie_values(headers, SESSION_COOKIE).find_map(|value| Session::verify(value, key, now))
}

fn cookie_values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// Lets requests with a valid session through (the [`Session`] goes into the
/// request's extensions); others are sent to the login page.
pub async fn require_session(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let session = key_of(&state).and_then(|key| session_of(request.headers(), &key));
    match session {
        Some(session) => {
            request.extensions_mut().insert(session);
            next.run(request).await
        }
        None => {
            let target = request
                .uri()
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_string();
            login_redirect(&target)
        }
    }
}

/// 303 to `/login`, remembering where the user wanted to go.
pub fn login_redirect(target: &str) -> Response {
    let location = if target == "/" {
        "/login".to_string()
    } else {
        format!("/login?next={}", percent_encode(target))
    };
    Redirect::to(&location).into_response()
}

/// A `next` target is followed only when it is a path on this site (and
/// can go into a `Location` header as it is).
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n
        }
        _ => "/",
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `Set-Cookie` value that starts `session`.
pub fn set_cookie(state: &AppState, headers: &HeaderMap, key: &SessionKey, session: &Session) -> HeaderValue {
    let max_age = (session.expires_at - now_millis()).max(0) / 1000;
    let value = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        session.cookie_value(key),
        secure_attribute(state, headers)
    );
    header_value(value)
}

/// The `Set-Cookie` value that ends the session in the browser.
pub fn clear_cookie(state: &AppState, headers: &HeaderMap) -> HeaderValue {
    header_value(format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        secure_attribute(state, headers)
    ))
}

fn header_value(value: String) -> HeaderValue {
    // Only hex digits, dots, digits and fixed ASCII go in: always a valid header.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn secure_attribute(state: &AppState, headers: &HeaderMap) -> &'static str {
    let secure = match state.config.dashboard.secure_cookie {
        SecureCookie::Always => true,
        SecureCookie::Never => false,
        SecureCookie::Auto => came_over_https(headers),
    };
    if secure { "; Secure" } else { "" }
}

/// Whether a reverse proxy says the request reached it over HTTPS.
fn came_over_https(headers: &HeaderMap) -> bool {
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let forwarded = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split([';', ',']).any(|part| {
                part.trim()
                    .split_once('=')
                    .is_some_and(|(k, v)| k.eq_ignore_ascii_case("proto") && v.eq_ignore_ascii_case("https"))
            })
        });
    forwarded_proto || forwarded
}

/// Whether the request comes from a page of this site: its `Origin` (or,
/// without one, its `Referer`) names the host the request was sent to.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(authority) = source.and_then(authority_of) else {
        return false;
    };
    [header::HOST.as_str(), "x-forwarded-host"]
        .into_iter()
        .filter_map(|name| headers.get(name).and_then(|v| v.to_str().ok()))
        .any(|host| host.trim().eq_ignore_ascii_case(authority))
}

/// `http://host:port/path` → `host:port`; `None` for `null` and the like.
fn authority_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    (!authority.is_empty() && !authority.contains('@')).then_some(authority)
}

/// Refuses a state-changing request that fails the CSRF checks.
pub fn check_csrf(
    headers: &HeaderMap,
    session: &Session,
    key: &SessionKey,
    presented: Option<&str>,
) -> Result<(), super::Refusal> {
    if !same_origin(headers) {
        return Err(forbidden(
            "This request did not come from a dashboard page (Origin check failed).",
        ));
    }
    match presented {
        Some(token) if session.csrf_matches(key, token) => Ok(()),
        _ => Err(forbidden(
            "The form's security token is missing or stale. Reload the page and try again.",
        )),
    }
}

fn forbidden(message: &str) -> super::Refusal {
    let body = super::html::error_page("Forbidden", message);
    (StatusCode::FORBIDDEN, body).into_response().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SessionKey {
        SessionKey::derive(&SecretString::from("token-1"))
    }

    #[test]
    fn a_session_cookie_verifies_only_with_its_key_and_before_expiry() {
        let session = Session::start(1, 1_000);
        let value = session.cookie_value(&key());
        assert!(!value.contains("token-1"));
        assert_eq!(Session::verify(&value, &key(), 2_000), Some(session.clone()));
        let other = SessionKey::derive(&SecretString::from("token-2"));
        assert_eq!(Session::verify(&value, &other, 2_000), None);
        assert_eq!(Session::verify(&value, &key(), session.expires_at), None);
        let tampered = value.replacen('1', "2", 1);
        assert_eq!(Session::verify(&tampered, &key(), 2_000), None);
        assert_eq!(Session::verify("garbage", &key(), 2_000), None);
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let a = Session::start(1, 0);
        let b = Session::start(1, 0);
        let token = a.csrf_token(&key());
        assert!(a.csrf_matches(&key(), &token));
        assert!(!b.csrf_matches(&key(), &token));
        assert!(!a.csrf_matches(&key(), "zz"));
        assert!(!a.csrf_matches(&key(), ""));
    }

    #[test]
    fn origins_must_name_the_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("example.org:3000"));
        assert!(!same_origin(&h), "neither Origin nor Referer");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://example.org:3000"),
        );
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
        h.remove(header::ORIGIN);
        h.insert(
            header::REFERER,
            HeaderValue::from_static("http://example.org:3000/dashboard/jobs/x"),
        );
        assert!(same_origin(&h));
    }

    #[test]
    fn next_targets_stay_on_the_site() {
        assert_eq!(safe_next(Some("/dashboard/jobs/1")), "/dashboard/jobs/1");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil")), "/");
        assert_eq!(safe_next(None), "/");
        assert_eq!(
            safe_next(Some("/x\r\nSet-Cookie: a=b")),
            "/",
            "no header injection"
        );
        assert_eq!(percent_encode("/a b?x=1&y"), "/a%20b%3Fx%3D1%26y");
    }
}
