//! Configuration: defaults < `orchestrator.toml` (or `--config PATH`) < `.env` in
//! the working directory < the real environment.
//!
//! Every setting has a key in `orchestrator.toml` and an environment override
//! `ORCH_<SECTION>__<KEY>` (`ORCH_BUDGET__USD` is `budget.usd`); top-level keys
//! are `ORCH_<KEY>`. The well-known names in [`WELL_KNOWN_ENV`] are read as they
//! are, without the prefix. The environment is read once, here, into a validated
//! [`Config`]; nothing else in the program reads it again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

/// Environment names read without the `ORCH_` prefix, and the key each sets.
pub const WELL_KNOWN_ENV: &[(&str, &str)] = &[
    ("DATABASE_URL", "database_url"),
    ("GITHUB_APP_ID", "github.app_id"),
    ("GITHUB_PRIVATE_KEY_PATH", "github.private_key_path"),
    ("GITHUB_PRIVATE_KEY", "github.private_key"),
    ("GITHUB_WEBHOOK_SECRET", "github.webhook_secret"),
    ("GITHUB_API_URL", "github.api_url"),
    ("OPENAI_API_KEY", "openai.api_key"),
    ("OPENAI_BASE_URL", "openai.base_url"),
    ("MODEL_CTO", "models.cto"),
    ("MODEL_CODER", "models.coder"),
    ("EMBEDDING_MODEL", "models.embedding"),
];

/// The file read when `--config` is not given (it may be absent).
pub const DEFAULT_CONFIG_FILE: &str = "orchestrator.toml";

/// The whole, validated configuration of one process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: SecretString,
    /// Mirrors, worktrees, indexes, `artifacts/` and `memory/` live here.
    pub data_dir: PathBuf,
    /// Bearer token for the JSON API and the dashboard; without it they answer 401.
    pub api_token: Option<SecretString>,
    /// Bearer token for `/metrics`; without it `/metrics` is open.
    pub metrics_token: Option<SecretString>,
    /// Jobs run at once per process.
    pub workers: u32,
    /// A worker's lease in seconds; a job whose worker died is claimed again
    /// this long after its last heartbeat.
    pub lease_secs: u64,
    /// Plan, context and diffs are recorded; nothing is pushed or opened.
    pub dry_run: bool,
    /// Raw delivery payloads older than this many days are pruned.
    pub retention_days: u32,
    /// Overrides the built-in `pricing.json`.
    pub pricing_path: Option<PathBuf>,
    /// Overrides the built-in `AGENTS.md`.
    pub agents_path: Option<PathBuf>,
    pub github: GithubConfig,
    pub openai: OpenAiConfig,
    pub models: ModelsConfig,
    pub budget: BudgetConfig,
    pub coder: CoderConfig,
    pub policy: PolicyConfig,
    pub context: ContextConfig,
    pub memory: MemoryConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub api: ApiConfig,
    pub dashboard: DashboardConfig,
}

/// The GitHub App's identity and webhook settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    pub app_id: Option<u64>,
    pub private_key_path: Option<PathBuf>,
    pub private_key: Option<SecretString>,
    /// Without it the webhook refuses every delivery with 401.
    pub webhook_secret: Option<SecretString>,
    /// Older secrets still accepted, so a secret can be rotated without downtime.
    #[serde(deserialize_with = "comma_list")]
    pub previous_webhook_secrets: Vec<SecretString>,
    /// The label that starts a job.
    pub trigger_label: String,
    /// REST base URL; may carry a path prefix (GitHub Enterprise Server: `/api/v3`).
    pub api_url: String,
}

/// Any OpenAI-compatible endpoint (OpenAI, Ollama, vLLM, …).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    pub api_key: Option<SecretString>,
    pub base_url: String,
}

/// The model each agent role uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    pub cto: String,
    pub coder: String,
    /// No embedding model means BM25 ranking only, with no network.
    pub embedding: Option<String>,
}

/// Per-job limits and the daily cap per installation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    pub usd: f64,
    pub requests: u32,
    pub minutes: u32,
    pub daily_usd_per_installation: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoderConfig {
    /// Coder attempts per step, the first included, before the step fails.
    pub max_attempts: u32,
}

