//! The command line: flags → scenario → run → outputs, and exit codes (0 ok, 2 bad input, 1 a
//! failure while running or writing).

use crate::report::Report;
use crate::scenario::{Arrival, Scenario, Spike};
use crate::strategy::StrategyKind;
use clap::Parser;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Simulate a fleet of LLM agents against a rate-limited provider, in virtual time, with each
/// client strategy, and compare 429s, utilization and over-throttling.
///
/// Examples:
///   sim --agents 5 --rpm 50
///   sim --scenario launch-spike --strategy tollgate,none --out results/launch-spike
///   sim --scenario my.toml --json
///   sim --agents 20 --rpm 500 --sweep 0.6:1.0:0.1 --out sweep
#[derive(Debug, Parser)]
#[command(name = "sim", version, verbatim_doc_comment)]
pub struct Args {
    /// A built-in scenario (reference, launch-spike, shared-key, max-tokens-skew, priority, runaway) or a
    /// TOML file. Without it, the default scenario built from --agents and --rpm.
    #[arg(long, value_name = "NAME|FILE")]
    pub scenario: Option<String>,
    /// Number of agents (default scenario: 5).
    #[arg(long)]
    pub agents: Option<u32>,
    /// The provider's requests per minute (default scenario: 50).
    #[arg(long)]
    pub rpm: Option<u64>,
    /// Tokens per minute: the provider's input-token limit (as OpenAI's `tokens` counts the
    /// prompt); same as --itpm.
    #[arg(long)]
    pub tpm: Option<u64>,
    /// Input tokens per minute.
    #[arg(long)]
    pub itpm: Option<u64>,
    /// Output tokens per minute.
    #[arg(long)]
    pub otpm: Option<u64>,
    /// How long requests arrive, e.g. 10m, 90s, 1h.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// The seed of every random draw.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Strategies: one, several separated by commas, or `all`.
    #[arg(long, default_value = "all")]
    pub strategy: String,
    /// How the agents' requests arrive: closed, constant or poisson.
    #[arg(long, value_parser = parse_arrival)]
    pub arrival: Option<Arrival>,
    /// A spike: AT,MULTIPLIER,LENGTH, e.g. 4m,2,1m (repeatable).
    #[arg(long, value_parser = parse_spike)]
    pub spike: Vec<Spike>,
    /// The headroom fraction of the strategies that take one (tollgate, tollgate-adaptive,
    /// cookbook), in (0, 1].
    #[arg(long)]
    pub headroom: Option<f64>,
    /// Sweep the headroom: FROM:TO:STEP, e.g. 0.6:1.0:0.1; adds the over-throttling vs 429 plot.
    #[arg(long, value_parser = parse_sweep)]
    pub sweep: Option<Sweep>,
    /// Write the table, JSON, CSV time series and plots into this directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// A headroom sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct Sweep(pub Vec<f64>);

fn parse_arrival(s: &str) -> Result<Arrival, String> {
    match s {
        "closed" => Ok(Arrival::Closed),
        "constant" => Ok(Arrival::Constant),
        "poisson" => Ok(Arrival::Poisson),
        _ => Err(format!("`{s}` is not closed, constant or poisson")),
    }
}

fn parse_spike(s: &str) -> Result<Spike, String> {
    let parts: Vec<&str> = s.split(',').collect();
    let [at, mult, len] = parts[..] else {
        return Err(format!(
            "`{s}`: a spike is AT,MULTIPLIER,LENGTH, e.g. 4m,2,1m"
        ));
    };
    let at =
        humantime::parse_duration(at.trim()).map_err(|e| format!("spike start `{at}`: {e}"))?;
    let multiplier: f64 = mult
        .trim()
        .parse()
        .map_err(|_| format!("spike multiplier `{mult}` is not a number"))?;
    if !(multiplier.is_finite() && multiplier > 0.0) {
        return Err(format!(
            "spike multiplier must be positive, got {multiplier}"
        ));
    }
    let length =
        humantime::parse_duration(len.trim()).map_err(|e| format!("spike length `{len}`: {e}"))?;
    Ok(Spike {
        at,
        multiplier,
        length,
    })
}

fn parse_sweep(s: &str) -> Result<Sweep, String> {
    let nums: Result<Vec<f64>, _> = s.split(':').map(|p| p.trim().parse::<f64>()).collect();
    let Ok(nums) = nums else {
        return Err(format!("`{s}`: a sweep is FROM:TO:STEP, e.g. 0.6:1.0:0.1"));
    };
    let [from, to, step] = nums[..] else {
        return Err(format!("`{s}`: a sweep is FROM:TO:STEP, e.g. 0.6:1.0:0.1"));
    };
    let ok = |v: f64| v.is_finite() && v > 0.0 && v <= 1.0;
    if !(ok(from) && ok(to) && from <= to && step.is_finite() && step > 0.0) {
        return Err(format!(
            "`{s}`: need 0 < FROM <= TO <= 1 and STEP > 0 (headroom fractions)"
        ));
    }
    let n = ((to - from) / step + 1e-9).floor() as usize + 1;
    if n > 50 {
        return Err(format!("`{s}` is {n} runs per strategy; at most 50"));
    }
    Ok(Sweep(
        (0..n)
            .map(|i| ((from + step * i as f64) * 1000.0).round() / 1000.0)
            .collect(),
    ))
}

/// The scenario the flags describe.
///
/// # Errors
/// A message for the user (exit code 2).
pub fn scenario(args: &Args) -> Result<Scenario, String> {
    let mut s = match &args.scenario {
        Some(name) if Path::new(name).is_file() => {
            let text = std::fs::read_to_string(name).map_err(|e| format!("{name}: {e}"))?;
            Scenario::from_toml(&text).map_err(|e| format!("{name}: {e}"))?
        }
        Some(name) => Scenario::built_in(name).map_err(|e| e.to_string())?,
        None => Scenario::from_flags(args.agents.unwrap_or(5), args.rpm.unwrap_or(50)),
    };
    if args.scenario.is_some() {
        if let Some(n) = args.agents {
            let total = s.agent_count().max(1);
            for g in &mut s.agents {
                // Scale each group, keeping at least one agent in groups that had some.
                let scaled = (g.count as u64 * n as u64 + total as u64 / 2) / total as u64;
                g.count = if g.count > 0 { scaled.max(1) as u32 } else { 0 };
            }
        }
        if let Some(r) = args.rpm {
            s.provider.rpm = r;
        }
    }
    if let Some(t) = args.tpm.or(args.itpm) {
        s.provider.itpm = t;
    }
    if let Some(t) = args.otpm {
        s.provider.otpm = t;
    }
    if let Some(d) = args.duration {
        s.duration = d;
    }
    if let Some(seed) = args.seed {
        s.seed = seed;
    }
    if let Some(a) = args.arrival {
        let default_rate = 1.5 * s.provider.rpm as f64 / s.agent_count().max(1) as f64;
        for g in &mut s.agents {
            g.arrival = a;
            if a != Arrival::Closed && g.rate_per_min <= 0.0 {
                g.rate_per_min = default_rate;
            }
        }
    }
    if !args.spike.is_empty() {
        s.spikes = args.spike.clone();
    }
    if let Some(h) = args.headroom {
        s.headroom = h;
    }
    if matches!(args.agents, Some(0)) || matches!(args.rpm, Some(0)) {
        return Err("--agents and --rpm must be at least 1".into());
    }
    s.validate().map_err(|e| e.to_string())?;
    Ok(s)
}

/// The strategies the flag names.
///
/// # Errors
/// An unknown name (exit code 2).
pub fn strategies(arg: &str) -> Result<Vec<StrategyKind>, String> {
    if arg.trim() == "all" {
        return Ok(StrategyKind::ALL.to_vec());
    }
    let mut out = Vec::new();
    for name in arg.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let k: StrategyKind = name.parse()?;
        if !out.contains(&k) {
            out.push(k);
        }
    }
    if out.is_empty() {
        return Err("--strategy names no strategy".into());
    }
    Ok(out)
}

