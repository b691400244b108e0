//! The worker pool: claims jobs with a lease, keeps the lease alive, stops a
//! job promptly when it is cancelled, and records how each job ended.
//!
//! What a job *does* is a [`JobHandler`]; the pool owns the discipline around
//! it:
//! - a job is claimed with a lease (`ORCH_LEASE_SECS`) and a heartbeat renews
//!   it; a job whose worker died is claimed again after the lease expires and
//!   the handler resumes it from its last completed step;
//! - the heartbeat also reads the job's cancel flag, so `/orchestrate cancel`,
//!   the Cancel button or the API stop a job within [`CANCEL_POLL`] (the
//!   handler sees [`JobContext::cancel`] fire, including during an LLM call);
//! - a lost lease (another worker took the job) stops the handler too, and
//!   then nothing is recorded: the job is no longer ours;
//! - on shutdown no new job is claimed, running handlers see
//!   [`JobContext::shutdown`] and give their job back ([`JobEnd::Released`]),
//!   and whatever is still running after the grace period is released anyway;
//! - a panicking handler fails its job with an `internal` reason (its
//!   progress on GitHub is then settled by the reconciler, `settle.rs`);
//! - a job claimed with its cancellation already requested ends
//!   `cancelled` without running.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::jobs::{JobStatus, now_millis};
use crate::store::{ClaimedJob, Store, StoreError};

/// How often a running job's cancel flag is read (and at most how long a
/// cancelled job keeps running before its handler is told).
pub const CANCEL_POLL: Duration = Duration::from_secs(1);

/// How long an idle worker waits before looking for work again (on
/// PostgreSQL a queued job also wakes it at once).
pub const IDLE_POLL: Duration = Duration::from_millis(500);

/// How a handler's work on a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEnd {
    Succeeded,
    /// `reason` is `code: human text` (DESIGN §5).
    Failed {
        reason: String,
    },
    Cancelled {
        reason: String,
    },
    Rejected {
        reason: String,
    },
    /// Shutdown: the job is given back unfinished, to be claimed again.
    Released,
}

/// What a handler gets besides the job.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// Fires when the job must stop: cancelled by a user, or its lease lost.
    pub cancel: CancellationToken,
    /// Fires when the process is shutting down: stop at a safe point and
    /// return [`JobEnd::Released`].
    pub shutdown: CancellationToken,
    /// This worker's lease owner name (for logs and store calls).
    pub owner: String,
    /// How long a renewal of the lease lasts.
    pub lease: Duration,
}

impl JobContext {
    /// Renews the lease right before an effect others see (a push, a pull
    /// request): `true` when this worker still holds the job. When another
    /// worker has claimed it meanwhile (this one stalled past its lease),
    /// `cancel` fires and `false` comes back: the effect must not happen,
    /// the new holder does the work. The heartbeat finds a lost lease too,
    /// but only within a third of the lease; this closes the gap before
    /// anything is written to GitHub.
    pub async fn confirm_lease(&self, store: &Store, job_id: &str) -> Result<bool, StoreError> {
        let until = now_millis() + lease_ms(self.lease);
        let held = store.renew_lease(job_id, &self.owner, until).await?;
        if !held {
            tracing::warn!(
                job = job_id,
                "lease lost before an effect; stopping work on this job"
            );
            self.cancel.cancel();
        }
        Ok(held)
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The work a job does; implemented by the pipeline.
pub trait JobHandler: Send + Sync + 'static {
    fn run(&self, job: ClaimedJob, ctx: JobContext) -> BoxFuture<'_, JobEnd>;
}

/// The pool's settings.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub workers: u32,
    pub lease: Duration,
    /// How long running jobs get to release themselves on shutdown.
    pub grace: Duration,
    /// Prefix of lease owner names, unique per process.
    pub owner_prefix: String,
}