/// How finished work reaches the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeStrategy {
    /// Open a pull request (the default).
    Pr,
    /// Push to the default branch; only with `policy.allow_direct_push`.
    DirectPush,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub merge_strategy: MergeStrategy,
    pub allow_direct_push: bool,
}

/// The context engine's token budget and ranking knobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextConfig {
    pub budget_tokens: u32,
    pub output_reserve_tokens: u32,
    pub hard_cap_tokens: u32,
    pub compaction_ratio: f64,
    pub top_k: u32,
    pub min_score: f64,
    pub max_files: u32,
    pub snippet_tokens: u32,
    pub history_limit: u32,
    pub max_file_bytes: u64,
    /// A folder of Markdown/text offered as external documentation.
    pub docs_dir: Option<PathBuf>,
}

/// Per-job memory limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    pub max_items: u32,
    pub max_item_bytes: u32,
    pub max_total_bytes: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Connections in the pool (PostgreSQL; SQLite uses one writer and this many readers).
    pub max_connections: u32,
    /// Connections kept open even when idle (PostgreSQL).
    pub min_connections: u32,
    /// How long a query waits for a free connection before it fails (PostgreSQL).
    pub acquire_timeout_secs: u64,
    /// An idle connection above `min_connections` is closed after this long; 0 = never (PostgreSQL).
    pub idle_timeout_secs: u64,
    /// PostgreSQL `statement_timeout` of every pooled connection, in milliseconds; 0 = none.
    pub statement_timeout_ms: u64,
    /// Retries of a short transaction (claims, intake, outbox, leases) after a
    /// transient error: serialization failure, deadlock, dropped connection. 0 = none.
    pub retry_attempts: u32,
    /// The first retry's delay in milliseconds; it doubles (with jitter) up to 2 s.
    pub retry_backoff_ms: u64,
    /// SQLite `synchronous`: `normal` survives a killed process, `full` also a power loss.
    pub sqlite_synchronous: SqliteSynchronous,
}

/// Request rate limits of the JSON API and the dashboard login, per client
/// (GCRA: `burst` requests at once, refilled at `rate_per_minute`). The
/// webhook is never limited: GitHub does not retry a refused delivery.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Sustained JSON API requests per minute per client address (and per
    /// bearer token); 0 turns the limit off.
    pub rate_per_minute: u32,
    /// JSON API requests a client may send at once before the rate applies.
    pub burst: u32,
    /// Login attempts per minute per client address; 0 turns the limit off.
    pub login_rate_per_minute: u32,
    pub login_burst: u32,
    /// Take the client address from the last `X-Forwarded-For` entry (the one
    /// the reverse proxy in front appended). Only behind a proxy that sets it.
    pub trust_forwarded_for: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    Normal,
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `orchestrator=debug`; `RUST_LOG` wins.
    pub level: String,
}

/// The web dashboard's session cookie.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardConfig {
    /// When the session cookie carries `Secure`.
    pub secure_cookie: SecureCookie,
    /// How long a dashboard login lasts, in hours.
    pub session_hours: u32,
}

/// `auto`: `Secure` when the login request came over HTTPS (a reverse proxy's
/// `X-Forwarded-Proto: https` or `Forwarded: proto=https`); `always`; `never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecureCookie {
    Auto,
    Always,
    Never,
}

/// The built-in defaults, as TOML so they read like the example file.
const DEFAULTS: &str = r#"
listen = "127.0.0.1:3000"
database_url = "sqlite://data/orchestrator.db"
data_dir = "data"
workers = 4
lease_secs = 30
dry_run = false
retention_days = 30

[github]
previous_webhook_secrets = []
trigger_label = "orchestrate"
api_url = "https://api.github.com"

[openai]
base_url = "https://api.openai.com/v1"

[models]
cto = "gpt-4.1-mini"
coder = "gpt-4.1"

[budget]
usd = 5.0
requests = 300
minutes = 720
daily_usd_per_installation = 50.0

[coder]
max_attempts = 3

