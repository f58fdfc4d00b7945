//! The simulator end to end: determinism, the analytical check, the reference numbers, the CLI.

mod support;

use std::time::Duration;
use support::sim;
use tollgate_sim::scenario::{Scenario, BUILT_IN};
use tollgate_sim::strategy::StrategyKind;
use tollgate_sim::{cli, simulate};

fn short(name: &str, minutes: u64) -> Scenario {
    let mut s = Scenario::built_in(name).unwrap();
    s.duration = Duration::from_secs(60 * minutes);
    s
}

#[test]
fn every_built_in_scenario_parses_and_validates() {
    for (name, _) in BUILT_IN {
        let s = Scenario::built_in(name).unwrap();
        assert_eq!(s.name, *name);
    }
    let err = Scenario::built_in("nope").unwrap_err().to_string();
    assert!(
        err.contains("reference") && err.contains("launch-spike"),
        "{err}"
    );
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let s = short("priority", 3);
    let kinds = StrategyKind::ALL;
    let a = simulate(&s, &kinds, &[0.8, 1.0]).unwrap();
    let b = simulate(&s, &kinds, &[0.8, 1.0]).unwrap();
    assert_eq!(a.to_json(), b.to_json());
    assert_eq!(a.table(), b.table());
    assert_eq!(a.summary_csv(), b.summary_csv());
    assert_eq!(a.timeline_csv(), b.timeline_csv());
    assert_eq!(a.sweep_csv(), b.sweep_csv());
    // Every file written, byte for byte.
    let base = std::env::temp_dir().join(format!("tollgate-sim-det-{}", std::process::id()));
    let (da, db) = (base.join("a"), base.join("b"));
    let fa = cli::write_outputs(&a, &da).unwrap();
    let fb = cli::write_outputs(&b, &db).unwrap();
    assert_eq!(fa.len(), fb.len());
    for (x, y) in fa.iter().zip(&fb) {
        assert_eq!(x.file_name(), y.file_name());
        assert_eq!(
            std::fs::read(x).unwrap(),
            std::fs::read(y).unwrap(),
            "{x:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&base);
    // A different seed gives a different run.
    let mut other = s.clone();
    other.seed += 1;
    let c = simulate(&other, &[StrategyKind::None], &[]).unwrap();
    assert_ne!(
        c.timeline_csv(),
        simulate(&s, &[StrategyKind::None], &[])
            .unwrap()
            .timeline_csv()
    );
}

#[test]
fn without_throttle_or_retry_the_429_fraction_is_one_minus_r_over_lambda() {
    // Constant arrivals at λ = 1.5 r for three hours, each request sent once. The provider's
    // initial burst (one minute's worth) fades as 1/T: after 3 h it is 0.4 % of the answers.
    let mut s = Scenario::from_flags(10, 60);
    s.spikes.clear();
    s.duration = Duration::from_secs(3 * 3_600);
    let lambda = s.agents[0].rate_per_min * s.agents[0].count as f64;
    let r = s.provider.rpm as f64;
    let report = simulate(&s, &[StrategyKind::NoRetry], &[]).unwrap();
    let got = report.results[0].rate_limited_rate;
    let expect = 1.0 - r / lambda;
    assert!(
        (got - expect).abs() < 0.01,
        "429 fraction {got}, expected {expect}"
    );
}

#[test]
fn reference_numbers_hold() {
    let s = Scenario::built_in("reference").unwrap();
    let report = simulate(
        &s,
        &[StrategyKind::Tollgate, StrategyKind::StaticSplit],
        &[],
    )
    .unwrap();
    let t = &report.results[0];
    assert_eq!(t.strategy, "tollgate");
    assert_eq!(t.rate_limited, 0, "{}", report.table());
    assert!(t.utilization >= 0.98, "{}", report.table());
    let st = &report.results[1];
    assert!(st.utilization < 0.80, "{}", report.table());
}

#[test]
fn the_runaway_agent_is_held_at_its_cap_while_the_critical_path_goes_on() {
    let s = Scenario::built_in("runaway").unwrap();
    let cap = s.budget.as_ref().unwrap().agent_usd.unwrap();
    let report = simulate(&s, &[StrategyKind::None, StrategyKind::Tollgate], &[]).unwrap();
    let (none, tollgate) = (&report.results[0], &report.results[1]);
    let (critical, runaway) = (&tollgate.groups[0], &tollgate.groups[1]);
    // Without a cap the loop spends three times the cap in half an hour.
    assert!(none.groups[1].spend_usd > 2.5 * cap, "{}", report.table());
    // With it, the loop's spend stops at the cap (all within one hourly window) ...
    assert!(runaway.spend_usd <= cap, "{}", report.table());
    assert!(runaway.spend_usd > 0.9 * cap, "{}", report.table());
    assert!(runaway.gave_up > 0);
    // ... and the critical path does every call it did without the runaway held back.
    assert_eq!(critical.requests_ok, none.groups[0].requests_ok);
    assert_eq!(critical.gave_up, 0);
    assert_eq!(critical.calls, critical.requests_ok);
    assert!(
        (tollgate.spend_usd - critical.spend_usd - runaway.spend_usd).abs() < 1e-9,
        "the groups add up to the total"
    );
    assert!(report.table().contains("per agent group"));
}

#[test]
fn json_keeps_its_field_names() {
    let report = simulate(&short("reference", 1), &[StrategyKind::Tollgate], &[]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    let r = &v["results"][0];
    for key in [
        "strategy",
        "requests_sent",
        "requests_ok",
        "rate_limited",
        "rate_limited_rate",
        "retries",
        "gave_up",
        "goodput_rpm",
        "goodput_tpm",
        "utilization",
        "over_throttling",
        "wait_p50_ms",
        "wait_p99_ms",
        "wait_max_ms",
        "makespan_s",
        "spend_usd",
    ] {
        assert!(!r[key].is_null(), "missing {key}");
    }
    assert_eq!(v["scenario"]["name"], "reference");
}

#[test]
fn the_cli_runs_the_default_scenario() {
    let (code, out, _) = sim(&[
        "--agents",
        "5",
        "--rpm",
        "50",
        "--strategy",
        "tollgate,none",
        "--duration",
        "2m",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("tollgate") && out.contains("none"), "{out}");
    let (code, out, _) = sim(&[
        "--agents",
        "3",
        "--rpm",
        "30",
        "--strategy",
        "tollgate",
        "--duration",
        "1m",
        "--json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["results"][0]["strategy"], "tollgate");
}

#[test]
fn bad_input_exits_with_code_2_and_a_clear_message() {
    for (args, needle) in [
        (vec!["--agents", "0"], "at least 1"),
        (vec!["--rpm", "0"], "at least 1"),
        (vec!["--strategy", "fastest"], "unknown strategy"),
        (vec!["--scenario", "nope"], "unknown scenario"),
        (vec!["--sweep", "0.9:0.5:0.1"], "FROM"),
        (vec!["--spike", "4m,2"], "AT,MULTIPLIER,LENGTH"),
        (vec!["--arrival", "bursty"], "closed, constant or poisson"),
        (vec!["--headroom", "1.5"], "headroom"),
        (vec!["--duration", "soon"], "duration"),
        (vec!["--frobnicate"], "frobnicate"),
    ] {
        let (code, _, err) = sim(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
