//! The three APIs the front speaks, and their error answers.

use http::StatusCode;
use serde_json::{json, Value};

use crate::limits::Dimension;

/// One of the APIs the front speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Api {
    /// Anthropic Messages, `POST /v1/messages`.
    Anthropic,
    /// OpenAI Chat Completions, `POST /v1/chat/completions`.
    Chat,
    /// OpenAI Responses, `POST /v1/responses`.
    Responses,
}

/// Why a request was not answered 200.
#[derive(Debug)]
pub(crate) enum Failure {
    /// 401: no key.
    Unauthorized,
    /// 400: the body does not fit the API.
    Invalid {
        message: String,
        param: Option<&'static str>,
    },
    /// 413: the body is larger than [`MAX_BODY`](super::routes::MAX_BODY).
    BodyTooLarge,
    /// 429: a limit is used up for now.
    RateLimited(Dimension),
    /// 529 (Anthropic) or 503 (OpenAI): the provider is overloaded.
    Overloaded,
    /// 400: the request can never fit the limit of this dimension.
    TooLarge(Dimension),
}

impl Api {
    /// Every API, in the order of the stats.
    pub(crate) const ALL: [Api; 3] = [Api::Anthropic, Api::Chat, Api::Responses];

    /// The route's path.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Api::Anthropic => "/v1/messages",
            Api::Chat => "/v1/chat/completions",
            Api::Responses => "/v1/responses",
        }
    }

    /// The prefix of the rate-limit headers this API does not send.
    pub(crate) fn foreign_headers(self) -> &'static str {
        match self {
            Api::Anthropic => "x-ratelimit-",
            Api::Chat | Api::Responses => "anthropic-ratelimit-",
        }
    }

    /// Whether the request carries a key the way this API's clients send one: `x-api-key` or
    /// `Authorization: Bearer` for Anthropic, `Authorization: Bearer` for OpenAI. Any non-empty
    /// key is accepted; none is ever logged or echoed.
    pub(crate) fn authorized(self, headers: &http::HeaderMap) -> bool {
        let bearer = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|key| !key.trim().is_empty());
        let api_key = headers
            .get("x-api-key")
            .is_some_and(|v| !v.as_bytes().is_empty());
        match self {
            Api::Anthropic => api_key || bearer,
            Api::Chat | Api::Responses => bearer,
        }
    }

    /// The status and JSON body of `failure` in this API's error format. `request_id` goes into
    /// Anthropic's body (it is also sent as the `request-id` header).
    pub(crate) fn error(self, failure: &Failure, request_id: &str) -> (StatusCode, Value) {
        let (status, anthropic_type, message) = describe(failure);
        match self {
            Api::Anthropic => (
                status,
                anthropic_error(anthropic_type, &message, request_id),
            ),
            Api::Chat | Api::Responses => {
                let (status, kind, code, param) = match failure {
                    Failure::Unauthorized => (
                        status,
                        "invalid_request_error",
                        Some("invalid_api_key"),
                        None,
                    ),
                    Failure::Invalid { param, .. } => {
                        (status, "invalid_request_error", None, *param)
                    }
                    Failure::BodyTooLarge => (status, "invalid_request_error", None, None),
                    Failure::RateLimited(Dimension::Requests) => {
                        (status, "requests", Some("rate_limit_exceeded"), None)
                    }
                    Failure::RateLimited(_) => {
                        (status, "tokens", Some("rate_limit_exceeded"), None)
                    }
                    Failure::Overloaded => {
                        (StatusCode::SERVICE_UNAVAILABLE, "server_error", None, None)
                    }
                    Failure::TooLarge(_) => (
                        status,
                        "invalid_request_error",
                        Some("request_too_large"),
                        None,
                    ),
                };
                let body = json!({"error": {
                    "message": message,
                    "type": kind,
                    "param": param,
                    "code": code,
                }});
                (status, body)
            }
        }
    }
}

/// Anthropic's error body, also the body of answers that belong to no API (404, 405).
/// Without a request id (`""`), the body has no `request_id`.
pub(crate) fn anthropic_error(kind: &str, message: &str, request_id: &str) -> Value {
    let mut body = json!({
        "type": "error",
        "error": {"type": kind, "message": message},
    });
    if !request_id.is_empty() {
        body["request_id"] = json!(request_id);
    }
    body
}

/// Status, Anthropic error type and message of `failure`.
fn describe(failure: &Failure) -> (StatusCode, &'static str, String) {
    match failure {
        Failure::Unauthorized => (
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "no API key: send one in `x-api-key` or `Authorization: Bearer` (any value works)"
                .into(),
        ),
        Failure::Invalid { message, .. } => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            message.clone(),
        ),
        Failure::BodyTooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            "the request body exceeds 32 MiB".into(),
        ),
        Failure::RateLimited(dimension) => (
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            format!(
                "rate limit reached for {} per minute: wait for `retry-after` seconds",
                name(*dimension)
            ),
        ),
        Failure::Overloaded => (
            overloaded(),
            "overloaded_error",
            "the mock provider is overloaded".into(),
        ),
        Failure::TooLarge(dimension) => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!(
                "the request needs more {} than the per-minute limit allows",
                name(*dimension)
            ),
        ),
    }
}

fn name(dimension: Dimension) -> &'static str {
    match dimension {
        Dimension::Requests => "requests",
        Dimension::InputTokens => "input tokens",
        Dimension::OutputTokens => "output tokens",
    }
}

/// 529, Anthropic's "overloaded".
pub(crate) fn overloaded() -> StatusCode {
    StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}
