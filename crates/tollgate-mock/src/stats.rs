//! Ground truth: what the provider saw and answered, independent of what any client believes.

use std::time::Duration;

use http::StatusCode;

/// Counters of everything the provider saw, from [`MockProvider::stats`](crate::MockProvider::stats).
///
/// Always on. A call counts as `ok` (with its tokens) when it is admitted; a call whose future is
/// dropped before its latency has passed is also counted in `cancelled`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MockStats {
    /// Calls received.
    pub received: u64,
    /// Calls answered 200.
    pub ok: u64,
    /// Calls answered 429.
    pub rate_limited: u64,
    /// Calls answered 529.
    pub overloaded: u64,
    /// Calls answered 400 because they exceed a limit's capacity and can never fit.
    pub too_large: u64,
    /// Admitted calls whose future was dropped before it finished.
    pub cancelled: u64,
    /// Input tokens of admitted calls.
    pub input_tokens_ok: u64,
    /// Output tokens produced by admitted calls (`min(output_tokens, max_tokens)`).
    pub output_tokens_ok: u64,
    /// Admitted calls not finished yet.
    pub in_flight: u64,
    /// The most calls in flight at once.
    pub max_in_flight: u64,
}

/// One call, recorded in arrival order when the event log is on
/// ([`MockProviderBuilder::event_log`](crate::MockProviderBuilder::event_log)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MockEvent {
    /// Arrival, in virtual time since the provider was built.
    pub at: Duration,
    /// The request's tag.
    pub tag: u64,
    /// The answer: 200, 400, 429 or 529.
    pub status: StatusCode,
    /// Input tokens the request carried.
    pub input_tokens: u64,
    /// `max_tokens` of the request.
    pub max_tokens: u64,
    /// Output tokens produced: `min(output_tokens, max_tokens)` on 200, else 0.
    pub output_tokens: u64,
    /// Time from arrival to answer (zero for errors, which answer at once).
    pub latency: Duration,
}
