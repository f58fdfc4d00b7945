//! A deterministic mock LLM provider as a [`tower::Service`](tower_service::Service), for testing
//! and simulating rate-limited clients on tokio's paused clock.
//!
//! # Why
//!
//! A layer that keeps agents inside a provider's rate limits can only be judged against a provider
//! that enforces them. This one has **its own, simple limit model** (it shares no code with
//! `tollgate-core`), so the simulator can catch the layer's bugs, and it **counts everything it
//! saw** ([`MockProvider::stats`], [`MockProvider::events`]), so metrics never depend on what the
//! client believes.
//!
//! # Model
//!
//! - **Limits**: requests, input tokens and output tokens per minute ([`Limits`]), as a
//!   continuously refilled token bucket (capacity = the per-minute limit, as Anthropic documents) or
//!   a fixed 60 s window ([`Algorithm`]). A call is admitted only if all three fit, and then all
//!   three are charged; output is reserved at `max_tokens` and the unused part refunded when the
//!   call ends.
//! - **Answers**: 200 with [`Usage`] after a latency of `base + per_output_token · output` with
//!   seeded noise; 429 with `retry-after` / `retry-after-ms` (the time until the call would fit,
//!   nothing charged); 529 when more than a threshold of calls are in flight, with a probability
//!   ([`OverloadConfig`]); 400 for a request larger than a limit's capacity. Every answer carries
//!   `anthropic-ratelimit-*` and `x-ratelimit-*` headers (see [`MockProviderBuilder`]).
//! - **Hidden share**: other clients of the same key use a fixed fraction of every limit; the
//!   headers still report the full limit.
//! - **Time**: only `tokio::time`; virtual time zero is when the provider was built. Determinism:
//!   the same seed and the same sequence of calls give the same answers, latencies and events.
//!
//! # Example
//!
//! ```
//! use tollgate_mock::{MockProvider, MockRequest};
//! use tower::ServiceExt;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! let provider = MockProvider::builder().rpm(60).seed(1).build()?;
//! let start = tokio::time::Instant::now();
//!
//! let response = provider.clone().oneshot(MockRequest::new(1_000, 256, 100)).await?;
//! assert_eq!(response.status(), 200);
//! let usage = response.body().usage.unwrap();
//! assert_eq!((usage.input_tokens, usage.output_tokens), (1_000, 100));
//! assert_eq!(response.headers()["anthropic-ratelimit-requests-remaining"], "59");
//! assert!(start.elapsed().as_millis() >= 1_000); // ~500 ms + 100 × 10 ms, ±10 %, in virtual time
//! assert_eq!(provider.stats().ok, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Features
//!
//! - `http` (off by default): the module `http`, the mock as an HTTP server speaking the
//!   Anthropic Messages, OpenAI Chat Completions and OpenAI Responses APIs (JSON and SSE), and the
//!   `tollgate-mock` binary that runs it. Off, the crate pulls in no HTTP server, so the simulator
//!   does not pay for it.

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

mod config;
mod future;
mod headers;
#[cfg(feature = "http")]
pub mod http;
mod limits;
mod service;
mod stats;

pub use config::{Algorithm, Limits, MockConfigError, MockProviderBuilder, OverloadConfig};
pub use future::ResponseFuture;
pub use limits::Dimension;
pub use service::{MockErrorKind, MockProvider, MockReply, MockRequest, Usage};
pub use stats::{MockEvent, MockStats};
