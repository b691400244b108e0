//! Our own types for what the bot reads from and sends to GitHub. octocrab's
//! models stop at this module: the rest of the program sees only these.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `owner/name` of a repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoRef {
    pub owner: String,
    pub name: String,
}

impl RepoRef {
    pub fn new(owner: impl Into<String>, name: impl Into<String>) -> RepoRef {
        RepoRef {
            owner: owner.into(),
            name: name.into(),
        }
    }

    /// Parses `owner/name`; `None` for anything else.
    pub fn parse(full_name: &str) -> Option<RepoRef> {
        let (owner, name) = full_name.split_once('/')?;
        let valid = |s: &str| !s.is_empty() && !s.contains('/');
        (valid(owner) && valid(name)).then(|| RepoRef::new(owner, name))
    }

    /// `/repos/{owner}/{name}`, each part percent-encoded.
    pub(crate) fn path(&self) -> String {
        format!("/repos/{}/{}", encode(&self.owner), encode(&self.name))
    }
}

impl fmt::Display for RepoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for a
/// path segment or a query value.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Undoes [`encode`] (and any other `%XX`), for values read back from URLs.
pub(crate) fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the bot needs of a repository.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Repository {
    pub id: u64,
    pub full_name: String,
    pub default_branch: String,
    /// Where jobs clone from (GHES and test remotes work unchanged).
    pub clone_url: String,
    #[serde(default)]
    pub private: bool,
    #[serde(default)]
    pub archived: bool,
}

/// A user's permission on a repository, finest first as GitHub's `role_name` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    None,
    Read,
    Triage,
    Write,
    Maintain,
    Admin,
}

impl Permission {
    /// Decides on `role_name` when present, else on the legacy `permission`
    /// (where `maintain` shows as `write` and `triage` as `read`).
    pub fn from_answer(role_name: Option<&str>, permission: Option<&str>) -> Permission {
        role_name
            .and_then(Permission::from_word)
            .or_else(|| permission.and_then(Permission::from_word))
            .unwrap_or(Permission::None)
    }

    fn from_word(word: &str) -> Option<Permission> {
        Some(match word.trim().to_ascii_lowercase().as_str() {
            "admin" => Permission::Admin,
            "maintain" => Permission::Maintain,
            "write" | "push" => Permission::Write,
            "triage" => Permission::Triage,
            "read" | "pull" => Permission::Read,
            "none" => Permission::None,
            _ => return None,
        })
    }

    /// Write, maintain or admin: may start work (DESIGN.md §4).
    pub fn can_write(self) -> bool {
        self >= Permission::Write
    }
}

/// An issue as the bot checks it before acting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub number: u64,
    /// `open` or `closed`.
    pub state: String,
    pub locked: bool,
    pub title: String,
    pub body: String,
    /// GitHub returns pull requests from the issues API too.
    pub is_pull_request: bool,
}

impl Issue {
    pub fn is_open(&self) -> bool {
        self.state == "open"
    }
}

#[derive(Deserialize)]
pub(crate) struct IssueAnswer {
    number: u64,
    state: String,
    #[serde(default)]
    locked: bool,
    #[serde(default)]
    title: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    pull_request: Option<serde_json::Value>,
}

impl From<IssueAnswer> for Issue {
    fn from(a: IssueAnswer) -> Issue {
        Issue {
            number: a.number,
            state: a.state,
            locked: a.locked,
            title: a.title,
            body: a.body.unwrap_or_default(),
            is_pull_request: a.pull_request.is_some(),
        }
    }
}

/// An account as GitHub shows it on comments and users.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    pub id: u64,
    pub login: String,
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// An issue comment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Comment {
    pub id: u64,
    #[serde(default)]
    pub html_url: String,
    #[serde(default)]
    pub body: String,
    pub user: Option<User>,
}

/// The reactions GitHub accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Reaction {
    #[serde(rename = "+1")]
    PlusOne,
    #[serde(rename = "-1")]
    MinusOne,
    #[serde(rename = "laugh")]
    Laugh,
    #[serde(rename = "confused")]
    Confused,
    #[serde(rename = "heart")]
    Heart,
    #[serde(rename = "hooray")]
    Hooray,
    #[serde(rename = "rocket")]
    Rocket,
    #[serde(rename = "eyes")]
    Eyes,
}

