//! A fake GitHub REST API for tests, faithful to `github-contract.md`: an
//! in-process axum server on 127.0.0.1:0 whose state lives in one
//! `Arc<Mutex<State>>`. It verifies App JWTs (RS256, public key; `iss` a
//! number; `exp` at most 10 minutes ahead) and installation tokens (401 when
//! missing, unknown or expired) on every call, answers with GitHub's shapes
//! (the exact duplicate-PR 422, `Link` pagination, rate-limit headers,
//! `permission` + `role_name`), records every call, and injects faults.
//! Time is the shared [`ManualClock`], so token expiry follows the test.

#![allow(dead_code)]

pub mod git;
pub mod keys;
mod routes;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use orchestrator::github::{AppCredentials, ClientOptions, GitHub, ManualClock, RepoRef};
use serde_json::Value;

pub use keys::test_keys;

pub const APP_ID: u64 = 31337;
pub const APP_SLUG: &str = "orchestrator-test";
pub const BOT_USER_ID: u64 = 9_000_001;
pub const INSTALLATION_ID: u64 = 4242;

/// How a recorded call authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSeen {
    None,
    /// A valid App JWT with its claims.
    Jwt {
        iat: u64,
        exp: u64,
        iss: u64,
    },
    /// An installation token (valid or not: the route decides).
    Token,
    /// Something we could not read as either.
    Invalid(String),
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedCall {
    pub method: String,
    /// The path after the API prefix, without the query.
    pub path: String,
    pub query: String,
    pub auth: AuthSeen,
    pub body: Option<Value>,
}

impl RecordedCall {
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Debug, Clone)]
pub enum FaultKind {
    /// Answer this status without applying the request.
    Status(u16),
    /// 403 secondary rate limit, with or without `Retry-After`.
    Secondary { retry_after: Option<u64> },
    /// 403 primary rate limit: `x-ratelimit-remaining: 0`, reset in this many seconds.
    Primary { reset_in: u64 },
    /// Apply the request, then answer 502 as if the answer were lost.
    LoseAnswer,
}

#[derive(Debug, Clone)]
struct Fault {
    method: String,
    pattern: String,
    kind: FaultKind,
    remaining: usize,
}

#[derive(Debug, Clone)]
pub struct FakeToken {
    pub installation: u64,
    pub expires_at: SystemTime,
}

#[derive(Debug, Clone)]
pub struct FakeRepo {
    pub id: u64,
    pub owner: String,
    pub name: String,
    pub installation: u64,
    pub bare: PathBuf,
    pub issues: BTreeMap<u64, Value>,
    /// login → role_name (`admin`, `maintain`, `write`, `triage`, `read`).
    pub roles: HashMap<String, String>,
    pub labels: BTreeMap<u64, Vec<String>>,
    pub next_number: u64,
}

#[derive(Debug, Clone)]
pub struct FakeComment {
    pub id: u64,
    pub repo: String,
    pub issue: u64,
    pub body: String,
    pub history: Vec<String>,
    /// `(login, id)` of a person; `None` = the App's bot (comments it posted).
    pub author: Option<(String, u64)>,
}

#[derive(Debug, Clone)]
pub struct FakeCheckRun {
    pub id: u64,
    pub repo: String,
    /// The create body, then every PATCH body, in order.
    pub history: Vec<Value>,
    pub current: Value,
    pub annotations: Vec<Value>,
}

#[derive(Debug, Clone)]
pub struct FakePull {
    pub number: u64,
    pub repo: String,
    pub head: String,
    pub base: String,
    pub title: String,
    pub body: String,
    pub state: String,
    pub head_sha: String,
}

#[derive(Debug, Default)]
pub struct State {
    pub prefix: String,
    pub base_url: String,
    pub installations: BTreeMap<u64, String>,
    pub tokens: HashMap<String, FakeToken>,
    pub tokens_minted: usize,
    pub repos: BTreeMap<String, FakeRepo>,
    pub comments: Vec<FakeComment>,
    /// (target, content): target is `issue:<repo>#<n>` or `comment:<id>`.
    pub reactions: Vec<(String, String)>,
    pub check_runs: Vec<FakeCheckRun>,
    pub pulls: Vec<FakePull>,
    pub deliveries: Vec<Value>,
    pub redelivered: Vec<u64>,
    pub calls: Vec<RecordedCall>,
    faults: Vec<Fault>,
    pub next_id: u64,
    /// Real delay of the token endpoint, so concurrent callers overlap.
    pub token_delay: Duration,
    /// When set, every answer reports this many requests left (0 = exhausted
    /// until the reset one hour ahead).
    pub ratelimit_remaining: Option<usize>,
    /// App manifest flow: code → the manifest GitHub's page accepted (one use).
    pub manifest_codes: HashMap<String, Value>,
    /// Apps returned by `POST /app-manifests/{code}/conversions`, secrets included.
    pub converted_apps: Vec<Value>,
}

