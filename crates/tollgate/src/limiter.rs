//! [`Limiter`]: the state every clone of a layer shares — scope registry, store, queue — and a
//! call's life in it, its `Ticket`: waiting for admission, then holding its charge until settled.

pub(crate) use crate::adaptive::Adaptive;
use crate::bounds;
use crate::feedback::{Cooldown, Feedback};
use crate::lane::Lane;
use crate::queue::WaitState;
use crate::registry::{Registry, Resolved};
use crate::spend::{
    CallBudgets, CallRecord, EstimateRecord, LedgerFuture, LedgerHold, MoneyStep, OnCap, Refusal,
    Spend, SpendStats, TokensRecord,
};
use crate::stats::{self, BucketStats, ScopeStats};
use crate::store::{Acquire, Decision, Settlement, Store};
use crate::wake::{Blocked, Guard, Seen, Waiters};
use crate::{ConfigError, Cost, Priority, ScopeKey, ScopeLimits, ScopeRef, ThrottleError};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tollgate_core::{Micros, Nanos, Price, TokenUsage};

/// The layer's clock: tokio's, so its paused clock drives the layer in tests and the simulator.
/// Every read of the limiter goes through here; tests count them on their thread.
#[inline]
fn now() -> Instant {
    #[cfg(test)]
    tests::CLOCK_READS.with(|n| n.set(n.get() + 1));
    Instant::now()
}

/// What a failed call (an error from the inner service, or a future dropped while the call was in
/// flight) is charged, since no usage is known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Keep the whole estimate charged.
    Keep,
    /// Refund the estimated output tokens, keep the request and the input tokens. The default:
    /// providers count a failed request and the prompt they read, but no output was produced.
    #[default]
    RefundOutput,
    /// Refund all tokens, keep the request.
    RefundTokens,
    /// Refund everything.
    RefundAll,
}

impl OnFailure {
    fn actual(self, charged: Cost) -> Cost {
        match self {
            OnFailure::Keep => charged,
            OnFailure::RefundOutput => charged.with_output_tokens(0),
            OnFailure::RefundTokens => charged.with_input_tokens(0).with_output_tokens(0),
            OnFailure::RefundAll => Cost::ZERO,
        }
    }
}

/// Settings of the waiting behaviour and of provider feedback. Every duration is at most
/// [`MAX_DURATION`](crate::MAX_DURATION) (the builder saturates them).
#[derive(Clone, Debug)]
pub(crate) struct WaitSettings {
    pub(crate) max_wait: Option<Duration>,
    pub(crate) refuse_over_max_wait: bool,
    pub(crate) on_failure: OnFailure,
    pub(crate) provider_scope: Option<ScopeKey>,
    pub(crate) cooldown: Cooldown,
    pub(crate) header_sync: bool,
    /// The longest delay a provider's answer (or [`Limiter::cool_down`]) may impose.
    pub(crate) max_provider_delay: Duration,
}

#[derive(Debug)]
struct Shared<St> {
    store: St,
    registry: Registry,
    /// The queue of waiting calls and the wake protocol (see [`crate::wake`]).
    waiters: Waiters,
    next_id: AtomicU64,
    origin: Instant,
    settings: WaitSettings,
    /// Rate-limited answers in a row, for the computed cooldown.
    consecutive_limited: AtomicU32,
    adaptive: Option<Mutex<Adaptive>>,
    /// Budgets, prices and the call log; `None` when none is configured (calls skip it).
    spend: Option<Spend>,
    /// The Unix time (ms) at `origin`.
    epoch_unix_ms: u64,
}

/// The limiter state that every clone of a [`ThrottleLayer`](crate::ThrottleLayer) and of its
/// services shares: the scopes and their limits, the store, the queue of waiting calls.
///
/// Cloning is cheap (an `Arc`). Get it with [`ThrottleLayer::limiter`](crate::ThrottleLayer::limiter)
/// to read [`stats`](Limiter::stats) or change limits at run time with
/// [`set_limits`](Limiter::set_limits).
#[derive(Debug)]
pub struct Limiter<St = crate::MemoryStore> {
    shared: Arc<Shared<St>>,
}

impl<St> Limiter<St> {
    /// The scope registry.
    pub(crate) fn registry(&self) -> &Registry {
        &self.shared.registry
    }
}

impl<St> Clone for Limiter<St> {
    fn clone(&self) -> Self {
        Limiter {
            shared: self.shared.clone(),
        }
    }
}

impl<St: Store> Limiter<St> {
    pub(crate) fn new(
        store: St,
        registry: Registry,
        tiers: &[(Priority, f64)],
        settings: WaitSettings,
        adaptive: Option<Adaptive>,
        spend: crate::spend::SpendSettings,
        epoch_unix_ms: u64,
    ) -> Self {
        let spend = spend.is_active().then(|| {
            let ledger = spend
                .ledger
                .clone()
                .unwrap_or_else(|| Arc::new(crate::spend::MemoryLedger::new()));
            Spend::new(spend, ledger, epoch_unix_ms / 1000)
        });
        Limiter {
            shared: Arc::new(Shared {
                store,
                registry,
                waiters: Waiters::new(tiers),
                next_id: AtomicU64::new(0),
                origin: now(),
                settings,
                consecutive_limited: AtomicU32::new(0),
                adaptive: adaptive.map(Mutex::new),
                spend,
                epoch_unix_ms,
            }),
        }
    }

