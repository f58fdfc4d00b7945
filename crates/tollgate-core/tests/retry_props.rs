//! Property tests of the retry math: each backoff jitter's range against the AWS blog's formulas
//! (recomputed here in exact `u128` arithmetic), the official SDKs' schedule, honouring a
//! provider's delay, the AWS retry quota's bound, and the CUBIC adaptive rate against its curve.

use proptest::prelude::*;
use rand_chacha::{rand_core::SeedableRng, ChaCha8Rng};
use std::time::Duration;
use tollgate_core::{
    AdaptiveRate, Backoff, BackoffState, Jitter, MeasuredRate, Nanos, NextRetry, RetryBudget,
    RetryKind, Rule,
};

// ---------------------------------------------------------------------------------------------
// Helpers.

fn ns(d: Duration) -> u128 {
    d.as_nanos()
}

/// `min(cap, base·2^attempt)` in exact arithmetic (`base ≥ 1`, so any attempt ≥ 64 is the cap).
fn exponential(base: u128, cap: u128, attempt: u32) -> u128 {
    if attempt >= 64 {
        cap
    } else {
        cap.min(base << attempt)
    }
}

fn backoff(jitter: Jitter, base: u64, cap: u64, max_retries: u32) -> Backoff {
    Backoff::builder()
        .jitter(jitter)
        .base(Duration::from_nanos(base))
        .cap(Duration::from_nanos(cap))
        .max_retries(max_retries)
        .build()
        .expect("valid backoff")
}

fn drain(mut state: BackoffState, rng: &mut ChaCha8Rng) -> Vec<Duration> {
    std::iter::from_fn(|| state.next_delay(rng)).collect()
}

// ---------------------------------------------------------------------------------------------
// Strategies.

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
        Just(Jitter::Sdk),
    ]
}

/// `(base, cap)` in nanoseconds, `1 ≤ base ≤ cap`: everyday values (1 ms..10 s base, up to a few
/// minutes cap) and extremes (1 ns base, cap up to `u64::MAX`).
fn base_cap() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![
        (1_000_000u64..=10_000_000_000, 1u64..=64)
            .prop_map(|(base, mult)| (base, base.saturating_mul(mult))),
        (1u64..=u64::MAX).prop_flat_map(|base| (Just(base), base..=u64::MAX)),
        Just((1, u64::MAX)),
        Just((u64::MAX, u64::MAX)),
    ]
}

/// Attempt numbers, weighted towards the edges where `2^attempt` overflows.
fn attempt() -> impl Strategy<Value = u32> {
    prop_oneof![
        0u32..70,
        any::<u32>(),
        Just(u32::MAX),
        Just(u32::MAX - 1),
        Just(63u32),
        Just(64u32),
    ]
}