/// The running fake.
pub struct FakeGitHub {
    /// The API base URL (with the prefix, without a trailing slash).
    pub url: String,
    pub clock: Arc<ManualClock>,
    state: Arc<Mutex<State>>,
    dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub(crate) struct Shared {
    pub state: Arc<Mutex<State>>,
    pub clock: Arc<ManualClock>,
    pub decoding_key: orchestrator_jwt::DecodingKey,
}

/// The jsonwebtoken crate, through octocrab's re-export (never a direct dependency).
pub(crate) use octocrab::jsonwebtoken as orchestrator_jwt;

impl FakeGitHub {
    /// A fake at `http://127.0.0.1:<port>` with one installation and its clock at real now.
    pub async fn start() -> FakeGitHub {
        FakeGitHub::start_with_prefix("").await
    }

    /// A fake whose API lives under `prefix` (GHES: `/api/v3`).
    pub async fn start_with_prefix(prefix: &str) -> FakeGitHub {
        let clock = ManualClock::starting_now();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}{prefix}");
        let state = Arc::new(Mutex::new(State {
            prefix: prefix.to_string(),
            base_url: url.clone(),
            next_id: 1000,
            ..State::default()
        }));
        let decoding_key =
            orchestrator_jwt::DecodingKey::from_rsa_pem(test_keys().public_pem.as_bytes()).unwrap();
        let shared = Arc::new(Shared {
            state: state.clone(),
            clock: clock.clone(),
            decoding_key,
        });
        let app = axum::Router::new().fallback(routes::handle).with_state(shared);
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let fake = FakeGitHub {
            url,
            clock,
            state,
            dir: tempfile::tempdir().unwrap(),
            server,
        };
        fake.add_installation(INSTALLATION_ID, "octo-org");
        fake
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Client options pointing at the fake; waits go through the fake's clock.
    pub fn options(&self) -> ClientOptions {
        ClientOptions {
            api_url: self.url.clone(),
            ..ClientOptions::default()
        }
    }

    /// A client with the test App key (PKCS#1) on the fake's clock.
    pub fn client(&self) -> GitHub {
        self.client_with(self.options())
    }

    pub fn client_with(&self, options: ClientOptions) -> GitHub {
        let credentials =
            AppCredentials::from_pem(APP_ID, test_keys().pkcs1_pem.as_bytes(), "test key").unwrap();
        GitHub::new(credentials, options, self.clock.clone()).unwrap()
    }

    pub fn add_installation(&self, id: u64, account: &str) {
        self.state().installations.insert(id, account.to_string());
    }

    /// A repository of the default installation, backed by a bare git repo
    /// with one commit on `main`.
    pub fn add_repo(&self, full_name: &str) -> RepoRef {
        self.add_repo_to(INSTALLATION_ID, full_name)
    }

    pub fn add_repo_to(&self, installation: u64, full_name: &str) -> RepoRef {
        let repo = RepoRef::parse(full_name).unwrap();
        let bare = self.dir.path().join(format!("{full_name}.git"));
        git::init_bare(&bare);
        let mut state = self.state();
        let id = next_id(&mut state);
        state.repos.insert(
            full_name.to_string(),
            FakeRepo {
                id,
                owner: repo.owner.clone(),
                name: repo.name.clone(),
                installation,
                bare,
                issues: BTreeMap::new(),
                roles: HashMap::new(),
                labels: BTreeMap::new(),
                next_number: 1,
            },
        );
        repo
    }

    /// A comment on an issue written by a person (as if posted on GitHub's page).
    pub fn add_user_comment(&self, repo: &RepoRef, issue: u64, login: &str, user_id: u64, body: &str) -> u64 {
        let mut state = self.state();
        let id = next_id(&mut state);
        state.comments.push(FakeComment {
            id,
            repo: repo.to_string(),
            issue,
            body: body.to_string(),
            history: vec![body.to_string()],
            author: Some((login.to_string(), user_id)),
        });
        id
    }

    /// An open issue; returns its number.
    pub fn add_issue(&self, repo: &RepoRef, title: &str, body: &str) -> u64 {
        let mut state = self.state();
        let base = state.base_url.clone();
        let r = state.repos.get_mut(&repo.to_string()).unwrap();
        let number = r.next_number;
        r.next_number += 1;
        let issue = serde_json::json!({
            "number": number, "state": "open", "locked": false, "title": title, "body": body,
            "url": format!("{base}/repos/{repo}/issues/{number}"),
        });
        r.issues.insert(number, issue);
        number
    }

    pub fn set_issue(&self, repo: &RepoRef, number: u64, key: &str, value: Value) {
        let mut state = self.state();
        let r = state.repos.get_mut(&repo.to_string()).unwrap();
        r.issues.get_mut(&number).unwrap()[key] = value;
    }

    /// Gives `login` a repository role (`admin`, `maintain`, `write`, `triage`, `read`).
    pub fn set_role(&self, repo: &RepoRef, login: &str, role: &str) {
        let mut state = self.state();
        let r = state.repos.get_mut(&repo.to_string()).unwrap();
        r.roles.insert(login.to_string(), role.to_string());
    }

