//! Waking idle workers when a job is queued (PostgreSQL `LISTEN`/`NOTIFY`).
//!
//! The transaction that makes a job claimable — a delivery that creates it,
//! a task, a retry, a lease given back — also runs `pg_notify`, which
//! PostgreSQL delivers at commit to every replica listening on
//! [`JOBS_CHANNEL`]. Each replica keeps one listening connection of its own
//! and wakes its idle workers, so a job starts within milliseconds instead
//! of the next poll. Notifications are a hint: they are lost while the
//! listening connection is down, so workers keep polling as the fallback,
//! and after a reconnect every idle worker is woken once in case one was
//! missed. SQLite has one process and no such channel; its workers poll.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::intake::Tx;
use super::{Backend, Result, Store};

/// The channel queued jobs are announced on.
pub const JOBS_CHANNEL: &str = "orchestrator_jobs";

/// How long a listener waits before connecting again after losing its connection.
const RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// Announces, within `tx`, that a job became claimable (PostgreSQL only;
/// delivered when `tx` commits, dropped when it rolls back).
pub(super) async fn announce_job(backend: Backend, tx: &mut Tx) -> Result<()> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(JOBS_CHANNEL)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

impl Store {
    /// On PostgreSQL: listens for queued jobs and returns what fires on each
    /// (`Notify::notify_waiters`), until `shutdown`. Returns once the
    /// listener is subscribed, so a job queued afterwards is announced.
    /// `None` on SQLite.
    pub async fn job_wakeups(&self, shutdown: CancellationToken) -> Result<Option<Arc<Notify>>> {
        let Some(url) = self.postgres_url.clone() else {
            return Ok(None);
        };
        let listener = subscribe(&url).await?;
        let wakeups = Arc::new(Notify::new());
        tokio::spawn(listen(url, listener, wakeups.clone(), shutdown));
        Ok(Some(wakeups))
    }
}

async fn subscribe(url: &SecretString) -> Result<PgListener> {
    let mut listener = PgListener::connect(url.expose_secret()).await?;
    listener.listen(JOBS_CHANNEL).await?;
    Ok(listener)
}

async fn listen(
    url: SecretString,
    mut listener: PgListener,
    wakeups: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            received = listener.recv() => received,
        };
        match received {
            Ok(_) => wakeups.notify_waiters(),
            Err(err) => {
                tracing::warn!(error = %err, "job notifications interrupted; workers poll meanwhile");
                listener = loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(RECONNECT_DELAY) => {}
                    }
                    match subscribe(&url).await {
                        Ok(listener) => break listener,
                        Err(err) => tracing::warn!(error = %err, "cannot listen for job notifications yet"),
                    }
                };
                // Whatever was announced meanwhile is lost: look once.
                wakeups.notify_waiters();
            }
        }
    }
}
