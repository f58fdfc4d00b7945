//! The provider itself: a `tower::Service<MockRequest>` answering `http::Response<MockReply>`.

use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, Response, StatusCode};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;
use tower_service::Service;

use crate::config::{Config, Limits, MockProviderBuilder};
use crate::future::{InFlight, ResponseFuture};
use crate::headers::HeaderWriter;
use crate::limits::{Decision, Dimension, Limiter};
use crate::stats::{MockEvent, MockStats};

/// One model call as the provider sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MockRequest {
    /// Tokens in the prompt.
    pub input_tokens: u64,
    /// The request's `max_tokens`: reserved against the output limit at admission.
    pub max_tokens: u64,
    /// What the model will actually produce; clamped to `max_tokens`.
    pub output_tokens: u64,
    /// Opaque id echoed back in [`MockReply::tag`] and [`MockEvent::tag`].
    pub tag: u64,
}

impl MockRequest {
    /// A request with tag 0.
    pub fn new(input_tokens: u64, max_tokens: u64, output_tokens: u64) -> Self {
        Self {
            input_tokens,
            max_tokens,
            output_tokens,
            tag: 0,
        }
    }

    /// Sets the tag.
    #[must_use]
    pub fn with_tag(mut self, tag: u64) -> Self {
        self.tag = tag;
        self
    }
}

/// Tokens billed for a successful call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// The request's input tokens.
    pub input_tokens: u64,
    /// Output tokens produced: `min(output_tokens, max_tokens)`.
    pub output_tokens: u64,
}

/// Why a call was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MockErrorKind {
    /// 429: the key's limit on this dimension is used up for now; see `retry-after`.
    RateLimited(Dimension),
    /// 529: the provider is overloaded, whatever the key's limits.
    Overloaded,
    /// 400: the request exceeds this dimension's capacity (after the hidden share) and can never
    /// be admitted. Providers answer 400 or 413 here; the mock picks 400.
    RequestTooLarge(Dimension),
}

impl MockErrorKind {
    /// The provider's error type string, as in Anthropic's error bodies.
    pub fn as_str(&self) -> &'static str {
        match self {
            MockErrorKind::RateLimited(_) => "rate_limit_error",
            MockErrorKind::Overloaded => "overloaded_error",
            MockErrorKind::RequestTooLarge(_) => "invalid_request_error",
        }
    }
}

/// The body of every answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MockReply {
    /// The request's tag.
    pub tag: u64,
    /// Set on 200.
    pub usage: Option<Usage>,
    /// Set on 400, 429 and 529.
    pub error: Option<MockErrorKind>,
}

// ===== impl MockProvider =====

/// A deterministic mock LLM provider.
///
/// Answers 200 with usage after a seeded latency, 429 with `retry-after` when a limit is used up,
/// 529 under configured overload and 400 for requests that can never fit; rate-limit headers ride
/// on every answer. See the [crate docs](crate) for an example.
///
/// The decision is made in `call`, at the current virtual time: `poll_ready` is always ready, and
/// the headers of a 200 show the state right after the call was charged. `call` must run inside a
/// tokio runtime with time enabled.
///
/// # Clone
///
/// Clones share everything: limits, RNG, counters and the event log. They are the same key.
#[derive(Clone)]
pub struct MockProvider {
    shared: Arc<Shared>,
}

/// What all clones share.
pub(crate) struct Shared {
    config: Config,
    headers: HeaderWriter,
    origin: Instant,
    state: Mutex<State>,
}

pub(crate) struct State {
    pub(crate) limiter: Limiter,
    rng: ChaCha8Rng,
    pub(crate) stats: MockStats,
    events: Option<Vec<MockEvent>>,
    /// Header maps given back with [`MockProvider::recycle`], for answers without and with
    /// `retry-after`.
    spare: [Vec<HeaderMap>; 2],
}

/// The most header maps kept of each kind for reuse.
const SPARE_MAX: usize = 256;

impl MockProvider {
    /// A builder with the documented defaults.
    pub fn builder() -> MockProviderBuilder {
        MockProviderBuilder::default()
    }

    pub(crate) fn from_config(config: Config) -> Self {
        let e = config.effective;
        let state = State {
            limiter: Limiter::new(config.algorithm, [e.rpm, e.input_tpm, e.output_tpm]),
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            stats: MockStats::default(),
            events: config.event_log.then(Vec::new),
            spare: [Vec::new(), Vec::new()],
        };
        Self {
            shared: Arc::new(Shared {
                headers: HeaderWriter::new(&config),
                config,
                origin: Instant::now(),
                state: Mutex::new(state),
            }),
        }
    }

    /// The configured limits, as the headers report them.
    pub fn limits(&self) -> Limits {
        self.shared.config.limits
    }

    /// What this client can actually use: the limits less the hidden share.
    pub fn effective_limits(&self) -> Limits {
        self.shared.config.effective
    }

    /// The configured seed.
    #[cfg(feature = "http")]
    pub(crate) fn seed(&self) -> u64 {
        self.shared.config.seed
    }

