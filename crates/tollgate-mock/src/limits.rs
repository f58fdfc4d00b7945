//! The mock's own limit model: three buckets (requests, input tokens, output tokens), all-or-nothing
//! admission, output reserved at `max_tokens` and refunded at the end.
//!
//! Deliberately independent of `tollgate-core`, so the simulator can catch the layer's bugs. Pure:
//! every method takes `now`, the virtual time since the provider was built. Integer arithmetic
//! throughout: a token bucket keeps its level in units of 1/60 000 000 000 of a token (one token per
//! minute is one unit per nanosecond), so refill, waits and remaining counts are exact.

use std::time::Duration;

/// Nanoseconds in a minute, the period of every limit.
const MINUTE_NS: u64 = 60_000_000_000;

/// One of the three limited quantities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dimension {
    /// Requests per minute.
    Requests,
    /// Input tokens per minute.
    InputTokens,
    /// Output tokens per minute.
    OutputTokens,
}

impl Dimension {
    /// All dimensions, in the order admission checks them.
    pub(crate) const ALL: [Dimension; 3] = [
        Dimension::Requests,
        Dimension::InputTokens,
        Dimension::OutputTokens,
    ];
}

/// What [`Limiter::try_admit`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Everything fitted and has been charged.
    Admit,
    /// Not now: everything fits after `wait` (the longest wait, of `dimension`). Nothing charged.
    Limited {
        dimension: Dimension,
        wait: Duration,
    },
    /// Never: the cost exceeds the capacity of `dimension`. Nothing charged.
    TooLarge { dimension: Dimension },
}

/// What headers report for one dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DimensionState {
    /// Whole units available now.
    pub(crate) remaining: u64,
    /// Time until the bucket is full again (zero if it is).
    pub(crate) until_full: Duration,
}

#[derive(Clone, Debug)]
enum Bucket {
    /// `level` in units of 1/MINUTE_NS token; refills `cap` units per nanosecond.
    Token { cap: u64, level: u128, last: u64 },
    /// `used` in window number `window` (windows are `[k·60 s, (k+1)·60 s)`).
    Window { cap: u64, used: u64, window: u64 },
}

impl Bucket {
    fn new(algorithm: crate::Algorithm, cap: u64) -> Self {
        match algorithm {
            crate::Algorithm::TokenBucket => Bucket::Token {
                cap,
                level: u128::from(cap) * u128::from(MINUTE_NS),
                last: 0,
            },
            crate::Algorithm::FixedWindow => Bucket::Window {
                cap,
                used: 0,
                window: 0,
            },
        }
    }

    fn cap(&self) -> u64 {
        match *self {
            Bucket::Token { cap, .. } | Bucket::Window { cap, .. } => cap,
        }
    }

    fn advance(&mut self, now: u64) {
        match self {
            Bucket::Token { cap, level, last } => {
                if now > *last {
                    // After a minute the bucket is full whatever it held; capping `dt` keeps the
                    // product far from overflow.
                    let dt = (now - *last).min(MINUTE_NS);
                    let full = u128::from(*cap) * u128::from(MINUTE_NS);
                    *level = (*level + u128::from(*cap) * u128::from(dt)).min(full);
                    *last = now;
                }
            }
            Bucket::Window { used, window, .. } => {
                let current = now / MINUTE_NS;
                if current > *window {
                    *window = current;
                    *used = 0;
                }
            }
        }
    }

    /// Nanoseconds until `cost` fits (0 if it fits now). Call after `advance(now)`.
    fn wait_ns(&self, now: u64, cost: u64) -> u64 {
        match *self {
            Bucket::Token { cap, level, .. } => {
                let need = u128::from(cost) * u128::from(MINUTE_NS);
                if level >= need {
                    0
                } else {
                    saturate((need - level).div_ceil(u128::from(cap)))
                }
            }
            Bucket::Window { cap, used, window } => {
                if used.saturating_add(cost) <= cap {
                    0
                } else {
                    window_end(window).saturating_sub(now)
                }
            }
        }
    }

    fn charge(&mut self, cost: u64) {
        match self {
            Bucket::Token { level, .. } => {
                *level = level.saturating_sub(u128::from(cost) * u128::from(MINUTE_NS));
            }
            Bucket::Window { used, .. } => *used = used.saturating_add(cost),
        }
    }