// ---------------------------------------------------------------------------------------------
// Backoff.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Each jitter's delay lies in the range its formula allows, is never above the cap, and no
    /// attempt number (up to `u32::MAX`) panics.
    #[test]
    fn each_jitter_stays_in_its_range(
        jitter in jitter(),
        (base, cap) in base_cap(),
        attempt in attempt(),
        prev_factor in 1u64..=1_000,
        seed in any::<u64>(),
    ) {
        let b = backoff(jitter, base, cap, 1);
        let (base128, cap128) = (u128::from(base), u128::from(cap));
        let v = exponential(base128, cap128, attempt);
        prop_assert_eq!(ns(b.exponential(attempt)), v);
        let previous = Duration::from_nanos(base.saturating_mul(prev_factor).min(cap));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let d = ns(b.delay(attempt, previous, &mut rng));
        prop_assert!(d <= cap128);
        match jitter {
            Jitter::None => prop_assert_eq!(d, v),
            Jitter::Full => prop_assert!(d <= v),
            Jitter::Equal => prop_assert!(v / 2 <= d && d <= v, "{} not in [{}/2, {}]", d, v, v),
            Jitter::Decorrelated => {
                let high = cap128.min(3 * ns(previous));
                prop_assert!(base128 <= d && d <= high, "{} not in [{}, {}]", d, base128, high);
            }
            Jitter::Sdk => {
                // `v·(1 − 0.25·U)`: in [0.75·v, v], checked as 4·d ≥ 3·v.
                prop_assert!(4 * d >= 3 * v && d <= v, "{} not in [0.75·{}, {}]", d, v, v);
            }
            _ => unreachable!(),
        }
    }

    /// Through a `BackoffState`: exactly `max_retries` delays, then `None` for good; each delay in
    /// its range, decorrelated ones against the delay before (`base` for the first).
    #[test]
    fn state_follows_the_formulas(
        jitter in jitter(),
        (base, cap) in base_cap(),
        max_retries in 1u32..=80,
        seed in any::<u64>(),
    ) {
        let b = backoff(jitter, base, cap, max_retries);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut state = b.start();
        let mut previous = u128::from(base);
        for k in 0..max_retries {
            prop_assert_eq!(state.remaining(), max_retries - k);
            let d = ns(state.next_delay(&mut rng).expect("a retry is left"));
            let v = exponential(u128::from(base), u128::from(cap), k);
            match jitter {
                Jitter::None => prop_assert_eq!(d, v),
                Jitter::Full => prop_assert!(d <= v),
                Jitter::Equal => prop_assert!(v / 2 <= d && d <= v),
                Jitter::Decorrelated => {
                    prop_assert!(u128::from(base) <= d && d <= u128::from(cap).min(3 * previous));
                }
                Jitter::Sdk => prop_assert!(4 * d >= 3 * v && d <= v),
                _ => unreachable!(),
            }
            previous = d;
        }
        prop_assert_eq!(state.retries(), max_retries);
        for _ in 0..3 {
            prop_assert_eq!(state.next_delay(&mut rng), None);
        }
    }

    /// The same seed gives the same delays; the generator is the only source of randomness.
    #[test]
    fn same_seed_same_sequence(
        jitter in jitter(),
        (base, cap) in base_cap(),
        max_retries in 1u32..=40,
        seed in any::<u64>(),
    ) {
        let b = backoff(jitter, base, cap, max_retries);
        let first = drain(b.start(), &mut ChaCha8Rng::seed_from_u64(seed));
        let second = drain(b.start(), &mut ChaCha8Rng::seed_from_u64(seed));
        prop_assert_eq!(first.len(), max_retries as usize);
        prop_assert_eq!(first, second);
    }

    /// The official SDKs' schedule: exactly two retries, in [0.375, 0.5] s then [0.75, 1] s; and
    /// at any later attempt `k`, in [0.75·min(0.5·2^k, 8), min(0.5·2^k, 8)] s.
    #[test]
    fn sdk_default_schedule(seed in any::<u64>(), k in attempt()) {
        let sdk = Backoff::sdk_default();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let delays = drain(sdk.start(), &mut rng);
        prop_assert_eq!(delays.len(), 2);
        for (k, d) in delays.into_iter().enumerate() {
            let v = 500_000_000u128 << k;
            prop_assert!(4 * ns(d) >= 3 * v && ns(d) <= v, "retry {}: {:?}", k, d);
        }
        let v = exponential(500_000_000, 8_000_000_000, k);
        let d = ns(sdk.delay(k, sdk.base(), &mut rng));
        prop_assert!(4 * d >= 3 * v && d <= v, "attempt {}: {}", k, d);
    }

    /// A provider's delay is used verbatim up to `honour_cap`, is `TooLong` above it without using
    /// a retry, and no retry is handed out past `max_retries`.
    #[test]
    fn provider_delay_is_honoured_up_to_the_cap(
        jitter in jitter(),
        max_retries in 1u32..=5,
        asks in prop::collection::vec(prop::option::of(0u64..=300_000), 1..20),
        honour_cap_ms in 0u64..=200_000,
        seed in any::<u64>(),
    ) {
        let b = backoff(jitter, 100_000_000, 10_000_000_000, max_retries);
        let honour_cap = Duration::from_millis(honour_cap_ms);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut state = b.start();
        for ask in asks {
            let used = state.retries();
            let ask = ask.map(Duration::from_millis);
            let next = state.next_delay_after(ask, honour_cap, &mut rng);
            if used == max_retries {
                prop_assert_eq!(next, NextRetry::Exhausted);
                prop_assert_eq!(next.delay(), None);
                continue;
            }
            match ask {
                Some(wait) if wait > honour_cap => {
                    prop_assert_eq!(next, NextRetry::TooLong(wait));
                    prop_assert_eq!(state.retries(), used);
                }
                Some(wait) => {
                    prop_assert_eq!(next, NextRetry::Provider(wait));
                    prop_assert_eq!(state.retries(), used + 1);
                }
                None => {
                    let d = match next {
                        NextRetry::Backoff(d) => d,
                        other => return Err(TestCaseError::fail(format!("{other:?}"))),
                    };
                    prop_assert!(d <= b.cap());
                    prop_assert_eq!(state.retries(), used + 1);
                }
            }
        }
    }
}

