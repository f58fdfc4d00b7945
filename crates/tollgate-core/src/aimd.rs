//! [`AimdRate`]: additive increase, multiplicative decrease of a client rate, with its constants
//! in the provider's own period.

use crate::{ConfigError, Nanos, Rule};
use std::time::Duration;

/// A client rate, in units (requests or tokens) per second, that drops to β = 0.7 of itself on a
/// throttle (or to a refill rate it has measured) and then climbs back linearly at a speed set by
/// the provider's period `P`, between a floor and a ceiling.
///
/// * on a throttle at `t₀`: `W = min(measured, current rate)`, and the rate restarts at
///   `s = β·W`, or, knowing a refill rate `ρ̂`
///   ([`on_throttle_with_refill`](Self::on_throttle_with_refill)), at
///   `s = min(max(ρ̂, β·W), 0.95·W)`;
/// * afterwards: `rate(t) = s + a·(t − t₀)` with `a = (1 − β)²·W / (2·P)`;
/// * always clamped to `[floor, ceiling]`;
/// * throttles in the [`GRACE`](Self::GRACE) × `P` after a cut answer calls sent before it: they
///   cut no further.
///
/// **Why these constants.** A provider that limits `ρ` units per period `P` refills a bucket that
/// holds one period's worth, `B = ρ·P`. When it throttles, its bucket is empty; the client drops
/// to `β·W` and the bucket refills at `ρ − rate(t)`, which the client must use up again before it
/// overflows, or capacity is lost. With the linear climb the bucket holds at most
/// `(ρ − β·W)² / (2a)`; the climb is the slowest that keeps this within `B` for any
/// `W ≥ ρ` when `a = (1 − β)²·W / (2·P)` (at `W = ρ` the bound is exactly `B`). Slowest, because
/// each cycle ends with a throttle: the slower the climb, the fewer throttles per unit sent. The
/// cycle settles where the rate at the next throttle equals the rate at the last,
/// `W = 2ρ / (1 + β)`, and lasts `2·P / (1 − β)`; over it the client sends exactly `ρ` on
/// average. `β = 0.7` (the AWS SDKs' β too) makes the cycle `2·P / 0.3 ≈ 6.7·P` (400 s for a
/// per-minute limit: some 470 calls at 70 requests a minute for one or two throttles), overshoots
/// the real rate by `2/1.7 ≈ 1.18` at its top, and recovers from a cut to the old rate in the same
/// 6.7·P. A smaller `β` recovers faster but cycles sooner and overshoots more (`β = ½`: cycle
/// `4·P`, overshoot 1.33).
///
/// **Restarting from a measured refill.** `β·W` is what a client that knows nothing of `ρ` can
/// do. A client that knows a rate `ρ̂` the provider refills at (the requests that went through
/// between its last throttles, [`ThrottleRefill`](crate::ThrottleRefill), or the lower bound of
/// what the answers report, [`RefillEstimate`](crate::RefillEstimate)) restarts there: the
/// bucket is empty at the throttle and a rate of `ρ` keeps it so. The climb is the same, so the
/// next throttle comes once the excess over `ρ` has used up what the bucket banked meanwhile (a
/// shared cooldown of `d` banks `ρ·d`, plus the one request a throttle leaves): after
/// `t = √(2·(ρ·d + 1) / a)`, about 70 s for 70 requests a minute, `d = 1 s`. So there are more
/// throttles (the simulator's `no-headers` scenario: 14 in 1,214 attempts, 1.2 %, against 3 with
/// `β·W` restarts), but the bucket never banks more than a few requests, where a `β·W` cycle
/// banks up to a whole period's worth, which is lost if demand ends first (the same scenario:
/// 99.80 % utilization against 99.28 %). The restart keeps at most
/// [`MAX_KEEP`](Self::MAX_KEEP)` = 0.95` of `W`, so a throttle always lowers the rate, even where
/// the measured `ρ̂` means nothing (a fixed-window provider).
///
/// Units per second at LLM rates (one or two requests a second) make the AWS SDKs' CUBIC
/// constants ([`AdaptiveRate`](crate::AdaptiveRate)) probe back within about a second of every
/// cut, long before a per-minute bucket has refilled; these constants scale with the period
/// instead, so the same rate law holds for a limit per minute or per day.
///
/// ```
/// use std::time::Duration;
/// use tollgate_core::{AimdRate, Nanos};
///
/// // 100 requests a minute; never below 10 a minute.
/// let per_s = 100.0 / 60.0;
/// let mut rate = AimdRate::new(per_s, per_s / 10.0, Duration::from_secs(60))?;
/// assert_eq!(rate.rate(Nanos::ZERO), per_s);
/// // A throttle at t = 10 s cuts the rate to 0.7 of itself ...
/// let t0 = Nanos::from_secs(10);
/// assert!((rate.on_throttle(t0, None) - 0.7 * per_s).abs() < 1e-12);
/// // ... which is back at W after 2·P / (1 − β) = 400 s.
/// assert_eq!(rate.recovery_time(), Some(Duration::from_secs(400)));
/// let back = rate.rate(t0 + Nanos::from_secs(400));
/// assert!((back - per_s).abs() < 1e-9);
/// # Ok::<(), tollgate_core::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AimdRate {
    ceiling: f64,
    floor: f64,
    /// `P`, in seconds.
    period: f64,
    /// The throttle being recovered from; `None` at the ceiling.
    cut: Option<Cut>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Cut {
    /// When the throttle came.
    at: Nanos,
    /// `W`: the rate at the throttle.
    max_rate: f64,
    /// The rate right after it: `β·W`, or the refill measured between throttles.
    start: f64,
}

