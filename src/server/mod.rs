//! The HTTP server: webhook, JSON API, health; graceful shutdown.

mod api;
pub(crate) mod auth;
mod dashboard;
mod error;
mod memory;
pub mod openapi;
pub mod rate_limit;
mod tasks;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::SecretString;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::store::{JobDefaults, Store};
use crate::webhook;

pub use error::ApiError;
pub use rate_limit::{RateLimit, RateLimits};

/// Requests that take longer are answered 408 (a webhook delivery normally
/// takes milliseconds; GitHub itself gives up after 10 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// JSON API bodies are small; anything above this is refused with 413.
pub const API_MAX_BODY_BYTES: usize = 1024 * 1024;

/// The App's own identity, learned at start; shared with intake's loop guard.
#[derive(Debug, Default)]
pub struct Identity {
    /// 0 until known.
    bot_user_id: AtomicU64,
    /// Slug, login and id (commit identity), once learned from GitHub.
    bot: std::sync::OnceLock<crate::github::BotIdentity>,
}

impl Identity {
    pub fn bot_user_id(&self) -> Option<u64> {
        match self.bot_user_id.load(Ordering::Relaxed) {
            0 => None,
            id => Some(id),
        }
    }

    pub fn set_bot_user_id(&self, id: u64) {
        self.bot_user_id.store(id, Ordering::Relaxed);
    }

    /// Stores what `GET /app` and `GET /users/<slug>[bot]` said (first one wins).
    pub fn set_bot(&self, bot: crate::github::BotIdentity) {
        self.set_bot_user_id(bot.user_id);
        let _ = self.bot.set(bot);
    }

    /// The bot's login and commit identity, once learned.
    pub fn bot(&self) -> Option<&crate::github::BotIdentity> {
        self.bot.get()
    }
}

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<Config>,
    pub webhook_secrets: Arc<[SecretString]>,
    pub identity: Arc<Identity>,
    pub job_defaults: JobDefaults,
    /// Per-client request limits of the JSON API and the login (`[api]`).
    pub rate_limits: RateLimits,
    /// Cancelled when the server shuts down: long-lived responses (the
    /// dashboard's event streams) end with it.
    pub shutdown: CancellationToken,
}

impl AppState {
    pub fn new(config: Arc<Config>, store: Store) -> AppState {
        let job_defaults = JobDefaults {
            budget_usd: config.budget.usd,
            budget_requests: config.budget.requests,
            budget_minutes: config.budget.minutes,
            dry_run: config.dry_run,
        };
        AppState {
            store,
            webhook_secrets: config.webhook_secrets().into(),
            rate_limits: RateLimits::from_config(&config.api),
            config,
            identity: Arc::new(Identity::default()),
            job_defaults,
            shutdown: CancellationToken::new(),
        }
    }
}

/// The whole router with its middleware.
pub fn router(state: AppState) -> Router {
    let webhook = Router::new()
        .route("/webhook", post(webhook::receive))
        .layer(DefaultBodyLimit::max(webhook::MAX_BODY_BYTES))
        .layer(RequestBodyLimitLayer::new(webhook::MAX_BODY_BYTES));
    let api = api::routes(state.clone())
        .layer(DefaultBodyLimit::max(API_MAX_BODY_BYTES))
        .layer(RequestBodyLimitLayer::new(API_MAX_BODY_BYTES));
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi::document))
        .route("/metrics", get(crate::metrics::serve))
        .merge(webhook)
        .merge(api)
        .merge(dashboard::routes(state.clone()))
        .fallback(not_found)
        .with_state(state)
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("internal error").into_response()
        }))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::map_response(error::ensure_json_errors))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

async fn health(State(state): State<AppState>) -> Response {
    let version = env!("CARGO_PKG_VERSION");
    let ping = tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await;
    match ping {
        Ok(Ok(())) => Json(json!({"ok": true, "db": "ok", "version": version})).into_response(),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "health check: database unreachable");
            unhealthy(version)
        }
        Err(_) => {
            tracing::warn!("health check: database timed out");
            unhealthy(version)
        }
    }
}

