//! Where limiter state lives: the [`Store`] trait and the in-memory [`MemoryStore`].
//!
//! The layer keeps the queue of waiting calls; the store keeps the buckets and concurrency counts
//! and makes each admission decision atomically across every scope of a call. A store that lives
//! elsewhere (Redis) computes the decision there in one round trip; nothing holds a lock across an
//! `.await`.

mod memory;

pub use crate::error::StoreError;
pub use memory::{MemoryHandle, MemoryReservation, MemoryStore};

use crate::feedback::ProviderLimit;
use crate::ScopeRef;
use std::future::Future;
use std::time::Duration;
use tollgate_core::{Cost, Dimension, Gcra, Nanos, NeverFits};

/// One call asking a store for admission.
#[derive(Clone, Copy, Debug)]
pub struct Acquire<'a> {
    /// The layer's time (nanoseconds since the layer was built). A shared store may use its own
    /// clock instead, so that processes with skewed clocks agree.
    pub now: Nanos,
    /// The call's limited scopes (at most 64).
    pub scopes: &'a [ScopeRef],
    /// The estimated cost to charge.
    pub cost: Cost,
}

/// A store's answer to [`Acquire`].
#[derive(Debug)]
pub enum Decision<R> {
    /// Every scope admitted the call and was charged; settle the reservation when the call ends.
    Admitted(R),
    /// Some scope refused; nothing was charged.
    Wait {
        /// When every rate limit would admit the call if nothing else were admitted meanwhile;
        /// `None` when a concurrency cap refused (a release will tell).
        wait: Option<Duration>,
        /// Bit `i` is set when `scopes[i]` refused.
        blocked: u64,
    },
    /// The call can never be admitted (its cost is above a bucket's burst); nothing was charged.
    Never(NeverFits),
}

/// The end of an admitted call, given to [`Store::settle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settlement {
    /// The layer's time: now when the call cost more than it was charged (the shortfall is debt
    /// from now); otherwise it may be the time the call was admitted, since a refund leaves the
    /// same bucket at any time after that (a bucket refunded to before the present is full).
    pub now: Nanos,
    /// What the call really cost. The difference to the estimate is refunded or charged as debt.
    pub actual: Cost,
}

/// The call whose answer carried a provider's report, as [`Store::sync_reported_since`] needs
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportedSince {
    /// When the call was admitted, in the layer's time.
    pub admitted: Nanos,
    /// The requests the layer admitted in the scope after it.
    pub requests: u64,
    /// Time per request at the slowest rate the provider may refill requests at for this
    /// client, as far as its answers tell (the lower bound of the adaptive mode's estimate).
    pub request_time: Nanos,
}

/// The earliest time at which the request bucket `g` may be full again (its theoretical arrival
/// time) after a provider's report of requests, so that it holds no more than the provider's
/// bucket does, refilling at the slowest rate its answers allow (`since.request_time` per
/// request), from `now` on until the next report (see [`Store::sync_reported_since`]):
///
/// * The report describes the provider's bucket when the call was charged, at
///   `since.admitted`: `remaining` whole requests and a rest of one, read from its `reset` (a
///   bucket of one period `P`'s worth, full again in `reset` as of the charge, which is `reset`
///   read `now − admitted` later plus that, holds `P − reset` worth of refill time). A rest
///   outside one request (another bucket model) or a bucket already full when read is not read:
///   the report is taken as rounded down.
/// * The `since.requests` requests charged since take a request time each, so the provider's
///   bucket holds one request at `m = admitted + (requests + 1 − remaining) · request_time −
///   rest`.
/// * From `m`, if it is still to come, `g` may have its first request then; else `g` may hold
///   now what the provider does: one request and `(now − m) / request_time` more.
pub(crate) fn reported_tat(
    g: &Gcra,
    since: ReportedSince,
    now: Nanos,
    reported: &ProviderLimit,
) -> Nanos {
    let unit = since.request_time.as_u64().max(1);
    let whole = unit.saturating_mul(reported.remaining);
    let rest = reported
        .reset_in
        .filter(|reset| !reset.is_zero())
        .and_then(|reset| {
            let reset = Nanos::from(reset) + now.saturating_sub(since.admitted);
            let held = g.period().as_u64().checked_sub(reset.as_u64())?;
            held.checked_sub(whole)
        })
        .filter(|&rest| rest < unit)
        .unwrap_or(0);
    let (unit, now) = (i128::from(unit), i128::from(now.as_u64()));
    let m = i128::from(since.admitted.as_u64()) + unit * (i128::from(since.requests) + 1)
        - i128::from(whole)
        - i128::from(rest);
    // `g` with one request left: the rest of its burst still to refill.
    let others = i128::from(g.cost_ns(g.burst().saturating_sub(1)));
    let tat = if m >= now {
        m + others
    } else {
        let more = (now - m) * i128::from(g.cost_ns(1)) / unit;
        now + others - more
    };
    Nanos::new(u64::try_from(tat.max(0)).unwrap_or(u64::MAX))
}

