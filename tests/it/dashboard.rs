//! The dashboard through the real router: login and its cookie, redirects,
//! CSRF refusals, escaping of user text, the live event stream, and the
//! store reads behind the pages on every backend.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use futures_util::StreamExt;
use tower::ServiceExt;

use crate::support::*;

const HOST: &str = "dash.test:3000";
const ORIGIN: &str = "http://dash.test:3000";

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(app: &TestApp, request: Request<Body>) -> Answer {
    let (status, headers, bytes) = app.send_raw(request).await;
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).to_string(),
    }
}

fn location(answer: &Answer) -> &str {
    answer.headers[header::LOCATION].to_str().unwrap()
}

fn form_post(path: &str, body: &str, cookie: Option<&str>, origin: Option<&str>) -> Request<Body> {
    let mut builder = Request::post(path)
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        builder = builder.header(header::COOKIE, cookie);
    }
    if let Some(origin) = origin {
        builder = builder.header(header::ORIGIN, origin);
    }
    builder.body(Body::from(body.to_string())).unwrap()
}

fn page_get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut builder = Request::get(path).header(header::HOST, HOST);
    if let Some(cookie) = cookie {
        builder = builder.header(header::COOKIE, cookie);
    }
    builder.body(Body::empty()).unwrap()
}

/// Logs in; returns the `name=value` cookie pair.
async fn log_in(app: &TestApp) -> String {
    let answer = send(
        app,
        form_post("/login", &format!("token={API_TOKEN}"), None, Some(ORIGIN)),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let set_cookie = answer.headers[header::SET_COOKIE].to_str().unwrap();
    set_cookie.split(';').next().unwrap().to_string()
}

/// The CSRF token in a page's forms.
fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a csrf field") + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

async fn a_job(app: &TestApp, number: u64) -> String {
    let (status, _) = app
        .deliver("issues", &format!("d-{number}"), &labeled(number))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, page) = app.api_get("/jobs").await;
    page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["issue_number"] == number)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn login_refuses_a_wrong_token_and_sets_a_safe_cookie_for_the_right_one() {
    let app = TestApp::new().await;
    let form = send(&app, page_get("/login", None)).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("name=\"token\""));

    let wrong = send(&app, form_post("/login", "token=nope", None, Some(ORIGIN))).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.headers.get(header::SET_COOKIE).is_none());
    assert!(wrong.body.contains("not right"));

    let foreign = send(
        &app,
        form_post(
            "/login",
            &format!("token={API_TOKEN}"),
            None,
            Some("http://evil.example"),
        ),
    )
    .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN, "login CSRF is refused");
    assert!(foreign.headers.get(header::SET_COOKIE).is_none());

    let right = send(
        &app,
        form_post(
            "/login",
            &format!("token={API_TOKEN}&next=%2Fdashboard%2Finstallations"),
            None,
            Some(ORIGIN),
        ),
    )
    .await;
    assert_eq!(right.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&right), "/dashboard/installations");
    let cookie = right.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("orch_session="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP, auto mode: {cookie}");
    assert!(!cookie.contains(API_TOKEN), "the cookie is not the token");

    // Behind an HTTPS proxy the cookie is Secure.
    let mut request = form_post("/login", &format!("token={API_TOKEN}"), None, Some(ORIGIN));
    request
        .headers_mut()
        .insert("x-forwarded-proto", "https".parse().unwrap());
    let proxied = send(&app, request).await;
    assert!(
        proxied.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );

    // An open redirect is not followed.
    let outside = send(
        &app,
        form_post(
            "/login",
            &format!("token={API_TOKEN}&next=//evil.example"),
            None,
            Some(ORIGIN),
        ),
    )
    .await;
    assert_eq!(location(&outside), "/");
}

#[tokio::test]
async fn the_secure_attribute_can_be_forced() {
    let app = TestApp::with_env(&[("ORCH_DASHBOARD__SECURE_COOKIE", "always")]).await;
    let answer = send(
        &app,
        form_post("/login", &format!("token={API_TOKEN}"), None, Some(ORIGIN)),
    )
    .await;
    assert!(
        answer.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );
}

