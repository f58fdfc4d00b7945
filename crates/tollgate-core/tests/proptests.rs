//! Property tests of the pure algorithms: the GCRA window bound (with and without refunds),
//! all-or-nothing admission across scopes, refunds, debt, calls that never fit, and carrying state
//! over to new limits; the lock-free admission of `AtomicScopeState` against the reference, alone
//! and in racing threads. Plus unit tests of the configuration rules.
//!
//! Every bound on rates is checked in exact integer arithmetic (`u128`/`i128`), never in floats:
//! with `P` the period in ns and `M = round(per_period · 1000)` (the limit's "milli-units per
//! period"), one unit refills in `T = 1000·P / M` ns, so "`x` units ≤ `rate·W + burst`" is
//! `x·1000·P ≤ W·M + burst·1000·P` with no rounding at all.

use proptest::prelude::*;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;
use tollgate_core::{
    admit, admit_atomic, release, release_atomic, settle, settle_atomic, Admission,
    AtomicScopeState, CompiledScope, Cost, Dimension, Gcra, Limit, Nanos, NeverFits, Retired, Rule,
    ScopeLimits, ScopeState, Stranded,
};

// ---------------------------------------------------------------------------------------------
// Exact arithmetic helpers.

/// `M`: milli-units per period, recovered exactly from `per_period()` (≤ 10⁶ here, so exact).
fn milli(g: &Gcra) -> u128 {
    (g.per_period() * 1000.0).round() as u128
}

/// `1000·P`: the numerator of `T = 1000·P / M`.
fn p1000(g: &Gcra) -> u128 {
    g.period().as_u64() as u128 * 1000
}

/// `units ≤ rate·w + burst`, exactly (`units` may be negative).
fn within_rate(g: &Gcra, units: i128, w: u64) -> bool {
    units * p1000(g) as i128 <= w as i128 * milli(g) as i128 + g.burst() as i128 * p1000(g) as i128
}

/// A cost of `n` units in `dimension` (and nothing in the others, except that total tokens split
/// between input and output).
fn cost_of(dimension: Dimension, n: u64) -> Cost {
    match dimension {
        Dimension::Requests => Cost {
            requests: n,
            ..Cost::ZERO
        },
        Dimension::InputTokens => Cost::ZERO.with_input_tokens(n),
        Dimension::OutputTokens => Cost::ZERO.with_output_tokens(n),
        Dimension::TotalTokens => Cost::ZERO
            .with_input_tokens(n / 2)
            .with_output_tokens(n - n / 2),
    }
}

fn single(limit: &Limit) -> CompiledScope {
    ScopeLimits::new()
        .limit(*limit)
        .compile()
        .expect("valid limit")
}

// ---------------------------------------------------------------------------------------------
// Strategies.

fn dimension() -> impl Strategy<Value = Dimension> {
    prop_oneof![
        Just(Dimension::Requests),
        Just(Dimension::InputTokens),
        Just(Dimension::OutputTokens),
        Just(Dimension::TotalTokens),
    ]
}

/// A period of 1..=120 s: whole seconds, or any nanosecond count (which makes `T` fractional).
fn period() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (1u64..=120).prop_map(Duration::from_secs),
        (1_000_000_000u64..=120_000_000_000).prop_map(Duration::from_nanos),
    ]
}

/// Headroom in (0.05, 1], often exactly 1.
fn headroom() -> impl Strategy<Value = f64> {
    prop_oneof![
        1 => Just(1.0),
        3 => (0.05f64..=1.0).prop_filter("headroom > 0.05", |h| *h > 0.05),
    ]
}

/// A valid limit: amount in `amounts`, period 1..=120 s, optional burst 1..=2×amount, headroom in
/// (0.05, 1] leaving at least one unit per period.
fn limit_in(
    dimension: impl Strategy<Value = Dimension>,
    amounts: std::ops::RangeInclusive<u64>,
) -> impl Strategy<Value = Limit> {
    (dimension, amounts, period(), headroom())
        .prop_flat_map(|(d, amount, period, h)| {
            (
                Just(Limit::new(d, amount, period).with_headroom(h)),
                prop::option::of(1..=2 * amount),
            )
        })
        .prop_map(|(l, burst)| Limit { burst, ..l })
        .prop_filter("amount × headroom ≥ 1", |l| l.compile().is_ok())
}

fn limit() -> impl Strategy<Value = Limit> {
    limit_in(dimension(), 1..=1000)
}

/// When the next arrival comes, relative to the previous one.
#[derive(Clone, Copy, Debug)]
enum Gap {
    /// At the same instant.
    Zero,
    /// A few ns later.
    Tiny(u64),
    /// Exactly when this call would first fit (the adversarial schedule), or 1 ns before it.
    AtFit,
    JustBeforeFit,
    /// Up to one unit's refill time (times `k`).
    Units(u64, u8),
}

fn gap() -> impl Strategy<Value = Gap> {
    prop_oneof![
        1 => Just(Gap::Zero),
        1 => (1u64..=3).prop_map(Gap::Tiny),
        4 => Just(Gap::AtFit),
        1 => Just(Gap::JustBeforeFit),
        3 => (any::<u64>(), 1u8..=8).prop_map(|(x, k)| Gap::Units(x, k)),
    ]
}

/// The time of the next arrival of `n` units after `now` for a bucket in state `tat`.
fn next_time(g: &Gcra, gap: Gap, tat: Nanos, now: Nanos, n: u64) -> Nanos {
    let fit = g.wait(tat, now, n);
    let d = match gap {
        Gap::Zero => Nanos::ZERO,
        Gap::Tiny(k) => Nanos::new(k),
        Gap::AtFit => fit,
        Gap::JustBeforeFit => fit.saturating_sub(Nanos::new(1)),
        Gap::Units(x, k) => Nanos::new(x % (g.cost_ns(1) * k as u64 + 1)),
    };
    now + d
}

/// One arrival: its gap, its cost as a fraction of the burst (in 1/1000), and (for refund tests)
/// when it settles and what it really used (as a fraction of what it was charged, in 1/1000).
#[derive(Clone, Copy, Debug)]
struct Arrival {
    gap: Gap,
    cost_permille: u16,
    settle_gap: Gap,
    actual_permille: u16,
}

fn arrivals(max: usize) -> impl Strategy<Value = Vec<Arrival>> {
    prop::collection::vec(
        (
            gap(),
            prop_oneof![Just(1000u16), 0u16..=1000],
            gap(),
            prop_oneof![Just(0u16), Just(1000u16), 0u16..=1000],
        )
            .prop_map(
                |(gap, cost_permille, settle_gap, actual_permille)| Arrival {
                    gap,
                    cost_permille,
                    settle_gap,
                    actual_permille,
                },
            ),
        1..=max,
    )
}

