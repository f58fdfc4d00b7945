//! Scenarios from files: `sim --scenario path/to/file.toml` runs one, and an error in it names its
//! line and field.

mod support;

use std::path::PathBuf;
use support::sim;

/// Writes `text` to a file of its own under the target directory and returns its path.
fn file(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("scenario-files");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const GOOD: &str = r#"name = "from-a-file"
description = "two agents for a minute"
seed = 7
duration = "1m"
drain = "1m"

[provider]
rpm = 20

[[agents]]
count = 2
arrival = "constant"
rate_per_min = 12.0
input_tokens = 100
max_tokens = 100
output_fraction = 0.5
"#;

#[test]
fn a_scenario_file_runs_like_a_built_in_one() {
    let path = file("good.toml", GOOD);
    let (code, out, err) = sim(&[
        "--scenario",
        path.to_str().unwrap(),
        "--strategy",
        "tollgate",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["scenario"]["name"], "from-a-file");
    assert_eq!(v["scenario"]["provider"]["rpm"], 20);
    assert_eq!(v["results"][0]["strategy"], "tollgate");
    assert!(v["results"][0]["requests_ok"].as_u64().unwrap() > 0);
}

#[test]
fn an_error_in_a_scenario_file_names_its_line_and_field() {
    for (what, from, to, needle) in [
        // Parse errors: a wrong type, an unknown field.
        (
            "type",
            "rpm = 20",
            "rpm = \"many\"",
            "line 8, field provider.rpm:",
        ),
        (
            "unknown",
            "rpm = 20",
            "rpx = 20",
            "line 8, field provider.rpx:",
        ),
        // Rule errors, in a table and in the first array of tables.
        (
            "rule",
            "rpm = 20",
            "rpm = 0",
            "line 8, field provider.rpm: provider.rpm must be",
        ),
        (
            "array",
            "output_fraction = 0.5",
            "output_fraction = 1.5",
            "line 16, field agents[0].output_fraction: agents[0].output_fraction must be",
        ),
        // A rule over every group points at the first group's field.
        (
            "groups",
            "count = 2",
            "count = 0",
            "line 11, field agents[].count:",
        ),
    ] {
        let path = file(&format!("{what}.toml"), &GOOD.replace(from, to));
        let (code, _, err) = sim(&["--scenario", path.to_str().unwrap()]);
        assert_eq!(code, 2, "{what}: {err}");
        assert!(err.contains(needle), "{what}: {err}");
        assert!(err.contains(path.to_str().unwrap()), "{what}: {err}");
    }
    let (code, _, err) = sim(&["--scenario", "/nonexistent/scenario.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/scenario.toml"), "{err}");
}
