//! The LLM layer: one narrow trait, one implementation over any
//! OpenAI-compatible endpoint, and the budget gate that every call passes.
//!
//! The trait is deliberately small (a chat call, and an embeddings call for
//! the optional dense retrieval) so pipeline stages can be tested with a
//! scripted model, while the production implementation
//! ([`openai::OpenAiModel`]) speaks the real wire protocol through
//! async-openai with our own transport ([`transport`]): timeouts, bounded
//! retries on 429/5xx/timeouts with jittered backoff that honours
//! `Retry-After`, and no retry of anything else.

pub mod budget;
pub mod openai;
pub mod transport;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: Role::System,
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: Role::User,
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// One chat completion request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    /// The most the answer may cost; also what the budget gate reserves.
    pub max_completion_tokens: u32,
    pub temperature: Option<f32>,
}

/// Token counts the endpoint reported for one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// One answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub content: String,
    /// The model name the endpoint answered with (often dated).
    pub model: String,
    pub usage: Usage,
}

/// Why a call failed. Callers branch on these: a refusal of the prompt is not
/// retried, a cancelled call stops the job, the others fail it with a reason.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("the LLM endpoint is rate-limiting us and retries are exhausted")]
    RateLimited { retry_after: Option<Duration> },
    #[error("the LLM endpoint failed ({status}) and retries are exhausted")]
    Server { status: u16 },
    #[error("the LLM call timed out and retries are exhausted")]
    Timeout,
    #[error("cannot reach the LLM endpoint: {0}")]
    Network(String),
    #[error("the LLM endpoint refused the credentials ({status}); check OPENAI_API_KEY")]
    Unauthorized { status: u16 },
    #[error("the prompt is longer than the model's context window: {0}")]
    ContextTooLong(String),
    #[error("the LLM endpoint refused the request ({status}): {message}")]
    BadRequest { status: u16, message: String },
    #[error("the LLM endpoint answered something unreadable: {0}")]
    BadResponse(String),
    #[error("cancelled")]
    Cancelled,
}

/// One embeddings request: many inputs, one vector each.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingRequest {
    pub model: String,
    pub inputs: Vec<String>,
}

/// The vectors of an [`EmbeddingRequest`], in the order of its inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingResponse {
    pub vectors: Vec<Vec<f32>>,
    /// The model name the endpoint answered with.
    pub model: String,
    /// Embeddings are priced on their input only.
    pub prompt_tokens: u64,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A chat model, and optionally an embeddings endpoint next to it.
/// Implementations must stop promptly when `cancel` fires.
pub trait LanguageModel: Send + Sync {
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>>;

    /// Embeds `request.inputs`. A client without an embeddings endpoint
    /// refuses, and callers fall back to ranking without vectors.
    fn embed<'a>(
        &'a self,
        request: &'a EmbeddingRequest,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<EmbeddingResponse, LlmError>> {
        let _ = (request, cancel);
        Box::pin(async {
            Err(LlmError::BadRequest {
                status: 0,
                message: "this model client has no embeddings endpoint".into(),
            })
        })
    }
}
