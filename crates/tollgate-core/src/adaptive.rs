//! [`AdaptiveRate`]: the AWS SDKs' "adaptive" client rate, a CUBIC curve that drops on a throttle
//! and climbs back, and [`MeasuredRate`]: the SDKs' estimate of the rate actually sent.

use crate::{ConfigError, Nanos, Rule};
use std::time::Duration;

/// The AWS SDKs' CUBIC client rate, in units (requests or tokens) per second, between a floor and
/// a ceiling.
///
/// The math is botocore's (`botocore/retries/throttling.py` `CubicCalculator`,
/// `retries/adaptive.py` `ClientRateLimiter` and `RateClocker`, `retries/bucket.py`
/// `TokenBucket`), with time passed in as [`Nanos`] and `t` in seconds:
///
/// * on a throttle at `t₀`: `W = min(measured, current rate)`, `rate = β·W`;
/// * afterwards: `rate(t) = C·(t − t₀ − K)³ + W` with `K = ∛(W·(1 − β)/C)`, so the rate is back at
///   `W` after `K` seconds (1.96 s for W = 10/s, 4.22 s for 100/s) and grows cubically beyond;
/// * always clamped to `[floor, ceiling]`.
///
/// | constant | value | botocore |
/// |---|---|---|
/// | [`BETA`](AdaptiveRate::BETA) (β) | 0.7 | `CubicCalculator._BETA` |
/// | [`SCALE`](AdaptiveRate::SCALE) (C) | 0.4 | `CubicCalculator._SCALE_CONSTANT` |
/// | [`SMOOTHING`](MeasuredRate::SMOOTHING) | 0.8 | `RateClocker._DEFAULT_SMOOTHING` |
/// | [`BUCKET`](MeasuredRate::BUCKET) | 0.5 s | `RateClocker._TIME_BUCKET_RANGE` |
/// | floor | configurable; the SDK uses 0.5/s | `TokenBucket._MIN_RATE` |
///
/// Differences from the SDK, on purpose:
/// * the ceiling: the SDK has none; here the rate never goes above the configured limit, which is
///   also the rate before the first throttle (the SDK sends unpaced until then);
/// * the curve is evaluated at any `now` ([`rate`](AdaptiveRate::rate)), not frozen between
///   responses; the SDK's value after each response is the same;
/// * the SDK also caps the rate at 2 × the measured rate (`_MAX_RATE_ADJUST_SCALE`), so an idle
///   client does not burst; tollgate's own bucket bounds bursts, so this is left to the caller.
///
/// ```
/// use tollgate_core::{AdaptiveRate, Nanos};
///
/// // The provider allows 100 requests/s; never pace below 0.5/s.
/// let mut rate = AdaptiveRate::new(100.0, 0.5)?;
/// assert_eq!(rate.rate(Nanos::ZERO), 100.0);
///
/// // A 429 at t = 1 s while sending 100/s: drop to 70/s ...
/// let t0 = Nanos::from_secs(1);
/// assert_eq!(rate.on_throttle(t0, Some(100.0)), 70.0);
/// // ... and climb back to 100/s after K = ∛(100·0.3/0.4) ≈ 4.22 s.
/// let k = rate.recovery_time().unwrap();
/// assert!((k.as_secs_f64() - 4.217).abs() < 1e-3);
/// assert!(rate.on_success(t0 + Nanos::from_secs(2)) < 100.0);
/// assert!((rate.rate(t0 + Nanos::from(k)) - 100.0).abs() < 1e-6);
/// # Ok::<(), tollgate_core::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveRate {
    ceiling: f64,
    floor: f64,
    /// The throttle being recovered from; `None` at the ceiling.
    recovering: Option<Recovery>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Recovery {
    /// When the throttle came.
    at: Nanos,
    /// `W`: the rate at the throttle (`last_max_rate`).
    max_rate: f64,
    /// `K` in seconds.
    k: f64,
}

