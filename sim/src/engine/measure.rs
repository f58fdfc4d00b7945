//! The metrics of a run, from the engine's records and what the provider saw (see the README for
//! their definitions).

use super::attempts::{agent_of, Attempts};
use super::drive::Record;
use super::throttling::{over_throttling, window_of, Held};
use super::Run;
use crate::report::{GroupResult, Slot, StrategyResult, Timeline};
use crate::scenario::Scenario;
use crate::strategy::StrategyKind;
use std::time::Duration;
use tollgate_mock::{MockEvent, MockStats};

/// The union of non-empty spans, as sorted disjoint spans, computed in place. Sorting by start
/// alone is enough: spans that start together merge into the same span whatever their order.
fn union(mut spans: Vec<(Duration, Duration)>) -> Vec<(Duration, Duration)> {
    if !spans.is_sorted_by_key(|&(a, _)| a) {
        spans.sort_unstable_by_key(|&(a, _)| a);
    }
    let mut len = 0usize;
    for i in 0..spans.len() {
        let (a, b) = spans[i];
        match len.checked_sub(1).map(|last| &mut spans[last]) {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => {
                spans[len] = (a, b);
                len += 1;
            }
        }
    }
    spans.truncate(len);
    spans
}

fn measure_of(spans: &[(Duration, Duration)]) -> Duration {
    spans.iter().map(|(a, b)| *b - *a).sum()
}

/// The 50th and 99th percentiles and the largest of `values` (all 0 when there are none): what a
/// sorted copy holds at ranks ⌈q·n⌉, found by selection rather than by sorting.
fn quantiles(values: &mut [f64]) -> (f64, f64, f64) {
    let n = values.len();
    if n == 0 {
        return (0.0, 0.0, 0.0);
    }
    let index = |q: f64| ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
    let (i50, i99) = (index(0.50), index(0.99));
    let (below, p99, above) = values.select_nth_unstable_by(i99, f64::total_cmp);
    let p99 = *p99;
    let max = above.iter().copied().max_by(f64::total_cmp).unwrap_or(p99);
    let p50 = if i50 < i99 {
        *below.select_nth_unstable_by(i50, f64::total_cmp).1
    } else {
        p99
    };
    (p50, p99, max)
}

/// What one group of agents did.
#[derive(Clone, Debug, Default)]
struct GroupTally {
    calls: u64,
    ok: u64,
    waits: Vec<f64>,
    input_tokens_ok: u64,
    output_tokens_ok: u64,
}

