//! The pure algorithms of tollgate: no tokio, no I/O, no clock. Time is passed in as [`Nanos`].
//!
//! * [`Limit`] → [`Gcra`]: a rate limit (requests, input, output or total tokens per period) as a
//!   weighted GCRA bucket with a burst, a headroom, refunds and debt.
//! * [`ScopeLimits`] → [`CompiledScope`] + [`ScopeState`]: everything one scope limits.
//! * [`admit`] / [`settle`] / [`release`]: all-or-nothing admission of one call across all of its
//!   scopes, then reconciliation against the real usage; [`admit_atomic`] / [`settle_atomic`] /
//!   [`release_atomic`]: the same over an [`AtomicScopeState`], by compare-and-swap, without a lock.
//! * [`ConfigError`]: every rule a configuration must follow, checked when it is compiled.
//! * Backoff and retry: [`Backoff`] (full, equal and decorrelated jitter, the SDKs' preset),
//!   [`RetryBudget`] (the AWS retry quota), [`AdaptiveRate`] (the AWS SDKs' CUBIC rate),
//!   [`AimdRate`] (the layer's adaptive rate, its constants in the provider's period) and
//!   [`RefillEstimate`] (the rate a limit really refills at, from `remaining` and `reset`).
//! * Money: [`Micros`], [`Price`], [`PriceTable`], [`Budget`] and [`BudgetState`] (reserve, then
//!   settle, against a cap per hour, day or month at a UTC offset, with alerts at thresholds).
//!
//! The tower layer (`tollgate`) wraps these in a store, a fair queue and a service; a Redis store
//! evaluates the same rules inside Redis.
//!
//! ```
//! use tollgate_core::{admit, settle, Admission, Cost, Dimension, Limit, Nanos, ScopeLimits};
//!
//! // 10,000 output tokens a minute.
//! let scope = ScopeLimits::new().limit(Limit::per_minute(Dimension::OutputTokens, 10_000)).compile()?;
//! let mut state = scope.new_state();
//! let now = Nanos::ZERO;
//!
//! // Reserve max_tokens = 8,000 ...
//! let estimate = Cost::request().with_output_tokens(8_000);
//! assert_eq!(admit(now, estimate, &mut [(&scope, &mut state)]), Admission::Admitted);
//! // ... the call used 1,000: 7,000 go back.
//! settle(now, estimate, Cost::request().with_output_tokens(1_000), &mut [(&scope, &mut state)]);
//! assert_eq!(scope.available(&state, now), vec![9_000.0]);
//! # Ok::<(), tollgate_core::ConfigError>(())
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

mod adaptive;
mod aimd;
mod atomic;
mod backoff;
mod budget;
mod cost;
mod error;
mod limit;
mod nanos;
mod refill;
mod retry_budget;
mod scope;
mod throttled;

pub use adaptive::{AdaptiveRate, MeasuredRate};
pub use aimd::AimdRate;
pub use atomic::{
    admit_atomic, release_atomic, settle_atomic, AtomicScopeState, Retired, ScopeCell, Stranded,
};
pub use backoff::{Backoff, BackoffBuilder, BackoffState, Jitter, NextRetry};
pub use budget::{
    release_budgets, reserve_budgets, settle_budgets, Alert, Budget, BudgetBuilder,
    BudgetExhausted, BudgetState, Micros, Price, PriceMatch, PriceTable, Reservation, TokenUsage,
    UnknownModel, UnknownModelError, Window, WindowClock,
};
pub use cost::{Cost, Dimension};
pub use error::{ConfigError, Rule};
pub use limit::{Gcra, Limit};
pub use nanos::Nanos;
pub use rand_core;
pub use refill::RefillEstimate;
pub use retry_budget::{RetryBudget, RetryBudgetBuilder, RetryKind};
pub use scope::{
    admit, release, settle, Admission, CompiledScope, NeverFits, ScopeLimits, ScopeState,
};
pub use throttled::ThrottleRefill;
