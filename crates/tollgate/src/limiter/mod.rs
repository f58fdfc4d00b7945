//! [`Limiter`]: the state every clone of a layer shares, and its public API (stats, runtime
//! limit changes, pauses, cooldowns).
//!
//! One call's walk through the files of this folder, in order: its [`lane`] (its scopes, resolved
//! once and cached), [`wait`] (money, queue, store, timer), [`permit`] (the admitted call), then,
//! after the inner service, [`settle`].

mod lane;
mod permit;
mod settle;
mod shared;
mod wait;

pub(crate) use lane::{Lane, LaneCache};
pub(crate) use permit::Admitted;
pub use permit::Permit;
pub use settle::OnFailure;
pub(crate) use shared::{Shared, WaitSettings};
pub(crate) use wait::{admit_at_once, Waiting};

use crate::clock;
use crate::feedback::adaptive::Adaptive;
use crate::spend::SpendStats;
use crate::stats::{self, ScopeStats};
use crate::{ConfigError, ScopeKey, ScopeLimits, Store};
use std::sync::Arc;
use std::time::Duration;

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

impl<St> Limiter<St> {
    /// The limiter of the shared state `shared`.
    pub(crate) fn new(shared: Shared<St>) -> Self {
        Limiter {
            shared: Arc::new(shared),
        }
    }

    /// The shared state.
    pub(crate) fn shared(&self) -> &Arc<Shared<St>> {
        &self.shared
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.shared.store
    }
}

impl<St: Store> Limiter<St> {
    /// Pauses every call of the scope `key` (an exact key, budgeted or not) until
    /// [`resume`](Limiter::resume): new calls are refused or held as the layer's
    /// [`OnCap`](crate::spend::OnCap) says; calls already admitted go on. Needs the money side of the layer (a budget,
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
        let now = self.shared.clock.unix_secs(clock::now());
        spend.spent(&ScopeKey::from(key.to_owned()), now)
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
        let shared = &self.shared;
        match (&shared.adaptive, &shared.settings.provider_scope) {
            (Some(adaptive), Some(provider)) if *provider == key => {
                // The new limits become the adaptive mode's base; it starts again from them.
                let mut a = adaptive.lock().unwrap_or_else(|e| e.into_inner());
                let next = Adaptive::new(limits, a.headroom, a.rate.floor() / a.ceiling)?;
                shared.registry.set(key, &next.scaled(1.0))?;
                *a = next;
            }
            _ => shared.registry.set(key, &limits)?,
        }
        shared.waiters.gave_back();
        Ok(())
    }

    /// A snapshot of every scope the layer has seen, sorted by key.
    pub fn stats(&self) -> Vec<ScopeStats> {
        let now = self.shared.clock.elapsed();
        let store = &self.shared.store;
        (self.shared.registry.all().iter())
            .map(|r| stats::snapshot(r, store.state(&r.scope, now)))
            .collect()
    }

    /// A snapshot of one scope, if the layer has seen its key.
    pub fn scope_stats(&self, key: &str) -> Option<ScopeStats> {
        let now = self.shared.clock.elapsed();
        let r = self.shared.registry.get(key)?;
        Some(stats::snapshot(&r, self.shared.store.state(&r.scope, now)))
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
        let shared = &self.shared;
        let provider = shared.settings.provider_scope.as_ref();
        if let Some(r) = provider.and_then(|k| shared.registry.get(k.as_str())) {
            let delay = delay.min(shared.settings.max_provider_delay);
            crate::feedback::pause(shared, &r.scope, clock::now(), delay);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Cost, Dimension, Limit, ScopeKey, ScopeLimits, Scopes, ThrottleLayer};
    use smallvec::smallvec;
    use std::convert::Infallible;
    use std::time::Duration;
    use tower::{service_fn, Layer, Service, ServiceExt};

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
            let before = crate::clock::reads();
            rt.block_on(echo_all(&mut svc, usage));
            crate::clock::reads() - before
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
            let _queue = limiter.shared.waiters.lock();
            let _registry = limiter.shared.registry.hold_lock();
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