[policy]
merge_strategy = "pr"
allow_direct_push = false

[context]
budget_tokens = 64000
output_reserve_tokens = 8000
hard_cap_tokens = 70000
compaction_ratio = 0.6
top_k = 12
min_score = 0.12
max_files = 200
snippet_tokens = 2000
history_limit = 10
max_file_bytes = 1048576

[memory]
max_items = 2000
max_item_bytes = 20000
max_total_bytes = 4000000

[database]
max_connections = 8
min_connections = 0
acquire_timeout_secs = 10
idle_timeout_secs = 600
statement_timeout_ms = 30000
retry_attempts = 3
retry_backoff_ms = 50
sqlite_synchronous = "normal"

[log]
format = "human"
level = "info"

[api]
rate_per_minute = 600
burst = 100
login_rate_per_minute = 10
login_burst = 5
trust_forwarded_for = false

[dashboard]
secure_cookie = "auto"
session_hours = 12
"#;

/// Why configuration could not be loaded; the message names the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {message}")]
    DotEnv {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("invalid configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Where configuration comes from; tests pass their own environment map.
#[derive(Debug, Default, Clone)]
pub struct ConfigSources {
    /// `--config PATH`; when absent `orchestrator.toml` is read if it exists.
    pub file: Option<PathBuf>,
    /// The `.env` file to read (absent file = nothing).
    pub dotenv: Option<PathBuf>,
    /// The process environment (or a test's stand-in).
    pub env: HashMap<String, String>,
}

impl ConfigSources {
    /// The real sources of a process started in the current directory.
    pub fn from_process(file: Option<PathBuf>) -> Self {
        Self {
            file,
            dotenv: Some(PathBuf::from(".env")),
            env: std::env::vars().collect(),
        }
    }
}

impl Config {
    /// Loads and validates the configuration.
    pub fn load(sources: &ConfigSources) -> Result<Self, ConfigError> {
        let env = merged_env(sources)?;
        let mut builder =
            config::Config::builder().add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        builder = match &sources.file {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError::Read {
                        path: path.clone(),
                        source: std::io::Error::from(std::io::ErrorKind::NotFound),
                    });
                }
                builder.add_source(
                    config::File::from(path.as_path())
                        .format(config::FileFormat::Toml)
                        .required(true),
                )
            }
            None => builder.add_source(config::File::with_name(DEFAULT_CONFIG_FILE).required(false)),
        };
        let prefixed: config::Map<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("ORCH_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("ORCH")
                .prefix_separator("_")
                .separator("__")
                .source(Some(prefixed)),
        );
        for (name, key) in WELL_KNOWN_ENV {
            if let Some(value) = env.get(*name) {
                builder = builder.set_override(*key, value.as_str())?;
            }
        }
        let mut config: Config = builder.build()?.try_deserialize()?;
        config.drop_empty_secrets();
        config.validate()?;
        Ok(config)
    }

    /// An empty secret is no secret: `GITHUB_WEBHOOK_SECRET=` must not make
    /// the empty string a valid HMAC key.
    fn drop_empty_secrets(&mut self) {
        fn clear(secret: &mut Option<SecretString>) {
            if secret
                .as_ref()
                .is_some_and(|s| s.expose_secret().trim().is_empty())
            {
                *secret = None;
            }
        }
        clear(&mut self.api_token);
        clear(&mut self.metrics_token);
        clear(&mut self.github.private_key);
        clear(&mut self.github.webhook_secret);
        clear(&mut self.openai.api_key);
        if self
            .github
            .private_key_path
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            self.github.private_key_path = None;
        }
    }

    /// Checks what serde cannot: ranges, combinations and formats.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let db = self.database_url.expose_secret();
        if !(db.starts_with("sqlite:") || db.starts_with("postgres://") || db.starts_with("postgresql://")) {
            return invalid("DATABASE_URL must start with sqlite:, postgres:// or postgresql://".into());
        }
        if self.workers == 0 || self.workers > 256 {
            return invalid(format!("workers must be 1..=256, got {}", self.workers));
        }
        if self.lease_secs < 5 {
            return invalid(format!("lease_secs must be at least 5, got {}", self.lease_secs));
        }
        if !(self.budget.usd.is_finite() && self.budget.usd > 0.0) {
            return invalid(format!("budget.usd must be > 0, got {}", self.budget.usd));
        }
        if !(self.budget.daily_usd_per_installation.is_finite()
            && self.budget.daily_usd_per_installation > 0.0)
        {
            return invalid("budget.daily_usd_per_installation must be > 0".into());
        }
        if self.budget.requests == 0 || self.budget.minutes == 0 {
            return invalid("budget.requests and budget.minutes must be > 0".into());
        }
        if self.coder.max_attempts == 0 {
            return invalid("coder.max_attempts must be at least 1".into());
        }
        if self.policy.merge_strategy == MergeStrategy::DirectPush && !self.policy.allow_direct_push {
            return invalid(
                "policy.merge_strategy = \"direct_push\" needs policy.allow_direct_push = true".into(),
            );
        }
        if self.github.trigger_label.trim().is_empty() {
            return invalid("github.trigger_label must not be empty".into());
        }
        for (name, url) in [
            ("GITHUB_API_URL", &self.github.api_url),
            ("OPENAI_BASE_URL", &self.openai.base_url),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return invalid(format!("{name} must be an http(s) URL, got {url:?}"));
            }
        }
        let c = &self.context;
        if c.output_reserve_tokens >= c.budget_tokens {
            return invalid("context.output_reserve_tokens must be below context.budget_tokens".into());
        }
        if c.hard_cap_tokens < c.budget_tokens - c.output_reserve_tokens {
            return invalid(
                "context.hard_cap_tokens must cover budget_tokens - output_reserve_tokens".into(),
            );
        }
        if !(0.0..=1.0).contains(&c.compaction_ratio) || !(0.0..=1.0).contains(&c.min_score) {
            return invalid("context.compaction_ratio and context.min_score must be within 0..=1".into());
        }
        if self.github.private_key.is_some() && self.github.private_key_path.is_some() {
            return invalid("set GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH, not both".into());
        }
        if self.dashboard.session_hours == 0 || self.dashboard.session_hours > 24 * 30 {
            return invalid("dashboard.session_hours must be 1..=720".into());
        }
        if (self.api.rate_per_minute > 0 && self.api.burst == 0)
            || (self.api.login_rate_per_minute > 0 && self.api.login_burst == 0)
        {
            return invalid("api.burst and api.login_burst must be at least 1 when their rate is set".into());
        }
        let d = &self.database;
        if d.max_connections == 0 {
            return invalid("database.max_connections must be at least 1".into());
        }
        if d.min_connections > d.max_connections {
            return invalid(format!(
                "database.min_connections ({}) must not exceed database.max_connections ({})",
                d.min_connections, d.max_connections
            ));
        }
        if d.acquire_timeout_secs == 0 {
            return invalid("database.acquire_timeout_secs must be at least 1".into());
        }
        if d.retry_attempts > 10 {
            return invalid(format!(
                "database.retry_attempts must be 0..=10, got {}",
                d.retry_attempts
            ));
        }
        Ok(())
    }

    /// Every webhook secret currently accepted, newest first.
    pub fn webhook_secrets(&self) -> Vec<SecretString> {
        self.github
            .webhook_secret
            .iter()
            .chain(self.github.previous_webhook_secrets.iter())
            .cloned()
            .collect()
    }

    /// Settings that are valid but leave part of the product unusable.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.github.webhook_secret.is_none() {
            out.push("GITHUB_WEBHOOK_SECRET is not set: POST /webhook answers 401".into());
        }
        if self.api_token.is_none() {
            out.push("ORCH_API_TOKEN is not set: the JSON API answers 401".into());
        }
        if self.github.app_id.is_none() {
            out.push("GITHUB_APP_ID is not set: jobs cannot act on GitHub".into());
        }
        if self.github.private_key.is_none() && self.github.private_key_path.is_none() {
            out.push("neither GITHUB_PRIVATE_KEY nor GITHUB_PRIVATE_KEY_PATH is set".into());
        }
        if self.openai.api_key.is_none() {
            out.push("OPENAI_API_KEY is not set (fine for a local endpoint that needs none)".into());
        }
        out
    }

    /// The effective settings as TOML, with every secret shown as `[REDACTED]`.
    pub fn redacted_toml(&self) -> String {
        redacted::render(self)
    }
}

