//! The GitHub client against the fake GitHub (tests/support/fake_github):
//! token caching and refresh, JWT claims, retries and rate limits with the
//! manual clock, permissions, PR idempotency, check-run limits, GHES prefix,
//! identity, and secrets kept out of Debug output and errors.

use std::sync::Arc;
use std::time::Duration;

use orchestrator::github::clock::Clock;
use orchestrator::github::{
    Annotation, AnnotationLevel, AppCredentials, CheckAction, CheckOutput, CheckRunFields, ClientOptions,
    GitHub, GitHubError, NewPullRequest, Permission, Reaction, RepoRef,
};
use secrecy::ExposeSecret;

use crate::fake_github::{APP_ID, APP_SLUG, AuthSeen, BOT_USER_ID, FakeGitHub, INSTALLATION_ID, test_keys};

async fn setup() -> (FakeGitHub, GitHub, RepoRef) {
    let fake = FakeGitHub::start().await;
    let repo = fake.add_repo("octo-org/app");
    let gh = fake.client();
    (fake, gh, repo)
}

fn new_pull(head: &str) -> NewPullRequest {
    NewPullRequest {
        title: "Fix the typo".into(),
        head: head.into(),
        base: "main".into(),
        body: "Closes #1".into(),
        draft: false,
        maintainer_can_modify: true,
    }
}

#[tokio::test]
async fn a_burst_of_100_concurrent_calls_mints_one_token() {
    let (fake, gh, repo) = setup().await;
    fake.state().token_delay = Duration::from_millis(50);
    let inst = gh.installation(INSTALLATION_ID);
    let calls = (0..100).map(|_| {
        let (inst, repo) = (inst.clone(), repo.clone());
        tokio::spawn(async move { inst.repository(&repo).await })
    });
    for call in calls.collect::<Vec<_>>() {
        let repository = call.await.unwrap().unwrap();
        assert_eq!(repository.default_branch, "main");
        assert!(repository.clone_url.starts_with("file://"));
    }
    assert_eq!(fake.token_requests(), 1);
    assert_eq!(fake.count("GET", "/repos/*/*"), 100);
}

#[tokio::test]
async fn a_token_is_refreshed_five_minutes_before_it_expires() {
    let (fake, gh, repo) = setup().await;
    let inst = gh.installation(INSTALLATION_ID);
    inst.repository(&repo).await.unwrap();
    fake.clock.advance(Duration::from_secs(54 * 60));
    inst.repository(&repo).await.unwrap();
    assert_eq!(fake.token_requests(), 1, "54 min: still fresh");
    fake.clock.advance(Duration::from_secs(2 * 60));
    inst.repository(&repo).await.unwrap();
    assert_eq!(fake.token_requests(), 2, "56 min: inside the 5-minute margin");
    assert!(
        fake.calls()
            .iter()
            .all(|c| c.method != "GET" || c.auth == AuthSeen::Token)
    );
}

#[tokio::test]
async fn a_401_on_a_cached_token_refreshes_once_and_retries_once() {
    let (fake, gh, repo) = setup().await;
    let inst = gh.installation(INSTALLATION_ID);
    inst.repository(&repo).await.unwrap();
    fake.expire_tokens_now();
    fake.clear_calls();
    inst.repository(&repo).await.unwrap();
    let lines: Vec<String> = fake.calls().iter().map(|c| c.line()).collect();
    assert_eq!(
        lines,
        [
            "GET /repos/octo-org/app",
            &format!("POST /app/installations/{INSTALLATION_ID}/access_tokens"),
            "GET /repos/octo-org/app",
        ]
    );
}

#[tokio::test]
async fn a_second_401_is_an_unauthorized_error_without_the_token() {
    let (fake, gh, repo) = setup().await;
    let inst = gh.installation(INSTALLATION_ID);
    fake.fail_next("GET", "/repos/*/*", 401, 2);
    let err = inst.repository(&repo).await.unwrap_err();
    assert!(matches!(err, GitHubError::Unauthorized { .. }), "{err:?}");
    assert_eq!(fake.token_requests(), 2);
    for token in fake.minted_tokens() {
        assert!(!err.to_string().contains(&token));
        assert!(!format!("{err:?}").contains(&token));
    }
}

