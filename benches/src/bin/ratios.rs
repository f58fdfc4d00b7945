//! Writes `results/bench/ratios.md` from criterion's estimates: ns per call of every
//! implementation in every group, and the ratio of tollgate to each peer, with the machine they were
//! measured on.
//!
//! ```text
//! ratios [CRITERION_DIR [OUT]]    (defaults: target/criterion, results/bench/ratios.md)
//! ```
//!
//! A group is `<family>/<workload>` (`overhead/1-task`); its benchmarks are the implementations.
//! The subject of a family (the one divided by the others) is named in [`SUBJECTS`]. The figure is
//! criterion's mean time per iteration (`new/estimates.json`, `mean.point_estimate`); the slope of
//! its linear regression, which criterion prints as `time:` and which leaves out a sample's fixed
//! cost (spawning and joining the 64 tasks), is shown beside it. `CRITERION_DIR/instructions.tsv`
//! (`family`, `benchmark`, instructions per call, tab-separated), written by `scripts/bench.sh` from
//! callgrind, adds instruction counts on one task.
//!
//! The family `sim` (group `sim`, from `benches/sim/sim.rs`) is not a comparison: one iteration is a
//! whole simulator run, and its throughput in `benchmark.json` (`Elements`) is the simulated calls
//! of a run. It gets its own section, "simulator": calls per run, mean wall time per run, and
//! simulated calls per wall second against the target of [`SIM_TARGET`]. The family `sim-floor`
//! (same file, same benchmark names) is the ceiling of each: the simulator's paused tokio runtime
//! alone visiting as many virtual instants as the run did, with the run's calls as throughput; it
//! is shown beside the run it belongs to.
//!
//! `scripts/bench.sh` runs the benches and then this;
//! `TOLLGATE_BENCH_COMMAND` and `TOLLGATE_BENCH_LOADAVG` tell it what was run and the load before
//! the run.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Per family: the benchmark the others are compared with, and what the comparison means.
const SUBJECTS: &[(&str, &str, &str)] = &[
    (
        "overhead",
        "tollgate",
        "One call over a ready no-op service: tollgate (RPM + input TPM, one scope) against what \
         users write today. Ratio = tollgate ÷ peer; at most 1.0 means tollgate is no slower.",
    ),
    (
        "scopes",
        "tollgate-3-scopes-2-tiers",
        "The same call charged to three scopes (global, team, agent) in two priority tiers, \
         against one scope. Ratio = three scopes ÷ one scope.",
    ),
];

/// The order implementations are listed in (others follow, sorted).
const ORDER: &[&str] = &[
    "tollgate",
    "governor",
    "tower",
    "leaky-bucket",
    "tollgate-3-scopes-2-tiers",
    "tollgate-1-scope",
    "reference",
    "500-agents-1h",
    "raw-script-3-scopes",
    "acquire-3-scopes",
    "layer-3-scopes",
];

/// The criterion group of the simulator's speed (`benches/sim/sim.rs`).
const SIM_FAMILY: &str = "sim";

/// The criterion group of the simulator's ceiling: its runtime alone (`benches/sim/sim.rs`).
const SIM_FLOOR_FAMILY: &str = "sim-floor";

/// The simulator's target (issue 7): simulated calls per wall second.
const SIM_TARGET: f64 = 1_000_000.0;

/// The criterion group family of the Redis store (`benches/redis.rs`).
const REDIS_FAMILY: &str = "redis";

/// The Redis store's target: admissions per second from one process, three scopes.
const REDIS_TARGET: f64 = 30_000.0;

/// The Redis store's second target: `acquire-3-scopes` at least this fraction of the throughput of
/// `raw-script-3-scopes` (the same script sent straight through redis-rs) measured in the same run.
const REDIS_RAW_TARGET: f64 = 0.8;

/// The Redis store's ceiling: its admission script alone (`benches/redis.rs`).
const REDIS_RAW: &str = "raw-script-3-scopes";

