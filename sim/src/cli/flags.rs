//! The scenario the flags describe: a built-in or file scenario, the default one, or recorded
//! traffic, with the flags applied.

use super::{Args, DEFAULT_CLOSED_THINK_TIME};
use crate::scenario::{Arrival, Scenario};
use std::path::Path;

/// The scenario the flags describe, checked by [`Scenario::validate`].
///
/// # Errors
/// A message for the user (exit code 2).
pub fn scenario(args: &Args) -> Result<Scenario, String> {
    let mut s = match (&args.replay, &args.scenario) {
        (Some(path), _) => replayed(path, args)?,
        (None, scenario) => given(scenario.as_deref(), args)?,
    };
    s.call_log.clone_from(&args.call_log);
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
            if a == Arrival::Closed && g.think_time.is_zero() {
                g.think_time = DEFAULT_CLOSED_THINK_TIME;
            }
        }
    }
    if !args.spike.is_empty() {
        s.spikes = args.spike.clone();
    }
    if let Some(h) = args.headroom {
        s.check_headroom("--headroom", h)?;
        s.headroom = h;
    }
    s.validate().map_err(|e| e.to_string())?;
    Ok(s)
}

/// The scenario of --scenario (a file or a built-in name) or of --agents and --rpm, with --agents
/// and --rpm applied to a given one.
fn given(name: Option<&str>, args: &Args) -> Result<Scenario, String> {
    let mut s = match name {
        Some(name) if Path::new(name).is_file() => {
            let text = std::fs::read_to_string(name).map_err(|e| format!("{name}: {e}"))?;
            Scenario::from_toml(&text).map_err(|e| format!("{name}: {e}"))?
        }
        Some(name) => Scenario::built_in(name).map_err(|e| e.to_string())?,
        None => Scenario::from_flags(args.agents.unwrap_or(5), args.rpm.unwrap_or(50)),
    };
    if name.is_some() {
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
    Ok(s)
}

/// The scenario that replays the call log at `path` against the provider of the flags.
fn replayed(path: &Path, args: &Args) -> Result<Scenario, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let traffic = crate::traffic::Traffic::from_jsonl(&text)
        .map_err(|e| format!("--replay {}: {e}", path.display()))?;
    let mut provider = Scenario::built_in("reference")
        .map_err(|e| e.to_string())?
        .provider;
    if let Some(r) = args.rpm {
        provider.rpm = r;
    }
    let stem = path
        .file_stem()
        .map_or("log".into(), |s| s.to_string_lossy());
    Ok(traffic.into_scenario(format!("replay-{stem}"), provider))
}
