//! Property tests of the budget math: concurrent reserve/settle never overshoots the cap with
//! upper-bound estimates (and overshoots by at most the in-flight overruns otherwise), alerts fire
//! exactly once per threshold per window, windows reset at exactly the configured boundary
//! (against an independent calendar), money arithmetic saturates, and the unknown-model policy.

use proptest::prelude::*;
use std::collections::BTreeMap;
use tollgate_core::{
    Budget, BudgetState, Micros, Price, PriceMatch, PriceTable, Reservation, TokenUsage,
    UnknownModel, Window, WindowClock,
};

// ---------------------------------------------------------------------------------------------
// Helpers.

const DAY: i64 = 86_400;

fn window() -> impl Strategy<Value = Window> {
    prop_oneof![Just(Window::Hour), Just(Window::Day), Just(Window::Month)]
}

/// Every offset from −12:00 to +14:00 in 15-minute steps.
fn offset() -> impl Strategy<Value = i32> {
    (-48i32..=56).prop_map(|q| q * 900)
}

/// A cap and strictly ascending thresholds in `(0, cap]`.
fn cap_and_thresholds() -> impl Strategy<Value = (u64, Vec<u64>)> {
    (1u64..=1_000_000_000).prop_flat_map(|cap| {
        (
            Just(cap),
            proptest::collection::btree_set(1..=cap, 0..=6).prop_map(|s| s.into_iter().collect()),
        )
    })
}

fn budget(cap: u64, thresholds: &[u64], window: Window, offset: i32) -> Budget {
    Budget::builder(Micros::new(cap), window)
        .clock(WindowClock::new(offset).expect("offset in range"))
        .thresholds(thresholds.iter().copied().map(Micros::new))
        .build()
        .expect("valid budget")
}

#[derive(Clone, Debug)]
enum Op {
    /// Reserve `estimate` (a fraction of the cap, in per-mille, possibly above it) for a call
    /// whose real cost is `actual_permille / 1000` of the estimate.
    Reserve {
        estimate_permille: u64,
        actual_permille: u64,
    },
    /// Settle the in-flight call at this index (modulo the number in flight).
    Settle(usize),
    /// Release the in-flight call at this index.
    Release(usize),
    /// Let this many seconds pass.
    Advance(u64),
}

fn ops(max_actual_permille: u64, len: usize) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        4 => (0u64..=1_100, 0..=max_actual_permille).prop_map(|(e, a)| Op::Reserve {
            estimate_permille: e,
            actual_permille: a,
        }),
        3 => any::<usize>().prop_map(Op::Settle),
        1 => any::<usize>().prop_map(Op::Release),
        2 => prop_oneof![0u64..=600, 0u64..=40 * DAY as u64].prop_map(Op::Advance),
    ];
    proptest::collection::vec(op, 1..len)
}

struct Call {
    reservation: Reservation,
    estimate: u64,
    actual: u64,
}

impl Call {
    fn overrun(&self) -> u64 {
        self.actual.saturating_sub(self.estimate)
    }
}

