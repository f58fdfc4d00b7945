//! [`ThrottleRefill`]: the rate a provider's limit really refills at for this client, measured
//! between the calls it throttles, for a provider that reports nothing else.

use crate::Nanos;

/// The rate, in requests per second, at which a provider's request limit refills for this
/// client, measured between its throttles: what a provider that sends no rate-limit headers
/// tells of its limit.
///
/// A provider that throttles a call has an empty bucket: less than one request left. Between two
/// throttles, of calls the client admitted at `t₀` and `t₁`, the provider admitted the `n` calls
/// the client sent in between and it did not throttle, and refilled `ρ·(t₁ − t₀)`:
/// `n = ρ·(t₁ − t₀) + x₀ − x₁` with both fill levels `x` in `[0, 1)`. So
///
/// `(n − 1) / (t₁ − t₀) < ρ < (n + 1) / (t₁ − t₀)`.
///
/// The lower bound holds even when the bucket filled up in between (the provider then admitted
/// less than it refilled); the upper one only when it did not, as under a client that keeps it
/// nearly empty (the only one that is throttled often). Neither holds for a provider of another
/// model (a fixed window admits a whole window's worth at each reset), which is why the adaptive
/// rate never restarts from a measured rate above
/// [`AimdRate::MAX_KEEP`](crate::AimdRate::MAX_KEEP) of the rate it was cut from.
///
/// Calls are known by their place: the number the client gave each call it admitted, in order.
/// The estimate measures from the oldest of the last [`THROTTLES`](Self::THROTTLES) throttles,
/// so a change of the real rate is followed within that many.
///
/// ```
/// use tollgate_core::{Nanos, ThrottleRefill};
///
/// // A client sends a call every 0.8 s; the provider throttles the calls numbered 100 and 600,
/// // 400 s apart, and admits the 499 in between.
/// let mut t = ThrottleRefill::new();
/// let at = |place: u64| Nanos::from_millis(place * 800);
/// assert_eq!(t.observe(100, at(100)), None); // the first says nothing yet
/// let (lower, upper) = t.observe(600, at(600)).unwrap();
/// // 499 calls admitted in 400 s: between 498 and 500 in 400 s.
/// assert!((lower - 498.0 / 400.0).abs() < 1e-12);
/// assert!((upper - 500.0 / 400.0).abs() < 1e-12);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ThrottleRefill {
    /// The last throttles, a ring: each throttled call's place and admission.
    marks: [Mark; ThrottleRefill::THROTTLES],
    len: usize,
    next: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Mark {
    place: u64,
    at: Nanos,
}

impl ThrottleRefill {
    /// How many of the last throttles are kept.
    pub const THROTTLES: usize = 8;

    /// An estimate with no throttles.
    pub const fn new() -> Self {
        ThrottleRefill {
            marks: [Mark {
                place: 0,
                at: Nanos::ZERO,
            }; ThrottleRefill::THROTTLES],
            len: 0,
            next: 0,
        }
    }

    /// Takes a throttle of the call of `place`, admitted at `at`. Returns the bounds of the
    /// refill rate, per second, measured from the earliest kept throttle before it (the calls
    /// between the two, less the kept throttles among them), if there is one and at least two
    /// calls went through in between. Throttles answered out of order count where they were
    /// admitted.
    pub fn observe(&mut self, place: u64, at: Nanos) -> Option<(f64, f64)> {
        let kept = &self.marks[..self.len];
        let oldest = kept
            .iter()
            .filter(|m| m.place < place && m.at < at)
            .min_by_key(|m| m.place)
            .copied();
        // The calls admitted strictly between the two, less the throttled ones among them.
        let measured = oldest.and_then(|o| {
            let throttled = kept
                .iter()
                .filter(|m| m.place > o.place && m.place < place)
                .count() as u64;
            let admitted = (place - o.place - 1).saturating_sub(throttled);
            let span = (at - o.at).as_duration().as_secs_f64();
            (admitted >= 2).then(|| {
                let n = admitted as f64;
                ((n - 1.0) / span, (n + 1.0) / span)
            })
        });
        self.marks[self.next] = Mark { place, at };
        self.next = (self.next + 1) % Self::THROTTLES;
        self.len = (self.len + 1).min(Self::THROTTLES);
        measured
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A provider's bucket of one minute's worth refilled at `ρ`, a client sending calls at its
    /// own times: every throttle's bound is below the real rate.
    fn run(rho: f64, gaps_ms: &[u64]) -> Vec<(f64, f64)> {
        let full = rho * 60.0;
        let (mut x, mut now, mut last) = (full, 0u64, 0u64);
        let mut t = ThrottleRefill::new();
        let mut bounds = Vec::new();
        for (place, gap) in (1u64..).zip(gaps_ms) {
            now += gap;
            x = (x + rho * (now - last) as f64 / 1000.0).min(full);
            last = now;
            if x >= 1.0 {
                x -= 1.0;
            } else if let Some(b) = t.observe(place, Nanos::from_millis(now)) {
                bounds.push(b);
            }
        }
        bounds
    }

    proptest! {
        #[test]
        fn every_bound_is_below_the_real_rate(
            per_min in 1u32..2_000,
            gaps in prop::collection::vec(1u64..3_000, 1..3_000),
        ) {
            let rho = f64::from(per_min) / 60.0;
            for (lower, _) in run(rho, &gaps) {
                prop_assert!(lower <= rho * (1.0 + 1e-9), "{lower} > {rho}");
            }
        }

        /// A client that never lets the bucket fill up: the real rate lies within the bounds.
        #[test]
        fn a_bucket_kept_from_filling_up_lies_within_the_bounds(
            per_min in 30u32..2_000,
            gaps in prop::collection::vec(1u64..1_000, 1..3_000),
        ) {
            let rho = f64::from(per_min) / 60.0;
            // No gap longer than half a refill time: sending at least twice the refill, the
            // client keeps the bucket from filling up again after its first throttle.
            let most = ((500.0 / rho) as u64).max(1);
            let fast: Vec<u64> = gaps.iter().map(|&g| g.min(most)).collect();
            for (lower, upper) in run(rho, &fast) {
                prop_assert!(lower <= rho * (1.0 + 1e-9) && rho <= upper * (1.0 + 1e-9), "{rho} outside [{lower}, {upper}]");
            }
        }
    }

    /// A client that keeps the bucket nearly empty learns the rate closely: within one call in
    /// what the provider admits between its oldest and newest kept throttles.
    #[test]
    fn a_saturating_client_learns_the_rate() {
        let rho = 70.0 / 60.0;
        // 72 a minute: a little faster than the refill, so the bucket runs dry and a throttle
        // comes about every 30 s.
        let bounds = run(rho, &[833; 4_000]);
        assert!(bounds.len() > 10);
        let (lower, upper) = *bounds.last().unwrap();
        assert!(lower > rho * 0.99 && lower <= rho, "{lower}");
        assert!(upper < rho * 1.01 && upper >= rho, "{upper}");
    }

    #[test]
    fn a_throttle_older_than_every_kept_one_measures_nothing() {
        let mut t = ThrottleRefill::new();
        assert_eq!(t.observe(50, Nanos::from_secs(50)), None);
        assert_eq!(t.observe(40, Nanos::from_secs(40)), None);
        // From 40: 59 calls between, one of them (50) throttled: at least 57 in 60 s.
        let (b, _) = t.observe(100, Nanos::from_secs(100)).unwrap();
        assert!((b - 57.0 / 60.0).abs() < 1e-12, "{b}");
    }
}
