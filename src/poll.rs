//! The loop shared by the background workers that poll the database (the
//! outbox sender, the control applier, the redelivery pass): run a pass,
//! log its failure, wait, until shutdown.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Runs `pass` now and then every `interval` until `shutdown`; a failed pass
/// is logged under `what` and retried at the next tick.
pub async fn every<F, Fut, T, E>(what: &str, interval: Duration, shutdown: &CancellationToken, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Display,
{
    loop {
        if let Err(err) = pass().await {
            tracing::warn!(error = %err, "{what} failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
