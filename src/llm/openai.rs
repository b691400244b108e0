//! [`LanguageModel`] over any OpenAI-compatible endpoint (OpenAI, Ollama,
//! vLLM, LM Studio), through async-openai with [`RetryingTransport`].

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestUserMessage, CreateChatCompletionRequestArgs, CreateChatCompletionResponse,
};
use async_openai::types::embeddings::{CreateEmbeddingRequestArgs, CreateEmbeddingResponse, EmbeddingInput};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use super::transport::{RetryPolicy, RetryingTransport};
use super::{
    BoxFuture, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, LanguageModel, LlmError, Role,
    Usage,
};

/// Which field carries the answer's token limit. OpenAI's current models want
/// `max_completion_tokens`; many compatible servers only read `max_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxTokensField {
    MaxCompletionTokens,
    MaxTokens,
}

impl MaxTokensField {
    /// `max_completion_tokens` for OpenAI itself, `max_tokens` elsewhere.
    pub fn for_base_url(base_url: &str) -> MaxTokensField {
        if base_url.contains("api.openai.com") {
            MaxTokensField::MaxCompletionTokens
        } else {
            MaxTokensField::MaxTokens
        }
    }
}

/// The production chat model.
pub struct OpenAiModel {
    client: Client<OpenAIConfig>,
    max_tokens_field: MaxTokensField,
}

impl std::fmt::Debug for OpenAiModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiModel")
            .field("max_tokens_field", &self.max_tokens_field)
            .finish_non_exhaustive()
    }
}

impl OpenAiModel {
    /// A model client for `base_url` (which may carry a path prefix such as
    /// `/v1`); without an API key none is sent (local servers need none).
    pub fn new(base_url: &str, api_key: Option<&SecretString>, transport: RetryingTransport) -> OpenAiModel {
        let mut config = OpenAIConfig::new().with_api_base(base_url.trim_end_matches('/'));
        config = match api_key {
            Some(key) => config.with_api_key(key.expose_secret()),
            None => config.with_api_key(""),
        };
        let client = Client::with_config(config).with_http_service(transport);
        OpenAiModel {
            client,
            max_tokens_field: MaxTokensField::for_base_url(base_url),
        }
    }

    /// Default retries and timeouts.
    pub fn with_defaults(base_url: &str, api_key: Option<&SecretString>) -> Result<OpenAiModel, LlmError> {
        let transport =
            RetryingTransport::new(RetryPolicy::default()).map_err(|e| LlmError::Network(e.to_string()))?;
        Ok(OpenAiModel::new(base_url, api_key, transport))
    }

    async fn call(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let messages: Vec<ChatCompletionRequestMessage> = request
            .messages
            .iter()
            .map(|m| match m.role {
                Role::System => ChatCompletionRequestSystemMessage::from(m.content.as_str()).into(),
                Role::User => ChatCompletionRequestUserMessage::from(m.content.as_str()).into(),
                Role::Assistant => ChatCompletionRequestAssistantMessage::from(m.content.as_str()).into(),
            })
            .collect();
        let mut args = CreateChatCompletionRequestArgs::default();
        args.model(&request.model).messages(messages);
        match self.max_tokens_field {
            MaxTokensField::MaxCompletionTokens => args.max_completion_tokens(request.max_completion_tokens),
            #[allow(deprecated)]
            MaxTokensField::MaxTokens => args.max_tokens(request.max_completion_tokens),
        };
        if let Some(t) = request.temperature {
            args.temperature(t);
        }
        let body = args.build().map_err(|e| LlmError::BadRequest {
            status: 0,
            message: e.to_string(),
        })?;
        let response = self.client.chat().create(body).await.map_err(map_error)?;
        into_response(response)
    }

    /// Vectors as JSON floats (the default `encoding_format`): every
    /// OpenAI-compatible server speaks it, base64 is optional among them.
    async fn call_embeddings(&self, request: &EmbeddingRequest) -> Result<EmbeddingResponse, LlmError> {
        let body = CreateEmbeddingRequestArgs::default()
            .model(&request.model)
            .input(EmbeddingInput::StringArray(request.inputs.clone()))
            .build()
            .map_err(|e| LlmError::BadRequest {
                status: 0,
                message: e.to_string(),
            })?;
        let response = self.client.embeddings().create(body).await.map_err(map_error)?;
        into_embeddings(response, request.inputs.len())
    }
}

impl LanguageModel for OpenAiModel {
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        Box::pin(async move {
            tokio::select! {
                _ = cancel.cancelled() => Err(LlmError::Cancelled),
                result = self.call(request) => result,
            }
        })
    }

    fn embed<'a>(
        &'a self,
        request: &'a EmbeddingRequest,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<EmbeddingResponse, LlmError>> {
        Box::pin(async move {
            tokio::select! {
                _ = cancel.cancelled() => Err(LlmError::Cancelled),
                result = self.call_embeddings(request) => result,
            }
        })
    }
}

