//! [`Limit`]: one rate limit as a user states it, and [`Gcra`]: the same limit compiled for
//! arithmetic in nanoseconds.

use crate::{ConfigError, Dimension, Nanos, Rule};
use std::time::Duration;

/// One rate limit: `amount` units of a [`Dimension`] per `period`, with a burst and a headroom.
///
/// * **Headroom** (default `1.0`): the fraction of the stated amount the limiter admits, so
///   `50 RPM` with headroom `0.9` admits 45 requests a minute.
/// * **Burst** (default: the effective amount of one period): how much may go at once after an
///   idle spell. The default is the capacity of the provider's own bucket as providers that refill
///   continuously describe it ("capacity is continuously replenished up to your maximum"), so an
///   idle fleet may use at once what the provider would accept at once, and the largest call that
///   could ever fit the provider also fits the limiter. Lower it for providers that enforce a
///   per-minute limit over shorter intervals.
///
/// ```
/// use tollgate_core::{Dimension, Limit};
///
/// let rpm = Limit::per_minute(Dimension::Requests, 50).with_headroom(0.9);
/// let gcra = rpm.compile().unwrap();
/// assert_eq!(gcra.burst(), 45); // 50 × 0.9
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Limit {
    /// What the limit counts.
    pub dimension: Dimension,
    /// How many units per period.
    pub amount: u64,
    /// The period.
    pub period: Duration,
    /// The burst in units; `None` for the default (one period's effective amount).
    pub burst: Option<u64>,
    /// The fraction of `amount` that is admitted, in `(0, 1]`; `None` for the default (`1.0`, or
    /// the default headroom of the layer or scope the limit belongs to).
    pub headroom: Option<f64>,
}

impl Limit {
    /// `amount` units of `dimension` per `period`, default burst, headroom 1.
    pub const fn new(dimension: Dimension, amount: u64, period: Duration) -> Self {
        Limit {
            dimension,
            amount,
            period,
            burst: None,
            headroom: None,
        }
    }

    /// `amount` units per minute.
    pub const fn per_minute(dimension: Dimension, amount: u64) -> Self {
        Limit::new(dimension, amount, Duration::from_secs(60))
    }

    /// `amount` units per day (24 hours, a continuous bucket: the day need not start at midnight).
    pub const fn per_day(dimension: Dimension, amount: u64) -> Self {
        Limit::new(dimension, amount, Duration::from_secs(86_400))
    }

    /// The same limit with a burst of `burst` units.
    #[must_use]
    pub const fn with_burst(mut self, burst: u64) -> Self {
        self.burst = Some(burst);
        self
    }

    /// The same limit admitting only `fraction` of the stated amount.
    #[must_use]
    pub const fn with_headroom(mut self, fraction: f64) -> Self {
        self.headroom = Some(fraction);
        self
    }

    /// Checks every rule and compiles the limit.
    ///
    /// # Errors
    /// [`Rule::ZeroAmount`], [`Rule::ZeroPeriod`], [`Rule::HeadroomOutOfRange`] (NaN, ≤ 0 or > 1),
    /// [`Rule::EffectiveLimitBelowOne`] (amount × headroom < 1), [`Rule::BurstBelowOneCall`]
    /// (an explicit burst of zero).
    pub fn compile(&self) -> Result<Gcra, ConfigError> {
        if self.amount == 0 {
            return Err(ConfigError::new(
                Rule::ZeroAmount,
                format!("a {} limit of 0 admits nothing", self.dimension),
            ));
        }
        if self.period.is_zero() {
            return Err(ConfigError::new(
                Rule::ZeroPeriod,
                format!("the {} limit has a period of zero", self.dimension),
            ));
        }
        let h = self.headroom.unwrap_or(1.0);
        if !(h.is_finite() && h > 0.0 && h <= 1.0) {
            return Err(ConfigError::new(
                Rule::HeadroomOutOfRange,
                format!("headroom must be in (0, 1], got {h}"),
            ));
        }
        let effective = self.amount as f64 * h;
        if effective < 1.0 {
            return Err(ConfigError::new(
                Rule::EffectiveLimitBelowOne,
                format!(
                    "{} × headroom {h} leaves less than one {} per period",
                    self.amount, self.dimension
                ),
            ));
        }
        let burst = match self.burst {
            Some(0) => {
                return Err(ConfigError::new(
                    Rule::BurstBelowOneCall,
                    format!("a {} burst of 0 can never admit a call", self.dimension),
                ))
            }
            Some(b) => b,
            None => effective.floor() as u64,
        };
        let per_period_milli = ((effective * 1000.0).round() as u64).max(1);
        let period_ns = u64::try_from(self.period.as_nanos()).unwrap_or(u64::MAX);
        let mut gcra = Gcra {
            dimension: self.dimension,
            period_ns,
            per_period_milli,
            burst,
            tau: 0,
        };
        gcra.tau = gcra.cost_ns(burst);
        Ok(gcra)
    }
}

/// A [`Limit`] compiled for exact integer arithmetic: a weighted GCRA (generic cell rate
/// algorithm), which is a continuously refilled token bucket stored as one time value.
///
/// A bucket holds a *theoretical arrival time* `tat`. A call of `n` units is conforming at `now`
/// when `max(tat, now) + n·T − now ≤ τ`, where `T` is the time one unit takes to refill and
/// `τ = burst·T`. Charging moves `tat` forward by `n·T`, a refund moves it back (never before `now`:
/// a bucket is never fuller than its burst), and a charge beyond `τ` is *debt* that later callers
/// wait out.
///
/// Time is kept in whole nanoseconds: charges round up, refunds round down, and the conformance
/// test is exact, so rounding only ever makes the limiter stricter. Over any window `[t, t + W]`
/// that starts at an admission, the units admitted minus the units refunded in between are at
/// most `W·per_period/period + burst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gcra {
    dimension: Dimension,
    period_ns: u64,
    per_period_milli: u64,
    burst: u64,
    tau: u64,
}