#[test]
fn backoff_rules() {
    let rule = |b: tollgate_core::BackoffBuilder| b.build().unwrap_err().rule();
    assert_eq!(
        rule(Backoff::builder().base(Duration::ZERO)),
        Rule::ZeroDuration
    );
    assert_eq!(
        rule(Backoff::builder().cap(Duration::from_millis(1))),
        Rule::CapBelowBase
    );
    assert_eq!(rule(Backoff::builder().max_retries(0)), Rule::ZeroRetries);
    // Durations beyond u64 nanoseconds saturate instead of failing or panicking.
    let huge = Backoff::builder()
        .base(Duration::MAX)
        .cap(Duration::MAX)
        .build()
        .unwrap();
    assert_eq!(huge.exponential(u32::MAX), Duration::from_nanos(u64::MAX));
}

/// The research note's SDK schedule: waits of [0.375, 0.5], [0.75, 1], …, [6, 8] s.
#[test]
fn sdk_schedule_matches_the_research_table() {
    let sdk = Backoff::sdk_default();
    let expect = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0];
    for (k, v) in expect.into_iter().enumerate() {
        assert_eq!(sdk.exponential(k as u32), Duration::from_secs_f64(v));
    }
}

// ---------------------------------------------------------------------------------------------
// Retry budget.

fn kind() -> impl Strategy<Value = RetryKind> {
    prop_oneof![
        Just(RetryKind::Throttle),
        Just(RetryKind::Transient),
        Just(RetryKind::Timeout),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    Withdraw(RetryKind),
    Success,
    Refund(RetryKind),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => kind().prop_map(Op::Withdraw),
        2 => Just(Op::Success),
        1 => kind().prop_map(Op::Refund),
    ]
}

