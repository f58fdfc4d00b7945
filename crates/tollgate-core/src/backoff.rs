//! [`Backoff`]: how long to wait before each retry, with the jitter formulas of the AWS
//! Architecture Blog and the official LLM SDKs, and [`BackoffState`]: one call's progress through
//! them.

use crate::{ConfigError, Rule};
use rand_core::Rng;
use std::time::Duration;

/// How a [`Backoff`] spreads its delays. See [`Backoff`] for the formulas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Jitter {
    /// No jitter: `min(cap, base·2^attempt)`. Clients that failed together retry together; the AWS
    /// blog's simulation shows it losing on both work and time. For comparisons only.
    None,
    /// Full jitter: `U(0, min(cap, base·2^attempt))`. The AWS blog's recommendation: the least
    /// work for the server.
    Full,
    /// Equal jitter: `v/2 + U(0, v/2)` with `v = min(cap, base·2^attempt)`. Never waits less than
    /// half the exponential delay.
    Equal,
    /// Decorrelated jitter: `min(cap, U(base, 3·previous))`, `previous` being the delay before
    /// (`base` for the first). Does not use the attempt number.
    Decorrelated,
    /// The official OpenAI and Anthropic SDKs' jitter: `v·(1 − 0.25·U(0, 1))`, a 0–25 % reduction
    /// of `v = min(cap, base·2^attempt)`. Used by [`Backoff::sdk_default`].
    Sdk,
}

/// A validated backoff schedule: a [`Jitter`], a base delay, a cap and how many retries it allows.
/// `Copy` and cheap: start one [`BackoffState`] per call with [`start`](Backoff::start).
///
/// Attempts count retries from zero: the first retry waits (before jitter) `base`, the second
/// `2·base`, and so on up to `cap`. A call is sent at most `max_retries + 1` times.
///
/// Presets: [`sdk_default`](Backoff::sdk_default) (what the OpenAI and Anthropic SDKs do) and
/// [`aws_standard`](Backoff::aws_standard) (the AWS SDKs' "standard" retry mode).
///
/// Every random draw comes from a generator the caller passes in (any [`rand_core::Rng`]), never
/// from a global one, so a seeded simulation replays the same delays byte for byte. A jittered
/// delay draws exactly one `u64`; [`Jitter::None`] and a honoured provider delay draw nothing.
///
/// With `v = min(cap, base·2^attempt)` (saturating: no attempt number overflows) and `U(a, b)` a
/// uniform draw at nanosecond resolution, both ends included:
///
/// | [`Jitter`] | delay | source |
/// |---|---|---|
/// | [`None`](Jitter::None) | `v` | AWS blog "Exponential Backoff And Jitter" (2015), "Exponential" |
/// | [`Full`](Jitter::Full) | `U(0, v)` | same, "Full Jitter" |
/// | [`Equal`](Jitter::Equal) | `v/2 + U(0, v/2)` | same, "Equal Jitter" |
/// | [`Decorrelated`](Jitter::Decorrelated) | `min(cap, U(base, 3·previous))`, `previous` starting at `base` | same, "Decorrelated Jitter" |
/// | [`Sdk`](Jitter::Sdk) | `v·(1 − 0.25·U(0, 1))` | openai-python / anthropic-sdk-python `_base_client.py` |
///
/// ```
/// use rand_chacha::{rand_core::SeedableRng, ChaCha8Rng};
/// use std::time::Duration;
/// use tollgate_core::{Backoff, Jitter};
///
/// let backoff = Backoff::builder()
///     .jitter(Jitter::Full)
///     .base(Duration::from_millis(100))
///     .cap(Duration::from_secs(10))
///     .max_retries(5)
///     .build()?;
/// let mut rng = ChaCha8Rng::seed_from_u64(7);
/// let mut state = backoff.start();
/// let mut n = 0;
/// while let Some(delay) = state.next_delay(&mut rng) {
///     // Full jitter: somewhere in [0, 100 ms · 2^n].
///     assert!(delay <= Duration::from_millis(100) * 2u32.pow(n));
///     n += 1;
/// }
/// assert_eq!(n, 5);
/// # Ok::<(), tollgate_core::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Backoff {
    jitter: Jitter,
    base: u64,
    cap: u64,
    max_retries: u32,
}

