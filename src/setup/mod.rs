//! `orchestrator setup`: registers the GitHub App from `app-manifest.yml`
//! with GitHub's manifest flow and writes its credentials.
//!
//! 1. A page on `http://127.0.0.1:<port>/` holds a form that POSTs the
//!    manifest (as JSON) to `https://github.com/settings/apps/new` (or the
//!    organization's page), with a random `state`.
//! 2. GitHub creates the App and sends the browser back to
//!    `http://127.0.0.1:<port>/callback?code=…&state=…`; a wrong `state` is
//!    refused.
//! 3. The code is converted with `POST /app-manifests/{code}/conversions`
//!    (no authentication; one use; within the hour) into the App id, its
//!    private key and webhook secret, which are written to the key file and
//!    `.env` (both mode 0600). Secrets are never printed.

pub mod files;
pub mod manifest;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::html::escape;

/// GitHub wants the three steps done within one hour.
pub const FLOW_TIMEOUT: Duration = Duration::from_secs(3600);

/// What `orchestrator setup` was asked to do.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// Public URL of this deployment's `POST /webhook`.
    pub webhook_url: String,
    /// The App's homepage; defaults to the webhook URL's origin.
    pub homepage_url: Option<String>,
    /// Overrides the manifest's `name` (App names are unique on GitHub).
    pub name: Option<String>,
    /// Register the App under this organization instead of the signed-in user.
    pub org: Option<String>,
    /// Local port of the page (0: any free port).
    pub port: u16,
    /// GitHub's web address (GitHub Enterprise Server: `https://HOST`).
    pub github_url: String,
    /// GitHub's REST base URL (GitHub Enterprise Server: `https://HOST/api/v3`).
    pub api_url: String,
    pub env_file: PathBuf,
    pub key_file: PathBuf,
    /// A manifest file instead of the built-in one.
    pub manifest: Option<PathBuf>,
    /// Replace an existing key file.
    pub force: bool,
}

/// What GitHub's conversion answers (the parts used here).
#[derive(Debug, Deserialize)]
pub struct Conversion {
    pub id: u64,
    pub slug: String,
    #[serde(default)]
    pub name: Option<String>,
    pub html_url: String,
    pub pem: SecretString,
    #[serde(default)]
    pub webhook_secret: Option<SecretString>,
}

/// The outcome, for the caller to print.
#[derive(Debug)]
pub struct Registered {
    pub app_id: u64,
    pub slug: String,
    pub name: String,
    pub install_url: String,
    pub env_file: PathBuf,
    pub key_file: PathBuf,
    pub removed_inline_key: bool,
    pub wrote_webhook_secret: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Listen { port: u16, source: std::io::Error },
    #[error("GitHub did not convert the code: {0}")]
    Conversion(String),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("the App was not created within an hour; run setup again")]
    TimedOut,
}

/// Runs the flow: `announce` is called once with the page's address; returns
/// when the App is registered and its credentials written.
pub async fn run(options: SetupOptions, announce: impl FnOnce(SocketAddr)) -> Result<Registered, SetupError> {
    check_options(&options)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port))
        .await
        .map_err(|source| SetupError::Listen {
            port: options.port,
            source,
        })?;
    let address = listener.local_addr().map_err(|source| SetupError::Listen {
        port: options.port,
        source,
    })?;
    let page = PageContext::new(&options, address)?;
    let (done_tx, mut done_rx) = mpsc::channel::<Result<Registered, SetupError>>(1);
    let shared = Arc::new(Flow {
        options,
        page,
        done: done_tx,
        finished: Mutex::new(false),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("orchestrator-setup/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| SetupError::Conversion(err.to_string()))?,
    });
    let app = Router::new()
        .route("/", get(page_handler))
        .route("/callback", get(callback_handler))
        .with_state(shared);
    let stop = tokio_util::sync::CancellationToken::new();
    let serve = axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned());
    let server = tokio::spawn(async move { serve.await });
    announce(address);
    let outcome = match tokio::time::timeout(FLOW_TIMEOUT, done_rx.recv()).await {
        Ok(Some(outcome)) => outcome,
        Ok(None) | Err(_) => Err(SetupError::TimedOut),
    };
    // The browser has its answer; let the connection finish, then stop.
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    outcome
}