/// Puts the vectors back in input order (the wire gives each its `index`)
/// and checks there is exactly one per input, all of one length.
fn into_embeddings(response: CreateEmbeddingResponse, inputs: usize) -> Result<EmbeddingResponse, LlmError> {
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; inputs];
    for item in response.data {
        let slot = usize::try_from(item.index)
            .ok()
            .and_then(|i| vectors.get_mut(i))
            .ok_or_else(|| LlmError::BadResponse(format!("embedding index {} out of range", item.index)))?;
        if slot.replace(item.embedding).is_some() {
            return Err(LlmError::BadResponse(format!(
                "embedding index {} given twice",
                item.index
            )));
        }
    }
    let vectors: Vec<Vec<f32>> = vectors
        .into_iter()
        .collect::<Option<_>>()
        .ok_or_else(|| LlmError::BadResponse(format!("fewer embeddings than the {inputs} inputs")))?;
    let dims = vectors.first().map_or(0, Vec::len);
    if vectors.iter().any(|v| v.len() != dims || v.is_empty()) {
        return Err(LlmError::BadResponse(
            "embeddings of different or zero lengths".into(),
        ));
    }
    Ok(EmbeddingResponse {
        vectors,
        model: response.model,
        prompt_tokens: u64::from(response.usage.prompt_tokens),
    })
}

fn into_response(response: CreateChatCompletionResponse) -> Result<ChatResponse, LlmError> {
    let usage = response
        .usage
        .map(|u| Usage {
            prompt_tokens: u64::from(u.prompt_tokens),
            completion_tokens: u64::from(u.completion_tokens),
        })
        .unwrap_or_default();
    let Some(choice) = response.choices.into_iter().next() else {
        return Err(LlmError::BadResponse("the answer has no choices".into()));
    };
    let content = match (choice.message.content, choice.message.refusal) {
        (Some(content), _) => content,
        (None, Some(refusal)) => return Err(LlmError::BadResponse(format!("the model refused: {refusal}"))),
        (None, None) => String::new(),
    };
    Ok(ChatResponse {
        content,
        model: response.model,
        usage,
    })
}

fn map_error(err: OpenAIError) -> LlmError {
    match err {
        OpenAIError::ApiError(api) => {
            let status = api.status_code.as_u16();
            let message = api.api_error.message.clone();
            let code = api.api_error.code.clone().unwrap_or_default();
            match status {
                401 | 403 => LlmError::Unauthorized { status },
                429 => LlmError::RateLimited { retry_after: None },
                500..=599 => LlmError::Server { status },
                _ if code == "context_length_exceeded" || message.contains("maximum context length") => {
                    LlmError::ContextTooLong(message)
                }
                _ => LlmError::BadRequest { status, message },
            }
        }
        OpenAIError::Reqwest(e) if e.is_timeout() => LlmError::Timeout,
        // reqwest's Display never includes headers, so the API key cannot leak here.
        OpenAIError::Reqwest(e) => LlmError::Network(e.without_url().to_string()),
        OpenAIError::JSONDeserialize(e, _) => LlmError::BadResponse(e.to_string()),
        other => LlmError::BadResponse(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use async_openai::types::embeddings::{Embedding, EmbeddingUsage};

    use super::*;

    fn response(indices: &[u32]) -> CreateEmbeddingResponse {
        CreateEmbeddingResponse {
            object: "list".into(),
            model: "text-embedding-3-small".into(),
            data: indices
                .iter()
                .map(|&index| Embedding {
                    index,
                    object: "embedding".into(),
                    embedding: vec![index as f32, 1.0],
                })
                .collect(),
            usage: EmbeddingUsage {
                prompt_tokens: 7,
                total_tokens: 7,
            },
        }
    }

    #[test]
    fn embeddings_come_back_in_input_order_one_per_input() {
        let ok = into_embeddings(response(&[2, 0, 1]), 3).unwrap();
        assert_eq!(ok.vectors, [vec![0.0, 1.0], vec![1.0, 1.0], vec![2.0, 1.0]]);
        assert_eq!(ok.prompt_tokens, 7);
        for (indices, inputs) in [(&[0, 1][..], 3), (&[0, 0, 1][..], 3), (&[0, 5][..], 2)] {
            let err = into_embeddings(response(indices), inputs).unwrap_err();
            assert!(matches!(err, LlmError::BadResponse(_)), "{indices:?}: {err}");
        }
        let mut uneven = response(&[0, 1]);
        uneven.data[1].embedding.push(3.0);
        assert!(into_embeddings(uneven, 2).is_err());
    }
}
