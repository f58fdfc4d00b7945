//! tollgate keeps a fleet of LLM agents inside their provider's rate limits and their own.
//!
//! [`ThrottleLayer`] is a [`tower`](https://docs.rs/tower) layer that every outgoing call passes
//! through. It knows the provider's limits (requests, input tokens and output tokens per minute or
//! per day, calls in flight) and the team's own limits per scope (global, team, workflow, agent),
//! queues calls fairly instead of letting them fail, and settles every call's estimated token
//! charge against the usage the response reports.
//!
//! ```
//! use tollgate::{Cost, Dimension, Limit, ScopeLimits, ThrottleLayer};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! struct Prompt { text: String, max_tokens: u64 }
//! struct Reply { input_tokens: u64, output_tokens: u64 }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tollgate::BoxError> {
//! let throttle = ThrottleLayer::builder()
//!     .scope("global", ScopeLimits::new()
//!         .limit(Limit::per_minute(Dimension::Requests, 50))
//!         .limit(Limit::per_minute(Dimension::InputTokens, 40_000))
//!         .limit(Limit::per_minute(Dimension::OutputTokens, 8_000)))
//!     // Before the call: prompt length / 4, and max_tokens for the output.
//!     .estimate(|p: &Prompt| Cost::request()
//!         .with_input_tokens(p.text.len() as u64 / 4)
//!         .with_output_tokens(p.max_tokens))
//!     // After it: the real usage; the difference is refunded.
//!     .read_usage(|r: &Reply| Some(Cost::request()
//!         .with_input_tokens(r.input_tokens)
//!         .with_output_tokens(r.output_tokens)))
//!     .build()?;
//! let limiter = throttle.limiter().clone();
//!
//! // A service_fn stands in for the provider's client.
//! let provider = service_fn(|p: Prompt| async move {
//!     Ok::<_, std::convert::Infallible>(Reply { input_tokens: p.text.len() as u64 / 4, output_tokens: 100 })
//! });
//! let client = ServiceBuilder::new().layer(throttle).service(provider);
//!
//! let reply = client.oneshot(Prompt { text: "hello ".repeat(100), max_tokens: 1_000 }).await?;
//! assert_eq!(reply.output_tokens, 100);
//!
//! // 1,000 output tokens were reserved, 100 used: 900 went back.
//! let global = limiter.scope_stats("global").unwrap();
//! assert_eq!(global.admitted, 1);
//! assert!((global.buckets[2].available - 7_900.0).abs() < 1.0);
//! # Ok(())
//! # }
//! ```
//!
//! # What it does
//! * **Limits per scope**: [`Limit`]s of requests, input, output or total tokens per minute or
//!   per day, and a concurrency cap ([`ScopeLimits`]). Each rate limit is a continuously refilled
//!   token bucket (a weighted GCRA) with a burst and a headroom ([`Limit`] documents the defaults
//!   and why).
//! * **Estimate, then reconcile**: an [`EstimateCost`] hook charges the estimate before the call;
//!   a [`ReadUsage`] hook reads the real usage after it. The difference is refunded, or charged as
//!   debt that later calls wait out. A call that can never fit a bucket fails at once
//!   ([`ThrottleError::is_never_fits`]). A failed call is charged by the [`OnFailure`] rule.
//! * **Scopes**: an [`ExtractScopes`] hook names the scopes of a call; admission is all or
//!   nothing across them. Patterns `kind:*` and `*` give unknown keys their own buckets; keys that
//!   match nothing are unlimited by default ([`UnknownScopes`]).
//! * **Fair waiting**: calls that cannot go wait in a queue and are woken when their capacity is
//!   due (a timer per waiting call, no polling loop); FIFO per scope within a priority tier, and
//!   a large call at the head of a scope is never passed by small ones.
//! * **Priority tiers**: see below.
//! * **Cancellation**: dropping a call's future gives back its place in the queue, or its
//!   concurrency slot and (by the [`OnFailure`] rule) its token charge. A [maximum
//!   wait](ThrottleBuilder::max_wait) ends a call with a typed error carrying the predicted wait.
//! * **Clones share one limiter** ([`Limiter`]), so the layer limits globally under axum, which
//!   clones a service per connection.
//! * **Stores**: state lives behind the [`Store`] trait; [`MemoryStore`] is the default.
//! * **Time**: only `tokio::time::Instant`, so tokio's paused clock drives everything in tests and
//!   in the simulator.
//! * **Runtime changes**: [`Limiter::set_limits`]. **Stats**: [`Limiter::stats`].
//! * **Configuration**: [`ThrottleBuilder`] in code or [`ThrottleConfig`] from TOML, validated at
//!   build time into a [`ConfigError`] that names the broken [`Rule`].
//!
//! # Features
//! All on by default; `default-features = false` leaves the layer itself, which needs only tokio,
//! tower, tracing and a few small crates.
//! * `toml`: [`ThrottleConfig`], the configuration from TOML (with `call-log`, for its `call_log`
//!   key);
//! * `http`: [`HttpClassifier`](feedback::HttpClassifier), feedback from `http::Response`s;
//! * `call-log`: [`CallLog`](spend::CallLog) and [`Replay`](spend::Replay), the JSON-lines log of
//!   calls and the spend replayed from it.
//!
//! # Priority tiers
//! Each call has a [`Priority`] (higher is more important) from an [`AssignPriority`] hook.
//! The queue serves tiers by strict priority, unless tiers reserve a share with
//! [`ThrottleBuilder::tier`]: then a smooth weighted round robin over the calls admitted from the
//! queue gives each waiting tier at least its share, and the highest waiting tier the rest. The
//! exact rule is documented on the queue policy: each waiting tier's weight is its reserved share,
//! the highest-priority waiting tier also gets the share no waiting tier reserved; at each
//! admission from the queue every waiting tier's credit grows by its weight and the admitted
//! call's tier pays 1; tiers go in order of credit plus weight, higher priority first on ties; a
//! tier's credit resets when its queue empties. Calls admitted without waiting are not counted.
//!
//! # Fairness guarantees
//! A waiting call may try the store only when no call ahead of it (in tier precedence, then
//! arrival order) holds one of its scopes. A call ahead holds all its scopes while it is trying,
//! only the scopes that refused it while it sleeps until its capacity is due, and none while it is
//! itself held up by a call further ahead. So a large call at the head of a scope is never passed by
//! smaller calls on that scope, and an agent that waits for its own limit holds up no other agent. On one
//! thread (and in the simulator) the order is exact; on a multi-threaded runtime a call arriving in
//! the same instant as another starts waiting may pass it.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

