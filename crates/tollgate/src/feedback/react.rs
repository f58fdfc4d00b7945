//! The layer's reaction to a call's [`Feedback`]: the shared cooldown of the provider scope after
//! a rate-limited or overloaded answer, header sync of its buckets, and the steps of the adaptive
//! rate.

use super::adaptive::Adaptive;
use super::{Feedback, Outcome};
use crate::bounds;
use crate::clock;
use crate::limiter::{Lane, Shared};
use crate::store::{RateCut, ReportedSince};
use crate::{ScopeKey, ScopeRef, Store};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;
use tollgate_core::Nanos;

/// A call's admission, as the feedback on its answer needs it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Admission {
    /// When the call was admitted, in the layer's time: the moment the provider's report on its
    /// answer describes.
    pub(crate) at: Nanos,
    /// Its place among the provider scope's admissions (0 when it was not in that scope).
    pub(crate) place: u64,
}

/// Acts on the feedback on the answer to a call of `lane` admitted as `admitted`.
#[inline]
pub(crate) fn react<St: Store>(
    shared: &Shared<St>,
    feedback: &Feedback,
    lane: &Lane<St>,
    admitted: Admission,
) {
    let Some(key) = &shared.settings.provider_scope else {
        return;
    };
    let success = feedback.outcome == Outcome::Success;
    let syncs = shared.settings.header_sync && !feedback.limits.is_empty();
    if success && !syncs && shared.adaptive.is_none() {
        // The common case: nothing to learn. No lookup, no clock read, no shared write.
        if shared.consecutive_limited.load(Ordering::Relaxed) != 0 {
            shared.consecutive_limited.store(0, Ordering::Relaxed);
        }
        return;
    }
    learn(shared, feedback, lane, key, success, syncs, admitted);
}

/// The part of [`react`] for an answer there is something to learn from.
fn learn<St: Store>(
    shared: &Shared<St>,
    feedback: &Feedback,
    lane: &Lane<St>,
    key: &ScopeKey,
    success: bool,
    syncs: bool,
    admitted: Admission,
) {
    // The provider scope as the call's lane has it (no registry lookup), else from the
    // registry. Limits older than the store's are ignored by it.
    let looked_up;
    let scope = match lane.provider.and_then(|i| lane.scopes.get(i)) {
        Some(scope) => scope,
        None => match shared.registry.get(key.as_str()) {
            Some(r) => {
                looked_up = r;
                &looked_up.scope
            }
            None => return,
        },
    };
    let now = clock::now();
    let at = shared.clock.nanos(now);
    let age = at.saturating_sub(admitted.at);
    if feedback.outcome.starts_cooldown() {
        let n = shared.consecutive_limited.fetch_add(1, Ordering::Relaxed) + 1;
        let delay = match feedback.outcome.retry_after() {
            Some(d) => d.min(shared.settings.max_provider_delay),
            None => shared.settings.cooldown.after(n),
        };
        tracing::warn!(scope = %key, ?delay, outcome = ?feedback.outcome, "provider pushed back: every caller pauses");
        pause(shared, scope, now, delay);
        if let (Some(adaptive), Outcome::RateLimited { .. }) = (&shared.adaptive, feedback.outcome)
        {
            // The provider's bucket is empty: so is the local one, or what it banked at the
            // old rate would overrun the cut.
            let dimension = adaptive.lock().unwrap_or_else(|e| e.into_inner()).dimension;
            shared.store.sync_remaining(scope, at, dimension, 0);
        }
        let mut max_rate = None;
        let limited = matches!(feedback.outcome, Outcome::RateLimited { .. });
        adapt(shared, scope, at, |a| {
            a.observe(&feedback.limits, age);
            // `W` is no more than what the answers allowed.
            let allowed = a.allowed(at);
            // An overloaded provider's bucket need not be empty: only 429s measure the refill.
            let throttled = limited
                .then(|| a.throttled(admitted.place, admitted.at))
                .flatten();
            let refill = match (throttled, a.reported_floor()) {
                (Some(t), Some(r)) => Some(t.max(r)),
                (t, r) => t.or(r),
            };
            a.rate.on_throttle_with_refill(at, Some(allowed), refill);
            max_rate = a.rate.last_max_rate();
            a.factor_at(at)
        });
        if let Some(max_rate) = max_rate {
            let cut = RateCut {
                at_unix_ms: shared.clock.unix_ms(now),
                max_rate,
            };
            shared.store.publish_rate_cut(scope, cut);
        }
    } else if success {
        shared.consecutive_limited.store(0, Ordering::Relaxed);
        adapt(shared, scope, at, |a| {
            a.observe(&feedback.limits, age);
            a.rate.on_success(at);
            a.factor_at(at)
        });
    }
    if syncs {
        sync(shared, feedback, lane, scope, at, admitted);
    }
}