    /// Pushes a branch with one new commit to the bare repository.
    pub fn create_branch(&self, repo: &RepoRef, branch: &str) -> String {
        let bare = self.state().repos[&repo.to_string()].bare.clone();
        git::create_branch(&bare, branch)
    }

    pub fn add_delivery(&self, delivery: Value) {
        self.state().deliveries.push(delivery);
    }

    /// What github.com does when a person submits the manifest form and
    /// confirms: checks the manifest as GitHub does (`url` and
    /// `hook_attributes.url` required) and returns the one-time code it puts
    /// on the redirect URL.
    pub fn accept_manifest(&self, manifest: &Value) -> Result<String, String> {
        let name = manifest["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or("name is required")?;
        manifest["url"]
            .as_str()
            .filter(|u| !u.is_empty())
            .ok_or("url is required")?;
        manifest["hook_attributes"]["url"]
            .as_str()
            .filter(|u| !u.is_empty())
            .ok_or("hook_attributes.url is required")?;
        if name.len() > 34 {
            return Err("name is too long (maximum is 34 characters)".into());
        }
        let mut state = self.state();
        let code = format!("c0de{:x}", next_id(&mut state) * 7919);
        state.manifest_codes.insert(code.clone(), manifest.clone());
        Ok(code)
    }

    // ---- inspection

    pub fn calls(&self) -> Vec<RecordedCall> {
        self.state().calls.clone()
    }

    /// Calls matching `method` and a `*`-per-segment pattern.
    pub fn count(&self, method: &str, pattern: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.method == method && path_matches(pattern, &c.path))
            .count()
    }

    pub fn token_requests(&self) -> usize {
        self.count("POST", "/app/installations/*/access_tokens")
    }

    pub fn clear_calls(&self) {
        self.state().calls.clear();
    }

    pub fn comments(&self, repo: &RepoRef, issue: u64) -> Vec<FakeComment> {
        let name = repo.to_string();
        let state = self.state();
        state
            .comments
            .iter()
            .filter(|c| c.repo == name && c.issue == issue)
            .cloned()
            .collect()
    }

    pub fn pulls(&self, repo: &RepoRef) -> Vec<FakePull> {
        let name = repo.to_string();
        self.state()
            .pulls
            .iter()
            .filter(|p| p.repo == name)
            .cloned()
            .collect()
    }

    pub fn check_runs(&self) -> Vec<FakeCheckRun> {
        self.state().check_runs.clone()
    }

    pub fn reactions(&self) -> Vec<(String, String)> {
        self.state().reactions.clone()
    }

    // ---- faults

    /// The next `n` calls matching `method` and `pattern` answer `status`, unapplied.
    pub fn fail_next(&self, method: &str, pattern: &str, status: u16, n: usize) {
        self.fault(method, pattern, FaultKind::Status(status), n);
    }

    /// The next `n` matching calls meet a secondary rate limit.
    pub fn secondary_limit_next(&self, method: &str, pattern: &str, retry_after: Option<u64>, n: usize) {
        self.fault(method, pattern, FaultKind::Secondary { retry_after }, n);
    }

    /// The next matching call meets the primary rate limit, reset in `reset_in` seconds.
    pub fn primary_limit_next(&self, method: &str, pattern: &str, reset_in: u64) {
        self.fault(method, pattern, FaultKind::Primary { reset_in }, 1);
    }

    /// The next matching call is applied, but its answer is lost (502).
    pub fn lose_next_answer(&self, method: &str, pattern: &str) {
        self.fault(method, pattern, FaultKind::LoseAnswer, 1);
    }

    pub fn fault(&self, method: &str, pattern: &str, kind: FaultKind, n: usize) {
        self.state().faults.push(Fault {
            method: method.to_string(),
            pattern: pattern.to_string(),
            kind,
            remaining: n,
        });
    }

    /// Every token minted so far expires now (GitHub would answer 401).
    pub fn expire_tokens_now(&self) {
        let now = orchestrator::github::Clock::now(&*self.clock);
        for token in self.state().tokens.values_mut() {
            token.expires_at = now;
        }
    }

    /// The token strings minted so far (to check that none leaks).
    pub fn minted_tokens(&self) -> Vec<String> {
        self.state().tokens.keys().cloned().collect()
    }
}

pub(crate) fn next_id(state: &mut State) -> u64 {
    state.next_id += 1;
    state.next_id
}

/// `*` matches one segment; everything else must be equal.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    let s: Vec<&str> = path.trim_matches('/').split('/').collect();
    p.len() == s.len() && p.iter().zip(&s).all(|(a, b)| *a == "*" || a == b)
}

impl State {
    /// Takes one matching fault, if any.
    pub(crate) fn take_fault(&mut self, method: &str, path: &str) -> Option<FaultKind> {
        let fault = self
            .faults
            .iter_mut()
            .find(|f| f.remaining > 0 && f.method == method && path_matches(&f.pattern, path))?;
        fault.remaining -= 1;
        let kind = fault.kind.clone();
        self.faults.retain(|f| f.remaining > 0);
        Some(kind)
    }
}
