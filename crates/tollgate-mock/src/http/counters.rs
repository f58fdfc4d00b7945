//! Ground truth per route, served as JSON at `GET /mock/stats`.

use serde_json::{json, Map, Value};

use super::api::Api;
use crate::MockStats;

/// What one route saw and answered.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RouteCounters {
    /// Requests received, whatever their answer.
    pub(crate) requests: u64,
    /// Answered 200.
    pub(crate) admitted: u64,
    /// Answered 429.
    pub(crate) rate_limited: u64,
    /// Answered 529 (Anthropic) or 503 (OpenAI).
    pub(crate) overloaded: u64,
    /// Answered 400 or 413.
    pub(crate) invalid: u64,
    /// Answered 401.
    pub(crate) unauthorized: u64,
    /// Input tokens of admitted requests, by the mock's rule.
    pub(crate) input_tokens: u64,
    /// Output tokens (words) of admitted requests.
    pub(crate) output_tokens: u64,
}

impl RouteCounters {
    fn to_json(self) -> Value {
        json!({
            "requests": self.requests,
            "admitted": self.admitted,
            "rate_limited": self.rate_limited,
            "overloaded": self.overloaded,
            "invalid": self.invalid,
            "unauthorized": self.unauthorized,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
        })
    }
}

/// `{"routes": {path: counters, …}, "provider": {…}}`, the provider part being the limit model's
/// own [`MockStats`] over all routes. Keys come out sorted.
pub(crate) fn stats_json(routes: &[RouteCounters; 3], provider: &MockStats) -> Value {
    let mut by_path = Map::new();
    for (api, counters) in Api::ALL.iter().zip(routes) {
        by_path.insert(api.path().to_owned(), counters.to_json());
    }
    json!({
        "routes": by_path,
        "provider": {
            "received": provider.received,
            "ok": provider.ok,
            "rate_limited": provider.rate_limited,
            "overloaded": provider.overloaded,
            "too_large": provider.too_large,
            "cancelled": provider.cancelled,
            "input_tokens_ok": provider.input_tokens_ok,
            "output_tokens_ok": provider.output_tokens_ok,
            "in_flight": provider.in_flight,
            "max_in_flight": provider.max_in_flight,
        },
    })
}