impl PoolSettings {
    pub fn new(workers: u32, lease: Duration) -> PoolSettings {
        PoolSettings {
            workers,
            lease,
            grace: Duration::from_secs(10),
            owner_prefix: format!("{}-{}", hostname(), uuid::Uuid::new_v4().simple()),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "orchestrator".into())
}

/// N workers over one store and one handler.
#[derive(Clone)]
pub struct WorkerPool {
    store: Store,
    handler: Arc<dyn JobHandler>,
    settings: PoolSettings,
    running: RunningJobs,
    /// Fires when a job is queued (PostgreSQL `NOTIFY`); polling stays the fallback.
    wakeups: Option<Arc<Notify>>,
}

/// The jobs this process is running. A worker that stalls past its lease
/// loses the job to the next claim, which may come from this same process
/// while the stalled run is still winding down (it notices at its next
/// heartbeat or lease check). The new run waits for the old one to end
/// instead of colliding with it in the job's worktree.
#[derive(Clone, Default)]
struct RunningJobs(Arc<Mutex<HashMap<String, Arc<AsyncMutex<()>>>>>);

impl RunningJobs {
    fn slot(&self, job_id: &str) -> Arc<AsyncMutex<()>> {
        let mut jobs = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.entry(job_id.to_string()).or_default().clone()
    }

    fn done(&self, job_id: &str, slot: Arc<AsyncMutex<()>>) {
        let mut jobs = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Slots are cloned under this lock: two references are the map's and ours.
        if Arc::strong_count(&slot) == 2 {
            jobs.remove(job_id);
        }
    }
}

impl WorkerPool {
    pub fn new(store: Store, handler: Arc<dyn JobHandler>, settings: PoolSettings) -> WorkerPool {
        WorkerPool {
            store,
            handler,
            settings,
            running: RunningJobs::default(),
            wakeups: None,
        }
    }

    /// Idle workers also wake when `wakeups` fires (see `Store::job_wakeups`).
    pub fn with_wakeups(mut self, wakeups: Arc<Notify>) -> WorkerPool {
        self.wakeups = Some(wakeups);
        self
    }

    /// Until a job may be claimable: the poll interval, or a wakeup.
    async fn idle(&self) {
        let woken = async {
            match &self.wakeups {
                Some(wakeups) => wakeups.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(IDLE_POLL) => {}
            _ = woken => {}
        }
    }

    /// Runs the workers until `shutdown` fires, then releases what is still
    /// running after the grace period.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut workers = JoinSet::new();
        for n in 0..self.settings.workers.max(1) {
            let pool = self.clone();
            let owner = format!("{}-w{n}", self.settings.owner_prefix);
            let shutdown = shutdown.clone();
            workers.spawn(async move { pool.worker_loop(owner, shutdown).await });
        }
        while workers.join_next().await.is_some() {}
    }

    async fn worker_loop(&self, owner: String, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            match self.run_one(&owner, &shutdown).await {
                Ok(true) => {}
                Ok(false) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = self.idle() => {}
                    }
                }
                Err(err) => {
                    tracing::error!(error = %err, "worker could not claim a job");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(IDLE_POLL * 4) => {}
                    }
                }
            }
        }
    }

    /// Claims and runs jobs until none is claimable; returns how many ran.
    /// Tests and `orchestrator run` use it instead of the polling loop.
    pub async fn run_until_idle(&self) -> Result<usize, StoreError> {
        let owner = format!("{}-idle", self.settings.owner_prefix);
        let shutdown = CancellationToken::new();
        let mut ran = 0;
        while self.run_one(&owner, &shutdown).await? {
            ran += 1;
        }
        Ok(ran)
    }

    /// Claims one job and runs it to its end; `false` when none was claimable.
    async fn run_one(&self, owner: &str, shutdown: &CancellationToken) -> Result<bool, StoreError> {
        let now = now_millis();
        let Some(job) = self
            .store
            .claim_job(owner, now + lease_ms(self.settings.lease), now)
            .await?
        else {
            return Ok(false);
        };
        if job.cancel_requested == 1 {
            // Cancelled while it waited (or while its dead worker's lease ran
            // out): it ends here, and the reconciler settles what GitHub shows.
            let reason = crate::settle::CANCELLED_WHILE_WAITING;
            if self
                .store
                .cancel_waiting_job(&job.id, Some(owner), reason, now_millis())
                .await?
            {
                tracing::info!(job = %job.id, "job cancelled before it ran");
                crate::metrics::job_ended(JobStatus::Cancelled, None);
            } else {
                self.store.release_lease(&job.id, owner).await?;
            }
            return Ok(true);
        }
        tracing::info!(job = %job.id, attempt = job.attempt, "job claimed");
        let ctx = JobContext {
            cancel: CancellationToken::new(),
            shutdown: shutdown.child_token(),
            owner: owner.to_string(),
            lease: self.settings.lease,
        };
        let lease = Lease {
            store: self.store.clone(),
            job_id: job.id.clone(),
            owner: owner.to_string(),
        };
        let heartbeat = tokio::spawn(lease.clone().keep_alive(self.settings.lease, ctx.cancel.clone()));
        let started = std::time::Instant::now();
        let slot = self.running.slot(&job.id);
        let end = {
            let earlier_run = slot.try_lock();
            let _alone = match earlier_run {
                Ok(guard) => guard,
                Err(_) => {
                    tracing::info!(job = %job.id, "an earlier run of this job is winding down here; waiting for it");
                    slot.lock().await
                }
            };
            self.run_handler(job, ctx.clone(), shutdown).await
        };
        self.running.done(&lease.job_id, slot);
        heartbeat.abort();
        lease.record(end, &ctx, started.elapsed()).await?;
        Ok(true)
    }

    /// Runs the handler in its own task (a panic fails the job, not the
    /// worker) and gives it the grace period after shutdown.
    async fn run_handler(&self, job: ClaimedJob, ctx: JobContext, shutdown: &CancellationToken) -> JobEnd {
        let handler = self.handler.clone();
        let span = tracing::info_span!("job", id = %job.id, attempt = job.attempt);
        let mut task = tokio::spawn(async move { handler.run(job, ctx).await }.instrument(span));
        let joined = tokio::select! {
            joined = &mut task => joined,
            _ = shutdown.cancelled() => {
                match tokio::time::timeout(self.settings.grace, &mut task).await {
                    Ok(joined) => joined,
                    Err(_) => {
                        task.abort();
                        return JobEnd::Released;
                    }
                }
            }
        };
        match joined {
            Ok(end) => end,
            Err(err) if err.is_panic() => {
                tracing::error!("job handler panicked");
                JobEnd::Failed {
                    reason: "internal: the worker crashed while running this job".into(),
                }
            }
            Err(_) => JobEnd::Released,
        }
    }
}

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2)
}

