//! A fake OpenAI-compatible endpoint for tests: an in-process axum server on
//! 127.0.0.1:0 serving `POST <prefix>/chat/completions` from a queue of
//! scripted answers (content, usage numbers, model name) and injected faults
//! (a status with an optional `Retry-After`), recording every request so
//! tests assert what was asked and how it was authenticated.
//!
//! `POST <prefix>/embeddings` answers every input with a deterministic vector
//! (a hashed bag of words, L2-normalised: texts sharing words are near),
//! unless a test pinned a vector for inputs containing some text; faults are
//! injected from their own queue. Usage is one token per 4 bytes of input.
//! Vectors come as JSON floats, or base64 little-endian f32 when the request
//! asks `"encoding_format": "base64"`, as OpenAI does.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// What the fake answers next.
#[derive(Debug, Clone)]
pub enum Scripted {
    Answer {
        content: String,
        model: String,
        prompt_tokens: u64,
        completion_tokens: u64,
    },
    Fault {
        status: u16,
        retry_after: Option<String>,
    },
    /// Waits this long, then serves the next scripted entry (taken when the
    /// request arrives, so later requests get later entries).
    Delay(std::time::Duration),
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub path: String,
    pub model: String,
    /// `(role, content)` in order.
    pub messages: Vec<(String, String)>,
    /// `max_tokens` or `max_completion_tokens`, whichever was sent.
    pub max_tokens: Option<u64>,
    pub authorization: Option<String>,
    pub at: Instant,
    /// Embeddings requests: the inputs, in order.
    pub inputs: Vec<String>,
    /// Embeddings requests: the prompt tokens the fake answered (0 for
    /// failed ones and for chat requests).
    pub embedding_tokens: u64,
}

impl RecordedRequest {
    pub fn is_embeddings(&self) -> bool {
        self.path.ends_with("/embeddings")
    }
}

/// Dimensions of the fake's embedding vectors.
pub const EMBEDDING_DIMS: usize = 256;

/// Answers a chat request from its content when the script is empty, so
/// many jobs running at once each get the answer meant for them; every
/// answer waits `delay` first (an LLM's latency).
#[derive(Clone)]
pub struct Responder {
    delay: std::time::Duration,
    answer: Arc<dyn Fn(&RecordedRequest) -> Scripted + Send + Sync>,
}

#[derive(Default)]
struct FakeState {
    script: VecDeque<Scripted>,
    requests: Vec<RecordedRequest>,
    /// `(status, Retry-After)` for the next embeddings requests.
    embedding_faults: VecDeque<(u16, Option<String>)>,
    /// Inputs containing the text get the vector.
    pinned: Vec<(String, Vec<f32>)>,
    responder: Option<Responder>,
}

type Shared = Arc<Mutex<FakeState>>;

/// The running fake; the server stops when it is dropped.
pub struct FakeOpenAi {
    /// The base URL to configure (`OPENAI_BASE_URL`), prefix included.
    pub url: String,
    state: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeOpenAi {
    /// A fake under `/v1`, as OpenAI itself.
    pub async fn start() -> FakeOpenAi {
        FakeOpenAi::start_with_prefix("/v1").await
    }

    pub async fn start_with_prefix(prefix: &str) -> FakeOpenAi {
        let state = Shared::default();
        let app = Router::new()
            .route(&format!("{prefix}/chat/completions"), post(chat))
            .route(&format!("{prefix}/embeddings"), post(embeddings))
            .fallback(not_found)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}{prefix}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeOpenAi { url, state, server }
    }

    /// Queues an answer from `gpt-4.1-2025-04-14` (a dated name, as OpenAI answers).
    pub fn push_answer(&self, content: &str, prompt_tokens: u64, completion_tokens: u64) {
        self.push_answer_as(content, "gpt-4.1-2025-04-14", prompt_tokens, completion_tokens);
    }

    pub fn push_answer_as(&self, content: &str, model: &str, prompt_tokens: u64, completion_tokens: u64) {
        self.push(Scripted::Answer {
            content: content.to_string(),
            model: model.to_string(),
            prompt_tokens,
            completion_tokens,
        });
    }

    /// Queues an error status, with `Retry-After` when given.
    pub fn push_fault(&self, status: u16, retry_after: Option<&str>) {
        self.push(Scripted::Fault {
            status,
            retry_after: retry_after.map(str::to_string),
        });
    }

    /// Delays the next answer (or fault) by `delay`: a slow LLM call.
    pub fn push_delay(&self, delay: std::time::Duration) {
        self.push(Scripted::Delay(delay));
    }

    pub fn push(&self, scripted: Scripted) {
        self.state.lock().unwrap().script.push_back(scripted);
    }

