//! Statistics per scope: the [`ScopeStats`] snapshot, made from the [`ScopeCounters`](crate::counters::ScopeCounters) and the store's state.

use crate::registry::Resolved;
use crate::store::ScopeState;
use crate::ScopeKey;
use std::time::Duration;
use tollgate_core::Dimension;

/// How close a scope is to its limits, from the fullness of its emptiest bucket: `High` below 30 %,
/// `Medium` below 60 %, `Low` otherwise (or `High` while calls are queued).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pressure {
    /// Every bucket is at least 60 % full and nothing waits.
    Low,
    /// The emptiest bucket is 30–60 % full.
    Medium,
    /// The emptiest bucket is below 30 %, or calls are waiting.
    High,
}

/// One bucket of a scope in a [`ScopeStats`].
#[derive(Clone, Debug, PartialEq)]
pub struct BucketStats {
    /// What the bucket counts.
    pub dimension: Dimension,
    /// Its period.
    pub period: Duration,
    /// Units available now (negative while in debt).
    pub available: f64,
    /// Its burst (capacity).
    pub capacity: u64,
    /// Units admitted per period, after headroom (and the adaptive factor, if on).
    pub per_period: f64,
}

/// A snapshot of one scope.
#[derive(Clone, Debug, PartialEq)]
pub struct ScopeStats {
    /// The scope key.
    pub key: ScopeKey,
    /// Each bucket's capacity and what is available in it now.
    pub buckets: Vec<BucketStats>,
    /// Calls in flight.
    pub in_flight: u64,
    /// The concurrency cap, if any.
    pub concurrency: Option<u64>,
    /// Low, medium or high.
    pub pressure: Pressure,
    /// Calls of this scope waiting in the queue now.
    pub queue_depth: u64,
    /// Calls admitted so far.
    pub admitted: u64,
    /// Calls refused so far (can never fit, waited too long, or unknown scope).
    pub refused: u64,
    /// Median queue wait of recent calls that waited (zero when none waited).
    pub wait_p50: Duration,
    /// 99th percentile queue wait of recent calls that waited.
    pub wait_p99: Duration,
    /// Longest recent queue wait.
    pub wait_max: Duration,
}

/// The `q`-quantile (nearest rank) of `sorted`, zero when empty.
pub(crate) fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Pressure from the fullness of the emptiest bucket and the queue depth.
pub(crate) fn pressure(buckets: &[BucketStats], queue_depth: u64) -> Pressure {
    if queue_depth > 0 {
        return Pressure::High;
    }
    let fullest_needed = buckets
        .iter()
        .map(|b| b.available / b.capacity.max(1) as f64)
        .fold(1.0f64, f64::min);
    if fullest_needed < 0.3 {
        Pressure::High
    } else if fullest_needed < 0.6 {
        Pressure::Medium
    } else {
        Pressure::Low
    }
}

/// The stats of the scope `r`, whose state in the store is `state`.
pub(crate) fn snapshot(r: &Resolved, state: Option<ScopeState>) -> ScopeStats {
    let buckets: Vec<BucketStats> = (r.scope.limits.gcras().iter().enumerate())
        .map(|(i, g)| BucketStats {
            dimension: g.dimension(),
            period: g.period().as_duration(),
            available: state
                .as_ref()
                .and_then(|s| s.available.get(i).copied())
                .unwrap_or(g.burst() as f64),
            capacity: g.burst(),
            per_period: g.per_period(),
        })
        .collect();
    let (admitted, refused, queue_depth, mut waits) = r.counters.snapshot();
    waits.sort_unstable();
    ScopeStats {
        key: r.scope.key.clone(),
        pressure: pressure(&buckets, queue_depth),
        buckets,
        in_flight: state.map_or(0, |s| s.in_flight),
        concurrency: r.scope.limits.concurrency(),
        queue_depth,
        admitted,
        refused,
        wait_p50: quantile(&waits, 0.50),
        wait_p99: quantile(&waits, 0.99),
        wait_max: waits.last().copied().unwrap_or_default(),
    }
}
