//! `orchestrator setup` end to end: the real binary serves its page, the test
//! plays the browser and github.com (the fake GitHub accepts the manifest and
//! converts the code), and the written `.env` and key file are checked,
//! modes included, and proven usable against the fake.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::fake_github::{APP_ID, FakeGitHub};

const BIN: &str = env!("CARGO_BIN_EXE_orchestrator");

/// `api_url_flag`: pass the fake's URL as `--api-url` (else `.env` must name it).
fn setup_command(dir: &Path, fake: &FakeGitHub, api_url_flag: bool, extra: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("setup")
        .args(["--webhook-url", "https://orch.example.com/webhook"])
        .args(["--port", "0"])
        .args(["--github-url", "https://github.example"]);
    if api_url_flag {
        command.args(["--api-url", &fake.url]);
    }
    command
        .args(extra)
        .current_dir(dir)
        .env_remove("GITHUB_API_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Reads stdout until the page's address is announced.
async fn page_url(child: &mut Child, seen: &mut String) -> String {
    let stdout = child.stdout.as_mut().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("setup announces its page")
            .unwrap()
            .expect("stdout open");
        seen.push_str(&line);
        seen.push('\n');
        if let Some(at) = line.find("http://127.0.0.1:") {
            let url = &line[at..];
            return url[..url.find(' ').unwrap_or(url.len())].to_string();
        }
    }
}

fn unescape(html: &str) -> String {
    html.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn attribute<'a>(html: &'a str, element_start: &str, name: &str) -> &'a str {
    let element = &html[html
        .find(element_start)
        .unwrap_or_else(|| panic!("{element_start} in page"))..];
    let element = &element[..element.find('>').unwrap()];
    let marker = format!("{name}=\"");
    let value = &element[element.find(&marker).unwrap() + marker.len()..];
    &value[..value.find('"').unwrap()]
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn setup_registers_the_app_and_writes_owner_only_credentials() {
    let fake = FakeGitHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "# my settings\nOPENAI_API_KEY=sk-keep-me\nGITHUB_APP_ID=1\nORCH_API_TOKEN=tok\n",
    )
    .unwrap();
    let mut child = setup_command(
        dir.path(),
        &fake,
        true,
        &["--org", "octo-org", "--name", "orch-acme"],
    )
    .spawn()
    .unwrap();
    let mut stdout_text = String::new();
    let url = page_url(&mut child, &mut stdout_text).await;
    let http = reqwest::Client::new();

    // The page: a form that posts the filled-in manifest to the organization's page.
    let page = http.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert_eq!(attribute(&html, "<form", "method"), "post");
    let action = unescape(attribute(&html, "<form", "action"));
    let state = action
        .strip_prefix("https://github.example/organizations/octo-org/settings/apps/new?state=")
        .unwrap_or_else(|| panic!("form action {action}"))
        .to_string();
    assert!(state.len() >= 32, "state {state}");
    assert_eq!(attribute(&html, "<input", "name"), "manifest");
    let manifest: Value = serde_json::from_str(&unescape(attribute(&html, "<input", "value"))).unwrap();
    assert_eq!(manifest["name"], "orch-acme");
    assert_eq!(manifest["url"], "https://orch.example.com");
    assert_eq!(
        manifest["hook_attributes"]["url"],
        "https://orch.example.com/webhook"
    );
    assert_eq!(manifest["hook_attributes"]["active"], true);
    let redirect = manifest["redirect_url"].as_str().unwrap().to_string();
    assert_eq!(redirect, format!("{}callback", url));
    assert_eq!(manifest["default_permissions"]["contents"], "write");
    assert_eq!(manifest["default_permissions"]["checks"], "write");
    assert_eq!(manifest["public"], false);
    assert!(
        manifest["default_events"]
            .as_array()
            .unwrap()
            .contains(&"issue_comment".into())
    );

    // GitHub accepts it and sends the browser back with a code; a forged
    // state is refused first, and the code is not spent by it.
    let code = fake.accept_manifest(&manifest).unwrap();
    let forged = http
        .get(format!("{redirect}?code={code}&state=forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);
    assert_eq!(fake.count("POST", "/app-manifests/*/conversions"), 0);
    let missing = http.get(format!("{redirect}?code={code}")).send().await.unwrap();
    assert_eq!(missing.status(), 400);

    let back = http
        .get(format!("{redirect}?code={code}&state={state}"))
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 200);
    let done_page = back.text().await.unwrap();
    assert!(
        done_page.contains("https://github.com/apps/orch-acme/installations/new"),
        "{done_page}"
    );

    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("setup exits once done")
        .unwrap();
    let mut rest = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut rest)
        .await
        .unwrap();
    stdout_text.push_str(&rest);
    let mut stderr_text = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr_text)
        .await
        .unwrap();
    assert!(status.success(), "{stdout_text}\n{stderr_text}");

    // One conversion, without credentials, exactly as documented.
    let calls = fake.calls();
    let conversion: Vec<_> = calls
        .iter()
        .filter(|c| c.path.starts_with("/app-manifests/"))
        .collect();
    assert_eq!(conversion.len(), 1);
    assert_eq!(
        conversion[0].line(),
        format!("POST /app-manifests/{code}/conversions")
    );
    assert_eq!(conversion[0].auth, crate::fake_github::AuthSeen::None);
    let app = fake.state().converted_apps[0].clone();

    // What it printed: the App and the next step, never a secret.
    assert!(stdout_text.contains(&format!("id {APP_ID}")), "{stdout_text}");
    assert!(
        stdout_text.contains(
            "Next: install the App on a repository: https://github.com/apps/orch-acme/installations/new"
        ),
        "{stdout_text}"
    );
    let pem = app["pem"].as_str().unwrap();
    let pem_body = pem.lines().nth(1).unwrap();
    for secret in [
        app["webhook_secret"].as_str().unwrap(),
        app["client_secret"].as_str().unwrap(),
        pem_body,
    ] {
        assert!(!stdout_text.contains(secret), "a secret was printed");
        assert!(!stderr_text.contains(secret), "a secret was printed");
        assert!(!done_page.contains(secret), "a secret was shown on the page");
    }

    // The files: the key as GitHub sent it, `.env` updated in place, both 0600.
    let key_path = dir.path().join("orchestrator.private-key.pem");
    assert_eq!(std::fs::read_to_string(&key_path).unwrap(), pem);
    let env_path = dir.path().join(".env");
    let env_text = std::fs::read_to_string(&env_path).unwrap();
    assert!(
        !env_text.contains(app["client_secret"].as_str().unwrap()),
        "unused secrets are not kept"
    );
    assert!(
        env_text.starts_with("# my settings\nOPENAI_API_KEY=sk-keep-me\n"),
        "{env_text}"
    );
    let env = orchestrator::config::read_dotenv(&env_path).unwrap();
    assert_eq!(env["GITHUB_APP_ID"], APP_ID.to_string());
    assert_eq!(
        env["GITHUB_WEBHOOK_SECRET"],
        app["webhook_secret"].as_str().unwrap()
    );
    assert_eq!(env["GITHUB_PRIVATE_KEY_PATH"], "./orchestrator.private-key.pem");
    assert_eq!(env["OPENAI_API_KEY"], "sk-keep-me");
    assert_eq!(env["ORCH_API_TOKEN"], "tok");
    assert_eq!(env_text.matches("GITHUB_APP_ID=").count(), 1);
    #[cfg(unix)]
    {
        assert_eq!(mode(&key_path), 0o600);
        assert_eq!(mode(&env_path), 0o600);
    }

    // The configuration reads them, and the App authenticates with them.
    let empty_toml = dir.path().join("empty.toml");
    std::fs::write(&empty_toml, "").unwrap();
    let config = orchestrator::config::Config::load(&orchestrator::config::ConfigSources {
        file: Some(empty_toml),
        dotenv: Some(env_path.clone()),
        env: [("GITHUB_API_URL".to_string(), fake.url.clone())].into(),
    })
    .unwrap();
    assert_eq!(config.github.app_id, Some(APP_ID));
    let mut github_config = config.github.clone();
    // The key path is relative to the directory setup ran in.
    github_config.private_key_path = Some(dir.path().join("orchestrator.private-key.pem"));
    let github = orchestrator::github::GitHub::from_config(&github_config)
        .unwrap()
        .unwrap();
    let me = github.app().await.unwrap();
    assert_eq!(me.id, APP_ID);
}

