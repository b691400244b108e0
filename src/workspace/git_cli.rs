//! The network half of the workspace: `git fetch` and `git push` run as a
//! child process (ADR 0004), because libgit2 has no rustls transport and the
//! binary stays OpenSSL-free.
//!
//! The installation token reaches git only through `GIT_ASKPASS`: a tiny
//! shell script in a private directory (0700) that prints the token from a
//! file beside it (0600). Neither the argument list nor the environment of
//! the child holds the token (only the script's path), and the directory is
//! deleted as soon as the command ends. `-c credential.helper=` and an
//! isolated configuration keep the user's helpers and settings out.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::WorkspaceError;

/// A network command that runs longer than this is killed: a stuck fetch
/// must not hold a worker (or the mirror's lock) forever.
pub(crate) const NETWORK_TIMEOUT: Duration = Duration::from_secs(600);

/// The variables a git child keeps from our environment (names compared
/// without case, as proxies are spelled both ways); everything else is
/// dropped.
const INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "TMPDIR",
    "GIT_EXEC_PATH",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
];

/// How to run `git`: the program (normally `git` from `PATH`) and where the
/// short-lived askpass directories go.
#[derive(Debug, Clone)]
pub(crate) struct GitCli {
    pub(crate) program: PathBuf,
    pub(crate) scratch: PathBuf,
}

/// What a finished git command printed.
#[derive(Debug)]
pub(crate) struct GitOutput {
    pub(crate) success: bool,
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl GitCli {
    /// Runs `git <args>` in `dir`, answering credential prompts with `token`
    /// when there is one. Never fails on a non-zero exit: callers read the
    /// status (a push rejection is an answer, not a crash).
    pub(crate) async fn run(
        &self,
        dir: &Path,
        operation: &'static str,
        args: &[OsString],
        token: Option<&SecretString>,
    ) -> Result<GitOutput, WorkspaceError> {
        let askpass = match token {
            Some(token) => Some(Askpass::create(&self.scratch, token)?),
            None => None,
        };
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.arg("-C")
            .arg(dir)
            .args([
                "-c",
                "credential.helper=",
                "-c",
                "core.hooksPath=/dev/null",
                "-c",
                "gc.auto=0",
                "-c",
                "maintenance.auto=false",
            ])
            .args(args)
            // Only what git needs to find itself, its certificates and a
            // proxy: none of our secrets (API keys, database URL) and no
            // GIT_TRACE* that could print request headers.
            .env_clear()
            .envs(std::env::vars_os().filter(|(name, _)| {
                name.to_str()
                    .is_some_and(|name| INHERITED_ENV.iter().any(|keep| keep.eq_ignore_ascii_case(name)))
            }))
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        match &askpass {
            Some(askpass) => cmd.env("GIT_ASKPASS", &askpass.script),
            // No token: a prompt must fail at once rather than hang.
            None => cmd.env("GIT_ASKPASS", "/bin/false"),
        };
        tracing::debug!(operation, dir = %dir.display(), ?args, "running git");
        let output = tokio::time::timeout(NETWORK_TIMEOUT, cmd.output())
            .await
            .map_err(|_| WorkspaceError::GitCommand {
                operation,
                code: None,
                detail: format!("timed out after {}s", NETWORK_TIMEOUT.as_secs()),
            })?
            .map_err(WorkspaceError::Spawn)?;
        drop(askpass);
        let redact = |bytes: &[u8]| {
            let text = String::from_utf8_lossy(bytes).into_owned();
            match token {
                Some(t) if !t.expose_secret().is_empty() => text.replace(t.expose_secret(), "[redacted]"),
                _ => text,
            }
        };
        Ok(GitOutput {
            success: output.status.success(),
            code: output.status.code(),
            stdout: redact(&output.stdout),
            stderr: redact(&output.stderr),
        })
    }

    /// [`GitCli::run`], turning a non-zero exit into [`WorkspaceError::GitCommand`].
    pub(crate) async fn run_ok(
        &self,
        dir: &Path,
        operation: &'static str,
        args: &[OsString],
        token: Option<&SecretString>,
    ) -> Result<GitOutput, WorkspaceError> {
        let out = self.run(dir, operation, args, token).await?;
        if out.success {
            Ok(out)
        } else {
            Err(WorkspaceError::GitCommand {
                operation,
                code: out.code,
                detail: out.stderr.trim().to_string(),
            })
        }
    }
}

/// A private directory with the askpass script and the token file; removed
/// on drop, so the token is on disk only while one git command runs.
#[derive(Debug)]
pub(crate) struct Askpass {
    dir: PathBuf,
    pub(crate) script: PathBuf,
}

/// Git calls the askpass program with the prompt as its argument: the
/// username prompt gets `x-access-token` (what GitHub expects with an
/// installation token), any other (the password) the
/// token, read from the file beside the script.
const ASKPASS_SCRIPT: &str = "#!/bin/sh\n\
case \"$1\" in\n\
  [Uu]sername*) echo x-access-token ;;\n\
  *) exec cat \"${0%/*}/token\" ;;\n\
esac\n";

impl Askpass {
    pub(crate) fn create(scratch: &Path, token: &SecretString) -> Result<Askpass, WorkspaceError> {
        fs::create_dir_all(scratch)?;
        let dir = scratch.join(format!("askpass-{}", uuid::Uuid::new_v4().simple()));
        fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let askpass = Askpass {
            script: dir.join("askpass.sh"),
            dir,
        };
        let mut token_file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(askpass.dir.join("token"))?;
        token_file.write_all(token.expose_secret().as_bytes())?;
        token_file.write_all(b"\n")?;
        let mut script = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .open(&askpass.script)?;
        script.write_all(ASKPASS_SCRIPT.as_bytes())?;
        Ok(askpass)
    }
}

impl Drop for Askpass {
    fn drop(&mut self) {
        if let Err(err) = fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), %err, "could not remove the askpass directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn askpass_answers_username_and_token_then_disappears() {
        let scratch = std::env::temp_dir().join(format!("orch-askpass-test-{}", uuid::Uuid::new_v4()));
        let token = SecretString::from("ghs_secret123".to_string());
        let askpass = Askpass::create(&scratch, &token).expect("askpass");
        let ask = |prompt: &str| {
            let out = std::process::Command::new(&askpass.script)
                .arg(prompt)
                .env_clear()
                .output()
                .expect("run askpass");
            assert!(out.status.success());
            String::from_utf8(out.stdout).expect("utf8")
        };
        assert_eq!(ask("Username for 'https://github.com': "), "x-access-token\n");
        assert_eq!(
            ask("Password for 'https://x-access-token@github.com': "),
            "ghs_secret123\n"
        );
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&askpass.dir), 0o700);
        assert_eq!(mode(&askpass.dir.join("token")), 0o600);
        assert!(
            !fs::read_to_string(&askpass.script)
                .expect("script")
                .contains("ghs_")
        );
        let dir = askpass.dir.clone();
        drop(askpass);
        assert!(!dir.exists());
        let _ = fs::remove_dir_all(&scratch);
    }
}