/// Builds a [`Backoff`]; every rule is checked once, in [`build`](BackoffBuilder::build).
///
/// Defaults: [`Jitter::Full`], base 500 ms, cap 8 s, 2 retries (the SDKs' base, cap and retry
/// count, with the AWS blog's recommended jitter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use]
pub struct BackoffBuilder {
    jitter: Jitter,
    base: Duration,
    cap: Duration,
    max_retries: u32,
}

/// One call's progress through a [`Backoff`]: how many retries it has had and the previous delay
/// (for [`Jitter::Decorrelated`]).
///
/// ```
/// use rand_chacha::{rand_core::SeedableRng, ChaCha8Rng};
/// use std::time::Duration;
/// use tollgate_core::Backoff;
///
/// let mut rng = ChaCha8Rng::seed_from_u64(1);
/// let mut state = Backoff::sdk_default().start();
/// let first = state.next_delay(&mut rng).unwrap(); // in [375 ms, 500 ms]
/// assert!(first >= Duration::from_millis(375) && first <= Duration::from_millis(500));
/// assert!(state.next_delay(&mut rng).is_some()); // in [750 ms, 1 s]
/// assert_eq!(state.next_delay(&mut rng), None); // two retries, then give up
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BackoffState {
    backoff: Backoff,
    attempt: u32,
    previous: u64,
}

/// What [`BackoffState::next_delay_after`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use]
pub enum NextRetry {
    /// Retry after the provider's own delay (`retry-after` and friends), used verbatim.
    Provider(Duration),
    /// Retry after this computed backoff (the provider gave no delay).
    Backoff(Duration),
    /// Every retry has been used: give up.
    Exhausted,
    /// The provider asked to wait longer than the caller is willing to (`honour_cap`): give up, as
    /// openai-python does above 120 s. Carries the provider's delay. No retry was used.
    TooLong(Duration),
}

// ===== impl Backoff =====

impl Backoff {
    /// A builder with the defaults: [`Jitter::Full`], base 500 ms, cap 8 s, 2 retries.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_core::{Backoff, Jitter};
    ///
    /// let b = Backoff::builder().build()?;
    /// assert_eq!((b.jitter(), b.base(), b.cap(), b.max_retries()),
    ///            (Jitter::Full, Duration::from_millis(500), Duration::from_secs(8), 2));
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub const fn builder() -> BackoffBuilder {
        BackoffBuilder {
            jitter: Jitter::Full,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(8),
            max_retries: 2,
        }
    }

    /// The official OpenAI and Anthropic Python SDKs' retry schedule: `min(0.5 s·2^k, 8 s)·(1 −
    /// 0.25·U)` for retry `k = 0, 1, …`, 2 retries (`INITIAL_RETRY_DELAY = 0.5`,
    /// `MAX_RETRY_DELAY = 8`, `DEFAULT_MAX_RETRIES = 2` in `_constants.py` / `_base_client.py` of
    /// openai-python and anthropic-sdk-python). Waits are in [375 ms, 500 ms] then [750 ms, 1 s]:
    /// at most 1.5 s in all.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_core::{Backoff, Jitter};
    ///
    /// let sdk = Backoff::sdk_default();
    /// assert_eq!(sdk.jitter(), Jitter::Sdk);
    /// assert_eq!(sdk.max_retries(), 2);
    /// assert_eq!(sdk.cap(), Duration::from_secs(8));
    /// ```
    pub const fn sdk_default() -> Backoff {
        Backoff {
            jitter: Jitter::Sdk,
            base: 500_000_000,
            cap: 8_000_000_000,
            max_retries: 2,
        }
    }

