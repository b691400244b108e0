//! The web dashboard: server-rendered pages over the store, behind the API
//! token (a login form sets a signed session cookie; see `session`).
//!
//! - `GET /` jobs, filtered by status and repository, in pages;
//! - `GET /dashboard/jobs/{id}` one job: plan, steps with diffs and context
//!   diagnostics, costs, links, the event log (live over server-sent events
//!   from `GET /dashboard/jobs/{id}/events`), Cancel and Retry;
//! - `GET /dashboard/installations`;
//! - `GET|POST /login`, `POST /logout`; stylesheet and script under
//!   `/dashboard/assets/`.
//!
//! Every `POST` but the login needs the session's CSRF token and a same-origin
//! `Origin`/`Referer`; the login needs the latter.

mod artifacts;
mod html;
mod pages;
mod session;
mod stream;

use axum::Extension;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};
use serde::Deserialize;

use super::AppState;
use super::api::{decode_cursor, encode_cursor};
use crate::jobs::{JobStatus, now_millis};
use crate::store::{JobFilter, RetryOutcome};
use session::{Session, SessionKey};

/// Jobs per page of the list.
const PAGE_SIZE: u32 = 50;

/// The dashboard's routes, to be merged into the server's router.
pub(super) fn routes(state: AppState) -> Router<AppState> {
    let protected = Router::new()
        .route("/", get(jobs_page))
        .route("/dashboard/jobs/{id}", get(job_page))
        .route("/dashboard/jobs/{id}/events", get(stream::job_events))
        .route("/dashboard/jobs/{id}/cancel", post(cancel))
        .route("/dashboard/jobs/{id}/retry", post(retry))
        .route("/dashboard/installations", get(installations_page))
        .route("/logout", post(logout))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            session::require_session,
        ));
    // Login attempts have their own, stricter per-address limit (`[api]`).
    let limited_login = login.layer(middleware::from_fn_with_state(
        state.rate_limits.login.clone(),
        super::rate_limit::enforce,
    ));
    Router::new()
        .route("/login", get(login_form).post(limited_login))
        .route(html::STYLE_PATH, get(style))
        .route(html::SCRIPT_PATH, get(script))
        .merge(protected)
}

/// The session's key; present whenever a session passed the middleware.
fn key(state: &AppState) -> Result<SessionKey, Refusal> {
    session::key_of(state).ok_or_else(|| session::login_redirect("/").into())
}

fn internal(err: crate::store::StoreError) -> Refusal {
    tracing::error!(error = %err, "dashboard: store error");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        html::error_page(
            "Something went wrong",
            "The database could not be read; see the server log.",
        ),
    )
        .into_response()
        .into()
}

fn not_found(what: &str) -> Refusal {
    (StatusCode::NOT_FOUND, html::error_page("Not found", what))
        .into_response()
        .into()
}

/// A page that refuses a request or explains a failure (boxed: a response is large).
pub struct Refusal(Box<Response>);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl From<Response> for Refusal {
    fn from(response: Response) -> Refusal {
        Refusal(Box::new(response))
    }
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    status: Option<String>,
    repo: Option<String>,
    cursor: Option<String>,
}

async fn jobs_page(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(q): Query<ListQuery>,
) -> Result<Response, Refusal> {
    let key = key(&state)?;
    let status = q
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .and_then(JobStatus::parse);
    let repo = q.repo.clone().filter(|r| !r.is_empty());
    let cursor = q.cursor.as_deref().and_then(decode_cursor);
    let filter = JobFilter {
        status,
        repo: repo.clone(),
        limit: PAGE_SIZE,
        cursor: cursor.clone(),
    };
    let page = state.store.job_records(&filter).await.map_err(internal)?;
    let repositories = state.store.job_repositories().await.map_err(internal)?;
    let view = pages::JobsList {
        jobs: &page.jobs,
        status,
        repo: repo.as_deref(),
        repositories: &repositories,
        next_cursor: page.next_cursor.map(|(at, id)| encode_cursor(at, &id)),
        paged: cursor.is_some(),
        now: now_millis(),
    };
    Ok(pages::jobs_list(&view, &session.csrf_token(&key)))
}

#[derive(Debug, Default, Deserialize)]
struct JobQuery {
    notice: Option<String>,
}