mod bounds;
mod builder;
mod clock;
#[cfg(feature = "toml")]
mod config;
mod counters;
mod error;
pub mod feedback;
mod hooks;
mod limiter;
mod pick;
mod queue;
mod registry;
pub mod retry;
mod scope;
pub mod spend;
mod stats;
pub mod store;
mod throttle;
mod wake;

#[cfg(test)]
mod evict_tests;

pub use bounds::{DEFAULT_MAX_PROVIDER_DELAY, MAX_DURATION};
pub use builder::ThrottleBuilder;
#[cfg(feature = "toml")]
pub use config::{
    BudgetConfig, DetailedLimit, LimitValue, PriceConfig, PricesConfig, RefuseWord, ScopeConfig,
    ThrottleConfig, TierConfig, UnknownModelConfig,
};
pub use error::{BoxError, ThrottleError};
pub use hooks::{
    AssignPriority, CallMeta, EstimateCost, ExtractScopes, GlobalScope, Hooks, KeepEstimate,
    ModelFn, NoMeta, OneRequest, ReadUsage, SamePriority,
};
pub use limiter::{Limiter, OnFailure, Permit};
pub use registry::{ScopeId, ScopeRef, UnknownScopes};
pub use scope::{Priority, ScopeKey, Scopes};
pub use stats::{BucketStats, Pressure, ScopeStats};
pub use store::{MemoryStore, Store};
pub use throttle::{ResponseFuture, Throttle, ThrottleLayer};
pub use tollgate_core::{
    Alert, Budget, BudgetExhausted, ConfigError, Cost, Dimension, Limit, Micros, Price, PriceTable,
    Rule, ScopeLimits, TokenUsage, UnknownModel, Window, WindowClock,
};