impl Recovery {
    /// The recovery after a throttle at `at` from the rate `w`: the cubic's `K = ∛(W·(1−β)/C)`.
    fn new(at: Nanos, w: f64) -> Recovery {
        Recovery {
            at,
            max_rate: w,
            k: (w * (1.0 - AdaptiveRate::BETA) / AdaptiveRate::SCALE).cbrt(),
        }
    }
}

impl AdaptiveRate {
    /// β: the fraction of the rate kept after a throttle (botocore `_BETA`).
    pub const BETA: f64 = 0.7;
    /// C: the CUBIC scale constant, in units/s⁴ (botocore `_SCALE_CONSTANT`).
    pub const SCALE: f64 = 0.4;

    /// A rate that starts at `ceiling` (the provider's limit, per second) and never leaves
    /// `[floor, ceiling]`.
    ///
    /// # Errors
    /// [`Rule::RateOutOfRange`]: `floor` is not positive and finite, or `ceiling` is not finite or
    /// is below `floor`.
    ///
    /// ```
    /// use tollgate_core::{AdaptiveRate, Rule};
    /// assert_eq!(AdaptiveRate::new(10.0, 0.0).unwrap_err().rule(), Rule::RateOutOfRange);
    /// assert_eq!(AdaptiveRate::new(1.0, 2.0).unwrap_err().rule(), Rule::RateOutOfRange);
    /// assert!(AdaptiveRate::new(2.0, 2.0).is_ok());
    /// ```
    pub fn new(ceiling: f64, floor: f64) -> Result<AdaptiveRate, ConfigError> {
        check_bounds(ceiling, floor)?;
        Ok(AdaptiveRate {
            ceiling,
            floor,
            recovering: None,
        })
    }

    /// The rate at `now`, per second: the ceiling before any throttle and after a recovery,
    /// `β·W` at the throttle, then `C·(t − K)³ + W`; always within `[floor, ceiling]`. A `now`
    /// before the last throttle reads as the moment of the throttle.
    pub fn rate(&self, now: Nanos) -> f64 {
        match self.recovering {
            None => self.ceiling,
            Some(r) => {
                let dropped = r.max_rate * Self::BETA;
                let dt = now.saturating_sub(r.at);
                // At the throttle itself, exactly `β·W` (the cubic gives it only up to rounding);
                // afterwards the cubic, which only grows, never below that.
                let curve = if dt == Nanos::ZERO {
                    dropped
                } else {
                    let t = dt.as_duration().as_secs_f64() - r.k;
                    (Self::SCALE * t * t * t + r.max_rate).max(dropped)
                };
                curve.clamp(self.floor, self.ceiling)
            }
        }
    }

    /// The provider throttled a call at `now`. `W` (the new `last_max_rate`) is the `measured`
    /// send rate (a [`MeasuredRate`]) when given, but no more than the current
    /// [`rate`](Self::rate) (as the SDK does once it paces), or the current rate when `measured`
    /// is `None`, negative or not finite; `W` is clamped to `[floor, ceiling]`. Returns the new
    /// rate, `max(floor, β·W)`.
    ///
    /// ```
    /// use tollgate_core::{AdaptiveRate, Nanos};
    ///
    /// let mut rate = AdaptiveRate::new(50.0, 1.0)?;
    /// let t = Nanos::from_secs(3);
    /// assert_eq!(rate.on_throttle(t, None), 35.0); // 0.7 × 50
    /// assert_eq!(rate.on_throttle(t, None), 24.5); // 0.7 × 35
    /// assert_eq!(rate.on_throttle(t, Some(1.2)), 1.0); // 0.84, floored
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn on_throttle(&mut self, now: Nanos, measured: Option<f64>) -> f64 {
        let current = self.rate(now);
        let w = match measured {
            Some(m) if m.is_finite() && m >= 0.0 => m.min(current),
            _ => current,
        }
        .clamp(self.floor, self.ceiling);
        self.recovering = Some(Recovery::new(now, w));
        (w * Self::BETA).max(self.floor)
    }