/// One claimed job's lease.
#[derive(Clone)]
struct Lease {
    store: Store,
    job_id: String,
    owner: String,
}

impl Lease {
    /// Renews the lease (every third of its length) and reads the cancel flag
    /// (every [`CANCEL_POLL`]); fires `cancel` when the job is cancelled or
    /// the lease is lost.
    async fn keep_alive(self, lease: Duration, cancel: CancellationToken) {
        let renew_every = (lease / 3).max(Duration::from_millis(100));
        let mut since_renewal = Duration::ZERO;
        loop {
            tokio::time::sleep(CANCEL_POLL.min(renew_every)).await;
            since_renewal += CANCEL_POLL.min(renew_every);
            if since_renewal >= renew_every {
                since_renewal = Duration::ZERO;
                let until = now_millis() + lease_ms(lease);
                match self.store.renew_lease(&self.job_id, &self.owner, until).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(job = %self.job_id, "lease lost; stopping work on this job");
                        cancel.cancel();
                        return;
                    }
                    Err(err) => tracing::warn!(job = %self.job_id, error = %err, "lease renewal failed"),
                }
            }
            if let Ok(true) = self.store.cancel_requested(&self.job_id).await {
                cancel.cancel();
            }
        }
    }

    /// Records how the job ended, if the lease is still ours.
    async fn record(&self, end: JobEnd, ctx: &JobContext, ran: Duration) -> Result<(), StoreError> {
        let (status, reason) = match end {
            JobEnd::Succeeded => (JobStatus::Succeeded, None),
            JobEnd::Failed { reason } => (JobStatus::Failed, Some(reason)),
            JobEnd::Cancelled { reason } => (JobStatus::Cancelled, Some(reason)),
            JobEnd::Rejected { reason } => (JobStatus::Rejected, Some(reason)),
            JobEnd::Released => {
                self.store.release_lease(&self.job_id, &self.owner).await?;
                tracing::info!(job = %self.job_id, "job released");
                return Ok(());
            }
        };
        let recorded = self
            .store
            .set_job_status(&self.job_id, &self.owner, status, reason.as_deref(), now_millis())
            .await?;
        if recorded {
            tracing::info!(job = %self.job_id, status = status.as_str(), reason = reason.as_deref().unwrap_or(""), "job ended");
            crate::metrics::job_ended(status, Some(ran));
        } else {
            tracing::warn!(job = %self.job_id, owner = %ctx.owner, "job ended after its lease was lost; not recorded");
        }
        Ok(())
    }
}
