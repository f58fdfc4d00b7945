//! The gateway's own answers, in the provider's error format so the official SDKs raise their
//! usual exceptions: [`ApiError`] and how a failed call maps to one ([`from_call_error`]).

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode};
use serde_json::json;
use std::time::Duration;
use tollgate::{BoxError, ThrottleError};
use tollgate_http::{BodyTooLarge, Provider, RequestError};

/// What the gateway answers itself: a status, a message and, for a 429, the wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) retry_after: Option<Duration>,
    /// `x-should-retry: false`: a refusal that a retry cannot change.
    pub(crate) final_: bool,
    /// A ready-made body (the provider's own 400 for a malformed request).
    pub(crate) body: Option<bytes::Bytes>,
    /// What the call log and metrics call this outcome.
    pub(crate) outcome: &'static str,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        message: impl Into<String>,
        outcome: &'static str,
    ) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
            final_: false,
            body: None,
            outcome,
        }
    }

    /// The answer in `provider`'s error format (OpenAI's when the API is unknown).
    pub(crate) fn into_response(self, provider: Option<Provider>) -> Response {
        let body = self.body.unwrap_or_else(|| {
            let json = match provider {
                Some(Provider::Anthropic) => json!({
                    "type": "error",
                    "error": {"type": anthropic_type(self.status), "message": self.message},
                }),
                _ => json!({"error": {
                    "message": self.message,
                    "type": openai_type(self.status),
                    "param": null,
                    "code": openai_code(self.status),
                }}),
            };
            bytes::Bytes::from(json.to_string())
        });
        let mut res = Response::new(Body::from(body));
        *res.status_mut() = self.status;
        let h = res.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(wait) = self.retry_after {
            // Whole seconds, rounded up: waiting less would meet the same refusal.
            let secs = wait.as_nanos().div_ceil(1_000_000_000).max(1);
            h.insert(http::header::RETRY_AFTER, HeaderValue::from(secs as u64));
        }
        if self.final_ {
            h.insert("x-should-retry", HeaderValue::from_static("false"));
        }
        res
    }
}

fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

fn openai_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        429 => "requests",
        s if s >= 500 => "server_error",
        _ => "invalid_request_error",
    }
}

fn openai_code(status: StatusCode) -> Option<&'static str> {
    match status.as_u16() {
        401 => Some("invalid_api_key"),
        429 => Some("rate_limit_exceeded"),
        _ => None,
    }
}

/// The answer to a call that failed before an upstream answer could be passed on.
pub(crate) fn from_call_error(e: &BoxError) -> ApiError {
    if let Some(e) = e.downcast_ref::<RequestError>() {
        let mut err = ApiError::new(e.status(), e.message(), "invalid_request");
        err.body = Some(e.body());
        return err;
    }
    if let Some(e) = e.downcast_ref::<BodyTooLarge>() {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string(), "too_large");
    }
    if let Some(t) = e.downcast_ref::<ThrottleError>() {
        return from_throttle(t);
    }
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "the gateway could not reach the provider",
        "upstream_error",
    )
}

fn from_throttle(t: &ThrottleError) -> ApiError {
    let msg = t.to_string();
    if t.is_max_wait() {
        let mut err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, msg, "max_wait");
        err.retry_after = Some(t.predicted_wait().unwrap_or(Duration::from_secs(1)));
        return err;
    }
    if t.is_never_fits() {
        let mut err = ApiError::new(StatusCode::BAD_REQUEST, msg, "never_fits");
        err.final_ = true;
        return err;
    }
    if t.budget_exhausted().is_some() {
        let mut err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, msg, "budget");
        err.final_ = true;
        return err;
    }
    if t.is_paused() || t.is_unknown_scope() || t.is_unknown_model() {
        let mut err = ApiError::new(StatusCode::FORBIDDEN, msg, "refused");
        err.final_ = true;
        return err;
    }
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, msg, "store_error")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn json(res: Response) -> serde_json::Value {
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn errors_speak_each_providers_format() {
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "wait", "max_wait");
        e.retry_after = Some(Duration::from_millis(2_100));
        let res = e.clone().into_response(Some(Provider::Anthropic));
        assert_eq!(res.headers()["retry-after"], "3");
        let body = json(res).await;
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "rate_limit_error");
        let res = e.into_response(Some(Provider::OpenAiChat));
        assert_eq!(res.status(), 429);
        let body = json(res).await;
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        assert_eq!(body["error"]["message"], "wait");
    }

    #[test]
    fn body_too_large_is_413_and_other_failures_502() {
        let e: BoxError = BodyTooLarge { limit: 10 }.into();
        assert_eq!(from_call_error(&e).status, StatusCode::PAYLOAD_TOO_LARGE);
        let e: BoxError = "connection refused".into();
        assert_eq!(from_call_error(&e).status, StatusCode::BAD_GATEWAY);
    }
}