    /// Wall-clock Unix milliseconds at tokio's instant `t`.
    fn unix_ms(&self, t: Instant) -> u64 {
        let since = t.saturating_duration_since(self.shared.origin);
        self.shared
            .epoch_unix_ms
            .saturating_add(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    /// Pauses every call of the scope `key` (an exact key, budgeted or not) until
    /// [`resume`](Limiter::resume): new calls are refused or held as the layer's
    /// [`OnCap`] says; calls already admitted go on. Needs the money side of the layer (a budget,
    /// a price table or a call log); returns `false` without one.
    ///
    /// ```
    /// use tollgate::{spend::OnCap, ThrottleLayer, ThrottleError};
    /// use tower::{service_fn, Layer, ServiceExt};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let layer = ThrottleLayer::builder()
    ///     .prices(tollgate::PriceTable::example())
    ///     .model(|_: &&str| Some("claude-haiku-4-5"))
    ///     .on_cap(OnCap::Refuse)
    ///     .build()?;
    /// let svc = layer.layer(service_fn(|_: &str| async { Ok::<_, std::convert::Infallible>(()) }));
    /// assert!(layer.limiter().pause("global"));
    /// let err = svc.clone().oneshot("hello").await.unwrap_err();
    /// assert!(err.downcast_ref::<ThrottleError>().unwrap().is_paused());
    /// assert!(layer.limiter().resume("global"));
    /// svc.oneshot("hello").await.unwrap();
    /// # Ok(()) }
    /// ```
    pub fn pause(&self, key: impl Into<ScopeKey>) -> bool {
        match &self.shared.spend {
            Some(spend) => {
                spend.pause(key.into());
                true
            }
            None => false,
        }
    }

    /// Ends a [`pause`](Limiter::pause); held calls go on. `false` when the scope was not paused.
    pub fn resume(&self, key: &str) -> bool {
        self.shared.spend.as_ref().is_some_and(|s| s.resume(key))
    }

    /// Whether the scope `key` is paused by hand.
    pub fn is_paused(&self, key: &str) -> bool {
        self.shared.spend.as_ref().is_some_and(|s| s.is_paused(key))
    }

    /// The spend of the budgeted scope `key` in its current window, or `None` when it has no
    /// budget.
    pub fn spend(&self, key: &str) -> Option<SpendStats> {
        let spend = self.shared.spend.as_ref()?;
        let now = self.unix_ms(now()) / 1000;
        spend.spent(&ScopeKey::from(key.to_owned()), now)
    }

    /// The money side of a call: its keys, price and estimate, or the error that ends it at once.
    #[inline]
    pub(crate) fn account(
        &self,
        keys: &crate::Scopes,
        cost: Cost,
        priority: Priority,
        model: Option<&str>,
        attempt: u32,
    ) -> Result<Option<Box<Account>>, ThrottleError> {
        match &self.shared.spend {
            None => Ok(None),
            Some(spend) => self.open_account(spend, keys, cost, priority, model, attempt),
        }
    }

    /// The part of [`account`](Limiter::account) for a layer that tracks spend or logs calls.
    fn open_account(
        &self,
        spend: &Spend,
        keys: &crate::Scopes,
        cost: Cost,
        priority: Priority,
        model: Option<&str>,
        attempt: u32,
    ) -> Result<Option<Box<Account>>, ThrottleError> {
        let mut all: crate::Scopes = self.shared.registry.always().iter().cloned().collect();
        for k in keys {
            if !all.contains(k) {
                all.push(k.clone());
            }
        }
        let mut account = Box::new(Account {
            budgets: CallBudgets::new(),
            keys: all,
            model: model.map(str::to_owned),
            attempt,
            price: None,
            estimate: Micros::ZERO,
            hold: None,
            pending: None,
            sleep: None,
            waiting: false,
            admitted: None,
        });
        if let Some(table) = &spend.prices {
            match table.lookup(model.unwrap_or("")) {
                Ok(found) => {
                    if found.is_default() {
                        spend.warn_default_price(model.unwrap_or(""));
                    }
                    account.price = Some(*found.price());
                }
                Err(e) => {
                    let err = ThrottleError::unknown_model(e);
                    self.log_refused(&account, priority, cost, None, &err);
                    return Err(err);
                }
            }
        }
        account.estimate = account.price.map_or(Micros::ZERO, |p| {
            p.upper_bound(cost.input_tokens, cost.output_tokens)
        });
        account.budgets = spend.budgets(&account.keys);
        Ok(Some(account))
    }

    /// Logs a call the layer refused after waiting since `arrived` (`None`: not at all).
    fn log_refused(
        &self,
        account: &Account,
        priority: Priority,
        cost: Cost,
        arrived: Option<Instant>,
        err: &ThrottleError,
    ) {
        let now = now();
        self.log(
            account,
            priority,
            cost,
            now,
            arrived.map_or(Duration::ZERO, |a| now - a),
            None,
            Micros::ZERO,
            "refused",
            Some(err),
        );
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.shared.store
    }

    /// The store's handle of `scopes`, made now.
    pub(crate) fn store_handle(&self, scopes: &[ScopeRef]) -> St::Handle {
        self.shared.store.handle(scopes, self.nanos(now()))
    }

    /// The layer's time now.
    pub(crate) fn elapsed(&self) -> Nanos {
        self.nanos(now())
    }

    fn nanos(&self, t: Instant) -> Nanos {
        Nanos::from(t.saturating_duration_since(self.shared.origin))
    }

    fn queue(&self) -> Guard<'_> {
        self.shared.waiters.lock()
    }

    /// Changes the limits of a scope key or a `kind:*` / `*` pattern on the running layer. Calls
    /// that wait are re-evaluated at once against the new limits; what a bucket owes carries over.
    ///
    /// # Errors
    /// The same rules as at build time ([`ConfigError`]); on error nothing changes.
    pub fn set_limits(
        &self,
        key: impl Into<ScopeKey>,
        limits: ScopeLimits,
    ) -> Result<(), ConfigError> {
        let key = key.into();
        match (&self.shared.adaptive, &self.shared.settings.provider_scope) {
            (Some(adaptive), Some(provider)) if *provider == key => {
                // The new limits become the adaptive mode's base; it starts again from them.
                let mut a = adaptive.lock().unwrap_or_else(|e| e.into_inner());
                let next = Adaptive::new(limits, a.headroom, a.rate.floor() / a.ceiling)?;
                self.shared.registry.set(key, &next.scaled(1.0))?;
                *a = next;
            }
            _ => self.shared.registry.set(key, &limits)?,
        }
        self.shared.waiters.gave_back();
        Ok(())
    }

    /// A snapshot of every scope the layer has seen, sorted by key.
    pub fn stats(&self) -> Vec<ScopeStats> {
        let now = self.nanos(now());
        self.shared
            .registry
            .all()
            .iter()
            .map(|r| self.snapshot(r, now))
            .collect()
    }

    /// A snapshot of one scope, if the layer has seen its key.
    pub fn scope_stats(&self, key: &str) -> Option<ScopeStats> {
        let now = self.nanos(now());
        self.shared
            .registry
            .get(key)
            .map(|r| self.snapshot(&r, now))
    }

    fn snapshot(&self, r: &Resolved, now: Nanos) -> ScopeStats {
        let state = self.shared.store.state(&r.scope, now);
        let buckets: Vec<BucketStats> = r
            .scope
            .limits
            .gcras()
            .iter()
            .enumerate()
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
            pressure: stats::pressure(&buckets, queue_depth),
            buckets,
            in_flight: state.map_or(0, |s| s.in_flight),
            concurrency: r.scope.limits.concurrency(),
            queue_depth,
            admitted,
            refused,
            wait_p50: stats::quantile(&waits, 0.50),
            wait_p99: stats::quantile(&waits, 0.99),
            wait_max: waits.last().copied().unwrap_or_default(),
        }
    }

