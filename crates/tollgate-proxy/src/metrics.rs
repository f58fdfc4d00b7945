//! The gateway's metrics, through the `metrics` crate and rendered by its Prometheus exporter at
//! `GET /metrics`. Counters and the wait histogram are recorded as calls pass; the queue, the
//! calls in flight, what each bucket has available, the spend of each budget and the cooldown
//! are read from the limiter when the page is rendered ([`Metrics::render`]).
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `tollgate_proxy_admitted_total` | counter | `scope` |
//! | `tollgate_proxy_wait_seconds` | histogram | `scope` |
//! | `tollgate_proxy_calls_total` | counter | `outcome` |
//! | `tollgate_proxy_upstream_responses_total` | counter | `status` |
//! | `tollgate_proxy_upstream_rate_limited_total` | counter | `status` (429, 529, 503) |
//! | `tollgate_proxy_tokens_estimated_total`, `_settled_total` | counter | `scope`, `dimension` |
//! | `tollgate_proxy_queued`, `_in_flight`, `_refused` | gauge | `scope` |
//! | `tollgate_proxy_available` | gauge | `scope`, `dimension` |
//! | `tollgate_proxy_spend_usd` | gauge | `scope` (budgets of exact keys) |
//! | `tollgate_proxy_cooldown_seconds` | gauge | the provider's last named delay still to run |
//!
//! No label holds a key: scopes named after a caller's key carry its name or hash.

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tollgate::{Cost, ScopeStats};

/// Buckets of the wait histogram, in seconds.
const WAIT_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The installed recorder and what `/metrics` reads from the limiter.
#[derive(Clone)]
pub(crate) struct Metrics {
    handle: PrometheusHandle,
    stats: Arc<dyn Fn() -> Vec<ScopeStats> + Send + Sync>,
    spend: Arc<dyn Fn() -> Vec<(String, f64)> + Send + Sync>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The end of the provider's last named delay (a 429's or 529's `retry-after`).
static COOLDOWN_UNTIL: Mutex<Option<Instant>> = Mutex::new(None);

/// Installs the process's recorder. Only the first call installs one: later calls (tests
/// starting several gateways in one process) share it.
pub(crate) fn install() -> Result<PrometheusHandle, String> {
    static HANDLE: std::sync::OnceLock<Result<PrometheusHandle, String>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("tollgate_proxy_wait_seconds".into()),
                    &WAIT_BUCKETS,
                )
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| e.to_string())
        })
        .clone()
}

impl Metrics {
    pub(crate) fn new(
        handle: PrometheusHandle,
        stats: Arc<dyn Fn() -> Vec<ScopeStats> + Send + Sync>,
        spend: Arc<dyn Fn() -> Vec<(String, f64)> + Send + Sync>,
    ) -> Metrics {
        Metrics {
            handle,
            stats,
            spend,
        }
    }

    /// The Prometheus text page, with the limiter's gauges read now.
    pub(crate) fn render(&self) -> String {
        for s in (self.stats)() {
            let scope = s.key.as_str().to_owned();
            gauge!("tollgate_proxy_queued", "scope" => scope.clone()).set(s.queue_depth as f64);
            gauge!("tollgate_proxy_in_flight", "scope" => scope.clone()).set(s.in_flight as f64);
            gauge!("tollgate_proxy_refused", "scope" => scope.clone()).set(s.refused as f64);
            for b in &s.buckets {
                gauge!("tollgate_proxy_available", "scope" => scope.clone(),
                    "dimension" => format!("{:?}", b.dimension).to_lowercase())
                .set(b.available);
            }
        }
        for (scope, usd) in (self.spend)() {
            gauge!("tollgate_proxy_spend_usd", "scope" => scope).set(usd);
        }
        let now = Instant::now();
        let until = *COOLDOWN_UNTIL.lock().unwrap_or_else(|e| e.into_inner());
        let left = until.map_or(Duration::ZERO, |u| u.saturating_duration_since(now));
        gauge!("tollgate_proxy_cooldown_seconds").set(left.as_secs_f64());
        self.handle.render()
    }
}

/// An attempt admitted in `scope` after `wait`.
pub(crate) fn admitted(scope: &str, wait: Duration) {
    counter!("tollgate_proxy_admitted_total", "scope" => scope.to_owned()).increment(1);
    histogram!("tollgate_proxy_wait_seconds", "scope" => scope.to_owned())
        .record(wait.as_secs_f64());
}

/// A call ended with `outcome`.
pub(crate) fn call_done(outcome: &'static str) {
    counter!("tollgate_proxy_calls_total", "outcome" => outcome).increment(1);
}

/// An upstream answer's head arrived.
pub(crate) fn upstream_answer(status: u16, retry_after: Option<Duration>) {
    counter!("tollgate_proxy_upstream_responses_total", "status" => status.to_string())
        .increment(1);
    if matches!(status, 429 | 503 | 529) {
        counter!("tollgate_proxy_upstream_rate_limited_total", "status" => status.to_string())
            .increment(1);
        let until = Instant::now() + retry_after.unwrap_or(Duration::from_secs(1));
        let mut slot = COOLDOWN_UNTIL.lock().unwrap_or_else(|e| e.into_inner());
        *slot = Some(slot.map_or(until, |u| u.max(until)));
    }
}

fn tokens(name: &'static str, scope: &str, cost: Cost) {
    counter!(name, "scope" => scope.to_owned(), "dimension" => "input")
        .increment(cost.input_tokens);
    counter!(name, "scope" => scope.to_owned(), "dimension" => "output")
        .increment(cost.output_tokens);
}

/// The estimate charged in `scope` when an attempt was admitted.
pub(crate) fn tokens_estimated(scope: &str, cost: Cost) {
    tokens("tollgate_proxy_tokens_estimated_total", scope, cost);
}

/// What a call was settled at in `scope`.
pub(crate) fn tokens_settled(scope: &str, cost: Cost) {
    tokens("tollgate_proxy_tokens_settled_total", scope, cost);
}
