//! App authentication: the App's RS256 JWT, and a cache of installation
//! access tokens.
//!
//! Why our own cache and not octocrab's: octocrab's cache cannot be steered
//! by a test clock and does not refresh on a 401. Ours refreshes a token
//! [`REFRESH_MARGIN`] before its `expires_at`, lets concurrent callers share
//! one refresh (single flight: a `tokio::sync::Mutex` per installation is held
//! while the token is minted), and drops exactly the token a 401 was answered
//! to (a newer one minted meanwhile by another caller is kept).
//!
//! Tokens and keys live in `SecretString`/`EncodingKey` and are never logged,
//! printed by `Debug`, put in an error or stored. Nothing here assumes a
//! token's length or format.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use octocrab::jsonwebtoken::{self, Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::clock::unix_secs;
use super::error::GitHubError;
use crate::config::GithubConfig;

/// The JWT's `iat` is backdated by this much, as GitHub recommends, so a
/// clock slightly ahead of GitHub's does not produce a JWT "issued in the future".
pub const JWT_BACKDATE: Duration = Duration::from_secs(60);
/// The JWT's lifetime from now; GitHub refuses more than 10 minutes.
pub const JWT_LIFETIME: Duration = Duration::from_secs(9 * 60);
/// A cached installation token is replaced this long before it expires, so a
/// request never leaves with a token that dies in flight.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Why the App's credentials cannot be used. Each message names the setting.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("GITHUB_APP_ID is not set")]
    MissingAppId,
    #[error("neither GITHUB_PRIVATE_KEY nor GITHUB_PRIVATE_KEY_PATH is set")]
    MissingKey,
    #[error("cannot read GITHUB_PRIVATE_KEY_PATH ({path}): {source}")]
    ReadKey { path: PathBuf, source: std::io::Error },
    #[error(
        "{setting} is not a usable RSA private key in PEM form \
         (\"BEGIN RSA PRIVATE KEY\" as GitHub issues it, or PKCS#8 \"BEGIN PRIVATE KEY\"): {reason}"
    )]
    BadKey { setting: &'static str, reason: String },
    #[error("cannot sign the App JWT: {0}")]
    Sign(String),
}

/// The App id and its private key. `Debug` shows the id only.
#[derive(Clone)]
pub struct AppCredentials {
    app_id: u64,
    key: EncodingKey,
}

impl fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppCredentials")
            .field("app_id", &self.app_id)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

#[derive(Serialize)]
struct Claims {
    iat: u64,
    exp: u64,
    /// A JSON number: the App id.
    iss: u64,
}

impl AppCredentials {
    /// Reads `GITHUB_APP_ID` and the key (inline `GITHUB_PRIVATE_KEY` or the
    /// file `GITHUB_PRIVATE_KEY_PATH`) and proves the key can sign.
    pub fn from_config(config: &GithubConfig) -> Result<AppCredentials, AuthError> {
        let app_id = config.app_id.ok_or(AuthError::MissingAppId)?;
        if let Some(inline) = &config.private_key {
            // Inline keys often arrive with literal "\n" from .env files.
            let pem = inline.expose_secret().replace("\\n", "\n");
            return AppCredentials::from_pem(app_id, pem.as_bytes(), "GITHUB_PRIVATE_KEY");
        }
        let path = config.private_key_path.as_ref().ok_or(AuthError::MissingKey)?;
        let pem = std::fs::read(path).map_err(|source| AuthError::ReadKey {
            path: path.clone(),
            source,
        })?;
        AppCredentials::from_pem(app_id, &pem, "GITHUB_PRIVATE_KEY_PATH")
    }

    /// Parses a PKCS#1 or PKCS#8 RSA PEM; `setting` names where it came from.
    pub fn from_pem(app_id: u64, pem: &[u8], setting: &'static str) -> Result<AppCredentials, AuthError> {
        let key = EncodingKey::from_rsa_pem(pem).map_err(|e| AuthError::BadKey {
            setting,
            reason: e.to_string(),
        })?;
        let credentials = AppCredentials { app_id, key };
        // The PEM parser checks the armour only; signing once proves the key.
        credentials
            .jwt(SystemTime::now())
            .map_err(|e| AuthError::BadKey {
                setting,
                reason: e.to_string(),
            })?;
        Ok(credentials)
    }

    /// The App id (`iss` of the JWT).
    pub fn app_id(&self) -> u64 {
        self.app_id
    }