    /// Acts on a call's feedback: a shared cooldown of the provider scope after a rate-limited or
    /// overloaded answer, and header sync of its buckets.
    #[inline]
    /// `admitted` is when the call was admitted: the moment the provider's report describes.
    pub(crate) fn feedback(&self, feedback: &Feedback, lane: &Lane<St>, admitted: Option<Nanos>) {
        let shared = &self.shared;
        let Some(key) = &shared.settings.provider_scope else {
            return;
        };
        let success = feedback.outcome == crate::feedback::Outcome::Success;
        let syncs = shared.settings.header_sync && !feedback.limits.is_empty();
        if success && !syncs && shared.adaptive.is_none() {
            // The common case: nothing to learn. No lookup, no clock read, no shared write.
            if shared.consecutive_limited.load(Ordering::Relaxed) != 0 {
                shared.consecutive_limited.store(0, Ordering::Relaxed);
            }
            return;
        }
        self.learn(feedback, lane, key, success, syncs, admitted);
    }

    /// The part of [`feedback`](Limiter::feedback) for an answer there is something to learn from.
    fn learn(
        &self,
        feedback: &Feedback,
        lane: &Lane<St>,
        key: &ScopeKey,
        success: bool,
        syncs: bool,
        admitted: Option<Nanos>,
    ) {
        let shared = &self.shared;
        // The provider scope as the call's lane has it (no registry lookup), else from the
        // registry. Limits older than the store's are ignored by it.
        let looked_up;
        let scope = match lane.scopes.iter().find(|s| s.key == *key) {
            Some(scope) => scope,
            None => match shared.registry.get(key.as_str()) {
                Some(r) => {
                    looked_up = r;
                    &looked_up.scope
                }
                None => return,
            },
        };
        let now = now();
        let at = self.nanos(now);
        if feedback.outcome.starts_cooldown() {
            let n = shared.consecutive_limited.fetch_add(1, Ordering::Relaxed) + 1;
            let delay = match feedback.outcome.retry_after() {
                Some(d) => d.min(shared.settings.max_provider_delay),
                None => shared.settings.cooldown.after(n),
            };
            tracing::warn!(scope = %key, ?delay, outcome = ?feedback.outcome, "provider pushed back: every caller pauses");
            let until = self.nanos(bounds::after(now, delay));
            shared.store.cool_down(scope, at, until);
            if let (Some(adaptive), crate::feedback::Outcome::RateLimited { .. }) =
                (&shared.adaptive, feedback.outcome)
            {
                // The provider's bucket is empty: so is the local one, or what it banked at the
                // old rate would overrun the cut.
                let dimension = adaptive.lock().unwrap_or_else(|e| e.into_inner()).dimension;
                shared.store.sync_remaining(scope, at, dimension, 0);
            }
            let mut max_rate = None;
            self.adapt(scope, at, |a| {
                a.observe(&feedback.limits, at.saturating_sub(admitted.unwrap_or(at)));
                // `W` is no more than what the answers allowed.
                let allowed = a.allowed(at);
                a.rate.on_throttle(at, Some(allowed));
                max_rate = a.rate.last_max_rate();
                a.factor_at(at)
            });
            if let Some(max_rate) = max_rate {
                let at_unix_ms = self.unix_ms(now);
                let cut = crate::store::RateCut {
                    at_unix_ms,
                    max_rate,
                };
                shared.store.publish_rate_cut(scope, cut);
            }
        } else if success {
            shared.consecutive_limited.store(0, Ordering::Relaxed);
            self.adapt(scope, at, |a| {
                a.observe(&feedback.limits, at.saturating_sub(admitted.unwrap_or(at)));
                a.rate.on_success(at);
                a.factor_at(at)
            });
        }
        if syncs {
            shared.store.sync_reported(scope, at, &feedback.limits);
        }
    }

    /// In the adaptive mode: the latest cut of the provider scope's rate made by any process that
    /// shares the store, in this layer's time; cuts older than the layer are ignored (a process
    /// starts at the full rate, as it would alone).
    fn shared_cut(&self, scope: &ScopeRef) -> Option<(Nanos, f64)> {
        self.shared.adaptive.as_ref()?;
        let cut = self.shared.store.latest_rate_cut(scope)?;
        let since = cut.at_unix_ms.checked_sub(self.shared.epoch_unix_ms)?;
        Some((Nanos::from(Duration::from_millis(since)), cut.max_rate))
    }

