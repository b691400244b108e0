//! The GitHub client: [`GitHub`] acts as the App (JWT), [`InstallationClient`]
//! as one installation (installation token, fetched through the cache before
//! every call, so a job that outlives a token keeps working). One method per
//! thing the bot does; `transport.rs` does the sending, waiting and retrying.

use std::sync::Arc;

use http::Method;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::AppCredentials;
use super::checks::{CheckRun, CheckRunFields, plan_requests};
use super::clock::{Clock, SystemClock};
use super::error::GitHubError;
use super::model::*;
use super::transport::{Auth, Call, ClientOptions, Core, Replay};
use crate::config::GithubConfig;

/// Attempts of a comment creation guarded by a marker (see [`InstallationClient::create_comment_once`]).
const MARKED_COMMENT_ATTEMPTS: usize = 3;

/// The App's client. Cheap to clone; all clones share tokens and limits.
#[derive(Debug, Clone)]
pub struct GitHub {
    core: Arc<Core>,
}

impl GitHub {
    /// A client with explicit credentials, options and clock (tests inject a
    /// manual clock and the fake's URL).
    pub fn new(
        credentials: AppCredentials,
        options: ClientOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<GitHub, GitHubError> {
        Ok(GitHub {
            core: Arc::new(Core::new(credentials, options, clock)?),
        })
    }

    /// The production client from configuration; `Ok(None)` when no App is
    /// configured at all (no id and no key), an error when it is configured
    /// but unusable (the message names the setting).
    pub fn from_config(config: &GithubConfig) -> Result<Option<GitHub>, GitHubError> {
        let nothing =
            config.app_id.is_none() && config.private_key.is_none() && config.private_key_path.is_none();
        if nothing {
            return Ok(None);
        }
        let credentials = AppCredentials::from_config(config)?;
        let options = ClientOptions {
            api_url: config.api_url.clone(),
            ..ClientOptions::default()
        };
        GitHub::new(credentials, options, Arc::new(SystemClock)).map(Some)
    }

    /// The clock every wait of this client goes through.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        self.core.clock()
    }

    /// The client of one installation.
    pub fn installation(&self, installation_id: u64) -> InstallationClient {
        InstallationClient {
            core: self.core.clone(),
            id: installation_id,
        }
    }

    async fn get<T: for<'de> Deserialize<'de>>(&self, auth: Auth, path: String) -> Result<T, GitHubError> {
        self.core.send(Call::new(Method::GET, auth, path)).await?.json()
    }

    /// `GET /app`: the App's id and slug.
    pub async fn app(&self) -> Result<App, GitHubError> {
        self.get(Auth::App, "/app".into()).await
    }

    /// `GET /users/{login}` (public, no credentials).
    pub async fn user(&self, login: &str) -> Result<User, GitHubError> {
        self.get(Auth::Anonymous, format!("/users/{}", encode(login)))
            .await
    }

    /// The bot's slug, login and user id (`GET /app`, then `GET /users/<slug>[bot]`).
    pub async fn learn_identity(&self) -> Result<BotIdentity, GitHubError> {
        let app = self.app().await?;
        let login = format!("{}[bot]", app.slug);
        let user = self.user(&login).await?;
        Ok(BotIdentity {
            slug: app.slug,
            login,
            user_id: user.id,
        })
    }

    /// `GET /repos/{o}/{r}/installation`: the installation covering a repository.
    pub async fn repository_installation(&self, repo: &RepoRef) -> Result<Installation, GitHubError> {
        self.get(Auth::App, format!("{}/installation", repo.path())).await
    }

    /// One page (newest first) of the App's webhook deliveries; pass the
    /// returned cursor to get the next, older page.
    pub async fn webhook_deliveries(&self, cursor: Option<&str>) -> Result<DeliveryPage, GitHubError> {
        let mut path = "/app/hook/deliveries?per_page=100".to_string();
        if let Some(cursor) = cursor {
            path.push_str(&format!("&cursor={}", encode(cursor)));
        }
        let reply = self.core.send(Call::new(Method::GET, Auth::App, path)).await?;
        let next_cursor = reply.next_link().and_then(|url| query_value(&url, "cursor"));
        Ok(DeliveryPage {
            deliveries: reply.json()?,
            next_cursor,
        })
    }

