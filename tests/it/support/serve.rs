//! The real `orchestrator serve` binary on a free port, the signed deliveries
//! it is sent, and a small git project to give it work on.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::SECRET;

pub const BIN: &str = env!("CARGO_BIN_EXE_orchestrator");

/// A local port nothing listens on (yet).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `orchestrator serve` in `dir` on `port`, with nothing of the outside
/// environment but `PATH`: the webhook secret, `dir` as data directory,
/// `RUST_LOG=warn`. Later `env` calls replace these.
pub fn serve_command(dir: &Path, port: u16) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("serve")
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env("ORCH_LISTEN", format!("127.0.0.1:{port}"))
        .env("ORCH_DATA_DIR", dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    command
}

/// A running server; killed when dropped, so a failing test leaves none behind.
pub struct Served {
    pub child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    log: Option<PathBuf>,
}

impl Served {
    /// Spawns `command` (see [`serve_command`]) with its stderr written to
    /// `log` (or dropped) and waits until `port` accepts connections.
    pub fn start(mut command: Command, port: u16, log: Option<&Path>) -> Served {
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::null(),
        };
        let child = command.stderr(stderr).spawn().unwrap();
        let mut served = Served {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log: log.map(Path::to_path_buf),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = served.child.try_wait() {
                panic!("the server exited with {status}:\n{}", served.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "the server did not start:\n{}",
                served.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        served
    }

    /// The last 40 lines of its log (empty when it has none).
    pub fn log_tail(&self) -> String {
        let Some(path) = &self.log else {
            return String::new();
        };
        let log = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM and waits up to `within` for the exit; `None` when it
    /// is still running then.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Posts a delivery signed with [`SECRET`] to a server's `/webhook`; the status code.
pub async fn post_webhook(
    client: &reqwest::Client,
    base: &str,
    event: &str,
    delivery: &str,
    body: &[u8],
) -> u16 {
    client
        .post(format!("{base}/webhook"))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header(
            "x-hub-signature-256",
            orchestrator::webhook::signature::sign(SECRET, body),
        )
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Runs git in `dir` as a fixed author; its trimmed stdout.
pub fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_NAME", "Dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `dir/project`: one commit on `main` with a README and an `answer()`
/// that returns 41 (the scripted plans make it 42).
pub fn answer_project(dir: &Path) -> PathBuf {
    let repo = dir.join("project");
    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::write(repo.join("README.md"), "# Project\n\nA project.\n").unwrap();
    std::fs::write(repo.join("src/lib.rs"), "pub fn answer() -> u32 {\n    41\n}\n").unwrap();
    git_in(&repo, &["init", "-q", "-b", "main"]);
    git_in(&repo, &["add", "."]);
    git_in(&repo, &["commit", "-q", "-m", "initial"]);
    repo
}