    /// In the adaptive mode: moves the adaptive state with `step`, which returns the factor on the
    /// configured limits, and when that moved by more than 1 % (or reached 1) applies the scaled
    /// limits to the provider scope. Before the step, the latest cut shared by other processes is
    /// adopted.
    fn adapt(&self, scope: &ScopeRef, now: Nanos, step: impl FnOnce(&mut Adaptive) -> f64) {
        let Some(adaptive) = &self.shared.adaptive else {
            return;
        };
        let key = &scope.key;
        let cut = self.shared_cut(scope);
        let mut a = adaptive.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cut_at, w)) = cut {
            a.rate.adopt(cut_at, w, now);
        }
        let factor = step(&mut a).clamp(0.0, 1.0);
        let moved =
            (factor - a.factor).abs() > 0.01 * a.factor || (factor == 1.0 && a.factor < 1.0);
        if !moved {
            return;
        }
        match self.shared.registry.set(key.clone(), &a.scaled(factor)) {
            Ok(()) => {
                tracing::debug!(scope = %key, factor, "adaptive rate applied");
                a.factor = factor;
                drop(a);
                self.shared.waiters.gave_back();
            }
            Err(e) => tracing::warn!(scope = %key, error = %e, "adaptive rate not applied"),
        }
    }

    /// Pauses the provider scope for `delay` from now, as a rate-limited answer would: at most
    /// for the layer's [`max_provider_delay`](crate::ThrottleBuilder::max_provider_delay) (24 h
    /// by default), whatever `delay` says.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate::{Dimension, Limit, ScopeLimits, ThrottleLayer};
    /// use tower::{service_fn, Layer, ServiceExt};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), tollgate::BoxError> {
    /// let layer = ThrottleLayer::builder()
    ///     .scope("global", ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, 60)))
    ///     .max_provider_delay(Duration::from_secs(600))
    ///     .build()?;
    /// let svc = layer.layer(service_fn(|_: ()| async { Ok::<_, std::convert::Infallible>(()) }));
    /// let start = tokio::time::Instant::now();
    /// layer.limiter().cool_down(Duration::MAX); // cut to 10 minutes
    /// svc.oneshot(()).await?;
    /// assert_eq!(start.elapsed(), Duration::from_secs(600));
    /// # Ok(()) }
    /// ```
    pub fn cool_down(&self, delay: Duration) {
        if let Some(scope) = self
            .shared
            .settings
            .provider_scope
            .as_ref()
            .and_then(|k| self.shared.registry.get(k.as_str()))
        {
            let now = now();
            let delay = delay.min(self.shared.settings.max_provider_delay);
            let until = self.nanos(bounds::after(now, delay));
            self.shared
                .store
                .cool_down(&scope.scope, self.nanos(now), until);
        }
    }

    /// A ticket for a call in `lane`, or the error that ends it at once.
    #[inline]
    pub(crate) fn ticket(
        &self,
        lane: Result<Arc<Lane<St>>, ThrottleError>,
        cost: Cost,
        priority: Priority,
        account: Option<Box<Account>>,
    ) -> Result<Ticket<St>, ThrottleError> {
        let lane = match lane {
            Ok(lane) => lane,
            Err(err) => {
                if let Some(a) = &account {
                    self.log_refused(a, priority, cost, None, &err);
                }
                return Err(err);
            }
        };
        Ok(Ticket {
            lane,
            id: 0,
            priority,
            cost,
            arrived: None,
            enqueued: false,
            seen: Seen::default(),
            pending: None,
            sleep: None,
            account,
            asked_at: Nanos::ZERO,
            admitted: None,
            reservation: None,
            waited: Duration::ZERO,
        })
    }
}

/// The money and log side of one call, carried from its ticket to its permit. Only calls of a
/// layer with budgets, prices or a call log have one.
pub(crate) struct Account {
    /// Every scope key of the call (`always` first).
    keys: crate::Scopes,
    model: Option<String>,
    attempt: u32,
    price: Option<Price>,
    /// The estimated cost (an upper bound when the token estimate is one).
    estimate: Micros,
    /// The call's budgets.
    budgets: CallBudgets,
    /// The money reserved against them, once it is.
    hold: Option<LedgerHold>,
    /// A reservation a shared ledger is making.
    pending: Option<LedgerFuture>,
    /// The timer of a call held at a cap.
    sleep: Option<Pin<Box<Sleep>>>,
    /// Whether its waker is registered with the held calls.
    waiting: bool,
    /// When the call was admitted.
    admitted: Option<Instant>,
}

impl Account {
    /// Gives back what a call that never ran holds: its money, and its place among the calls
    /// held at a cap.
    fn give_back(&mut self, spend: &Spend, id: u64) {
        if let Some(hold) = self.hold.take() {
            spend.release(hold, &self.budgets);
        }
        if std::mem::take(&mut self.waiting) {
            spend.forget(id);
        }
    }
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("keys", &self.keys)
            .field("model", &self.model)
            .field("estimate", &self.estimate)
            .field("hold", &self.hold)
            .finish_non_exhaustive()
    }
}

/// A call with the limiter: it waits for admission ([`poll_acquire`](Ticket::poll_acquire)), then
/// holds its charge until it is settled ([`answered`](Ticket::answered), [`fail`](Ticket::fail)).
/// Dropped while it waits, it leaves the queue and lets the next call go; dropped while admitted
/// and not settled, it is settled by the failure rule.
pub(crate) struct Ticket<St: Store> {
    /// Its scopes and the limiter.
    lane: Arc<Lane<St>>,
    /// Its place in arrival order, taken when it first needs one (see [`Ticket::id`]); zero
    /// before.
    id: u64,
    priority: Priority,
    cost: Cost,
    /// Set at the first poll.
    arrived: Option<Instant>,
    enqueued: bool,
    /// The give-backs seen before the last request to the store (see [`crate::wake`]).
    seen: Seen,
    pending: Option<Box<St::AcquireFuture>>,
    /// Allocated only once the call has to wait.
    sleep: Option<Pin<Box<Sleep>>>,
    account: Option<Box<Account>>,
    /// The layer's time of the last request to the store (zero before the first).
    asked_at: Nanos,
    /// When it was admitted, in the layer's time; `None` while it waits.
    admitted: Option<Nanos>,
    /// What the store holds for it until it is settled.
    reservation: Option<St::Reservation>,
    /// How long it waited for admission (for the call log; zero without one).
    waited: Duration,
}

impl<St: Store> std::fmt::Debug for Ticket<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("id", &self.id)
            .field("priority", &self.priority)
            .field("scopes", &self.lane.keys)
            .field("cost", &self.cost)
            .field("enqueued", &self.enqueued)
            .finish_non_exhaustive()
    }
}

/// What to do after the queue was consulted.
enum Turn {
    /// Try the store now.
    Go,
    /// Wait to be woken when the call's turn comes.
    Wait,
}

impl<St: Store> Ticket<St> {
    /// The limiter the call waits in.
    fn limiter(&self) -> &Limiter<St> {
        &self.lane.limiter
    }

    fn deadline(&self, arrived: Instant) -> Option<Instant> {
        (self.limiter().shared.settings.max_wait).map(|m| bounds::after(arrived, m))
    }

    /// The call's id in arrival order, taken now if it has none. A call needs one only to wait
    /// (in the queue or held at a spend cap) and while a remote store decides, so a call admitted
    /// at once by a store in this process never takes one; a call that waits takes it when it
    /// first learns that it must, which for such a store is its first poll.
    fn id(&mut self) -> u64 {
        if self.id == 0 {
            self.id = self
                .limiter()
                .shared
                .next_id
                .fetch_add(1, Ordering::Relaxed)
                + 1;
        }
        self.id
    }

    /// Joins the back of its tier in the queue (once).
    fn enqueue(&mut self, q: &mut Guard<'_>) {
        if !self.enqueued {
            let id = self.id();
            q.push(
                self.priority,
                id,
                self.lane.scopes.iter().map(|s| s.id).collect(),
            );
            self.enqueued = true;
            for c in &self.lane.counters {
                c.enqueued();
            }
        }
    }