    /// The AWS SDKs' "standard" retry mode: `U(0, 1)·min(2^(a−1), 20)` s for attempt `a ≥ 1`,
    /// 3 attempts (2 retries); that is full jitter, base 1 s, cap 20 s (AWS SDKs and Tools
    /// Reference Guide, "Retry behavior"; botocore `retries/standard.py`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_core::{Backoff, Jitter};
    ///
    /// let aws = Backoff::aws_standard();
    /// assert_eq!((aws.jitter(), aws.base(), aws.cap(), aws.max_retries()),
    ///            (Jitter::Full, Duration::from_secs(1), Duration::from_secs(20), 2));
    /// ```
    pub const fn aws_standard() -> Backoff {
        Backoff {
            jitter: Jitter::Full,
            base: 1_000_000_000,
            cap: 20_000_000_000,
            max_retries: 2,
        }
    }

    /// The jitter.
    pub const fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// The base delay: the exponential delay of the first retry.
    pub const fn base(&self) -> Duration {
        Duration::from_nanos(self.base)
    }

    /// The cap: no delay is longer.
    pub const fn cap(&self) -> Duration {
        Duration::from_nanos(self.cap)
    }

    /// How many retries a [`BackoffState`] hands out before [`next_delay`](BackoffState::next_delay)
    /// returns `None`.
    pub const fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// A fresh [`BackoffState`] for one call: no retry yet, previous delay `base`.
    pub const fn start(&self) -> BackoffState {
        BackoffState {
            backoff: *self,
            attempt: 0,
            previous: self.base,
        }
    }

    /// The exponential delay of retry `attempt` (counted from 0) before jitter:
    /// `min(cap, base·2^attempt)`. Saturates: any attempt number, up to `u32::MAX`, gives at most
    /// `cap`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_core::Backoff;
    ///
    /// let sdk = Backoff::sdk_default();
    /// assert_eq!(sdk.exponential(0), Duration::from_millis(500));
    /// assert_eq!(sdk.exponential(3), Duration::from_secs(4));
    /// assert_eq!(sdk.exponential(u32::MAX), Duration::from_secs(8));
    /// ```
    pub fn exponential(&self, attempt: u32) -> Duration {
        Duration::from_nanos(self.exponential_nanos(attempt))
    }

