//! The fake's routes: one handler that records the call, applies faults,
//! checks credentials and dispatches on (method, path segments).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{Query, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use orchestrator::github::Clock;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    APP_ID, APP_SLUG, AuthSeen, BOT_USER_ID, FakeCheckRun, FakeComment, FakePull, FaultKind, RecordedCall,
    Shared, State, git, next_id, orchestrator_jwt as jwt,
};

type Reply = (StatusCode, Value, Vec<(&'static str, String)>);

fn ok(status: u16, body: Value) -> Reply {
    (StatusCode::from_u16(status).unwrap(), body, Vec::new())
}

fn error(status: u16, message: &str) -> Reply {
    ok(
        status,
        json!({"message": message, "documentation_url": "https://docs.github.com/rest"}),
    )
}

#[derive(Deserialize)]
struct Claims {
    iat: u64,
    exp: u64,
    iss: u64,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
}

fn read_auth(shared: &Shared, headers: &HeaderMap) -> (AuthSeen, Option<String>) {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return (AuthSeen::None, None);
    };
    let Some((scheme, credential)) = value.split_once(' ') else {
        return (AuthSeen::Invalid("no scheme".into()), None);
    };
    if credential.matches('.').count() == 2 {
        if scheme != "Bearer" {
            return (AuthSeen::Invalid("a JWT needs Bearer".into()), None);
        }
        let mut validation = jwt::Validation::new(jwt::Algorithm::RS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        return match jwt::decode::<Claims>(credential, &shared.decoding_key, &validation) {
            Ok(data) => {
                let c = data.claims;
                (
                    AuthSeen::Jwt {
                        iat: c.iat,
                        exp: c.exp,
                        iss: c.iss,
                    },
                    None,
                )
            }
            Err(e) => (AuthSeen::Invalid(format!("JWT: {e}")), None),
        };
    }
    if scheme == "Bearer" || scheme == "token" {
        return (AuthSeen::Token, Some(credential.to_string()));
    }
    (AuthSeen::Invalid(format!("scheme {scheme}")), None)
}

/// Percent-decodes a path segment.
fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&segment[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) async fn handle(
    AxState(shared): AxState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (auth, token) = read_auth(&shared, &headers);
    let body_json: Option<Value> = serde_json::from_slice(&body).ok();
    let query: HashMap<String, String> = Query::try_from_uri(&uri).map(|q| q.0).unwrap_or_default();
    let (fault, delay, path) = {
        let mut state = shared.state.lock().unwrap();
        let Some(path) = uri.path().strip_prefix(state.prefix.as_str()).map(str::to_string) else {
            return finish(&shared, error(404, "Not Found"));
        };
        state.calls.push(RecordedCall {
            method: method.to_string(),
            path: path.clone(),
            query: uri.query().unwrap_or_default().to_string(),
            auth: auth.clone(),
            body: body_json.clone(),
        });
        let fault = state.take_fault(method.as_str(), &path);
        (fault, state.token_delay, path)
    };
    if path.ends_with("/access_tokens") && !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let now = shared.clock.now();
    let reply = match fault {
        Some(FaultKind::Status(status)) => error(status, "injected failure"),
        Some(FaultKind::Secondary { retry_after }) => {
            let mut r = error(
                403,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            );
            if let Some(secs) = retry_after {
                r.2.push(("retry-after", secs.to_string()));
            }
            r
        }
        Some(FaultKind::Primary { reset_in }) => {
            let mut r = error(403, "API rate limit exceeded for installation ID 4242.");
            r.2.push(("x-ratelimit-remaining", "0".into()));
            r.2.push(("x-ratelimit-reset", (unix(now) + reset_in).to_string()));
            r
        }
        Some(FaultKind::LoseAnswer) => {
            let mut state = shared.state.lock().unwrap();
            let _applied = route(
                &mut state,
                &method,
                &path,
                &query,
                &auth,
                token.as_deref(),
                body_json,
                now,
            );
            error(502, "Bad Gateway")
        }
        None => {
            let mut state = shared.state.lock().unwrap();
            route(
                &mut state,
                &method,
                &path,
                &query,
                &auth,
                token.as_deref(),
                body_json,
                now,
            )
        }
    };
    finish(&shared, reply)
}

fn finish(shared: &Shared, (status, body, extra): Reply) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    let (used, remaining) = {
        let state = shared.state.lock().unwrap();
        let used = state.calls.len();
        (
            used,
            state
                .ratelimit_remaining
                .unwrap_or(5000usize.saturating_sub(used).max(1)),
        )
    };
    let reset = unix(shared.clock.now()) + 3600;
    headers.insert("x-ratelimit-limit", HeaderValue::from(5000));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    headers.insert("x-ratelimit-used", HeaderValue::from(used));
    headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
    headers.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    for (name, value) in extra {
        headers.insert(name, HeaderValue::from_str(&value).unwrap());
    }
    response
}

/// The App's JWT must be valid: signature (checked when read), `iss` = App
/// id, not expired, `exp` at most 10 minutes ahead.
fn check_jwt(auth: &AuthSeen, now: SystemTime) -> Result<(), Reply> {
    let now = unix(now);
    match auth {
        AuthSeen::Jwt { exp, iss, iat } => {
            if *iss != APP_ID {
                return Err(error(401, "'Issuer' claim ('iss') must be the App id"));
            }
            if *exp > now + 600 {
                return Err(error(
                    401,
                    "'Expiration time' claim ('exp') is too far in the future",
                ));
            }
            if *exp <= now || *iat > now + 60 {
                return Err(error(
                    401,
                    "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
                ));
            }
            Ok(())
        }
        _ => Err(error(401, "A JSON web token could not be decoded")),
    }
}

/// The installation of a valid, unexpired token.
fn check_token(state: &State, token: Option<&str>, now: SystemTime) -> Result<u64, Reply> {
    let token = token.ok_or_else(|| error(401, "Requires authentication"))?;
    match state.tokens.get(token) {
        Some(t) if t.expires_at > now => Ok(t.installation),
        _ => Err(error(401, "Bad credentials")),
    }
}

#[allow(clippy::too_many_arguments)]
fn route(
    state: &mut State,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    auth: &AuthSeen,
    token: Option<&str>,
    body: Option<Value>,
    now: SystemTime,
) -> Reply {
    let segments: Vec<String> = path.trim_matches('/').split('/').map(decode).collect();
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let body = body.unwrap_or(Value::Null);
    let result = match (method.as_str(), s.as_slice()) {
        ("POST", ["app", "installations", id, "access_tokens"]) => {
            check_jwt(auth, now).and_then(|_| mint(state, id, now))
        }
        ("GET", ["app"]) => check_jwt(auth, now)
            .map(|_| ok(200, json!({"id": APP_ID, "slug": APP_SLUG, "name": "Orchestrator Test"}))),
        ("GET", ["app", "hook", "deliveries"]) => {
            check_jwt(auth, now).map(|_| deliveries(state, query))
        }
        ("POST", ["app", "hook", "deliveries", id, "attempts"]) => check_jwt(auth, now).map(|_| {
            state.redelivered.push(id.parse().unwrap_or(0));
            ok(202, json!({}))
        }),
        ("GET", ["users", login]) => Ok(user(login)),
        // Documented without authentication; the code is the credential.
        ("POST", ["app-manifests", code, "conversions"]) => convert_manifest(state, code, now),
        ("GET", ["repos", o, r, "installation"]) => check_jwt(auth, now).and_then(|_| {
            let repo = state.repos.get(&format!("{o}/{r}")).ok_or_else(|| error(404, "Not Found"))?;
            let account = state.installations.get(&repo.installation).cloned().unwrap_or_default();
            Ok(ok(200, json!({"id": repo.installation, "account": {"login": account, "id": 1, "type": "Organization"}})))
        }),
        ("GET", ["installation", "repositories"]) => {
            check_token(state, token, now).map(|inst| installation_repos(state, inst, query))
        }
        (_, ["repos", o, r, rest @ ..]) => {
            let full = format!("{o}/{r}");
            check_token(state, token, now).and_then(|inst| {
                match state.repos.get(&full) {
                    Some(repo) if repo.installation == inst => Ok(()),
                    _ => Err(error(404, "Not Found")),
                }?;
                repo_route(state, method.as_str(), &full, rest, query, body)
            })
        }
        _ => Err(error(404, "Not Found")),
    };
    result.unwrap_or_else(|e| e)
}

/// `POST /app-manifests/{code}/conversions`: 201 with the App, its
/// `client_id`/`client_secret`, `webhook_secret` and `pem`; 404 for an
/// unknown or already used code. The id and key are the fake's own App, so
/// the written credentials work against this fake.
fn convert_manifest(state: &mut State, code: &str, now: SystemTime) -> Result<Reply, Reply> {
    let manifest = state
        .manifest_codes
        .remove(code)
        .ok_or_else(|| error(404, "Not Found"))?;
    let name = manifest["name"].as_str().unwrap_or_default().to_string();
    let slug: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let created =
        chrono::DateTime::<chrono::Utc>::from(now).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let n = next_id(state);
    let app = json!({
        "id": APP_ID,
        "slug": slug,
        "node_id": format!("A_kwDOfake{n}"),
        "client_id": format!("Iv23lifake{n}"),
        "owner": {"login": "octo-org", "id": 1, "type": "Organization"},
        "name": name,
        "description": manifest["description"].clone(),
        "external_url": manifest["url"].clone(),
        "html_url": format!("https://github.com/apps/{slug}"),
        "created_at": created,
        "updated_at": created,
        "permissions": manifest["default_permissions"].clone(),
        "events": manifest["default_events"].clone(),
        "installations_count": 0,
        "client_secret": format!("fake-client-secret-{n}-{}", "s".repeat(24)),
        "webhook_secret": format!("fake-webhook-secret-{n}-{}", "w".repeat(16)),
        "pem": super::test_keys().pkcs1_pem.clone(),
    });
    state.converted_apps.push(app.clone());
    Ok(ok(201, app))
}

fn mint(state: &mut State, id: &str, now: SystemTime) -> Result<Reply, Reply> {
    let id: u64 = id.parse().map_err(|_| error(404, "Not Found"))?;
    if !state.installations.contains_key(&id) {
        return Err(error(404, "Not Found"));
    }
    state.tokens_minted += 1;
    // Deliberately not 40 characters: clients must not assume a length.
    let token = format!(
        "ghs_fake{}_{}",
        state.tokens_minted,
        "x".repeat(17 + state.tokens_minted)
    );
    let expires_at = now + Duration::from_secs(3600);
    state.tokens.insert(
        token.clone(),
        super::FakeToken {
            installation: id,
            expires_at,
        },
    );
    let expires: chrono::DateTime<chrono::Utc> = expires_at.into();
    Ok(ok(
        201,
        json!({"token": token, "expires_at": expires.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
               "permissions": {"contents": "write", "issues": "write"}, "repository_selection": "all"}),
    ))
}

fn user(login: &str) -> Reply {
    if login == format!("{APP_SLUG}[bot]") {
        ok(200, json!({"id": BOT_USER_ID, "login": login, "type": "Bot"}))
    } else {
        error(404, "Not Found")
    }
}

/// One page of `items` and its `Link` header (`page`/`per_page`, default 30).
fn page(
    state: &State,
    path: &str,
    items: Vec<Value>,
    query: &HashMap<String, String>,
) -> (Vec<Value>, Option<String>) {
    let per_page: usize = query
        .get("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page: usize = query.get("page").and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let chunk = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let url = |p: usize| format!("<{}{path}?per_page={per_page}&page={p}>", state.base_url);
    let mut links = Vec::new();
    if page < last {
        links.push(format!("{}; rel=\"next\"", url(page + 1)));
        links.push(format!("{}; rel=\"last\"", url(last)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"prev\"", url(page - 1)));
        links.push(format!("{}; rel=\"first\"", url(1)));
    }
    (chunk, (!links.is_empty()).then(|| links.join(", ")))
}

fn with_link(mut reply: Reply, link: Option<String>) -> Reply {
    if let Some(link) = link {
        reply.2.push(("link", link));
    }
    reply
}

/// Cursor pagination as GitHub does it for deliveries: an opaque cursor
/// (here `v1:<index>==`, percent-encoded in the `Link`).
fn deliveries(state: &State, query: &HashMap<String, String>) -> Reply {
    let per_page: usize = query.get("per_page").and_then(|v| v.parse().ok()).unwrap_or(30);
    let start: usize = query
        .get("cursor")
        .and_then(|v| v.strip_prefix("v1:")?.strip_suffix("==")?.parse().ok())
        .unwrap_or(0);
    let items: Vec<Value> = state
        .deliveries
        .iter()
        .skip(start)
        .take(per_page)
        .cloned()
        .collect();
    let next = start + items.len();
    let link = (next < state.deliveries.len()).then(|| {
        format!(
            "<{}/app/hook/deliveries?per_page={per_page}&cursor=v1%3A{next}%3D%3D>; rel=\"next\"",
            state.base_url
        )
    });
    with_link(ok(200, Value::Array(items)), link)
}

fn repo_json(state: &State, full: &str) -> Value {
    let r = &state.repos[full];
    json!({"id": r.id, "full_name": full, "name": r.name, "owner": {"login": r.owner},
           "default_branch": "main", "private": false, "archived": false,
           "clone_url": format!("file://{}", r.bare.display())})
}

fn installation_repos(state: &State, inst: u64, query: &HashMap<String, String>) -> Reply {
    let all: Vec<Value> = state
        .repos
        .iter()
        .filter(|(_, r)| r.installation == inst)
        .map(|(name, _)| repo_json(state, name))
        .collect();
    let total = all.len();
    let (items, link) = page(state, "/installation/repositories", all, query);
    with_link(
        ok(200, json!({"total_count": total, "repositories": items})),
        link,
    )
}

fn bot_user() -> Value {
    json!({"login": format!("{APP_SLUG}[bot]"), "id": BOT_USER_ID, "type": "Bot"})
}

fn comment_json(state: &State, c: &FakeComment) -> Value {
    let user = match &c.author {
        Some((login, id)) => json!({"login": login, "id": id, "type": "User"}),
        None => bot_user(),
    };
    json!({"id": c.id, "body": c.body, "user": user,
           "html_url": format!("{}/{}/issues/{}#issuecomment-{}", state.base_url, c.repo, c.issue, c.id)})
}

fn repo_route(
    state: &mut State,
    method: &str,
    full: &str,
    rest: &[&str],
    query: &HashMap<String, String>,
    body: Value,
) -> Result<Reply, Reply> {
    let number = |s: &str| s.parse::<u64>().map_err(|_| error(404, "Not Found"));
    match (method, rest) {
        ("GET", []) => Ok(ok(200, repo_json(state, full))),
        ("GET", ["collaborators", login, "permission"]) => {
            let role = state.repos[full]
                .roles
                .get(*login)
                .cloned()
                .ok_or_else(|| error(404, &format!("{login} is not a user")))?;
            let legacy = match role.as_str() {
                "admin" => "admin",
                "maintain" | "write" => "write",
                "triage" | "read" => "read",
                _ => "none",
            };
            Ok(ok(
                200,
                json!({"permission": legacy, "role_name": role, "user": {"login": login}}),
            ))
        }
        ("GET", ["issues", n]) => {
            let n = number(n)?;
            state.repos[full]
                .issues
                .get(&n)
                .cloned()
                .map(|i| ok(200, i))
                .ok_or_else(|| error(404, "Not Found"))
        }
        ("GET", ["issues", n, "comments"]) => {
            let n = number(n)?;
            let all: Vec<Value> = state
                .comments
                .iter()
                .filter(|c| c.repo == full && c.issue == n)
                .map(|c| comment_json(state, c))
                .collect();
            let (items, link) = page(state, &format!("/repos/{full}/issues/{n}/comments"), all, query);
            Ok(with_link(ok(200, Value::Array(items)), link))
        }
        ("POST", ["issues", n, "comments"]) => {
            let n = number(n)?;
            if !state.repos[full].issues.contains_key(&n) {
                return Err(error(404, "Not Found"));
            }
            let text = body["body"]
                .as_str()
                .ok_or_else(|| error(422, "Invalid request.\n\n\"body\" wasn't supplied."))?;
            let id = next_id(state);
            let comment = FakeComment {
                id,
                repo: full.into(),
                issue: n,
                body: text.into(),
                history: vec![text.into()],
                author: None,
            };
            let reply = ok(201, comment_json(state, &comment));
            state.comments.push(comment);
            Ok(reply)
        }
        ("PATCH", ["issues", "comments", id]) => {
            let id = number(id)?;
            let text = body["body"].as_str().unwrap_or_default().to_string();
            let c = state
                .comments
                .iter_mut()
                .find(|c| c.id == id && c.repo == full)
                .ok_or_else(|| error(404, "Not Found"))?;
            c.body = text.clone();
            c.history.push(text);
            let c = c.clone();
            Ok(ok(200, comment_json(state, &c)))
        }
        ("POST", ["issues", n, "reactions"]) => Ok(react(state, format!("issue:{full}#{n}"), &body)),
        ("POST", ["issues", "comments", id, "reactions"]) => Ok(react(state, format!("comment:{id}"), &body)),
        ("POST", ["issues", n, "labels"]) => {
            let n = number(n)?;
            let add: Vec<String> = body["labels"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            let labels = state.repos.get_mut(full).unwrap().labels.entry(n).or_default();
            for l in add {
                if !labels.contains(&l) {
                    labels.push(l);
                }
            }
            Ok(ok(
                200,
                json!(labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>()),
            ))
        }
        ("DELETE", ["issues", n, "labels", name]) => {
            let n = number(n)?;
            let labels = state.repos.get_mut(full).unwrap().labels.entry(n).or_default();
            let before = labels.len();
            labels.retain(|l| l != name);
            if labels.len() == before {
                return Err(error(404, "Label does not exist"));
            }
            Ok(ok(
                200,
                json!(labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>()),
            ))
        }
        ("POST", ["check-runs"]) => create_check_run(state, full, body),
        ("PATCH", ["check-runs", id]) => update_check_run(state, full, number(id)?, body),
        ("POST", ["pulls"]) => create_pull(state, full, body),
        ("GET", ["pulls"]) => {
            let head = query.get("head").cloned();
            let wanted_state = query.get("state").cloned().unwrap_or_else(|| "open".into());
            let owner = state.repos[full].owner.clone();
            let items: Vec<Value> = state
                .pulls
                .iter()
                .filter(|p| p.repo == full)
                .filter(|p| wanted_state == "all" || p.state == wanted_state)
                .filter(|p| head.as_ref().is_none_or(|h| *h == format!("{owner}:{}", p.head)))
                .map(|p| pull_json(state, p))
                .collect();
            Ok(ok(200, Value::Array(items)))
        }
        _ => Err(error(404, "Not Found")),
    }
}

fn react(state: &mut State, target: String, body: &Value) -> Reply {
    let content = body["content"].as_str().unwrap_or_default().to_string();
    const VALID: [&str; 8] = [
        "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
    ];
    if !VALID.contains(&content.as_str()) {
        return error(422, "Validation Failed");
    }
    let existed = state.reactions.iter().any(|(t, c)| *t == target && *c == content);
    if !existed {
        state.reactions.push((target, content.clone()));
    }
    let id = next_id(state);
    ok(
        if existed { 200 } else { 201 },
        json!({"id": id, "content": content, "user": bot_user()}),
    )
}

/// GitHub's check-run limits, enforced as a 422.
fn validate_check_body(body: &Value) -> Result<(), Reply> {
    let output = &body["output"];
    if !output.is_null() {
        if output["title"].is_null() || output["summary"].is_null() {
            return Err(error(
                422,
                "Invalid request.\n\nNo subschema in \"anyOf\" matched.",
            ));
        }
        for key in ["title", "summary", "text"] {
            if output[key].as_str().is_some_and(|t| t.chars().count() > 65_535) {
                return Err(error(
                    422,
                    &format!("output.{key} is too long (maximum is 65535 characters)"),
                ));
            }
        }
        if output["annotations"].as_array().is_some_and(|a| a.len() > 50) {
            return Err(error(422, "Only 50 annotations are allowed per request"));
        }
    }
    if let Some(actions) = body["actions"].as_array() {
        let too_long = |a: &Value, k: &str, max: usize| a[k].as_str().is_none_or(|v| v.chars().count() > max);
        if actions.len() > 3
            || actions.iter().any(|a| {
                too_long(a, "label", 20) || too_long(a, "description", 40) || too_long(a, "identifier", 20)
            })
        {
            return Err(error(422, "Invalid request.\n\nactions are over the limits."));
        }
    }
    Ok(())
}

fn create_check_run(state: &mut State, full: &str, body: Value) -> Result<Reply, Reply> {
    if body["name"].as_str().is_none() || body["head_sha"].as_str().is_none() {
        return Err(error(
            422,
            "Invalid request.\n\n\"name\", \"head_sha\" weren't supplied.",
        ));
    }
    validate_check_body(&body)?;
    let id = next_id(state);
    let mut current = body.clone();
    current["id"] = json!(id);
    if current["status"].is_null() {
        current["status"] = json!("queued");
    }
    if !current["conclusion"].is_null() {
        current["status"] = json!("completed");
    }
    let annotations = body["output"]["annotations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let run = FakeCheckRun {
        id,
        repo: full.into(),
        history: vec![body],
        current: current.clone(),
        annotations,
    };
    state.check_runs.push(run);
    Ok(ok(201, current))
}

fn update_check_run(state: &mut State, full: &str, id: u64, body: Value) -> Result<Reply, Reply> {
    validate_check_body(&body)?;
    let run = state
        .check_runs
        .iter_mut()
        .find(|r| r.id == id && r.repo == full)
        .ok_or_else(|| error(404, "Not Found"))?;
    if let Some(map) = body.as_object() {
        for (k, v) in map {
            run.current[k] = v.clone();
        }
    }
    if !body["conclusion"].is_null() {
        run.current["status"] = json!("completed");
    }
    run.annotations.extend(
        body["output"]["annotations"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    );
    run.history.push(body);
    Ok(ok(200, run.current.clone()))
}

fn pull_json(state: &State, p: &FakePull) -> Value {
    json!({"number": p.number, "state": p.state, "title": p.title, "body": p.body,
           "html_url": format!("{}/{}/pull/{}", state.base_url, p.repo, p.number),
           "head": {"ref": p.head, "sha": p.head_sha, "label": format!("{}:{}", p.repo.split('/').next().unwrap_or(""), p.head)},
           "base": {"ref": p.base}})
}

fn create_pull(state: &mut State, full: &str, body: Value) -> Result<Reply, Reply> {
    let field = |k: &str| body[k].as_str().map(String::from);
    let (Some(head), Some(base)) = (field("head"), field("base")) else {
        return Err(error(422, "Validation Failed"));
    };
    let owner = state.repos[full].owner.clone();
    let branch = head
        .strip_prefix(&format!("{owner}:"))
        .unwrap_or(&head)
        .to_string();
    let Some(head_sha) = git::branch_sha(&state.repos[full].bare, &branch) else {
        return Err(ok(
            422,
            json!({"message": "Validation Failed",
            "errors": [{"resource": "PullRequest", "field": "head", "code": "invalid"}],
            "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"}),
        ));
    };
    if state
        .pulls
        .iter()
        .any(|p| p.repo == full && p.head == branch && p.state == "open")
    {
        return Err(ok(
            422,
            json!({"message": "Validation Failed",
            "errors": [{"resource": "PullRequest", "code": "custom",
                        "message": format!("A pull request already exists for {owner}:{branch}.")}],
            "documentation_url": "https://docs.github.com/rest/reference/pulls#create-a-pull-request"}),
        ));
    }
    let repo = state.repos.get_mut(full).unwrap();
    let number = repo.next_number;
    repo.next_number += 1;
    let pull = FakePull {
        number,
        repo: full.into(),
        head: branch,
        base,
        title: field("title").unwrap_or_default(),
        body: field("body").unwrap_or_default(),
        state: "open".into(),
        head_sha,
    };
    let reply = ok(201, pull_json(state, &pull));
    state.pulls.push(pull);
    Ok(reply)
}