    /// Leaves the queue, admitted or not, and lets the calls behind move up.
    #[inline]
    fn leave(&mut self, admitted: bool) {
        if self.enqueued {
            self.leave_queue(admitted);
        }
    }

    /// The slow part of [`leave`](Ticket::leave), for a call in the queue.
    #[cold]
    fn leave_queue(&mut self, admitted: bool) {
        self.enqueued = false;
        self.limiter()
            .queue()
            .remove(self.priority, self.id, admitted);
        for c in &self.lane.counters {
            c.dequeued();
        }
    }

    fn refuse(&mut self, err: ThrottleError) -> Poll<Result<(), ThrottleError>> {
        self.leave(false);
        for c in &self.lane.counters {
            c.refused();
        }
        if let Some(mut account) = self.account.take() {
            if let Some(spend) = &self.limiter().shared.spend {
                account.give_back(spend, self.id);
            }
            self.limiter()
                .log_refused(&account, self.priority, self.cost, self.arrived, &err);
        }
        Poll::Ready(Err(err))
    }

    /// Reserves the call's estimated cost against its budgets; `Pending` while it is held at a cap
    /// or a pause.
    fn reserve_money(
        &mut self,
        cx: &mut Context<'_>,
        now: Instant,
    ) -> Poll<Result<(), ThrottleError>> {
        self.id();
        let limiter = self.limiter().clone();
        let deadline = self.arrived.and_then(|a| self.deadline(a));
        let (Some(account), Some(spend)) = (&mut self.account, &limiter.shared.spend) else {
            return Poll::Ready(Ok(()));
        };
        if account.hold.is_some() {
            return Poll::Ready(Ok(()));
        }
        // Read before asking, so that money coming back between a refusal and the registration
        // of the waker below is not missed.
        let seen = spend.epoch();
        let step = match &mut account.pending {
            Some(fut) => match fut.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(answer) => {
                    account.pending = None;
                    match answer {
                        Ok(Ok(hold)) => MoneyStep::Held(hold),
                        Ok(Err(refused)) => {
                            MoneyStep::Refused(spend.refusal(&account.budgets, refused))
                        }
                        // Spend caps fail closed.
                        Err(e) => return Poll::Ready(Err(ThrottleError::store(e))),
                    }
                }
            },
            None => spend.reserve(
                &account.keys,
                &account.budgets,
                limiter.unix_ms(now) / 1000,
                account.estimate,
            ),
        };
        let refusal = match step {
            MoneyStep::Held(hold) => {
                account.hold = Some(hold);
                account.sleep = None;
                if std::mem::take(&mut account.waiting) {
                    spend.forget(self.id);
                }
                return Poll::Ready(Ok(()));
            }
            MoneyStep::Pending(fut) => {
                account.pending = Some(fut);
                return self.reserve_money(cx, now);
            }
            MoneyStep::Refused(r) => r,
        };
        let (err, until) = match refusal {
            Refusal::Exhausted(scope, e) => {
                let never = e.never_fits();
                let reset = e.resets_at();
                let err = ThrottleError::budget(scope, e);
                if never {
                    return Poll::Ready(Err(err));
                }
                (err, Some(limiter.instant_at_unix(reset)))
            }
            Refusal::Paused(scope) => (ThrottleError::paused(scope), None),
        };
        if spend.on_cap == OnCap::Refuse || deadline.is_some_and(|d| now >= d) {
            return Poll::Ready(Err(err));
        }
        // Held: woken by a settle, a release, a resume, the window's reset or the deadline; with
        // a shared ledger also every second, since other processes' settles wake no one here.
        spend.wait(self.id, cx.waker(), seen);
        account.waiting = true;
        let until = match (until, spend.is_shared()) {
            (Some(u), true) => Some(u.min(now + Duration::from_secs(1))),
            (None, true) => Some(now + Duration::from_secs(1)),
            (u, false) => u,
        };
        let at = match (until, deadline) {
            (Some(u), Some(d)) => Some(u.min(d)),
            (u, d) => u.or(d),
        };
        if let Some(at) = at {
            let sleep = account
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            if sleep.deadline() != at {
                sleep.as_mut().reset(at);
            }
            if sleep.as_mut().poll(cx).is_ready() {
                cx.waker().wake_by_ref();
            }
        }
        Poll::Pending
    }

    fn max_wait_error(&mut self, now: Instant, predicted: Option<Instant>) -> ThrottleError {
        let arrived = self.arrived.unwrap_or(now);
        ThrottleError::max_wait(
            self.limiter().shared.settings.max_wait.unwrap_or_default(),
            now - arrived,
            predicted.map(|p| p.saturating_duration_since(now)),
        )
    }

    /// Consults the queue: may this call try the store now?
    fn turn(&mut self, cx: &Context<'_>, now: Instant) -> Result<Turn, ThrottleError> {
        if !self.enqueued && self.limiter().shared.waiters.is_empty() {
            return Ok(Turn::Go);
        }
        let limiter = self.limiter().clone();
        let mut q = limiter.queue();
        self.enqueue(&mut q);
        // A call that sleeps until its capacity is due is polled when the time has come, or when
        // capacity came back early (a refund, a release, new limits): either way it tries again,
        // if it is its turn. Otherwise it waits to be woken when its turn comes.
        if q.eligible(self.id) {
            q.set_state(self.priority, self.id, WaitState::Ready, None);
            return Ok(Turn::Go);
        }
        q.set_state(self.priority, self.id, WaitState::Gated, Some(cx.waker()));
        // A call that slept blocked held its refusing scopes; gated, it holds none. The call now
        // ahead of it (tier precedence moves with every admission) may be gated too, and only a
        // change of the queue wakes a gated call: this is one.
        q.wake_eligible();
        let settings = &limiter.shared.settings;
        if let (true, Some(max)) = (settings.refuse_over_max_wait, settings.max_wait) {
            let due = q.due_ahead(self.id);
            let arrived = self.arrived.unwrap_or(now);
            if due.is_some_and(|d| d > bounds::after(arrived, max)) {
                drop(q);
                return Err(self.max_wait_error(now, due));
            }
        }
        Ok(Turn::Wait)
    }

    /// The call is admitted: leave the queue, count it, hold the reservation.
    #[inline]
    fn admitted(
        &mut self,
        now: Instant,
        reservation: Option<St::Reservation>,
    ) -> Poll<Result<(), ThrottleError>> {
        // Only a call that queued has waited (a call that went straight through has not, whatever
        // the clock says between two reads).
        let waited = self.arrived.filter(|_| self.enqueued).map(|a| now - a);
        self.leave(true);
        for c in &self.lane.counters {
            c.admitted(waited);
        }
        if let Some(a) = &mut self.account {
            a.admitted = Some(now);
            self.waited = self.arrived.map_or(Duration::ZERO, |a| now - a);
        }
        self.reservation = reservation;
        self.admitted = Some(if self.asked_at > Nanos::ZERO {
            self.asked_at
        } else {
            self.limiter().nanos(now)
        });
        Poll::Ready(Ok(()))
    }

    /// Handles the store's decision; `Pending` when the call must wait.
    fn decided(
        &mut self,
        cx: &mut Context<'_>,
        now: Instant,
        decision: Decision<St::Reservation>,
    ) -> Poll<Result<(), ThrottleError>> {
        match decision {
            Decision::Admitted(reservation) => self.admitted(now, Some(reservation)),
            Decision::Never(n) => {
                let scope = self.lane.scopes[n.scope].key.clone();
                self.refuse(ThrottleError::never_fits(
                    scope,
                    n.dimension,
                    n.requested,
                    n.capacity,
                ))
            }
            Decision::Wait { wait, blocked } => {
                let until = wait.map(|w| bounds::after(now, w));
                let settings = &self.limiter().shared.settings;
                let (refuse_over, max_wait) = (settings.refuse_over_max_wait, settings.max_wait);
                let arrived = self.arrived.unwrap_or(now);
                if let (true, Some(max), Some(u)) = (refuse_over, max_wait, until) {
                    if u > bounds::after(arrived, max) {
                        let err = self.max_wait_error(now, until);
                        return self.refuse(err);
                    }
                }
                let scopes = self
                    .lane
                    .scopes
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| blocked & (1 << i) != 0)
                    .map(|(_, s)| s.id)
                    .collect();
                let limiter = self.limiter().clone();
                let mut q = limiter.queue();
                self.enqueue(&mut q);
                let (priority, id, waker) = (self.priority, self.id, cx.waker());
                let blocked = q.block(priority, id, scopes, until, waker, self.seen);
                drop(q);
                if blocked == Blocked::AskAgain {
                    // Capacity came back since the call asked: it asks again, at once.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                self.arm(cx, until)
            }
        }
    }

    /// Sleeps until `until` or the deadline, whichever is first; `Pending` unless it has passed.
    fn arm(
        &mut self,
        cx: &mut Context<'_>,
        until: Option<Instant>,
    ) -> Poll<Result<(), ThrottleError>> {
        let deadline = self.arrived.and_then(|a| self.deadline(a));
        let at = match (until, deadline) {
            (Some(u), Some(d)) => Some(u.min(d)),
            (u, d) => u.or(d),
        };
        if let Some(at) = at {
            match &mut self.sleep {
                Some(s) => {
                    if s.deadline() != at {
                        s.as_mut().reset(at);
                    }
                }
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
            }
            if let Some(s) = &mut self.sleep {
                if s.as_mut().poll(cx).is_ready() {
                    // Due already: the caller polls again at once.
                    cx.waker().wake_by_ref();
                }
            }
        }
        Poll::Pending
    }

    /// Drives the call to admission.
    pub(crate) fn poll_acquire(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ThrottleError>> {
        if self.admitted.is_some() {
            return Poll::Ready(Ok(()));
        }
        // One clock read per poll: a decision made in this poll is made at this time.
        let now = now();
        if let Some(fut) = &mut self.pending {
            let decision = ready!(Pin::new(&mut **fut).poll(cx));
            self.pending = None;
            return self.on_decision(cx, now, decision);
        }
        let arrived = *self.arrived.get_or_insert(now);
        if self.account.is_some() {
            match self.reserve_money(cx, now) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return self.refuse(e),
                Poll::Pending => return Poll::Pending,
            }
        }
        if let Some(d) = self.deadline(arrived) {
            if now >= d {
                let predicted = match self.limiter().queue().state(self.priority, self.id) {
                    Some(WaitState::Blocked { until, .. }) => *until,
                    _ => None,
                };
                let err = self.max_wait_error(now, predicted);
                return self.refuse(err);
            }
        }
        match self.turn(cx, now) {
            Err(e) => self.refuse(e),
            Ok(Turn::Wait) => self.arm(cx, None),
            Ok(Turn::Go) if self.lane.scopes.is_empty() => self.admitted(now, None),
            Ok(Turn::Go) => {
                // Read before the lane's limits and the store, so that a give-back from now on
                // is seen if the store refuses.
                self.seen = self.limiter().shared.waiters.seen();
                if !self.lane.is_current() {
                    // Limits changed while the call waited.
                    self.lane = Arc::new(self.lane.refreshed());
                }
                self.asked_at = self.limiter().nanos(now);
                let call = Acquire {
                    now: self.asked_at,
                    scopes: &self.lane.scopes,
                    cost: self.cost,
                };
                let mut fut = self
                    .limiter()
                    .shared
                    .store
                    .acquire_with(&self.lane.handle, &call);
                // A store in this process answers at once; only a remote one's future is kept
                // (boxed, so the ticket stays small).
                match Pin::new(&mut fut).poll(cx) {
                    Poll::Ready(decision) => self.on_decision(cx, now, decision),
                    Poll::Pending => {
                        // Its place in arrival order is taken before the answer comes back.
                        self.id();
                        self.pending = Some(Box::new(fut));
                        Poll::Pending
                    }
                }
            }
        }
    }

    #[inline]
    fn on_decision(
        &mut self,
        cx: &mut Context<'_>,
        now: Instant,
        decision: Result<Decision<St::Reservation>, crate::store::StoreError>,
    ) -> Poll<Result<(), ThrottleError>> {
        match decision {
            // The common case first, without the rest of `decided`.
            Ok(Decision::Admitted(reservation)) => self.admitted(now, Some(reservation)),
            Ok(d) => self.decided(cx, now, d),
            Err(e) => self.refuse(ThrottleError::store(e)),
        }
    }
}

