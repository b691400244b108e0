//! Everything the bot does on GitHub goes through this module: App and
//! installation authentication ([`auth`]), one resilient client
//! ([`GitHub`], [`InstallationClient`]) and our own types ([`model`],
//! [`checks`]). octocrab is only the HTTP transport underneath; see
//! `docs/adr/0002-github-client.md`.

pub mod auth;
pub mod checks;
pub mod client;
pub mod clock;
pub mod error;
pub mod model;
pub mod startup;
mod transport;

pub use auth::{AppCredentials, AuthError, InstallationToken};
pub use checks::{
    Annotation, AnnotationLevel, CheckAction, CheckConclusion, CheckOutput, CheckRun, CheckRunFields,
    CheckStatus,
};
pub use client::{GitHub, InstallationClient};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{GitHubError, ValidationDetail};
pub use model::{
    App, BotIdentity, Comment, DeliveryPage, HookDelivery, Installation, Issue, NewPullRequest, Permission,
    PullRequest, Reaction, RepoRef, Repository, User,
};
pub use transport::{API_VERSION, ClientOptions};