    /// Takes over a throttle seen elsewhere (another process sharing the provider's limit): from
    /// `max_rate` at `at`, as [`on_throttle`](Self::on_throttle) would have done with that rate.
    /// A throttle no later than the last one known here changes nothing. Returns the rate at
    /// `now`.
    ///
    /// ```
    /// use tollgate_core::{AdaptiveRate, Nanos};
    /// let mut here = AdaptiveRate::new(10.0, 1.0)?;
    /// let mut there = here;
    /// there.on_throttle(Nanos::from_secs(5), Some(8.0));
    /// // This process hears of it a second later and follows the same curve.
    /// let now = Nanos::from_secs(6);
    /// assert_eq!(here.adopt(Nanos::from_secs(5), 8.0, now), there.rate(now));
    /// // An older throttle is ignored.
    /// here.adopt(Nanos::from_secs(1), 2.0, now);
    /// assert_eq!(here.last_throttle(), Some(Nanos::from_secs(5)));
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn adopt(&mut self, at: Nanos, max_rate: f64, now: Nanos) -> f64 {
        let newer = self.recovering.is_none_or(|r| at > r.at);
        if newer && max_rate.is_finite() && max_rate >= 0.0 {
            self.recovering = Some(Recovery::new(at, max_rate.clamp(self.floor, self.ceiling)));
        }
        self.rate(now)
    }

    /// A call succeeded at `now`. Returns the rate at `now` (what the SDK's `success_received`
    /// computes); once the curve has reached the ceiling, the recovery is over and the rate stays
    /// at the ceiling until the next throttle.
    pub fn on_success(&mut self, now: Nanos) -> f64 {
        let rate = self.rate(now);
        if rate >= self.ceiling {
            self.recovering = None;
        }
        rate
    }

    /// The highest rate.
    pub const fn ceiling(&self) -> f64 {
        self.ceiling
    }

    /// The lowest rate.
    pub const fn floor(&self) -> f64 {
        self.floor
    }

    /// `W`, the rate at the throttle being recovered from; `None` at the ceiling.
    pub fn last_max_rate(&self) -> Option<f64> {
        self.recovering.map(|r| r.max_rate)
    }

    /// When the throttle being recovered from came; `None` at the ceiling.
    pub fn last_throttle(&self) -> Option<Nanos> {
        self.recovering.map(|r| r.at)
    }

    /// `K`: how long after the throttle the rate is back at `W`; `None` at the ceiling.
    pub fn recovery_time(&self) -> Option<Duration> {
        self.recovering.map(|r| Duration::from_secs_f64(r.k))
    }
}

/// An adaptive rate's bounds: `floor` positive and finite, `ceiling` finite and at least `floor`.
pub(crate) fn check_bounds(ceiling: f64, floor: f64) -> Result<(), ConfigError> {
    if !(floor.is_finite() && floor > 0.0) {
        return Err(ConfigError::new(
            Rule::RateOutOfRange,
            format!("an adaptive rate's floor must be positive and finite, got {floor}"),
        ));
    }
    if !(ceiling.is_finite() && ceiling >= floor) {
        return Err(ConfigError::new(
            Rule::RateOutOfRange,
            format!(
                "an adaptive rate's ceiling must be finite and at least its floor ({floor}), \
                 got {ceiling}"
            ),
        ));
    }
    Ok(())
}

/// The SDKs' estimate of the rate actually sent (botocore `RateClocker`): events are counted in
/// 0.5 s buckets, and when an event lands in a later bucket the rate is smoothed,
/// `measured = 0.8·count/elapsed + 0.2·measured`, with `elapsed` the span from the previous bucket
/// to this one and `count` including this event (as botocore counts it).
///
/// ```
/// use tollgate_core::{MeasuredRate, Nanos};
///
/// let mut m = MeasuredRate::new(Nanos::ZERO);
/// // 10 responses in the first half second: still in the first bucket, no estimate yet.
/// for i in 0..10 {
///     assert_eq!(m.record(Nanos::from_millis(i * 50), 1), 0.0);
/// }
/// // The 11th lands in the next bucket: 11 events over 0.5 s = 22/s, smoothed by 0.8.
/// assert!((m.record(Nanos::from_millis(500), 1) - 17.6).abs() < 1e-9);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeasuredRate {
    measured: f64,
    count: u64,
    last_bucket: u64,
}