/// The metrics of a run (see the README for their definitions).
pub(super) fn measure(
    scenario: &Scenario,
    kind: StrategyKind,
    records: &[Record],
    events: &[MockEvent],
    stats: &MockStats,
    ended: Duration,
) -> Run {
    let done_of = |r: &Record| r.done.unwrap_or(ended);
    let makespan = records.iter().map(done_of).max().unwrap_or(Duration::ZERO);
    let minutes = (makespan.as_secs_f64() / 60.0).max(1e-9);
    // Agents are numbered group after group; a tag's high half is its agent.
    let mut group_of = Vec::with_capacity(scenario.agent_count() as usize);
    for (i, g) in scenario.agents.iter().enumerate() {
        group_of.extend(std::iter::repeat_n(i, g.count as usize));
    }
    let mut groups = vec![GroupTally::default(); scenario.agents.len()];
    // One group holds every request: its waits are all the waits.
    let single = groups.len() == 1;

    // Per-second timeline.
    let secs = makespan.as_secs() as usize + 1;
    let mut slots: Vec<Slot> = (0..secs)
        .map(|t| Slot {
            t: t as u64,
            ..Slot::default()
        })
        .collect();
    // Held-back depth: +1 at creation, −1 at the end; +1 while at the provider is subtracted.
    let mut depth_delta = vec![0i64; secs + 1];
    let slot_of = |d: Duration| (d.as_secs() as usize).min(secs);
    for r in records {
        depth_delta[slot_of(r.created)] += 1;
        depth_delta[slot_of(done_of(r))] -= 1;
    }

    // One pass over the attempts, in arrival order: each request's time at the provider, and the
    // client held it back from its creation to its first attempt and between an answer and its
    // next attempt (queue, pacing, cooldown, backoff).
    let index = Attempts::new(records);
    let mut at_provider = vec![Duration::ZERO; records.len()];
    let mut attempted = vec![false; records.len()];
    // Per request: since when the client has held it.
    let mut from: Vec<Duration> = records.iter().map(|r| r.created).collect();
    let mut held_spans = Vec::with_capacity(records.len() + events.len());
    for e in events {
        if let Some(i) = index.record_of(e.tag) {
            let since = from[i];
            if e.at > since {
                held_spans.push(Held {
                    request: i,
                    from: since,
                    until: e.at,
                });
            }
            from[i] = e.at + e.latency;
            at_provider[i] += e.latency;
            attempted[i] = true;
        }
        let s = &mut slots[(e.at.as_secs() as usize).min(secs - 1)];
        s.sent += 1;
        match e.status.as_u16() {
            200 => {
                s.ok += 1;
                s.tokens_ok += e.input_tokens + e.output_tokens;
                if let Some(&g) = group_of.get(agent_of(e.tag)) {
                    groups[g].input_tokens_ok += e.input_tokens;
                    groups[g].output_tokens_ok += e.output_tokens;
                }
            }
            429 => s.rate_limited += 1,
            529 => s.overloaded += 1,
            _ => {}
        }
        depth_delta[slot_of(e.at)] -= 1;
        depth_delta[slot_of(e.at + e.latency)] += 1;
    }
    let mut depth = 0i64;
    for (i, s) in slots.iter_mut().enumerate() {
        depth += depth_delta[i];
        s.queue_depth = depth.max(0) as u64;
    }
    let retries = stats
        .received
        .saturating_sub(attempted.iter().filter(|&&a| a).count() as u64);

    // One pass over the requests: a request's wait is its time in the system less its time at
    // the provider; one that did not succeed was held from its last answer to its end. Demand
    // was waiting while some request was created and not done.
    let mut waits = Vec::with_capacity(records.len());
    let mut demand = Vec::with_capacity(records.len());
    let mut gave_up = 0;
    for (i, r) in records.iter().enumerate() {
        let done = done_of(r);
        if done > r.created {
            demand.push((r.created, done));
        }
        if !r.ok {
            gave_up += 1;
            if done > from[i] {
                held_spans.push(Held {
                    request: i,
                    from: from[i],
                    until: done,
                });
            }
        }
        let group = group_of.get(agent_of(r.tag)).map(|&g| &mut groups[g]);
        let wait = r.done.map(|done| {
            let held = (done - r.created).saturating_sub(at_provider[i]);
            held.as_secs_f64() * 1000.0
        });
        if let Some(wait) = wait {
            waits.push(wait);
        }
        if let Some(g) = group {
            g.calls += 1;
            g.ok += u64::from(r.ok);
            if let Some(wait) = wait.filter(|_| !single) {
                g.waits.push(wait);
            }
        }
    }

    // What the provider would have admitted: its real capacity per second, in requests, over the
    // seconds when demand was waiting (some request created and not done), plus its initial
    // burst.
    let eff = |limit: u64| limit as f64 * (1.0 - scenario.provider.hidden_share);
    let ok = stats.ok.max(1) as f64;
    let mut per_minute = eff(scenario.provider.rpm);
    if scenario.provider.itpm > 0 {
        let avg = stats.input_tokens_ok as f64 / ok;
        if avg > 0.0 {
            per_minute = per_minute.min(eff(scenario.provider.itpm) / avg);
        }
    }
    if scenario.provider.otpm > 0 {
        let avg = stats.output_tokens_ok as f64 / ok;
        if avg > 0.0 {
            per_minute = per_minute.min(eff(scenario.provider.otpm) / avg);
        }
    }
    let per_second = per_minute / 60.0;

    let demand = union(demand);
    let waiting_secs = measure_of(&demand).as_secs_f64();

    let held = union(held_spans.iter().map(|h| (h.from, h.until)).collect());
    // Successes that arrived inside a held span, per window; arrivals come in time order, so a
    // cursor follows them through the sorted spans.
    let windows = window_of(makespan) + 1;
    let mut ok_while_held = vec![0u64; windows];
    // `held[..cursor]` are the spans that start at or before the latest arrival.
    let mut cursor = 0;
    let mut last = Duration::ZERO;
    for e in events.iter().filter(|e| e.status.as_u16() == 200) {
        if e.at < last {
            cursor = 0; // not reached: the provider logs arrivals in time order
        }
        last = e.at;
        while held.get(cursor).is_some_and(|&(a, _)| a <= e.at) {
            cursor += 1;
        }
        if cursor > 0 && e.at < held[cursor - 1].1 {
            ok_while_held[window_of(e.at).min(windows - 1)] += 1;
        }
    }
    let over_throttling = over_throttling(per_second, windows, &held_spans, &held, &ok_while_held);
    // An ideal bucket (burst = one minute's capacity, as the provider's) starts full, refills at
    // its rate while demand waits, and banks at most its burst through each idle gap.
    let banked: f64 = demand
        .windows(2)
        .map(|w| (per_second * (w[1].0 - w[0].1).as_secs_f64()).min(per_minute))
        .sum();
    let capacity = per_minute + per_second * waiting_secs + banked;
    let utilization = if capacity > 0.0 {
        stats.ok as f64 / capacity
    } else {
        0.0
    };
    let prices = scenario.prices;
    let price = |input: u64, output: u64| {
        input as f64 * prices.input_per_mtok / 1e6 + output as f64 * prices.output_per_mtok / 1e6
    };
    let spend = price(stats.input_tokens_ok, stats.output_tokens_ok);
    let (wait_p50_ms, wait_p99_ms, wait_max_ms) = quantiles(&mut waits);
    let groups = scenario
        .agents
        .iter()
        .zip(groups)
        .enumerate()
        .map(|(i, (g, mut tally))| {
            let (p50, p99, _) = if single {
                (wait_p50_ms, wait_p99_ms, wait_max_ms)
            } else {
                quantiles(&mut tally.waits)
            };
            GroupResult {
                group: i,
                priority: g.priority,
                agents: g.count,
                calls: tally.calls,
                requests_ok: tally.ok,
                gave_up: tally.calls - tally.ok,
                wait_p50_ms: p50,
                wait_p99_ms: p99,
                spend_usd: price(tally.input_tokens_ok, tally.output_tokens_ok),
            }
        })
        .collect();
    let result = StrategyResult {
        strategy: kind.name().to_owned(),
        requests_sent: stats.received,
        requests_ok: stats.ok,
        rate_limited: stats.rate_limited,
        rate_limited_rate: if stats.received > 0 {
            stats.rate_limited as f64 / stats.received as f64
        } else {
            0.0
        },
        retries,
        gave_up,
        goodput_rpm: stats.ok as f64 / minutes,
        goodput_tpm: (stats.input_tokens_ok + stats.output_tokens_ok) as f64 / minutes,
        utilization,
        over_throttling,
        wait_p50_ms,
        wait_p99_ms,
        wait_max_ms,
        makespan_s: makespan.as_secs_f64(),
        spend_usd: spend,
        groups,
    };
    Run {
        result,
        timeline: Timeline {
            strategy: kind.name().to_owned(),
            slots,
        },
        parks: 0, // counted by the runtime, filled in by `run`
    }
}
