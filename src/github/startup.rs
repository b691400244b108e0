//! What the server does with GitHub when it starts: learn who the bot is.
//! The bot user's id feeds intake's loop guard (events sent by the bot never
//! start work) and the commit identity. GitHub may be briefly unreachable at
//! start, so this keeps trying in the background instead of failing start-up.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::client::GitHub;
use super::model::BotIdentity;
use crate::server::Identity;

/// The first wait after a failed attempt; it doubles up to [`MAX_RETRY_WAIT`].
pub const FIRST_RETRY_WAIT: Duration = Duration::from_secs(5);
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(600);

/// `GET /app` then `GET /users/<slug>[bot]`, retried until it succeeds or
/// `shutdown` is cancelled; on success the identity is stored in `identity`.
pub async fn learn_identity(
    github: &GitHub,
    identity: &Identity,
    shutdown: &CancellationToken,
) -> Option<BotIdentity> {
    let mut wait = FIRST_RETRY_WAIT;
    loop {
        match github.learn_identity().await {
            Ok(bot) => {
                tracing::info!(login = %bot.login, user_id = bot.user_id, "learned the bot's identity");
                identity.set_bot(bot.clone());
                return Some(bot);
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in_secs = wait.as_secs(), "cannot learn the bot's identity yet");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = github.clock().sleep(wait) => {}
        }
        wait = (wait * 2).min(MAX_RETRY_WAIT);
    }
}