/// Runs `ops` against one budget and checks, after every step: `reserved` is the sum of the
/// estimates in flight; `spent` is the sum of the actual costs settled in the current window;
/// `spent ≤ cap + (the overruns of the calls in flight at the last admission or window roll)`.
/// Returns every alert with the spend of each window, for the alert test.
fn run(budget: &Budget, start: u64, ops: &[Op]) -> (Vec<tollgate_core::Alert>, Vec<(u64, u64)>) {
    let cap = budget.cap().as_u64();
    let mut now = start;
    let mut state = BudgetState::new(budget, now);
    let mut in_flight: Vec<Call> = Vec::new();
    let mut model_spent = 0u64;
    let mut bound = 0u64;
    let mut alerts = Vec::new();
    let mut windows = Vec::new();
    for op in ops {
        if let Op::Advance(s) = op {
            now += s;
            continue;
        }
        if budget.window_start(now) > state.window_start {
            // The op rolls the window: spend restarts, the calls in flight carry over.
            windows.push((state.window_start, state.spent.as_u64()));
            model_spent = 0;
            bound = in_flight.iter().map(Call::overrun).sum();
        }
        match *op {
            Op::Reserve {
                estimate_permille,
                actual_permille,
            } => {
                let estimate = cap * estimate_permille / 1_000;
                let before = state;
                match state.reserve(budget, now, Micros::new(estimate)) {
                    Ok(reservation) => {
                        assert!(model_spent + before.reserved.as_u64() + estimate <= cap);
                        in_flight.push(Call {
                            reservation,
                            estimate,
                            actual: estimate * actual_permille / 1_000,
                        });
                        bound = in_flight.iter().map(Call::overrun).sum();
                    }
                    Err(e) => {
                        assert!(model_spent + state.reserved.as_u64() + estimate > cap);
                        assert_eq!(e.resets_at(), budget.next_reset(state.window_start));
                        assert_eq!(e.never_fits(), estimate > cap);
                    }
                }
            }
            Op::Settle(i) if !in_flight.is_empty() => {
                let call = in_flight.swap_remove(i % in_flight.len());
                model_spent += call.actual;
                alerts.extend(state.settle(
                    budget,
                    now,
                    call.reservation,
                    Micros::new(call.actual),
                ));
            }
            Op::Release(i) if !in_flight.is_empty() => {
                // `release` takes no time: roll explicitly to stay in step with the model.
                state.roll(budget, now);
                let call = in_flight.swap_remove(i % in_flight.len());
                state.release(call.reservation);
            }
            _ => {
                state.roll(budget, now);
            }
        }
        let reserved: u64 = in_flight.iter().map(|c| c.estimate).sum();
        assert_eq!(state.reserved.as_u64(), reserved);
        assert_eq!(state.spent.as_u64(), model_spent);
        assert!(
            state.spent.as_u64() <= cap + bound,
            "spent {} > cap {cap} + in-flight overruns {bound}",
            state.spent
        );
    }
    windows.push((state.window_start, state.spent.as_u64()));
    (alerts, windows)
}

// ---------------------------------------------------------------------------------------------
// Reserve, then settle.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any interleaving of concurrent calls whose estimates are upper bounds: the settled spend
    /// never exceeds the cap, and `spent + reserved` never does either.
    #[test]
    fn upper_bound_estimates_never_exceed_the_cap(
        (cap, thresholds) in cap_and_thresholds(),
        window in window(),
        offset in offset(),
        start in 0u64..=4_000_000_000,
        ops in ops(1_000, 200),
    ) {
        let budget = budget(cap, &thresholds, window, offset);
        // `run` checks spent ≤ cap + 0 (no overruns) after every step.
        run(&budget, start, &ops);
    }

    /// Estimates that can be off by up to 3×: the overshoot is at most the overruns of the calls
    /// in flight together at the last admission (checked inside `run`).
    #[test]
    fn misestimates_overshoot_by_at_most_the_in_flight_overruns(
        (cap, thresholds) in cap_and_thresholds(),
        window in window(),
        offset in offset(),
        start in 0u64..=4_000_000_000,
        ops in ops(3_000, 200),
    ) {
        let budget = budget(cap, &thresholds, window, offset);
        run(&budget, start, &ops);
    }

    /// Sequential calls (one in flight at a time) overshoot by at most one call's overrun.
    #[test]
    fn sequential_calls_overshoot_by_at_most_one_overrun(
        cap in 1u64..=1_000_000,
        calls in proptest::collection::vec((0u64..=1_000_000, 0u64..=3_000_000), 1..100),
    ) {
        let budget = budget(cap, &[], Window::Day, 0);
        let mut state = BudgetState::new(&budget, 0);
        let mut max_overrun = 0;
        for (estimate, actual) in calls {
            if let Ok(r) = state.reserve(&budget, 0, Micros::new(estimate)) {
                max_overrun = max_overrun.max(actual.saturating_sub(estimate));
                let _ = state.settle(&budget, 0, r, Micros::new(actual));
            }
            prop_assert!(state.spent.as_u64() <= cap + max_overrun);
        }
    }

    /// Over a long run with window rolls and overruns, each threshold fires exactly once in each
    /// window whose spend reached it, and never in any other.
    #[test]
    fn alerts_fire_exactly_once_per_threshold_per_window(
        (cap, thresholds) in cap_and_thresholds(),
        window in window(),
        offset in offset(),
        start in 0u64..=4_000_000_000,
        ops in ops(2_000, 600),
    ) {
        let budget = budget(cap, &thresholds, window, offset);
        let (alerts, windows) = run(&budget, start, &ops);
        let mut count: BTreeMap<(u64, usize), usize> = BTreeMap::new();
        for a in &alerts {
            prop_assert_eq!(a.threshold.as_u64(), thresholds[a.index]);
            prop_assert!(a.spent >= a.threshold);
            prop_assert_eq!(a.resets_at, budget.next_reset(a.window_start));
            *count.entry((a.window_start, a.index)).or_default() += 1;
        }
        let mut expected = 0;
        for &(start, spent) in &windows {
            for (i, &t) in thresholds.iter().enumerate() {
                let want = usize::from(spent >= t);
                expected += want;
                prop_assert_eq!(count.get(&(start, i)).copied().unwrap_or(0), want);
            }
        }
        prop_assert_eq!(alerts.len(), expected);
    }
}

