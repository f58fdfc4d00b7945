//! Replaying recorded traffic: a call log written by a simulated run, replayed, gives the same
//! arrivals and sizes; bad logs and flags exit 2 naming what is wrong.

mod support;

use std::path::PathBuf;
use std::time::Duration;
use support::sim;
use tollgate::spend::CallRecord;
use tollgate_sim::scenario::Scenario;
use tollgate_sim::simulate;
use tollgate_sim::strategy::StrategyKind;
use tollgate_sim::traffic::Traffic;

/// A fresh path under the target directory.
fn path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("replay");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

/// The first attempts of a log: arrival, scopes, priority and estimate, in arrival order; and
/// the usage of each.
type Arrival = (Option<u64>, Vec<String>, u8, u64, u64);

fn first_attempts(text: &str) -> Vec<(Arrival, Option<(u64, u64)>)> {
    let mut calls: Vec<_> = text
        .lines()
        .map(|l| serde_json::from_str::<CallRecord>(l).unwrap())
        .filter(|r| r.attempt == 1)
        .map(|r| {
            (
                (
                    r.arrived_unix_ms,
                    r.scopes,
                    r.priority,
                    r.estimated.input_tokens,
                    r.estimated.output_tokens,
                ),
                r.actual.map(|a| (a.input_tokens, a.output_tokens)),
            )
        })
        .collect();
    calls.sort();
    calls
}

#[test]
fn replaying_a_simulated_runs_log_reproduces_its_arrivals_and_sizes() {
    // Agents of two priorities, each in its own scope (the budget counts per agent), one of
    // them closed-loop: the replay sends each call when the log says it came.
    let mut s = Scenario::built_in("runaway").unwrap();
    s.duration = Duration::from_secs(300);
    let first = path("first.jsonl");
    s.call_log = Some(first.clone());
    simulate(&s, &[StrategyKind::Tollgate], &[]).unwrap();
    let logged = std::fs::read_to_string(&first).unwrap();

    let traffic = Traffic::from_jsonl(&logged).unwrap();
    let mut replay = traffic.into_scenario("replay".into(), s.provider.clone());
    replay.seed = s.seed;
    replay.budget = s.budget.clone();
    replay.prices = s.prices;
    let second = path("second.jsonl");
    replay.call_log = Some(second.clone());
    simulate(&replay, &[StrategyKind::Tollgate], &[]).unwrap();
    let replayed = std::fs::read_to_string(&second).unwrap();

    let (a, b) = (first_attempts(&logged), first_attempts(&replayed));
    assert!(a.len() > 100, "{} calls", a.len());
    assert_eq!(a.len(), b.len());
    let mut both_ok = 0;
    for (x, y) in a.iter().zip(&b) {
        // Same arrival (to the log's millisecond), scopes, priority and request sizes ...
        assert_eq!(x.0, y.0);
        assert!(x.0 .0.is_some());
        // ... and what the model wrote, where both runs got an answer.
        if let (Some(u), Some(v)) = (x.1, y.1) {
            assert_eq!(u, v);
            both_ok += 1;
        }
    }
    assert!(both_ok > 100, "{both_ok}");
    // Two agents' scopes at least, and both priorities.
    let scopes: std::collections::BTreeSet<_> = a.iter().map(|x| x.0 .1.clone()).collect();
    let priorities: std::collections::BTreeSet<_> = a.iter().map(|x| x.0 .2).collect();
    assert!(
        scopes.len() >= 2 && priorities.len() == 2,
        "{scopes:?} {priorities:?}"
    );
}

#[test]
fn the_shipped_example_log_replays_against_every_strategy() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/replay/example-calls.jsonl");
    let (code, out, err) = sim(&["--replay", example, "--rpm", "40", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), StrategyKind::ALL.len());
    assert_eq!(v["scenario"]["provider"]["rpm"], 40);
}

#[test]
fn a_bad_log_or_flag_exits_2_naming_it() {
    let bad = path("bad.jsonl");
    std::fs::write(&bad, "\n{\"v\":1}\n").unwrap();
    let (code, _, err) = sim(&["--replay", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("line 2"), "{err}");
    let newer = path("newer.jsonl");
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/replay/example-calls.jsonl"
    ))
    .unwrap();
    std::fs::write(&newer, example.replacen("\"v\":1", "\"v\":2", 1)).unwrap();
    let (code, _, err) = sim(&["--replay", newer.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("line 1: format version 2"), "{err}");
    let (code, _, err) = sim(&["--replay", "x.jsonl", "--scenario", "reference"]);
    assert_eq!(code, 2);
    assert!(err.contains("--scenario"), "{err}");
    let log = path("log.jsonl");
    let (code, _, err) = sim(&["--call-log", log.to_str().unwrap(), "--strategy", "all"]);
    assert_eq!(code, 2);
    assert!(err.contains("--call-log"), "{err}");
}