/// Header sync: lowers the provider scope's buckets to what the answer reported, as read. In the
/// adaptive mode, once the answers have told the slowest rate the provider may refill requests
/// at, and when the call was counted in the provider scope (so the requests admitted there after
/// it are known), the store may apply the requests' report as of the call's admission
/// ([`Store::sync_reported_since`]): the bucket keeps what the provider refilled while the
/// answer was on its way. Not before: the configured rate may be above the provider's.
fn sync<St: Store>(
    shared: &Shared<St>,
    feedback: &Feedback,
    lane: &Lane<St>,
    scope: &ScopeRef,
    now: Nanos,
    admitted: Admission,
) {
    let floor = shared.adaptive.as_ref().and_then(|a| {
        a.lock()
            .unwrap_or_else(|e| e.into_inner())
            .request_rate_floor()
    });
    let counted = lane
        .provider
        .and_then(|i| lane.counters.get(i))
        .filter(|_| admitted.place > 0);
    match (counted, floor.filter(|&r| r > 0.0)) {
        (Some(counters), Some(rate)) => {
            let since = ReportedSince {
                admitted: admitted.at,
                requests: counters.admitted_so_far().saturating_sub(admitted.place),
                request_time: Nanos::from(
                    Duration::try_from_secs_f64(1.0 / rate).unwrap_or(Duration::MAX),
                ),
            };
            shared
                .store
                .sync_reported_since(scope, now, since, &feedback.limits);
        }
        _ => shared.store.sync_reported(scope, now, &feedback.limits),
    }
}

/// Pauses admissions in `scope` (the provider scope) for `delay` from `now`.
pub(crate) fn pause<St: Store>(
    shared: &Shared<St>,
    scope: &ScopeRef,
    now: Instant,
    delay: Duration,
) {
    let until = shared.clock.nanos(bounds::after(now, delay));
    shared
        .store
        .cool_down(scope, shared.clock.nanos(now), until);
}

/// In the adaptive mode: the latest cut of the provider scope's rate made by any process that
/// shares the store, in this layer's time; cuts older than the layer are ignored (a process
/// starts at the full rate, as it would alone).
fn shared_cut<St: Store>(shared: &Shared<St>, scope: &ScopeRef) -> Option<(Nanos, f64)> {
    let cut = shared.store.latest_rate_cut(scope)?;
    Some((shared.clock.nanos_at_unix_ms(cut.at_unix_ms)?, cut.max_rate))
}

/// In the adaptive mode: moves the adaptive state with `step`, which returns the factor on the
/// configured limits, and when that moved by more than 1 % (or reached 1) applies the scaled
/// limits to the provider scope. Before the step, the latest cut shared by other processes is
/// adopted.
fn adapt<St: Store>(
    shared: &Shared<St>,
    scope: &ScopeRef,
    now: Nanos,
    step: impl FnOnce(&mut Adaptive) -> f64,
) {
    let Some(adaptive) = &shared.adaptive else {
        return;
    };
    let key = &scope.key;
    let cut = shared_cut(shared, scope);
    let mut a = adaptive.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((cut_at, w)) = cut {
        a.rate.adopt(cut_at, w, now);
    }
    let factor = step(&mut a).clamp(0.0, 1.0);
    let moved = (factor - a.factor).abs() > 0.01 * a.factor || (factor == 1.0 && a.factor < 1.0);
    if !moved {
        return;
    }
    match shared.registry.set(key.clone(), &a.scaled(factor)) {
        Ok(()) => {
            tracing::debug!(scope = %key, factor, "adaptive rate applied");
            a.factor = factor;
            drop(a);
            shared.waiters.gave_back();
        }
        Err(e) => tracing::warn!(scope = %key, error = %e, "adaptive rate not applied"),
    }
}
