//! tollgate's provider adapters: what a proxy or an HTTP client needs to throttle Anthropic and
//! OpenAI calls by their real cost.
//!
//! * [`Provider::from_path`] tells the API from the request path.
//! * [`read_request`] checks a request body as the provider would (a refusal comes back as the
//!   provider's own error JSON, [`RequestError`]) and estimates its [`Cost`](tollgate::Cost):
//!   one request, the input tokens, and the output tokens reserved at the request's maximum. It
//!   also asks a streamed OpenAI chat call for its usage (`stream_options.include_usage`).
//! * [`UsageReader`] reads the usage from the answer, JSON or server-sent events, as its chunks
//!   pass, keeping only the current event.
//! * [`HeaderRules`] map request headers to scopes and a priority.
//!
//! And the pieces that put a [`ThrottleLayer`](tollgate::ThrottleLayer) in front of a real HTTP
//! client (see [`ThrottleBuilderExt::http`] for a whole stack):
//! * [`ReadRequestLayer`] (outside the throttle) reads and checks each request body once and
//!   leaves a [`CallInfo`] in the request's extensions;
//! * [`HttpHooks`] (the throttle's hooks) take the scopes, priority, estimate and model from it;
//! * [`UsageLayer`] (between the throttle and the client) wraps each answer's body in a
//!   [`UsageBody`], which carries the call's [`Permit`](tollgate::Permit), reads the usage as
//!   the bytes pass and settles the call when the body ends (or is dropped).
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use tollgate::{Dimension, Limit, ScopeLimits, ThrottleLayer};
//! use tollgate_http::{HeaderRules, ReadRequestLayer, ThrottleBuilderExt, UsageLayer};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tollgate::BoxError> {
//! let throttle = ThrottleLayer::builder()
//!     .http(HeaderRules::new().scope_header("x-agent-id", "agent"))
//!     .scope("global", ScopeLimits::new()
//!         .limit(Limit::per_minute(Dimension::OutputTokens, 8_000)))
//!     .build()?;
//! let limiter = throttle.limiter().clone();
//! // Stands in for an HTTP client talking to Anthropic.
//! let provider = service_fn(|_: http::Request<Full<Bytes>>| async {
//!     let answer = r#"{"id":"msg_1","type":"message","role":"assistant","content":[],
//!         "usage":{"input_tokens":12,"output_tokens":30}}"#;
//!     let mut res = http::Response::new(Full::new(Bytes::from(answer)));
//!     res.headers_mut().insert("content-type", "application/json".parse().unwrap());
//!     Ok::<_, std::convert::Infallible>(res)
//! });
//! let client = ServiceBuilder::new()
//!     .layer(ReadRequestLayer::default())
//!     .layer(throttle)
//!     .layer(UsageLayer::new())
//!     .service(provider);
//!
//! let request = http::Request::post("https://api.anthropic.com/v1/messages")
//!     .body(Full::new(Bytes::from(
//!         r#"{"model":"claude-haiku-4-5","max_tokens":1000,"messages":[{"role":"user","content":"Hi"}]}"#,
//!     )))?;
//! let answer = client.oneshot(request).await?;
//! // 1,000 output tokens stay reserved while the body is read...
//! let global = limiter.scope_stats("global").unwrap();
//! assert_eq!(global.buckets[0].available, 7_000.0);
//! answer.into_body().collect().await?;
//! // ...and its end settles the call at the 30 the answer reported.
//! let global = limiter.scope_stats("global").unwrap();
//! assert_eq!(global.buckets[0].available, 7_970.0);
//! # Ok(())
//! # }
//! ```
//!
//! ```
//! use tollgate_http::{read_request, EstimateOptions, Provider, UsageReader};
//!
//! let provider = Provider::from_path("/v1/chat/completions").unwrap();
//! let body = br#"{"model":"gpt-4o-mini","max_completion_tokens":200,
//!     "messages":[{"role":"user","content":"Say hello"}]}"#;
//! let (call, _) = read_request(provider, body, &EstimateOptions::default()).unwrap();
//! assert_eq!(call.estimate.output_tokens, 200);
//!
//! let mut reader = UsageReader::new(provider, Some("application/json"));
//! reader.feed(br#"{"id":"chatcmpl-1","object":"chat.completion","choices":[],"#);
//! reader.feed(br#""usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#);
//! reader.finish();
//! assert_eq!(reader.seen().input_tokens, Some(9));
//! assert!(reader.seen().complete);
//! ```
//!
//! # Estimates
//! The rules are documented in full on [`EstimateOptions`]'s module; in short: text by the
//! model's BPE (OpenAI models whose encoding is known) or characters / 3.5 (Anthropic) or / 4
//! (other OpenAI models), rounded up; 3 tokens per message and 3 for the reply; a fixed figure
//! per image ([`EstimateOptions::image_tokens`], 85 for an OpenAI low-detail image) and per
//! document or file ([`EstimateOptions::document_tokens`]); output at the request's maximum,
//! else [`EstimateOptions::default_max_output`].
//!
//! # Features
//! * `tiktoken` (default): count OpenAI text with `o200k_base` / `cl100k_base` (the
//!   `tiktoken-rs` crate, its tables compiled in; loading one takes about 0.15 s in a release
//!   build the first time it is needed, or at [`preload_tokenizers`]). Without it, OpenAI text is
//!   counted as characters / 4.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

mod body;
mod error;
pub mod estimate;
mod headers;
mod hooks;
mod provider;
mod request;
mod service;
mod usage;

pub use body::{charge, UsageBody};
pub use hooks::{HttpHooks, ThrottleBuilderExt};
pub use service::{
    BodyTooLarge, ReadRequest, ReadRequestLayer, ReadUsageBody, UsageFuture, UsageLayer,
    DEFAULT_MAX_REQUEST_BODY,
};

pub use error::RequestError;
pub use estimate::{preload_tokenizers, EstimateOptions};
pub use headers::{HeaderRules, MAX_SCOPE_VALUE};
pub use provider::Provider;
pub use request::{read_request, CallInfo};
pub use usage::{SeenUsage, UsageReader, JSON_BODY_CAP, SSE_EVENT_CAP};