impl AimdRate {
    /// β: the fraction of the rate kept after a throttle.
    pub const BETA: f64 = 0.7;
    /// The time after a cut, as a fraction of `P`, in which further throttles cut no further
    /// (3 s for a per-minute limit): they answer calls sent at the old rate.
    pub const GRACE: f64 = 0.05;
    /// The most of `W` a throttle keeps when the refill measured between throttles
    /// ([`ThrottleRefill`](crate::ThrottleRefill)) is higher: every throttle cuts by at least
    /// 5 %, so the rate still falls behind a provider whose throttles measure no refill.
    pub const MAX_KEEP: f64 = 0.95;

    /// A rate that starts at `ceiling` (per second) and never leaves `[floor, ceiling]`, for a
    /// provider limit of period `period`.
    ///
    /// # Errors
    /// [`Rule::RateOutOfRange`]: `floor` is not positive and finite, `ceiling` is not finite or
    /// is below `floor`, or `period` is zero.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_core::{AimdRate, Rule};
    /// let minute = Duration::from_secs(60);
    /// assert_eq!(AimdRate::new(1.0, 0.0, minute).unwrap_err().rule(), Rule::RateOutOfRange);
    /// assert_eq!(AimdRate::new(1.0, 2.0, minute).unwrap_err().rule(), Rule::RateOutOfRange);
    /// assert_eq!(AimdRate::new(1.0, 0.5, Duration::ZERO).unwrap_err().rule(), Rule::RateOutOfRange);
    /// assert!(AimdRate::new(2.0, 2.0, minute).is_ok());
    /// ```
    pub fn new(ceiling: f64, floor: f64, period: Duration) -> Result<AimdRate, ConfigError> {
        crate::adaptive::check_bounds(ceiling, floor)?;
        if period.is_zero() {
            return Err(ConfigError::new(
                Rule::RateOutOfRange,
                "an adaptive rate's period must not be zero",
            ));
        }
        Ok(AimdRate {
            ceiling,
            floor,
            period: period.as_secs_f64(),
            cut: None,
        })
    }

    /// `a`, the climb after a throttle at the rate `w`, per second per second.
    fn climb(&self, w: f64) -> f64 {
        (1.0 - Self::BETA) * (1.0 - Self::BETA) * w / (2.0 * self.period)
    }

    /// The rate at `now`, per second: the ceiling before any throttle and after a recovery,
    /// `β·W + a·(t − t₀)` after one; always within `[floor, ceiling]`. A `now` before the last
    /// throttle reads as the moment of the throttle.
    pub fn rate(&self, now: Nanos) -> f64 {
        match self.cut {
            None => self.ceiling,
            Some(c) => {
                let dt = now.saturating_sub(c.at).as_duration().as_secs_f64();
                (c.start + self.climb(c.max_rate) * dt).clamp(self.floor, self.ceiling)
            }
        }
    }