    /// `POST /app/hook/deliveries/{id}/attempts`: ask GitHub to deliver again
    /// (a duplicate is harmless: intake dedups on the delivery id).
    pub async fn redeliver(&self, delivery_id: u64) -> Result<(), GitHubError> {
        let call = Call::new(
            Method::POST,
            Auth::App,
            format!("/app/hook/deliveries/{delivery_id}/attempts"),
        )
        .replay(Replay::Safe);
        self.core.send(call).await.map(drop)
    }
}

/// The decoded value of `name` in the query of `url` (encoded again when sent).
fn query_value(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| decode(value))
    })
}

/// One installation's client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct InstallationClient {
    core: Arc<Core>,
    id: u64,
}

#[derive(Deserialize)]
struct PermissionAnswer {
    permission: Option<String>,
    role_name: Option<String>,
}

#[derive(Deserialize)]
struct InstallationRepositories {
    repositories: Vec<Repository>,
}

impl InstallationClient {
    pub fn installation_id(&self) -> u64 {
        self.id
    }

    /// A token with more than five minutes left, for git's credential callback.
    /// Ask again for every push rather than keeping it.
    pub async fn token(&self) -> Result<SecretString, GitHubError> {
        Ok(self.core.installation_token(self.id).await?.token)
    }

    fn call(&self, method: Method, path: String) -> Call {
        Call::new(method, Auth::Installation(self.id), path)
    }

    async fn get<T: for<'de> Deserialize<'de>>(&self, path: String) -> Result<T, GitHubError> {
        self.core.send(self.call(Method::GET, path)).await?.json()
    }

    async fn send_json<T: for<'de> Deserialize<'de>>(&self, call: Call) -> Result<T, GitHubError> {
        self.core.send(call).await?.json()
    }

    /// `GET /repos/{o}/{r}`: default branch and clone URL.
    pub async fn repository(&self, repo: &RepoRef) -> Result<Repository, GitHubError> {
        self.get(repo.path()).await
    }

    /// A user's permission on `repo`; a 404 (not a collaborator, no such user) is `None`.
    pub async fn collaborator_permission(
        &self,
        repo: &RepoRef,
        user: &str,
    ) -> Result<Permission, GitHubError> {
        let path = format!("{}/collaborators/{}/permission", repo.path(), encode(user));
        match self.get::<PermissionAnswer>(path).await {
            Ok(answer) => Ok(Permission::from_answer(
                answer.role_name.as_deref(),
                answer.permission.as_deref(),
            )),
            Err(GitHubError::NotFound { .. }) => Ok(Permission::None),
            Err(err) => Err(err),
        }
    }

    /// `GET /repos/{o}/{r}/issues/{n}`.
    pub async fn issue(&self, repo: &RepoRef, number: u64) -> Result<Issue, GitHubError> {
        let answer: IssueAnswer = self.get(format!("{}/issues/{number}", repo.path())).await?;
        Ok(answer.into())
    }

    /// Creates a comment. Not retried after a 5xx or a lost connection (it
    /// could be posted twice); use [`Self::create_comment_once`] for that.
    pub async fn create_comment(
        &self,
        repo: &RepoRef,
        issue: u64,
        body: &str,
    ) -> Result<Comment, GitHubError> {
        let path = format!("{}/issues/{issue}/comments", repo.path());
        self.send_json(self.call(Method::POST, path).json(json!({ "body": body })))
            .await
    }

    /// Creates a comment whose body contains `marker` (e.g. a hidden
    /// `<!-- orchestrator:… -->`) at most once: after a 5xx or a lost
    /// connection the issue's comments are searched for the marker, and the
    /// POST is repeated only when it is not there.
    pub async fn create_comment_once(
        &self,
        repo: &RepoRef,
        issue: u64,
        body: &str,
        marker: &str,
    ) -> Result<Comment, GitHubError> {
        if marker.is_empty() || !body.contains(marker) {
            return Err(GitHubError::InvalidRequest(
                "the comment body must contain its marker".into(),
            ));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.create_comment(repo, issue, body).await {
                Err(err) if err.is_transient() && attempt < MARKED_COMMENT_ATTEMPTS => {
                    tracing::warn!(error = %err, "comment creation failed; looking for it before retrying");
                    if let Some(found) = self.find_comment(repo, issue, marker).await? {
                        return Ok(found);
                    }
                    self.core
                        .clock()
                        .sleep(self.core.options().min_backoff * attempt as u32)
                        .await;
                }
                other => return other,
            }
        }
    }