fn check_options(options: &SetupOptions) -> Result<(), SetupError> {
    let http = |url: &str| url.starts_with("https://") || url.starts_with("http://");
    if !http(&options.webhook_url) {
        return Err(SetupError::Usage(format!(
            "--webhook-url must be an http(s) URL, got {:?}",
            options.webhook_url
        )));
    }
    for (flag, url) in [
        ("--github-url", &options.github_url),
        ("--api-url", &options.api_url),
    ] {
        if !http(url) {
            return Err(SetupError::Usage(format!(
                "{flag} must be an http(s) URL, got {url:?}"
            )));
        }
    }
    if let Some(org) = &options.org
        && (org.is_empty() || !org.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(SetupError::Usage(format!(
            "--org {org:?} is not an organization login"
        )));
    }
    if options.key_file.exists() && !options.force {
        return Err(SetupError::Usage(format!(
            "{} exists; pass --force to replace it or --key-file for another path",
            options.key_file.display()
        )));
    }
    Ok(())
}

/// The origin (`scheme://host[:port]`) of a URL.
fn origin(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    format!("{scheme}://{host}")
}

struct PageContext {
    manifest_json: String,
    form_action: String,
    state: String,
}

impl PageContext {
    fn new(options: &SetupOptions, address: SocketAddr) -> Result<PageContext, SetupError> {
        let yaml = match &options.manifest {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|err| SetupError::Usage(format!("cannot read {}: {err}", path.display())))?,
            None => manifest::BUILT_IN.to_string(),
        };
        let urls = manifest::ManifestUrls {
            webhook_url: options.webhook_url.clone(),
            homepage_url: options
                .homepage_url
                .clone()
                .unwrap_or_else(|| origin(&options.webhook_url)),
            redirect_url: format!("http://{address}/callback"),
        };
        let manifest = manifest::build(&yaml, &urls, options.name.as_deref())?;
        // 244 random bits; GitHub hands it back unchanged.
        let state = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let github = options.github_url.trim_end_matches('/');
        let form_action = match &options.org {
            Some(org) => format!("{github}/organizations/{org}/settings/apps/new?state={state}"),
            None => format!("{github}/settings/apps/new?state={state}"),
        };
        Ok(PageContext {
            manifest_json: manifest.to_string(),
            form_action,
            state,
        })
    }
}

struct Flow {
    options: SetupOptions,
    page: PageContext,
    done: mpsc::Sender<Result<Registered, SetupError>>,
    /// Set once a code has been accepted: later callbacks are refused.
    finished: Mutex<bool>,
    http: reqwest::Client,
}

async fn page_handler(State(flow): State<Arc<Flow>>) -> Html<String> {
    let owner = match &flow.options.org {
        Some(org) => format!("the organization <b>{}</b>", escape(org)),
        None => "your GitHub account".to_string(),
    };
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>orchestrator setup</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}}button{{font-size:1rem;padding:.6rem 1.2rem}}code{{background:#f3f3f3;padding:0 .2rem}}</style>
</head><body>
<h1>Create the orchestrator GitHub App</h1>
<p>This registers a GitHub App for {owner} with the permissions and events in <code>app-manifest.yml</code>;
GitHub will deliver webhooks to <code>{webhook}</code>.</p>
<p>GitHub asks you to confirm the App's name, then sends you back here and the App's id, private key
and webhook secret are written to <code>{env}</code> and <code>{key}</code>.</p>
<form id="manifest-form" action="{action}" method="post">
<input type="hidden" name="manifest" value="{manifest}">
<button type="submit">Create GitHub App</button>
</form>
</body></html>
"#,
        webhook = escape(&flow.options.webhook_url),
        env = escape(&flow.options.env_file.display().to_string()),
        key = escape(&flow.options.key_file.display().to_string()),
        action = escape(&flow.page.form_action),
        manifest = escape(&flow.page.manifest_json),
    ))
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
}