    /// Answers every request the script does not cover with `answer(request)`
    /// after `delay`; a [`Scripted::Delay`] answer is served as an error.
    pub fn respond_with(
        &self,
        delay: std::time::Duration,
        answer: impl Fn(&RecordedRequest) -> Scripted + Send + Sync + 'static,
    ) {
        self.state.lock().unwrap().responder = Some(Responder {
            delay,
            answer: Arc::new(answer),
        });
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The embeddings requests received, in order.
    pub fn embedding_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_embeddings())
            .collect()
    }

    /// The chat requests received, in order.
    pub fn chat_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| !r.is_embeddings())
            .collect()
    }

    /// The next embeddings request fails with `status`.
    pub fn push_embedding_fault(&self, status: u16, retry_after: Option<&str>) {
        self.state
            .lock()
            .unwrap()
            .embedding_faults
            .push_back((status, retry_after.map(str::to_string)));
    }

    /// Inputs containing `text` are embedded as `vector` (first pin wins).
    pub fn pin_embedding(&self, text: &str, vector: Vec<f32>) {
        self.state.lock().unwrap().pinned.push((text.to_string(), vector));
    }
}

/// The fake's vector of `text`: each lowercase alphanumeric word adds 1 to
/// the dimension its FNV-1a hash picks; the sum is L2-normalised.
pub fn bag_of_words_vector(text: &str) -> Vec<f32> {
    let mut v = vec![0.0f32; EMBEDDING_DIMS];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in word.to_lowercase().bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        v[(hash % EMBEDDING_DIMS as u64) as usize] += 1.0;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

async fn embeddings(
    State(state): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut recorded = record(&uri, &headers, &body);
    let inputs: Option<Vec<String>> = match &body["input"] {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => items.iter().map(|i| i.as_str().map(str::to_string)).collect(),
        _ => None,
    };
    recorded.inputs = inputs.clone().unwrap_or_default();
    let mut s = state.lock().unwrap();
    let fault = s.embedding_faults.pop_front();
    let Some(inputs) = inputs.filter(|i| !i.is_empty() && i.iter().all(|t| !t.is_empty())) else {
        s.requests.push(recorded);
        return error(StatusCode::BAD_REQUEST, "'$.input' is invalid");
    };
    if let Some((status, retry_after)) = fault {
        s.requests.push(recorded);
        return fault_response(status, retry_after);
    }
    let base64 = body["encoding_format"].as_str() == Some("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = s
                .pinned
                .iter()
                .find(|(needle, _)| text.contains(needle.as_str()))
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| bag_of_words_vector(text));
            let embedding = if base64 {
                Value::String(base64_f32(&vector))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let tokens: u64 = inputs.iter().map(|t| (t.len() as u64).div_ceil(4)).sum();
    recorded.embedding_tokens = tokens;
    s.requests.push(recorded);
    Json(json!({
        "object": "list",
        "data": data,
        "model": text(&body["model"]),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    }))
    .into_response()
}

/// Standard base64 (with padding) of the vector's little-endian f32 bytes.
fn base64_f32(vector: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::new();
    for group in bytes.chunks(3) {
        let b = [group[0], *group.get(1).unwrap_or(&0), *group.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn chat(
    State(state): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let recorded = record(&uri, &headers, &body);
    let model = recorded.model.clone();
    let (delay, next) = {
        let mut s = state.lock().unwrap();
        s.requests.push(recorded.clone());
        match s.script.pop_front() {
            Some(Scripted::Delay(delay)) => (Some(delay), s.script.pop_front()),
            None => match &s.responder {
                Some(responder) => (Some(responder.delay), Some((responder.answer)(&recorded))),
                None => (None, None),
            },
            next => (None, next),
        }
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    match next {
        Some(Scripted::Answer {
            content,
            model: answered,
            prompt_tokens,
            completion_tokens,
        }) => Json(completion(&content, &answered, prompt_tokens, completion_tokens)).into_response(),
        Some(Scripted::Fault { status, retry_after }) => fault_response(status, retry_after),
        Some(Scripted::Delay(_)) | None => error(
            StatusCode::BAD_REQUEST,
            &format!("the fake has no scripted answer left (model {model})"),
        ),
    }
}

fn record(uri: &Uri, headers: &HeaderMap, body: &Value) -> RecordedRequest {
    let messages = body["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| (text(&m["role"]), content(&m["content"])))
                .collect()
        })
        .unwrap_or_default();
    RecordedRequest {
        path: uri.path().to_string(),
        model: text(&body["model"]),
        messages,
        max_tokens: body["max_completion_tokens"]
            .as_u64()
            .or_else(|| body["max_tokens"].as_u64()),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        at: Instant::now(),
        inputs: Vec::new(),
        embedding_tokens: 0,
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// A message's content: a string, or an array of text parts.
fn content(v: &Value) -> String {
    match v {
        Value::Array(parts) => parts.iter().map(|p| text(&p["text"])).collect(),
        other => text(other),
    }
}

fn completion(content: &str, model: &str, prompt_tokens: u64, completion_tokens: u64) -> Value {
    json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null},
            "finish_reason": "stop",
            "logprobs": null
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens
        }
    })
}

fn fault_response(status: u16, retry_after: Option<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap();
    let mut response = error(status, "injected fault");
    if let Some(after) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", after.parse().unwrap());
    }
    response
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "fake_error", "param": null, "code": null}});
    (status, Json(body)).into_response()
}

async fn not_found(uri: Uri) -> Response {
    error(StatusCode::NOT_FOUND, &format!("no route for {}", uri.path()))
}