#[test]
fn aws_budget_allows_exactly_one_hundred_retries() {
    let mut budget = RetryBudget::aws_standard();
    let n = (0..10_000)
        .filter(|_| budget.try_withdraw(RetryKind::Throttle))
        .count();
    assert_eq!(n, 100);
    assert_eq!(budget.available(), 0);
    budget.deposit_success();
    assert_eq!(budget.available(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Starting full under 100 % failure, exactly `⌊capacity / cost⌋` withdrawals succeed.
    #[test]
    fn total_failure_allows_capacity_over_cost(
        capacity in 1u32..=5_000,
        cost_seed in any::<u32>(),
        kind in kind(),
    ) {
        let cost = 1 + cost_seed % capacity;
        let mut budget = RetryBudget::builder()
            .capacity(capacity)
            .cost(RetryKind::Throttle, cost)
            .cost(RetryKind::Transient, cost)
            .cost(RetryKind::Timeout, cost)
            .build()
            .unwrap();
        let n = (0..=capacity).filter(|_| budget.try_withdraw(kind)).count();
        prop_assert_eq!(n as u32, capacity / cost);
        prop_assert_eq!(budget.available(), capacity % cost);
    }

    /// Against a model in signed arithmetic: a withdrawal succeeds exactly when enough is left,
    /// each success deposits 1 up to the capacity, a refund gives the cost back up to the capacity;
    /// the balance never exceeds the capacity and never goes negative.
    #[test]
    fn budget_matches_its_model(ops in prop::collection::vec(op(), 0..400)) {
        let mut budget = RetryBudget::aws_standard();
        let capacity = i64::from(budget.capacity());
        let cost = |k| i64::from(RetryBudget::aws_standard().cost(k));
        let mut model = capacity;
        for op in ops {
            match op {
                Op::Withdraw(k) => {
                    let ok = budget.try_withdraw(k);
                    prop_assert_eq!(ok, model >= cost(k));
                    if ok {
                        model -= cost(k);
                    }
                }
                Op::Success => {
                    budget.deposit_success();
                    model = (model + 1).min(capacity);
                }
                Op::Refund(k) => {
                    budget.refund(k);
                    model = (model + cost(k)).min(capacity);
                }
            }
            prop_assert!((0..=capacity).contains(&model));
            prop_assert_eq!(i64::from(budget.available()), model);
        }
    }
}

#[test]
fn budget_rules() {
    for b in [
        RetryBudget::builder().cost(RetryKind::Timeout, 0),
        RetryBudget::builder().cost(RetryKind::Throttle, 501),
        RetryBudget::builder().capacity(9),
    ] {
        assert_eq!(b.build().unwrap_err().rule(), Rule::RetryCostOutOfRange);
    }
    assert!(RetryBudget::builder().capacity(10).build().is_ok());
}

// ---------------------------------------------------------------------------------------------
// Adaptive rate.

const BETA: f64 = 0.7;
const C: f64 = 0.4;

/// The curve as the research note states it, clamped.
fn cubic(w: f64, dt_secs: f64, floor: f64, ceiling: f64) -> f64 {
    let k = (w * (1.0 - BETA) / C).cbrt();
    (C * (dt_secs - k).powi(3) + w).clamp(floor, ceiling)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[derive(Clone, Debug)]
enum Event {
    /// After `gap` ms, a throttle, with or without a measured rate.
    Throttle { gap: u64, measured: Option<f64> },
    /// After `gap` ms, a success.
    Success { gap: u64 },
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (0u64..20_000, prop::option::of(0.0f64..2e6))
            .prop_map(|(gap, measured)| Event::Throttle { gap, measured }),
        (0u64..20_000).prop_map(|gap| Event::Success { gap }),
    ]
}

/// `(ceiling, floor)` with `0 < floor ≤ ceiling`.
fn ceiling_floor() -> impl Strategy<Value = (f64, f64)> {
    (0.5f64..1e6, 0.0001f64..=1.0).prop_map(|(ceiling, f)| (ceiling, ceiling * f))
}

#[test]
fn adaptive_values_at_a_few_times() {
    // W = 100/s: K = ∛75 ≈ 4.2172 s.
    let mut r = AdaptiveRate::new(1_000.0, 0.5).unwrap();
    let t0 = Nanos::from_secs(10);
    assert_eq!(r.on_throttle(t0, Some(100.0)), 100.0 * BETA);
    assert_eq!(r.last_max_rate(), Some(100.0));
    let k = 75f64.cbrt();
    for dt in [0.25, 1.0, 2.5, 4.0, 6.0, 10.0] {
        let at = t0 + Nanos::from(Duration::from_secs_f64(dt));
        let want = C * (dt - k).powi(3) + 100.0;
        assert!(
            close(r.rate(at), want),
            "t = {dt}: {} vs {want}",
            r.rate(at)
        );
    }
    // At t = K the rate is back at W, and it keeps growing to the ceiling.
    assert!(close(
        r.rate(t0 + Nanos::from(r.recovery_time().unwrap())),
        100.0
    ));
    assert_eq!(r.rate(t0 + Nanos::from_secs(60)), 1_000.0);
}

#[test]
fn measured_rate_converges_to_a_steady_rate() {
    let mut m = MeasuredRate::new(Nanos::ZERO);
    // 20 events a second for 10 s.
    for i in 0..200 {
        m.record(Nanos::from_millis(i * 50), 1);
    }
    assert!((m.rate() - 20.0).abs() < 1e-6, "{}", m.rate());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Over any run of throttles and successes: a throttle's result is exactly
    /// `max(floor, β·W)` with `W = clamp(min(measured, rate), floor, ceiling)` (`W` = the previous
    /// rate when nothing was measured), and the rate right then equals it; between events the
    /// rate follows the cubic curve, is back at `W` at `t = K`, and never leaves
    /// `[floor, ceiling]`.
    #[test]
    fn adaptive_follows_cubic(
        (ceiling, floor) in ceiling_floor(),
        events in prop::collection::vec(event(), 1..30),
        probes in prop::collection::vec(0u64..30_000, 1..6),
    ) {
        let mut r = AdaptiveRate::new(ceiling, floor).unwrap();
        let mut now = Nanos::ZERO;
        // (time, W) of the last throttle, while recovering.
        let mut last: Option<(Nanos, f64)> = None;
        for e in events {
            match e {
                Event::Throttle { gap, measured } => {
                    now = now + Nanos::from_millis(gap);
                    let before = r.rate(now);
                    let got = r.on_throttle(now, measured);
                    let w = measured.map_or(before, |m| m.min(before)).clamp(floor, ceiling);
                    prop_assert_eq!(got, (w * BETA).max(floor));
                    if measured.is_none() {
                        prop_assert_eq!(got, (before * BETA).max(floor));
                    }
                    prop_assert_eq!(r.rate(now), got);
                    prop_assert_eq!(r.last_max_rate(), Some(w));
                    last = Some((now, w));
                }
                Event::Success { gap } => {
                    now = now + Nanos::from_millis(gap);
                    let rate = r.on_success(now);
                    prop_assert_eq!(rate, r.rate(now));
                    if rate >= ceiling {
                        last = None;
                    }
                }
            }
            let mut previous = 0.0;
            let mut probes = probes.clone();
            probes.sort_unstable();
            for p in &probes {
                let at = now + Nanos::from_millis(*p);
                let rate = r.rate(at);
                prop_assert!(floor <= rate && rate <= ceiling, "{} outside [{}, {}]", rate, floor, ceiling);
                prop_assert!(rate >= previous * (1.0 - 1e-12), "not monotone: {} after {}", rate, previous);
                previous = rate;
                match last {
                    Some((t0, w)) => {
                        let dt = (at - t0).as_duration().as_secs_f64();
                        if dt > 0.0 {
                            prop_assert!(close(rate, cubic(w, dt, floor, ceiling)),
                                "dt {}: {} vs {}", dt, rate, cubic(w, dt, floor, ceiling));
                        }
                    }
                    None => prop_assert_eq!(rate, ceiling),
                }
            }
            if let Some((t0, w)) = last {
                let k = r.recovery_time().unwrap();
                prop_assert!(close(k.as_secs_f64(), (w * (1.0 - BETA) / C).cbrt()));
                prop_assert!(close(r.rate(t0 + Nanos::from(k)), w.max(floor)));
            }
        }
    }
}

#[test]
fn adaptive_rules() {
    for (ceiling, floor) in [
        (10.0, 0.0),
        (10.0, -1.0),
        (10.0, f64::NAN),
        (f64::INFINITY, 1.0),
        (0.5, 1.0),
        (f64::NAN, 1.0),
    ] {
        assert_eq!(
            AdaptiveRate::new(ceiling, floor).unwrap_err().rule(),
            Rule::RateOutOfRange,
            "({ceiling}, {floor})"
        );
    }
}
