//! Routing: what a verified, parsed delivery asks the bot to do.
//!
//! This is a pure function of the event and a few settings. What depends on
//! stored state (is the installation suspended, is a job already running on
//! this issue) is decided by the store in the same transaction that records
//! the delivery, so a delivery and its effect are recorded together or not at
//! all.
//!
//! Rules (DESIGN §4):
//! - events whose sender is a bot (`type == "Bot"`, or this App's own bot user
//!   by id) never start work;
//! - `issues.labeled` with the trigger label starts a job on the issue;
//! - `issue_comment.created` on an issue whose first non-blank line is an
//!   `/orchestrate` command starts a job or asks for a subcommand; a comment on
//!   a pull request is recorded only;
//! - a `Run` command from an author who is not an owner, member or
//!   collaborator creates a `rejected` job (a worker explains why);
//! - `check_run.requested_action` (`cancel`, `retry`) and
//!   `check_run.rerequested` on this App's `orchestrator` run steer its job;
//! - `installation*` events keep the installations table current.

use orchestrator_commands::Command;

use super::payload::{
    Account, CheckRunEvent, Event, InstallationEvent, InstallationRepositoriesEvent, IssueCommentEvent,
    IssuesEvent, RepoSummary,
};
use crate::jobs::Trigger;

/// The check run the bot creates on its branches.
pub const CHECK_RUN_NAME: &str = "orchestrator";

/// Author associations that may start a job from a comment.
const TRUSTED_ASSOCIATIONS: &[&str] = &["OWNER", "MEMBER", "COLLABORATOR"];

/// What intake needs to know about this deployment.
#[derive(Debug, Clone, Copy)]
pub struct IntakeSettings<'a> {
    pub trigger_label: &'a str,
    /// The App's own bot user id, once learned from `GET /users/<slug>[bot]`.
    pub bot_user_id: Option<u64>,
    /// The App's id, to recognise our own check runs.
    pub app_id: Option<u64>,
}

/// The issue an action is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRef {
    pub installation_id: u64,
    pub repo: String,
    pub repo_id: u64,
    pub issue_number: u64,
}

/// A request for a job, as intake saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    pub issue: IssueRef,
    /// Snapshot of the issue at trigger time: later edits do not change the job.
    pub issue_title: String,
    pub issue_body: String,
    pub trigger: Trigger,
    pub instructions: Option<String>,
    pub sender_login: String,
    pub sender_id: u64,
    pub sender_association: Option<String>,
    pub trigger_comment_id: Option<u64>,
    pub base_branch: Option<String>,
    /// `Some(reason)`: record the job as `rejected` with this reason.
    pub rejection: Option<String>,
}

/// Replies that belong to no job; a worker sends them from the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyKind {
    Help,
    Status,
    Usage {
        word: String,
        suggestion: Option<String>,
    },
    IssueClosed,
    NotPermitted {
        command: String,
    },
}

impl ReplyKind {
    /// The outbox `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            ReplyKind::Help => "help",
            ReplyKind::Status => "status",
            ReplyKind::Usage { .. } => "usage",
            ReplyKind::IssueClosed => "issue_closed",
            ReplyKind::NotPermitted { .. } => "not_permitted",
        }
    }

    /// Replies anyone can ask for are rate-limited per issue.
    pub fn rate_limited(&self) -> bool {
        !matches!(self, ReplyKind::NotPermitted { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyRequest {
    pub issue: IssueRef,
    pub kind: ReplyKind,
    pub requester: String,
    pub comment_id: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlKind {
    Cancel,
    Retry,
}

impl ControlKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ControlKind::Cancel => "cancel",
            ControlKind::Retry => "retry",
        }
    }
}

/// Which job a control request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlTarget {
    /// The issue's newest job (comment commands).
    Issue(IssueRef),
    /// A job named by our check run's `external_id`.
    Job {
        installation_id: u64,
        repo: String,
        job_id: String,
    },
}

impl ControlTarget {
    pub fn installation_id(&self) -> u64 {
        match self {
            ControlTarget::Issue(issue) => issue.installation_id,
            ControlTarget::Job { installation_id, .. } => *installation_id,
        }
    }
}

/// Cancel or retry, applied by a worker after the permission gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlRequest {
    pub target: ControlTarget,
    pub kind: ControlKind,
    pub sender_login: String,
    pub sender_id: u64,
    pub comment_id: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallationStatus {
    Active,
    Suspended,
    Deleted,
}