impl<St: Store> Drop for Ticket<St> {
    fn drop(&mut self) {
        if self.admitted.is_some() {
            if self.reservation.is_some() || self.account.is_some() {
                // Admitted and not settled: the call's future was dropped while it ran.
                let actual = self.on_failure().actual(self.cost);
                self.settle(actual, Billed::Charged, "dropped");
            }
            return;
        }
        self.leave(false);
        if let (Some(account), Some(spend)) =
            (self.account.as_mut(), &self.lane.limiter.shared.spend)
        {
            account.give_back(spend, self.id);
        }
    }
}

/// The admitted half of a ticket's life.
impl<St: Store> Ticket<St> {
    fn on_failure(&self) -> OnFailure {
        self.limiter().shared.settings.on_failure
    }

    /// Acts on the call's feedback (see [`Limiter::feedback`]).
    pub(crate) fn feedback(&self, feedback: &Feedback) {
        self.lane
            .limiter
            .feedback(feedback, &self.lane, self.admitted);
    }

    /// What the call was charged when admitted.
    pub(crate) fn cost(&self) -> Cost {
        self.cost
    }

    /// Whether the call's detailed token usage is wanted (the layer tracks spend or logs calls).
    pub(crate) fn wants_tokens(&self) -> bool {
        self.account.is_some()
    }