#[tokio::test]
async fn the_app_jwt_has_the_documented_claims() {
    let (fake, gh, _repo) = setup().await;
    let app = gh.app().await.unwrap();
    assert_eq!((app.id, app.slug.as_str()), (APP_ID, APP_SLUG));
    let now = orchestrator::github::clock::unix_secs(fake.clock.now());
    let call = &fake.calls()[0];
    assert_eq!(call.line(), "GET /app");
    assert_eq!(
        call.auth,
        AuthSeen::Jwt {
            iat: now - 60,
            exp: now + 540,
            iss: APP_ID
        }
    );
}

#[tokio::test]
async fn the_fake_refuses_a_jwt_that_expires_more_than_ten_minutes_ahead() {
    let fake = FakeGitHub::start().await;
    let key = octocrab::jsonwebtoken::EncodingKey::from_rsa_pem(test_keys().pkcs1_pem.as_bytes()).unwrap();
    let now = orchestrator::github::clock::unix_secs(fake.clock.now());
    let claims = serde_json::json!({"iat": now - 60, "exp": now + 660, "iss": APP_ID});
    let header = octocrab::jsonwebtoken::Header::new(octocrab::jsonwebtoken::Algorithm::RS256);
    let jwt = octocrab::jsonwebtoken::encode(&header, &claims, &key).unwrap();
    let answer = reqwest::Client::new()
        .get(format!("{}/app", fake.url))
        .bearer_auth(jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    let anonymous = reqwest::Client::new()
        .get(format!("{}/repos/octo-org/app", fake.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
}

#[tokio::test]
async fn a_pkcs8_key_works_too() {
    let fake = FakeGitHub::start().await;
    let credentials = AppCredentials::from_pem(APP_ID, test_keys().pkcs8_pem.as_bytes(), "test").unwrap();
    let gh = GitHub::new(credentials, fake.options(), fake.clock.clone()).unwrap();
    assert_eq!(gh.app().await.unwrap().slug, APP_SLUG);
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_then_succeed() {
    let (fake, gh, repo) = setup().await;
    let inst = gh.installation(INSTALLATION_ID);
    fake.fail_next("GET", "/repos/*/*", 502, 3);
    inst.repository(&repo).await.unwrap();
    assert_eq!(fake.count("GET", "/repos/*/*"), 4);
    let sleeps = fake.clock.sleeps();
    assert_eq!(sleeps.len(), 3, "{sleeps:?}");
    assert!(
        sleeps
            .iter()
            .all(|d| *d >= Duration::from_secs(1) && *d <= Duration::from_secs(60))
    );
}

#[tokio::test]
async fn server_errors_give_up_after_the_bound() {
    let (fake, gh, repo) = setup().await;
    fake.fail_next("GET", "/repos/*/*", 503, 100);
    let err = gh
        .installation(INSTALLATION_ID)
        .repository(&repo)
        .await
        .unwrap_err();
    assert!(matches!(err, GitHubError::Server { status: 503, .. }), "{err:?}");
    assert_eq!(
        fake.count("GET", "/repos/*/*"),
        1 + ClientOptions::default().max_retries
    );
}

#[tokio::test]
async fn a_secondary_limit_honours_retry_after() {
    let (fake, gh, repo) = setup().await;
    let issue = fake.add_issue(&repo, "t", "b");
    fake.secondary_limit_next("POST", "/repos/*/*/issues/*/comments", Some(42), 1);
    let inst = gh.installation(INSTALLATION_ID);
    inst.create_comment(&repo, issue, "hello").await.unwrap();
    assert_eq!(fake.clock.sleeps(), vec![Duration::from_secs(42)]);
    assert_eq!(fake.comments(&repo, issue).len(), 1);
}

#[tokio::test]
async fn a_secondary_limit_without_retry_after_waits_a_minute_then_doubles() {
    let (fake, gh, repo) = setup().await;
    fake.secondary_limit_next("GET", "/repos/*/*", None, 2);
    gh.installation(INSTALLATION_ID).repository(&repo).await.unwrap();
    assert_eq!(
        fake.clock.sleeps(),
        vec![Duration::from_secs(60), Duration::from_secs(120)]
    );
}

#[tokio::test]
async fn a_primary_limit_waits_until_the_reset() {
    let (fake, gh, repo) = setup().await;
    fake.primary_limit_next("GET", "/repos/*/*", 300);
    gh.installation(INSTALLATION_ID).repository(&repo).await.unwrap();
    let sleeps = fake.clock.sleeps();
    assert_eq!(sleeps.len(), 1);
    assert!(sleeps[0] >= Duration::from_secs(300) && sleeps[0] <= Duration::from_secs(302));
}

#[tokio::test]
async fn not_found_and_validation_errors_are_not_retried() {
    let (fake, gh, repo) = setup().await;
    let inst = gh.installation(INSTALLATION_ID);
    let err = inst.issue(&repo, 999).await.unwrap_err();
    assert!(matches!(err, GitHubError::NotFound { .. }), "{err:?}");
    assert_eq!(fake.count("GET", "/repos/*/*/issues/*"), 1);
    let err = inst
        .create_pull_request(&repo, &new_pull("no-such-branch"))
        .await
        .unwrap_err();
    match err {
        GitHubError::Validation { errors, .. } => {
            assert_eq!(errors[0].field.as_deref(), Some("head"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.count("POST", "/repos/*/*/pulls"), 1);
    assert!(fake.clock.sleeps().is_empty());
}

#[tokio::test]
async fn a_plain_comment_is_not_reposted_after_a_server_error() {
    let (fake, gh, repo) = setup().await;
    let issue = fake.add_issue(&repo, "t", "b");
    fake.lose_next_answer("POST", "/repos/*/*/issues/*/comments");
    let err = gh
        .installation(INSTALLATION_ID)
        .create_comment(&repo, issue, "hi")
        .await
        .unwrap_err();
    assert!(err.is_transient());
    assert_eq!(fake.count("POST", "/repos/*/*/issues/*/comments"), 1);
    assert_eq!(fake.comments(&repo, issue).len(), 1);
}

#[tokio::test]
async fn a_marked_comment_whose_answer_was_lost_is_found_not_reposted() {
    let (fake, gh, repo) = setup().await;
    let issue = fake.add_issue(&repo, "t", "b");
    fake.lose_next_answer("POST", "/repos/*/*/issues/*/comments");
    let marker = "<!-- orchestrator:outbox:7 -->";
    let comment = gh
        .installation(INSTALLATION_ID)
        .create_comment_once(&repo, issue, &format!("Hello\n{marker}"), marker)
        .await
        .unwrap();
    assert_eq!(fake.comments(&repo, issue).len(), 1);
    assert_eq!(comment.id, fake.comments(&repo, issue)[0].id);
    assert_eq!(fake.count("POST", "/repos/*/*/issues/*/comments"), 1);
}

#[tokio::test]
async fn a_marked_comment_refused_outright_is_posted_again() {
    let (fake, gh, repo) = setup().await;
    let issue = fake.add_issue(&repo, "t", "b");
    fake.fail_next("POST", "/repos/*/*/issues/*/comments", 500, 1);
    let marker = "<!-- m -->";
    gh.installation(INSTALLATION_ID)
        .create_comment_once(&repo, issue, &format!("x {marker}"), marker)
        .await
        .unwrap();
    assert_eq!(fake.comments(&repo, issue).len(), 1);
    assert_eq!(fake.count("POST", "/repos/*/*/issues/*/comments"), 2);
}

#[tokio::test]
async fn permissions_map_each_level() {
    let (fake, gh, repo) = setup().await;
    for (user, role) in [
        ("ada", "admin"),
        ("max", "maintain"),
        ("wes", "write"),
        ("tia", "triage"),
        ("rea", "read"),
    ] {
        fake.set_role(&repo, user, role);
    }
    let inst = gh.installation(INSTALLATION_ID);
    let expected = [
        ("ada", Permission::Admin),
        ("max", Permission::Maintain),
        ("wes", Permission::Write),
        ("tia", Permission::Triage),
        ("rea", Permission::Read),
        ("stranger", Permission::None),
    ];
    for (user, want) in expected {
        let got = inst.collaborator_permission(&repo, user).await.unwrap();
        assert_eq!(got, want, "{user}");
        assert_eq!(got.can_write(), matches!(user, "ada" | "max" | "wes"));
    }
}

#[tokio::test]
async fn creating_a_pull_request_twice_yields_one() {
    let (fake, gh, repo) = setup().await;
    fake.create_branch(&repo, "orchestrator/issue-1-typo");
    let inst = gh.installation(INSTALLATION_ID);
    let first = inst
        .create_pull_request(&repo, &new_pull("orchestrator/issue-1-typo"))
        .await
        .unwrap();
    let second = inst
        .create_pull_request(&repo, &new_pull("orchestrator/issue-1-typo"))
        .await
        .unwrap();
    assert_eq!(first.number, second.number);
    assert_eq!(fake.pulls(&repo).len(), 1);
    let lookup = fake
        .calls()
        .into_iter()
        .find(|c| c.line() == "GET /repos/octo-org/app/pulls")
        .unwrap();
    assert!(
        lookup
            .query
            .contains("head=octo-org%3Aorchestrator%2Fissue-1-typo"),
        "{}",
        lookup.query
    );
}

#[tokio::test]
async fn a_lost_pull_request_answer_then_a_retry_yields_one() {
    let (fake, gh, repo) = setup().await;
    fake.create_branch(&repo, "orchestrator/issue-2-x");
    fake.lose_next_answer("POST", "/repos/*/*/pulls");
    let pull = gh
        .installation(INSTALLATION_ID)
        .create_pull_request(&repo, &new_pull("orchestrator/issue-2-x"))
        .await
        .unwrap();
    assert_eq!(fake.pulls(&repo).len(), 1);
    assert_eq!(pull.number, fake.pulls(&repo)[0].number);
    assert_eq!(pull.head_ref, "orchestrator/issue-2-x");
    assert_eq!(fake.count("POST", "/repos/*/*/pulls"), 2);
}

fn annotation(i: usize) -> Annotation {
    Annotation {
        path: "src/lib.rs".into(),
        start_line: i as u32 + 1,
        end_line: i as u32 + 1,
        annotation_level: AnnotationLevel::Notice,
        message: format!("note {i}"),
        title: None,
    }
}

#[tokio::test]
async fn check_runs_respect_githubs_limits() {
    let (fake, gh, repo) = setup().await;
    let inst = gh.installation(INSTALLATION_ID);
    let mut fields = CheckRunFields::create("orchestrator", "a".repeat(40));
    fields.output = Some(CheckOutput {
        title: "Working".into(),
        summary: "ß".repeat(70_000),
        text: None,
        annotations: (0..120).map(annotation).collect(),
    });
    fields.actions = Some(vec![CheckAction {
        label: "Cancel".into(),
        description: "Stop this job".into(),
        identifier: "cancel".into(),
    }]);
    let run = inst.create_check_run(&repo, fields).await.unwrap();
    assert_eq!(fake.count("POST", "/repos/*/*/check-runs"), 1);
    assert_eq!(fake.count("PATCH", "/repos/*/*/check-runs/*"), 2);
    let stored = &fake.check_runs()[0];
    assert_eq!(stored.id, run.id);
    assert_eq!(stored.annotations.len(), 120);
    let summary = stored.current["output"]["summary"].as_str().unwrap();
    assert!(summary.chars().count() <= 65_535);

    let too_many = CheckRunFields {
        actions: Some(
            ["a", "b", "c", "d"]
                .iter()
                .map(|id| CheckAction {
                    label: "L".into(),
                    description: "D".into(),
                    identifier: id.to_string(),
                })
                .collect(),
        ),
        ..CheckRunFields::default()
    };
    let err = inst.update_check_run(&repo, run.id, too_many).await.unwrap_err();
    assert!(matches!(err, GitHubError::InvalidRequest(_)));
    assert_eq!(fake.count("PATCH", "/repos/*/*/check-runs/*"), 2, "nothing sent");

    let done = CheckRunFields {
        conclusion: Some(orchestrator::github::CheckConclusion::Success),
        actions: Some(vec![]),
        ..CheckRunFields::default()
    };
    let run = inst.update_check_run(&repo, run.id, done).await.unwrap();
    assert_eq!(run.status.as_deref(), Some("completed"));
    assert_eq!(fake.check_runs()[0].history.len(), 4);
}

#[tokio::test]
async fn a_ghes_path_prefix_is_kept_everywhere() {
    let fake = FakeGitHub::start_with_prefix("/api/v3").await;
    let repo = fake.add_repo("octo-org/app");
    let issue = fake.add_issue(&repo, "t", "b");
    let gh = fake.client();
    let inst = gh.installation(INSTALLATION_ID);
    for i in 0..120 {
        inst.create_comment(&repo, issue, &format!("c{i}")).await.unwrap();
    }
    assert_eq!(inst.list_comments(&repo, issue).await.unwrap().len(), 120);
    assert_eq!(fake.count("GET", "/repos/*/*/issues/*/comments"), 2, "100 a page");
    assert_eq!(inst.repository(&repo).await.unwrap().full_name, "octo-org/app");
    assert!(fake.calls().iter().all(|c| !c.path.starts_with("/api/v3")));
}

#[tokio::test]
async fn pagination_follows_link_headers() {
    let (fake, gh, _repo) = setup().await;
    for i in 0..150 {
        fake.add_repo(&format!("octo-org/r{i}"));
    }
    let repos = gh.installation(INSTALLATION_ID).repositories().await.unwrap();
    assert_eq!(repos.len(), 151);
    assert_eq!(fake.count("GET", "/installation/repositories"), 2);
}

#[tokio::test]
async fn the_bot_learns_its_identity() {
    let (fake, gh, _repo) = setup().await;
    let identity = gh.learn_identity().await.unwrap();
    assert_eq!(identity.user_id, BOT_USER_ID);
    assert_eq!(identity.login, format!("{APP_SLUG}[bot]"));
    assert_eq!(
        identity.commit_identity(),
        format!("{APP_SLUG}[bot] <{BOT_USER_ID}+{APP_SLUG}[bot]@users.noreply.github.com>")
    );
    let lines: Vec<String> = fake.calls().iter().map(|c| c.line()).collect();
    assert_eq!(lines, ["GET /app", &format!("GET /users/{APP_SLUG}%5Bbot%5D")]);
    assert_eq!(fake.calls()[1].auth, AuthSeen::None, "a public read");
}

#[tokio::test]
async fn issues_reactions_labels_and_installation_lookups() {
    let (fake, gh, repo) = setup().await;
    let issue = fake.add_issue(&repo, "Fix it", "Please");
    let inst = gh.installation(INSTALLATION_ID);
    let got = inst.issue(&repo, issue).await.unwrap();
    assert!(got.is_open() && !got.locked && got.title == "Fix it");
    inst.react_to_issue(&repo, issue, Reaction::Eyes).await.unwrap();
    inst.react_to_issue(&repo, issue, Reaction::Eyes).await.unwrap();
    let comment = inst.create_comment(&repo, issue, "hi").await.unwrap();
    inst.react_to_comment(&repo, comment.id, Reaction::Eyes)
        .await
        .unwrap();
    assert_eq!(fake.reactions().len(), 2, "the repeat answered 200");
    inst.update_comment(&repo, comment.id, "edited").await.unwrap();
    assert_eq!(fake.comments(&repo, issue)[0].history, ["hi", "edited"]);
    inst.add_labels(&repo, issue, &["orchestrate", "bug fix"])
        .await
        .unwrap();
    inst.remove_label(&repo, issue, "bug fix").await.unwrap();
    inst.remove_label(&repo, issue, "never-there").await.unwrap();
    let installation = gh.repository_installation(&repo).await.unwrap();
    assert_eq!(installation.id, INSTALLATION_ID);
}

#[tokio::test]
async fn webhook_deliveries_are_listed_and_redelivered_with_the_jwt() {
    let (fake, gh, _repo) = setup().await;
    for i in 0..130u64 {
        fake.add_delivery(
            serde_json::json!({"id": i + 1, "guid": format!("g-{i}"), "status": "OK",
            "status_code": if i % 2 == 0 { 200 } else { 502 }, "event": "issues", "redelivery": false,
            "delivered_at": "2026-01-01T00:00:00Z"}),
        );
    }
    let first = gh.webhook_deliveries(None).await.unwrap();
    assert_eq!(first.deliveries.len(), 100);
    let second = gh.webhook_deliveries(first.next_cursor.as_deref()).await.unwrap();
    assert_eq!(second.deliveries.len(), 30);
    assert_eq!(second.next_cursor, None);
    gh.redeliver(2).await.unwrap();
    assert_eq!(fake.state().redelivered, vec![2]);
    assert!(
        fake.calls()
            .iter()
            .all(|c| matches!(c.auth, AuthSeen::Jwt { .. }))
    );
}

#[tokio::test]
async fn writes_are_paced_by_the_content_limits() {
    let fake = FakeGitHub::start().await;
    let repo = fake.add_repo("octo-org/app");
    let issue = fake.add_issue(&repo, "t", "b");
    let options = ClientOptions {
        writes_per_minute: std::num::NonZeroU32::new(2).unwrap(),
        ..fake.options()
    };
    let inst = fake.client_with(options).installation(INSTALLATION_ID);
    for i in 0..3 {
        inst.create_comment(&repo, issue, &format!("{i}")).await.unwrap();
    }
    let waited: Duration = fake.clock.sleeps().iter().sum();
    assert!(waited >= Duration::from_secs(29), "{waited:?}");
}

#[tokio::test]
async fn secrets_never_show_in_debug_output() {
    let (fake, gh, repo) = setup().await;
    let inst = gh.installation(INSTALLATION_ID);
    inst.repository(&repo).await.unwrap();
    let token = inst.token().await.unwrap();
    let debug = format!("{gh:?} {inst:?}");
    assert!(!debug.contains(token.expose_secret()));
    assert!(!debug.contains("PRIVATE KEY"));
    let key_body: String = test_keys().pkcs1_pem.lines().nth(1).unwrap().to_string();
    assert!(!debug.contains(&key_body));
    let credentials = AppCredentials::from_pem(APP_ID, test_keys().pkcs1_pem.as_bytes(), "k").unwrap();
    assert!(!format!("{credentials:?}").contains(&key_body));
    let _ = Arc::strong_count(&fake.clock);
}

#[test]
fn a_malformed_key_is_a_startup_error_naming_the_setting() {
    let config = orchestrator::config::GithubConfig {
        app_id: Some(1),
        private_key_path: None,
        private_key: Some("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----".into()),
        webhook_secret: None,
        previous_webhook_secrets: vec![],
        trigger_label: "orchestrate".into(),
        api_url: "https://api.github.com".into(),
    };
    let err = GitHub::from_config(&config).unwrap_err();
    assert!(err.to_string().contains("GITHUB_PRIVATE_KEY"), "{err}");
    let none = orchestrator::config::GithubConfig {
        app_id: None,
        private_key: None,
        ..config
    };
    assert!(GitHub::from_config(&none).unwrap().is_none());
}

#[tokio::test]
async fn at_start_the_identity_reaches_the_loop_guard() {
    let (_fake, gh, _repo) = setup().await;
    let identity = orchestrator::server::Identity::default();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let bot = orchestrator::github::startup::learn_identity(&gh, &identity, &shutdown)
        .await
        .unwrap();
    assert_eq!(identity.bot_user_id(), Some(BOT_USER_ID));
    assert_eq!(identity.bot(), Some(&bot));
}

#[tokio::test]
async fn identity_learning_keeps_trying_through_outages() {
    let (fake, gh, _repo) = setup().await;
    fake.fail_next("GET", "/app", 401, 2);
    let identity = orchestrator::server::Identity::default();
    let shutdown = tokio_util::sync::CancellationToken::new();
    orchestrator::github::startup::learn_identity(&gh, &identity, &shutdown)
        .await
        .unwrap();
    assert_eq!(identity.bot_user_id(), Some(BOT_USER_ID));
    assert_eq!(
        fake.clock.sleeps(),
        vec![Duration::from_secs(5), Duration::from_secs(10)]
    );
}

#[tokio::test]
async fn serve_refuses_to_start_with_a_malformed_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::test_config(
        dir.path(),
        &[
            ("GITHUB_APP_ID", "12"),
            ("GITHUB_PRIVATE_KEY", "not a pem"),
            ("ORCH_LISTEN", "127.0.0.1:0"),
        ],
    );
    let url = secrecy::ExposeSecret::expose_secret(&config.database_url).to_string();
    let store = orchestrator::store::Store::connect(&url, &config.database)
        .await
        .unwrap();
    let err = orchestrator::server::serve(
        Arc::new(config),
        store,
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("GITHUB_PRIVATE_KEY"), "{err}");
    assert!(!err.to_string().contains("not a pem"));
}

#[tokio::test]
async fn an_exhausted_primary_limit_delays_the_next_call_until_the_reset() {
    let (fake, gh, repo) = setup().await;
    let inst = gh.installation(INSTALLATION_ID);
    inst.repository(&repo).await.unwrap();
    fake.state().ratelimit_remaining = Some(0);
    inst.repository(&repo).await.unwrap();
    assert!(fake.clock.sleeps().is_empty(), "that answer was a success");
    fake.state().ratelimit_remaining = None;
    inst.repository(&repo).await.unwrap();
    let sleeps = fake.clock.sleeps();
    assert_eq!(sleeps.len(), 1);
    assert!(sleeps[0] >= Duration::from_secs(3600) && sleeps[0] <= Duration::from_secs(3602));
}

#[tokio::test]
async fn a_plain_403_is_forbidden_and_not_retried() {
    let (fake, gh, repo) = setup().await;
    fake.fail_next("GET", "/repos/*/*", 403, 1);
    let err = gh
        .installation(INSTALLATION_ID)
        .repository(&repo)
        .await
        .unwrap_err();
    assert!(matches!(err, GitHubError::Forbidden { .. }), "{err:?}");
    assert_eq!(fake.count("GET", "/repos/*/*"), 1);
    assert!(fake.clock.sleeps().is_empty());
}

#[tokio::test]
async fn connection_errors_are_retried_with_a_bound() {
    let fake = FakeGitHub::start().await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let options = ClientOptions {
        api_url: format!("http://127.0.0.1:{port}"),
        ..fake.options()
    };
    let err = fake.client_with(options).app().await.unwrap_err();
    assert!(matches!(err, GitHubError::Network(_)), "{err:?}");
    assert_eq!(fake.clock.sleeps().len(), ClientOptions::default().max_retries);
}

mod redelivery {
    use orchestrator::reconciler::Redeliverer;

    use crate::fake_github::FakeGitHub;
    use crate::support::*;

    fn delivery(id: u64, guid: &str, status_code: u16, ago_hours: i64) -> serde_json::Value {
        let at = (chrono::Utc::now() - chrono::Duration::hours(ago_hours)).to_rfc3339();
        serde_json::json!({"id": id, "guid": guid, "status": "x", "status_code": status_code,
            "event": "issues", "redelivery": false, "delivered_at": at})
    }

    #[tokio::test]
    async fn failed_deliveries_not_recorded_since_are_redelivered_once() {
        let app = TestApp::new().await;
        let fake = FakeGitHub::start().await;
        // Recorded by intake after an earlier failed attempt: nothing lost.
        app.deliver("issues", "recovered", &labeled(1)).await;
        fake.add_delivery(delivery(1, "ok", 202, 1));
        fake.add_delivery(delivery(2, "lost-502", 502, 2));
        fake.add_delivery(delivery(3, "recovered", 500, 3));
        fake.add_delivery(delivery(4, "timed-out", 0, 4));
        fake.add_delivery(delivery(5, "too-old", 502, 30));
        let redeliverer = Redeliverer::new(app.store.clone(), fake.client());
        assert_eq!(redeliverer.run_once().await.unwrap(), 2);
        assert_eq!(fake.state().redelivered, vec![2, 4]);
        assert_eq!(
            redeliverer.run_once().await.unwrap(),
            0,
            "each failed delivery is redelivered once"
        );
        assert_eq!(fake.state().redelivered, vec![2, 4]);
    }
}
