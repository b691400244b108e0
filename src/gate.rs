//! The permission gate (DESIGN.md §4): before any work, and before a cancel
//! or retry is applied, the sender must hold write, maintain or admin on the
//! repository, as GitHub's collaborator-permission API reports it
//! (`role_name`, else the legacy `permission`). Intake has already turned
//! away authors who are not owners, members or collaborators; this catches
//! collaborators with triage or read access, and check-run button clicks,
//! which carry no author association at all.

use crate::github::{GitHubError, InstallationClient, Permission, RepoRef};

/// The gate's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateDecision {
    /// The sender may start and steer jobs.
    Allowed(Permission),
    /// The sender may not; `reason` is the job's `status_reason`
    /// (`permission: …`, see DESIGN.md §5).
    Denied { permission: Permission, reason: String },
}

impl GateDecision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, GateDecision::Allowed(_))
    }
}

/// Asks GitHub for `login`'s permission on `repo` and decides. A user GitHub
/// does not know as a collaborator (404) has no permission and is denied;
/// other errors are returned, so the caller retries rather than rejecting
/// someone because GitHub had a bad minute.
pub async fn check_permission(
    client: &InstallationClient,
    repo: &RepoRef,
    login: &str,
) -> Result<GateDecision, GitHubError> {
    let permission = client.collaborator_permission(repo, login).await?;
    Ok(decide(permission, login, &repo.to_string()))
}

/// The decision for a known permission (pure, for tests and callers that
/// already asked).
pub fn decide(permission: Permission, login: &str, repo: &str) -> GateDecision {
    if permission.can_write() {
        return GateDecision::Allowed(permission);
    }
    let reason = format!(
        "permission: {} has {} access to {}; write, maintain or admin is needed",
        safe_login(login).map_or_else(|| "the sender".to_string(), |l| format!("@{l}")),
        permission_word(permission),
        safe_repo(repo),
    );
    GateDecision::Denied { permission, reason }
}

/// The short, polite explanation posted on the issue. It names who may
/// trigger the bot and never quotes a command line.
pub fn rejection_comment(login: &str, repo: &str) -> String {
    let greeting = safe_login(login).map_or_else(|| "Hi,".to_string(), |l| format!("Hi @{l},"));
    let text = format!(
        "{greeting} thanks for asking! Only people with write, maintain or admin access to {} \
         can start or steer the orchestrator on this repository, so nothing was done. \
         Someone with that access can start the job for you.",
        safe_repo(repo),
    );
    orchestrator_commands::neutralize_commands(&text)
}

fn permission_word(permission: Permission) -> &'static str {
    match permission {
        Permission::None => "no",
        Permission::Read => "read",
        Permission::Triage => "triage",
        Permission::Write => "write",
        Permission::Maintain => "maintain",
        Permission::Admin => "admin",
    }
}

/// A login as GitHub allows it (letters, digits, `-`, at most 39), else
/// `None`: a crafted name must not inject Markdown or mention someone else.
pub fn safe_login(login: &str) -> Option<&str> {
    let valid = !login.is_empty()
        && login.len() <= 39
        && login.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    valid.then_some(login)
}

/// `owner/name` in a code span, with anything unexpected dropped.
fn safe_repo(repo: &str) -> String {
    let clean: String = repo
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        .take(140)
        .collect();
    format!("`{clean}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_and_above_pass_the_rest_is_denied_with_a_permission_reason() {
        for p in [Permission::Write, Permission::Maintain, Permission::Admin] {
            assert_eq!(decide(p, "octocat", "o/r"), GateDecision::Allowed(p));
        }
        for p in [Permission::Triage, Permission::Read, Permission::None] {
            let GateDecision::Denied { reason, .. } = decide(p, "octocat", "o/r") else {
                panic!("{p:?} allowed");
            };
            assert!(reason.starts_with("permission: @octocat has "), "{reason}");
        }
    }

    #[test]
    fn the_comment_is_polite_and_safe() {
        let text = rejection_comment("octocat", "o/r");
        assert!(text.contains("@octocat") && text.contains("write, maintain or admin"));
        let crafted = rejection_comment("x\n/orchestrate [a](http://evil)", "o/r\n/orchestrate");
        assert!(!crafted.contains('@') && !crafted.contains("evil"), "{crafted}");
        assert!(!orchestrator_commands::contains_command_line(&crafted));
    }
}