    /// A JWT valid from `now - 60 s` to `now + 9 min`.
    pub fn jwt(&self, now: SystemTime) -> Result<SecretString, AuthError> {
        let now = unix_secs(now);
        let claims = Claims {
            iat: now.saturating_sub(JWT_BACKDATE.as_secs()),
            exp: now + JWT_LIFETIME.as_secs(),
            iss: self.app_id,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map(SecretString::from)
            .map_err(|e| AuthError::Sign(e.to_string()))
    }
}

/// An installation access token and when it expires.
#[derive(Clone)]
pub struct InstallationToken {
    /// The token itself; only ever exposed into an `Authorization` header or
    /// git's credential callback.
    pub token: SecretString,
    pub expires_at: SystemTime,
    /// Which mint this is, so a 401 invalidates only the token it was sent with.
    pub(crate) generation: u64,
}

impl fmt::Debug for InstallationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstallationToken")
            .field("token", &"[REDACTED]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl InstallationToken {
    /// Usable at `now`: more than [`REFRESH_MARGIN`] left.
    pub fn fresh_at(&self, now: SystemTime) -> bool {
        now + REFRESH_MARGIN < self.expires_at
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<InstallationToken>>>;

/// Installation tokens per installation id, refreshed single-flight.
#[derive(Default)]
pub(crate) struct TokenCache {
    slots: Mutex<HashMap<u64, Slot>>,
    generations: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.slots.lock().map(|s| s.len()).unwrap_or(0);
        f.debug_struct("TokenCache")
            .field("installations", &count)
            .finish()
    }
}

impl TokenCache {
    fn slot(&self, installation: u64) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(installation).or_default().clone()
    }

    /// The cached token when fresh at `now`; otherwise `mint` is awaited while
    /// the installation's lock is held, so concurrent callers share its result.
    pub(crate) async fn get<F, Fut>(
        &self,
        installation: u64,
        now: impl Fn() -> SystemTime,
        mint: F,
    ) -> Result<InstallationToken, GitHubError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(SecretString, SystemTime), GitHubError>>,
    {
        let slot = self.slot(installation);
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| t.fresh_at(now())) {
            return Ok(token.clone());
        }
        let (token, expires_at) = mint().await?;
        let generation = self
            .generations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = InstallationToken {
            token,
            expires_at,
            generation,
        };
        *cached = Some(token.clone());
        Ok(token)
    }

    /// Forgets the token of `generation` (the one GitHub just refused with 401).
    pub(crate) async fn invalidate(&self, installation: u64, generation: u64) {
        let slot = self.slot(installation);
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|t| t.generation == generation) {
            *cached = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_key_is_a_clear_error_naming_the_setting() {
        let err = AppCredentials::from_pem(1, b"not a key", "GITHUB_PRIVATE_KEY").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("GITHUB_PRIVATE_KEY"), "{text}");
    }

    #[test]
    fn missing_key_file_names_the_setting() {
        let config = GithubConfig {
            app_id: Some(1),
            private_key_path: Some("/nonexistent/key.pem".into()),
            private_key: None,
            webhook_secret: None,
            previous_webhook_secrets: vec![],
            trigger_label: "orchestrate".into(),
            api_url: "https://api.github.com".into(),
        };
        let err = AppCredentials::from_config(&config).unwrap_err();
        assert!(err.to_string().contains("GITHUB_PRIVATE_KEY_PATH"));
        let config = GithubConfig {
            app_id: None,
            ..config
        };
        assert!(matches!(
            AppCredentials::from_config(&config),
            Err(AuthError::MissingAppId)
        ));
    }

    #[tokio::test]
    async fn token_is_reused_until_the_refresh_margin() {
        let cache = TokenCache::default();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let expires = start + Duration::from_secs(3600);
        let mint = || async move { Ok((SecretString::from("t1"), expires)) };
        let a = cache.get(7, || start, mint).await.unwrap();
        let b = cache
            .get(7, || start, || async { panic!("must not mint") })
            .await
            .unwrap();
        assert_eq!(a.generation, b.generation);
        let late = start + Duration::from_secs(3600 - 299);
        let c = cache
            .get(
                7,
                || late,
                || async move { Ok((SecretString::from("t2"), expires)) },
            )
            .await
            .unwrap();
        assert_eq!(c.token.expose_secret(), "t2");
        assert!(!format!("{c:?}").contains("t2"));
    }
}