/// `.env` entries overlaid by the real environment (the real one wins).
fn merged_env(sources: &ConfigSources) -> Result<HashMap<String, String>, ConfigError> {
    let mut env = match &sources.dotenv {
        Some(path) if path.exists() => read_dotenv(path)?,
        _ => HashMap::new(),
    };
    env.extend(sources.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(env)
}

/// Reads `KEY=VALUE` lines (optionally `export KEY=…`, single or double quotes,
/// `#` comments). It never touches the process environment.
pub fn read_dotenv(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_dotenv(&text).map_err(|(line, message)| ConfigError::DotEnv {
        path: path.to_path_buf(),
        line,
        message,
    })
}

fn parse_dotenv(text: &str) -> Result<HashMap<String, String>, (usize, String)> {
    let mut out = HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err((index + 1, "expected KEY=VALUE".into()));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err((index + 1, format!("invalid variable name {key:?}")));
        }
        out.insert(key.to_string(), unquote(value.trim()));
    }
    Ok(out)
}

fn unquote(value: &str) -> String {
    let quoted = |q: char| value.len() >= 2 && value.starts_with(q) && value.ends_with(q);
    if quoted('"') {
        value[1..value.len() - 1]
            .replace("\\n", "\n")
            .replace("\\\"", "\"")
    } else if quoted('\'') {
        value[1..value.len() - 1].to_string()
    } else {
        // An unquoted value ends at an inline comment.
        match value.find(" #") {
            Some(at) => value[..at].trim_end().to_string(),
            None => value.to_string(),
        }
    }
}

