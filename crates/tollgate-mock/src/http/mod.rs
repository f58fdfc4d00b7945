//! The mock as an HTTP server (feature `http`): the Anthropic Messages, OpenAI Chat Completions
//! and OpenAI Responses APIs over the [`MockProvider`]'s limit model, so the official SDKs, or
//! any agent, can run against it offline.
//!
//! # Routes
//!
//! - `POST /v1/messages` (Anthropic), `POST /v1/chat/completions` and `POST /v1/responses`
//!   (OpenAI): JSON answers, or SSE streams with `"stream": true`, shaped as the real APIs' (ids,
//!   `type` / `object` fields, usage; Chat Completions sends the usage chunk when
//!   `stream_options.include_usage` is true). The text is words of a fixed vocabulary drawn
//!   from the seed and the request body: the same seed and body give the same answer.
//! - `GET /mock/stats`: ground truth as JSON, per route (`requests`, `admitted`, `rate_limited`,
//!   `overloaded`, `invalid`, `unauthorized`, `input_tokens`, `output_tokens`) and the provider's
//!   [`MockStats`](crate::MockStats) over all routes.
//!
//! # Tokens
//!
//! The mock bills by its own rule, not by any tokenizer (see also [`MESSAGE_OVERHEAD`]):
//!
//! - **input**: per message `4 + ceil(bytes of its text / 4)`, the system prompt (`system`,
//!   `instructions`) counting as one message; a block without `text` (image, tool call) counts
//!   its compact JSON;
//! - **output**: one token per word, `min(cap, n)` words with `n` drawn in 8..=64 and `cap` the
//!   request's `max_tokens` / `max_completion_tokens` / `max_output_tokens` (without a cap, `n`
//!   is also what the limit model reserves).
//!
//! These counts drive the limit model, the usage fields and the stats alike.
//!
//! # Errors
//!
//! Each API's own error JSON: 401 without a key (`x-api-key` or `Authorization: Bearer` for
//! Anthropic, `Authorization: Bearer` for OpenAI; any value works, none is logged); 400
//! `invalid_request_error` for a body that is not JSON, misses `model`, `messages` / `input` or
//! (Anthropic) `max_tokens`, or has a wrong type; 413 over 32 MiB; 429 with `retry-after`
//! (whole seconds, at most 60), `retry-after-ms` and the API's rate-limit headers
//! (`anthropic-ratelimit-*` on `/v1/messages`, `x-ratelimit-*` on the OpenAI routes); 529
//! `overloaded_error` (Anthropic) or 503 (OpenAI) under configured overload; 404 for other paths.
//!
//! # Example
//!
//! ```
//! use tollgate_mock::MockProvider;
//! use tower::ServiceExt;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let provider = MockProvider::builder().rpm(60).latency(Default::default(), Default::default(), 0.0).build()?;
//! let app = tollgate_mock::http::router(provider);
//! let request = http::Request::post("/v1/messages")
//!     .header("x-api-key", "anything")
//!     .body(axum::body::Body::from(
//!         r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hello world!"}]}"#,
//!     ))?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.headers()["anthropic-ratelimit-requests-remaining"], "59");
//! let body = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
//! let message: serde_json::Value = serde_json::from_slice(&body)?;
//! assert_eq!(message["usage"]["input_tokens"], 4 + 3); // 12 bytes of text
//! assert_eq!(message["usage"]["output_tokens"], 5); // cut at max_tokens
//! assert_eq!(message["stop_reason"], "max_tokens");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod answer;
mod api;
mod counters;
mod parse;
mod routes;
mod tokens;
mod words;

pub use routes::router;
pub use tokens::{BYTES_PER_TOKEN, MESSAGE_OVERHEAD};
pub use words::LENGTH as ANSWER_WORDS;

use crate::MockProvider;

/// Serves [`router`]`(provider)` on `listener` until the process ends or an I/O error stops it.
///
/// # Errors
///
/// The listener's I/O errors.
pub async fn serve(
    listener: tokio::net::TcpListener,
    provider: MockProvider,
) -> std::io::Result<()> {
    axum::serve(listener, router(provider)).await
}