impl InstallationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InstallationStatus::Active => "active",
            InstallationStatus::Suspended => "suspended",
            InstallationStatus::Deleted => "deleted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationChange {
    pub id: u64,
    /// `None`: the status is unchanged (a repositories event).
    pub status: Option<InstallationStatus>,
    pub account_login: Option<String>,
    pub account_type: Option<String>,
    pub repository_selection: Option<String>,
    pub repos_added: Vec<(u64, String)>,
    pub repos_removed: Vec<u64>,
}

impl InstallationChange {
    /// A deleted installation covers no repository any more.
    pub fn removes_all_repositories(&self) -> bool {
        self.status == Some(InstallationStatus::Deleted)
    }
}

/// What a delivery asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// Recorded, nothing else; the reason is stored as the delivery's outcome.
    Ignore(String),
    Job(JobRequest),
    Reply(ReplyRequest),
    Control(ControlRequest),
    Installation(InstallationChange),
}

fn ignore(reason: impl Into<String>) -> Route {
    Route::Ignore(reason.into())
}

/// Decides what `event` asks for.
pub fn route(event: &Event, settings: &IntakeSettings<'_>) -> Route {
    match event {
        Event::Installation(e) => route_installation(e),
        Event::InstallationRepositories(e) => route_installation_repositories(e),
        Event::Issues(e) => route_issues(e, settings),
        Event::IssueComment(e) => route_issue_comment(e, settings),
        Event::CheckRun(e) => route_check_run(e, settings),
        Event::Other(_) => ignore("event not handled"),
    }
}

fn is_bot(sender: &Account, settings: &IntakeSettings<'_>) -> bool {
    sender.is_bot() || settings.bot_user_id == Some(sender.id)
}

fn route_issues(e: &IssuesEvent, settings: &IntakeSettings<'_>) -> Route {
    if e.action.as_deref() != Some("labeled") {
        return ignore("issues action not handled");
    }
    let Some(label) = &e.label else {
        return ignore("labeled event without a label");
    };
    if !label.name.eq_ignore_ascii_case(settings.trigger_label) {
        return ignore("not the trigger label");
    }
    let Some(sender) = &e.sender else {
        return ignore("no sender");
    };
    if is_bot(sender, settings) {
        return ignore("sender is a bot");
    }
    let (Some(installation), Some(repo)) = (&e.installation, &e.repository) else {
        return ignore("not an App delivery (no installation or repository)");
    };
    if e.issue.pull_request.is_some() {
        return ignore("label on a pull request");
    }
    if e.issue.state.as_deref() == Some("closed") {
        return ignore("issue is closed");
    }
    Route::Job(JobRequest {
        issue: IssueRef {
            installation_id: installation.id,
            repo: repo.full_name.clone(),
            repo_id: repo.id,
            issue_number: e.issue.number,
        },
        issue_title: e.issue.title.clone(),
        issue_body: e.issue.body.clone().unwrap_or_default(),
        trigger: Trigger::Label,
        instructions: None,
        sender_login: sender.login.clone(),
        sender_id: sender.id,
        sender_association: None,
        trigger_comment_id: None,
        base_branch: repo.default_branch.clone(),
        rejection: None,
    })
}

