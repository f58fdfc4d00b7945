//! The metrics of a run, from the engine's records and what the provider saw (see the README for
//! their definitions).

use super::attempts::Attempts;
use super::drive::Record;
use super::Run;
use crate::report::{GroupResult, Slot, StrategyResult, Timeline};
use crate::scenario::Scenario;
use crate::strategy::StrategyKind;
use std::time::Duration;
use tollgate_mock::{MockEvent, MockStats};

/// The union of spans, as sorted disjoint spans.
fn union(mut spans: Vec<(Duration, Duration)>) -> Vec<(Duration, Duration)> {
    spans.retain(|(a, b)| b > a);
    spans.sort_unstable();
    let mut out: Vec<(Duration, Duration)> = Vec::with_capacity(spans.len());
    for (a, b) in spans {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

fn measure_of(spans: &[(Duration, Duration)]) -> Duration {
    spans.iter().map(|(a, b)| *b - *a).sum()
}

/// Whether `t` lies in one of the sorted disjoint `spans` (end excluded).
fn inside(spans: &[(Duration, Duration)], t: Duration) -> bool {
    let i = spans.partition_point(|(a, _)| *a <= t);
    i > 0 && t < spans[i - 1].1
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
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
    let makespan = records
        .iter()
        .map(|r| r.done.unwrap_or(ended))
        .max()
        .unwrap_or(Duration::ZERO);
    let minutes = (makespan.as_secs_f64() / 60.0).max(1e-9);
    let attempts = Attempts::new(records, events);
    let retries = stats.received.saturating_sub(attempts.attempted() as u64);

    // A request's time in the system less its time at the provider.
    let wait_of = |(i, r): (usize, &Record)| -> Option<f64> {
        let done = r.done?;
        let at_provider: Duration = attempts.of(i).map(|e| e.latency).sum();
        let held = (done - r.created).saturating_sub(at_provider);
        Some(held.as_secs_f64() * 1000.0)
    };
    let mut waits: Vec<f64> = records.iter().enumerate().filter_map(wait_of).collect();
    waits.sort_unstable_by(f64::total_cmp);

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
        depth_delta[slot_of(r.done.unwrap_or(ended))] -= 1;
    }
    for e in events {
        let s = &mut slots[(e.at.as_secs() as usize).min(secs - 1)];
        s.sent += 1;
        match e.status.as_u16() {
            200 => {
                s.ok += 1;
                s.tokens_ok += e.input_tokens + e.output_tokens;
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

    // Demand was waiting while some request was created and not done: the union of those spans.
    let demand = union(
        records
            .iter()
            .map(|r| (r.created, r.done.unwrap_or(ended)))
            .collect(),
    );
    let waiting_secs = measure_of(&demand).as_secs_f64();

    // The client held a request back from its creation to its first attempt, and between an
    // answer and its next attempt (queue, pacing, cooldown, backoff).
    let mut held_spans = Vec::with_capacity(records.len() + events.len());
    for (i, r) in records.iter().enumerate() {
        let mut from = r.created;
        for e in attempts.of(i) {
            held_spans.push((from, e.at.max(from)));
            from = e.at + e.latency;
        }
        if !r.ok {
            held_spans.push((from, r.done.unwrap_or(ended).max(from)));
        }
    }
    let held = union(held_spans);
    let held_secs = measure_of(&held).as_secs_f64();
    let ok_while_held = events
        .iter()
        .filter(|e| e.status.as_u16() == 200 && inside(&held, e.at))
        .count() as f64;
    let offered = per_second * held_secs;
    let over_throttling = if offered > 0.0 {
        (offered - ok_while_held).max(0.0) / offered
    } else {
        0.0
    };
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
    // Agents are numbered group after group; a tag's high half is its agent.
    let mut first_agent = 0u32;
    let groups = scenario
        .agents
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let agents = first_agent..first_agent + g.count;
            first_agent += g.count;
            let mine = |tag: u64| agents.contains(&((tag >> 32) as u32));
            let calls: Vec<(usize, &Record)> = records
                .iter()
                .enumerate()
                .filter(|(_, r)| mine(r.tag))
                .collect();
            let mut waits: Vec<f64> = calls.iter().copied().filter_map(wait_of).collect();
            waits.sort_unstable_by(f64::total_cmp);
            let (input, output) = events
                .iter()
                .filter(|e| e.status.as_u16() == 200 && mine(e.tag))
                .fold((0, 0), |(i, o), e| {
                    (i + e.input_tokens, o + e.output_tokens)
                });
            GroupResult {
                group: i,
                priority: g.priority,
                agents: g.count,
                calls: calls.len() as u64,
                requests_ok: calls.iter().filter(|(_, r)| r.ok).count() as u64,
                gave_up: calls.iter().filter(|(_, r)| !r.ok).count() as u64,
                wait_p50_ms: quantile(&waits, 0.50),
                wait_p99_ms: quantile(&waits, 0.99),
                spend_usd: price(input, output),
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
        gave_up: records.iter().filter(|r| !r.ok).count() as u64,
        goodput_rpm: stats.ok as f64 / minutes,
        goodput_tpm: (stats.input_tokens_ok + stats.output_tokens_ok) as f64 / minutes,
        utilization,
        over_throttling,
        wait_p50_ms: quantile(&waits, 0.50),
        wait_p99_ms: quantile(&waits, 0.99),
        wait_max_ms: waits.last().copied().unwrap_or(0.0),
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
    }
}
