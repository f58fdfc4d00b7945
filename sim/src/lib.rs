//! The tollgate simulator: agent traffic and spikes in virtual time, through the real layer,
//! against a mock provider with its own limit model; tables, JSON, CSV and plots.
//!
//! Every run is deterministic: it runs on a paused current-thread tokio runtime, every random draw
//! comes from ChaCha streams seeded by the scenario's seed, so the same scenario and seed give the
//! same bytes in every output.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod cli;
pub mod engine;
pub mod plot;
pub mod report;
pub mod scenario;
pub mod strategy;

use report::{Report, SweepPoint};
use scenario::Scenario;
use strategy::StrategyKind;
use tollgate::BoxError;

/// Runs every strategy of `strategies` on `scenario`, and the headroom sweep when `sweep` is not
/// empty.
///
/// # Errors
/// A strategy or provider that cannot be built for the scenario.
pub fn simulate(
    scenario: &Scenario,
    strategies: &[StrategyKind],
    sweep: &[f64],
) -> Result<Report, BoxError> {
    simulate_with_progress(scenario, strategies, sweep, false)
}

/// [`simulate`], telling on stderr which run is going when `progress` is set.
///
/// # Errors
/// As [`simulate`].
pub fn simulate_with_progress(
    scenario: &Scenario,
    strategies: &[StrategyKind],
    sweep: &[f64],
    progress: bool,
) -> Result<Report, BoxError> {
    let sweep_runs = |k: &StrategyKind| match (k.takes_headroom(), sweep.is_empty()) {
        (_, true) => 0,
        (true, false) => sweep.len(),
        (false, false) => 1,
    };
    let total: usize = strategies.iter().map(|k| 1 + sweep_runs(k)).sum();
    let mut done = 0usize;
    let mut tick = |what: &str| {
        done += 1;
        if progress {
            eprint!("\r\x1b[2K[{done}/{total}] {what}");
            if done == total {
                eprintln!();
            }
        }
    };
    let mut results = Vec::new();
    let mut timelines = Vec::new();
    for &k in strategies {
        tick(k.name());
        let run = engine::run(scenario, k)?;
        results.push(run.result);
        timelines.push(run.timeline);
    }
    let mut points = Vec::new();
    for &k in strategies {
        let headrooms: Vec<f64> = if k.takes_headroom() {
            sweep.to_vec()
        } else if sweep.is_empty() {
            Vec::new()
        } else {
            vec![scenario.headroom]
        };
        for h in headrooms {
            tick(&format!("{} at headroom {h}", k.name()));
            let mut s = scenario.clone();
            s.headroom = h;
            let r = engine::run(&s, k)?.result;
            points.push(SweepPoint {
                strategy: k.name().to_owned(),
                headroom: h,
                over_throttling: r.over_throttling,
                rate_limited_rate: r.rate_limited_rate,
                utilization: r.utilization,
            });
        }
    }
    let limit_rpm = scenario.provider.rpm as f64;
    Ok(Report {
        scenario: scenario.clone(),
        results,
        timelines,
        sweep: points,
        limit_rpm,
        effective_rpm: limit_rpm * (1.0 - scenario.provider.hidden_share),
    })
}
