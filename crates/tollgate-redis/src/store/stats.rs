//! [`Store::state`](tollgate::Store::state) for the Redis store: a cache refreshed in the
//! background, since statistics cannot wait for a round trip.

use super::writer::Arg;
use super::Inner;
use crate::script::Bucket;
use std::sync::Arc;
use tollgate::store::ScopeState;
use tollgate::ScopeRef;

impl Inner {
    /// Reads `scope` from Redis in the background into the cache of [`Store::state`].
    pub(super) fn read_state(self: &Arc<Self>, scope: &ScopeRef) {
        if !self
            .reading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(scope.key.clone())
        {
            return;
        }
        let inner = self.clone();
        let scope = scope.clone();
        self.runtime.spawn(async move {
            let buckets: Vec<Bucket> = scope.limits.gcras().iter().map(Bucket::new).collect();
            let keys = [inner.keys.scope(&scope), inner.keys.in_flight(&scope)];
            let args: Vec<Arg> = buckets.iter().map(|b| Arg::Str(b.field())).collect();
            let reply = inner
                .invoke::<Vec<i64>>(&inner.scripts.state, &keys, &args)
                .await;
            if let Ok(reply) = reply {
                if let Some(state) = state_of(&scope, &buckets, &reply) {
                    inner
                        .states
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(scope.key.clone(), state);
                }
            }
            inner
                .reading
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&scope.key);
        });
    }
}

/// A scope's state from state.lua's reply `{now, tat, rate, ..., in flight}`.
fn state_of(scope: &ScopeRef, buckets: &[Bucket], reply: &[i64]) -> Option<ScopeState> {
    let (&now, rest) = reply.split_first()?;
    let (&in_flight, pairs) = rest.split_last()?;
    if pairs.len() != 2 * buckets.len() {
        return None;
    }
    let available = scope
        .limits
        .gcras()
        .iter()
        .zip(buckets)
        .zip(pairs.chunks(2))
        .map(|((g, b), pair)| {
            let (tat, rate) = (pair[0], pair[1]);
            let mut backlog = (tat - now).max(0) as f64;
            if rate > 0 && rate as u64 != b.rate() {
                backlog *= rate as f64 / b.rate() as f64;
            }
            // A unit refills in period_ns / rate µs.
            let unit_us = g.period().as_u64() as f64 / b.rate() as f64;
            g.burst() as f64 - backlog / unit_us
        })
        .collect();
    Some(ScopeState {
        available,
        in_flight: u64::try_from(in_flight).unwrap_or(0),
    })
}
