//! A scripted, in-process [`LanguageModel`] for tests of the agents and of
//! the job runner: answers come from a queue, every request is recorded.
//!
//! It lives in the library (not under `#[cfg(test)]`) so that unit tests,
//! integration tests and the runner's tests share one double; it never talks
//! to the network and production code never constructs it.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio_util::sync::CancellationToken;

use crate::llm::{
    BoxFuture, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, LanguageModel, LlmError, Usage,
};

/// A queue of replies; when it runs dry, calls fail with a `BadRequest`
/// that says so (a test asked for more calls than it scripted).
#[derive(Debug, Default)]
pub struct ScriptedModel {
    replies: Mutex<VecDeque<Result<ChatResponse, LlmError>>>,
    requests: Mutex<Vec<ChatRequest>>,
    embedding_errors: Mutex<VecDeque<LlmError>>,
    embedding_requests: Mutex<Vec<EmbeddingRequest>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ScriptedModel {
    pub fn new() -> ScriptedModel {
        ScriptedModel::default()
    }

    /// Queues an answer with made-up usage (100 prompt, 10 completion tokens).
    pub fn push_reply(&self, content: &str) {
        self.push_reply_as(
            content,
            "scripted",
            Usage {
                prompt_tokens: 100,
                completion_tokens: 10,
            },
        );
    }

    /// Queues an answer from `model` with `usage`.
    pub fn push_reply_as(&self, content: &str, model: &str, usage: Usage) {
        lock(&self.replies).push_back(Ok(ChatResponse {
            content: content.to_string(),
            model: model.to_string(),
            usage,
        }));
    }

    /// Queues a failure.
    pub fn push_error(&self, error: LlmError) {
        lock(&self.replies).push_back(Err(error));
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<ChatRequest> {
        lock(&self.requests).clone()
    }

    /// The next embeddings call fails with `error`; without one queued,
    /// embeddings succeed (see [`LanguageModel::embed`] below).
    pub fn push_embedding_error(&self, error: LlmError) {
        lock(&self.embedding_errors).push_back(error);
    }

    /// Every embeddings request received, in order.
    pub fn embedding_requests(&self) -> Vec<EmbeddingRequest> {
        lock(&self.embedding_requests).clone()
    }

    /// Replies not consumed yet.
    pub fn remaining(&self) -> usize {
        lock(&self.replies).len()
    }
}

impl LanguageModel for ScriptedModel {
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        Box::pin(async move {
            if cancel.is_cancelled() {
                return Err(LlmError::Cancelled);
            }
            lock(&self.requests).push(request.clone());
            lock(&self.replies).pop_front().unwrap_or_else(|| {
                Err(LlmError::BadRequest {
                    status: 0,
                    message: "the scripted model has no reply left".into(),
                })
            })
        })
    }

    /// Deterministic vectors: `[1, bytes of the input]`; one token per 4
    /// bytes of input.
    fn embed<'a>(
        &'a self,
        request: &'a EmbeddingRequest,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<EmbeddingResponse, LlmError>> {
        Box::pin(async move {
            if cancel.is_cancelled() {
                return Err(LlmError::Cancelled);
            }
            lock(&self.embedding_requests).push(request.clone());
            if let Some(error) = lock(&self.embedding_errors).pop_front() {
                return Err(error);
            }
            Ok(EmbeddingResponse {
                vectors: request.inputs.iter().map(|t| vec![1.0, t.len() as f32]).collect(),
                model: request.model.clone(),
                prompt_tokens: request.inputs.iter().map(|t| (t.len() as u64).div_ceil(4)).sum(),
            })
        })
    }
}