/// A pull request, as much as the bot needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    pub html_url: String,
    pub state: String,
    pub head_ref: String,
    pub head_sha: String,
}

#[derive(Deserialize)]
pub(crate) struct PullAnswer {
    number: u64,
    #[serde(default)]
    html_url: String,
    #[serde(default)]
    state: String,
    head: PullHead,
}

#[derive(Deserialize)]
struct PullHead {
    #[serde(rename = "ref", default)]
    git_ref: String,
    #[serde(default)]
    sha: String,
}

impl From<PullAnswer> for PullRequest {
    fn from(a: PullAnswer) -> PullRequest {
        PullRequest {
            number: a.number,
            html_url: a.html_url,
            state: a.state,
            head_ref: a.head.git_ref,
            head_sha: a.head.sha,
        }
    }
}

/// What to open: `head` is a branch of the same repository (or `owner:branch`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewPullRequest {
    pub title: String,
    pub head: String,
    pub base: String,
    pub body: String,
    pub draft: bool,
    pub maintainer_can_modify: bool,
}

/// The App itself (`GET /app`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct App {
    pub id: u64,
    pub slug: String,
    #[serde(default)]
    pub name: String,
}

/// Who the bot is on GitHub, learned at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotIdentity {
    pub slug: String,
    /// `<slug>[bot]`.
    pub login: String,
    /// The bot user's numeric id: the loop guard and the commit e-mail use it.
    pub user_id: u64,
}

impl BotIdentity {
    /// The commit author name: `<slug>[bot]`.
    pub fn commit_name(&self) -> &str {
        &self.login
    }

    /// `<id>+<slug>[bot]@users.noreply.github.com`, which GitHub links to the bot.
    pub fn commit_email(&self) -> String {
        format!("{}+{}@users.noreply.github.com", self.user_id, self.login)
    }

    /// `<slug>[bot] <<id>+<slug>[bot]@users.noreply.github.com>`.
    pub fn commit_identity(&self) -> String {
        format!("{} <{}>", self.commit_name(), self.commit_email())
    }
}

/// An installation of the App.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Installation {
    pub id: u64,
    pub account: Option<User>,
}

/// One delivery of the App's webhook (`GET /app/hook/deliveries`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HookDelivery {
    pub id: u64,
    /// The `X-GitHub-Delivery` of the delivery.
    pub guid: String,
    #[serde(default)]
    pub delivered_at: String,
    #[serde(default)]
    pub redelivery: bool,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub status_code: u16,
    #[serde(default)]
    pub event: String,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub installation_id: Option<u64>,
    #[serde(default)]
    pub repository_id: Option<u64>,
}

/// One page of deliveries and the cursor of the next (older) page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPage {
    pub deliveries: Vec<HookDelivery>,
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_name_wins_over_legacy_permission() {
        use Permission as P;
        let cases = [
            (Some("admin"), Some("admin"), P::Admin),
            (Some("maintain"), Some("write"), P::Maintain),
            (Some("write"), Some("write"), P::Write),
            (Some("triage"), Some("read"), P::Triage),
            (Some("read"), Some("read"), P::Read),
            (None, Some("write"), P::Write),
            (None, Some("none"), P::None),
            (Some("custom-role"), Some("read"), P::Read),
            (None, None, P::None),
        ];
        for (role, legacy, want) in cases {
            assert_eq!(Permission::from_answer(role, legacy), want, "{role:?}/{legacy:?}");
        }
        assert!(P::Maintain.can_write() && P::Write.can_write() && !P::Triage.can_write());
    }

    #[test]
    fn bot_commit_identity() {
        let id = BotIdentity {
            slug: "orch".into(),
            login: "orch[bot]".into(),
            user_id: 41,
        };
        assert_eq!(
            id.commit_identity(),
            "orch[bot] <41+orch[bot]@users.noreply.github.com>"
        );
    }

    #[test]
    fn repo_ref_parses_and_encodes() {
        assert_eq!(RepoRef::parse("a/b"), Some(RepoRef::new("a", "b")));
        assert_eq!(RepoRef::parse("a/b/c"), None);
        assert_eq!(encode("orch[bot]"), "orch%5Bbot%5D");
        assert_eq!(decode(&encode("a b=/é")), "a b=/é");
        assert_eq!(decode("100%"), "100%");
    }
}
