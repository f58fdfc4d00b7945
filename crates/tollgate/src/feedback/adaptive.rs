//! The adaptive mode's state: what the provider scope may really send, learnt from the
//! provider's answers, as a factor on its configured limits.
//!
//! Two sources, the stricter wins:
//!
//! * **what the answers report**: each answer's `remaining` and `reset` of a limit give the rate
//!   it really refills at for this client ([`RefillEstimate`]: `ρ = remaining / (P − reset)`
//!   for a bucket of one period `P`'s worth); once the samples agree, the limit is scaled to it;
//! * **throttles**: a rate-limited or overloaded answer cuts the rate to 0.7 of itself, which then
//!   climbs back linearly in the provider's own period ([`AimdRate`], whose documentation derives
//!   its constants); this alone learns a limit from a provider that reports nothing. Once two
//!   rate-limited answers are apart, the requests that went through between them measure the
//!   rate the provider really refills at ([`ThrottleRefill`]), and a cut restarts from that
//!   instead of 0.7 of the rate (but from at most 0.95 of it).

use crate::feedback::ProviderLimit;
use crate::{ConfigError, Dimension, ScopeLimits};
use std::time::Duration;
use tollgate_core::{AimdRate, Nanos, RefillEstimate, ThrottleRefill};

/// The refill estimate of one configured limit.
#[derive(Debug)]
struct Learnt {
    dimension: Dimension,
    /// Units per period as configured (before headroom).
    amount: f64,
    period: Duration,
    estimate: RefillEstimate,
}

/// The adaptive state of the provider scope.
#[derive(Debug)]
pub(crate) struct Adaptive {
    /// The rate of the scope's request limit (or its first), per second, moved by throttles.
    pub(crate) rate: AimdRate,
    /// What that limit counts.
    pub(crate) dimension: Dimension,
    /// The provider scope's configured limits.
    pub(crate) base: ScopeLimits,
    /// The default headroom the base limits are read with.
    pub(crate) headroom: f64,
    /// The configured rate, per second, that the factor is relative to.
    pub(crate) ceiling: f64,
    /// The factor now applied.
    pub(crate) factor: f64,
    /// Per configured limit, the rate its answers report.
    learnt: Vec<Learnt>,
    /// The request rate measured between rate-limited answers.
    throttles: ThrottleRefill,
}

impl Adaptive {
    /// The adaptive state for `base`, never below `floor` × its rate.
    pub(crate) fn new(base: ScopeLimits, headroom: f64, floor: f64) -> Result<Self, ConfigError> {
        let compiled = base.clone().with_default_headroom(headroom).compile()?;
        let g = compiled
            .gcras()
            .iter()
            .min_by_key(|g| (g.dimension() != Dimension::Requests, g.period()))
            .ok_or_else(|| {
                ConfigError::new(
                    tollgate_core::Rule::UnknownScope,
                    "the adaptive mode needs a rate limit on the provider scope",
                )
            })?;
        let period = g.period().as_duration();
        let ceiling = g.per_period() / period.as_secs_f64();
        let learnt = base
            .limits
            .iter()
            .map(|l| Learnt {
                dimension: l.dimension,
                amount: l.amount as f64,
                period: l.period,
                estimate: RefillEstimate::new(),
            })
            .collect();
        Ok(Adaptive {
            rate: AimdRate::new(ceiling, ceiling * floor, period)?,
            dimension: g.dimension(),
            base,
            headroom,
            ceiling,
            factor: 1.0,
            learnt,
            throttles: ThrottleRefill::new(),
        })
    }

    /// The base limits with their rates scaled by `factor` and their bursts as configured: a
    /// lower rate refills the local bucket slower, but what it holds stays (header sync lowers
    /// it to what the provider reports, a 429 empties it).
    pub(crate) fn scaled(&self, factor: f64) -> ScopeLimits {
        let mut limits = self.base.clone();
        for l in &mut limits.limits {
            let headroom = l.headroom.unwrap_or(self.headroom);
            if factor < 1.0 {
                // The default burst: one period's amount after headroom, at least one unit.
                let burst = ((l.amount as f64 * headroom).floor() as u64).max(1);
                l.burst = Some(l.burst.unwrap_or(burst));
            }
            l.headroom = Some(headroom * factor);
        }
        limits
    }