    fn refund(&mut self, amount: u64, charged_at: u64) {
        match self {
            Bucket::Token { cap, level, .. } => {
                let full = u128::from(*cap) * u128::from(MINUTE_NS);
                *level = (*level + u128::from(amount) * u128::from(MINUTE_NS)).min(full);
            }
            // A refund only matters in the window that was charged; later windows start afresh.
            Bucket::Window { used, window, .. } => {
                if charged_at / MINUTE_NS == *window {
                    *used = used.saturating_sub(amount);
                }
            }
        }
    }

    /// Whole units available. Call after `advance(now)`.
    fn remaining(&self) -> u64 {
        match *self {
            // A level below 2^64 units (any limit under about 300 million per minute) divides in
            // 64 bits.
            Bucket::Token { level, .. } => match u64::try_from(level) {
                Ok(level) => level / MINUTE_NS,
                Err(_) => saturate(level / u128::from(MINUTE_NS)),
            },
            Bucket::Window { cap, used, .. } => cap.saturating_sub(used),
        }
    }

    /// Nanoseconds until the bucket is full again (0 if it is). Call after `advance(now)`.
    fn until_full_ns(&self, now: u64) -> u64 {
        match *self {
            Bucket::Token { cap, level, .. } => {
                let full = u128::from(cap) * u128::from(MINUTE_NS);
                saturate((full - level).div_ceil(u128::from(cap)))
            }
            Bucket::Window { used, window, .. } => {
                if used == 0 {
                    0
                } else {
                    window_end(window).saturating_sub(now)
                }
            }
        }
    }
}

fn window_end(window: u64) -> u64 {
    window.saturating_add(1).saturating_mul(MINUTE_NS)
}

fn saturate(x: u128) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}

fn nanos(d: Duration) -> u64 {
    saturate(d.as_nanos())
}

// ===== impl Limiter =====

/// The three buckets of one key, indexed by [`Dimension`].
#[derive(Clone, Debug)]
pub(crate) struct Limiter {
    buckets: [Bucket; 3],
}

impl Limiter {
    /// Full buckets with capacities `[rpm, input_tpm, output_tpm]`, each greater than zero.
    pub(crate) fn new(algorithm: crate::Algorithm, caps: [u64; 3]) -> Self {
        Self {
            buckets: caps.map(|cap| Bucket::new(algorithm, cap)),
        }
    }

    fn advance(&mut self, now: u64) {
        for bucket in &mut self.buckets {
            bucket.advance(now);
        }
    }

    /// Brings every bucket to `now` (refill, or a new window).
    pub(crate) fn advance_to(&mut self, now: Duration) {
        self.advance(nanos(now));
    }

    /// What `dimension` has left, as of the last [`Limiter::advance_to`] (or admission, or
    /// refund).
    pub(crate) fn remaining(&self, dimension: Dimension) -> u64 {
        self.buckets[dimension as usize].remaining()
    }

    /// Time from `now` until `dimension` is full again, as of the last [`Limiter::advance_to`]
    /// `now` (or admission, or refund, at `now`).
    pub(crate) fn until_full(&self, dimension: Dimension, now: Duration) -> Duration {
        Duration::from_nanos(self.buckets[dimension as usize].until_full_ns(nanos(now)))
    }

    /// Admits `costs` (`[1, input_tokens, max_tokens]`) if all three fit, charging all of them, or
    /// charges nothing.
    pub(crate) fn try_admit(&mut self, now: Duration, costs: [u64; 3]) -> Decision {
        let now = nanos(now);
        self.advance(now);
        for (dimension, (bucket, &cost)) in Dimension::ALL
            .into_iter()
            .zip(self.buckets.iter().zip(&costs))
        {
            if cost > bucket.cap() {
                return Decision::TooLarge { dimension };
            }
        }
        let mut binding = None;
        for (dimension, (bucket, &cost)) in Dimension::ALL
            .into_iter()
            .zip(self.buckets.iter().zip(&costs))
        {
            let wait = bucket.wait_ns(now, cost);
            if wait > 0 && binding.is_none_or(|(_, longest)| wait > longest) {
                binding = Some((dimension, wait));
            }
        }
        if let Some((dimension, wait)) = binding {
            return Decision::Limited {
                dimension,
                wait: Duration::from_nanos(wait),
            };
        }
        for (bucket, cost) in self.buckets.iter_mut().zip(costs) {
            bucket.charge(cost);
        }
        Decision::Admit
    }

