//! While Redis is away: [`Health`], which decides whether a call asks Redis, and [`Local`], the
//! in-process limiter at a fraction of the limits that [`FailMode::Open`](crate::FailMode::Open)
//! falls back to.

use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tollgate::store::{Acquire, Decision, MemoryReservation, ScopeState, Settlement};
use tollgate::{MemoryStore, ScopeId, ScopeRef, Store};
use tollgate_core::{CompiledScope, Dimension, Limit, Nanos, ScopeLimits};

/// Whether Redis answered lately: a circuit breaker. After a failure, calls take the fail mode
/// without asking Redis; once every probe interval one call asks it again (if that call is
/// dropped before the answer, the next interval's call asks).
#[derive(Debug)]
pub(crate) struct Health {
    down: AtomicBool,
    /// While down: when the next call may ask Redis.
    retry_at: Mutex<Instant>,
    probe: Duration,
}

/// Where a call goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Ask Redis.
    Redis,
    /// Redis is away: take the fail mode.
    Away,
}

impl Health {
    pub(crate) fn new(probe: Duration) -> Self {
        Health {
            down: AtomicBool::new(false),
            retry_at: Mutex::new(Instant::now()),
            probe,
        }
    }

    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    pub(crate) fn route(&self) -> Route {
        if !self.is_down() {
            return Route::Redis;
        }
        let now = Instant::now();
        let mut retry_at = self.retry_at.lock().unwrap_or_else(|e| e.into_inner());
        if *retry_at <= now {
            // This call probes; the others keep the fail mode for another interval.
            *retry_at = now + self.probe;
            Route::Redis
        } else {
            Route::Away
        }
    }

    /// Redis answered.
    pub(crate) fn succeeded(&self) {
        // Read first: while Redis answers, every call passes here, and a write would move the
        // flag's cache line between the cores at every call.
        if self.is_down() && self.down.swap(false, Ordering::AcqRel) {
            tracing::info!("redis is reachable again: the shared limits apply again");
        }
    }

    /// Redis failed with `err`.
    pub(crate) fn failed(&self, err: &crate::Error, fail_open: bool) {
        *self.retry_at.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now() + self.probe;
        if !self.down.swap(true, Ordering::AcqRel) {
            if fail_open {
                tracing::warn!(error = %err, "redis is unreachable: falling back to the local limiter");
            } else {
                tracing::warn!(error = %err, "redis is unreachable: refusing calls (fail closed)");
            }
        }
    }
}

/// The limiter of [`FailMode::Open`](crate::FailMode::Open): a [`MemoryStore`] over the scopes'
/// limits scaled by a fraction.
#[derive(Debug)]
pub(crate) struct Local {
    store: MemoryStore,
    fraction: f64,
    /// The scaled limits of each scope, with the generation they were scaled from.
    scaled: Mutex<HashMap<ScopeId, (u64, Arc<CompiledScope>)>>,
}

impl Local {
    pub(crate) fn new(fraction: f64) -> Self {
        Local {
            store: MemoryStore::new(),
            fraction,
            scaled: Mutex::default(),
        }
    }

    /// `limits` at the fraction: each rate and burst scaled (at least one unit), each concurrency
    /// cap too (at least one call).
    fn scale(&self, limits: &CompiledScope) -> CompiledScope {
        let f = self.fraction;
        let mut out = ScopeLimits::new();
        for g in limits.gcras() {
            let per_period = g.per_period() * f;
            let burst = ((g.burst() as f64 * f).floor() as u64).max(1);
            // `per_period` units a period, expressed as thousandths with a headroom so that the
            // fractional rate survives compilation.
            let milli = (g.per_period() * 1000.0).round().max(1.0) as u64;
            let limit = if per_period >= 1.0 {
                Limit::new(g.dimension(), milli, g.period().as_duration()).with_headroom(f / 1000.0)
            } else {
                Limit::new(g.dimension(), 1, g.period().as_duration())
            };
            out = out.limit(limit.with_burst(burst));
        }
        if let Some(c) = limits.concurrency() {
            out = out.concurrency(((c as f64 * f).floor() as u32).max(1));
        }
        // Scaled limits of valid limits are valid; should that ever fail, keep the originals.
        out.compile().unwrap_or_else(|_| limits.clone())
    }

