//! Retries of the store's short transactions after transient errors.
//!
//! PostgreSQL aborts a transaction that lost a serialization conflict
//! (SQLSTATE `40001`) or was chosen as a deadlock victim (`40P01`), and a
//! connection can drop under a query (failover, a restarted server, a proxy
//! cutting idle connections). The operations run through [`Store::retrying`]
//! — claims, webhook intake, outbox, leases — are each one transaction that
//! is all or nothing and guarded by its own conditions (a delivery id, a
//! lease owner), so running one again after such an error does not apply it
//! twice: a commit whose answer was lost is found again as a duplicate
//! delivery, or as a lease this owner already holds and will let expire.
//!
//! Everything else (constraint violations, a statement timeout, a pool that
//! timed out or closed) is returned at once: retrying would only add load.

use std::future::Future;
use std::io::ErrorKind;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use super::{Result, Store, StoreError};
use crate::config::DatabaseConfig;

/// The longest wait between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);

/// How often and how patiently transient errors are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first; 0 = none.
    pub retries: u32,
    /// The first delay; each later one doubles, with jitter, up to [`MAX_RETRY_DELAY`].
    pub first_delay: Duration,
}

impl RetryPolicy {
    pub fn from_config(settings: &DatabaseConfig) -> RetryPolicy {
        RetryPolicy {
            retries: settings.retry_attempts,
            first_delay: Duration::from_millis(settings.retry_backoff_ms),
        }
    }

    fn delays(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(self.first_delay)
            .with_max_delay(MAX_RETRY_DELAY.max(self.first_delay))
            .with_max_times(usize::try_from(self.retries).unwrap_or(usize::MAX))
            .with_jitter()
            .build()
    }
}

/// Whether an error is worth running the same transaction again.
pub fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_transient_sqlstate(&code)),
        sqlx::Error::Io(io) => matches!(
            io.kind(),
            ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof
                | ErrorKind::NotConnected
        ),
        _ => false,
    }
}

/// Serialization failure, deadlock, connection exceptions (class `08`) and
/// a server shutting down or restarting (`57P01`–`57P03`).
pub fn is_transient_sqlstate(code: &str) -> bool {
    matches!(code, "40001" | "40P01" | "57P01" | "57P02" | "57P03")
        || (code.len() == 5 && code.starts_with("08"))
}

impl StoreError {
    /// Whether the failed operation may succeed when simply run again.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Db(err) => is_transient(err),
            _ => false,
        }
    }
}

impl Store {
    /// Runs `operation`, again after each transient error, as the policy allows.
    pub(super) async fn retrying<T, F, Fut>(&self, what: &'static str, operation: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        retry_transient(&self.retry, what, operation).await
    }
}

/// The loop behind [`Store::retrying`], usable without a store (tests).
pub async fn retry_transient<T, F, Fut>(
    policy: &RetryPolicy,
    what: &'static str,
    mut operation: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut delays = policy.delays();
    let mut attempt = 1u32;
    loop {
        match operation().await {
            Err(err) if err.is_transient() => {
                let Some(delay) = delays.next() else {
                    return Err(err);
                };
                tracing::warn!(operation = what, attempt, error = %err, "transient database error; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::borrow::Cow;
    use std::error::Error as StdError;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A database error carrying just a SQLSTATE, as a driver reports one.
    #[derive(Debug)]
    struct Coded(&'static str);

    impl std::fmt::Display for Coded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl StdError for Coded {}

    impl sqlx::error::DatabaseError for Coded {
        fn message(&self) -> &str {
            "coded"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn StdError + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn StdError + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn coded(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(Coded(code)))
    }

    fn io(kind: ErrorKind) -> sqlx::Error {
        sqlx::Error::Io(std::io::Error::new(kind, "test"))
    }

    #[test]
    fn serialization_deadlock_and_lost_connections_are_transient() {
        for code in [
            "40001", "40P01", "08000", "08003", "08006", "57P01", "57P02", "57P03",
        ] {
            assert!(is_transient(&coded(code)), "{code}");
        }
        for kind in [
            ErrorKind::ConnectionReset,
            ErrorKind::ConnectionAborted,
            ErrorKind::BrokenPipe,
            ErrorKind::UnexpectedEof,
        ] {
            assert!(is_transient(&io(kind)), "{kind:?}");
        }
    }

    #[test]
    fn everything_else_is_not() {
        // unique violation, statement timeout (query_canceled), syntax error,
        // SQLite's "busy" (its own busy handler already waited).
        for code in ["23505", "57014", "42601", "5", "0800"] {
            assert!(!is_transient(&coded(code)), "{code}");
        }
        assert!(!is_transient(&io(ErrorKind::PermissionDenied)));
        assert!(!is_transient(&sqlx::Error::PoolTimedOut));
        assert!(!is_transient(&sqlx::Error::PoolClosed));
        assert!(!is_transient(&sqlx::Error::RowNotFound));
        assert!(!StoreError::Corrupt("x".into()).is_transient());
    }

    fn policy(retries: u32) -> RetryPolicy {
        RetryPolicy {
            retries,
            first_delay: Duration::from_millis(1),
        }
    }

    #[tokio::test]
    async fn a_transient_error_is_retried_until_the_operation_succeeds() {
        let calls = AtomicU32::new(0);
        let result = retry_transient(&policy(3), "test", || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(StoreError::Db(coded("40001"))),
                1 => Err(StoreError::Db(io(ErrorKind::ConnectionReset))),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(result.unwrap(), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn retries_stop_at_the_configured_number() {
        let calls = AtomicU32::new(0);
        let result: Result<()> = retry_transient(&policy(2), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::Db(coded("40P01")))
        })
        .await;
        assert!(result.unwrap_err().is_transient());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "the first attempt and two retries"
        );

        let calls = AtomicU32::new(0);
        let _ = retry_transient(&policy(0), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(StoreError::Db(coded("40001")))
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "0 = no retry");
    }

    #[tokio::test]
    async fn a_permanent_error_is_returned_at_once() {
        let calls = AtomicU32::new(0);
        let result: Result<()> = retry_transient(&policy(5), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::Db(coded("23505")))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