/// A restart seeded with the day's spend does not fire the thresholds already passed again.
#[test]
fn seeded_state_does_not_refire() {
    let budget = budget(100, &[20, 50, 100], Window::Day, 0);
    let mut state = BudgetState::seeded(&budget, 0, Micros::new(60));
    let r = state.reserve(&budget, 1, Micros::new(40)).unwrap();
    let alerts = state.settle(&budget, 2, r, Micros::new(40));
    assert_eq!(alerts.iter().map(|a| a.index).collect::<Vec<_>>(), [2]);
}

// ---------------------------------------------------------------------------------------------
// Windows, against an independent calendar (years and months counted one by one).

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `(first day of the month, first day of the next month)` of day `day` (≥ 0) since 1970-01-01.
fn month_of(day: i64) -> (i64, i64) {
    let (mut y, mut m, mut first) = (1970, 1, 0);
    loop {
        let len = days_in_month(y, m);
        if day < first + len {
            return (first, first + len);
        }
        first += len;
        (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    }
}

/// The expected `(start, reset)` of `window` around `t` at `offset`, in Unix seconds.
fn expected(window: Window, offset: i32, t: u64) -> (i64, i64) {
    let off = i64::from(offset);
    let local = t as i64 + off;
    let (start, end) = match window {
        Window::Hour => {
            let h = local.div_euclid(3_600) * 3_600;
            (h, h + 3_600)
        }
        Window::Day => {
            let d = local.div_euclid(DAY) * DAY;
            (d, d + DAY)
        }
        Window::Month => {
            let (a, b) = month_of(local.div_euclid(DAY));
            (a * DAY, b * DAY)
        }
    };
    (start - off, end - off)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The window start and reset are the local boundaries of the calendar, at every offset, and a
    /// budget's spend drops to zero at exactly the reset: not one second before.
    #[test]
    fn windows_reset_at_exactly_the_configured_boundary(
        window in window(),
        offset in offset(),
        t in 100_000u64..=7_000_000_000, // 1970-01-02 .. 2191
        spent in 1u64..=1_000,
    ) {
        let clock = WindowClock::new(offset).unwrap();
        let (start, reset) = expected(window, offset, t);
        // A window that began before the Unix epoch (the first month of 1970 at a positive
        // offset) starts at 0, as documented.
        prop_assert_eq!(clock.window_start(window, t) as i64, start.max(0));
        prop_assert_eq!(clock.next_reset(window, t) as i64, reset);

        let budget = budget(1_000, &[], window, offset);
        let mut state = BudgetState::seeded(&budget, t, Micros::new(spent));
        let reset = reset as u64;
        prop_assert!(!state.roll(&budget, reset - 1));
        prop_assert_eq!(state.spent, Micros::new(spent));
        prop_assert!(state.roll(&budget, reset));
        prop_assert_eq!(state.spent, Micros::ZERO);
        prop_assert_eq!(state.window_start, reset);
    }
}

/// Unix seconds of `y-m-d hh:mm` UTC, from the test's own calendar.
fn utc(y: i64, m: i64, d: i64, hh: i64, mm: i64) -> u64 {
    let mut days = 0;
    for yy in 1970..y {
        days += if is_leap(yy) { 366 } else { 365 };
    }
    for mo in 1..m {
        days += days_in_month(y, mo);
    }
    ((days + d - 1) * DAY + hh * 3_600 + mm * 60) as u64
}

#[test]
fn month_ends_and_leap_years_at_fixed_offsets() {
    let ist = WindowClock::from_hours_minutes(5, 30).unwrap();
    let pst = WindowClock::from_hours_minutes(-8, 0).unwrap();
    // 2024-02-29 20:00 UTC is 1 March, 01:30, in India: the March window, reset 1 April local.
    let t = utc(2024, 2, 29, 20, 0);
    assert_eq!(ist.window_start(Window::Month, t), utc(2024, 2, 29, 18, 30));
    assert_eq!(ist.next_reset(Window::Month, t), utc(2024, 3, 31, 18, 30));
    // ... and still 29 February, 12:00, in California: reset at 1 March 00:00 local.
    assert_eq!(pst.window_start(Window::Month, t), utc(2024, 2, 1, 8, 0));
    assert_eq!(pst.next_reset(Window::Month, t), utc(2024, 3, 1, 8, 0));
    assert_eq!(pst.next_reset(Window::Day, t), utc(2024, 3, 1, 8, 0));
    // 2100 is not a leap year, 2000 is.
    let t = utc(2100, 2, 28, 12, 0);
    assert_eq!(
        WindowClock::UTC.next_reset(Window::Month, t),
        utc(2100, 3, 1, 0, 0)
    );
    assert_eq!(
        WindowClock::UTC.next_reset(Window::Day, t),
        utc(2100, 3, 1, 0, 0)
    );
    let t = utc(2000, 2, 28, 12, 0);
    assert_eq!(
        WindowClock::UTC.next_reset(Window::Day, t),
        utc(2000, 2, 29, 0, 0)
    );
    assert_eq!(
        WindowClock::UTC.next_reset(Window::Month, t),
        utc(2000, 3, 1, 0, 0)
    );
    // New Year at −08:00: 31 December 23:59 local is still December.
    let t = utc(2027, 1, 1, 7, 59);
    assert_eq!(pst.window_start(Window::Month, t), utc(2026, 12, 1, 8, 0));
    assert_eq!(pst.next_reset(Window::Month, t), utc(2027, 1, 1, 8, 0));
    assert_eq!(pst.next_reset(Window::Month, t + 60), utc(2027, 2, 1, 8, 0));
    // Hours at +05:30 start at half past, UTC.
    let t = utc(2026, 11, 22, 20, 10);
    assert_eq!(ist.window_start(Window::Hour, t), utc(2026, 11, 22, 19, 30));
    // A budget refusing at the cap says when the local day resets: 20:10 UTC is already
    // 23 November, 01:40, in India; the day ends at midnight local, 18:30 UTC.
    let budget = Budget::daily(Micros::from_dollars(1))
        .clock(ist)
        .build()
        .unwrap();
    let mut state = BudgetState::seeded(&budget, t, Micros::from_dollars(1));
    let err = state.reserve(&budget, t, Micros::new(1)).unwrap_err();
    assert_eq!(err.resets_at(), utc(2026, 11, 23, 18, 30));
}

// ---------------------------------------------------------------------------------------------
// Money never overflows.

fn price() -> impl Strategy<Value = Price> {
    (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>())
        .prop_map(|(a, b, c, d)| Price::from_micros(a, b, c, d))
}

fn usage() -> impl Strategy<Value = TokenUsage> {
    (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(a, b, c, d)| TokenUsage {
        input: a,
        output: b,
        cache_write: c,
        cache_read: d,
    })
}

proptest! {
    #[test]
    fn micros_arithmetic_saturates(a in any::<u64>(), b in any::<u64>(), n in any::<u64>(),
                                    xs in proptest::collection::vec(any::<u64>(), 0..20)) {
        let (ma, mb) = (Micros::new(a), Micros::new(b));
        let sat = |x: u128| Micros::new(u64::try_from(x).unwrap_or(u64::MAX));
        prop_assert_eq!(ma + mb, sat(u128::from(a) + u128::from(b)));
        prop_assert_eq!(ma - mb, Micros::new(a.saturating_sub(b)));
        prop_assert_eq!(ma.saturating_mul(n), sat(u128::from(a) * u128::from(n)));
        let sum: Micros = xs.iter().copied().map(Micros::new).sum();
        prop_assert_eq!(sum, sat(xs.iter().map(|&x| u128::from(x)).sum()));
        let mut m = ma;
        m += mb;
        m -= mb;
        prop_assert!(m <= ma);
        // Display is `$` + dollars + 6 decimals, and reads back to the same integer.
        let s = ma.to_string();
        prop_assert!(s.starts_with('$'));
        prop_assert_eq!(s.len() - s.find('.').unwrap(), 7);
        prop_assert_eq!(s[1..].replace('.', "").parse::<u64>().unwrap(), a);
        prop_assert_eq!(Micros::from_dollars(a), sat(u128::from(a) * 1_000_000));
    }

    /// `cost_of` is the exact ceiling of Σ tokens × price / 10⁶, saturated; never panics.
    #[test]
    fn cost_is_exact_and_saturates(p in price(), u in usage()) {
        let terms = [
            (u.input, p.input_per_mtok),
            (u.output, p.output_per_mtok),
            (u.cache_write, p.cache_write_per_mtok),
            (u.cache_read, p.cache_read_per_mtok),
        ];
        let exact = terms.iter().try_fold(0u128, |acc, &(n, m)| {
            acc.checked_add(u128::from(n) * u128::from(m.as_u64()))
        });
        let want = exact
            .map(|x| x.div_ceil(1_000_000))
            .and_then(|x| u64::try_from(x).ok())
            .map_or(Micros::MAX, Micros::new);
        prop_assert_eq!(p.cost_of(u), want);
    }

    /// The upper bound of a call covers any split of its prompt between plain input, cache writes
    /// and cache reads, and any output up to `max_tokens`.
    #[test]
    fn upper_bound_covers_every_split(
        p in (0u64..=100_000_000, 0u64..=100_000_000, 0u64..=100_000_000, 0u64..=100_000_000)
            .prop_map(|(a, b, c, d)| Price::from_micros(a, b, c, d)),
        prompt in 0u64..=2_000_000,
        max_out in 0u64..=200_000,
        cut in (0.0f64..=1.0, 0.0f64..=1.0, 0.0f64..=1.0),
    ) {
        let write = (prompt as f64 * cut.0) as u64;
        let read = ((prompt - write) as f64 * cut.1) as u64;
        let usage = TokenUsage {
            input: prompt - write - read,
            output: (max_out as f64 * cut.2) as u64,
            cache_write: write,
            cache_read: read,
        };
        prop_assert!(p.cost_of(usage) <= p.upper_bound(prompt, max_out));
    }

    /// Reserve, settle and release with any amounts never panic, and admission is exact.
    #[test]
    fn budget_state_never_overflows(cap in 1u64..=u64::MAX,
                                    amounts in proptest::collection::vec((any::<u64>(), any::<u64>()), 1..30)) {
        let budget = budget(cap, &[cap], Window::Month, 0);
        let mut state = BudgetState::new(&budget, u64::MAX - 1);
        for (estimate, actual) in amounts {
            let before = u128::from(state.spent.as_u64()) + u128::from(state.reserved.as_u64());
            match state.reserve(&budget, u64::MAX, Micros::new(estimate)) {
                Ok(r) => {
                    prop_assert!(before + u128::from(estimate) <= u128::from(cap));
                    if actual % 2 == 0 {
                        let _ = state.settle(&budget, u64::MAX, r, Micros::new(actual));
                    } else {
                        state.release(r);
                    }
                }
                Err(_) => prop_assert!(before + u128::from(estimate) > u128::from(cap)),
            }
            let _ = state.remaining(&budget);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Unknown models.

proptest! {
    #[test]
    fn unknown_model_policy_both_ways(
        model in "[a-z][a-z0-9.]{0,15}(-[a-z0-9]{1,6}){0,2}",
        p in price(),
        u in usage(),
    ) {
        let example = PriceTable::example();
        prop_assume!(example.lookup(&model).is_err());
        // Refuse: a typed error naming the model, never a zero.
        let err = example.cost_of(&model, u).unwrap_err();
        prop_assert_eq!(err.model(), model.as_str());
        // Default: the default price, flagged so the caller can warn.
        let lenient = example.clone().with_unknown_model(UnknownModel::Default(p));
        prop_assert_eq!(lenient.cost_of(&model, u), Ok(p.cost_of(u)));
        prop_assert!(lenient.lookup(&model).unwrap().is_default());
        // Once listed, it is priced as listed under either policy, with or without a date.
        let listed = lenient.with(model.clone(), p);
        for name in [model.clone(), format!("{model}-20251231"), format!("{model}-2025-12-31")] {
            match listed.lookup(&name).unwrap() {
                PriceMatch::Listed { name: key, price } => {
                    prop_assert_eq!(key, model.as_str());
                    prop_assert_eq!(*price, p);
                }
                PriceMatch::Default(_) => prop_assert!(false, "{} priced by default", name),
            }
        }
    }
}

#[test]
fn example_models_are_all_priced_and_nonzero() {
    let t = PriceTable::example();
    for (name, p) in t.iter() {
        assert!(
            p.input_per_mtok > Micros::ZERO && p.output_per_mtok > p.input_per_mtok,
            "{name}"
        );
        assert!(p.cache_read_per_mtok < p.input_per_mtok, "{name}");
        assert!(!t.lookup(&format!("{name}-20260101")).unwrap().is_default());
    }
    // A dated snapshot is never priced as a different family.
    assert!(t.lookup("claude-opus-4-7").is_err());
    assert!(t.lookup("gpt-5-mini-high").is_err());
}