    fn scoped(&self, scope: &ScopeRef) -> ScopeRef {
        let mut scaled = self.scaled.lock().unwrap_or_else(|e| e.into_inner());
        let limits = match scaled.get(&scope.id) {
            Some((gen, l)) if *gen == scope.generation => l.clone(),
            _ => {
                let l = Arc::new(self.scale(&scope.limits));
                scaled.insert(scope.id, (scope.generation, l.clone()));
                l
            }
        };
        ScopeRef {
            limits,
            ..scope.clone()
        }
    }

    pub(crate) fn acquire(&self, call: &Acquire<'_>) -> Decision<MemoryReservation> {
        let scopes: SmallVec<[ScopeRef; 4]> = call.scopes.iter().map(|s| self.scoped(s)).collect();
        self.store
            .acquire(&Acquire {
                scopes: &scopes,
                ..*call
            })
            .into_inner()
            .unwrap_or(Decision::Wait {
                wait: None,
                blocked: 0,
            })
    }

    pub(crate) fn settle(&self, r: MemoryReservation, s: Settlement) {
        self.store.settle(r, s);
    }

    pub(crate) fn cool_down(&self, scope: &ScopeRef, now: Nanos, until: Nanos) {
        self.store.cool_down(&self.scoped(scope), now, until);
    }

    pub(crate) fn sync_remaining(&self, scope: &ScopeRef, now: Nanos, d: Dimension, left: u64) {
        let left = (left as f64 * self.fraction).floor() as u64;
        self.store.sync_remaining(&self.scoped(scope), now, d, left);
    }

    pub(crate) fn state(&self, scope: &ScopeRef, now: Nanos) -> Option<ScopeState> {
        self.store.state(&self.scoped(scope), now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::Cost;

    #[test]
    fn the_local_limiter_keeps_a_fraction_of_every_limit() {
        let limits = ScopeLimits::new()
            .limit(Limit::per_minute(Dimension::Requests, 100))
            .limit(Limit::per_minute(Dimension::InputTokens, 10_000).with_headroom(0.5))
            .concurrency(8)
            .compile()
            .unwrap();
        let scaled = Local::new(0.25).scale(&limits);
        let g = scaled.gcras();
        assert_eq!((g[0].burst(), g[0].per_period()), (25, 25.0));
        assert_eq!((g[1].burst(), g[1].per_period()), (1_250, 1_250.0));
        assert_eq!(g[0].period(), limits.gcras()[0].period());
        assert_eq!(scaled.concurrency(), Some(2));
        // Tiny limits keep one unit.
        let tiny = ScopeLimits::new()
            .limit(Limit::per_minute(Dimension::Requests, 2))
            .concurrency(1)
            .compile()
            .unwrap();
        let scaled = Local::new(0.1).scale(&tiny);
        assert_eq!(scaled.gcras()[0].burst(), 1);
        assert_eq!(scaled.concurrency(), Some(1));
    }

    #[test]
    fn the_local_limiter_admits_only_its_share() {
        let local = Local::new(0.5);
        let scope = ScopeRef {
            id: 0,
            key: "global".into(),
            generation: 1,
            limits: Arc::new(
                ScopeLimits::new()
                    .limit(Limit::per_minute(Dimension::Requests, 10))
                    .compile()
                    .unwrap(),
            ),
        };
        let call = Acquire {
            now: Nanos::ZERO,
            scopes: std::slice::from_ref(&scope),
            cost: Cost::request(),
        };
        let admitted = (0..10)
            .filter(|_| matches!(local.acquire(&call), Decision::Admitted(_)))
            .count();
        assert_eq!(admitted, 5);
    }
}