async fn job_page(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Query(q): Query<JobQuery>,
) -> Result<Response, Refusal> {
    let key = key(&state)?;
    let Some(job) = state.store.job_record(&id).await.map_err(internal)? else {
        return Err(not_found(&format!("There is no job {id}.")));
    };
    let steps = state.store.step_records(&id).await.map_err(internal)?;
    let plan = state.store.load_plan(&id).await.map_err(internal)?;
    let events = state.store.events_after(&id, 0, 1000).await.map_err(internal)?;
    let models = state.store.model_usage(&id).await.map_err(internal)?;
    let data_dir = state.config.data_dir.clone();
    let titles: Vec<String> = steps.iter().map(|s| s.title.clone()).collect();
    let job_id = id.clone();
    let contexts = tokio::task::spawn_blocking(move || {
        titles
            .iter()
            .map(|title| artifacts::context_summary(&data_dir, &job_id, title))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let repository = artifacts::commit_repository(&state.config.data_dir, &job);
    let mut diffs = Vec::with_capacity(steps.len());
    for step in &steps {
        let patch = match (&repository, &step.commit_sha) {
            (Some(repository), Some(sha)) => artifacts::commit_patch(repository.clone(), sha.clone()).await,
            _ => None,
        };
        diffs.push(patch);
    }
    let view = pages::JobView {
        job: &job,
        steps: &steps,
        plan: plan.as_deref(),
        events: &events,
        contexts: &contexts,
        diffs: &diffs,
        models: &models,
        github_web: &pages::github_web_base(&state.config.github.api_url),
        notice: q.notice.as_deref(),
        now: now_millis(),
    };
    Ok(pages::job_page(&view, &session.csrf_token(&key)))
}

async fn installations_page(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
) -> Result<Response, Refusal> {
    let key = key(&state)?;
    let installations = state.store.installation_records().await.map_err(internal)?;
    let web = pages::github_web_base(&state.config.github.api_url);
    Ok(pages::installations(
        &installations,
        &web,
        &session.csrf_token(&key),
    ))
}

/// The hidden field of every dashboard form.
#[derive(Debug, Default, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: Option<String>,
}

fn presented(form: &Result<Form<CsrfForm>, FormRejection>) -> Option<&str> {
    form.as_ref().ok().and_then(|Form(f)| f.csrf.as_deref())
}

/// Checks a job action's session and CSRF token, and that the job exists:
/// its status.
async fn job_action_status(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
    id: &str,
    form: &Result<Form<CsrfForm>, FormRejection>,
) -> Result<JobStatus, Refusal> {
    let key = key(state)?;
    session::check_csrf(headers, session, &key, presented(form))?;
    state
        .store
        .job_status(id)
        .await
        .map_err(internal)?
        .ok_or_else(|| not_found(&format!("There is no job {id}.")))
}

async fn cancel(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, Refusal> {
    let status = job_action_status(&state, &session, &headers, &id, &form).await?;
    let notice = if !status.is_active() {
        format!("The job has already ended ({}).", status.as_str())
    } else if state
        .store
        .request_cancel(&id, now_millis())
        .await
        .map_err(internal)?
    {
        tracing::info!(job = %id, "cancel requested from the dashboard");
        "Cancel requested: the job stops at its next checkpoint.".to_string()
    } else {
        "The job has already ended.".to_string()
    };
    Ok(back_to_job(&id, &notice))
}

async fn retry(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, Refusal> {
    job_action_status(&state, &session, &headers, &id, &form).await?;
    let notice = match state.store.retry_job(&id, now_millis()).await.map_err(internal)? {
        RetryOutcome::Queued { attempt } => {
            tracing::info!(job = %id, attempt, "retry requested from the dashboard");
            format!("Queued again as attempt {attempt}.")
        }
        RetryOutcome::NotRetryable => "Only failed or cancelled jobs can be retried.".to_string(),
        RetryOutcome::IssueBusy => {
            "Another job is active on this issue; retry it when that one ends.".to_string()
        }
    };
    Ok(back_to_job(&id, &notice))
}

fn back_to_job(id: &str, notice: &str) -> Response {
    Redirect::to(&format!(
        "/dashboard/jobs/{}?notice={}",
        session::percent_encode(id),
        session::percent_encode(notice)
    ))
    .into_response()
}

#[derive(Debug, Default, Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let logged_in = session::key_of(&state).is_some_and(|key| session::session_of(&headers, &key).is_some());
    let next = session::safe_next(q.next.as_deref());
    if logged_in {
        return Redirect::to(next).into_response();
    }
    pages::login(next, None, state.config.api_token.is_some())
}

#[derive(Debug, Default, Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let next = session::safe_next(form.next.as_deref()).to_string();
    let enabled = state.config.api_token.is_some();
    if !session::same_origin(&headers) {
        let page = pages::login(
            &next,
            Some("This form must be sent from the login page."),
            enabled,
        );
        return (StatusCode::FORBIDDEN, page).into_response();
    }
    let Some(expected) = &state.config.api_token else {
        return (StatusCode::UNAUTHORIZED, pages::login(&next, None, false)).into_response();
    };
    let token_ok = super::auth::tokens_equal(
        form.token.trim().as_bytes(),
        secrecy::ExposeSecret::expose_secret(expected).as_bytes(),
    );
    if !token_ok {
        tracing::warn!("dashboard login with a wrong token");
        let page = pages::login(&next, Some("That token is not right."), enabled);
        return (StatusCode::UNAUTHORIZED, page).into_response();
    }
    let key = SessionKey::derive(expected);
    let session = Session::start(state.config.dashboard.session_hours, now_millis());
    let mut response = Redirect::to(&next).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session::set_cookie(&state, &headers, &key, &session),
    );
    response
}

async fn logout(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, Refusal> {
    let key = key(&state)?;
    session::check_csrf(&headers, &session, &key, presented(&form))?;
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::clear_cookie(&state, &headers));
    Ok(response)
}

async fn style() -> Response {
    asset(html::STYLE, "text/css; charset=utf-8")
}

async fn script() -> Response {
    asset(html::SCRIPT, "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
