//! The command line: flags → scenario → run → outputs, and exit codes (0 ok, 2 bad input, 1 a
//! failure while running or writing).

use crate::report::Report;
use crate::scenario::{Arrival, Scenario, Spike};

mod flags;
mod values;
use crate::strategy::StrategyKind;
use clap::error::ErrorKind;
use clap::Parser;
pub use flags::scenario;
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
///   sim --replay sim/replay/example-calls.jsonl --rpm 60
///
/// Bounds (beyond them sim exits with code 2 naming the flag; a scenario's fields have the same):
///   --agents 1 to 100,000; --rpm 1 to 1,000,000; --tpm, --itpm, --otpm 0 (none) to
///   10,000,000,000; --duration up to 24h; --spike start and length up to 24h, multiplier 0.01
///   to 100; --headroom in (0, 1]; --sweep at most 50 points. A run's agents may make about
///   2,000,000 requests at most (agents × rate × duration, with the spikes): each request and its
///   attempts take about 450 bytes, and the runs of a report go on every core at once.
#[derive(Debug, Parser)]
#[command(name = "sim", version, verbatim_doc_comment)]
pub struct Args {
    /// A built-in scenario (reference, launch-spike, shared-key, max-tokens-skew, priority, runaway,
    /// no-headers) or a TOML file. Without it, the default scenario built from --agents and --rpm.
    #[arg(long, value_name = "NAME|FILE")]
    pub scenario: Option<String>,
    /// Replay the calls of a call log (the layer's JSON lines, format version 1) open-loop, with
    /// their arrival times, token sizes, scopes (one agent per distinct set) and priorities,
    /// against the provider of --rpm, --itpm, --otpm (default: the reference scenario's).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["scenario", "agents", "arrival", "spike", "duration"]
    )]
    pub replay: Option<PathBuf>,
    /// Write the call log of the tollgate strategy's run (format version 1) to FILE, appending;
    /// --strategy must name one of tollgate and tollgate-adaptive.
    #[arg(long, value_name = "FILE")]
    pub call_log: Option<PathBuf>,
    /// Number of agents, 1 to 100,000 (default scenario: 5).
    #[arg(long, value_parser = values::agents, allow_hyphen_values = true)]
    pub agents: Option<u32>,
    /// The provider's requests per minute, 1 to 1,000,000 (default scenario: 50).
    #[arg(long, alias = "provider-rpm", value_parser = values::rpm, allow_hyphen_values = true)]
    pub rpm: Option<u64>,
    /// Tokens per minute: the provider's input-token limit (as OpenAI's `tokens` counts the
    /// prompt); same as --itpm. 0 (none) to 10,000,000,000.
    #[arg(long, value_parser = values::tpm, allow_hyphen_values = true)]
    pub tpm: Option<u64>,
    /// Input tokens per minute, 0 (none) to 10,000,000,000.
    #[arg(long, value_parser = values::itpm, allow_hyphen_values = true)]
    pub itpm: Option<u64>,
    /// Output tokens per minute, 0 (none) to 10,000,000,000.
    #[arg(long, value_parser = values::otpm, allow_hyphen_values = true)]
    pub otpm: Option<u64>,
    /// How long requests arrive, e.g. 10m, 90s, 1h; up to 24h.
    #[arg(long, value_parser = values::duration, allow_hyphen_values = true)]
    pub duration: Option<Duration>,
    /// The seed of every random draw (any 64-bit unsigned integer).
    #[arg(long, value_parser = values::seed, allow_hyphen_values = true)]
    pub seed: Option<u64>,
    /// Strategies: one, several separated by commas, or `all`.
    #[arg(long, default_value = "all")]
    pub strategy: String,
    /// How the agents' requests arrive: closed, constant or poisson. Closed agents without a
    /// think time think 1s between an answer and their next request.
    #[arg(long, value_parser = values::arrival)]
    pub arrival: Option<Arrival>,
    /// A spike: AT,MULTIPLIER,LENGTH, e.g. 4m,2,1m (repeatable); AT and LENGTH up to 24h,
    /// MULTIPLIER 0.01 to 100.
    #[arg(long, value_parser = values::spike, allow_hyphen_values = true)]
    pub spike: Vec<Spike>,
    /// The headroom fraction of the strategies that take one (tollgate, tollgate-adaptive,
    /// cookbook), in (0, 1], leaving at least one unit of each limit.
    #[arg(long, value_parser = values::headroom, allow_hyphen_values = true)]
    pub headroom: Option<f64>,
    /// Sweep the headroom: FROM:TO:STEP, e.g. 0.6:1.0:0.1, at most 50 points; adds the
    /// over-throttling vs 429 plot.
    #[arg(long, value_parser = values::sweep, allow_hyphen_values = true)]
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