/// Accepts a TOML array or a comma-separated string (the form an environment
/// variable can carry); empty entries are dropped.
fn comma_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SecretString>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<String>),
        One(String),
    }
    let items = match OneOrMany::deserialize(d)? {
        OneOrMany::Many(items) => items,
        OneOrMany::One(joined) => joined.split(',').map(str::to_string).collect(),
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .map(SecretString::from)
        .collect())
}

mod redacted {
    //! Renders the effective configuration for `config check`. Secrets are
    //! written as `[REDACTED]` (set) or left out (unset); the database URL keeps
    //! its scheme, host and path but loses any password.

    use super::*;
    use std::fmt::Write;

    const REDACTED: &str = "\"[REDACTED]\"";

    pub(super) fn render(c: &Config) -> String {
        let mut out = Toml::default();
        out.kv("listen", q(&c.listen.to_string()));
        out.kv("database_url", q(&redact_url(c.database_url.expose_secret())));
        out.kv("data_dir", q(&c.data_dir.display().to_string()));
        out.kv("api_token", secret(&c.api_token));
        out.kv("metrics_token", secret(&c.metrics_token));
        out.kv("workers", c.workers.to_string());
        out.kv("lease_secs", c.lease_secs.to_string());
        out.kv("dry_run", c.dry_run.to_string());
        out.kv("retention_days", c.retention_days.to_string());
        out.kv("pricing_path", opt_path(&c.pricing_path));
        out.kv("agents_path", opt_path(&c.agents_path));
        let g = &c.github;
        out.section("github");
        out.kv(
            "app_id",
            g.app_id.map_or("\"(unset)\"".into(), |id| id.to_string()),
        );
        out.kv("private_key_path", opt_path(&g.private_key_path));
        out.kv("private_key", secret(&g.private_key));
        out.kv("webhook_secret", secret(&g.webhook_secret));
        out.kv(
            "previous_webhook_secrets",
            format!(
                "[{}]",
                vec![REDACTED; g.previous_webhook_secrets.len()].join(", ")
            ),
        );
        out.kv("trigger_label", q(&g.trigger_label));
        out.kv("api_url", q(&redact_url(&g.api_url)));
        out.section("openai");
        out.kv("api_key", secret(&c.openai.api_key));
        out.kv("base_url", q(&redact_url(&c.openai.base_url)));
        out.section("models");
        out.kv("cto", q(&c.models.cto));
        out.kv("coder", q(&c.models.coder));
        let embedding = c.models.embedding.as_deref();
        out.kv("embedding", embedding.map_or("\"(none: BM25 only)\"".into(), q));
        let b = &c.budget;
        out.section("budget");
        out.kv("usd", b.usd.to_string());
        out.kv("requests", b.requests.to_string());
        out.kv("minutes", b.minutes.to_string());
        out.kv(
            "daily_usd_per_installation",
            b.daily_usd_per_installation.to_string(),
        );
        out.section("coder");
        out.kv("max_attempts", c.coder.max_attempts.to_string());
        out.section("policy");
        let strategy = match c.policy.merge_strategy {
            MergeStrategy::Pr => "pr",
            MergeStrategy::DirectPush => "direct_push",
        };
        out.kv("merge_strategy", q(strategy));
        out.kv("allow_direct_push", c.policy.allow_direct_push.to_string());
        let x = &c.context;
        out.section("context");
        out.kv("budget_tokens", x.budget_tokens.to_string());
        out.kv("output_reserve_tokens", x.output_reserve_tokens.to_string());
        out.kv("hard_cap_tokens", x.hard_cap_tokens.to_string());
        out.kv("compaction_ratio", x.compaction_ratio.to_string());
        out.kv("top_k", x.top_k.to_string());
        out.kv("min_score", x.min_score.to_string());
        out.kv("max_files", x.max_files.to_string());
        out.kv("snippet_tokens", x.snippet_tokens.to_string());
        out.kv("history_limit", x.history_limit.to_string());
        out.kv("max_file_bytes", x.max_file_bytes.to_string());
        out.kv("docs_dir", opt_path(&x.docs_dir));
        let m = &c.memory;
        out.section("memory");
        out.kv("max_items", m.max_items.to_string());
        out.kv("max_item_bytes", m.max_item_bytes.to_string());
        out.kv("max_total_bytes", m.max_total_bytes.to_string());
        out.section("database");
        let d = &c.database;
        out.kv("max_connections", d.max_connections.to_string());
        out.kv("min_connections", d.min_connections.to_string());
        out.kv("acquire_timeout_secs", d.acquire_timeout_secs.to_string());
        out.kv("idle_timeout_secs", d.idle_timeout_secs.to_string());
        out.kv("statement_timeout_ms", d.statement_timeout_ms.to_string());
        out.kv("retry_attempts", d.retry_attempts.to_string());
        out.kv("retry_backoff_ms", d.retry_backoff_ms.to_string());
        let sync = match c.database.sqlite_synchronous {
            SqliteSynchronous::Normal => "normal",
            SqliteSynchronous::Full => "full",
        };
        out.kv("sqlite_synchronous", q(sync));
        out.section("log");
        let format = match c.log.format {
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        };
        out.kv("format", q(format));
        out.kv("level", q(&c.log.level));
        let a = &c.api;
        out.section("api");
        out.kv("rate_per_minute", a.rate_per_minute.to_string());
        out.kv("burst", a.burst.to_string());
        out.kv("login_rate_per_minute", a.login_rate_per_minute.to_string());
        out.kv("login_burst", a.login_burst.to_string());
        out.kv("trust_forwarded_for", a.trust_forwarded_for.to_string());
        out.section("dashboard");
        let secure = match c.dashboard.secure_cookie {
            SecureCookie::Auto => "auto",
            SecureCookie::Always => "always",
            SecureCookie::Never => "never",
        };
        out.kv("secure_cookie", q(secure));
        out.kv("session_hours", c.dashboard.session_hours.to_string());
        out.0
    }