/// Writes every output of `report` into `dir`.
///
/// # Errors
/// An I/O or drawing error, as text.
pub fn write_outputs(report: &Report, dir: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files = Vec::new();
    let mut write = |name: &str, text: String| -> Result<(), String> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        files.push(path);
        Ok(())
    };
    write("table.txt", report.table())?;
    write("summary.json", report.to_json() + "\n")?;
    write("summary.csv", report.summary_csv())?;
    write("timeline.csv", report.timeline_csv())?;
    if !report.sweep.is_empty() {
        write("sweep.csv", report.sweep_csv())?;
    }
    files.extend(crate::plot::write_plots(report, dir).map_err(|e| e.to_string())?);
    files.sort();
    Ok(files)
}

/// Runs the CLI; returns the exit code.
pub fn main() -> i32 {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let scenario = match scenario(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sim: {e}");
            return 2;
        }
    };
    let kinds = match strategies(&args.strategy) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("sim: {e}");
            return 2;
        }
    };
    let sweep = args.sweep.as_ref().map(|s| s.0.clone()).unwrap_or_default();
    let progress = std::io::stderr().is_terminal();
    let report = match crate::simulate_with_progress(&scenario, &kinds, &sweep, progress) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sim: {e}");
            return 1;
        }
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.table());
    }
    if let Some(dir) = &args.out {
        match write_outputs(&report, dir) {
            Ok(files) => {
                if !args.json {
                    println!("wrote {} files to {}", files.len(), dir.display());
                }
            }
            Err(e) => {
                eprintln!("sim: {e}");
                return 1;
            }
        }
    }
    0
}
