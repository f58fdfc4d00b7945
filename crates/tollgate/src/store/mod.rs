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
/// time) after a provider's report of requests (see [`Store::sync_reported_since`]): the time at
/// which the provider's bucket, refilling at the slowest rate its answers allow
/// (`since.request_time` per request), holds one request, plus `g`'s time for its other
/// `burst − 1`. A bucket no fuller than that admits no request before the provider has room for
/// it.
///
/// * The report describes the provider's bucket when the call was charged, at
///   `since.admitted`: `remaining` whole requests and a rest of one, read from its `reset` (a
///   bucket of one period `P`'s worth, full again in `reset` as of the charge, which is `reset`
///   read `now − admitted` later plus that, holds `P − reset` worth of refill time). A rest
///   outside one request (another bucket model) or a bucket already full when read is not read:
///   the report is taken as rounded down.
/// * The `since.requests` requests charged since take a request time each.
/// * So the provider's bucket holds one request at
///   `admitted + (requests + 1 − remaining) · request_time − rest`.
pub(crate) fn reported_tat(
    g: &Gcra,
    since: ReportedSince,
    now: Nanos,
    reported: &ProviderLimit,
) -> Nanos {
    let unit = since.request_time.as_u64();
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
    let ahead = unit.saturating_mul(since.requests + 1);
    let others = g.cost_ns(g.burst().saturating_sub(1));
    // Added before subtracted: a time before the origin means no bound (0).
    since.admitted + Nanos::new(ahead) + Nanos::new(others) - Nanos::new(whole.saturating_add(rest))
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