fn route_issue_comment(e: &IssueCommentEvent, settings: &IntakeSettings<'_>) -> Route {
    if e.action.as_deref() != Some("created") {
        return ignore("issue_comment action not handled");
    }
    let Some(command) = e.comment.body.as_deref().and_then(orchestrator_commands::parse) else {
        return ignore("no command");
    };
    let sender = e.sender.as_ref().unwrap_or(&e.comment.user);
    if is_bot(sender, settings) || is_bot(&e.comment.user, settings) {
        return ignore("sender is a bot");
    }
    if e.issue.pull_request.is_some() {
        return ignore("command on a pull request (recorded; pull request follow-up is not handled)");
    }
    let (Some(installation), Some(repo)) = (&e.installation, &e.repository) else {
        return ignore("not an App delivery (no installation or repository)");
    };
    if e.issue.locked {
        return ignore("issue is locked");
    }
    let issue = IssueRef {
        installation_id: installation.id,
        repo: repo.full_name.clone(),
        repo_id: repo.id,
        issue_number: e.issue.number,
    };
    let trusted = TRUSTED_ASSOCIATIONS.contains(&e.comment.author_association.as_str());
    let reply = |kind: ReplyKind| {
        Route::Reply(ReplyRequest {
            issue: issue.clone(),
            kind,
            requester: sender.login.clone(),
            comment_id: Some(e.comment.id),
        })
    };
    let control = |kind: ControlKind| {
        if !trusted {
            return reply(ReplyKind::NotPermitted {
                command: kind.as_str().to_string(),
            });
        }
        Route::Control(ControlRequest {
            target: ControlTarget::Issue(issue.clone()),
            kind,
            sender_login: sender.login.clone(),
            sender_id: sender.id,
            comment_id: Some(e.comment.id),
        })
    };
    match command {
        Command::Help => reply(ReplyKind::Help),
        Command::Status => reply(ReplyKind::Status),
        Command::Unknown { word, suggestion } => reply(ReplyKind::Usage {
            word,
            suggestion: suggestion.map(str::to_string),
        }),
        Command::Cancel => control(ControlKind::Cancel),
        Command::Retry => control(ControlKind::Retry),
        Command::Run { instructions } => {
            if e.issue.state.as_deref() == Some("closed") {
                return reply(ReplyKind::IssueClosed);
            }
            Route::Job(JobRequest {
                issue: issue.clone(),
                issue_title: e.issue.title.clone(),
                issue_body: e.issue.body.clone().unwrap_or_default(),
                trigger: Trigger::Comment,
                instructions,
                sender_login: sender.login.clone(),
                sender_id: sender.id,
                sender_association: Some(e.comment.author_association.clone()),
                trigger_comment_id: Some(e.comment.id),
                base_branch: repo.default_branch.clone(),
                rejection: (!trusted).then(|| {
                    format!(
                        "permission: @{} is not an owner, member or collaborator of {} (author association {})",
                        sender.login, repo.full_name, e.comment.author_association
                    )
                }),
            })
        }
    }
}

fn route_check_run(e: &CheckRunEvent, settings: &IntakeSettings<'_>) -> Route {
    let kind = match (e.action.as_deref(), e.requested_action.as_ref()) {
        (Some("requested_action"), Some(action)) => match action.identifier.as_str() {
            "cancel" => ControlKind::Cancel,
            "retry" => ControlKind::Retry,
            _ => return ignore("unknown requested action"),
        },
        (Some("rerequested"), _) => ControlKind::Retry,
        _ => return ignore("check_run action not handled"),
    };
    if e.check_run.name != CHECK_RUN_NAME {
        return ignore("not the orchestrator check run");
    }
    if let (Some(ours), Some(app)) = (settings.app_id, &e.check_run.app)
        && ours != app.id
    {
        return ignore("check run of another App");
    }
    let Some(job_id) = e.check_run.external_id.clone().filter(|id| !id.is_empty()) else {
        return ignore("check run without a job id");
    };
    let Some(sender) = &e.sender else {
        return ignore("no sender");
    };
    if is_bot(sender, settings) {
        return ignore("sender is a bot");
    }
    let (Some(installation), Some(repo)) = (&e.installation, &e.repository) else {
        return ignore("not an App delivery (no installation or repository)");
    };
    Route::Control(ControlRequest {
        target: ControlTarget::Job {
            installation_id: installation.id,
            repo: repo.full_name.clone(),
            job_id,
        },
        kind,
        sender_login: sender.login.clone(),
        sender_id: sender.id,
        comment_id: None,
    })
}

fn repos(list: &[RepoSummary]) -> Vec<(u64, String)> {
    list.iter().map(|r| (r.id, r.full_name.clone())).collect()
}

fn route_installation(e: &InstallationEvent) -> Route {
    let status = match e.action.as_deref() {
        Some("created" | "unsuspend" | "new_permissions_accepted") => InstallationStatus::Active,
        Some("suspend") => InstallationStatus::Suspended,
        Some("deleted") => InstallationStatus::Deleted,
        _ => return ignore("installation action not handled"),
    };
    let account = e.installation.account.as_ref();
    Route::Installation(InstallationChange {
        id: e.installation.id,
        status: Some(status),
        account_login: account.map(|a| a.login.clone()),
        account_type: account.map(|a| a.kind.clone()),
        repository_selection: e.installation.repository_selection.clone(),
        repos_added: if status == InstallationStatus::Active {
            repos(&e.repositories)
        } else {
            Vec::new()
        },
        repos_removed: Vec::new(),
    })
}

fn route_installation_repositories(e: &InstallationRepositoriesEvent) -> Route {
    let account = e.installation.account.as_ref();
    Route::Installation(InstallationChange {
        id: e.installation.id,
        status: None,
        account_login: account.map(|a| a.login.clone()),
        account_type: account.map(|a| a.kind.clone()),
        repository_selection: e.installation.repository_selection.clone(),
        repos_added: repos(&e.repositories_added),
        repos_removed: e.repositories_removed.iter().map(|r| r.id).collect(),
    })
}
