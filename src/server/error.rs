//! One error type for every HTTP answer: `{"error": {"code", "message"}}`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An HTTP error with a stable machine code and a human message.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// A refused JSON body keeps its status: 415 without a JSON content type,
    /// 413 when too large, 422 when it does not parse or does not fit.
    pub fn from_json_rejection(rejection: JsonRejection) -> ApiError {
        let status = match rejection.status() {
            StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::PAYLOAD_TOO_LARGE => rejection.status(),
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let code = match status {
            StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
            other => code_for_status(other),
        };
        ApiError::new(status, code, rejection.body_text())
    }
}

/// The machine code of an error answer made by the framework or a layer
/// rather than by a handler.
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        status if status.is_server_error() => "internal",
        _ => "error",
    }
}

/// Error answers that are not JSON yet (axum's 405, an extractor's plain-text
/// rejection, the timeout layer's empty 408, the body limit's 413) become
/// `{"error": {"code", "message"}}`; their headers (`Allow`, `Retry-After`, …)
/// are kept. JSON and HTML answers pass unchanged.
pub async fn ensure_json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/json") || content_type.starts_with("text/html") {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty());
    let message = text.unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_lowercase());
    let mut answer = ApiError::new(status, code_for_status(status), message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().append(name, value.clone());
        }
    }
    answer
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> ApiError {
        // The detail goes to the log, not to the client.
        tracing::error!(error = %err, "store error");
        ApiError::internal("internal error, see the server log")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::body::Body;

    async fn json_of(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn empty_and_plain_text_errors_become_json_and_keep_their_headers() {
        // What the timeout layer answers: an empty 408.
        let timeout = Response::builder()
            .status(StatusCode::REQUEST_TIMEOUT)
            .header("x-request-id", "r1")
            .body(Body::empty())
            .unwrap();
        let answer = ensure_json_errors(timeout).await;
        assert_eq!(answer.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(answer.headers()["x-request-id"], "r1");
        assert_eq!(answer.headers()[header::CONTENT_TYPE], "application/json");
        let json = json_of(answer).await;
        assert_eq!(json["error"]["code"], "timeout");
        assert_eq!(json["error"]["message"], "request timeout");

        let plain = Response::builder()
            .status(StatusCode::PAYLOAD_TOO_LARGE)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from("length limit exceeded"))
            .unwrap();
        let json = json_of(ensure_json_errors(plain).await).await;
        assert_eq!(json["error"]["code"], "body_too_large");
        assert_eq!(json["error"]["message"], "length limit exceeded");
    }

    #[tokio::test]
    async fn successes_json_and_html_pass_unchanged() {
        for (status, content_type, body) in [
            (StatusCode::OK, "text/plain", "fine"),
            (StatusCode::NOT_FOUND, "text/html; charset=utf-8", "<h1>gone</h1>"),
            (
                StatusCode::CONFLICT,
                "application/json",
                "{\"error\":{\"code\":\"conflict\",\"message\":\"m\"}}",
            ),
        ] {
            let response = Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from(body))
                .unwrap();
            let answer = ensure_json_errors(response).await;
            assert_eq!(answer.headers()[header::CONTENT_TYPE], content_type);
            let bytes = axum::body::to_bytes(answer.into_body(), usize::MAX)
                .await
                .unwrap();
            assert_eq!(bytes, body.as_bytes());
        }
    }
}