/// What each benchmark is, for the table's legend.
const LEGEND: &[(&str, &str)] = &[
    ("tollgate", "`ThrottleLayer`, scope `global` with an RPM and an input-TPM limit, in-memory store, estimate 1 request + 10 input tokens, usage read back and reconciled"),
    ("governor", "two direct governor 0.10 limiters (quanta clock), `check()` + `check_n(10)` before the service; no queue, no reconcile"),
    ("tower", "tower 0.5 `ConcurrencyLimit` (one shared semaphore) over `RateLimit`; requests only (no weights); `RateLimit` is not `Clone`, so one per task: 64 separate limits in the 64-task workload"),
    ("leaky-bucket", "two leaky-bucket 1.1 limiters (default fair scheduler), `acquire_one()` + `acquire(10)` before the service"),
    ("tollgate-3-scopes-2-tiers", "scopes `global`, `team:*`, `agent:*` (RPM + input TPM each), 64 agents in 4 teams, tiers 0 (reserved share 0.25) and 1"),
    ("tollgate-1-scope", "the same requests, scope `global` only"),
    ("reference", "the built-in `reference` scenario: 5 agents against a 50 RPM key, demand 1.5× the limit with a 2× spike, 10 simulated minutes (and up to 10 of drain)"),
    ("raw-script-3-scopes", "the store's admission script alone: `EVALSHA` with the keys and arguments `acquire-3-scopes` sends, from 64 tasks over one multiplexed redis-rs connection (which pipelines concurrent requests), no store and no layer; the ceiling of the store on this machine"),
    ("acquire-3-scopes", "`RedisStore::acquire_with` (the `Store` trait, with the store's handle of the three scopes made once, as the layer does) from 64 tasks on a 2-worker runtime over one multiplexed connection, every call in three scopes (RPM + input TPM each) far below their limits, against a local `redis-server` the bench starts; one admission script per call, nothing settled"),
    ("layer-3-scopes", "whole calls through `ThrottleLayer` on the same store: the admission plus the settle the layer sends in the background"),
    ("500-agents-1h", "`Scenario::from_flags(500, 6000)` with a duration of one hour: 500 agents against a 6,000 RPM key, demand 1.5× the limit with a 2× spike"),
];

/// One benchmark's estimates, in nanoseconds per iteration (a call; a whole run for the simulator).
#[derive(Debug, Clone, Copy)]
struct Estimate {
    mean: f64,
    mean_lo: f64,
    mean_hi: f64,
    slope: Option<f64>,
    /// The throughput criterion was given: elements (calls) per iteration.
    elements: Option<u64>,
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "target/criterion".into()));
    let out = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "results/bench/ratios.md".into()),
    );
    let mut found = Vec::new();
    if let Err(e) = walk(&dir, &mut found) {
        eprintln!("ratios: cannot read {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    // family → workload → implementation → estimate
    let mut families: BTreeMap<String, BTreeMap<String, BTreeMap<String, Estimate>>> =
        BTreeMap::new();
    for new in found {
        match read(&new) {
            Ok((group, function, est)) => {
                let (family, workload) = group.split_once('/').unwrap_or((&group, ""));
                families
                    .entry(family.to_string())
                    .or_default()
                    .entry(workload.to_string())
                    .or_default()
                    .insert(function, est);
            }
            Err(e) => eprintln!("ratios: skipping {}: {e}", new.display()),
        }
    }
    if families.is_empty() {
        eprintln!(
            "ratios: no criterion results under {}; run scripts/bench.sh",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    let counts = instructions(&dir.join("instructions.tsv"));
    let text = render(&families, &counts);
    if let Some(parent) = out.parent() {
        if let Err(e) = std::fs::create_dir_all(parent) {
            eprintln!("ratios: cannot create {}: {e}", parent.display());
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = std::fs::write(&out, text) {
        eprintln!("ratios: cannot write {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    println!("wrote {}", out.display());
    ExitCode::SUCCESS
}

/// Every `new` directory under `dir` that holds a `benchmark.json`.
fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") {
            if path.join("benchmark.json").is_file() {
                found.push(path);
            }
        } else {
            walk(&path, found)?;
        }
    }
    Ok(())
}

/// Group id, function id and estimates of one `new` directory.
fn read(new: &Path) -> Result<(String, String, Estimate), String> {
    let json = |name: &str| -> Result<Value, String> {
        let text = std::fs::read_to_string(new.join(name)).map_err(|e| format!("{name}: {e}"))?;
        serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))
    };
    let bench = json("benchmark.json")?;
    let est = json("estimates.json")?;
    let text = |v: &Value, key: &str| {
        v[key]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("benchmark.json has no {key}"))
    };
    let num = |v: &Value| {
        v.as_f64()
            .ok_or_else(|| "estimates.json: not a number".to_string())
    };
    let mean = &est["mean"];
    Ok((
        text(&bench, "group_id")?,
        text(&bench, "function_id")?,
        Estimate {
            mean: num(&mean["point_estimate"])?,
            mean_lo: num(&mean["confidence_interval"]["lower_bound"])?,
            mean_hi: num(&mean["confidence_interval"]["upper_bound"])?,
            slope: est["slope"]["point_estimate"].as_f64(),
            elements: bench["throughput"]["Elements"].as_u64(),
        },
    ))
}

/// Instructions per call by `(family, benchmark)`; empty when the file is missing.
fn instructions(path: &Path) -> BTreeMap<(String, String), u64> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeMap::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (family, name, count) = (f.next()?, f.next()?, f.next()?.trim().parse().ok()?);
            Some(((family.to_string(), name.to_string()), count))
        })
        .collect()
}