    fn exponential_nanos(&self, attempt: u32) -> u64 {
        let factor = 1u64.checked_shl(attempt).unwrap_or(u64::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay of retry `attempt` (counted from 0), `previous` being the delay before it (only
    /// [`Jitter::Decorrelated`] reads it; pass [`base`](Backoff::base) for the first retry). This
    /// is the pure formula behind [`BackoffState::next_delay`], which keeps `attempt` and
    /// `previous` for you. Never panics, for any `attempt`; the result is never above `cap`.
    ///
    /// ```
    /// use rand_chacha::{rand_core::SeedableRng, ChaCha8Rng};
    /// use std::time::Duration;
    /// use tollgate_core::{Backoff, Jitter};
    ///
    /// let b = Backoff::builder().jitter(Jitter::Equal).base(Duration::from_secs(1))
    ///     .cap(Duration::from_secs(60)).build()?;
    /// let d = b.delay(2, b.base(), &mut ChaCha8Rng::seed_from_u64(0));
    /// assert!(d >= Duration::from_secs(2) && d <= Duration::from_secs(4)); // v = 4 s
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn delay<R: Rng + ?Sized>(
        &self,
        attempt: u32,
        previous: Duration,
        rng: &mut R,
    ) -> Duration {
        Duration::from_nanos(self.delay_nanos(attempt, nanos(previous), rng))
    }

    fn delay_nanos<R: Rng + ?Sized>(&self, attempt: u32, previous: u64, rng: &mut R) -> u64 {
        match self.jitter {
            Jitter::None => self.exponential_nanos(attempt),
            Jitter::Full => uniform(rng, 0, self.exponential_nanos(attempt)),
            Jitter::Equal => {
                let v = self.exponential_nanos(attempt);
                let half = v / 2;
                // `half + U(0, v - half)`: the upper end is exactly `v`, also for odd `v`.
                uniform(rng, half, v)
            }
            Jitter::Decorrelated => {
                // `previous` below `base` (only through `delay`) is read as `base`, so the range
                // is never empty.
                let high = previous.max(self.base).saturating_mul(3);
                uniform(rng, self.base, high).min(self.cap)
            }
            Jitter::Sdk => {
                let v = self.exponential_nanos(attempt);
                // `v·(1 − 0.25·U)` at nanosecond resolution: `v − U(0, v/4)`.
                uniform(rng, v - v / 4, v)
            }
        }
    }
}

impl Default for Backoff {
    /// [`Backoff::sdk_default`].
    fn default() -> Self {
        Backoff::sdk_default()
    }
}

// ===== impl BackoffBuilder =====

impl BackoffBuilder {
    /// The jitter (default [`Jitter::Full`]).
    ///
    /// ```
    /// use tollgate_core::{Backoff, Jitter};
    /// let b = Backoff::builder().jitter(Jitter::Decorrelated).build()?;
    /// assert_eq!(b.jitter(), Jitter::Decorrelated);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub const fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The base delay (default 500 ms); must be positive. Durations beyond `u64::MAX` nanoseconds
    /// (about 584 years) are read as that.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_core::Backoff;
    /// let b = Backoff::builder().base(Duration::from_millis(50)).build()?;
    /// assert_eq!(b.base(), Duration::from_millis(50));
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub const fn base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// The cap (default 8 s); must be at least the base.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_core::Backoff;
    /// let b = Backoff::builder().cap(Duration::from_secs(60)).build()?;
    /// assert_eq!(b.cap(), Duration::from_secs(60));
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub const fn cap(mut self, cap: Duration) -> Self {
        self.cap = cap;
        self
    }

    /// How many retries (default 2); at least 1. To not retry at all, configure no backoff.
    ///
    /// ```
    /// use tollgate_core::Backoff;
    /// let b = Backoff::builder().max_retries(5).build()?;
    /// assert_eq!(b.max_retries(), 5);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub const fn max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// Checks every rule and builds the [`Backoff`].
    ///
    /// # Errors
    /// [`Rule::ZeroDuration`] (a base of zero), [`Rule::CapBelowBase`], [`Rule::ZeroRetries`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_core::{Backoff, Rule};
    ///
    /// let err = Backoff::builder().base(Duration::from_secs(10)).cap(Duration::from_secs(1))
    ///     .build().unwrap_err();
    /// assert_eq!(err.rule(), Rule::CapBelowBase);
    /// ```
    pub fn build(self) -> Result<Backoff, ConfigError> {
        if self.base.is_zero() {
            return Err(ConfigError::new(
                Rule::ZeroDuration,
                "a backoff's base delay must be positive",
            ));
        }
        if self.cap < self.base {
            return Err(ConfigError::new(
                Rule::CapBelowBase,
                format!(
                    "a backoff's cap ({:?}) is below its base delay ({:?})",
                    self.cap, self.base
                ),
            ));
        }
        if self.max_retries == 0 {
            return Err(ConfigError::new(
                Rule::ZeroRetries,
                "a backoff must allow at least one retry (configure no backoff to never retry)",
            ));
        }
        Ok(Backoff {
            jitter: self.jitter,
            base: nanos(self.base),
            cap: nanos(self.cap),
            max_retries: self.max_retries,
        })
    }
}

// ===== impl BackoffState =====

impl BackoffState {
    /// The schedule this state follows.
    pub const fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// How many retries have been handed out.
    pub const fn retries(&self) -> u32 {
        self.attempt
    }

    /// How many retries are left.
    pub const fn remaining(&self) -> u32 {
        self.backoff.max_retries.saturating_sub(self.attempt)
    }

    /// Back to the start: no retry yet, previous delay `base` (e.g. after a success, for a state
    /// kept across calls).
    pub fn reset(&mut self) {
        *self = self.backoff.start();
    }

    /// The delay before the next retry, or `None` once [`max_retries`](Backoff::max_retries) have
    /// been handed out (and from then on).
    ///
    /// ```
    /// use rand_chacha::{rand_core::SeedableRng, ChaCha8Rng};
    /// use std::time::Duration;
    /// use tollgate_core::{Backoff, Jitter};
    ///
    /// let b = Backoff::builder().jitter(Jitter::None).base(Duration::from_secs(1))
    ///     .cap(Duration::from_secs(3)).max_retries(3).build()?;
    /// let mut state = b.start();
    /// let mut rng = ChaCha8Rng::seed_from_u64(0);
    /// let delays: Vec<_> = std::iter::from_fn(|| state.next_delay(&mut rng)).collect();
    /// assert_eq!(delays, [1, 2, 3].map(Duration::from_secs)); // 1, 2, min(3, 4)
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn next_delay<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Option<Duration> {
        if self.attempt >= self.backoff.max_retries {
            return None;
        }
        let d = self.backoff.delay_nanos(self.attempt, self.previous, rng);
        self.attempt += 1;
        self.previous = d;
        Some(Duration::from_nanos(d))
    }

    /// The next retry when the provider may have said how long to wait (`retry-after-ms`,
    /// `retry-after`, a body's `retryDelay`, parsed by the caller), in this order:
    ///
    /// 1. no retry left → [`NextRetry::Exhausted`];
    /// 2. the provider's delay is above `honour_cap` → [`NextRetry::TooLong`], and no retry is used
    ///    (the caller gives up, as openai-python does above 120 s; or it may call
    ///    [`next_delay`](Self::next_delay) instead, as anthropic-sdk-python does above 60 s);
    /// 3. the provider gave a delay → [`NextRetry::Provider`] with that delay verbatim (zero
    ///    included), even above this backoff's cap. Draws nothing from `rng`. For
    ///    [`Jitter::Decorrelated`], the next "previous delay" is the provider's delay clamped to
    ///    `[base, cap]`;
    /// 4. otherwise → [`NextRetry::Backoff`] with [`next_delay`](Self::next_delay)'s delay.
    ///
    /// Cases 3 and 4 use one retry.
    ///
    /// ```
    /// use rand_chacha::{rand_core::SeedableRng, ChaCha8Rng};
    /// use std::time::Duration;
    /// use tollgate_core::{Backoff, NextRetry};
    ///
    /// let mut rng = ChaCha8Rng::seed_from_u64(0);
    /// let mut state = Backoff::sdk_default().start();
    /// let cap = Duration::from_secs(120); // openai-python's limit
    ///
    /// let wait = state.next_delay_after(Some(Duration::from_secs(300)), cap, &mut rng);
    /// assert_eq!(wait, NextRetry::TooLong(Duration::from_secs(300)));
    /// assert_eq!(state.retries(), 0);
    ///
    /// let wait = state.next_delay_after(Some(Duration::from_secs(20)), cap, &mut rng);
    /// assert_eq!(wait, NextRetry::Provider(Duration::from_secs(20)));
    /// assert!(matches!(state.next_delay_after(None, cap, &mut rng), NextRetry::Backoff(_)));
    /// assert_eq!(state.next_delay_after(None, cap, &mut rng), NextRetry::Exhausted);
    /// ```
    pub fn next_delay_after<R: Rng + ?Sized>(
        &mut self,
        retry_after: Option<Duration>,
        honour_cap: Duration,
        rng: &mut R,
    ) -> NextRetry {
        if self.attempt >= self.backoff.max_retries {
            return NextRetry::Exhausted;
        }
        match retry_after {
            Some(wait) if wait > honour_cap => NextRetry::TooLong(wait),
            Some(wait) => {
                self.attempt += 1;
                self.previous = nanos(wait).clamp(self.backoff.base, self.backoff.cap);
                NextRetry::Provider(wait)
            }
            None => match self.next_delay(rng) {
                Some(d) => NextRetry::Backoff(d),
                None => NextRetry::Exhausted,
            },
        }
    }
}

// ===== impl NextRetry =====

impl NextRetry {
    /// The delay before retrying, or `None` when the caller should give up.
    pub const fn delay(self) -> Option<Duration> {
        match self {
            NextRetry::Provider(d) | NextRetry::Backoff(d) => Some(d),
            NextRetry::Exhausted | NextRetry::TooLong(_) => None,
        }
    }
}

// ===== helpers =====

/// A duration in whole nanoseconds, saturating at `u64::MAX` (about 584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A uniform draw from `[low, high]`, both ends included (`low ≤ high`), from one `next_u64`:
/// `low + ⌊x·(high − low + 1) / 2^64⌋`. The bias is below `(high − low + 1) / 2^64`: under 10⁻⁷
/// for any span up to 30 minutes.
fn uniform<R: Rng + ?Sized>(rng: &mut R, low: u64, high: u64) -> u64 {
    debug_assert!(low <= high);
    let x = rng.next_u64();
    let span = u128::from(high - low) + 1;
    // span ≤ 2^64, so the product fits in u128 and the shifted result fits in u64, ≤ high - low.
    low + ((u128::from(x) * span) >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A generator that returns one fixed word, to hit both ends of each range.
    struct Fixed(u64);

    impl rand_core::TryRng for Fixed {
        type Error = core::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(self.0 as u32)
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            Ok(self.0)
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            dst.fill(self.0 as u8);
            Ok(())
        }
    }

    #[test]
    fn uniform_reaches_both_ends() {
        assert_eq!(uniform(&mut Fixed(0), 3, 9), 3);
        assert_eq!(uniform(&mut Fixed(u64::MAX), 3, 9), 9);
        assert_eq!(uniform(&mut Fixed(u64::MAX), 0, u64::MAX), u64::MAX);
        assert_eq!(uniform(&mut Fixed(u64::MAX), 5, 5), 5);
    }

    #[test]
    fn extremes_of_each_jitter() {
        let b = |jitter| {
            Backoff::builder()
                .jitter(jitter)
                .base(Duration::from_nanos(10))
                .cap(Duration::from_nanos(1_000))
                .build()
                .unwrap()
        };
        let (lo, hi) = (&mut Fixed(0), &mut Fixed(u64::MAX));
        assert_eq!(b(Jitter::Full).delay_nanos(2, 10, lo), 0);
        assert_eq!(b(Jitter::Full).delay_nanos(2, 10, hi), 40);
        assert_eq!(b(Jitter::Equal).delay_nanos(0, 10, lo), 5);
        assert_eq!(b(Jitter::Equal).delay_nanos(0, 10, hi), 10);
        assert_eq!(b(Jitter::Sdk).delay_nanos(3, 10, lo), 60);
        assert_eq!(b(Jitter::Sdk).delay_nanos(3, 10, hi), 80);
        assert_eq!(b(Jitter::Decorrelated).delay_nanos(9, 100, lo), 10);
        assert_eq!(b(Jitter::Decorrelated).delay_nanos(9, 100, hi), 300);
        assert_eq!(b(Jitter::Decorrelated).delay_nanos(9, 900, hi), 1_000);
        assert_eq!(b(Jitter::None).delay_nanos(u32::MAX, 10, lo), 1_000);
    }

    #[test]
    fn every_rule_is_checked() {
        let zero = Backoff::builder().base(Duration::ZERO).build().unwrap_err();
        assert_eq!(zero.rule(), Rule::ZeroDuration);
        let cap = Backoff::builder()
            .cap(Duration::from_millis(499))
            .build()
            .unwrap_err();
        assert_eq!(cap.rule(), Rule::CapBelowBase);
        let retries = Backoff::builder().max_retries(0).build().unwrap_err();
        assert_eq!(retries.rule(), Rule::ZeroRetries);
        // cap == base is fine.
        assert!(Backoff::builder()
            .cap(Duration::from_millis(500))
            .build()
            .is_ok());
    }

    #[test]
    fn provider_delay_feeds_decorrelated_previous() {
        let b = Backoff::builder()
            .jitter(Jitter::Decorrelated)
            .base(Duration::from_secs(1))
            .cap(Duration::from_secs(10))
            .max_retries(3)
            .build()
            .unwrap();
        let mut s = b.start();
        let r = s.next_delay_after(
            Some(Duration::from_secs(30)),
            Duration::from_secs(60),
            &mut Fixed(0),
        );
        assert_eq!(r, NextRetry::Provider(Duration::from_secs(30)));
        assert_eq!(s.previous, 10_000_000_000); // clamped to cap
        assert_eq!(s.remaining(), 2);
        s.reset();
        assert_eq!((s.retries(), s.previous), (0, 1_000_000_000));
    }
}