    #[derive(Default)]
    struct Toml(String);

    impl Toml {
        fn kv(&mut self, key: &str, value: String) {
            let _ = writeln!(self.0, "{key} = {value}");
        }
        fn section(&mut self, name: &str) {
            let _ = writeln!(self.0, "\n[{name}]");
        }
    }

    fn q(s: &str) -> String {
        format!("{s:?}")
    }

    fn secret(s: &Option<SecretString>) -> String {
        match s {
            Some(_) => REDACTED.to_string(),
            None => "\"(unset)\"".to_string(),
        }
    }

    fn opt_path(p: &Option<PathBuf>) -> String {
        p.as_ref()
            .map_or("\"(built in)\"".into(), |p| q(&p.display().to_string()))
    }

    /// Drops `user:password@` from a URL so credentials never reach output.
    pub fn redact_url(url: &str) -> String {
        let Some(scheme_end) = url.find("://") else {
            return url.to_string();
        };
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        match rest[..authority_end].rfind('@') {
            Some(at) => format!("{}://[REDACTED]@{}", &url[..scheme_end], &rest[at + 1..]),
            None => url.to_string(),
        }
    }
}

pub use redacted::redact_url;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn load(env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        Config::load(&ConfigSources {
            file: None,
            dotenv: Some(dir.path().join(".env")),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        })
    }

    #[test]
    fn defaults_match_the_design() {
        let c = load(&[]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(c.database_url.expose_secret(), "sqlite://data/orchestrator.db");
        assert_eq!(c.github.trigger_label, "orchestrate");
        assert_eq!(c.models.cto, "gpt-4.1-mini");
        assert_eq!(c.models.coder, "gpt-4.1");
        assert_eq!(c.workers, 4);
        assert_eq!(c.lease_secs, 30);
        assert_eq!(c.budget.usd, 5.0);
        assert_eq!(c.budget.requests, 300);
        assert_eq!(c.budget.minutes, 720);
        assert_eq!(c.coder.max_attempts, 3);
        assert_eq!(c.policy.merge_strategy, MergeStrategy::Pr);
        assert!(c.models.embedding.is_none());
        assert!(c.github.webhook_secret.is_none());
    }

    #[test]
    fn prefixed_and_well_known_environment_names_override() {
        let c = load(&[
            ("ORCH_BUDGET__USD", "1.5"),
            ("ORCH_WORKERS", "7"),
            ("ORCH_GITHUB__TRIGGER_LABEL", "bot-please"),
            ("ORCH_GITHUB__PREVIOUS_WEBHOOK_SECRETS", "old1, old2,"),
            ("GITHUB_WEBHOOK_SECRET", "s3cret"),
            ("MODEL_CODER", "qwen2.5-coder"),
            ("ORCH_DRY_RUN", "true"),
        ])
        .unwrap();
        assert_eq!(c.budget.usd, 1.5);
        assert_eq!(c.workers, 7);
        assert_eq!(c.github.trigger_label, "bot-please");
        assert_eq!(c.models.coder, "qwen2.5-coder");
        assert!(c.dry_run);
        let secrets: Vec<_> = c
            .webhook_secrets()
            .iter()
            .map(|s| s.expose_secret().to_string())
            .collect();
        assert_eq!(secrets, ["s3cret", "old1", "old2"]);
    }

    #[test]
    fn toml_file_sits_between_defaults_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("o.toml");
        std::fs::write(&file, "workers = 2\n[budget]\nusd = 9.0\nrequests = 10\n").unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "ORCH_BUDGET__REQUESTS=20\nORCH_WORKERS=3\n",
        )
        .unwrap();
        let c = Config::load(&ConfigSources {
            file: Some(file),
            dotenv: Some(dir.path().join(".env")),
            env: [("ORCH_WORKERS".to_string(), "5".to_string())].into(),
        })
        .unwrap();
        assert_eq!(c.budget.usd, 9.0, "file beats defaults");
        assert_eq!(c.budget.requests, 20, ".env beats the file");
        assert_eq!(c.workers, 5, "the real environment beats .env");
    }

    #[test]
    fn invalid_values_are_named() {
        let err = load(&[("ORCH_WORKERS", "0")]).unwrap_err().to_string();
        assert!(err.contains("workers"), "{err}");
        let err = load(&[("ORCH_POLICY__MERGE_STRATEGY", "direct_push")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("allow_direct_push"), "{err}");
        let err = load(&[("ORCH_POLICY__MERGE_STRATEGY", "yolo")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("yolo") || err.contains("merge_strategy"), "{err}");
        let err = load(&[("ORCH_BUDGET__USD", "lots")]).unwrap_err().to_string();
        assert!(err.contains("budget.usd") || err.contains("lots"), "{err}");
        let err = load(&[("DATABASE_URL", "mysql://x")]).unwrap_err().to_string();
        assert!(err.contains("DATABASE_URL"), "{err}");
        let err = load(&[("ORCH_DATABASE__MIN_CONNECTIONS", "9")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("database.min_connections"), "{err}");
        let err = load(&[("ORCH_DATABASE__RETRY_ATTEMPTS", "11")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("database.retry_attempts"), "{err}");
        let err = load(&[("ORCH_BUDGET__USDD", "1")]).unwrap_err().to_string();
        assert!(err.contains("usdd"), "unknown keys are reported: {err}");
        assert!(load(&[("ORCH_LISTEN", "not an address")]).is_err());
    }

    #[test]
    fn redacted_output_never_contains_secrets() {
        let c = load(&[
            ("GITHUB_WEBHOOK_SECRET", "whsec-AAAA"),
            ("ORCH_GITHUB__PREVIOUS_WEBHOOK_SECRETS", "whsec-BBBB"),
            ("GITHUB_PRIVATE_KEY", "-----BEGIN RSA PRIVATE KEY-----CCCC"),
            ("OPENAI_API_KEY", "sk-DDDD"),
            ("ORCH_API_TOKEN", "tok-EEEE"),
            ("DATABASE_URL", "postgres://user:pw-FFFF@db/orch"),
        ])
        .unwrap();
        let shown = c.redacted_toml();
        for secret in ["AAAA", "BBBB", "CCCC", "DDDD", "EEEE", "FFFF"] {
            assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
        }
        assert!(shown.contains("postgres://[REDACTED]@db/orch"), "{shown}");
        let debug = format!("{c:?}");
        for secret in ["AAAA", "BBBB", "CCCC", "DDDD", "EEEE", "FFFF"] {
            assert!(!debug.contains(secret), "{secret} leaked in Debug");
        }
    }

    #[test]
    fn dotenv_parsing_handles_quotes_comments_and_export() {
        let parsed =
            parse_dotenv("# comment\nexport A=1\nB=\"two words\"\nC='single'\nD=plain # trailing\n\nE=\n")
                .unwrap();
        assert_eq!(parsed["A"], "1");
        assert_eq!(parsed["B"], "two words");
        assert_eq!(parsed["C"], "single");
        assert_eq!(parsed["D"], "plain");
        assert_eq!(parsed["E"], "");
        assert_eq!(parse_dotenv("NOEQUALS\n").unwrap_err().0, 1);
    }
}

#[cfg(test)]
mod example_files {
    use super::*;

    /// The documented example must load, and every setting must appear in it.
    #[test]
    fn the_example_toml_loads_and_documents_every_key() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let example = root.join("orchestrator.toml.example");
        let config = Config::load(&ConfigSources {
            file: Some(example.clone()),
            dotenv: None,
            env: HashMap::new(),
        })
        .unwrap();
        assert_eq!(config.github.trigger_label, "orchestrate");
        let text = std::fs::read_to_string(&example).unwrap();
        for line in DEFAULTS.lines() {
            if let Some((key, _)) = line.split_once(" = ") {
                assert!(
                    text.contains(&format!("{key} = ")),
                    "{key} is not documented in the example"
                );
            }
        }
        for key in [
            "api_token",
            "metrics_token",
            "webhook_secret",
            "app_id",
            "api_key",
            "embedding",
        ] {
            assert!(
                text.contains(&format!("# {key} = ")),
                "{key} is not documented in the example"
            );
        }
    }

    #[test]
    fn the_example_env_file_parses_and_names_the_well_known_variables() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let path = root.join(".env.example");
        read_dotenv(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        for (name, _) in WELL_KNOWN_ENV {
            assert!(text.contains(name), "{name} is not in .env.example");
        }
    }
}