    /// Wall-clock seconds now, as the provider tells it: its epoch plus the time since it was
    /// built.
    #[cfg(feature = "http")]
    pub(crate) fn unix_now(&self) -> u64 {
        let config = &self.shared.config;
        config
            .epoch_unix_secs
            .saturating_add(self.shared.elapsed().as_secs())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> MockStats {
        self.shared.lock().stats
    }

    /// A copy of the event log, in arrival order (empty when the log is off).
    pub fn events(&self) -> Vec<MockEvent> {
        self.shared.lock().events.clone().unwrap_or_default()
    }

    /// Takes back an answer the caller is done with, so that a later answer reuses its header
    /// map instead of allocating one. Optional: an answer simply dropped costs two small
    /// allocations more for the next one. Headers changed since (other names, more values) are
    /// not kept; the values a later answer shows are always its own.
    pub fn recycle(&self, answer: Response<MockReply>) {
        let (parts, _) = answer.into_parts();
        let headers = parts.headers;
        let Some(retry) = self.shared.headers.kind(&headers) else {
            return;
        };
        let spare = &mut self.shared.lock().spare[usize::from(retry)];
        if spare.len() < SPARE_MAX {
            spare.push(headers);
        }
    }

    fn answer(&self, req: MockRequest) -> ResponseFuture {
        let shared = &self.shared;
        let config = &shared.config;
        let instant = Instant::now();
        let now = instant.saturating_duration_since(shared.origin);
        let output = req.output_tokens.min(req.max_tokens);
        let mut guard = shared.lock();
        let state = &mut *guard;
        state.stats.received += 1;

        let overloaded = config.overload.is_some_and(|o| {
            state.stats.in_flight >= o.threshold_in_flight
                && o.probability > 0.0
                && state.rng.random_bool(o.probability)
        });
        let decision = if overloaded {
            None
        } else {
            Some(
                state
                    .limiter
                    .try_admit(now, [1, req.input_tokens, req.max_tokens]),
            )
        };
        let (status, reply, latency, retry) = match decision {
            None => {
                state.stats.overloaded += 1;
                (
                    OVERLOADED,
                    Err(MockErrorKind::Overloaded),
                    Duration::ZERO,
                    None,
                )
            }
            Some(Decision::TooLarge { dimension }) => {
                state.stats.too_large += 1;
                let kind = MockErrorKind::RequestTooLarge(dimension);
                (StatusCode::BAD_REQUEST, Err(kind), Duration::ZERO, None)
            }
            Some(Decision::Limited { dimension, wait }) => {
                state.stats.rate_limited += 1;
                let kind = MockErrorKind::RateLimited(dimension);
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    Err(kind),
                    Duration::ZERO,
                    Some(wait),
                )
            }
            Some(Decision::Admit) => {
                let s = &mut state.stats;
                s.ok += 1;
                s.input_tokens_ok += req.input_tokens;
                s.output_tokens_ok += output;
                s.in_flight += 1;
                s.max_in_flight = s.max_in_flight.max(s.in_flight);
                let latency = latency(config, &mut state.rng, output);
                let usage = Usage {
                    input_tokens: req.input_tokens,
                    output_tokens: output,
                };
                (StatusCode::OK, Ok(usage), latency, None)
            }
        };
        if let Some(events) = &mut state.events {
            events.push(MockEvent {
                at: now,
                tag: req.tag,
                status,
                input_tokens: req.input_tokens,
                max_tokens: req.max_tokens,
                output_tokens: if reply.is_ok() { output } else { 0 },
                latency,
            });
        }
        let limits = shared.headers.states(&mut state.limiter, now);
        let spare = state.spare[usize::from(retry.is_some())].pop();
        drop(guard); // what follows needs no lock

        let mut response = Response::new(MockReply {
            tag: req.tag,
            usage: reply.ok(),
            error: reply.err(),
        });
        *response.status_mut() = status;
        *response.headers_mut() = shared.headers.write_into(spare, now, &limits, retry);

        let in_flight = (status == StatusCode::OK)
            .then(|| InFlight::new(Arc::clone(shared), now, req.max_tokens - output));
        ResponseFuture::new(response, instant, latency, in_flight)
    }
}

/// `(base + per_token · output) · (1 + u)`, `u` uniform in `[−jitter, jitter]`.
fn latency(config: &Config, rng: &mut ChaCha8Rng, output: u64) -> Duration {
    let per_token = config.latency_per_output_token;
    let nominal = config
        .latency_base
        .saturating_add(per_token.saturating_mul(u32::try_from(output).unwrap_or(u32::MAX)));
    if config.jitter_fraction == 0.0 {
        return nominal;
    }
    let u: f64 = rng.random_range(-1.0..=1.0);
    let factor = 1.0 + config.jitter_fraction * u; // in [0, 2]
    Duration::try_from_secs_f64(nominal.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

/// 529, Anthropic's "overloaded".
const OVERLOADED: StatusCode = match StatusCode::from_u16(529) {
    Ok(code) => code,
    Err(_) => StatusCode::SERVICE_UNAVAILABLE,
};

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic elsewhere: every update is a few counters.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Virtual time since the provider was built.
    pub(crate) fn elapsed(&self) -> Duration {
        Instant::now().saturating_duration_since(self.origin)
    }
}

impl fmt::Debug for MockProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockProvider")
            .field("config", &self.shared.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Service<MockRequest> for MockProvider {
    type Response = Response<MockReply>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: MockRequest) -> ResponseFuture {
        self.answer(req)
    }
}