/// A cut of a scope's adaptive rate: when it happened (wall clock) and the rate it cut from, in
/// units per second of the scope's first limit (the AIMD rate's `W`). Every process that
/// learns of it follows the same recovery line (see `AimdRate::adopt` in tollgate-core).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateCut {
    /// When the rate was cut, in Unix milliseconds.
    pub at_unix_ms: u64,
    /// The rate before the cut.
    pub max_rate: f64,
}

/// What a store knows about one scope, for [`stats`](crate::Limiter::stats).
#[derive(Clone, Debug, PartialEq)]
pub struct ScopeState {
    /// Units available in each bucket, in the order of the scope's limits (negative in debt).
    pub available: Vec<f64>,
    /// Calls in flight.
    pub in_flight: u64,
}

/// Where the buckets live.
///
/// # Contract
/// * [`acquire`](Store::acquire) decides for every scope at once: either every bucket and
///   concurrency count of every scope is charged, or none is.
/// * [`settle`](Store::settle) is called exactly once per admitted call (also when the call failed or
///   its future was dropped). It must not block: a remote store sends it in the background.
/// * Limits come with every call ([`ScopeRef::limits`]); a store keeps those of the highest
///   [`generation`](ScopeRef::generation) and carries its state over when they change.
pub trait Store: Send + Sync + 'static {
    /// What an admission holds until it is settled.
    type Reservation: Send + Sync + 'static;
    /// The future of [`acquire`](Store::acquire).
    type AcquireFuture: Future<Output = Result<Decision<Self::Reservation>, StoreError>>
        + Send
        + Unpin
        + 'static;

    /// What the store keeps for one set of scopes, made once by [`handle`](Store::handle) and
    /// passed back with every call in those scopes ([`acquire_with`](Store::acquire_with),
    /// [`settle_with`](Store::settle_with)), so that a call reaches its scopes' state without a
    /// lookup. A store that needs none uses `()`.
    type Handle: Default + Send + Sync + 'static;

    /// Admits `call` in all of its scopes, or in none.
    fn acquire(&self, call: &Acquire<'_>) -> Self::AcquireFuture;

    /// Ends an admitted call: reconciles its charge and gives back its concurrency count.
    fn settle(&self, reservation: Self::Reservation, settlement: Settlement);

    /// The handle of the scopes `scopes` at their generations, at the layer's time `now`. The
    /// layer makes one when it first sees a set of scopes and again after any limit changed. The
    /// default: `Handle::default()`.
    fn handle(&self, scopes: &[ScopeRef], now: Nanos) -> Self::Handle {
        let _ = (scopes, now);
        Self::Handle::default()
    }

    /// [`acquire`](Store::acquire) for a call whose scopes have the handle `handle` (made for the
    /// same scopes, possibly at older generations). The default ignores the handle.
    fn acquire_with(&self, handle: &Self::Handle, call: &Acquire<'_>) -> Self::AcquireFuture {
        let _ = handle;
        self.acquire(call)
    }

    /// [`acquire_with`](Store::acquire_with), answered at once by a store that decides in this
    /// process, without a future; `None` asks through `acquire_with` instead. The layer admits a
    /// call that can go at once when it is made (in `call`, with no task to wake), and takes this
    /// path only when it returns `Some`. The default: `None`.
    fn acquire_now(
        &self,
        handle: &Self::Handle,
        call: &Acquire<'_>,
    ) -> Option<Result<Decision<Self::Reservation>, StoreError>> {
        let _ = (handle, call);
        None
    }

    /// [`settle`](Store::settle) for a call admitted by [`acquire_with`](Store::acquire_with)
    /// with `handle`. The default ignores the handle.
    fn settle_with(
        &self,
        handle: &Self::Handle,
        reservation: Self::Reservation,
        settlement: Settlement,
    ) {
        let _ = handle;
        self.settle(reservation, settlement);
    }

    /// Forgets the state of `scope` if it has been idle since `since` (in the layer's time): every
    /// bucket full, no cooldown and nothing in flight from then on. Returns whether the store now
    /// keeps nothing of the scope: the layer then forgets the key too, and may give its id to
    /// another key.
    ///
    /// The layer asks only for a key instantiated from a `kind:*` or `*` pattern that no call,
    /// lane or handle it made uses, and that nothing used for its
    /// [idle-eviction time](crate::ThrottleBuilder::idle_eviction). A scope idle since `since`
    /// answers every later call as a new one does, so forgetting it changes no admission. The
    /// default keeps every scope (`false`): right for a store that cannot tell, and the layer
    /// then keeps every key it has seen.
    fn evict(&self, scope: &ScopeRef, since: Nanos) -> bool {
        let _ = (scope, since);
        false
    }

    /// The state of one scope, if the store has seen it.
    fn state(&self, scope: &ScopeRef, now: Nanos) -> Option<ScopeState>;

    /// Pauses admissions in `scope` until `until` (a shared cooldown). A later call with an earlier
    /// end changes nothing: cooldowns extend, they never add up. Must not block.
    fn cool_down(&self, scope: &ScopeRef, now: Nanos, until: Nanos);

    /// Lowers the bucket of `dimension` in `scope` so that at most `remaining` units are available
    /// at `now` (what the provider reported); never raises it. Must not block.
    fn sync_remaining(&self, scope: &ScopeRef, now: Nanos, dimension: Dimension, remaining: u64);

    /// Lowers the buckets of `scope` to every limit the provider reported in one answer, as
    /// [`sync_remaining`](Store::sync_remaining) does for one. The default calls it for each; a
    /// store may do them all in one step (the [`MemoryStore`] takes its table's
    /// lock once). Must not block.
    fn sync_reported(&self, scope: &ScopeRef, now: Nanos, reported: &[ProviderLimit]) {
        for l in reported {
            self.sync_remaining(scope, now, l.dimension, l.remaining);
        }
    }

    /// Lowers the buckets of `scope` to what the provider reported in the answer to a call
    /// admitted at `since.admitted`, read at `now`. The report describes the provider's buckets
    /// right after it charged that call; for requests, the layer knows how many it admitted in
    /// `scope` after it (`since.requests`), so a store that sees every charge of `scope` applies
    /// the requests' report as of that moment: at most `remaining − requests` available at
    /// `since.admitted`, refilled since at the bucket's rate. The bucket then keeps what it
    /// refilled while the answer was on its way, which [`sync_reported`](Store::sync_reported)
    /// (the report applied as read) loses. The others are applied as read. Must not block.
    ///
    /// The default applies every report as read: right for a store whose buckets other
    /// processes charge too, whose requests since are not all counted in `since`.
    fn sync_reported_since(
        &self,
        scope: &ScopeRef,
        now: Nanos,
        since: ReportedSince,
        reported: &[ProviderLimit],
    ) {
        let _ = since;
        self.sync_reported(scope, now, reported);
    }

    /// Shares a cut of the adaptive rate of `scope` (the adaptive mode's reaction to a
    /// rate-limited answer) with the other processes that use this store. Must not block. The
    /// default, for a store in one process, does nothing.
    fn publish_rate_cut(&self, scope: &ScopeRef, cut: RateCut) {
        let _ = (scope, cut);
    }

    /// The latest cut of `scope`'s adaptive rate published by any process, without waiting (a
    /// shared store answers from what it last read and reads again in the background). The
    /// default: none.
    fn latest_rate_cut(&self, scope: &ScopeRef) -> Option<RateCut> {
        let _ = scope;
        None
    }

    /// The ledger that keeps spend beside these buckets, if the store has one (a store shared by
    /// several processes should, so that spend caps hold across them). `None`, the default,
    /// keeps spend in this process.
    fn ledger(&self) -> Option<std::sync::Arc<dyn crate::spend::Ledger>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tollgate_core::Limit;

    const MS: u64 = 1_000_000;

    /// A provider's request bucket of one minute's worth, refilled at `rho` a second, held `x`
    /// right after it charged a call at 1,000 s; its answer is read `age_ms` later, and `k` calls
    /// were charged in between. The local bucket `g`, lowered to the bound, and the provider's,
    /// compared when the provider has one request or now, whichever is later: returns (what `g`
    /// holds then, what the provider holds then, one request's time at the real rate in ns).
    fn compared(
        g: &Gcra,
        rho: f64,
        x: f64,
        age_ms: u64,
        k: u64,
        request_time: Nanos,
    ) -> (f64, f64, f64) {
        let admitted = Nanos::from_secs(1_000);
        let full = (60.0 * rho - x) / rho;
        // As the mock writes it: an absolute time rounded up to the millisecond, read `age` on.
        let reset_in = Duration::from_millis(((full * 1e3).ceil() as u64).saturating_sub(age_ms));
        let reported = ProviderLimit {
            dimension: Dimension::Requests,
            limit: None,
            remaining: x.floor() as u64,
            reset_in: Some(reset_in),
        };
        let since = ReportedSince {
            admitted,
            requests: k,
            request_time,
        };
        let now = admitted + Nanos::new(age_ms * MS);
        let tat = reported_tat(g, since, now, &reported).as_u64() as f64;
        let unit = 1e9 / rho;
        let one = admitted.as_u64() as f64 + (k as f64 + 1.0 - x) * unit;
        let t = one.max(now.as_u64() as f64);
        let local = g.burst() as f64 - (tat - t) / g.cost_ns(1) as f64;
        let provider = x + (t - admitted.as_u64() as f64) / unit - k as f64;
        (local, provider, unit)
    }

    proptest! {
        /// At the slowest refill the answers allow, a bucket lowered to the bound holds no more
        /// than the provider does; at the real rate, no less than a millisecond's worth (the
        /// report's rounding) less. (Both within 10 µs: the bucket's own rounding to whole
        /// nanoseconds per request.)
        #[test]
        fn a_bucket_lowered_to_the_bound_holds_what_the_provider_does(
            per_min in 6u64..6_000,
            fill in 0.0f64..1.0,
            age_ms in 0u64..5_000,
            k in 0u64..10,
            slower in 0.0f64..0.01,
        ) {
            let rho = per_min as f64 / 60.0;
            let x = fill * per_min as f64;
            prop_assume!((60.0 * rho - x) / rho * 1e3 > age_ms as f64 + 1.0); // not full when read
            prop_assume!(x + age_ms as f64 / 1e3 * rho >= k as f64); // the provider admitted them
            // The local bucket refills a little faster than the provider's.
            let g = Limit::per_minute(Dimension::Requests, per_min + 1).compile().unwrap();
            let slowest = Nanos::new((1e9 / (rho * (1.0 - slower))).ceil() as u64);
            let (local, provider, unit) = compared(&g, rho, x, age_ms, k, slowest);
            prop_assert!(local <= provider + 1e4 / unit, "{local} > {provider}");
            let exact = Nanos::new((1e9 / rho).round() as u64);
            let (local, provider, unit) = compared(&g, rho, x, age_ms, k, exact);
            prop_assert!(local <= provider + 1e4 / unit, "{local} > {provider}");
            prop_assert!(local >= provider - (MS as f64 + 1e4) / unit, "{local} < {provider}");
        }
    }

    /// A report that does not fit a bucket of one period's worth (its rest is more than a
    /// request) is taken as rounded down.
    #[test]
    fn a_rest_of_more_than_one_request_is_not_read() {
        let g = Limit::per_minute(Dimension::Requests, 60)
            .compile()
            .unwrap();
        let since = ReportedSince {
            admitted: Nanos::from_secs(100),
            requests: 0,
            request_time: Nanos::from_secs(1),
        };
        let reported = |reset: u64| ProviderLimit {
            dimension: Dimension::Requests,
            limit: None,
            remaining: 10,
            reset_in: Some(Duration::from_secs(reset)),
        };
        // 10 left, full in 50 s: exactly 10 held, so 10 available now (59 s short of full).
        let now = since.admitted;
        let tat = reported_tat(&g, since, now, &reported(50));
        assert_eq!(tat, now + Nanos::from_secs(50));
        // Full in 20 s would mean 40 held: not this bucket model; as rounded, 10.
        let tat = reported_tat(&g, since, now, &reported(20));
        assert_eq!(tat, now + Nanos::from_secs(50));
        // 9.5 held (full in 50.5 s): 9.5 available.
        let tat = reported_tat(
            &g,
            since,
            now,
            &ProviderLimit {
                remaining: 9,
                reset_in: Some(Duration::from_millis(50_500)),
                ..reported(0)
            },
        );
        assert_eq!(tat, now + Nanos::from_millis(50_500));
    }
}
