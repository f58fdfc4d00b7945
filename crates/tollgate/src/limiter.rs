//! [`Limiter`]: the state every clone of a layer shares — scope registry, store, queue — and the
//! two halves of a call's life in it: a `Ticket` while it waits, a `Permit` while it runs.

use crate::queue::{Queue, WaitState};
use crate::registry::{Registry, Resolved};
use crate::stats::{self, BucketStats, ScopeCounters, ScopeStats};
use crate::store::{Acquire, Decision, Settlement, Store};
use crate::{ConfigError, Cost, Priority, ScopeKey, ScopeLimits, ScopeRef, ThrottleError};
use smallvec::SmallVec;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tollgate_core::Nanos;

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

/// Settings of the waiting behaviour.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WaitSettings {
    pub(crate) max_wait: Option<Duration>,
    pub(crate) refuse_over_max_wait: bool,
    pub(crate) on_failure: OnFailure,
}

#[derive(Debug)]
struct Shared<St> {
    store: St,
    registry: Registry,
    queue: Mutex<Queue>,
    /// `queue.len()`, readable without the lock: the fast path skips the queue when it is zero.
    queued: AtomicUsize,
    next_id: AtomicU64,
    origin: Instant,
    settings: WaitSettings,
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
    ) -> Self {
        Limiter {
            shared: Arc::new(Shared {
                store,
                registry,
                queue: Mutex::new(Queue::new(tiers)),
                queued: AtomicUsize::new(0),
                next_id: AtomicU64::new(0),
                origin: Instant::now(),
                settings,
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.shared.store
    }

    fn nanos(&self, t: Instant) -> Nanos {
        Nanos::from(t.saturating_duration_since(self.shared.origin))
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.shared.queue.lock().unwrap_or_else(|e| e.into_inner())
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
        self.shared.registry.set(key.into(), &limits)?;
        self.wake_blocked();
        Ok(())
    }

    /// A snapshot of every scope the layer has seen, sorted by key.
    pub fn stats(&self) -> Vec<ScopeStats> {
        let now = self.nanos(Instant::now());
        self.shared
            .registry
            .all()
            .iter()
            .map(|r| self.snapshot(r, now))
            .collect()
    }

    /// A snapshot of one scope, if the layer has seen its key.
    pub fn scope_stats(&self, key: &str) -> Option<ScopeStats> {
        let now = self.nanos(Instant::now());
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

    fn wake_blocked(&self) {
        if self.shared.queued.load(Ordering::Acquire) > 0 {
            self.queue().wake_blocked();
        }
    }

    /// A ticket for a call with these scope keys, or the error that ends it at once.
    pub(crate) fn ticket(
        &self,
        keys: &crate::Scopes,
        cost: Cost,
        priority: Priority,
    ) -> Result<Ticket<St>, ThrottleError> {
        let resolved = self
            .shared
            .registry
            .resolve(keys)
            .map_err(ThrottleError::unknown_scope)?;
        if resolved.len() > 64 {
            return Err(ThrottleError::too_many_scopes(resolved.len()));
        }
        let (scopes, counters) = resolved.into_iter().map(|r| (r.scope, r.counters)).unzip();
        Ok(Ticket {
            limiter: self.clone(),
            id: self.shared.next_id.fetch_add(1, Ordering::Relaxed),
            generation: self.shared.registry.generation(),
            priority,
            scopes,
            counters,
            cost,
            arrived: None,
            enqueued: false,
            pending: None,
            sleep: None,
        })
    }
}

/// A call waiting for admission. Dropping it leaves the queue and lets the next call go.
pub(crate) struct Ticket<St: Store> {
    limiter: Limiter<St>,
    id: u64,
    /// The registry generation `scopes` were resolved at.
    generation: u64,
    priority: Priority,
    scopes: SmallVec<[ScopeRef; 4]>,
    counters: SmallVec<[Arc<ScopeCounters>; 4]>,
    cost: Cost,
    /// Set at the first poll.
    arrived: Option<Instant>,
    enqueued: bool,
    pending: Option<St::AcquireFuture>,
    /// Allocated only once the call has to wait.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<St: Store> std::fmt::Debug for Ticket<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("id", &self.id)
            .field("priority", &self.priority)
            .field("scopes", &self.scopes)
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
    fn deadline(&self, arrived: Instant) -> Option<Instant> {
        self.limiter.shared.settings.max_wait.map(|m| arrived + m)
    }

    /// Joins the back of its tier in the queue (once).
    fn enqueue(&mut self, q: &mut Queue) {
        if !self.enqueued {
            q.push(
                self.priority,
                self.id,
                self.scopes.iter().map(|s| s.id).collect(),
            );
            self.limiter.shared.queued.store(q.len(), Ordering::Release);
            self.enqueued = true;
            for c in &self.counters {
                c.enqueued();
            }
        }
    }

    /// Leaves the queue, admitted or not, and lets the calls behind move up.
    fn leave(&mut self, admitted: bool) {
        if self.enqueued {
            self.enqueued = false;
            let mut q = self.limiter.queue();
            q.remove(self.priority, self.id, admitted);
            self.limiter.shared.queued.store(q.len(), Ordering::Release);
            q.wake_eligible();
            drop(q);
            for c in &self.counters {
                c.dequeued();
            }
        }
    }

    fn refuse(&mut self, err: ThrottleError) -> Poll<Result<Permit<St>, ThrottleError>> {
        self.leave(false);
        for c in &self.counters {
            c.refused();
        }
        Poll::Ready(Err(err))
    }

    fn max_wait_error(&mut self, now: Instant, predicted: Option<Instant>) -> ThrottleError {
        let arrived = self.arrived.unwrap_or(now);
        ThrottleError::max_wait(
            self.limiter.shared.settings.max_wait.unwrap_or_default(),
            now - arrived,
            predicted.map(|p| p.saturating_duration_since(now)),
        )
    }

    /// Consults the queue: may this call try the store now?
    fn turn(&mut self, cx: &Context<'_>, now: Instant) -> Result<Turn, ThrottleError> {
        if !self.enqueued && self.limiter.shared.queued.load(Ordering::Acquire) == 0 {
            return Ok(Turn::Go);
        }
        let limiter = self.limiter.clone();
        let mut q = limiter.queue();
        self.enqueue(&mut q);
        // A call that sleeps until its capacity is due is polled when the time has come, or when
        // capacity came back early (a refund, a release, new limits): either way it tries again,
        // if it is its turn. Otherwise it waits to be woken when its turn comes.
        if q.eligible(self.id) {
            q.set_state(self.priority, self.id, WaitState::Ready);
            return Ok(Turn::Go);
        }
        q.set_state(self.priority, self.id, WaitState::Gated);
        let settings = limiter.shared.settings;
        if let (true, Some(max)) = (settings.refuse_over_max_wait, settings.max_wait) {
            let due = q.due_ahead(self.id);
            let arrived = self.arrived.unwrap_or(now);
            if due.is_some_and(|d| d > arrived + max) {
                drop(q);
                return Err(self.max_wait_error(now, due));
            }
        }
        q.set_waker(self.priority, self.id, cx.waker());
        Ok(Turn::Wait)
    }

    /// The call is admitted: leave the queue, count it, hand out the permit.
    fn admitted(
        &mut self,
        now: Instant,
        reservation: Option<St::Reservation>,
    ) -> Poll<Result<Permit<St>, ThrottleError>> {
        let waited = self.arrived.map(|a| now - a).filter(|w| !w.is_zero());
        self.leave(true);
        for c in &self.counters {
            c.admitted(waited);
        }
        Poll::Ready(Ok(Permit {
            limiter: self.limiter.clone(),
            reservation,
            charged: self.cost,
            on_failure: self.limiter.shared.settings.on_failure,
        }))
    }

    /// Handles the store's decision; `Pending` when the call must wait.
    fn decided(
        &mut self,
        cx: &mut Context<'_>,
        now: Instant,
        decision: Decision<St::Reservation>,
    ) -> Poll<Result<Permit<St>, ThrottleError>> {
        match decision {
            Decision::Admitted(reservation) => self.admitted(now, Some(reservation)),
            Decision::Never(n) => {
                let scope = self.scopes[n.scope].key.clone();
                self.refuse(ThrottleError::never_fits(
                    scope,
                    n.dimension,
                    n.requested,
                    n.capacity,
                ))
            }
            Decision::Wait { wait, blocked } => {
                let until = wait.map(|w| now + w);
                let settings = self.limiter.shared.settings;
                let arrived = self.arrived.unwrap_or(now);
                if let (true, Some(max), Some(u)) =
                    (settings.refuse_over_max_wait, settings.max_wait, until)
                {
                    if u > arrived + max {
                        let err = self.max_wait_error(now, until);
                        return self.refuse(err);
                    }
                }
                let scopes = self
                    .scopes
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| blocked & (1 << i) != 0)
                    .map(|(_, s)| s.id)
                    .collect();
                let limiter = self.limiter.clone();
                let mut q = limiter.queue();
                self.enqueue(&mut q);
                q.set_state(self.priority, self.id, WaitState::Blocked { scopes, until });
                q.set_waker(self.priority, self.id, cx.waker());
                // Calls behind that share none of the refusing scopes may go now.
                q.wake_eligible();
                drop(q);
                self.arm(cx, until)
            }
        }
    }

    /// Sleeps until `until` or the deadline, whichever is first; `Pending` unless it has passed.
    fn arm(
        &mut self,
        cx: &mut Context<'_>,
        until: Option<Instant>,
    ) -> Poll<Result<Permit<St>, ThrottleError>> {
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
    pub(crate) fn poll_acquire(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Permit<St>, ThrottleError>> {
        loop {
            if let Some(fut) = &mut self.pending {
                let decision = ready!(Pin::new(fut).poll(cx));
                self.pending = None;
                let now = Instant::now();
                match decision {
                    Ok(d) => match self.decided(cx, now, d) {
                        Poll::Pending => return Poll::Pending,
                        ready => return ready,
                    },
                    Err(e) => return self.refuse(ThrottleError::store(e)),
                }
            }
            let now = Instant::now();
            let arrived = *self.arrived.get_or_insert(now);
            if let Some(d) = self.deadline(arrived) {
                if now >= d {
                    let predicted = match self.limiter.queue().state(self.priority, self.id) {
                        Some(WaitState::Blocked { until, .. }) => *until,
                        _ => None,
                    };
                    let err = self.max_wait_error(now, predicted);
                    return self.refuse(err);
                }
            }
            match self.turn(cx, now) {
                Err(e) => return self.refuse(e),
                Ok(Turn::Wait) => return self.arm(cx, None),
                Ok(Turn::Go) => {
                    if self.scopes.is_empty() {
                        return self.admitted(now, None);
                    }
                    let registry = &self.limiter.shared.registry;
                    if registry.generation() != self.generation {
                        // Limits changed while the call waited.
                        self.generation = registry.generation();
                        registry.refresh(&mut self.scopes);
                    }
                    let call = Acquire {
                        now: self.limiter.nanos(now),
                        scopes: &self.scopes,
                        cost: self.cost,
                    };
                    self.pending = Some(self.limiter.shared.store.acquire(&call));
                }
            }
        }
    }
}

impl<St: Store> Drop for Ticket<St> {
    fn drop(&mut self) {
        self.leave(false);
    }
}

/// An admitted call. Dropping it without [`finish`](Permit::finish) settles it as failed.
pub(crate) struct Permit<St: Store> {
    limiter: Limiter<St>,
    reservation: Option<St::Reservation>,
    charged: Cost,
    on_failure: OnFailure,
}

impl<St: Store> std::fmt::Debug for Permit<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("charged", &self.charged)
            .finish_non_exhaustive()
    }
}

impl<St: Store> Permit<St> {
    /// Settles the call with its real usage (`None`: keep the estimate).
    pub(crate) fn finish(mut self, usage: Option<Cost>) {
        let actual = usage.map_or(self.charged, |u| Cost {
            requests: self.charged.requests,
            ..u
        });
        self.settle(actual);
    }

    fn settle(&mut self, actual: Cost) {
        if let Some(r) = self.reservation.take() {
            let now = self.limiter.nanos(Instant::now());
            self.limiter
                .shared
                .store
                .settle(r, Settlement { now, actual });
            self.limiter.wake_blocked();
        }
    }
}

impl<St: Store> Drop for Permit<St> {
    fn drop(&mut self) {
        let actual = self.on_failure.actual(self.charged);
        self.settle(actual);
    }
}
