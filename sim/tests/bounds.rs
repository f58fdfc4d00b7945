//! The bounds of the simulator's input: every numeric flag and scenario field beyond its bound is
//! refused with exit code 2 and a message naming it and the bound, before any run is built; every
//! size the project itself uses stays within them.

mod support;

use clap::CommandFactory;
use proptest::prelude::*;
use std::time::Duration;
use support::sim_guarded;
use tollgate_sim::bounds::{
    Grouped, MAX_AGENTS, MAX_DURATION, MAX_REQUESTS, MAX_RPM, MAX_SPIKE_MULTIPLIER,
    MAX_SWEEP_POINTS, MAX_TPM, MIN_SPIKE_MULTIPLIER,
};
use tollgate_sim::cli::{self, Args, Stop};
use tollgate_sim::scenario::{Scenario, BUILT_IN};

/// The inputs that once ran out of memory, ran on without end or got a misleading message: each
/// is now refused at once, naming its flag and its bound. Run within a memory and CPU limit, so a
/// `sim` that built the run first would be ended by a signal rather than exit with code 2.
#[test]
fn each_oversized_flag_exits_2_naming_the_flag_and_its_bound() {
    let agents = Grouped(MAX_AGENTS).to_string();
    let rpm = Grouped(MAX_RPM).to_string();
    let requests = Grouped(MAX_REQUESTS).to_string();
    for (args, needles) in [
        (vec!["--agents", "4294967295"], vec!["--agents", &agents]),
        (vec!["--rpm", "18446744073709551615"], vec!["--rpm", &rpm]),
        (vec!["--rpm", "100000000"], vec!["--rpm", &rpm]),
        (
            vec!["--spike", "0s,1e300,1m"],
            vec!["--spike multiplier", "[0.01, 100]", "got 1e300"],
        ),
        (vec!["--duration", "100y"], vec!["--duration", "24h"]),
        (
            vec!["--rpm", "-1"],
            vec!["--rpm must be a positive integer, got -1"],
        ),
        (
            vec!["--seed", "-1"],
            vec!["--seed must be a non-negative integer, got -1"],
        ),
        (vec!["--headroom", "NaN"], vec!["--headroom", "(0, 1]"]),
        (vec!["--spike", "0s,inf,1m"], vec!["--spike multiplier"]),
        (
            vec!["--sweep", "0.5:1:1e-300"],
            vec!["--sweep", "at most 50"],
        ),
        // Within each flag's bound, beyond what a run holds: rate × duration.
        (vec!["--rpm", "1000000"], vec!["--rpm", &requests]),
    ] {
        let (code, out, err) = sim_guarded(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        for needle in needles {
            assert!(err.contains(needle), "{args:?}: `{needle}` not in {err}");
        }
    }
}

/// The reference scenario with `from` replaced by `to`.
fn reference_with(from: &str, to: &str) -> String {
    let text = BUILT_IN
        .iter()
        .find(|(name, _)| *name == "reference")
        .map(|(_, text)| *text)
        .unwrap();
    assert!(text.contains(from), "{from}");
    text.replacen(from, to, 1)
}

#[test]
fn a_scenario_field_beyond_its_bound_is_refused_naming_the_field_and_its_bound() {
    for (from, to, needles) in [
        (
            "count = 5",
            "count = 200000",
            vec!["agents[].count", "100,000"],
        ),
        (
            "rpm = 50",
            "rpm = 100000000",
            vec!["provider.rpm", "1,000,000"],
        ),
        (
            "rpm = 50",
            "rpm = 50\nitpm = 100000000000",
            vec!["provider.itpm", "10,000,000,000"],
        ),
        (
            "duration = \"10m\"",
            "duration = \"100y\"",
            vec!["duration", "24h"],
        ),
        ("drain = \"10m\"", "drain = \"25h\"", vec!["drain", "24h"]),
        (
            "latency = \"800ms\"",
            "latency = \"2h\"",
            vec!["provider.latency", "1h"],
        ),
        (
            "latency_per_token = \"2ms\"",
            "latency_per_token = \"2s\"",
            vec!["provider.latency_per_token", "1s"],
        ),
        (
            "multiplier = 2.0",
            "multiplier = 1e300",
            vec!["spikes[0].multiplier", "[0.01, 100]"],
        ),
        ("at = \"4m\"", "at = \"100y\"", vec!["spikes[0].at", "24h"]),
        (
            "length = \"1m\"",
            "length = \"2d\"",
            vec!["spikes[0].length", "24h"],
        ),
        (
            "rate_per_min = 15.0",
            "rate_per_min = nan",
            vec!["agents[0].rate_per_min", "got NaN"],
        ),
        (
            "rate_per_min = 15.0",
            "rate_per_min = 1e300",
            vec!["agents[0].rate_per_min", "1000000"],
        ),
        (
            "input_tokens = 1000",
            "input_tokens = 100000000",
            vec!["agents[0].input_tokens", "10,000,000"],
        ),
        (
            "max_tokens = 1024",
            "max_tokens = 18446744073709551615",
            vec!["agents[0].max_tokens", "10,000,000"],
        ),
        (
            "arrival = \"constant\"",
            "arrival = \"closed\"",
            vec!["agents[0].think_time", "1ms"],
        ),
        (
            "output_fraction = 0.5",
            "output_fraction = inf",
            vec!["agents[0].output_fraction", "[0, 1]"],
        ),
        (
            "[[spikes]]",
            "[prices]\ninput_per_mtok = 1e300\noutput_per_mtok = 1.0\n\n[[spikes]]",
            vec!["prices.input_per_mtok", "10000"],
        ),
        (
            "seed = 1",
            "seed = 1\nheadroom = 0.001",
            vec!["headroom", "provider.rpm"],
        ),
        // Every field within its bound, the run beyond what it holds: 5 × 50,000 a minute.
        (
            "rate_per_min = 15.0",
            "rate_per_min = 50000.0",
            vec!["agents[].rate_per_min", "2,000,000"],
        ),
    ] {
        let err = Scenario::from_toml(&reference_with(from, to))
            .unwrap_err()
            .to_string();
        for needle in needles {
            assert!(err.contains(needle), "{to}: `{needle}` not in {err}");
        }
    }
}

#[test]
fn a_scenario_file_beyond_a_bound_exits_2_naming_the_field() {
    let dir = std::env::temp_dir().join(format!("tollgate-sim-bounds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("huge.toml");
    std::fs::write(&file, reference_with("count = 5", "count = 4294967295")).unwrap();
    let (code, out, err) = sim_guarded(&["--scenario", file.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("agents[].count") && err.contains("100,000"),
        "{err}"
    );
}

#[test]
fn every_size_the_project_uses_is_within_the_bounds() {
    for (name, _) in BUILT_IN {
        for args in [
            vec!["sim", "--scenario", name, "--sweep", "0.7:1.0:0.1"],
            vec!["sim", "--scenario", name, "--agents", "1000"],
        ] {
            if let Err(e) = cli::plan(args.iter().copied()) {
                panic!("{args:?}: {e:?}");
            }
        }
    }
    for args in [
        vec!["sim"],
        vec!["sim", "--agents", "5", "--rpm", "50"],
        vec!["sim", "--agents", "500", "--rpm", "6000"],
        vec![
            "sim",
            "--agents",
            "500",
            "--rpm",
            "6000",
            "--duration",
            "1h",
        ],
        vec![
            "sim",
            "--agents",
            "5000",
            "--rpm",
            "60000",
            "--duration",
            "120s",
        ],
        vec![
            "sim",
            "--agents",
            "20",
            "--rpm",
            "500",
            "--sweep",
            "0.6:1.0:0.1",
        ],
        vec!["sim", "--arrival", "closed"],
        vec!["sim", "--agents", "100000", "--rpm", "1"],
        vec!["sim", "--duration", "24h", "--spike", "24h,100,24h"],
    ] {
        if let Err(e) = cli::plan(args.iter().copied()) {
            panic!("{args:?}: {e:?}");
        }
    }
    // The simulator's bench: 500 agents against 6,000 RPM for an hour.
    let mut hour = Scenario::from_flags(500, 6000);
    hour.duration = Duration::from_secs(3_600);
    hour.validate().unwrap();
}

#[test]
fn the_help_states_every_bound() {
    let help = Args::command().render_long_help().to_string();
    for bound in [
        format!("--agents 1 to {}", Grouped(MAX_AGENTS)),
        format!("--rpm 1 to {}", Grouped(MAX_RPM)),
        format!("0 (none) to\n  {}", Grouped(MAX_TPM)),
        "--duration up to 24h".to_owned(),
        format!("multiplier {MIN_SPIKE_MULTIPLIER}\n  to {MAX_SPIKE_MULTIPLIER}"),
        format!("--sweep at most {MAX_SWEEP_POINTS} points"),
        format!("about\n  {} requests", Grouped(MAX_REQUESTS)),
    ] {
        let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            flat(&help).contains(&flat(&bound)),
            "`{bound}` not in {help}"
        );
    }
    assert_eq!(MAX_DURATION, Duration::from_secs(24 * 3_600));
}

// ===== arbitrary numbers, flag by flag =====

/// Text a user might type for a number: integers of any size and sign, reals of any class
/// (NaN, infinities, subnormals), and digit strings too long for any integer type.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i128>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        (0u64..300_000).prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|v| v.to_string()),
        (-2.0f64..2.0).prop_map(|v| v.to_string()),
        // Headrooms that leave less than one request of the default 50 RPM, and some that do not.
        (0.0f64..0.03).prop_map(|v| v.to_string()),
        "[-+]?[0-9]{1,40}(\\.[0-9]{0,6})?(e[-+]?[0-9]{1,3})?",
        Just("NaN".to_owned()),
        Just("inf".to_owned()),
        Just("-inf".to_owned()),
        Just(String::new()),
    ]
}

/// Text a user might type for a duration: a number and a unit, or a bare number.
fn duration_text() -> impl Strategy<Value = String> {
    let unit = prop_oneof![
        Just(""),
        Just("ns"),
        Just("ms"),
        Just("s"),
        Just("m"),
        Just("h"),
        Just("d"),
        Just("w"),
        Just("y"),
    ];
    (number_text(), unit).prop_map(|(n, u)| format!("{n}{u}"))
}

/// A flag and a value for it.
fn flag_and_value() -> impl Strategy<Value = (&'static str, String)> {
    let numbers = prop_oneof![
        Just("--agents"),
        Just("--rpm"),
        Just("--tpm"),
        Just("--itpm"),
        Just("--otpm"),
        Just("--seed"),
        Just("--headroom"),
    ];
    prop_oneof![
        (numbers, number_text()),
        (Just("--duration"), duration_text()),
        (
            Just("--spike"),
            (duration_text(), number_text(), duration_text())
                .prop_map(|(a, m, l)| format!("{a},{m},{l}"))
        ),
        (
            Just("--sweep"),
            (number_text(), number_text(), number_text())
                .prop_map(|(f, t, s)| format!("{f}:{t}:{s}"))
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Whatever number is typed, the command line is either accepted with a scenario within
    /// every bound, or refused with exit code 2 and a message naming the flag; parsing never
    /// panics (and never builds a run: `plan` only parses and checks).
    #[test]
    fn any_number_is_accepted_within_bounds_or_refused_naming_the_flag(
        (flag, value) in flag_and_value()
    ) {
        match cli::plan(["sim", flag, value.as_str()]) {
            Ok(plan) => {
                let s = &plan.scenario;
                prop_assert!(s.validate().is_ok());
                prop_assert!(u64::from(s.agent_count()) <= MAX_AGENTS);
                prop_assert!((1..=MAX_RPM).contains(&s.provider.rpm));
                prop_assert!(s.provider.itpm <= MAX_TPM && s.provider.otpm <= MAX_TPM);
                prop_assert!(!s.duration.is_zero() && s.duration <= MAX_DURATION);
                prop_assert!(s.requests_estimate() <= MAX_REQUESTS as f64);
                prop_assert!(plan.sweep.len() as u64 <= MAX_SWEEP_POINTS);
                for spike in &s.spikes {
                    prop_assert!(
                        (MIN_SPIKE_MULTIPLIER..=MAX_SPIKE_MULTIPLIER).contains(&spike.multiplier)
                    );
                }
            }
            Err(stop) => {
                prop_assert_eq!(stop.exit_code(), 2);
                let Stop::BadInput(message) = stop else {
                    return Err(TestCaseError::fail("help or version for a number"));
                };
                prop_assert!(message.contains(flag), "{}", message);
            }
        }
    }

    /// The flags nothing else limits are accepted exactly within their bounds.
    #[test]
    fn a_whole_number_is_accepted_exactly_when_it_is_within_its_flag_s_bound(
        n in prop_oneof![0u64..=200_000, 9_999_999_000u64..=10_000_001_000, any::<u64>()],
    ) {
        let text = n.to_string();
        for (flag, min, max) in [
            ("--agents", 1, MAX_AGENTS),
            ("--tpm", 0, MAX_TPM),
            ("--otpm", 0, MAX_TPM),
            ("--seed", 0, u64::MAX),
        ] {
            let accepted = cli::plan(["sim", flag, text.as_str()]).is_ok();
            prop_assert_eq!(accepted, (min..=max).contains(&n), "{} {}", flag, n);
        }
    }
}