    /// Settles a call that got an answer. A success is charged its real usage (`None`: the
    /// estimate stays charged). Any other answer without a reported usage is charged by the
    /// failure rule in the buckets, and costs no money when the provider turned the call away
    /// (rate limited, overloaded, spend cap: nothing was billed), else the failure rule's tokens.
    pub(crate) fn answered(
        &mut self,
        usage: Option<Cost>,
        tokens: Option<TokenUsage>,
        outcome: &crate::feedback::Outcome,
    ) {
        use crate::feedback::Outcome;
        let reported = usage.map(|u| Cost {
            requests: self.cost.requests,
            ..u
        });
        let success = *outcome == Outcome::Success;
        let actual = match reported {
            Some(u) => u,
            None if success => self.cost,
            None => self.on_failure().actual(self.cost),
        };
        let billed = match tokens {
            Some(t) => Billed::Reported(t),
            None if reported.is_some() || success => Billed::Charged,
            None => match outcome {
                Outcome::RateLimited { .. }
                | Outcome::Overloaded { .. }
                | Outcome::SpendCapReached => Billed::Nothing,
                _ => Billed::Charged,
            },
        };
        self.settle(actual, billed, outcome.log_name());
    }

    /// Settles a call whose inner service failed.
    pub(crate) fn fail(&mut self) {
        let actual = self.on_failure().actual(self.cost);
        self.settle(actual, Billed::Charged, "error");
    }

    fn settle(&mut self, actual: Cost, billed: Billed, outcome: &'static str) {
        let Some(admitted) = self.admitted else {
            return;
        };
        // A refund gives the same buckets at any time after admission (a bucket refunded below
        // the present is simply full), so it is booked at the admission's time and the clock is
        // not read again; a shortfall is charged as debt from now.
        let c = self.cost;
        let debt = actual.requests > c.requests
            || actual.input_tokens > c.input_tokens
            || actual.output_tokens > c.output_tokens;
        let read = (debt || self.account.is_some()).then(now);
        if let Some(r) = self.reservation.take() {
            let now = read.map_or(admitted, |t| self.lane.limiter.nanos(t));
            self.lane.limiter.shared.store.settle_with(
                &self.lane.handle,
                r,
                Settlement { now, actual },
            );
            self.wake_if_given_back(actual);
        }
        if let (Some(account), Some(now)) = (self.account.take(), read) {
            self.settle_account(account, now, actual, billed, outcome);
        }
    }

    /// Tells the waiting calls (see [`crate::wake`]) if this call, settled at `actual`, gave
    /// something back: a refund to a bucket, or its place under a concurrency cap (which limits
    /// set since it was admitted may have added). Woken otherwise, the calls a bucket or a cap
    /// refused would ask again and be refused again.
    #[inline]
    fn wake_if_given_back(&self, actual: Cost) {
        let lane = &self.lane;
        let c = self.cost;
        let refund = (lane.dimensions.iter()).any(|&d| actual.amount(d) < c.amount(d));
        if refund || lane.capped || !lane.is_current() {
            lane.limiter.shared.waiters.gave_back();
        }
    }

    /// The money and log side of [`settle`](Ticket::settle), for a call with an account.
    fn settle_account(
        &self,
        mut account: Box<Account>,
        now: Instant,
        actual: Cost,
        billed: Billed,
        outcome: &'static str,
    ) {
        let charged_tokens = TokenUsage::new(actual.input_tokens, actual.output_tokens);
        let used = match billed {
            Billed::Reported(t) => Some(t),
            Billed::Charged => Some(charged_tokens),
            Billed::Nothing => None,
        };
        let cost = match (account.price, used) {
            (Some(p), Some(u)) => p.cost_of(u),
            _ => Micros::ZERO,
        };
        if let (Some(hold), Some(spend)) = (account.hold.take(), &self.lane.limiter.shared.spend) {
            spend.settle(
                hold,
                &account.budgets,
                self.lane.limiter.unix_ms(now) / 1000,
                cost,
            );
        }
        // The log's `actual` is what the provider reported, or the charge of a success.
        let real = match billed {
            Billed::Reported(t) => Some(t),
            _ => (outcome == "ok").then_some(charged_tokens),
        };
        self.lane.limiter.log(
            &account,
            self.priority,
            self.cost,
            now,
            self.waited,
            real,
            cost,
            outcome,
            None,
        );
    }
}

/// What a settled call is billed, in tokens.
#[derive(Clone, Copy)]
enum Billed {
    /// What the provider reported.
    Reported(TokenUsage),
    /// The tokens left charged in the buckets.
    Charged,
    /// Nothing: the provider turned the call away.
    Nothing,
}

impl<St: Store> Limiter<St> {
    /// The Tokio instant at which the wall clock reads `unix_secs`.
    fn instant_at_unix(&self, unix_secs: u64) -> Instant {
        let ms = unix_secs
            .saturating_mul(1000)
            .saturating_sub(self.shared.epoch_unix_ms);
        // A reset absurdly far away (a corrupt shared ledger) is a year away, never a panic.
        let far = Duration::from_secs(365 * 86_400);
        self.shared
            .origin
            .checked_add(Duration::from_millis(ms).min(far))
            .unwrap_or(self.shared.origin)
    }