    /// The first comment of the issue whose body contains `marker`.
    pub async fn find_comment(
        &self,
        repo: &RepoRef,
        issue: u64,
        marker: &str,
    ) -> Result<Option<Comment>, GitHubError> {
        let comments = self.list_comments(repo, issue).await?;
        Ok(comments.into_iter().find(|c| c.body.contains(marker)))
    }

    /// `PATCH /repos/{o}/{r}/issues/comments/{id}` (no issue number in the path).
    pub async fn update_comment(
        &self,
        repo: &RepoRef,
        comment_id: u64,
        body: &str,
    ) -> Result<Comment, GitHubError> {
        let path = format!("{}/issues/comments/{comment_id}", repo.path());
        self.send_json(self.call(Method::PATCH, path).json(json!({ "body": body })))
            .await
    }

    /// Every comment of the issue, following `Link` pagination.
    pub async fn list_comments(&self, repo: &RepoRef, issue: u64) -> Result<Vec<Comment>, GitHubError> {
        let first = format!("{}/issues/{issue}/comments?per_page=100", repo.path());
        self.core
            .paginate(Auth::Installation(self.id), first, |reply| reply.json())
            .await
    }

    /// 👀 and friends on the issue itself; 200 (already there) and 201 both succeed.
    pub async fn react_to_issue(
        &self,
        repo: &RepoRef,
        issue: u64,
        reaction: Reaction,
    ) -> Result<(), GitHubError> {
        let path = format!("{}/issues/{issue}/reactions", repo.path());
        self.react(path, reaction).await
    }

    /// A reaction on an issue comment; 200 and 201 both succeed.
    pub async fn react_to_comment(
        &self,
        repo: &RepoRef,
        comment_id: u64,
        reaction: Reaction,
    ) -> Result<(), GitHubError> {
        let path = format!("{}/issues/comments/{comment_id}/reactions", repo.path());
        self.react(path, reaction).await
    }

    async fn react(&self, path: String, reaction: Reaction) -> Result<(), GitHubError> {
        // Idempotent on GitHub's side: a repeat answers 200.
        let call = self
            .call(Method::POST, path)
            .json(json!({ "content": reaction }))
            .replay(Replay::Safe);
        self.core.send(call).await.map(drop)
    }

    /// Adds labels (never replaces); idempotent.
    pub async fn add_labels(&self, repo: &RepoRef, issue: u64, labels: &[&str]) -> Result<(), GitHubError> {
        let path = format!("{}/issues/{issue}/labels", repo.path());
        let call = self
            .call(Method::POST, path)
            .json(json!({ "labels": labels }))
            .replay(Replay::Safe);
        self.core.send(call).await.map(drop)
    }