/// The think time `--arrival closed` gives agents that have none: a closed agent needs one
/// (see [`crate::bounds::MIN_THINK_TIME`]).
pub const DEFAULT_CLOSED_THINK_TIME: Duration = Duration::from_secs(1);

/// Everything a command line asks for, checked, before anything runs.
#[derive(Debug)]
pub struct Plan {
    /// The flags.
    pub args: Args,
    /// The scenario they describe, within every bound.
    pub scenario: Scenario,
    /// The strategies to run.
    pub strategies: Vec<StrategyKind>,
    /// The headroom sweep (empty: none).
    pub sweep: Vec<f64>,
}

/// Why a command line runs nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// `--help` or `--version`: the text for stdout (exit code 0).
    Info(String),
    /// Bad input: the message for stderr (exit code 2).
    BadInput(String),
}

impl Stop {
    /// The process's exit code: 0 for help and version, 2 for bad input.
    pub fn exit_code(&self) -> i32 {
        match self {
            Stop::Info(_) => 0,
            Stop::BadInput(_) => 2,
        }
    }
}

/// Parses and checks a command line (`argv[0]` is the program's name): every flag and every
/// field of the scenario against its bound ([`crate::bounds`]). Builds and runs nothing.
///
/// # Errors
/// [`Stop::BadInput`] with a message naming the flag or scenario field (and its bound) for bad
/// input; [`Stop::Info`] for `--help` and `--version`.
pub fn plan<I, T>(argv: I) -> Result<Plan, Stop>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args = Args::try_parse_from(argv).map_err(|e| match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Stop::Info(e.render().to_string()),
        // A value parser's own message names the flag and its bound.
        ErrorKind::ValueValidation => match std::error::Error::source(&e) {
            Some(why) => Stop::BadInput(format!("sim: {why}")),
            None => Stop::BadInput(e.render().to_string()),
        },
        _ => Stop::BadInput(e.render().to_string()),
    })?;
    let bad = |e: String| Stop::BadInput(format!("sim: {e}"));
    let scenario = scenario(&args).map_err(bad)?;
    let strategies = strategies(&args.strategy).map_err(bad)?;
    if args.call_log.is_some() && strategies.iter().filter(|k| k.is_tollgate()).count() != 1 {
        return Err(bad(
            "--call-log needs exactly one of tollgate and tollgate-adaptive in --strategy".into(),
        ));
    }
    let sweep = args.sweep.as_ref().map(|s| s.0.clone()).unwrap_or_default();
    for &h in &sweep {
        scenario.check_headroom("--sweep point", h).map_err(bad)?;
    }
    Ok(Plan {
        args,
        scenario,
        strategies,
        sweep,
    })
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

/// Writes every output of `report` into `dir`: the table, JSON, CSV, the plots, and
/// `index.html`, which shows the table and the plots in one page.
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
    let plots = crate::plot::write_plots(report, dir).map_err(|e| e.to_string())?;
    // The page shows the plots in the order they tell the story, the frontier last.
    let mut svgs = Vec::new();
    for name in ["throughput", "rate_limited", "queue_depth", "frontier"] {
        let path = dir.join(format!("{name}.svg"));
        if plots.contains(&path) {
            let svg =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            svgs.push((name.to_owned(), svg));
        }
    }
    write("index.html", crate::html::index_html(report, &svgs))?;
    files.extend(plots);
    files.sort();
    Ok(files)
}

/// Runs the CLI; returns the exit code.
pub fn main() -> i32 {
    let plan = match plan(std::env::args_os()) {
        Ok(p) => p,
        Err(stop) => {
            match &stop {
                Stop::Info(text) => print!("{text}"),
                Stop::BadInput(message) => eprintln!("{}", message.trim_end()),
            }
            return stop.exit_code();
        }
    };
    let Plan {
        args,
        scenario,
        strategies: kinds,
        sweep,
    } = plan;
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
