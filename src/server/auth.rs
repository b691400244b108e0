//! Bearer-token authentication for the JSON API.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use super::{ApiError, AppState};

/// Refuses the request with 401 unless it carries `Authorization: Bearer
/// $ORCH_API_TOKEN`; without a configured token every request is refused.
pub async fn require_api_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(expected) = &state.config.api_token else {
        return unauthorized("the API is disabled: ORCH_API_TOKEN is not set");
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(token) if tokens_equal(token.as_bytes(), expected.expose_secret().as_bytes()) => {
            next.run(request).await
        }
        Some(_) => unauthorized("invalid bearer token"),
        None => unauthorized("missing bearer token"),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// Constant-time comparison that also hides the expected token's length:
/// both sides are hashed first, then compared without early exit.
pub fn tokens_equal(presented: &[u8], expected: &[u8]) -> bool {
    let a = Sha256::digest(presented);
    let b = Sha256::digest(expected);
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(tokens_equal(b"abc", b"abc"));
        assert!(!tokens_equal(b"abc", b"abd"));
        assert!(!tokens_equal(b"abc", b"abcd"));
        assert!(!tokens_equal(b"", b"abc"));
    }
}