#[tokio::test]
async fn setup_refuses_to_overwrite_a_key_and_a_spent_code_fails_cleanly() {
    let fake = FakeGitHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("orchestrator.private-key.pem"), "an older key").unwrap();
    // GitHub's API address comes from .env when no flag names it.
    let dotenv = format!("GITHUB_API_URL={}\n", fake.url);
    std::fs::write(dir.path().join(".env"), &dotenv).unwrap();
    let output = setup_command(dir.path(), &fake, false, &[])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--force"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("orchestrator.private-key.pem")).unwrap(),
        "an older key"
    );

    // With --force it runs; GitHub refuses a code it does not know (404).
    let mut child = setup_command(dir.path(), &fake, false, &["--force"])
        .spawn()
        .unwrap();
    let mut seen = String::new();
    let url = page_url(&mut child, &mut seen).await;
    let html = reqwest::get(&url).await.unwrap().text().await.unwrap();
    let action = unescape(attribute(&html, "<form", "action"));
    assert!(
        action.starts_with("https://github.example/settings/apps/new?state="),
        "{action}"
    );
    let state = action.split("state=").nth(1).unwrap().to_string();
    let answer = reqwest::get(format!("{url}callback?code=unknown&state={state}"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 502);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("orchestrator.private-key.pem")).unwrap(),
        "an older key",
        "nothing is written when the conversion fails"
    );
    assert_eq!(std::fs::read_to_string(dir.path().join(".env")).unwrap(), dotenv);
    assert_eq!(
        fake.count("POST", "/app-manifests/*/conversions"),
        1,
        "the code went to the API named in .env"
    );
}