    /// Takes the limits one answer reported: each with a `reset` is a sample of the rate its
    /// configured limit (of the same dimension, the shortest period) really refills at. The
    /// report describes the provider's bucket right after it charged the call, `age` before the
    /// answer was read (its `reset`, measured from the reading, is `age` shorter than it was
    /// then; a `reset` already past when read says too little and is skipped).
    pub(crate) fn observe(&mut self, reported: &[ProviderLimit], age: Nanos) {
        for l in reported {
            let Some(reset) = l.reset_in else { continue };
            if reset.is_zero() && age > Nanos::ZERO {
                // Full again some time before the answer was read: when, it does not say.
                continue;
            }
            let reset = reset.saturating_add(age.as_duration());
            let learnt = self
                .learnt
                .iter_mut()
                .filter(|x| x.dimension == l.dimension)
                .min_by_key(|x| x.period);
            if let Some(x) = learnt {
                x.estimate.observe(l.remaining, reset, x.period);
            }
        }
    }

    /// Takes a rate-limited answer to the call of `place` among the provider scope's admissions
    /// (0: not counted there), admitted at `at`: returns the request rate, per second, that the
    /// provider refilled at since the earliest kept throttle (the middle of its bounds), when
    /// the adaptive rate counts requests.
    pub(crate) fn throttled(&mut self, place: u64, at: Nanos) -> Option<f64> {
        if place == 0 || self.dimension != Dimension::Requests {
            return None;
        }
        let (lower, upper) = self.throttles.observe(place, at)?;
        Some((lower + upper) / 2.0)
    }

    /// The slowest rate, per second, at which the answers allow that the provider refills
    /// requests for this client (the lower bound of the request limit's estimate), once it is
    /// trusted.
    pub(crate) fn request_rate_floor(&self) -> Option<f64> {
        self.learnt
            .iter()
            .filter(|x| x.dimension == Dimension::Requests)
            .min_by_key(|x| x.period)
            .and_then(|x| x.estimate.bounds())
            .map(|(lower, _)| lower)
    }

    /// The smallest of learnt rate ÷ configured rate over the limits whose estimate is trusted,
    /// each rate read from its estimate's bounds by `pick`, at most 1; `None` while no estimate
    /// is trusted. A limit whose answers allow its configured rate (within their bounds) keeps
    /// it: rounding does not lower a limit that is right.
    fn reported(&self, pick: impl Fn(f64, f64) -> f64) -> Option<f64> {
        self.learnt
            .iter()
            .filter_map(|x| {
                let (lower, upper) = x.estimate.bounds()?;
                let per_second = x.amount / x.period.as_secs_f64();
                Some(if upper < per_second {
                    pick(lower, upper) / per_second
                } else {
                    1.0
                })
            })
            .reduce(f64::min)
    }

    /// The factor the answers allow, from the upper bounds of their estimates: the local buckets
    /// may refill a little faster than the provider's, since header sync holds them to what it
    /// reports, but not slower, which would lose for good what the bounds' width withholds (a
    /// sync never raises a bucket).
    fn reported_factor(&self) -> f64 {
        self.reported(|_, upper| upper).unwrap_or(1.0)
    }

    /// The rate, per second, that the answers guarantee the provider scope (the lower bounds of
    /// their estimates), once one is trusted: a throttle restarts from it (but from at most
    /// [`AimdRate::MAX_KEEP`] of the rate it cuts).
    pub(crate) fn reported_floor(&self) -> Option<f64> {
        self.reported(|lower, _| lower).map(|f| f * self.ceiling)
    }

    /// The rate the client was really allowed at `now`, per second: the stricter of the throttle
    /// rate and what the answers report.
    pub(crate) fn allowed(&self, now: Nanos) -> f64 {
        self.rate
            .rate(now)
            .min(self.reported_factor() * self.ceiling)
    }

    /// The factor on the configured limits at `now`, within `[floor, 1]`.
    pub(crate) fn factor_at(&self, now: Nanos) -> f64 {
        let floor = self.rate.floor() / self.ceiling;
        (self.allowed(now) / self.ceiling).clamp(floor.min(1.0), 1.0)
    }
}
