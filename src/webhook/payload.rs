//! Typed webhook payloads: only the fields the bot reads. Unknown fields are
//! skipped (serde still validates the whole document while skipping them), so
//! GitHub adding fields never breaks intake.
//!
//! Each event struct carries the common envelope (`action`, `installation`,
//! `repository`, `sender`) as plain fields rather than through
//! `#[serde(flatten)]`, which would buffer the whole payload a second time.

use serde::Deserialize;

/// A GitHub account (user, organisation or bot).
#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    pub login: String,
    pub id: u64,
    /// `User`, `Organization` or `Bot`.
    #[serde(rename = "type", default)]
    pub kind: String,
}

impl Account {
    /// Bots never start work (the loop guard); see [`crate::webhook::intake`].
    pub fn is_bot(&self) -> bool {
        self.kind == "Bot"
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct InstallationRef {
    pub id: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    pub id: u64,
    pub full_name: String,
    #[serde(default)]
    pub default_branch: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Label {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub locked: bool,
    /// Present (with URLs) when the "issue" is a pull request.
    #[serde(default)]
    pub pull_request: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Comment {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    pub user: Account,
    /// `OWNER`, `MEMBER`, `COLLABORATOR`, `CONTRIBUTOR`, `NONE`, …
    #[serde(default)]
    pub author_association: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CheckRun {
    pub id: u64,
    pub head_sha: String,
    #[serde(default)]
    pub name: String,
    /// Our job id, set when the bot creates the run.
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub app: Option<AppRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AppRef {
    pub id: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RequestedAction {
    pub identifier: String,
}

/// The installation object of `installation*` events.
#[derive(Debug, Clone, Deserialize)]
pub struct Installation {
    pub id: u64,
    #[serde(default)]
    pub account: Option<Account>,
    #[serde(default)]
    pub repository_selection: Option<String>,
    #[serde(default)]
    pub suspended_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RepoSummary {
    pub id: u64,
    pub full_name: String,
}

macro_rules! event_struct {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Deserialize)]
        pub struct $name {
            #[serde(default)]
            pub action: Option<String>,
            #[serde(default)]
            pub repository: Option<Repository>,
            #[serde(default)]
            pub sender: Option<Account>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }
    };
}

event_struct!(
    /// Any event: just the envelope.
    Envelope {
        #[serde(default)]
        installation: Option<InstallationRef>,
    }
);

event_struct!(
    /// `issues`
    IssuesEvent {
        #[serde(default)]
        installation: Option<InstallationRef>,
        issue: Issue,
        #[serde(default)]
        label: Option<Label>,
    }
);

event_struct!(
    /// `issue_comment`
    IssueCommentEvent {
        #[serde(default)]
        installation: Option<InstallationRef>,
        issue: Issue,
        comment: Comment,
    }
);

event_struct!(
    /// `check_run`
    CheckRunEvent {
        #[serde(default)]
        installation: Option<InstallationRef>,
        check_run: CheckRun,
        #[serde(default)]
        requested_action: Option<RequestedAction>,
    }
);

event_struct!(
    /// `installation`
    InstallationEvent {
        installation: Installation,
        #[serde(default)]
        repositories: Vec<RepoSummary>,
    }
);

event_struct!(
    /// `installation_repositories`
    InstallationRepositoriesEvent {
        installation: Installation,
        #[serde(default)]
        repositories_added: Vec<RepoSummary>,
        #[serde(default)]
        repositories_removed: Vec<RepoSummary>,
    }
);

/// A parsed delivery. `Other` keeps the envelope of events the bot records
/// but does not act on.
#[derive(Debug, Clone)]
pub enum Event {
    Issues(IssuesEvent),
    IssueComment(IssueCommentEvent),
    CheckRun(CheckRunEvent),
    Installation(InstallationEvent),
    InstallationRepositories(InstallationRepositoriesEvent),
    Other(Envelope),
}

/// The fields recorded with every delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvelopeFields {
    pub action: Option<String>,
    pub installation_id: Option<u64>,
    pub repo: Option<String>,
    pub repo_id: Option<u64>,
    pub sender_login: Option<String>,
    pub sender_id: Option<u64>,
}

/// Why a body could not be parsed at all (→ 400).
#[derive(Debug, thiserror::Error)]
#[error("body is not a JSON object: {0}")]
pub struct NotJson(#[from] serde_json::Error);

impl Event {
    /// Parses `body` as the event named by `X-GitHub-Event`. A body that is
    /// JSON but not of the expected shape falls back to [`Event::Other`] (it is
    /// recorded, and the reason is returned so it can be logged); a body that is
    /// not a JSON object is an error.
    pub fn parse(event: &str, body: &[u8]) -> Result<(Event, Option<String>), NotJson> {
        let typed = match event {
            "issues" => serde_json::from_slice(body).map(Event::Issues),
            "issue_comment" => serde_json::from_slice(body).map(Event::IssueComment),
            "check_run" => serde_json::from_slice(body).map(Event::CheckRun),
            "installation" => serde_json::from_slice(body).map(Event::Installation),
            "installation_repositories" => serde_json::from_slice(body).map(Event::InstallationRepositories),
            _ => return Ok((Event::Other(serde_json::from_slice(body)?), None)),
        };
        match typed {
            Ok(event) => Ok((event, None)),
            Err(typed_err) => {
                let envelope: Envelope = serde_json::from_slice(body)?;
                Ok((Event::Other(envelope), Some(typed_err.to_string())))
            }
        }
    }

    /// The envelope fields recorded with the delivery.
    pub fn envelope(&self) -> EnvelopeFields {
        let (action, installation, repository, sender) = match self {
            Event::Issues(e) => (
                &e.action,
                e.installation.as_ref().map(|i| i.id),
                &e.repository,
                &e.sender,
            ),
            Event::IssueComment(e) => (
                &e.action,
                e.installation.as_ref().map(|i| i.id),
                &e.repository,
                &e.sender,
            ),
            Event::CheckRun(e) => (
                &e.action,
                e.installation.as_ref().map(|i| i.id),
                &e.repository,
                &e.sender,
            ),
            Event::Installation(e) => (&e.action, Some(e.installation.id), &e.repository, &e.sender),
            Event::InstallationRepositories(e) => {
                (&e.action, Some(e.installation.id), &e.repository, &e.sender)
            }
            Event::Other(e) => (
                &e.action,
                e.installation.as_ref().map(|i| i.id),
                &e.repository,
                &e.sender,
            ),
        };
        EnvelopeFields {
            action: action.clone(),
            installation_id: installation,
            repo: repository.as_ref().map(|r| r.full_name.clone()),
            repo_id: repository.as_ref().map(|r| r.id),
            sender_login: sender.as_ref().map(|s| s.login.clone()),
            sender_id: sender.as_ref().map(|s| s.id),
        }
    }
}
