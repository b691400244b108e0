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
mod effects;
mod intake;
mod jobs;
mod outbox;
mod progress;
mod queue;
mod settle;
mod sql;
mod sqlite_intake;
mod steps;
mod tasks;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions, Executor};

use crate::config::{DatabaseConfig, SqliteSynchronous};

pub use control::{CONTROL_KINDS, JobRef, RejectedJob};
pub use effects::REPLY_RATE_WINDOW_MS;
pub use intake::{JobDefaults, NewDelivery, Recorded};
pub use jobs::{JobFilter, JobPage};
pub use outbox::{IssueJobStatus, OutboxRow, REPLY_KINDS};
pub use progress::ProgressIds;
pub use queue::{ClaimedJob, RetryOutcome};
pub use settle::UnsettledJob;
pub use steps::{JobUsage, StoredStep};
pub use tasks::NewTask;

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
    Db(#[from] sqlx::Error),
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
}

impl Store {
    /// Connects (creating a SQLite file and its directory on first start).
    /// Does not migrate; call [`Store::migrate`].
    pub async fn connect(url: &str, settings: &DatabaseConfig) -> Result<Store> {
        sqlx::any::install_default_drivers();
        if url.starts_with("sqlite:") {
            Self::connect_sqlite(url, settings).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = AnyConnectOptions::from_str(url)?.disable_statement_logging();
            let pool = AnyPoolOptions::new()
                .max_connections(settings.max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            Ok(Store {
                backend: Backend::Postgres,
                write: pool.clone(),
                read: pool,
                sqlite_intake: None,
            })
        } else {
            Err(StoreError::UnsupportedUrl)
        }
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
        })
    }

    /// Applies pending migrations. Safe when several processes start at once:
    /// PostgreSQL takes an advisory lock, SQLite a write lock.
    pub async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.write).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.write).await?,
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
        let done = sqlx::query(
            "UPDATE deliveries SET payload = NULL WHERE received_at < $1 AND payload IS NOT NULL",
        )
        .bind(cutoff_ms)
        .execute(&self.write)
        .await?;
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
    use super::*;

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