fn rank(name: &str) -> (usize, &str) {
    (
        ORDER.iter().position(|o| *o == name).unwrap_or(ORDER.len()),
        name,
    )
}

type Families = BTreeMap<String, BTreeMap<String, BTreeMap<String, Estimate>>>;

fn render(families: &Families, counts: &BTreeMap<(String, String), u64>) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# tollgate benchmarks: per-call overhead and ratios\n");
    let _ = writeln!(
        md,
        "Generated by `scripts/bench.sh` (criterion, then `cargo run -p tollgate-benches --bin \
         ratios`); do not edit. Figures are ns per call (mean of criterion's samples, 95 % \
         interval in brackets; the regression slope, which criterion prints, in the last column). \
         64 tasks: aggregate wall time ÷ calls on a 2-worker runtime (inverse throughput, not \
         latency). Lower is better. The simulator section measures whole runs instead.\n"
    );
    machine(&mut md);
    for (family, workloads) in families {
        if family == SIM_FAMILY {
            // The layer's cheapest call: one scope over a no-op service, on one task.
            let layer = families
                .get("overhead")
                .and_then(|f| f.get("1-task"))
                .and_then(|w| w.get("tollgate"))
                .map(|e| e.mean);
            simulator(&mut md, workloads, families.get(SIM_FLOOR_FAMILY), layer);
            continue;
        }
        if family == SIM_FLOOR_FAMILY {
            continue; // in the simulator's section
        }
        if family == REDIS_FAMILY {
            redis(&mut md, workloads);
            continue;
        }
        let (subject, about) = SUBJECTS
            .iter()
            .find(|(f, _, _)| f == family)
            .map(|(_, s, a)| (*s, *a))
            .unwrap_or(("tollgate", ""));
        let _ = writeln!(md, "## {family}\n");
        if !about.is_empty() {
            let _ = writeln!(md, "{about}\n");
        }
        let mut names: Vec<&str> = workloads
            .values()
            .flat_map(|w| w.keys().map(String::as_str))
            .collect();
        names.sort_by_key(|n| rank(n));
        names.dedup();
        let _ = writeln!(
            md,
            "| workload | implementation | ns/call (mean) | {subject} ÷ it | slope ns/call |"
        );
        let _ = writeln!(md, "|---|---|---:|---:|---:|");
        for (workload, benches) in workloads {
            let base = benches.get(subject).map(|e| e.mean);
            for name in &names {
                let Some(e) = benches.get(*name) else {
                    continue;
                };
                let ratio = match base {
                    Some(b) if *name != subject => format!("**{:.2}**", b / e.mean),
                    _ => "—".into(),
                };
                let slope = e.slope.map_or("—".into(), |s| format!("{s:.1}"));
                let _ = writeln!(
                    md,
                    "| {workload} | {name} | {:.1} [{:.1}, {:.1}] | {ratio} | {slope} |",
                    e.mean, e.mean_lo, e.mean_hi
                );
            }
        }
        let _ = writeln!(md);
        let count = |name: &str| counts.get(&(family.clone(), name.to_string())).copied();
        if names.iter().any(|n| count(n).is_some()) {
            let _ = writeln!(
                md,
                "Instructions per call on one task (callgrind; the load of the machine does not \
                 move them, but they ignore what an instruction costs: atomics, divisions, cache \
                 misses, and contention):\n"
            );
            let _ = writeln!(
                md,
                "| implementation | instructions/call | {subject} ÷ it |"
            );
            let _ = writeln!(md, "|---|---:|---:|");
            let base = count(subject);
            for name in &names {
                let Some(c) = count(name) else { continue };
                let ratio = match base {
                    Some(b) if *name != subject && c > 0 => {
                        format!("**{:.2}**", b as f64 / c as f64)
                    }
                    _ => "—".into(),
                };
                let _ = writeln!(md, "| {name} | {c} | {ratio} |");
            }
            let _ = writeln!(md);
        }
        for (name, what) in LEGEND {
            if names.contains(name) {
                let _ = writeln!(md, "* `{name}`: {what}.");
            }
        }
        let _ = writeln!(md);
    }
    md
}