/// `permille`/1000 of `of`, rounded up, at least 1 when `permille > 0`.
fn part(of: u64, permille: u16) -> u64 {
    (of * permille as u64).div_ceil(1000)
}

// ---------------------------------------------------------------------------------------------
// 1 and 2: the window bound.

/// What happened to the bucket, in processing order.
#[derive(Clone, Copy, Debug)]
enum Event {
    Admitted { at: Nanos, units: u64 },
    Refunded { units: u64 },
}

/// The strongest window bound: for every admission `i` and every later admission `j` (in
/// processing order), the units admitted from `i` through `j`, minus the units refunded between them,
/// are at most `rate·(t_j − t_i) + burst`, exactly. Refunds before `i` (which refilled the bucket
/// before the window) and after `j` are not subtracted.
///
/// Checking every pair `(i, j)` covers every window `[t_i, t_i + W]`: the bound grows with `W`, and
/// the admitted units only change at admission times, so the tightest `W` for a given set of
/// admissions is the time of the last one.
fn check_pairs(g: &Gcra, log: &[Event]) -> Result<(), TestCaseError> {
    for (i, first) in log.iter().enumerate() {
        let Event::Admitted { at: start, .. } = *first else {
            continue;
        };
        let mut net: i128 = 0;
        for e in &log[i..] {
            match *e {
                Event::Admitted { at, units } => {
                    net += units as i128;
                    let w = (at - start).as_u64();
                    prop_assert!(
                        within_rate(g, net, w),
                        "{net} net units admitted in {w} ns from {start:?} (rate {} per {:?}, burst {})",
                        g.per_period(),
                        g.period(),
                        g.burst()
                    );
                }
                Event::Refunded { units } => net -= units as i128,
            }
        }
    }
    Ok(())
}

