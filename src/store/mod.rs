//! Durable state: deliveries, installations, jobs, outbox.
//!
//! One [`Store`] over sqlx's `Any` driver serves SQLite (the embedded default)
//! and PostgreSQL (several replicas); the few statements whose dialects differ
//! are chosen by [`Backend`] (see `docs/adr/0001-storage.md`). Callers never see
//! SQL, so a backend can change without touching them.
//!
//! SQLite runs in WAL mode with one writer connection: writes queue on the pool
//! (fair, async) instead of on SQLite's busy handler, which sleeps, and reads
//! use a separate pool that never waits for the writer.

mod control;
mod dashboard;
mod effects;
mod embeddings;
mod intake;
mod jobs;
mod memory;
mod outbox;
mod progress;
mod queue;
mod retry;
mod settle;
mod sql;
mod sqlite_intake;
mod steps;
mod tasks;
mod wakeup;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions, Executor};

use crate::config::{DatabaseConfig, SqliteSynchronous};

pub use control::{CONTROL_KINDS, JobRef, RejectedJob};
pub use dashboard::{EventRecord, InstallationRecord, JobRecord, JobRecordPage, StepRecord};
pub use effects::REPLY_RATE_WINDOW_MS;
pub use embeddings::{decode_vector, encode_vector};
pub use intake::{JobDefaults, NewDelivery, Recorded};
pub use jobs::{JobFilter, JobPage};
pub use memory::{
    FileWrite, MemoryCompaction, MemoryLimit, MemoryUsage, NewNote, NoteInsert, StepContextMetrics,
    StoredFile, StoredNote,
};
pub use outbox::{IssueJobStatus, OutboxRow, REPLY_KINDS};
pub use progress::ProgressIds;
pub use queue::{ClaimedJob, RetryOutcome};
pub use retry::{MAX_RETRY_DELAY, RetryPolicy, is_transient, is_transient_sqlstate, retry_transient};
pub use settle::UnsettledJob;
pub use steps::{JobUsage, ModelUsageRecord, StoredStep};
pub use tasks::NewTask;
pub use wakeup::JOBS_CHANNEL;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// The SQL dialect behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Errors from the store. Messages never include the database URL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(sqlx::Error),
    /// SQLSTATE 57014: `database.statement_timeout_ms` (or an administrator) cancelled it.
    #[error(
        "database statement cancelled: it ran longer than database.statement_timeout_ms \
         or was cancelled by an administrator ({0})"
    )]
    StatementCancelled(sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create the database directory {path}: {source}")]
    CreateDir { path: String, source: std::io::Error },
    #[error("unsupported database URL (expected sqlite: or postgres://)")]
    UnsupportedUrl,
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> StoreError {
        let cancelled = err
            .as_database_error()
            .and_then(|db| db.code())
            .is_some_and(|code| code == "57014");
        if cancelled {
            StoreError::StatementCancelled(err)
        } else {
            StoreError::Db(err)
        }
    }
}

/// The handle every part of the program uses for durable state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// All writes. SQLite: exactly one connection.
    write: AnyPool,
    /// Reads. PostgreSQL: the same pool as `write`.
    read: AnyPool,
    /// SQLite on a file: the thread that records deliveries (see `sqlite_intake`).
    sqlite_intake: Option<Arc<sqlite_intake::SqliteIntake>>,
    /// How transient errors of short transactions are retried.
    retry: RetryPolicy,
    /// PostgreSQL: where the job listener connects (`wakeup.rs`).
    postgres_url: Option<SecretString>,
}