/// The section "simulator": per benchmark, the simulated calls of a run, the mean wall time of a
/// run, and simulated calls per wall second against [`SIM_TARGET`] and against the ceiling of the
/// same scenario from `floor` (the family [`SIM_FLOOR_FAMILY`]), when it was measured; then what
/// the target leaves per call beside the runtime, against `layer`, the ns of the layer's cheapest
/// call.
fn simulator(
    md: &mut String,
    workloads: &BTreeMap<String, BTreeMap<String, Estimate>>,
    floor: Option<&BTreeMap<String, BTreeMap<String, Estimate>>>,
    layer: Option<f64>,
) {
    let flat = |w: &'_ BTreeMap<String, BTreeMap<String, Estimate>>| -> Vec<(String, Estimate)> {
        w.values()
            .flat_map(|w| w.iter().map(|(n, e)| (n.clone(), *e)))
            .collect()
    };
    let ceilings: BTreeMap<String, Estimate> =
        floor.map(flat).unwrap_or_default().into_iter().collect();
    let mut benches: Vec<(&str, &Estimate)> = workloads
        .values()
        .flat_map(|w| w.iter().map(|(n, e)| (n.as_str(), e)))
        .collect();
    benches.sort_by_key(|(n, _)| rank(n));
    let target = thousands(SIM_TARGET);
    let _ = writeln!(md, "## simulator\n");
    let _ = writeln!(
        md,
        "Wall time of one whole simulator run (`tollgate_sim::engine::run`, strategy `tollgate`: \
         every call through the real layer against the mock provider, in virtual time), and the \
         simulated calls of the run (the requests the mock provider received) ÷ that time. \
         Target: at least {target} simulated calls per wall second. Higher is better.\n\n\
         Ceiling: the same calls ÷ the wall time the simulator's paused tokio runtime takes, \
         alone, to park as often as the run did (one timer reset a millisecond ahead at each \
         park, and nothing else; group `sim-floor`). The run parks once for each virtual instant \
         something happens at, and once more on the way to a timer more than 64 ms ahead (tokio's \
         timer wheel steps down a level), so this is what tokio's timer and clock cost the run: \
         the run would reach its ceiling only if the layer, the provider and the engine cost \
         nothing.\n"
    );
    let _ = writeln!(
        md,
        "| scenario | simulated calls per run | wall time per run (mean) | simulated calls per wall \
         second | ceiling (runtime alone) | run ÷ ceiling | target | met? |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---|");
    let mut verdicts = Vec::new();
    for (name, e) in &benches {
        let Some(calls) = e.elements.filter(|c| *c > 0) else {
            let _ = writeln!(
                md,
                "| {name} | not recorded | {} | — | {target} | unknown |",
                wall(e.mean)
            );
            continue;
        };
        let calls = calls as f64;
        let rate = |ns: f64| calls / (ns / 1e9);
        let (per_s, lo, hi) = (rate(e.mean), rate(e.mean_hi), rate(e.mean_lo));
        let met = per_s >= SIM_TARGET;
        let verdict = if met {
            format!("**yes** ({:.2}× the target)", per_s / SIM_TARGET)
        } else {
            format!("**no** ({:.3}× the target)", per_s / SIM_TARGET)
        };
        let floor = ceilings.get(*name);
        let ceiling = floor.map(|f| rate(f.mean));
        let (ceiling_text, share) = match (floor, ceiling) {
            (Some(f), Some(c)) => (
                format!(
                    "{} [{}, {}]",
                    thousands(c),
                    thousands(rate(f.mean_hi)),
                    thousands(rate(f.mean_lo))
                ),
                format!("{:.2}", per_s / c),
            ),
            _ => ("not measured".into(), "—".into()),
        };
        let _ = writeln!(
            md,
            "| {name} | {} | {} [{}, {}] | {} [{}, {}] | {ceiling_text} | {share} | {target} | \
             {verdict} |",
            thousands(calls),
            wall(e.mean),
            wall(e.mean_lo),
            wall(e.mean_hi),
            thousands(per_s),
            thousands(lo),
            thousands(hi),
        );
        verdicts.push((*name, met, per_s, ceiling));
    }
    let _ = writeln!(md);
    if !verdicts.is_empty() {
        let all = verdicts.iter().all(|(_, met, _, _)| *met);
        let none = verdicts.iter().all(|(_, met, _, _)| !*met);
        let list = |met: bool| {
            verdicts
                .iter()
                .filter(|(_, m, _, _)| *m == met)
                .map(|(n, _, r, _)| format!("`{n}` ({} calls/s)", thousands(*r)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let line = if all {
            format!("The target of {target} simulated calls per wall second is **met** by every scenario.")
        } else if none {
            format!(
                "The target of {target} simulated calls per wall second is **not met**: {}.",
                list(false)
            )
        } else {
            format!(
                "The target of {target} simulated calls per wall second is **met** by {} and \
                 **not met** by {}.",
                list(true),
                list(false)
            )
        };
        let _ = writeln!(md, "{line}\n");
        // What the target leaves per call for everything but the runtime.
        let budgets: Vec<String> = verdicts
            .iter()
            .filter_map(|(n, _, _, c)| {
                c.map(|c| {
                    let left = 1e9 / SIM_TARGET - 1e9 / c;
                    if left > 0.0 {
                        format!("`{n}` {left:.0} ns")
                    } else {
                        format!("`{n}` nothing (the runtime alone takes {:.0} ns)", 1e9 / c)
                    }
                })
            })
            .collect();
        if !budgets.is_empty() {
            let layer = match layer {
                Some(ns) => format!(
                    " The layer's cheapest call alone (`overhead/1-task`: one scope, a no-op \
                     service, no wait) takes {ns:.0} ns."
                ),
                None => String::new(),
            };
            let _ = writeln!(
                md,
                "At the target, a simulated call has {:.0} ns. Left of it per call for the layer, the \
                 mock provider, the retry policy and the engine together, once the runtime took its \
                 share: {}.{layer}\n",
                1e9 / SIM_TARGET,
                budgets.join("; ")
            );
        }
    }
    for (name, what) in LEGEND {
        if benches.iter().any(|(n, _)| n == name) {
            let _ = writeln!(md, "* `{name}`: {what}.");
        }
    }
    let _ = writeln!(md);
}

/// The section "redis": admissions (or whole calls) per second from one process against a local
/// Redis, each as a fraction of the admission script alone; the targets apply to
/// `acquire-3-scopes`.
fn redis(md: &mut String, workloads: &BTreeMap<String, BTreeMap<String, Estimate>>) {
    let target = thousands(REDIS_TARGET);
    let _ = writeln!(md, "## redis\n");
    let _ = writeln!(
        md,
        "Calls per wall second from one process through the Redis store (`crates/tollgate-redis`) \
         against a `redis-server` on the same machine, which shares its two cores. Targets for \
         `acquire-3-scopes`: at least {target} admissions per second, and at least {:.2}× the \
         throughput of `{REDIS_RAW}` (the same script without the store, measured in the same \
         run). Higher is better.\n",
        REDIS_RAW_TARGET
    );
    let _ = writeln!(
        md,
        "| workload | benchmark | calls per second (mean [95 % interval]) | ÷ raw script | target | met? |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---|");
    let rate = |e: &Estimate, ns: f64| e.elements.unwrap_or(1) as f64 / (ns / 1e9);
    let mut names = Vec::new();
    let mut ratios = Vec::new();
    for (workload, benches) in workloads {
        let raw = benches.get(REDIS_RAW).map(|e| rate(e, e.mean));
        let mut sorted: Vec<(&String, &Estimate)> = benches.iter().collect();
        sorted.sort_by_key(|(n, _)| rank(n));
        for (name, e) in sorted {
            names.push(name.as_str());
            let (mean, lo, hi) = (rate(e, e.mean), rate(e, e.mean_hi), rate(e, e.mean_lo));
            let of_raw = raw.map_or("—".into(), |r| format!("{:.2}", mean / r));
            let (goal, met) = if name == "acquire-3-scopes" {
                if let Some(r) = raw {
                    ratios.push((workload, mean / r));
                }
                (
                    target.clone(),
                    format!(
                        "{} ({:.2}× the target)",
                        yes_no(mean >= REDIS_TARGET),
                        mean / REDIS_TARGET
                    ),
                )
            } else {
                ("—".into(), "—".into())
            };
            let _ = writeln!(
                md,
                "| {workload} | {name} | {} [{}, {}] | {of_raw} | {goal} | {met} |",
                thousands(mean),
                thousands(lo),
                thousands(hi)
            );
        }
    }
    for (workload, ratio) in ratios {
        let _ = writeln!(
            md,
            "| {workload} | `RedisStore::acquire` ÷ raw script | — | **{ratio:.2}** | ≥ {REDIS_RAW_TARGET:.2} | {} |",
            yes_no(ratio >= REDIS_RAW_TARGET)
        );
    }
    let _ = writeln!(md);
    for (name, what) in LEGEND {
        if names.contains(name) {
            let _ = writeln!(md, "* `{name}`: {what}.");
        }
    }
    let _ = writeln!(md);
}

/// A target's verdict.
fn yes_no(met: bool) -> &'static str {
    if met {
        "**yes**"
    } else {
        "**no**"
    }
}

/// A wall time in nanoseconds, in ms below ten seconds and in s above.
fn wall(ns: f64) -> String {
    if ns < 10e9 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// A count rounded to a whole number, with thousands separated by commas.
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The machine, toolchain, commit and time of the run.
fn machine(md: &mut String) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let unknown = || "unknown".to_string();
    let rustc = run(
        std::env::var("RUSTC").as_deref().unwrap_or("rustc"),
        &["-V"],
    )
    .unwrap_or_else(unknown);
    let date = run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(unknown);
    let commit = run("git", &["rev-parse", "--short", "HEAD"]).unwrap_or_else(unknown);
    // Changes to generated results (this file among them) are not changes to what is measured.
    let dirty = run(
        "git",
        &[
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ":/",
            ":(top,exclude)results",
        ],
    )
    .is_some_and(|s| !s.is_empty());
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| "not recorded".into());
    let _ = writeln!(md, "## Machine\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| CPUs (`nproc`) | {cpus} |");
    let _ = writeln!(md, "| CPU model | {model} |");
    let _ = writeln!(md, "| rustc | {rustc} |");
    let _ = writeln!(md, "| date | {date} |");
    let _ = writeln!(
        md,
        "| commit | {commit}{} |",
        if dirty { " + uncommitted changes" } else { "" }
    );
    let _ = writeln!(
        md,
        "| load average before the run | {} |",
        env("TOLLGATE_BENCH_LOADAVG")
    );
    let _ = writeln!(md, "| command | `{}` |\n", env("TOLLGATE_BENCH_COMMAND"));
}

/// The trimmed standard output of a command that succeeded.
fn run(program: &str, args: &[&str]) -> Option<String> {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}