async fn callback_handler(State(flow): State<Arc<Flow>>, Query(query): Query<CallbackQuery>) -> Response {
    let state_ok = query
        .state
        .as_deref()
        .is_some_and(|s| same_secret(s.as_bytes(), flow.page.state.as_bytes()));
    if !state_ok {
        return page(
            StatusCode::BAD_REQUEST,
            "Wrong or missing state",
            "This link did not come from the form this setup served. Start again from its page.",
        );
    }
    let Some(code) = query.code.filter(|c| valid_code(c)) else {
        return page(
            StatusCode::BAD_REQUEST,
            "No code",
            "GitHub's answer carried no valid code.",
        );
    };
    {
        let Ok(mut finished) = flow.finished.lock() else {
            return page(StatusCode::INTERNAL_SERVER_ERROR, "Error", "internal error");
        };
        if *finished {
            return page(
                StatusCode::CONFLICT,
                "Already done",
                "This setup has already registered its App.",
            );
        }
        *finished = true;
    }
    let outcome = match convert(&flow, &code).await {
        Ok(conversion) => save(&flow.options, conversion),
        Err(err) => Err(err),
    };
    let response = match &outcome {
        Ok(registered) => page(
            StatusCode::OK,
            "GitHub App created",
            &format!(
                "App <b>{}</b> (id {}) is registered and its credentials are written. \
                 Next, <a href=\"{url}\">install it on a repository</a>: {url}",
                escape(&registered.name),
                registered.app_id,
                url = escape(&registered.install_url),
            ),
        ),
        Err(err) => page(StatusCode::BAD_GATEWAY, "Setup failed", &escape(&err.to_string())),
    };
    let _ = flow.done.send(outcome).await;
    response
}

/// Compares without an early exit (and without revealing the length).
fn same_secret(presented: &[u8], expected: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(presented), Sha256::digest(expected));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Codes are opaque; this keeps them safe to put in a URL path.
fn valid_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 256
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

async fn convert(flow: &Flow, code: &str) -> Result<Conversion, SetupError> {
    let url = format!(
        "{}/app-manifests/{code}/conversions",
        flow.options.api_url.trim_end_matches('/')
    );
    let response = flow
        .http
        .post(&url)
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28")
        .send()
        .await
        .map_err(|err| SetupError::Conversion(format!("cannot reach {}: {err}", flow.options.api_url)))?;
    let status = response.status();
    if !status.is_success() {
        // Error answers carry GitHub's message, never credentials.
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let message = body["message"].as_str().unwrap_or("no message");
        return Err(SetupError::Conversion(format!(
            "{status}: {message} (a code works once and expires after an hour; run setup again)"
        )));
    }
    response
        .json::<Conversion>()
        .await
        .map_err(|err| SetupError::Conversion(format!("unexpected answer: {err}")))
}

fn save(options: &SetupOptions, conversion: Conversion) -> Result<Registered, SetupError> {
    let write_error = |path: &PathBuf| {
        let path = path.clone();
        move |source| SetupError::Write { path, source }
    };
    files::write_private(&options.key_file, conversion.pem.expose_secret().as_bytes())
        .map_err(write_error(&options.key_file))?;
    let existing = match std::fs::read_to_string(&options.env_file) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(SetupError::Write {
                path: options.env_file.clone(),
                source,
            });
        }
    };
    let app_id = conversion.id.to_string();
    let key_path = options.key_file.display().to_string();
    let mut updates = vec![
        (files::APP_ID_VAR, app_id.as_str()),
        (files::KEY_PATH_VAR, key_path.as_str()),
    ];
    if let Some(secret) = &conversion.webhook_secret {
        updates.push((files::WEBHOOK_SECRET_VAR, secret.expose_secret()));
    }
    let header = format!("GitHub App {} (written by orchestrator setup)", conversion.slug);
    let (text, removed_inline_key) = files::updated_dotenv(&existing, &updates, &header);
    files::write_private(&options.env_file, text.as_bytes()).map_err(write_error(&options.env_file))?;
    Ok(Registered {
        app_id: conversion.id,
        name: conversion.name.clone().unwrap_or_else(|| conversion.slug.clone()),
        install_url: format!("{}/installations/new", conversion.html_url.trim_end_matches('/')),
        slug: conversion.slug,
        env_file: options.env_file.clone(),
        key_file: options.key_file.clone(),
        removed_inline_key,
        wrote_webhook_secret: conversion.webhook_secret.is_some(),
    })
}

fn page(status: StatusCode, title: &str, body_html: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body style=\"font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto\">\
         <h1>{title}</h1><p>{body_html}</p></body></html>",
        title = escape(title),
    );
    (status, Html(html)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_codes() {
        assert_eq!(
            origin("https://orch.example.com:8443/webhook?x"),
            "https://orch.example.com:8443"
        );
        assert_eq!(origin("http://h"), "http://h");
        assert!(valid_code("a1B2-c_3"));
        assert!(!valid_code("../app"));
        assert!(!valid_code(""));
    }
}