    /// Removes a label; a label that is not there (404) is no error.
    pub async fn remove_label(&self, repo: &RepoRef, issue: u64, label: &str) -> Result<(), GitHubError> {
        let path = format!("{}/issues/{issue}/labels/{}", repo.path(), encode(label));
        match self.core.send(self.call(Method::DELETE, path)).await {
            Ok(_) | Err(GitHubError::NotFound { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Creates a check run (`fields` from [`CheckRunFields::create`]); more
    /// than 50 annotations are sent by follow-up PATCHes. Not retried after a
    /// 5xx or a lost answer: the caller finds its run by `external_id` or
    /// creates it again at the next progress report.
    pub async fn create_check_run(
        &self,
        repo: &RepoRef,
        fields: CheckRunFields,
    ) -> Result<CheckRun, GitHubError> {
        let mut requests = plan_requests(fields)?.into_iter();
        let first = requests.next().unwrap_or_default();
        let path = format!("{}/check-runs", repo.path());
        let run: CheckRun = self
            .send_json(self.call(Method::POST, path).json(to_value(&first)?))
            .await?;
        self.send_annotation_chunks(repo, run.id, requests).await?;
        Ok(run)
    }

    /// Updates a check run (status, conclusion, output, actions).
    pub async fn update_check_run(
        &self,
        repo: &RepoRef,
        check_run_id: u64,
        fields: CheckRunFields,
    ) -> Result<CheckRun, GitHubError> {
        let mut requests = plan_requests(fields)?.into_iter();
        let first = requests.next().unwrap_or_default();
        let path = format!("{}/check-runs/{check_run_id}", repo.path());
        let run: CheckRun = self
            .send_json(self.call(Method::PATCH, path).json(to_value(&first)?))
            .await?;
        self.send_annotation_chunks(repo, check_run_id, requests).await?;
        Ok(run)
    }

    async fn send_annotation_chunks(
        &self,
        repo: &RepoRef,
        check_run_id: u64,
        chunks: impl Iterator<Item = CheckRunFields>,
    ) -> Result<(), GitHubError> {
        let path = format!("{}/check-runs/{check_run_id}", repo.path());
        for chunk in chunks {
            // Annotations append: a repeated PATCH would show them twice.
            let call = self
                .call(Method::PATCH, path.clone())
                .json(to_value(&chunk)?)
                .replay(Replay::Unsafe);
            self.core.send(call).await?;
        }
        Ok(())
    }

    /// Opens a pull request, or returns the open one for the same head: on
    /// GitHub's 422 "A pull request already exists for …" the open PR is
    /// looked up by `head=owner:branch`. That also makes a retry after a lost
    /// answer safe, so this POST is retried on 5xx like a read.
    pub async fn create_pull_request(
        &self,
        repo: &RepoRef,
        new: &NewPullRequest,
    ) -> Result<PullRequest, GitHubError> {
        let path = format!("{}/pulls", repo.path());
        let call = self
            .call(Method::POST, path)
            .json(to_value(new)?)
            .replay(Replay::Safe);
        match self.send_json::<PullAnswer>(call).await {
            Ok(answer) => Ok(answer.into()),
            Err(GitHubError::Validation { message, errors }) if already_exists(&errors) => {
                let head = qualified_head(repo, &new.head);
                self.find_open_pull_request(repo, &head)
                    .await?
                    .ok_or(GitHubError::Validation { message, errors })
            }
            Err(err) => Err(err),
        }
    }

    /// The open PR whose head is `owner:branch`.
    pub async fn find_open_pull_request(
        &self,
        repo: &RepoRef,
        head: &str,
    ) -> Result<Option<PullRequest>, GitHubError> {
        let path = format!(
            "{}/pulls?state=open&head={}&per_page=100",
            repo.path(),
            encode(head)
        );
        let pulls: Vec<PullAnswer> = self.get(path).await?;
        Ok(pulls.into_iter().next().map(PullRequest::from))
    }

    /// Every repository the installation covers (`GET /installation/repositories`, paginated).
    pub async fn repositories(&self) -> Result<Vec<Repository>, GitHubError> {
        let first = "/installation/repositories?per_page=100".to_string();
        self.core
            .paginate(Auth::Installation(self.id), first, |reply| {
                Ok(reply.json::<InstallationRepositories>()?.repositories)
            })
            .await
    }
}

fn to_value<T: serde::Serialize>(value: &T) -> Result<Value, GitHubError> {
    serde_json::to_value(value).map_err(|e| GitHubError::InvalidRequest(e.to_string()))
}

fn already_exists(errors: &[super::error::ValidationDetail]) -> bool {
    errors.iter().any(|e| {
        e.message
            .as_deref()
            .is_some_and(|m| m.starts_with("A pull request already exists"))
    })
}

/// `owner:branch` for the `head` filter.
fn qualified_head(repo: &RepoRef, head: &str) -> String {
    if head.contains(':') {
        head.to_string()
    } else {
        format!("{}:{head}", repo.owner)
    }
}
