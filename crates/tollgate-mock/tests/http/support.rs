//! The router in process: a request in, status, headers and body out; SSE parsing; shape checks.

use std::time::Duration;

use axum::body::{to_bytes, Body};
use http::{HeaderMap, Request, StatusCode};
use serde_json::Value;
use tollgate_mock::{MockProvider, MockProviderBuilder};
use tower::ServiceExt;

/// The three API routes.
pub(crate) const ROUTES: [&str; 3] = ["/v1/messages", "/v1/chat/completions", "/v1/responses"];

/// A provider without latency or jitter, on top of `builder`.
pub(crate) fn provider(builder: MockProviderBuilder) -> MockProvider {
    builder
        .latency(Duration::ZERO, Duration::ZERO, 0.0)
        .build()
        .expect("valid mock config")
}

/// One answer, body read.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    /// The body as JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// Sends `body` to `path` with the key header the route's API expects.
pub(crate) async fn post(app: &axum::Router, path: &str, body: impl Into<Body>) -> Answer {
    let request = Request::post(path);
    let request = if path == "/v1/messages" {
        request.header("x-api-key", "test-key")
    } else {
        request.header("authorization", "Bearer test-key")
    };
    send(app, request.body(body.into()).expect("a request")).await
}

/// Sends `request` to the router.
pub(crate) async fn send(app: &axum::Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let bytes = to_bytes(body, usize::MAX).await.expect("a body");
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(bytes.to_vec()).expect("UTF-8 body"),
    }
}

/// Runs `f` on a current-thread runtime with time.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime")
        .block_on(f)
}

/// SSE events as `(event name, data)`; panics on a malformed stream (a line that is neither
/// `event:` nor `data:`, or an event without data).
pub(crate) fn sse(body: &str) -> Vec<(Option<String>, String)> {
    assert!(
        body.ends_with("\n\n"),
        "a stream ends with a blank line: {body:?}"
    );
    body.split("\n\n")
        .filter(|block| !block.is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = Some(d.to_owned());
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            (name, data.expect("every event has data"))
        })
        .collect()
}

/// Asserts that `answer` is a well-formed answer of the route `path`: an allowed status, the
/// API's error JSON on errors, and on 200 its JSON object or SSE stream.
pub(crate) fn assert_well_formed(path: &str, answer: &Answer) {
    let anthropic = path == "/v1/messages";
    let overloaded = if anthropic { 529 } else { 503 };
    let status = answer.status.as_u16();
    assert!(
        [200, 400, 429, overloaded].contains(&status),
        "{path}: status {status}: {}",
        answer.body
    );
    let content_type = answer.headers["content-type"].to_str().unwrap_or_default();
    if content_type.starts_with("text/event-stream") {
        assert_eq!(status, 200);
        for (name, data) in sse(&answer.body) {
            if data == "[DONE]" {
                assert_eq!(path, "/v1/chat/completions");
                continue;
            }
            let data: Value = serde_json::from_str(&data).expect("JSON data");
            match name {
                Some(name) => assert_eq!(data["type"], name.as_str()),
                None => assert_eq!(data["object"], "chat.completion.chunk"),
            }
        }
        return;
    }
    assert_eq!(content_type, "application/json");
    let json = answer.json();
    if status == 200 {
        let (field, value) = match path {
            "/v1/messages" => ("type", "message"),
            "/v1/chat/completions" => ("object", "chat.completion"),
            _ => ("object", "response"),
        };
        assert_eq!(json[field], value, "{json}");
        assert!(json["usage"].is_object(), "{json}");
    } else if anthropic {
        assert_eq!(json["type"], "error", "{json}");
        assert!(json["error"]["type"].is_string(), "{json}");
        assert!(json["error"]["message"].is_string(), "{json}");
    } else {
        assert!(json["error"]["type"].is_string(), "{json}");
        assert!(json["error"]["message"].is_string(), "{json}");
    }
}