fn unhealthy(version: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"ok": false, "db": "error", "version": version})),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// Runs the server until `shutdown` is cancelled (or SIGTERM/SIGINT), then
/// stops accepting, lets in-flight requests finish and returns.
pub async fn serve(config: Arc<Config>, store: Store, shutdown: CancellationToken) -> anyhow::Result<()> {
    // A configured but unusable App key stops the start with a clear message.
    let github =
        crate::github::GitHub::from_config(&config.github).map_err(|err| anyhow::anyhow!("{err}"))?;
    crate::metrics::install();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on {}: {err}", config.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, "listening");
    let mut state = AppState::new(config.clone(), store.clone());
    state.shutdown = shutdown.clone();
    crate::memory::Memory::new(store.clone(), &config)
        .recover_archives()
        .await;
    if github.is_none() {
        tracing::warn!(
            "no GitHub App configured: local-checkout tasks run, GitHub jobs fail with that reason"
        );
    }
    let workers = spawn_workers(&config, &store, github.clone(), state.identity.clone(), &shutdown).await?;
    let settler = crate::settle::Settler::new(store.clone(), github.clone());
    tokio::spawn(settler.run(shutdown.clone()));
    let outbox = github.map(|github| {
        spawn_github_startup(github.clone(), state.identity.clone(), shutdown.clone());
        let redeliverer = crate::reconciler::Redeliverer::new(store.clone(), github.clone());
        tokio::spawn(redeliverer.run(shutdown.clone()));
        let control = crate::control::ControlApplier::new(store.clone(), github.clone());
        let control = tokio::spawn(control.run(shutdown.clone()));
        let sender =
            crate::outbox::OutboxSender::new(store.clone(), github, config.github.trigger_label.clone());
        (tokio::spawn(sender.run(shutdown.clone())), control)
    });
    let background = spawn_background(config, store.clone(), shutdown.clone());
    let signal_token = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        signal_token.cancel();
    });
    // The peer address keys the per-client rate limits.
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await?;
    shutdown.cancel();
    let _ = background.await;
    if let Some((outbox, control)) = outbox {
        let _ = outbox.await;
        let _ = control.await;
    }
    // Running jobs release their leases (or finish) within the grace period.
    let _ = workers.await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Learns the bot's identity in the background (GitHub may be unreachable for a while).
/// The worker pool that runs GitHub jobs.
async fn spawn_workers(
    config: &Arc<Config>,
    store: &Store,
    github: Option<crate::github::GitHub>,
    identity: Arc<Identity>,
    shutdown: &CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let pricing = crate::pricing::Pricing::load(config.pricing_path.as_deref())?;
    let policy = crate::agents::AgentsPolicy::load(config.agents_path.as_deref())?;
    let model = crate::llm::openai::OpenAiModel::with_defaults(
        &config.openai.base_url,
        config.openai.api_key.as_ref(),
    )?;
    let handler = crate::pipeline::github_job::GitHubJobs {
        store: store.clone(),
        config: config.clone(),
        github,
        model: Arc::new(model),
        pricing: Arc::new(pricing),
        policy: Arc::new(policy),
        workspaces: crate::workspace::Workspaces::new(&config.data_dir),
        identity,
    };
    let settings = crate::runner::PoolSettings::new(config.workers, Duration::from_secs(config.lease_secs));
    let mut pool = crate::runner::WorkerPool::new(store.clone(), Arc::new(handler), settings);
    match store.job_wakeups(shutdown.clone()).await {
        Ok(Some(wakeups)) => pool = pool.with_wakeups(wakeups),
        Ok(None) => {}
        Err(err) => tracing::warn!(error = %err, "cannot listen for queued jobs; workers poll"),
    }
    tracing::info!(workers = config.workers, "worker pool started");
    Ok(tokio::spawn(pool.run(shutdown.clone())))
}

fn spawn_github_startup(github: crate::github::GitHub, identity: Arc<Identity>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        crate::github::startup::learn_identity(&github, &identity, &shutdown).await;
    });
}

/// Housekeeping that runs beside the server: payload retention.
fn spawn_background(
    config: Arc<Config>,
    store: Store,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let retention_ms = i64::from(config.retention_days) * 24 * 3600 * 1000;
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    let cutoff = crate::jobs::now_millis() - retention_ms;
                    match store.prune_payloads(cutoff).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(pruned = n, "old delivery payloads pruned"),
                        Err(err) => tracing::warn!(error = %err, "pruning payloads failed"),
                    }
                }
            }
        }
    })
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