impl Gcra {
    /// What the limit counts.
    pub fn dimension(&self) -> Dimension {
        self.dimension
    }

    /// The burst, in units: the largest call that can ever be admitted.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// The period in nanoseconds.
    pub fn period(&self) -> Nanos {
        Nanos::new(self.period_ns)
    }

    /// Units admitted per period after headroom (may be fractional).
    pub fn per_period(&self) -> f64 {
        self.per_period_milli as f64 / 1000.0
    }

    /// The time `n` units take to refill, rounded up to a whole nanosecond.
    #[inline]
    pub fn cost_ns(&self, n: u64) -> u64 {
        let den = self.per_period_milli;
        // Most products fit 64 bits: one division instead of a 128-bit one. Same result.
        if let Some(num) = n
            .checked_mul(self.period_ns)
            .and_then(|x| x.checked_mul(1000))
        {
            return num.div_ceil(den);
        }
        // Saturates: a time beyond u64 nanoseconds (584 years) is "never" either way.
        let num = (n as u128)
            .saturating_mul(self.period_ns as u128)
            .saturating_mul(1000);
        u64::try_from(num.div_ceil(den as u128)).unwrap_or(u64::MAX)
    }

    /// The time `n` units take to refill, rounded down to a whole nanosecond.
    #[inline]
    fn floor_ns(&self, n: u64) -> u64 {
        let den = self.per_period_milli;
        if let Some(num) = n
            .checked_mul(self.period_ns)
            .and_then(|x| x.checked_mul(1000))
        {
            return num / den;
        }
        let num = (n as u128)
            .saturating_mul(self.period_ns as u128)
            .saturating_mul(1000);
        u64::try_from(num / den as u128).unwrap_or(u64::MAX)
    }

    /// The wait before `n` units fit a bucket in state `tat` at `now`; zero when they fit now.
    ///
    /// Exact: the smallest whole wait after which the backlog `tat − now` is at most
    /// `(burst − n)·T`. (For `n` above the burst, which never fits, the backlog plus the time the
    /// excess takes to refill.)
    #[inline]
    pub fn wait(&self, tat: Nanos, now: Nanos, n: u64) -> Nanos {
        let backlog = tat - now;
        match self.burst.checked_sub(n) {
            // An idle bucket is full: no division needed.
            Some(_) if backlog == Nanos::ZERO => Nanos::ZERO,
            Some(room) => backlog.saturating_sub(Nanos::new(self.floor_ns(room))),
            None => backlog + Nanos::new(self.cost_ns(n - self.burst)),
        }
    }

    /// `tat` after charging `n` units at `now` (admission, or debt when it goes past the burst).
    #[inline]
    pub fn charged(&self, tat: Nanos, now: Nanos, n: u64) -> Nanos {
        tat.max(now) + Nanos::new(self.cost_ns(n))
    }

    /// `tat` after refunding `n` units at `now`; never earlier than `now` (a full bucket). The
    /// refund is rounded down, so it never gives back more than `n` units.
    #[inline]
    pub fn refunded(&self, tat: Nanos, now: Nanos, n: u64) -> Nanos {
        (tat - Nanos::new(self.floor_ns(n))).max(now)
    }

    /// Units available at `now` in a bucket in state `tat`. Negative while the bucket is in debt.
    pub fn available(&self, tat: Nanos, now: Nanos) -> f64 {
        let backlog = (tat - now).as_u64() as f64;
        let unit_ns = self.period_ns as f64 * 1000.0 / self.per_period_milli as f64;
        (self.tau as f64 - backlog) / unit_ns
    }

    /// `tat` of a bucket lowered so that at most `remaining` units are available at `now`; `tat`
    /// itself when the bucket already holds no more than that (a bucket is never raised).
    ///
    /// ```
    /// use tollgate_core::{Dimension, Limit, Nanos};
    ///
    /// let g = Limit::per_minute(Dimension::Requests, 60).compile().unwrap();
    /// let now = Nanos::from_secs(100);
    /// let tat = g.lowered_to(Nanos::ZERO, now, 10); // the provider says 10 left, we believed 60
    /// assert!((g.available(tat, now) - 10.0).abs() < 1e-6);
    /// assert_eq!(g.lowered_to(tat, now, 30), tat); // never raised
    /// ```
    pub fn lowered_to(&self, tat: Nanos, now: Nanos, remaining: u64) -> Nanos {
        let Some(room) = self.burst.checked_sub(remaining) else {
            return tat;
        };
        // A backlog of `burst − remaining` units leaves `remaining` available.
        let target = now + Nanos::new(self.cost_ns(room));
        tat.max(target)
    }

    /// `tat` of a bucket that was under `old` carried over to `self`: the units it owed stay owed.
    pub fn rescaled(&self, old: &Gcra, tat: Nanos, now: Nanos) -> Nanos {
        let backlog = (tat - now).as_u64() as u128;
        // backlog in units = backlog / old_unit; in new time = units × new_unit.
        let num = backlog * self.period_ns as u128 * old.per_period_milli as u128;
        let den = old.period_ns as u128 * self.per_period_milli as u128;
        now + Nanos::new(u64::try_from(num.div_ceil(den.max(1))).unwrap_or(u64::MAX))
    }
}