    /// Gives back `amount` of `dimension` that a call admitted at `charged_at` did not use.
    ///
    /// Only that bucket is brought to `now`: the others come to the same state whenever they are
    /// next brought forward, since refilling to `t1` and then to `t2` is refilling to `t2`, and a
    /// window that turned over in between resets either way.
    pub(crate) fn refund(
        &mut self,
        now: Duration,
        dimension: Dimension,
        amount: u64,
        charged_at: Duration,
    ) {
        let bucket = &mut self.buckets[dimension as usize];
        bucket.advance(nanos(now));
        bucket.refund(amount, nanos(charged_at));
    }

    /// What each dimension has left at `now`.
    #[cfg(test)]
    pub(crate) fn state(&mut self, now: Duration) -> [DimensionState; 3] {
        self.advance_to(now);
        Dimension::ALL.map(|d| DimensionState {
            remaining: self.remaining(d),
            until_full: self.until_full(d, now),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Algorithm;
    use proptest::prelude::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn token_bucket_burst_then_refill() {
        let mut l = Limiter::new(Algorithm::TokenBucket, [60, 1000, 1000]);
        for _ in 0..60 {
            assert_eq!(l.try_admit(Duration::ZERO, [1, 0, 0]), Decision::Admit);
        }
        assert_eq!(
            l.try_admit(Duration::ZERO, [1, 0, 0]),
            Decision::Limited {
                dimension: Dimension::Requests,
                wait: S
            }
        );
        assert!(!l
            .try_admit(S - Duration::from_nanos(1), [1, 0, 0])
            .is_admit());
        assert_eq!(l.try_admit(S, [1, 0, 0]), Decision::Admit);
        let [req, ..] = l.state(S);
        assert_eq!(req.remaining, 0);
        assert_eq!(req.until_full, Duration::from_secs(60));
    }

    #[test]
    fn binding_dimension_is_the_longest_wait() {
        let mut l = Limiter::new(Algorithm::TokenBucket, [60, 600, 60]);
        assert_eq!(l.try_admit(Duration::ZERO, [1, 600, 30]), Decision::Admit);
        // requests: 59 left; input: empty, 10/s; output: 30 left, 1/s.
        assert_eq!(
            l.try_admit(Duration::ZERO, [1, 20, 40]),
            Decision::Limited {
                dimension: Dimension::OutputTokens,
                wait: 10 * S
            }
        );
        assert_eq!(
            l.try_admit(Duration::ZERO, [1, 100, 40]),
            Decision::Limited {
                dimension: Dimension::InputTokens,
                wait: 10 * S
            }
        );
        assert_eq!(
            l.try_admit(Duration::ZERO, [1, 0, 61]),
            Decision::TooLarge {
                dimension: Dimension::OutputTokens
            }
        );
    }

    #[test]
    fn fixed_window_resets_on_the_boundary() {
        let mut l = Limiter::new(Algorithm::FixedWindow, [10, 100, 100]);
        for i in 0..10 {
            assert_eq!(
                l.try_admit(Duration::from_secs(i), [1, 0, 0]),
                Decision::Admit
            );
        }
        assert_eq!(
            l.try_admit(Duration::from_secs(15), [1, 0, 0]),
            Decision::Limited {
                dimension: Dimension::Requests,
                wait: Duration::from_secs(45)
            }
        );
        assert_eq!(
            l.state(Duration::from_secs(15))[0].until_full,
            Duration::from_secs(45)
        );
        assert_eq!(
            l.try_admit(Duration::from_secs(60), [1, 0, 0]),
            Decision::Admit
        );
        assert_eq!(l.state(Duration::from_secs(60))[0].remaining, 9);
    }

    #[test]
    fn refund_applies_to_the_charged_window_only() {
        let mut l = Limiter::new(Algorithm::FixedWindow, [10, 100, 100]);
        assert_eq!(l.try_admit(Duration::ZERO, [1, 0, 100]), Decision::Admit);
        l.refund(
            Duration::from_secs(1),
            Dimension::OutputTokens,
            60,
            Duration::ZERO,
        );
        assert_eq!(l.state(Duration::from_secs(1))[2].remaining, 60);
        assert!(!l.try_admit(Duration::from_secs(59), [1, 0, 100]).is_admit());
        assert_eq!(
            l.try_admit(Duration::from_secs(60), [1, 0, 100]),
            Decision::Admit
        );
        // A refund for the old window must not inflate the new one.
        l.refund(
            Duration::from_secs(61),
            Dimension::OutputTokens,
            50,
            Duration::from_secs(59),
        );
        assert_eq!(l.state(Duration::from_secs(61))[2].remaining, 0);
    }

    /// A refund arriving when the bucket has refilled meanwhile must not push it past full.
    #[test]
    fn refund_never_overfills_the_token_bucket() {
        let mut l = Limiter::new(Algorithm::TokenBucket, [60, 60, 60]);
        assert_eq!(l.try_admit(Duration::ZERO, [1, 0, 30]), Decision::Admit);
        l.refund(
            Duration::from_secs(20),
            Dimension::OutputTokens,
            30,
            Duration::ZERO,
        );
        let out = l.state(Duration::from_secs(20))[2];
        assert_eq!((out.remaining, out.until_full), (60, Duration::ZERO));
        assert!(
            l.try_admit(Duration::from_secs(20), [1, 0, 61])
                == Decision::TooLarge {
                    dimension: Dimension::OutputTokens
                }
        );
        assert_eq!(
            l.try_admit(Duration::from_secs(20), [1, 0, 60]),
            Decision::Admit
        );
        assert!(!l.try_admit(Duration::from_secs(20), [1, 0, 1]).is_admit());
    }

    impl Decision {
        fn is_admit(&self) -> bool {
            *self == Decision::Admit
        }
    }

    /// One arrival: gap since the previous one (ms), input tokens, max_tokens, actual output,
    /// and how long after admission the call ends (ms).
    type Arrival = (u64, u64, u64, u64, u64);
    /// Admitted charges `(t_ns, [requests, input, output])`.
    type Charges = Vec<(u64, [u64; 3])>;
    /// Refunds `(t_ns, output)`, in time order.
    type Refunds = Vec<(u64, u64)>;

    fn arrivals() -> impl Strategy<Value = Vec<Arrival>> {
        let gap = prop_oneof![Just(0u64), 0u64..100, 0u64..3_000];
        prop::collection::vec((gap, 0u64..700, 0u64..400, 0u64..400, 0u64..20_000), 1..200)
    }

    /// Replays the arrivals (with refunds at each call's end), checking that no bucket ever holds
    /// more than its capacity.
    fn replay(algorithm: Algorithm, caps: [u64; 3], arrivals: &[Arrival]) -> (Charges, Refunds) {
        let mut l = Limiter::new(algorithm, caps);
        let mut t = 0;
        let mut pending: Vec<(u64, u64, u64)> = Vec::new(); // (end, refund, charged_at)
        let (mut charges, mut refunds) = (Vec::new(), Vec::new());
        for &(gap, input, max, out, dur) in arrivals {
            t += gap * 1_000_000;
            pending.sort_unstable();
            while let Some(&(end, amount, at)) = pending.first().filter(|p| p.0 <= t) {
                l.refund(
                    Duration::from_nanos(end),
                    Dimension::OutputTokens,
                    amount,
                    Duration::from_nanos(at),
                );
                refunds.push((end, amount));
                pending.remove(0);
            }
            let admitted = l
                .try_admit(Duration::from_nanos(t), [1, input, max])
                .is_admit();
            for (state, cap) in l.state(Duration::from_nanos(t)).iter().zip(caps) {
                assert!(
                    state.remaining <= cap,
                    "{} remaining > capacity {cap}",
                    state.remaining
                );
            }
            if admitted {
                charges.push((t, [1, input, max]));
                pending.push((t + dur * 1_000_000, max - out.min(max), t));
            }
        }
        (charges, refunds)
    }

    proptest! {
        /// In any window [a, b], charges − refunds ≤ capacity + rate · (b − a).
        #[test]
        fn token_bucket_never_exceeds_capacity_plus_refill(caps in [1u64..100, 1u64..3_000, 1u64..2_000], arrivals in arrivals()) {
            let (charges, refunds) = replay(Algorithm::TokenBucket, caps, &arrivals);
            // Prefix sums: charged[i][d] = sum of the first i charges; refunds are in time order.
            let mut charged = vec![[0u128; 3]];
            for c in &charges {
                let last = charged[charged.len() - 1];
                charged.push([0, 1, 2].map(|d| last[d] + u128::from(c.1[d])));
            }
            let mut refunded = vec![0u128];
            for r in &refunds {
                refunded.push(refunded[refunded.len() - 1] + u128::from(r.1));
            }
            let refunded_in = |a: u64, b: u64| -> u128 {
                let lo = refunds.partition_point(|r| r.0 < a);
                let hi = refunds.partition_point(|r| r.0 <= b);
                refunded[hi] - refunded[lo]
            };
            for i in 0..charges.len() {
                for j in i..charges.len() {
                    let (a, b) = (charges[i].0, charges[j].0);
                    // All charges in [a, b]: those at time a come first, those at time b last.
                    let hi = j + charges[j..].iter().take_while(|c| c.0 == b).count();
                    let lo = charges[..i].iter().rev().take_while(|c| c.0 == a).count();
                    for (d, &cap) in caps.iter().enumerate() {
                        let sum = charged[hi][d] - charged[i - lo][d];
                        let net = if d == 2 { sum.saturating_sub(refunded_in(a, b)) } else { sum };
                        let cap = u128::from(cap);
                        prop_assert!(net * u128::from(MINUTE_NS) <= cap * u128::from(MINUTE_NS) + cap * u128::from(b - a),
                            "dimension {d}: net {net} in [{a}, {b}] ns, cap {cap}");
                    }
                }
            }
        }

        /// A refund brings only its own bucket forward, and nothing that follows changes: a twin
        /// that brings all three forward at every refund decides and reports the same.
        #[test]
        fn a_refund_needs_only_its_own_bucket_brought_forward(caps in [1u64..100, 1u64..3_000, 1u64..2_000], arrivals in arrivals(), window in any::<bool>()) {
            let algorithm = if window { Algorithm::FixedWindow } else { Algorithm::TokenBucket };
            let (mut one, mut all) = (Limiter::new(algorithm, caps), Limiter::new(algorithm, caps));
            let mut t = 0;
            let mut pending: Vec<(u64, u64, u64)> = Vec::new(); // (end, refund, charged_at)
            for &(gap, input, max, out, dur) in &arrivals {
                t += gap * 1_000_000;
                pending.sort_unstable();
                while let Some(&(end, amount, at)) = pending.first().filter(|p| p.0 <= t) {
                    let (end, at) = (Duration::from_nanos(end), Duration::from_nanos(at));
                    one.refund(end, Dimension::OutputTokens, amount, at);
                    all.advance_to(end);
                    all.refund(end, Dimension::OutputTokens, amount, at);
                    pending.remove(0);
                }
                let now = Duration::from_nanos(t);
                let decision = one.try_admit(now, [1, input, max]);
                prop_assert_eq!(decision, all.try_admit(now, [1, input, max]));
                prop_assert_eq!(one.state(now), all.state(now));
                if decision.is_admit() {
                    pending.push((t + dur * 1_000_000, max - out.min(max), t));
                }
            }
        }

        /// Per 60 s window, charges − refunds made in that window ≤ capacity.
        #[test]
        fn fixed_window_never_exceeds_limit(caps in [1u64..100, 1u64..3_000, 1u64..2_000], arrivals in arrivals()) {
            let (charges, refunds) = replay(Algorithm::FixedWindow, caps, &arrivals);
            let last = charges.last().map_or(0, |c| c.0 / MINUTE_NS);
            for w in 0..=last {
                let in_window = |t: u64| t / MINUTE_NS == w;
                let charged = [0, 1, 2].map(|d| charges.iter().filter(|c| in_window(c.0)).map(|c| c.1[d]).sum::<u64>());
                let refunded: u64 = refunds.iter().filter(|r| in_window(r.0)).map(|r| r.1).sum();
                // Requests and input are never refunded; output refunds free room in their own window.
                prop_assert!(charged[0] <= caps[0] && charged[1] <= caps[1], "window {w}: {charged:?} > {caps:?}");
                prop_assert!(charged[2] <= caps[2] + refunded, "window {w}: {charged:?} > {caps:?} + {refunded}");
            }
        }
    }
}