#[tokio::test]
async fn pages_send_strangers_to_the_login_and_the_api_stays_bearer_only() {
    let app = TestApp::new().await;
    let id = a_job(&app, 1).await;
    for path in ["/", "/dashboard/installations", &format!("/dashboard/jobs/{id}")] {
        let answer = send(&app, page_get(path, None)).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{path}");
        assert!(location(&answer).starts_with("/login"), "{path}");
    }
    let deep = send(&app, page_get("/dashboard/installations", None)).await;
    assert_eq!(location(&deep), "/login?next=/dashboard/installations");

    let forged = send(&app, page_get("/", Some("orch_session=1.2.3"))).await;
    assert_eq!(forged.status, StatusCode::SEE_OTHER);
    // A bearer token does not open the dashboard, and a cookie does not open the API.
    let bearer = Request::get("/")
        .header("authorization", format!("Bearer {API_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, bearer).await.status, StatusCode::SEE_OTHER);
    let cookie = log_in(&app).await;
    let api = send(&app, page_get("/jobs", Some(&cookie))).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);

    let list = send(&app, page_get("/", Some(&cookie))).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains(&id));
    assert!(
        list.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    // Logged in, the login page sends the user on.
    assert_eq!(
        send(&app, page_get("/login", Some(&cookie))).await.status,
        StatusCode::SEE_OTHER
    );

    // A session made with another token is worth nothing.
    let other = TestApp::with_env(&[("ORCH_API_TOKEN", "another-token")]).await;
    assert_eq!(
        send(&other, page_get("/", Some(&cookie))).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn state_changing_requests_need_the_csrf_token_and_this_origin() {
    let app = TestApp::new().await;
    let id = a_job(&app, 1).await;
    let cookie = log_in(&app).await;
    let page = send(&app, page_get(&format!("/dashboard/jobs/{id}"), Some(&cookie))).await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = csrf_of(&page.body);
    let cancel = format!("/dashboard/jobs/{id}/cancel");

    for (body, origin) in [
        (String::new(), Some(ORIGIN)),
        ("csrf=0123abcd".to_string(), Some(ORIGIN)),
        (format!("csrf={csrf}"), Some("http://evil.example")),
        (format!("csrf={csrf}"), None),
    ] {
        let answer = send(&app, form_post(&cancel, &body, Some(&cookie), origin)).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{body} from {origin:?}");
        assert!(!app.store.cancel_requested(&id).await.unwrap());
    }
    // Another session's token does not do either.
    let other_cookie = log_in(&app).await;
    let other_page = send(&app, page_get("/", Some(&other_cookie))).await;
    let other_csrf = csrf_of(&other_page.body);
    assert_ne!(other_csrf, csrf);
    let answer = send(
        &app,
        form_post(
            &cancel,
            &format!("csrf={other_csrf}"),
            Some(&cookie),
            Some(ORIGIN),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);

    let answer = send(
        &app,
        form_post(&cancel, &format!("csrf={csrf}"), Some(&cookie), Some(ORIGIN)),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert!(location(&answer).starts_with(&format!("/dashboard/jobs/{id}?notice=")));
    assert!(app.store.cancel_requested(&id).await.unwrap());
    // A Referer from this site stands in for a missing Origin.
    let mut request = form_post(
        &format!("/dashboard/jobs/{id}/retry"),
        &format!("csrf={csrf}"),
        Some(&cookie),
        None,
    );
    request.headers_mut().insert(
        header::REFERER,
        format!("{ORIGIN}/dashboard/jobs/{id}").parse().unwrap(),
    );
    let retry = send(&app, request).await;
    assert_eq!(
        retry.status,
        StatusCode::SEE_OTHER,
        "a queued job is not retried, but the request passes"
    );
    assert!(location(&retry).contains("notice=Only"));

    let logout = send(&app, form_post("/logout", "", Some(&cookie), Some(ORIGIN))).await;
    assert_eq!(logout.status, StatusCode::FORBIDDEN);
    let logout = send(
        &app,
        form_post("/logout", &format!("csrf={csrf}"), Some(&cookie), Some(ORIGIN)),
    )
    .await;
    assert_eq!(logout.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&logout), "/login");
    let cleared = logout.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cleared.starts_with("orch_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
}

#[tokio::test]
async fn user_text_is_escaped() {
    let app = TestApp::new().await;
    let title = "<script>alert('owned')</script> & \"quotes\"";
    let body = derived("webhooks/issues/labeled.1.json", |v| {
        v["label"]["name"] = "orchestrate".into();
        v["issue"]["number"] = 7.into();
        v["issue"]["title"] = title.into();
    });
    assert_eq!(app.deliver("issues", "evil", &body).await.0, StatusCode::ACCEPTED);
    let cookie = log_in(&app).await;
    let list = send(&app, page_get("/", Some(&cookie))).await;
    assert!(!list.body.contains("<script>alert"), "raw markup in the list");
    assert!(
        list.body
            .contains("&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt; &amp; &quot;quotes&quot;")
    );
    let id = list
        .body
        .split("data-job=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let page = send(&app, page_get(&format!("/dashboard/jobs/{id}"), Some(&cookie))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("<script>alert"), "raw markup on the job page");
    assert!(page.body.contains("&lt;script&gt;"));
    // The only script is the dashboard's own, from its route.
    assert_eq!(page.body.matches("<script").count(), 1);
    assert!(
        page.body
            .contains("<script src=\"/dashboard/assets/app.js\" defer></script>")
    );
}

#[tokio::test]
async fn the_event_stream_sends_a_new_event_and_the_status_change() {
    let app = TestApp::new().await;
    let id = a_job(&app, 1).await;
    let cookie = log_in(&app).await;
    let response = app
        .router
        .clone()
        .oneshot(page_get(
            &format!("/dashboard/jobs/{id}/events?after=0"),
            Some(&cookie),
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let mut frames = response.into_body().into_data_stream();
    let mut seen = String::new();
    // The event written at creation comes first.
    read_until(&mut frames, "event: job_event", &mut seen).await;
    assert!(seen.contains("\"kind\":\"created\""), "{seen}");

    // A worker claims the job and moves it on: the stream carries both.
    let now = orchestrator::jobs::now_millis();
    let claimed = app
        .store
        .claim_job("w1", now + 60_000, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, id);
    let reason = "live-event-reason-42";
    app.store
        .set_job_status(
            &id,
            "w1",
            orchestrator::jobs::JobStatus::Failed,
            Some(reason),
            now,
        )
        .await
        .unwrap();
    read_until(&mut frames, reason, &mut seen).await;
    read_until(&mut frames, "event: status", &mut seen).await;
    read_until(&mut frames, "event: end", &mut seen).await;
    assert!(seen.contains("\"status\":\"failed\""), "{seen}");
    let tail = tokio::time::timeout(Duration::from_secs(5), frames.next())
        .await
        .unwrap();
    assert!(tail.is_none(), "the stream closes once the job has ended");
}

#[tokio::test]
async fn the_job_page_links_to_github_and_retries_a_failed_job() {
    let app = TestApp::new().await;
    let id = a_job(&app, 7).await;
    let now = orchestrator::jobs::now_millis();
    app.store
        .claim_job("w1", now + 60_000, now)
        .await
        .unwrap()
        .unwrap();
    let pr = "https://github.com/Codertocat/Hello-World/pull/12";
    app.store.set_pull_request(&id, 12, pr, now).await.unwrap();
    app.store.set_check_run(&id, 555, "abc123").await.unwrap();
    let usage = orchestrator::store::JobUsage {
        usd: 0.0132,
        tokens_in: 3000,
        tokens_out: 1500,
        requests: 3,
        per_model: vec![
            orchestrator::store::ModelUsageRecord {
                model: "gpt-4.1".into(),
                requests: 2,
                tokens_in: 2000,
                tokens_out: 1000,
                usd: 0.012,
            },
            orchestrator::store::ModelUsageRecord {
                model: "<gpt-4.1-mini>".into(),
                requests: 1,
                tokens_in: 1000,
                tokens_out: 500,
                usd: 0.0012,
            },
        ],
    };
    app.store.save_usage(&id, &usage, now).await.unwrap();
    app.store
        .set_job_status(
            &id,
            "w1",
            orchestrator::jobs::JobStatus::Failed,
            Some("internal: boom"),
            now,
        )
        .await
        .unwrap();
    let cookie = log_in(&app).await;
    let page = send(&app, page_get(&format!("/dashboard/jobs/{id}"), Some(&cookie))).await;
    assert_eq!(page.status, StatusCode::OK);
    let body = &page.body;
    assert!(
        body.contains("href=\"https://github.com/Codertocat/Hello-World/issues/7\""),
        "{body}"
    );
    assert!(body.contains(&format!("href=\"{pr}\" id=\"pr-link\"")), "{body}");
    assert!(
        body.contains("href=\"https://github.com/Codertocat/Hello-World/runs/555\""),
        "{body}"
    );
    assert!(body.contains("internal: boom"));
    // Costs by model, the model names escaped.
    let table = &body[body.find("id=\"costs-by-model\"").expect("costs by model")..];
    let table = &table[..table.find("</table>").unwrap()];
    assert!(table.contains("<code>gpt-4.1</code>"), "{table}");
    assert!(table.contains("<code>&lt;gpt-4.1-mini&gt;</code>"), "{table}");
    assert_eq!(
        table.matches("<tr>").count(),
        3,
        "a header and two models: {table}"
    );
    assert!(body.contains("<form id=\"retry-form\" method=\"post\" action=\"/dashboard/jobs/"));
    assert!(
        body.contains("/retry\">"),
        "the retry form is shown for a failed job"
    );
    assert!(!body.contains("data-stream="), "an ended job opens no stream");

    let csrf = csrf_of(body);
    let retry = send(
        &app,
        form_post(
            &format!("/dashboard/jobs/{id}/retry"),
            &format!("csrf={csrf}"),
            Some(&cookie),
            Some(ORIGIN),
        ),
    )
    .await;
    assert_eq!(retry.status, StatusCode::SEE_OTHER);
    assert!(location(&retry).contains("attempt%202"), "{}", location(&retry));
    let (_, job) = app.api_get(&format!("/jobs/{id}")).await;
    assert_eq!(job["status"], "queued");
    assert_eq!(job["attempt"], 2);
    let missing = send(
        &app,
        form_post(
            "/dashboard/jobs/nope/retry",
            &format!("csrf={csrf}"),
            Some(&cookie),
            Some(ORIGIN),
        ),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

/// Reads the stream until `needle` has been seen (10 s at most).
async fn read_until(frames: &mut axum::body::BodyDataStream, needle: &str, seen: &mut String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(needle) {
        let frame = tokio::time::timeout_at(deadline, frames.next())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in time; got {seen}"))
            .expect("the stream stays open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&frame));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_reads_work_on_every_backend() {
    for (backend, url) in backends().await {
        let app = app_on(&url, &[]).await;
        let mut ids = Vec::new();
        for n in 1..=3u64 {
            ids.push(a_job(&app, n).await);
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        let filter = orchestrator::store::JobFilter {
            status: None,
            repo: Some("Codertocat/Hello-World".into()),
            limit: 2,
            cursor: None,
        };
        let page = app.store.job_records(&filter).await.unwrap();
        assert_eq!(page.jobs.len(), 2, "{backend}");
        assert_eq!(page.jobs[0].id, ids[2], "{backend}: newest first");
        let next = orchestrator::store::JobFilter {
            cursor: page.next_cursor.clone(),
            ..filter
        };
        let rest = app.store.job_records(&next).await.unwrap();
        assert_eq!(rest.jobs.len(), 1, "{backend}");
        assert_eq!(rest.jobs[0].id, ids[0], "{backend}");
        assert!(rest.next_cursor.is_none(), "{backend}");
        assert_eq!(
            app.store.job_repositories().await.unwrap(),
            ["Codertocat/Hello-World"],
            "{backend}"
        );
        let events = app.store.events_after(&ids[0], 0, 10).await.unwrap();
        assert_eq!(events.len(), 1, "{backend}");
        assert!(
            app.store
                .events_after(&ids[0], events[0].id, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let installations = app.store.installation_records().await.unwrap();
        assert_eq!(installations.len(), 1, "{backend}");
        assert_eq!(installations[0].id, INSTALLATION as i64, "{backend}");

        let cookie = log_in(&app).await;
        let page = send(&app, page_get("/dashboard/installations", Some(&cookie))).await;
        assert_eq!(page.status, StatusCode::OK, "{backend}");
        assert!(page.body.contains(&INSTALLATION.to_string()), "{backend}");
        let filtered = send(&app, page_get("/?status=cancelled", Some(&cookie))).await;
        assert!(filtered.body.contains("No jobs match"), "{backend}");
    }
}

#[tokio::test]
async fn login_attempts_are_rate_limited_per_address() {
    let app = TestApp::new().await;
    // The default login burst is 5 attempts at once per client address.
    for attempt in 0..5 {
        let answer = send(&app, form_post("/login", "token=guess", None, Some(ORIGIN))).await;
        assert_ne!(answer.status, StatusCode::TOO_MANY_REQUESTS, "attempt {attempt}");
    }
    let refused = send(
        &app,
        form_post("/login", &format!("token={API_TOKEN}"), None, Some(ORIGIN)),
    )
    .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = refused.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 1, "Retry-After {wait}");
    assert!(refused.headers.get(header::SET_COOKIE).is_none());
    // The form itself stays reachable.
    assert_eq!(send(&app, page_get("/login", None)).await.status, StatusCode::OK);
}