    /// The provider throttled a call at `now`. Within [`GRACE`](Self::GRACE) × `P` of the last
    /// cut this changes nothing. Otherwise `W` is the `measured` rate (the rate the client was
    /// really allowed, when it knows it) but no more than the current [`rate`](Self::rate), or
    /// the current rate when `measured` is `None`, negative or not finite; `W` is clamped to
    /// `[floor, ceiling]`. Returns the rate after the throttle.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_core::{AimdRate, Nanos};
    ///
    /// let mut rate = AimdRate::new(10.0, 1.0, Duration::from_secs(60))?;
    /// assert_eq!(rate.on_throttle(Nanos::from_secs(1), None), 7.0);
    /// // An answer to a call sent before the cut: no second cut (the rate has climbed a little).
    /// let climbed = rate.on_throttle(Nanos::from_secs(2), None);
    /// assert!(climbed > 7.0 && climbed < 7.1);
    /// // Later, from the (slightly climbed) current rate, never below the floor.
    /// assert!(rate.on_throttle(Nanos::from_secs(30), None) < 5.1);
    /// assert_eq!(rate.on_throttle(Nanos::from_secs(60), Some(0.5)), 1.0);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn on_throttle(&mut self, now: Nanos, measured: Option<f64>) -> f64 {
        self.on_throttle_with_refill(now, measured, None)
    }

    /// [`on_throttle`](Self::on_throttle), knowing `refill`: a rate the provider was measured to
    /// refill at (between its throttles, [`ThrottleRefill`](crate::ThrottleRefill), or from what
    /// its answers report, [`RefillEstimate`](crate::RefillEstimate)). The rate restarts at it
    /// instead of `β·W` when it is higher, but never above [`MAX_KEEP`](Self::MAX_KEEP)` · W`, and
    /// climbs as after any cut.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_core::{AimdRate, Nanos};
    ///
    /// let mut rate = AimdRate::new(2.0, 0.1, Duration::from_secs(60))?;
    /// // Throttled at 1.2 a second, the provider measured to refill at 1.15: restart there, but
    /// // at most at 0.95 × 1.2 = 1.14.
    /// assert_eq!(rate.on_throttle_with_refill(Nanos::from_secs(100), Some(1.2), Some(1.15)), 1.14);
    /// // A measured refill at or above W still cuts by 5 %.
    /// let later = Nanos::from_secs(500);
    /// let w = rate.rate(later);
    /// let after = rate.on_throttle_with_refill(later, None, Some(10.0));
    /// assert!((after - 0.95 * w).abs() < 1e-12);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn on_throttle_with_refill(
        &mut self,
        now: Nanos,
        measured: Option<f64>,
        refill: Option<f64>,
    ) -> f64 {
        if let Some(c) = self.cut {
            let since = now.saturating_sub(c.at).as_duration().as_secs_f64();
            if since < Self::GRACE * self.period {
                return self.rate(now);
            }
        }
        let current = self.rate(now);
        let w = match measured {
            Some(m) if m.is_finite() && m >= 0.0 => m.min(current),
            _ => current,
        }
        .clamp(self.floor, self.ceiling);
        let start = match refill {
            Some(r) if r.is_finite() => r.min(Self::MAX_KEEP * w).max(Self::BETA * w),
            _ => Self::BETA * w,
        };
        self.cut = Some(Cut {
            at: now,
            max_rate: w,
            start,
        });
        self.rate(now)
    }

    /// Takes over a throttle seen elsewhere (another process sharing the provider's limit): from
    /// `max_rate` at `at`, as [`on_throttle`](Self::on_throttle) would have done with that rate.
    /// A throttle no later than the last one known here changes nothing. Returns the rate at
    /// `now`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_core::{AimdRate, Nanos};
    /// let mut here = AimdRate::new(10.0, 1.0, Duration::from_secs(60))?;
    /// let mut there = here;
    /// there.on_throttle(Nanos::from_secs(5), Some(8.0));
    /// let now = Nanos::from_secs(6);
    /// assert_eq!(here.adopt(Nanos::from_secs(5), 8.0, now), there.rate(now));
    /// here.adopt(Nanos::from_secs(1), 2.0, now);
    /// assert_eq!(here.last_throttle(), Some(Nanos::from_secs(5)));
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn adopt(&mut self, at: Nanos, max_rate: f64, now: Nanos) -> f64 {
        let newer = self.cut.is_none_or(|c| at > c.at);
        if newer && max_rate.is_finite() && max_rate >= 0.0 {
            let w = max_rate.clamp(self.floor, self.ceiling);
            self.cut = Some(Cut {
                at,
                max_rate: w,
                start: Self::BETA * w,
            });
        }
        self.rate(now)
    }

    /// A call succeeded at `now`. Returns the rate at `now`; once it has reached the ceiling, the
    /// recovery is over and the rate stays at the ceiling until the next throttle.
    pub fn on_success(&mut self, now: Nanos) -> f64 {
        let rate = self.rate(now);
        if rate >= self.ceiling {
            self.cut = None;
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
        self.cut.map(|c| c.max_rate)
    }

    /// When the throttle being recovered from came; `None` at the ceiling.
    pub fn last_throttle(&self) -> Option<Nanos> {
        self.cut.map(|c| c.at)
    }

    /// How long after the throttle the rate is back at `W` (`2·P / (1 − β)`, unless the ceiling
    /// or floor bound it); `None` at the ceiling.
    pub fn recovery_time(&self) -> Option<Duration> {
        self.cut
            .map(|_| Duration::from_secs_f64(2.0 * self.period / (1.0 - Self::BETA)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MINUTE: Duration = Duration::from_secs(60);

    /// The derivation's claims, on a fluid model: a provider bucket of one period's worth,
    /// refilled at `ρ`, a client sending at the rate whenever the bucket has room. Over the
    /// settled cycle nothing overflows (no capacity lost) and the throttles come every
    /// `2·P / (1 − β)`, at `W = 2ρ / (1 + β)`.
    #[test]
    fn the_settled_cycle_loses_no_capacity_and_throttles_every_cycle() {
        let rho = 70.0 / 60.0;
        let mut rate = AimdRate::new(100.0 / 60.0, 0.1, MINUTE).unwrap();
        let (mut bucket, full) = (rho * 60.0, rho * 60.0);
        let dt = 0.01;
        let mut throttles = Vec::new();
        let mut lost = 0.0;
        for i in 0..(200 * 60 * 100) {
            let now = Nanos::new((i as f64 * dt * 1e9) as u64);
            let r = rate.rate(now);
            bucket += (rho - r) * dt;
            if bucket > full {
                if i > 100 * 60 * 100 {
                    lost += bucket - full;
                }
                bucket = full;
            }
            if bucket < 0.0 {
                bucket = 0.0;
                let before = rate.last_throttle();
                rate.on_throttle(now, None);
                if rate.last_throttle() != before {
                    throttles.push((i as f64 * dt, rate.last_max_rate().unwrap()));
                }
            }
        }
        assert!(lost < 1e-9, "capacity lost: {lost}");
        // The cycle converges to its fixed point, alternating about it: the mean of the last two
        // cycles is the settled one.
        let n = throttles.len();
        let cycle = (throttles[n - 1].0 - throttles[n - 3].0) / 2.0;
        assert!(
            (cycle - 400.0).abs() < 4.0,
            "cycle {cycle} s, throttles {throttles:?}"
        );
        let w = (throttles[n - 1].1 + throttles[n - 2].1) / 2.0;
        assert!((w - 2.0 * rho / 1.7).abs() < 0.01 * rho, "W = {w}");
    }

    proptest! {
        #[test]
        fn the_rate_stays_within_its_bounds_and_only_climbs_between_throttles(
            ceiling in 0.01f64..1e4,
            floor_share in 0.001f64..1.0,
            period_s in 1u64..100_000,
            steps in proptest::collection::vec(
                (0u64..100_000_000_000, any::<bool>(), proptest::option::of(0.0f64..2e4)),
                1..50,
            ),
        ) {
            let floor = ceiling * floor_share;
            let mut r = AimdRate::new(ceiling, floor, Duration::from_secs(period_s)).unwrap();
            let mut now = Nanos::ZERO;
            let mut last = r.rate(now);
            for (dt, throttle, refill) in steps {
                now = Nanos::new(now.as_u64().saturating_add(dt));
                let before = r.rate(now);
                prop_assert!(before >= last - 1e-9 * ceiling, "fell without a throttle");
                let grace = r.last_throttle().is_some_and(|t| {
                    now.saturating_sub(t).as_duration().as_secs_f64()
                        < AimdRate::GRACE * period_s as f64
                });
                let after = if throttle {
                    r.on_throttle_with_refill(now, None, refill)
                } else {
                    r.on_success(now)
                };
                prop_assert!(after >= floor && after <= ceiling);
                prop_assert!(after <= before);
                if throttle && !grace && before > floor {
                    // A cut keeps at most 0.95 of the rate, whatever the refill measured.
                    prop_assert!(after <= (AimdRate::MAX_KEEP * before).max(floor) * (1.0 + 1e-12));
                }
                last = after;
            }
        }
    }
}
