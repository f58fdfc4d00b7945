//! How fast the simulator runs: wall time of one whole simulator run (`tollgate_sim::engine::run`,
//! strategy `tollgate`, every call through the real layer against the mock provider, in virtual
//! time), reported by criterion as simulated calls per wall second.
//!
//! * `reference`: the built-in `reference` scenario (5 agents, a 50 RPM key, 10 simulated
//!   minutes).
//! * `500-agents-1h`: `Scenario::from_flags(500, 6000)` (500 agents against a 6,000 RPM key,
//!   demand 1.5× the limit with a 2× spike) for one simulated hour.
//!
//! One iteration is one run. A run is deterministic, so its simulated calls (the requests the mock
//! provider received, `requests_sent`) are counted once, before the group, and given to criterion
//! as the throughput. A `500-agents-1h` run takes seconds, so both benchmarks use flat sampling
//! with criterion's minimum of 10 samples of one run each (plus one run of warm-up and the
//! counting run): about twelve runs in all.
//!
//! Group `sim-floor` measures, for the same scenarios, what tokio's paused clock alone costs a
//! run: the simulator's runtime ([`engine::block_on`]) visiting as many virtual instants as the
//! run parked ([`engine::Run::parks`]), one timer each and nothing else, in the cheapest way there
//! is (one timer, reset to the next millisecond). Its throughput is the run's simulated calls, so
//! criterion reports the most simulated calls per wall second any run of that scenario could reach
//! on a paused tokio runtime, with a layer, a provider and an engine that cost nothing.
//!
//! The target (issue 7): at least 1,000,000 simulated calls per wall second.
//! `scripts/bench.sh` runs this bench; `results/bench/ratios.md` reports it under "simulator".

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode, Throughput,
};
use std::hint::black_box;
use std::time::Duration;
use tollgate_sim::engine;
use tollgate_sim::scenario::Scenario;
use tollgate_sim::strategy::StrategyKind;

/// The benchmarks: name and scenario.
fn scenarios() -> [(&'static str, Scenario); 2] {
    let reference = Scenario::built_in("reference").expect("the reference scenario is built in");
    let mut hour = Scenario::from_flags(500, 6000);
    hour.duration = Duration::from_secs(3600);
    [("reference", reference), ("500-agents-1h", hour)]
}

/// The simulated calls of one run, and how often its runtime parked.
fn calls_and_parks(scenario: &Scenario) -> (u64, u64) {
    let run = engine::run(scenario, StrategyKind::Tollgate).expect("the scenario runs");
    (run.result.requests_sent, run.parks)
}

/// Visits `instants` virtual instants a millisecond apart on the simulator's runtime, with one
/// timer and nothing else; returns the parks it took (one per instant).
fn visit(instants: u64) -> u64 {
    engine::block_on(async move {
        let start = tokio::time::Instant::now();
        let mut timer = std::pin::pin!(tokio::time::sleep_until(start));
        for k in 1..=instants {
            timer.as_mut().reset(start + Duration::from_millis(k));
            timer.as_mut().await;
        }
    })
    .expect("the runtime starts")
    .parks
}

/// A group of whole runs: flat sampling, criterion's minimum of 10 samples of one run each.
fn whole_runs<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group
}

fn sim(c: &mut Criterion) {
    let mut group = whole_runs(c, "sim");
    let mut runs = Vec::new();
    for (name, scenario) in scenarios() {
        let (calls, parks) = calls_and_parks(&scenario);
        assert!(calls > 0, "{name}: the run sent no call");
        group.throughput(Throughput::Elements(calls));
        group.bench_function(name, |b| {
            b.iter(|| black_box(engine::run(black_box(&scenario), StrategyKind::Tollgate)))
        });
        runs.push((name, calls, parks));
    }
    group.finish();

    let mut floor = whole_runs(c, "sim-floor");
    for (name, calls, parks) in runs {
        assert_eq!(visit(parks), parks, "{name}: one park per instant");
        floor.throughput(Throughput::Elements(calls));
        floor.bench_function(name, |b| b.iter(|| black_box(visit(black_box(parks)))));
    }
    floor.finish();
}

criterion_group!(benches, sim);
criterion_main!(benches);
