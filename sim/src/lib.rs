//! The tollgate simulator: agent traffic and spikes in virtual time, through the real layer,
//! against a mock provider with its own limit model; tables, JSON, CSV and plots.
//!
//! Every run is deterministic: it runs on a paused current-thread tokio runtime, and every random
//! draw comes from a stream derived by name from the scenario's one root seed ([`rng`]), so the
//! same scenario and seed give the same bytes in every output.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod bounds;
pub mod cli;
pub mod engine;
pub mod html;
pub mod plot;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod strategy;
pub mod traffic;

use report::{Report, SweepPoint};
use scenario::Scenario;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
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
/// The runs are independent (each on its own paused runtime, from its own seeded streams), so
/// they go on every core at once, one run per thread at a time; the report is the same, byte for
/// byte, whatever the number of cores.
///
/// # Errors
/// As [`simulate`].
pub fn simulate_with_progress(
    scenario: &Scenario,
    strategies: &[StrategyKind],
    sweep: &[f64],
    progress: bool,
) -> Result<Report, BoxError> {
    // Every run of the report: each strategy on the scenario, then the sweep.
    let mut runs: Vec<(Scenario, StrategyKind, String)> = strategies
        .iter()
        .map(|&k| (scenario.clone(), k, k.name().to_owned()))
        .collect();
    for &k in strategies {
        let headrooms: Vec<f64> = if k.takes_headroom() {
            sweep.to_vec()
        } else if sweep.is_empty() {
            Vec::new()
        } else {
            vec![scenario.headroom]
        };
        for h in headrooms {
            let mut s = scenario.clone();
            s.headroom = h;
            // The call log is the strategy's run on the scenario, not the sweep's.
            s.call_log = None;
            runs.push((s, k, format!("{} at headroom {h}", k.name())));
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut outcomes = run_all(&runs, cores, progress).into_iter();
    let mut results = Vec::new();
    let mut timelines = Vec::new();
    for _ in strategies {
        let run = outcomes.next().ok_or("a run is missing")??;
        results.push(run.result);
        timelines.push(run.timeline);
    }
    let mut points = Vec::new();
    for ((s, k, _), outcome) in runs[strategies.len()..].iter().zip(outcomes) {
        let r = outcome?.result;
        points.push(SweepPoint {
            strategy: k.name().to_owned(),
            headroom: s.headroom,
            over_throttling: r.over_throttling,
            rate_limited_rate: r.rate_limited_rate,
            utilization: r.utilization,
        });
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

/// Runs every run of `runs` on up to `threads` threads, and returns their outcomes in the order
/// of `runs`. With `progress`, tells on stderr which run starts.
fn run_all(
    runs: &[(Scenario, StrategyKind, String)],
    threads: usize,
    progress: bool,
) -> Vec<Result<engine::Run, BoxError>> {
    let total = runs.len();
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<Option<Result<engine::Run, BoxError>>>> =
        Mutex::new((0..total).map(|_| None).collect());
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some((scenario, kind, what)) = runs.get(i) else {
            return;
        };
        if progress {
            // Runs start in the order of `runs`: this one is the (i + 1)-th to start.
            let done = i + 1;
            eprint!("\r\x1b[2K[{done}/{total}] {what}");
            if done == total {
                eprintln!();
            }
        }
        let outcome = engine::run(scenario, *kind);
        outcomes.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(outcome);
    };
    let threads = threads.clamp(1, total.max(1));
    if threads == 1 {
        work();
    } else {
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(work);
            }
        });
    }
    outcomes
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err("a run did not finish".into())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runs of a report give the same results on one thread and on several, in the order
    /// asked, whichever thread ran which.
    #[test]
    fn runs_on_several_threads_give_what_one_thread_gives() {
        let scenario = Scenario::built_in("reference").expect("built in");
        let mut runs = Vec::new();
        for kind in [
            StrategyKind::Tollgate,
            StrategyKind::StaticSplit,
            StrategyKind::None,
        ] {
            runs.push((scenario.clone(), kind, kind.name().to_owned()));
        }
        let outcome = |threads| -> Vec<_> {
            run_all(&runs, threads, false)
                .into_iter()
                .map(|r| {
                    let run = r.expect("runs");
                    (run.result, run.timeline)
                })
                .collect()
        };
        let one = outcome(1);
        assert_eq!(one.len(), runs.len());
        for (r, (_, kind, _)) in one.iter().zip(&runs) {
            assert_eq!(r.0.strategy, kind.name());
        }
        assert_eq!(outcome(3), one);
    }
}
