//! Redelivery of webhook deliveries that failed: GitHub never redelivers on
//! its own, so a delivery that met a restart, a deploy or an outage would be
//! lost without this.
//!
//! At start and then every [`INTERVAL`], the App's recent deliveries
//! (`GET /app/hook/deliveries`, newest first) are read back to [`WINDOW`]
//! ago. A delivery that did not get a 2xx answer, and whose id intake has not
//! recorded since (a later redelivery may have succeeded), is redelivered
//! (`POST /app/hook/deliveries/{id}/attempts`), once per process. A
//! redelivered duplicate is harmless: intake records each delivery id once.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::github::{GitHub, GitHubError, HookDelivery};
use crate::store::Store;

/// How often failed deliveries are looked for.
pub const INTERVAL: Duration = Duration::from_secs(600);

/// How far back deliveries are looked at.
pub const WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Pages of 100 deliveries read at most per pass.
const MAX_PAGES: usize = 20;

/// Finds and redelivers failed webhook deliveries.
pub struct Redeliverer {
    store: Store,
    github: GitHub,
    /// GitHub's delivery ids already redelivered by this process.
    attempted: Mutex<HashSet<u64>>,
}

impl Redeliverer {
    pub fn new(store: Store, github: GitHub) -> Redeliverer {
        Redeliverer {
            store,
            github,
            attempted: Mutex::new(HashSet::new()),
        }
    }

    /// One pass; returns how many deliveries were redelivered.
    pub async fn run_once(&self) -> Result<usize, GitHubError> {
        let oldest = chrono::Utc::now() - chrono::Duration::from_std(WINDOW).unwrap_or_default();
        let mut cursor: Option<String> = None;
        let mut redelivered = 0;
        for _ in 0..MAX_PAGES {
            let page = self.github.webhook_deliveries(cursor.as_deref()).await?;
            let mut reached_the_window = false;
            for delivery in &page.deliveries {
                if delivered_before(delivery, oldest) {
                    reached_the_window = true;
                    break;
                }
                if self.needs_redelivery(delivery).await {
                    self.github.redeliver(delivery.id).await?;
                    self.remember(delivery.id);
                    tracing::info!(guid = %delivery.guid, event = %delivery.event, "failed delivery redelivered");
                    redelivered += 1;
                }
            }
            cursor = page.next_cursor;
            if reached_the_window || cursor.is_none() {
                break;
            }
        }
        Ok(redelivered)
    }

    /// Runs a pass at start and every [`INTERVAL`] until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        crate::poll::every("redelivery pass", INTERVAL, &shutdown, || async {
            let n = self.run_once().await?;
            if n > 0 {
                tracing::info!(redelivered = n, "redelivery pass done");
            }
            Ok::<_, GitHubError>(())
        })
        .await;
    }

    async fn needs_redelivery(&self, delivery: &HookDelivery) -> bool {
        if (200..300).contains(&delivery.status_code) || self.attempted(delivery.id) {
            return false;
        }
        // Recorded by intake since (another attempt went through): nothing lost.
        !matches!(self.store.delivery_outcome(&delivery.guid).await, Ok(Some(_)))
    }

    fn attempted(&self, id: u64) -> bool {
        self.attempted
            .lock()
            .map(|set| set.contains(&id))
            .unwrap_or(false)
    }

    fn remember(&self, id: u64) {
        if let Ok(mut set) = self.attempted.lock() {
            set.insert(id);
        }
    }
}

fn delivered_before(delivery: &HookDelivery, oldest: chrono::DateTime<chrono::Utc>) -> bool {
    chrono::DateTime::parse_from_rfc3339(&delivery.delivered_at)
        .map(|at| at.with_timezone(&chrono::Utc) < oldest)
        .unwrap_or(false)
}
