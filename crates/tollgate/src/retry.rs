//! [`RetryPolicy`]: jittered retry that honours the provider's retry delay and spends a shared
//! retry budget, for tower's `Retry` middleware.
//!
//! Put the retry *outside* the throttle in a `ServiceBuilder`, so that every retry re-enters the
//! throttle: it is paced, queued and counted like any call, and it waits out a shared cooldown.
//!
//! ```
//! use tollgate::feedback::HttpClassifier;
//! use tollgate::retry::RetryPolicy;
//! use tollgate::{BoxError, Dimension, Limit, ScopeLimits, ThrottleLayer};
//! use tollgate_core::{rand_core::SeedableRng, Backoff, RetryBudget};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! let throttle = ThrottleLayer::builder()
//!     .scope("global", ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, 50)))
//!     .classify(HttpClassifier::new())
//!     .build()?;
//! let retry = RetryPolicy::new(
//!     HttpClassifier::new(),
//!     Backoff::default(),
//!     RetryBudget::default(),
//!     rand_chacha::ChaCha8Rng::seed_from_u64(7),
//! );
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let counter = calls.clone();
//! let provider = tower::service_fn(move |_: ()| {
//!     // The first answer is a 429 with retry-after: 2; the retry succeeds.
//!     let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!     async move {
//!         let status = if n == 0 { 429 } else { 200 };
//!         Ok::<_, BoxError>(http::Response::builder().status(status).header("retry-after", "2").body(()).unwrap())
//!     }
//! });
//! let client = ServiceBuilder::new().layer(retry.into_layer()).layer(throttle).service(provider);
//! let start = tokio::time::Instant::now();
//! let res = client.oneshot(()).await?;
//! assert_eq!(res.status(), 200);
//! assert_eq!(start.elapsed().as_secs(), 2); // the provider's delay, honoured
//! # Ok(())
//! # }
//! ```

use crate::feedback::{Classify, Outcome};
use crate::{BoxError, ThrottleError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Sleep;
use tollgate_core::rand_core::Rng;
use tollgate_core::{Backoff, BackoffState, NextRetry, RetryBudget, RetryKind};

/// Decides whether and when to retry a call (a tower [`Policy`](tower::retry::Policy)).
///
/// * Success, fatal answers, spend-cap 429s ([`Outcome::SpendCapReached`]) and the throttle's own
///   refusals ([`ThrottleError`]: never fits, waited too long) are never retried.
/// * Rate-limited, overloaded and transient answers are retried while the call has retries left
///   and the shared [`RetryBudget`] pays for it: a throttled or transient retry costs 5 of its 500
///   tokens by default and every success puts 1 back, so under 100 % failure at most
///   `capacity / cost` retries happen in all (100 by default), however many calls fail.
/// * The delay is the provider's retry delay when it gave one (up to
///   [`honour_retry_after_up_to`](Self::honour_retry_after_up_to), 60 s by default; longer and
///   the call gives up), else the [`Backoff`]'s jittered delay.
///
/// The budget and the random generator are shared by every clone; each call keeps its own
/// attempt count.
#[derive(Debug)]
pub struct RetryPolicy<C, R> {
    classify: C,
    state: BackoffState,
    budget: Arc<Mutex<RetryBudget>>,
    rng: Arc<Mutex<R>>,
    honour_cap: Duration,
}

impl<C: Clone, R> Clone for RetryPolicy<C, R> {
    fn clone(&self) -> Self {
        RetryPolicy {
            classify: self.classify.clone(),
            state: self.state,
            budget: self.budget.clone(),
            rng: self.rng.clone(),
            honour_cap: self.honour_cap,
        }
    }
}

impl<C, R> RetryPolicy<C, R> {
    /// A policy that classifies answers with `classify`, waits by `backoff`, spends `budget`, and
    /// draws jitter from `rng` (seed it for reproducible runs).
    pub fn new(classify: C, backoff: Backoff, budget: RetryBudget, rng: R) -> Self {
        RetryPolicy {
            classify,
            state: backoff.start(),
            budget: Arc::new(Mutex::new(budget)),
            rng: Arc::new(Mutex::new(rng)),
            honour_cap: Duration::from_secs(60),
        }
    }

    /// The longest provider retry delay that is honoured; a call asked to wait longer gives up.
    #[must_use]
    pub fn honour_retry_after_up_to(mut self, cap: Duration) -> Self {
        self.honour_cap = cap;
        self
    }

    /// The retry budget as it stands now (shared by every clone).
    pub fn budget(&self) -> RetryBudget {
        *self.budget.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The policy as a layer for `ServiceBuilder`.
    pub fn into_layer(self) -> tower::retry::RetryLayer<Self> {
        tower::retry::RetryLayer::new(self)
    }
}

impl<Req, Res, C, R> tower::retry::Policy<Req, Res, BoxError> for RetryPolicy<C, R>
where
    Req: Clone,
    C: Classify<Res, BoxError>,
    R: Rng,
{
    type Future = Sleep;

    fn retry(&mut self, _req: &mut Req, result: &mut Result<Res, BoxError>) -> Option<Sleep> {
        if let Err(e) = result {
            if e.downcast_ref::<ThrottleError>().is_some() {
                return None;
            }
        }
        let outcome = self.classify.outcome(result.as_ref());
        let mut budget = self.budget.lock().unwrap_or_else(|e| e.into_inner());
        let kind = match outcome {
            Outcome::Success => {
                budget.deposit_success();
                return None;
            }
            Outcome::Fatal | Outcome::SpendCapReached => return None,
            Outcome::RateLimited { .. } | Outcome::Overloaded { .. } => RetryKind::Throttle,
            Outcome::Transient { .. } => RetryKind::Transient,
        };
        if self.state.remaining() == 0 || !budget.try_withdraw(kind) {
            return None;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let next = self
            .state
            .next_delay_after(outcome.retry_after(), self.honour_cap, &mut *rng);
        match next {
            NextRetry::Provider(d) | NextRetry::Backoff(d) => Some(tokio::time::sleep(d)),
            NextRetry::Exhausted | NextRetry::TooLong(_) => {
                budget.refund(kind);
                None
            }
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}