impl Store {
    /// Connects (creating a SQLite file and its directory on first start).
    /// Does not migrate; call [`Store::migrate`].
    pub async fn connect(url: &str, settings: &DatabaseConfig) -> Result<Store> {
        sqlx::any::install_default_drivers();
        if url.starts_with("sqlite:") {
            Self::connect_sqlite(url, settings).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::connect_postgres(url, settings).await
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    /// One pool for reads and writes, sized and timed by `[database]`; every
    /// connection gets the configured `statement_timeout` as it opens.
    async fn connect_postgres(url: &str, settings: &DatabaseConfig) -> Result<Store> {
        let options = AnyConnectOptions::from_str(url)?.disable_statement_logging();
        let statement_timeout = settings.statement_timeout_ms;
        let idle_timeout =
            (settings.idle_timeout_secs > 0).then(|| Duration::from_secs(settings.idle_timeout_secs));
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .min_connections(settings.min_connections)
            .acquire_timeout(Duration::from_secs(settings.acquire_timeout_secs))
            .idle_timeout(idle_timeout)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    // Not a bind parameter: SET takes none. The value is a number.
                    let set = format!("SET statement_timeout = {statement_timeout}");
                    conn.execute(sqlx::AssertSqlSafe(set)).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Store {
            backend: Backend::Postgres,
            write: pool.clone(),
            read: pool,
            sqlite_intake: None,
            retry: RetryPolicy::from_config(settings),
            postgres_url: Some(SecretString::from(url)),
        })
    }

    async fn connect_sqlite(url: &str, settings: &DatabaseConfig) -> Result<Store> {
        let url = sqlite_url_with_create(url);
        let dir = sqlite_path(&url).and_then(|p| p.parent().map(Path::to_path_buf));
        if let Some(dir) = dir.filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(&dir).map_err(|source| StoreError::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let options = AnyConnectOptions::from_str(&url)?.disable_statement_logging();
        let synchronous = match settings.sqlite_synchronous {
            SqliteSynchronous::Normal => "PRAGMA synchronous = NORMAL",
            SqliteSynchronous::Full => "PRAGMA synchronous = FULL",
        };
        let pool = |max: u32| {
            AnyPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        // WAL lets readers run while the writer commits; the
                        // busy timeout covers other processes (e.g. `migrate`).
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute(synchronous).await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        Ok(())
                    })
                })
        };
        let write = pool(1).connect_with(options.clone()).await?;
        let read = pool(settings.max_connections.max(2))
            .connect_with(options)
            .await?;
        let sqlite_intake = match sqlite_intake::file_of(&url) {
            Some(file) => Some(Arc::new(sqlite_intake::SqliteIntake::start(
                &file,
                settings.sqlite_synchronous,
            )?)),
            None => None,
        };
        Ok(Store {
            backend: Backend::Sqlite,
            write,
            read,
            sqlite_intake,
            retry: RetryPolicy::from_config(settings),
            postgres_url: None,
        })
    }

    /// Applies pending migrations. Safe when several processes start at once:
    /// PostgreSQL takes an advisory lock, SQLite a write lock.
    pub async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.write).await?,
            Backend::Postgres => {
                // A connection of its own without `statement_timeout`: a
                // migration may rewrite a large table, and waiting for another
                // replica's migration lock must not time out either.
                let mut conn = self.write.acquire().await?.detach();
                conn.execute("SET statement_timeout = 0").await?;
                let migrated = POSTGRES_MIGRATIONS.run(&mut conn).await;
                let _ = sqlx::Connection::close(conn).await;
                migrated?;
            }
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A cheap round trip, for `/health`.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// Drops raw payloads of deliveries received before `cutoff_ms`; their
    /// metadata stays. Returns how many payloads were dropped.
    pub async fn prune_payloads(&self, cutoff_ms: i64) -> Result<u64> {
        let mut tx = self.write.begin().await?;
        if self.backend == Backend::Postgres {
            // The first pruning of a large table may take longer than the
            // statement timeout meant for the short transactions.
            sqlx::query("SET LOCAL statement_timeout = 0")
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query(
            "UPDATE deliveries SET payload = NULL WHERE received_at < $1 AND payload IS NOT NULL",
        )
        .bind(cutoff_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Closes both pools, letting in-flight statements finish.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

/// `sqlite://x.db` → `sqlite://x.db?mode=rwc`, so the file is created on first start.
fn sqlite_url_with_create(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

fn sqlite_path(url: &str) -> Option<&Path> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| Path::new(path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn postgres_settings(statement_timeout_ms: u64) -> DatabaseConfig {
        DatabaseConfig {
            max_connections: 3,
            min_connections: 0,
            acquire_timeout_secs: 5,
            idle_timeout_secs: 0,
            statement_timeout_ms,
            retry_attempts: 2,
            retry_backoff_ms: 10,
            sqlite_synchronous: SqliteSynchronous::Normal,
        }
    }

    /// The PostgreSQL server of `TEST_DATABASE_URL`, or `None` (and why).
    fn test_postgres(test: &str) -> Option<String> {
        let url = std::env::var("TEST_DATABASE_URL").ok().filter(|u| !u.is_empty());
        if url.is_none() {
            eprintln!("{test}: skipped, TEST_DATABASE_URL is not set");
        }
        url
    }

    #[tokio::test]
    async fn every_pooled_connection_gets_the_statement_timeout() {
        let Some(url) = test_postgres("every_pooled_connection_gets_the_statement_timeout") else {
            return;
        };
        let store = Store::connect(&url, &postgres_settings(250)).await.unwrap();
        // All three connections at once, so each was opened by the pool.
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(store.write.acquire().await.unwrap());
        }
        for conn in &mut held {
            let shown: String = sqlx::query_scalar("SHOW statement_timeout")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!(shown, "250ms");
        }
        drop(held);
        let slow = sqlx::query("SELECT pg_sleep(1)").execute(&store.read).await;
        let err = StoreError::from(slow.unwrap_err());
        assert!(matches!(err, StoreError::StatementCancelled(_)), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("database.statement_timeout_ms"), "{message}");
        assert!(message.contains("statement timeout"), "{message}");
        assert!(!err.is_transient(), "a timeout is not retried");
        // A statement within the limit runs, on the same pool.
        store.ping().await.unwrap();

        let unlimited = Store::connect(&url, &postgres_settings(0)).await.unwrap();
        let shown: String = sqlx::query_scalar("SHOW statement_timeout")
            .fetch_one(&unlimited.read)
            .await
            .unwrap();
        assert_eq!(shown, "0", "0 = no timeout");
        store.close().await;
        unlimited.close().await;
    }

    #[test]
    fn sqlite_urls_get_create_mode_and_a_directory() {
        assert_eq!(
            sqlite_url_with_create("sqlite://data/o.db"),
            "sqlite://data/o.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url_with_create("sqlite://o.db?x=1"),
            "sqlite://o.db?x=1&mode=rwc"
        );
        assert_eq!(
            sqlite_url_with_create("sqlite://o.db?mode=ro"),
            "sqlite://o.db?mode=ro"
        );
        assert_eq!(
            sqlite_path("sqlite://data/o.db?mode=rwc"),
            Some(Path::new("data/o.db"))
        );
        assert_eq!(sqlite_path("sqlite:///abs/o.db"), Some(Path::new("/abs/o.db")));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
    }
}
