//! The errors of the GitHub client. Callers branch on them (404 = absent,
//! 422 = validation, rate limits, …), so they are a thiserror enum. None of
//! them ever carries a token, a JWT or a key: messages come from GitHub's
//! answer body or from our own text, never from request headers.

use std::time::Duration;

use serde::Deserialize;

/// One entry of the `errors` array of a GitHub 422 answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ValidationDetail {
    pub resource: Option<String>,
    pub field: Option<String>,
    pub code: Option<String>,
    pub message: Option<String>,
}

/// Why a call to GitHub failed.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// 404: the resource does not exist or the installation cannot see it.
    #[error("GitHub: not found (404): {message}")]
    NotFound { message: String },
    /// 401 even after one token refresh.
    #[error("GitHub: unauthorized (401): {message}")]
    Unauthorized { message: String },
    /// 403 that is not a rate limit: a missing permission.
    #[error("GitHub: forbidden (403): {message}")]
    Forbidden { message: String },
    /// 422: GitHub refused the request's content.
    #[error("GitHub: validation failed (422): {message}{}", details(errors))]
    Validation {
        message: String,
        errors: Vec<ValidationDetail>,
    },
    /// Still rate limited after the allowed number of waits.
    #[error("GitHub: rate limited: {message}")]
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    /// 5xx, after the allowed retries (or at once for requests that must not be repeated).
    #[error("GitHub: server error ({status}): {message}")]
    Server { status: u16, message: String },
    /// Any other 4xx (409, 410, …).
    #[error("GitHub: HTTP {status}: {message}")]
    Status { status: u16, message: String },
    /// The connection failed or timed out.
    #[error("GitHub: network error: {0}")]
    Network(String),
    /// GitHub answered something we could not read.
    #[error("GitHub: unexpected answer: {0}")]
    Decode(String),
    /// We refused to send the request (e.g. check-run actions over GitHub's limits).
    #[error("GitHub: invalid request: {0}")]
    InvalidRequest(String),
    /// The App's own credentials are unusable.
    #[error(transparent)]
    Auth(#[from] super::auth::AuthError),
}

fn details(errors: &[ValidationDetail]) -> String {
    let parts: Vec<String> = errors
        .iter()
        .map(|e| {
            let mut text = e.message.clone().unwrap_or_default();
            if let Some(field) = &e.field {
                text = format!("{field} {}", e.code.clone().unwrap_or_default());
            }
            text
        })
        .filter(|t| !t.trim().is_empty())
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join("; "))
    }
}

impl GitHubError {
    /// A 5xx or a network failure: the request may or may not have been applied.
    pub fn is_transient(&self) -> bool {
        matches!(self, GitHubError::Server { .. } | GitHubError::Network(_))
    }

    /// The HTTP status GitHub answered, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            GitHubError::NotFound { .. } => Some(404),
            GitHubError::Unauthorized { .. } => Some(401),
            GitHubError::Forbidden { .. } => Some(403),
            GitHubError::Validation { .. } => Some(422),
            GitHubError::Server { status, .. } | GitHubError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}