    /// Writes a call's record to the call log, if there is one.
    #[allow(clippy::too_many_arguments)]
    fn log(
        &self,
        account: &Account,
        priority: Priority,
        estimated: Cost,
        now: Instant,
        waited: Duration,
        real: Option<TokenUsage>,
        cost: Micros,
        outcome: &'static str,
        refused: Option<&ThrottleError>,
    ) {
        let Some(log) = self.shared.spend.as_ref().and_then(|s| s.log.as_ref()) else {
            return;
        };
        let unix_ms = self.unix_ms(now);
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        // It reached the layer `waited` before its admission (or before now, if never admitted).
        let arrived = account.admitted.unwrap_or(now).checked_sub(waited);
        log.write(CallRecord {
            v: CallRecord::FORMAT_VERSION,
            arrived_unix_ms: arrived.map(|a| self.unix_ms(a)),
            time: crate::spend::rfc3339_ms(unix_ms),
            unix_ms,
            scopes: account.keys.iter().map(|k| k.as_str().to_owned()).collect(),
            priority: priority.0,
            attempt: account.attempt,
            model: account.model.clone(),
            estimated: EstimateRecord {
                requests: estimated.requests,
                input_tokens: estimated.input_tokens,
                output_tokens: estimated.output_tokens,
            },
            actual: real.map(|u| TokensRecord {
                input_tokens: u.input,
                output_tokens: u.output,
                cache_read: u.cache_read,
                cache_write: u.cache_write,
            }),
            estimated_cost_micros: account.estimate.as_u64(),
            cost_micros: cost.as_u64(),
            cost_usd: cost.as_dollars_f64(),
            wait_ms: ms(waited),
            latency_ms: account.admitted.map(|a| ms(now - a)),
            outcome: outcome.to_owned(),
            refused_because: refused.map(ToString::to_string),
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::{Cost, Dimension, Limit, ScopeKey, ScopeLimits, Scopes, ThrottleLayer};
    use smallvec::smallvec;
    use std::cell::Cell;
    use std::convert::Infallible;
    use std::time::Duration;
    use tower::{service_fn, Layer, Service, ServiceExt};

    thread_local! {
        /// The limiter's clock reads on this thread.
        pub(super) static CLOCK_READS: Cell<u64> = const { Cell::new(0) };
    }

    /// An RPM, an input-TPM and a concurrency limit that the tests' calls never reach.
    fn roomy() -> ScopeLimits {
        ScopeLimits::new()
            .limit(Limit::per_minute(Dimension::Requests, 1_000_000))
            .limit(Limit::per_minute(Dimension::InputTokens, 100_000_000))
            .concurrency(8)
    }

    /// A current-thread runtime with tokio's (real) clock.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
    }

    /// Sends the calls `ns` one after the other through `svc`, a layer over a service that answers
    /// each call with its own number, and checks every answer; returns their sum.
    async fn echo_all<S>(svc: &mut S, ns: impl IntoIterator<Item = u64>) -> u64
    where
        S: Service<u64, Response = u64>,
        S::Error: std::fmt::Debug,
    {
        let mut sum = 0;
        for n in ns {
            let svc = svc.ready().await.expect("ready");
            assert_eq!(svc.call(n).await.expect("admitted"), n);
            sum += n;
        }
        sum
    }

    /// A call that does not wait reads the clock once, whether its usage comes back lower than
    /// its estimate (refunded at the admission's time) or equal; one that used more than it was
    /// charged reads it again to book the debt from then.
    #[test]
    fn a_call_that_does_not_wait_reads_the_clock_once() {
        let layer = ThrottleLayer::builder()
            .scope("global", roomy())
            .estimate(|_: &u64| Cost::request().with_input_tokens(100))
            .read_usage(|n: &u64| Some(Cost::request().with_input_tokens(*n)))
            .build()
            .expect("valid limits");
        let limiter = layer.limiter().clone();
        let mut svc = layer.layer(service_fn(|n: u64| async move { Ok::<_, Infallible>(n) }));
        let rt = runtime();
        let mut reads_of = |usage: std::ops::Range<u64>| {
            let before = CLOCK_READS.with(Cell::get);
            rt.block_on(echo_all(&mut svc, usage));
            CLOCK_READS.with(Cell::get) - before
        };
        // The first call also resolves its lane (one more read, for the store's handle).
        assert_eq!(reads_of(0..1), 2);
        assert_eq!(reads_of(1..101), 100, "used less than estimated");
        assert_eq!(reads_of(100..101), 1, "used what was estimated");
        assert_eq!(
            reads_of(101..111),
            20,
            "used more: the debt is booked from now"
        );
        let stats = limiter.scope_stats("global").expect("the scope");
        assert_eq!((stats.admitted, stats.refused), (112, 0));
    }

    /// A call with capacity takes no lock: with the queue, the scope registry, the store's table
    /// and the service's shared lane map all locked by this thread, another thread's calls, each
    /// charged to an RPM, an input-TPM and a concurrency limit and reconciled from its usage, one
    /// agent after another (in its scopes `global` and `agent:*`), go through. (A call that took any
    /// of these locks would block for good; the test would fail at the timeout.)
    #[test]
    fn a_call_with_capacity_takes_no_lock() {
        let agents: Vec<ScopeKey> = (0..4).map(|a| format!("agent:{a}").into()).collect();
        let layer = ThrottleLayer::builder()
            .scope("global", roomy())
            .scope("agent:*", roomy())
            .extract_scopes(move |n: &u64| -> Scopes {
                smallvec![ScopeKey::GLOBAL, agents[(*n % 4) as usize].clone()]
            })
            .estimate(|n: &u64| Cost::request().with_input_tokens(*n))
            .read_usage(|n: &u64| Some(Cost::request().with_input_tokens(*n / 2)))
            .build()
            .expect("valid limits");
        let limiter = layer.limiter().clone();
        let mut svc = layer.layer(service_fn(|n: u64| async move { Ok::<_, Infallible>(n) }));
        let rt = runtime();
        // The first calls of each agent resolve its lane and make the store's cells (both under
        // locks); the second ones find the lanes among the recent ones and make them lock-free.
        let first = rt.block_on(echo_all(&mut svc, 101..=108));
        assert_eq!(first, 836);
        let lanes = svc.lanes.clone();
        {
            let _queue = limiter.queue();
            let _registry = limiter.registry().hold_lock();
            let _table = limiter.store().hold_lock();
            let _lanes = lanes.hold_lock();
            let (done, calls) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let sum = rt.block_on(echo_all(&mut svc, 1..=100));
                done.send(sum).expect("the test waits");
            });
            let sum = calls
                .recv_timeout(Duration::from_secs(60))
                .expect("the calls went through while every lock was held");
            assert_eq!(sum, 5050);
        }
        let stats = limiter.scope_stats("global").expect("the scope");
        assert_eq!((stats.admitted, stats.refused), (108, 0));
    }
}