/// The window bound as usually stated, for fixed `W` (tiny, a unit, the burst, a period, several):
/// admitted units with times in `[t_i, t_i + W]` ≤ `rate·W + burst`.
fn check_fixed_windows(g: &Gcra, log: &[(Nanos, u64)]) -> Result<(), TestCaseError> {
    let widths = [
        0,
        1,
        g.cost_ns(1) / 2,
        g.cost_ns(1),
        g.cost_ns(g.burst()),
        g.period().as_u64(),
        3 * g.period().as_u64() + 7,
    ];
    for (i, &(start, _)) in log.iter().enumerate() {
        for w in widths {
            let units: u64 = log[i..]
                .iter()
                .take_while(|(at, _)| *at <= start + Nanos::new(w))
                .map(|(_, n)| n)
                .sum();
            prop_assert!(
                within_rate(g, units as i128, w),
                "{units} units in a window of {w} ns"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// 1. For any limit and any arrival schedule (each arrival calls `admit` once), the units
    /// admitted in any window `[t, t + W]` starting at an admission are at most `rate·W + burst`,
    /// with `rate = per_period / period`, exactly (no slack at all).
    #[test]
    fn window_bound(limit in limit(), arrivals in arrivals(48), start in 0u64..=1_000_000_000_000) {
        let scope = single(&limit);
        let g = scope.gcras()[0];
        let mut state = scope.new_state();
        let mut now = Nanos::new(start);
        let mut log = Vec::new();
        for a in &arrivals {
            let n = part(g.burst(), a.cost_permille);
            now = next_time(&g, a.gap, state.tats[0], now, n);
            let before = state.clone();
            match admit(now, cost_of(limit.dimension, n), &mut [(&scope, &mut state)]) {
                Admission::Admitted => log.push((now, n)),
                Admission::Wait { wait: Some(w), blocked: 1 } => {
                    prop_assert!(w > Nanos::ZERO);
                    prop_assert_eq!(&state, &before);
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        let events: Vec<Event> = log.iter().map(|&(at, units)| Event::Admitted { at, units }).collect();
        check_pairs(&g, &events)?;
        check_fixed_windows(&g, &log)?;
    }

    /// 2. The same with refunds: every admitted call is settled later (possibly at the same
    /// instant) with an actual cost ≤ what it was charged. For every admission `i` and later
    /// admission `j`: units admitted in `[i, j]` − units refunded between them
    /// ≤ `rate·(t_j − t_i) + burst`, exactly. (Admitted units alone are *not* bounded by
    /// `rate·W + burst`: a refund gives capacity back, so the refunds must be subtracted; refunds
    /// before the window need not be, since the bucket is never fuller than its burst.)
    #[test]
    fn window_bound_with_refunds(limit in limit(), arrivals in arrivals(48), start in 0u64..=1_000_000_000_000) {
        let scope = single(&limit);
        let g = scope.gcras()[0];
        let dim = limit.dimension;
        let mut state = scope.new_state();
        let mut now = Nanos::new(start);
        let mut log = Vec::new();
        // Pending settlements: (time, sequence, charged, actual).
        let mut pending: BinaryHeap<Reverse<(Nanos, usize, u64, u64)>> = BinaryHeap::new();
        for (seq, a) in arrivals.iter().enumerate() {
            let n = part(g.burst(), a.cost_permille);
            now = next_time(&g, a.gap, state.tats[0], now, n);
            while let Some(Reverse((at, _, charged, actual))) = pending.peek().copied() {
                if at > now {
                    break;
                }
                pending.pop();
                settle(at, cost_of(dim, charged), cost_of(dim, actual), &mut [(&scope, &mut state)]);
                release(&mut [(&scope, &mut state)]);
                log.push(Event::Refunded { units: charged - actual });
            }
            if admit(now, cost_of(dim, n), &mut [(&scope, &mut state)]) == Admission::Admitted {
                log.push(Event::Admitted { at: now, units: n });
                let actual = n * a.actual_permille as u64 / 1000;
                let at = next_time(&g, a.settle_gap, state.tats[0], now, n);
                pending.push(Reverse((at, seq, n, actual)));
            }
        }
        check_pairs(&g, &log)?;
    }
}

// ---------------------------------------------------------------------------------------------
// 3 and 6: admission across scopes.

/// A scope of 0..=3 limits (distinct dimension and period) and an optional concurrency cap.
fn scope_limits() -> impl Strategy<Value = ScopeLimits> {
    (
        prop::collection::vec(
            prop_oneof![
                limit_in(Just(Dimension::Requests), 1..=20),
                limit_in(
                    prop_oneof![
                        Just(Dimension::InputTokens),
                        Just(Dimension::OutputTokens),
                        Just(Dimension::TotalTokens)
                    ],
                    50..=3000
                ),
            ],
            0..=3,
        ),
        prop::option::of(1u32..=6),
    )
        .prop_map(|(mut limits, concurrency)| {
            let mut seen = Vec::new();
            limits.retain(|l| {
                let key = (l.dimension, l.period);
                let new = !seen.contains(&key);
                seen.push(key);
                new
            });
            ScopeLimits {
                limits,
                concurrency,
            }
        })
}

fn small_cost() -> impl Strategy<Value = Cost> {
    (0u64..=1, 0u64..=150, 0u64..=150).prop_map(|(r, i, o)| Cost {
        requests: r,
        input_tokens: i,
        output_tokens: o,
    })
}

/// One step of history: a gap, a call, and what happened after it (settled to `actual`,
/// released or not).
#[derive(Clone, Debug)]
struct Step {
    gap_ns: u64,
    cost: Cost,
    actual: Option<Cost>,
    release: bool,
}

fn history() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (
            prop_oneof![Just(0u64), 0u64..=3_000_000_000],
            small_cost(),
            prop::option::of(small_cost()),
            prop::bool::weighted(0.9),
        )
            .prop_map(|(gap_ns, cost, actual, release)| Step {
                gap_ns,
                cost,
                actual,
                release,
            }),
        0..=24,
    )
}

/// Compiled scopes and their states after replaying `steps` through `admit`/`settle`/`release`
/// across all scopes; returns the time of the last step.
fn replay(scopes: &[CompiledScope], steps: &[Step], start: Nanos) -> (Vec<ScopeState>, Nanos) {
    let mut states: Vec<ScopeState> = scopes.iter().map(CompiledScope::new_state).collect();
    let mut now = start;
    for s in steps {
        now = now + Nanos::new(s.gap_ns);
        let mut refs: Vec<(&CompiledScope, &mut ScopeState)> =
            scopes.iter().zip(states.iter_mut()).collect();
        if admit(now, s.cost, &mut refs) == Admission::Admitted {
            if let Some(actual) = s.actual {
                settle(now, s.cost, actual, &mut refs);
            }
            if s.release {
                release(&mut refs);
            }
        }
    }
    (states, now)
}

fn compile_all(limits: &[ScopeLimits]) -> Vec<CompiledScope> {
    limits
        .iter()
        .map(|l| l.compile().expect("valid scope"))
        .collect()
}

fn admit_clone(
    scopes: &[CompiledScope],
    states: &[ScopeState],
    now: Nanos,
    cost: Cost,
) -> (Admission, Vec<ScopeState>) {
    let mut states = states.to_vec();
    let mut refs: Vec<(&CompiledScope, &mut ScopeState)> =
        scopes.iter().zip(states.iter_mut()).collect();
    let r = admit(now, cost, &mut refs);
    (r, states)
}

/// Whether one scope refuses the call at `now` on its own, from the buckets' waits and the cap.
fn refuses(scope: &CompiledScope, state: &ScopeState, now: Nanos, cost: Cost) -> bool {
    let rate = scope
        .gcras()
        .iter()
        .zip(&state.tats)
        .any(|(g, tat)| g.wait(*tat, now, cost.amount(g.dimension())) > Nanos::ZERO);
    rate || scope.concurrency().is_some_and(|c| state.in_flight >= c)
}

/// The first bucket (scope order, then configured order) the cost asks more of than its burst.
fn first_never(scopes: &[CompiledScope], cost: Cost) -> Option<NeverFits> {
    scopes.iter().enumerate().find_map(|(i, s)| {
        s.gcras()
            .iter()
            .find(|g| cost.amount(g.dimension()) > g.burst())
            .map(|g| NeverFits {
                scope: i,
                dimension: g.dimension(),
                requested: cost.amount(g.dimension()),
                capacity: g.burst(),
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// 3. All or nothing. `Admitted`: every bucket of every scope is exactly what `Gcra::charged`
    /// makes of it and every `in_flight` grew by one. `Wait`/`Never`: every state is unchanged.
    /// `Wait.blocked` bit `i` is set iff scope `i` alone refuses; `Wait.wait` is `None` iff a
    /// concurrency cap refuses; `Some(w)` has `w > 0`, the call is admitted at `now + w` and
    /// refused at `now + w − 1 ns`.
    #[test]
    fn all_or_nothing(
        limits in prop::collection::vec(scope_limits(), 2..=4),
        steps in history(),
        start in 0u64..=1_000_000_000_000,
        gap_ns in prop_oneof![Just(0u64), 0u64..=3_000_000_000],
        cost in small_cost(),
    ) {
        let scopes = compile_all(&limits);
        let (before, last) = replay(&scopes, &steps, Nanos::new(start));
        let now = last + Nanos::new(gap_ns);
        let (result, after) = admit_clone(&scopes, &before, now, cost);
        match result {
            Admission::Admitted => {
                for ((s, b), a) in scopes.iter().zip(&before).zip(&after) {
                    for ((g, tb), ta) in s.gcras().iter().zip(&b.tats).zip(&a.tats) {
                        prop_assert_eq!(*ta, g.charged(*tb, now, cost.amount(g.dimension())));
                    }
                    prop_assert_eq!(a.in_flight, b.in_flight + 1);
                    prop_assert!(!refuses(s, b, now, cost), "admitted though a scope refuses");
                }
                prop_assert_eq!(first_never(&scopes, cost), None);
            }
            Admission::Wait { wait, blocked } => {
                prop_assert_eq!(&after, &before);
                prop_assert_eq!(first_never(&scopes, cost), None);
                prop_assert!(blocked != 0);
                let mut cap_refuses = false;
                for (i, (s, b)) in scopes.iter().zip(&before).enumerate() {
                    let (alone, _) = admit_clone(std::slice::from_ref(s), std::slice::from_ref(b), now, cost);
                    prop_assert!(
                        matches!(alone, Admission::Admitted | Admission::Wait { .. }),
                        "scope {} alone: {:?}",
                        i,
                        alone
                    );
                    prop_assert_eq!(blocked >> i & 1 == 1, alone != Admission::Admitted, "scope {}", i);
                    prop_assert_eq!(blocked >> i & 1 == 1, refuses(s, b, now, cost), "scope {}", i);
                    cap_refuses |= s.concurrency().is_some_and(|c| b.in_flight >= c);
                }
                prop_assert_eq!(blocked >> scopes.len(), 0);
                prop_assert_eq!(wait.is_none(), cap_refuses);
                if let Some(w) = wait {
                    prop_assert!(w > Nanos::ZERO);
                    // The longest of the buckets' own waits.
                    let longest = scopes
                        .iter()
                        .zip(&before)
                        .flat_map(|(s, b)| s.gcras().iter().zip(&b.tats))
                        .map(|(g, tat)| g.wait(*tat, now, cost.amount(g.dimension())))
                        .max();
                    prop_assert_eq!(Some(w), longest);
                    let (at_w, _) = admit_clone(&scopes, &before, now + w, cost);
                    prop_assert_eq!(at_w, Admission::Admitted, "not admitted after the wait {:?}", w);
                    let (early, _) = admit_clone(&scopes, &before, now + w - Nanos::new(1), cost);
                    prop_assert!(matches!(early, Admission::Wait { wait: Some(_), .. }), "admitted 1 ns before the wait {:?}: {:?}", w, early);
                }
            }
            Admission::Never(nf) => {
                prop_assert_eq!(&after, &before);
                prop_assert_eq!(Some(nf), first_never(&scopes, cost));
            }
        }
    }

    /// 6. A cost above some bucket's burst is `Never`, naming the first such bucket (scope index,
    /// dimension, requested, capacity), whatever the states; and nothing is charged. A cost within
    /// every burst is never `Never`.
    #[test]
    fn never_fits(
        limits in prop::collection::vec(scope_limits(), 1..=4),
        steps in history(),
        start in 0u64..=1_000_000_000_000,
        cost in (0u64..=40, 0u64..=6000, 0u64..=6000).prop_map(|(r, i, o)| Cost { requests: r, input_tokens: i, output_tokens: o }),
    ) {
        let scopes = compile_all(&limits);
        let (before, now) = replay(&scopes, &steps, Nanos::new(start));
        let (result, after) = admit_clone(&scopes, &before, now, cost);
        match first_never(&scopes, cost) {
            Some(expected) => {
                prop_assert_eq!(result, Admission::Never(expected));
                prop_assert_eq!(&after, &before);
            }
            None => prop_assert!(!matches!(result, Admission::Never(_))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4, 5, 7: refunds, debt, carry-over.

/// A bucket's state after a random history of admissions (some settled into debt) on one limit.
fn bucket_history(
    scope: &CompiledScope,
    steps: &[(u64, u16, u16)],
    start: Nanos,
) -> (ScopeState, Nanos) {
    let g = scope.gcras()[0];
    let dim = g.dimension();
    let mut state = scope.new_state();
    let mut now = start;
    for &(gap_ns, cost_permille, actual_permille) in steps {
        now = now + Nanos::new(gap_ns);
        let n = part(g.burst(), cost_permille);
        if admit(now, cost_of(dim, n), &mut [(scope, &mut state)]) == Admission::Admitted {
            // Up to 1.5 × the charge: some calls go into debt.
            let actual = n * actual_permille as u64 / 1000;
            settle(
                now,
                cost_of(dim, n),
                cost_of(dim, actual),
                &mut [(scope, &mut state)],
            );
        }
    }
    (state, now)
}

fn bucket_steps() -> impl Strategy<Value = Vec<(u64, u16, u16)>> {
    prop::collection::vec(
        (
            prop_oneof![Just(0u64), 0u64..=20_000_000_000],
            0u16..=1000,
            0u16..=1500,
        ),
        0..=12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// 4. A refund gives back what was refunded and no more: after admitting `c` units and
    /// settling to `a ≤ c` at the same `now`, the bucket holds `a` units less than before the
    /// admission, up to rounding that only ever favours the limit: the net time charged is in
    /// `[a·T, a·T + 2 ns)` (the charge `⌈c·T⌉` and the refund `⌊(c−a)·T⌋` each round by < 1 ns),
    /// so `available` is in `(before − a − 2 ns/T, before − a]`. At the same instant a refund of
    /// at most the charge can never hit the "no fuller than the burst" clamp.
    #[test]
    fn refund_restores_what_was_refunded(
        limit in limit(),
        steps in bucket_steps(),
        start in 0u64..=1_000_000_000_000,
        gap_ns in 0u64..=100_000_000_000,
        cost_permille in 0u16..=1000,
        actual_permille in 0u16..=1000,
    ) {
        let scope = single(&limit);
        let g = scope.gcras()[0];
        let dim = g.dimension();
        let (mut state, last) = bucket_history(&scope, &steps, Nanos::new(start));
        let now = last + Nanos::new(gap_ns);
        let c = part(g.burst(), cost_permille);
        let a = c * actual_permille as u64 / 1000;
        // Arrive when the call fits (it always does eventually: c ≤ burst).
        let now = now + g.wait(state.tats[0], now, c);
        let tat0 = state.tats[0].max(now);
        let avail0 = g.available(state.tats[0], now);
        prop_assert_eq!(admit(now, cost_of(dim, c), &mut [(&scope, &mut state)]), Admission::Admitted);
        settle(now, cost_of(dim, c), cost_of(dim, a), &mut [(&scope, &mut state)]);
        let net = (state.tats[0] - tat0).as_u64() as u128;
        // a·T ≤ net < a·T + 2, i.e. a·1000·P ≤ net·M < (a·1000·P) + 2·M.
        let exact = a as u128 * p1000(&g);
        prop_assert!(net * milli(&g) >= exact, "refund restored more than {} units", c - a);
        prop_assert!(net * milli(&g) < exact + 2 * milli(&g), "refund lost ≥ 2 ns");
        let avail1 = g.available(state.tats[0], now);
        let unit_ns = p1000(&g) as f64 / milli(&g) as f64;
        let eps = 1e-9 * avail0.abs().max(1.0);
        prop_assert!(avail1 <= avail0 - a as f64 + eps, "{} > {} − {}", avail1, avail0, a);
        prop_assert!(avail1 > avail0 - a as f64 - 2.0 / unit_ns - eps, "{} ≪ {} − {}", avail1, avail0, a);
        // Over the tested ranges T ≥ 10⁶ ns, so that is within 2·10⁻⁶ units.
        prop_assert!((avail1 - (avail0 - a as f64)).abs() <= 2e-6 + eps);
    }

    /// 5. Debt. From a full bucket, admit `c = burst` and settle to `burst + d`: the bucket owes
    /// `d` units beyond empty. A call of `n ≤ burst` units at the same instant then waits exactly
    /// `w = ⌈(⌈b·T⌉ + ⌈d·T⌉) − (b − n)·T⌉` ns: the smallest whole ns after which the backlog
    /// (the two charges, each rounded up) leaves room for `n` units. It is admitted at `now + w`
    /// and refused at `now + w − 1`. Against the ideal `(d + n)·T`: `cost_ns(d + n) ≤ w ≤
    /// cost_ns(d + n) + 2`, because the charges `⌈b·T⌉` and `⌈d·T⌉` each round up by < 1 ns and
    /// the final ceiling by < 1 ns more, so `w < (d + n)·T + 3`, and `w ≥ (d + n)·T` is an integer.
    #[test]
    fn debt_is_waited_out_exactly(
        limit in limit(),
        start in 0u64..=1_000_000_000_000,
        d_permille in 1u16..=3000,
        n_permille in 0u16..=1000,
    ) {
        let scope = single(&limit);
        let g = scope.gcras()[0];
        let dim = g.dimension();
        let b = g.burst();
        let d = part(b, d_permille);
        let n = part(b, n_permille);
        let now = Nanos::new(start);
        let mut state = scope.new_state();
        prop_assert_eq!(admit(now, cost_of(dim, b), &mut [(&scope, &mut state)]), Admission::Admitted);
        settle(now, cost_of(dim, b), cost_of(dim, b + d), &mut [(&scope, &mut state)]);
        prop_assert_eq!(state.tats[0], now + Nanos::new(g.cost_ns(b) + g.cost_ns(d)));
        prop_assert!(g.available(state.tats[0], now) < 0.0);

        let backlog = (g.cost_ns(b) + g.cost_ns(d)) as u128;
        // ⌈backlog − (b−n)·T⌉ = ⌈(backlog·M − (b−n)·1000·P) / M⌉; positive: the bucket is in debt.
        let num = backlog * milli(&g) - (b - n) as u128 * p1000(&g);
        let expected = num.div_ceil(milli(&g)) as u64;
        let w = match admit(now, cost_of(dim, n), &mut [(&scope, &mut state.clone())]) {
            Admission::Wait { wait: Some(w), blocked: 1 } => w.as_u64(),
            other => return Err(TestCaseError::fail(format!("expected a wait, got {other:?}"))),
        };
        prop_assert_eq!(w, expected);
        prop_assert_eq!(g.wait(state.tats[0], now, n).as_u64(), w);
        let ideal = g.cost_ns(d + n);
        prop_assert!(ideal <= w && w <= ideal + 2, "w {} vs cost_ns(d + n) {}", w, ideal);
        let at = |t: Nanos| admit(t, cost_of(dim, n), &mut [(&scope, &mut state.clone())]);
        prop_assert_eq!(at(now + Nanos::new(w)), Admission::Admitted);
        let early = at(now + Nanos::new(w - 1));
        prop_assert!(matches!(early, Admission::Wait { .. }), "1 ns early: {:?}", early);
    }

    /// 7. Carrying state over to new limits keeps what each bucket owes, in units, for buckets of
    /// the same dimension and period: with `owed = backlog / T` (`backlog = tat − now`), the new
    /// owed is in `[old owed, old owed + 1 ns / T_new)` exactly (the new backlog is rounded up),
    /// hence `full − available` (the deficit against a full bucket) is kept within 10⁻⁶ relative.
    /// A bucket with no counterpart starts full, and `in_flight` is kept.
    #[test]
    fn carry_over_keeps_units_owed(
        old_limits in prop::collection::vec(limit(), 1..=3),
        new_amounts in prop::collection::vec((1u64..=1000, headroom(), prop::option::of(1u64..=2000)), 3),
        extra in prop::option::of(limit()),
        steps in bucket_steps(),
        start in 0u64..=1_000_000_000_000,
        gap_ns in prop_oneof![Just(0u64), 0u64..=30_000_000_000],
        in_flight in 0u64..=5,
    ) {
        let old_limits: Vec<Limit> = {
            let mut seen = Vec::new();
            old_limits.into_iter().filter(|l| {
                let key = (l.dimension, l.period);
                let new = !seen.contains(&key);
                seen.push(key);
                new
            }).collect()
        };
        let old = ScopeLimits { limits: old_limits.clone(), concurrency: None }.compile().expect("valid");
        // Same dimensions and periods, other amounts, headrooms and bursts.
        let mut new_limits: Vec<Limit> = old_limits
            .iter()
            .zip(&new_amounts)
            .map(|(l, &(amount, h, burst))| Limit { amount, headroom: Some(h), burst, ..*l })
            .filter(|l| l.compile().is_ok())
            .collect();
        if let Some(e) = extra {
            if !new_limits.iter().any(|l| l.dimension == e.dimension && l.period == e.period) {
                new_limits.push(e);
            }
        }
        let new = ScopeLimits { limits: new_limits, concurrency: None }.compile().expect("valid");

        // A history on every old bucket at once (costs in the first limit's dimension scaled to
        // each bucket by replaying per bucket).
        let mut state = old.new_state();
        let mut last = Nanos::new(start);
        for (k, g) in old.gcras().iter().enumerate() {
            let one = ScopeLimits::new().limit(old_limits[k]).compile().expect("valid");
            let (s, t) = bucket_history(&one, &steps, Nanos::new(start));
            prop_assert_eq!(one.gcras()[0], *g);
            state.tats[k] = s.tats[0];
            last = last.max(t);
        }
        state.in_flight = in_flight;
        let now = last + Nanos::new(gap_ns);
        let carried = new.carry_over(&old, &state, now);
        prop_assert_eq!(carried.in_flight, in_flight);
        prop_assert_eq!(carried.tats.len(), new.gcras().len());
        for (g, tat) in new.gcras().iter().zip(&carried.tats) {
            let Some((o, otat)) = old.gcras().iter().zip(&state.tats).find(|(o, _)| o.dimension() == g.dimension() && o.period() == g.period()) else {
                prop_assert!(*tat <= now, "a new bucket must start full");
                continue;
            };
            let ob = (*otat - now).as_u64() as u128;
            let nb = (*tat - now).as_u64() as u128;
            // owed = backlog·M / (1000·P); compare old and new exactly by cross-multiplying.
            let old_owed = ob * milli(o) * p1000(g);
            let new_owed = nb * milli(g) * p1000(o);
            prop_assert!(new_owed >= old_owed, "carry-over forgave units");
            if nb > 0 {
                prop_assert!((nb - 1) * milli(g) * p1000(o) < old_owed, "carry-over added ≥ 1 ns");
            }
            let full = |g: &Gcra| g.available(now, now);
            let old_deficit = full(o) - o.available(*otat, now);
            let new_deficit = full(g) - g.available(*tat, now);
            prop_assert!(
                (new_deficit - old_deficit).abs() <= 1e-6 * old_deficit.abs().max(1.0) + 1e-12,
                "deficit {} became {}", old_deficit, new_deficit
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Forgetting an idle state.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// 8. A state idle since `since` (`ScopeState::is_idle_since`) and a new state answer every
    /// admission, settle, release and cooldown at any time from `since` on alike: the same
    /// admissions, the same waits, the same buckets after. So a store may forget an idle scope and
    /// start it afresh when it comes back.
    #[test]
    fn an_idle_state_acts_as_a_new_one(
        limits in prop::collection::vec(scope_limits(), 1..=3),
        before in history(),
        after in history(),
        cooldown_ns in prop::option::of(0u64..=5_000_000_000),
        start in 0u64..=1_000_000_000_000,
        late_ns in prop_oneof![Just(0u64), 0u64..=1_000_000_000],
    ) {
        let scopes = compile_all(&limits);
        let (mut states, last) = replay(&scopes, &before, Nanos::new(start));
        if let Some(c) = cooldown_ns {
            states[0].cool_down(last + Nanos::new(c));
        }
        prop_assume!(states.iter().all(|s| s.in_flight == 0));
        // Idle since the latest time a state holds, and so said.
        let latest = states
            .iter()
            .flat_map(|s| s.tats.iter().copied().chain([s.cooldown_until]))
            .fold(Nanos::ZERO, Nanos::max);
        prop_assert!(states.iter().all(|s| s.is_idle_since(latest)));
        // From a time the states say they are idle since (possibly before `latest` when a state
        // says so wrongly), the same answers as new states.
        let soon = last + Nanos::new(late_ns);
        let since = if states.iter().all(|s| s.is_idle_since(soon)) { soon } else { latest };
        let mut fresh: Vec<ScopeState> = scopes.iter().map(CompiledScope::new_state).collect();
        let mut now = since;
        for (k, step) in after.iter().enumerate() {
            now = now + Nanos::new(step.gap_ns);
            let mut a: Vec<(&CompiledScope, &mut ScopeState)> = scopes.iter().zip(states.iter_mut()).collect();
            let mut b: Vec<(&CompiledScope, &mut ScopeState)> = scopes.iter().zip(fresh.iter_mut()).collect();
            let (ra, rb) = (admit(now, step.cost, &mut a), admit(now, step.cost, &mut b));
            prop_assert_eq!(ra, rb, "step {}", k);
            if ra == Admission::Admitted {
                if let Some(actual) = step.actual {
                    settle(now, step.cost, actual, &mut a);
                    settle(now, step.cost, actual, &mut b);
                }
                if step.release {
                    release(&mut a);
                    release(&mut b);
                }
            }
            if k % 5 == 4 {
                let until = now + Nanos::new(step.gap_ns);
                a[0].1.cool_down(until);
                b[0].1.cool_down(until);
            }
            for ((s, x), y) in scopes.iter().zip(&states).zip(&fresh) {
                prop_assert_eq!(s.available(x, now), s.available(y, now));
                prop_assert_eq!(x.in_flight, y.in_flight);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions: the smallest cases where nanosecond rounding let through more than the limit.
// 3 per second: one unit refills in T = 333,333,333⅓ ns.

/// Burst 4 is `τ = ⌈4·T⌉ = 1,333,333,334` ns. After 2 units at 0 (`tat = ⌈2·T⌉ = 666,666,667`), a
/// call of 3 used to be admitted at 333,333,333 ns: 5 units in that time, over the bound
/// `3/s × 333,333,333 ns + 4 = 4.999999999`. The exact test makes it wait one more nanosecond.
#[test]
fn burst_rounding_admits_nothing_extra() {
    let scope = single(&Limit::new(Dimension::Requests, 3, Duration::from_secs(1)).with_burst(4));
    let g = scope.gcras()[0];
    let mut state = scope.new_state();
    let two = cost_of(Dimension::Requests, 2);
    let three = cost_of(Dimension::Requests, 3);
    assert_eq!(
        admit(Nanos::ZERO, two, &mut [(&scope, &mut state)]),
        Admission::Admitted
    );
    assert_eq!(state.tats[0], Nanos::new(666_666_667));
    assert_eq!(
        g.wait(state.tats[0], Nanos::ZERO, 3),
        Nanos::new(333_333_334)
    );
    assert!(!within_rate(&g, 5, 333_333_333));
    assert_ne!(
        admit(
            Nanos::new(333_333_333),
            three,
            &mut [(&scope, &mut state.clone())]
        ),
        Admission::Admitted
    );
    assert!(within_rate(&g, 5, 333_333_334));
    assert_eq!(
        admit(Nanos::new(333_333_334), three, &mut [(&scope, &mut state)]),
        Admission::Admitted
    );
}

/// Burst 3. After 3 units at 0 (`tat = 10⁹`) and a refund of 1 at 0, the refund used to give back
/// `⌈T⌉ = 333,333,334` ns, so a call of 2 was admitted at 333,333,333 ns: net 4 units in that time,
/// over `3/s × 333,333,333 ns + 3`. A refund now gives back `⌊T⌋`.
#[test]
fn refund_rounding_gives_back_nothing_extra() {
    let scope = single(&Limit::new(Dimension::Requests, 3, Duration::from_secs(1)));
    let g = scope.gcras()[0];
    let mut state = scope.new_state();
    let (three, two) = (
        cost_of(Dimension::Requests, 3),
        cost_of(Dimension::Requests, 2),
    );
    assert_eq!(
        admit(Nanos::ZERO, three, &mut [(&scope, &mut state)]),
        Admission::Admitted
    );
    settle(Nanos::ZERO, three, two, &mut [(&scope, &mut state)]);
    assert_eq!(state.tats[0], Nanos::new(666_666_667));
    assert!(!within_rate(&g, 4, 333_333_333));
    assert_ne!(
        admit(
            Nanos::new(333_333_333),
            two,
            &mut [(&scope, &mut state.clone())]
        ),
        Admission::Admitted
    );
    assert_eq!(
        admit(Nanos::new(333_333_334), two, &mut [(&scope, &mut state)]),
        Admission::Admitted
    );
}

// ---------------------------------------------------------------------------------------------
// Configuration rules.

fn rule_of(limit: Limit) -> Rule {
    limit.compile().expect_err("should be refused").rule()
}

#[test]
fn headroom_out_of_range() {
    let l = Limit::per_minute(Dimension::Requests, 100);
    for h in [
        f64::NAN,
        0.0,
        -0.5,
        1.0 + 1e-12,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ] {
        assert_eq!(
            rule_of(l.with_headroom(h)),
            Rule::HeadroomOutOfRange,
            "headroom {h}"
        );
    }
    assert!(l.with_headroom(1.0).compile().is_ok());
    assert!(l.with_headroom(0.01).compile().is_ok());
}

#[test]
fn zero_amount_and_zero_period() {
    assert_eq!(
        rule_of(Limit::per_minute(Dimension::InputTokens, 0)),
        Rule::ZeroAmount
    );
    // The amount is checked first.
    assert_eq!(
        rule_of(Limit::per_minute(Dimension::InputTokens, 0).with_headroom(f64::NAN)),
        Rule::ZeroAmount
    );
    assert_eq!(
        rule_of(Limit::new(Dimension::Requests, 5, Duration::ZERO)),
        Rule::ZeroPeriod
    );
}

#[test]
fn burst_zero() {
    assert_eq!(
        rule_of(Limit::per_minute(Dimension::Requests, 10).with_burst(0)),
        Rule::BurstBelowOneCall
    );
    assert_eq!(
        Limit::per_minute(Dimension::Requests, 10)
            .with_burst(1)
            .compile()
            .unwrap()
            .burst(),
        1
    );
}

#[test]
fn duplicate_limit() {
    let a = Limit::per_minute(Dimension::TotalTokens, 1000);
    let b = Limit::per_minute(Dimension::TotalTokens, 5000)
        .with_headroom(0.5)
        .with_burst(10);
    let err = ScopeLimits::new().limit(a).limit(b).compile().unwrap_err();
    assert_eq!(err.rule(), Rule::DuplicateLimit);
    // Same period spelled differently is still the same period.
    let c = Limit::new(Dimension::TotalTokens, 7, Duration::from_millis(60_000));
    assert_eq!(
        ScopeLimits::new()
            .limit(a)
            .limit(c)
            .compile()
            .unwrap_err()
            .rule(),
        Rule::DuplicateLimit
    );
    // Another dimension or another period is fine.
    assert!(ScopeLimits::new()
        .limit(a)
        .limit(Limit::per_minute(Dimension::InputTokens, 1000))
        .compile()
        .is_ok());
    assert!(ScopeLimits::new()
        .limit(a)
        .limit(Limit::per_day(Dimension::TotalTokens, 1000))
        .compile()
        .is_ok());
}

#[test]
fn zero_concurrency() {
    assert_eq!(
        ScopeLimits::new()
            .concurrency(0)
            .compile()
            .unwrap_err()
            .rule(),
        Rule::ZeroConcurrency
    );
    let s = ScopeLimits::new().concurrency(1).compile().unwrap();
    assert_eq!(s.concurrency(), Some(1));
}

#[test]
fn effective_limit_below_one() {
    assert_eq!(
        rule_of(Limit::per_minute(Dimension::Requests, 1).with_headroom(0.99)),
        Rule::EffectiveLimitBelowOne
    );
    assert_eq!(
        rule_of(Limit::per_minute(Dimension::Requests, 19).with_headroom(0.05)),
        Rule::EffectiveLimitBelowOne
    );
    // Exactly one unit is enough.
    let g = Limit::per_minute(Dimension::Requests, 20)
        .with_headroom(0.05)
        .compile()
        .unwrap();
    assert_eq!(g.burst(), 1);
    // Also through a scope, and through `with_default_headroom`.
    let err = ScopeLimits::new()
        .limit(Limit::per_minute(Dimension::Requests, 3))
        .with_default_headroom(0.2)
        .compile()
        .unwrap_err();
    assert_eq!(err.rule(), Rule::EffectiveLimitBelowOne);
}

// ---------------------------------------------------------------------------------------------
// 9: lock-free admission (`admit_atomic` over `AtomicScopeState`).

/// Two-part history step: a call as in [`Step`], or a cooldown of one scope.
#[derive(Clone, Debug)]
enum AtomicStep {
    Call(Step),
    CoolDown { scope: usize, for_ns: u64 },
}

fn atomic_history() -> impl Strategy<Value = Vec<AtomicStep>> {
    prop::collection::vec(
        prop_oneof![
            8 => history().prop_map(|steps| steps.into_iter().next()).prop_filter_map("a step", |s| s.map(AtomicStep::Call)),
            1 => (0usize..4, 0u64..=5_000_000_000).prop_map(|(scope, for_ns)| AtomicStep::CoolDown { scope, for_ns }),
        ],
        0..=40,
    )
}

/// Retires every scope's state and returns their final values.
fn retire_all(states: &[AtomicScopeState]) -> Vec<ScopeState> {
    states.iter().map(AtomicScopeState::retire).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// 9a. In one thread, `admit_atomic`, `settle_atomic`, `release_atomic` and `cool_down` give
    /// the answers of `admit`, `settle`, `release` and `ScopeState::cool_down` and leave the same
    /// states, step after step.
    #[test]
    fn atomic_admission_is_the_reference(
        limits in prop::collection::vec(scope_limits(), 1..=4),
        steps in atomic_history(),
        start in 0u64..=1_000_000_000_000,
    ) {
        let scopes = compile_all(&limits);
        let mut reference: Vec<ScopeState> = scopes.iter().map(CompiledScope::new_state).collect();
        let atomic: Vec<AtomicScopeState> = reference.iter().map(AtomicScopeState::new).collect();
        let pairs: Vec<(&CompiledScope, &AtomicScopeState)> = scopes.iter().zip(&atomic).collect();
        let mut now = Nanos::new(start);
        for step in &steps {
            match step {
                AtomicStep::Call(s) => {
                    now = now + Nanos::new(s.gap_ns);
                    let mut refs: Vec<(&CompiledScope, &mut ScopeState)> =
                        scopes.iter().zip(reference.iter_mut()).collect();
                    let expected = admit(now, s.cost, &mut refs);
                    prop_assert_eq!(admit_atomic(now, s.cost, &pairs), Ok(expected));
                    if expected == Admission::Admitted {
                        if let Some(actual) = s.actual {
                            settle(now, s.cost, actual, &mut refs);
                            for (limits, state) in &pairs {
                                prop_assert_eq!(settle_atomic(now, s.cost, actual, limits, state), Ok(()));
                            }
                        }
                        if s.release {
                            release(&mut refs);
                            for (_, state) in &pairs {
                                prop_assert_eq!(release_atomic(state), Ok(()));
                            }
                        }
                    }
                }
                AtomicStep::CoolDown { scope, for_ns } => {
                    let i = scope % scopes.len();
                    reference[i].cool_down(now + Nanos::new(*for_ns));
                    prop_assert_eq!(atomic[i].cool_down(now + Nanos::new(*for_ns)), Ok(()));
                }
            }
            let loaded: Vec<Option<ScopeState>> = atomic.iter().map(AtomicScopeState::load).collect();
            let expected: Vec<Option<ScopeState>> = reference.iter().cloned().map(Some).collect();
            prop_assert_eq!(loaded, expected);
        }
        // Retired: the final state is returned, and every operation after it fails.
        prop_assert_eq!(retire_all(&atomic), reference);
        for state in &atomic {
            prop_assert!(state.is_retired());
            prop_assert_eq!(state.load(), None);
            prop_assert_eq!(release_atomic(state), Err(Retired { stranded: vec![Stranded::Release { scope: 0 }] }));
            prop_assert_eq!(state.cool_down(now), Err(Retired::default()));
        }
        prop_assert_eq!(admit_atomic(now, Cost::ZERO, &pairs), Err(Retired::default()));
    }
}

/// One racing thread's calls: how many of them were admitted, and the units they were charged.
#[derive(Default)]
struct Raced {
    admitted: u64,
    requests: u64,
    stranded: Vec<Stranded>,
}

/// Runs `threads` threads that each try `calls` admissions of `cost(thread, call)` at time zero
/// over `pairs`; with `retire_after`, the main thread retires every state once that many
/// admissions were tried in all. Nothing is ever released, so the states count everything.
fn race(
    pairs: &[(&CompiledScope, &AtomicScopeState)],
    threads: usize,
    calls: usize,
    cost: impl Fn(usize, usize) -> Cost + Sync,
    retire_after: Option<usize>,
) -> (Raced, Option<Vec<ScopeState>>) {
    let tried = std::sync::atomic::AtomicUsize::new(0);
    let start = std::sync::Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (cost, tried, start) = (&cost, &tried, &start);
                s.spawn(move || {
                    let mut raced = Raced::default();
                    start.wait();
                    for c in 0..calls {
                        let cost = cost(t, c);
                        match admit_atomic(Nanos::ZERO, cost, pairs) {
                            Ok(Admission::Admitted) => {
                                raced.admitted += 1;
                                raced.requests += cost.requests;
                            }
                            Ok(_) => {}
                            Err(Retired { stranded }) => raced.stranded.extend(stranded),
                        }
                        tried.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    raced
                })
            })
            .collect();
        let retired = retire_after.map(|n| {
            while tried.load(std::sync::atomic::Ordering::Relaxed) < n {
                std::hint::spin_loop();
            }
            pairs.iter().map(|(_, state)| state.retire()).collect()
        });
        let mut all = Raced::default();
        for h in handles {
            let r = h.join().expect("no panic");
            all.admitted += r.admitted;
            all.requests += r.requests;
            all.stranded.extend(r.stranded);
        }
        (all, retired)
    })
}

proptest! {
    // Each case runs real threads; a few dozen cases cover many interleavings.
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// 9b. Threads racing for one requests bucket and a concurrency cap in a second scope never
    /// get more than either admits, and every charge of a call that was taken back (because the
    /// other scope refused) is gone: the bucket holds exactly the admitted calls.
    #[test]
    fn racing_admissions_never_exceed_a_limit_and_leave_exact_charges(
        per_minute in 1u64..=400,
        cap in 1u32..=400,
        threads in 2usize..=4,
        calls in 1usize..=400,
        retire_after in prop::option::of(0usize..=800),
    ) {
        let bucket = ScopeLimits::new()
            .limit(Limit::per_minute(Dimension::Requests, per_minute))
            .compile()
            .expect("valid");
        let capped = ScopeLimits::new().concurrency(cap).compile().expect("valid");
        let states = [AtomicScopeState::new(&bucket.new_state()), AtomicScopeState::new(&capped.new_state())];
        let pairs = [(&bucket, &states[0]), (&capped, &states[1])];
        let retire_after = retire_after.filter(|n| *n <= threads * calls);
        let (raced, retired) = race(&pairs, threads, calls, |_, _| Cost::request(), retire_after);
        let g = &bucket.gcras()[0];
        // What the states hold: their final value, less what retired states keep for calls that
        // were taken back (their successors would give it back).
        let (tat, in_flight) = match &retired {
            Some(finals) => {
                let mut tat = finals[0].tats[0].as_u64();
                let mut in_flight = finals[1].in_flight;
                for s in &raced.stranded {
                    match *s {
                        Stranded::Refund { scope: 0, bucket: 0, units } => tat -= g.cost_ns(units),
                        Stranded::Release { scope: 1 } => in_flight -= 1,
                        // Every scope counts its calls in flight, capped or not: the bucket's
                        // count (not checked here) may be stranded too.
                        Stranded::Release { scope: 0 } => {}
                        other => prop_assert!(false, "unexpected {:?}", other),
                    }
                }
                (tat, in_flight)
            }
            None => {
                prop_assert!(raced.stranded.is_empty());
                let live: Vec<ScopeState> = states.iter().map(|s| s.load().expect("live")).collect();
                (live[0].tats[0].as_u64(), live[1].in_flight)
            }
        };
        // What the reference admits of as many calls in one thread.
        let mut reference = [bucket.new_state(), capped.new_state()];
        let sequential = (0..threads * calls)
            .filter(|_| {
                let [b, c] = &mut reference;
                admit(Nanos::ZERO, Cost::request(), &mut [(&bucket, b), (&capped, c)]) == Admission::Admitted
            })
            .count() as u64;
        prop_assert!(raced.admitted <= sequential, "{} admitted, {} in one thread", raced.admitted, sequential);
        if retired.is_none() {
            // Racing loses nothing: a refusal means the capacity went to another call.
            prop_assert_eq!(raced.admitted, sequential);
        }
        prop_assert_eq!(tat, raced.admitted * g.cost_ns(1));
        prop_assert_eq!(in_flight, raced.admitted);
    }

    /// 9c. Weighted calls racing for a token bucket: never more tokens than the burst.
    #[test]
    fn racing_weighted_admissions_never_exceed_the_burst(
        per_minute in 100u64..=2_000,
        threads in 2usize..=4,
        calls in 1usize..=60,
        sizes in prop::collection::vec(1u64..=100, 8),
    ) {
        let scope = ScopeLimits::new()
            .limit(Limit::per_minute(Dimension::InputTokens, per_minute))
            .compile()
            .expect("valid");
        let state = AtomicScopeState::new(&scope.new_state());
        let pairs = [(&scope, &state)];
        let admitted_tokens = std::sync::atomic::AtomicU64::new(0);
        let cost = |t: usize, c: usize| Cost::ZERO.with_input_tokens(sizes[(t * 31 + c) % sizes.len()]);
        let start = std::sync::Barrier::new(threads);
        std::thread::scope(|s| {
            for t in 0..threads {
                let (pairs, admitted_tokens, cost, start) = (&pairs, &admitted_tokens, &cost, &start);
                s.spawn(move || {
                    start.wait();
                    for c in 0..calls {
                        let cost = cost(t, c);
                        if admit_atomic(Nanos::ZERO, cost, pairs) == Ok(Admission::Admitted) {
                            admitted_tokens.fetch_add(cost.input_tokens, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let g = &scope.gcras()[0];
        let tokens = admitted_tokens.into_inner();
        prop_assert!(tokens <= g.burst(), "{} tokens admitted, burst {}", tokens, g.burst());
        let live = state.load().expect("live");
        prop_assert!(within_rate(g, tokens as i128, 0));
        // The bucket's time is the sum of what each admitted call was charged (from time zero).
        prop_assert!(live.tats[0].as_u64() >= g.cost_ns(tokens) && live.tats[0].as_u64() <= g.cost_ns(tokens) + tokens);
    }
}