impl MeasuredRate {
    /// The weight of the newest bucket (botocore `_DEFAULT_SMOOTHING`).
    pub const SMOOTHING: f64 = 0.8;
    /// The bucket width (botocore `_TIME_BUCKET_RANGE`).
    pub const BUCKET: Duration = Duration::from_millis(500);
    const BUCKET_NANOS: u64 = 500_000_000;

    /// An estimator that starts at 0/s, its first bucket holding `now`.
    pub const fn new(now: Nanos) -> Self {
        MeasuredRate {
            measured: 0.0,
            count: 0,
            last_bucket: now.as_u64() / Self::BUCKET_NANOS,
        }
    }

    /// Counts `amount` events (1 per response, or its tokens) at `now` and returns the estimate,
    /// per second. A `now` in an earlier bucket than the last counts towards the current one.
    pub fn record(&mut self, now: Nanos, amount: u64) -> f64 {
        let bucket = now.as_u64() / Self::BUCKET_NANOS;
        self.count = self.count.saturating_add(amount);
        if bucket > self.last_bucket {
            let elapsed = (bucket - self.last_bucket) as f64 * Self::BUCKET.as_secs_f64();
            let current = self.count as f64 / elapsed;
            self.measured = current * Self::SMOOTHING + self.measured * (1.0 - Self::SMOOTHING);
            self.count = 0;
            self.last_bucket = bucket;
        }
        self.measured
    }

    /// The estimate, per second.
    pub const fn rate(&self) -> f64 {
        self.measured
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_times_match_the_research_table() {
        // K = (0.75·W)^(1/3): 1.96 s for 10/s, 4.22 s for 100/s, 9.09 s for 1000/s.
        for (w, k) in [(10.0, 1.957), (100.0, 4.217), (1000.0, 9.086)] {
            let mut r = AdaptiveRate::new(w, 0.5).unwrap();
            r.on_throttle(Nanos::ZERO, None);
            let got = r.recovery_time().unwrap().as_secs_f64();
            assert!((got - k).abs() < 1e-3, "W = {w}: K = {got}");
        }
    }

    #[test]
    fn success_at_ceiling_ends_recovery() {
        let mut r = AdaptiveRate::new(10.0, 0.5).unwrap();
        r.on_throttle(Nanos::from_secs(1), None);
        assert!(r.on_success(Nanos::from_secs(2)) < 10.0);
        assert!(r.last_max_rate().is_some());
        assert_eq!(r.on_success(Nanos::from_secs(4)), 10.0);
        assert_eq!(r.last_max_rate(), None);
        assert_eq!(r.rate(Nanos::ZERO), 10.0);
    }

    #[test]
    fn nan_measured_reads_as_current() {
        let mut r = AdaptiveRate::new(10.0, 0.5).unwrap();
        assert_eq!(r.on_throttle(Nanos::ZERO, Some(f64::NAN)), 7.0);
        assert_eq!(r.on_throttle(Nanos::ZERO, Some(-3.0)), 7.0 * 0.7);
    }

    #[test]
    fn measured_rate_spreads_over_skipped_buckets() {
        let mut m = MeasuredRate::new(Nanos::from_millis(100));
        // One event two seconds later: 1 / 2 s = 0.5/s, times 0.8.
        assert!((m.record(Nanos::from_millis(2_100), 1) - 0.4).abs() < 1e-12);
        // An event in an earlier bucket just counts.
        assert!((m.record(Nanos::ZERO, 1) - 0.4).abs() < 1e-12);
        assert_eq!(m.count, 1);
    }
}
