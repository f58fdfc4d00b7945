//! The bounds of every number the simulator takes, from a flag or a scenario field, and why.
//!
//! A run keeps a record of every request and of every attempt the provider saw, and a row of its
//! time series per simulated second, so a run's size follows from its rates and its duration. The
//! bounds keep every run within the memory and time of an ordinary machine, and refuse what a run
//! cannot hold *before* anything is built: a refused input exits with code 2 and a message naming
//! the flag or field and its bound. They are far above every built-in scenario.
//!
//! Each bound below says what it bounds; the `WHY_*` texts say why, in the messages as in the
//! README's table.
//!
//! `--seed`, `priority` and `provider.overload_in_flight` take any value of their type: nothing
//! is sized by them.

use std::fmt;
use std::time::Duration;

/// The most agents in a run (`--agents`, the sum of `agents[].count`).
pub const MAX_AGENTS: u64 = 100_000;

/// The highest requests-per-minute limit (`--rpm`, `provider.rpm`).
pub const MAX_RPM: u64 = 1_000_000;

/// The highest token-per-minute limit (`--tpm`, `--itpm`, `--otpm`, `provider.itpm`,
/// `provider.otpm`); 0 means none.
pub const MAX_TPM: u64 = 10_000_000_000;

/// The longest duration, drain, think time, spike start or spike length: 24 hours.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3_600);

/// The most requests the agents of one run may be expected to make (see
/// [`Scenario::requests_estimate`](crate::scenario::Scenario::requests_estimate)).
pub const MAX_REQUESTS: u64 = 2_000_000;

/// The smallest spike multiplier.
pub const MIN_SPIKE_MULTIPLIER: f64 = 0.01;

/// The largest spike multiplier.
pub const MAX_SPIKE_MULTIPLIER: f64 = 100.0;

/// The most spikes in a scenario (each arrival multiplies every spike that covers it).
pub const MAX_SPIKES: usize = 100;

/// The most points of a headroom sweep.
pub const MAX_SWEEP_POINTS: u64 = 50;

/// The slowest arrival rate of an open agent, per minute (one request in about two years).
pub const MIN_RATE_PER_MIN: f64 = 1e-6;

/// The fastest arrival rate of an open agent, per minute.
pub const MAX_RATE_PER_MIN: f64 = 1e6;

/// The shortest think time of a closed agent.
pub const MIN_THINK_TIME: Duration = Duration::from_millis(1);

/// The most input tokens or `max_tokens` of one request.
pub const MAX_TOKENS_PER_REQUEST: u64 = 10_000_000;

/// The longest latency before the first token.
pub const MAX_LATENCY: Duration = Duration::from_secs(3_600);

/// The longest latency per output token.
pub const MAX_LATENCY_PER_TOKEN: Duration = Duration::from_secs(1);

/// The highest price, in dollars per million tokens.
pub const MAX_PRICE_PER_MTOK: f64 = 10_000.0;

/// The highest budget cap, in dollars.
pub const MAX_BUDGET_USD: f64 = 1e9;

/// Why the agents are bounded.
pub const WHY_AGENTS: &str = "each agent holds its own generator and schedule entry";
/// Why the RPM is bounded.
pub const WHY_RPM: &str = "far above any provider's tier";
/// Why the token limits are bounded.
pub const WHY_TPM: &str = "the layer counts a limit in thousandths in 64 bits";
/// Why durations are bounded.
pub const WHY_DURATION: &str = "a day of virtual time; the time series has a row per second";
/// Why the run's requests are bounded.
pub const WHY_REQUESTS: &str = "each request and its attempts take about 450 bytes";
/// Why spike multipliers are bounded.
pub const WHY_SPIKE: &str = "arrival gaps and think times are divided by it";
/// Why token counts of a request are bounded.
pub const WHY_TOKENS: &str = "five times the largest context windows";
/// Why arrival rates are bounded.
pub const WHY_RATE: &str = "arrival gaps stay finite times";
/// Why latencies are bounded.
pub const WHY_LATENCY: &str = "far beyond any provider's answer";
/// Why closed agents need a think time.
pub const WHY_THINK: &str =
    "a refused call comes back at once: without a think time an agent calls again at the same instant";
/// Why money is bounded.
pub const WHY_MONEY: &str = "spend stays a plain number";

/// A range of real numbers, each end open or closed. `NaN` and infinities are in none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    lo: f64,
    hi: f64,
    lo_open: bool,
    hi_open: bool,
}

impl Interval {
    /// `[lo, hi]`.
    pub const fn closed(lo: f64, hi: f64) -> Self {
        Interval {
            lo,
            hi,
            lo_open: false,
            hi_open: false,
        }
    }

    /// `(lo, hi]`.
    pub const fn above(lo: f64, hi: f64) -> Self {
        Interval {
            lo,
            hi,
            lo_open: true,
            hi_open: false,
        }
    }

    /// `[lo, hi)`.
    pub const fn below(lo: f64, hi: f64) -> Self {
        Interval {
            lo,
            hi,
            lo_open: false,
            hi_open: true,
        }
    }

    /// Whether `v` is a finite number within the range.
    pub fn contains(&self, v: f64) -> bool {
        let above_lo = if self.lo_open {
            v > self.lo
        } else {
            v >= self.lo
        };
        let below_hi = if self.hi_open {
            v < self.hi
        } else {
            v <= self.hi
        };
        v.is_finite() && above_lo && below_hi
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (open, close) = (
            if self.lo_open { "(" } else { "[" },
            if self.hi_open { ")" } else { "]" },
        );
        write!(f, "{open}{}, {}{close}", Real(self.lo), Real(self.hi))
    }
}

/// ` (why)`, or nothing when there is no reason to give.
pub(crate) fn because(why: &str) -> String {
    if why.is_empty() {
        String::new()
    } else {
        format!(" ({why})")
    }
}

/// A real number as the messages write it: plainly, but in scientific notation when that would
/// take more than about fifteen digits (`1e300`, not three hundred digits).
#[derive(Clone, Copy, Debug)]
pub struct Real(pub f64);

impl fmt::Display for Real {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v.is_finite() && v != 0.0 && !(1e-6..1e15).contains(&v.abs()) {
            write!(f, "{v:e}")
        } else {
            write!(f, "{v}")
        }
    }
}

/// `value` of `name` if it is within `min..=max`, or the message saying which bound it breaks.
///
/// # Errors
/// The message: `name must be at least MIN, got V` or `name must be at most MAX (why), got V`.
pub fn whole(name: &str, value: u64, min: u64, max: u64, why: &str) -> Result<u64, String> {
    if value < min {
        return Err(format!(
            "{name} must be at least {}, got {value}",
            Grouped(min)
        ));
    }
    if value > max {
        return Err(format!(
            "{name} must be at most {}{}, got {value}",
            Grouped(max),
            because(why)
        ));
    }
    Ok(value)
}

/// `value` of `name` if it is a finite number in `range`, or the message saying it is not.
///
/// # Errors
/// The message: `name must be a finite number in RANGE (why), got V`.
pub fn real(name: &str, value: f64, range: Interval, why: &str) -> Result<f64, String> {
    if range.contains(value) {
        return Ok(value);
    }
    Err(format!(
        "{name} must be a finite number in {range}{}, got {}",
        because(why),
        Real(value)
    ))
}

/// `value` of `name` if it is within `min..=max` (a `min` of one nanosecond reads "positive"),
/// or the message saying which bound it breaks.
///
/// # Errors
/// The message: `name must be positive`, `… at least MIN, got V` or `… at most MAX (why), got V`.
pub fn span(
    name: &str,
    value: Duration,
    min: Duration,
    max: Duration,
    why: &str,
) -> Result<Duration, String> {
    let got = humantime::format_duration(value);
    if value < min {
        return Err(if min == Duration::from_nanos(1) {
            format!("{name} must be positive, got {got}")
        } else {
            format!("{name} must be at least {}, got {got}", show(min))
        });
    }
    if value > max {
        return Err(format!(
            "{name} must be at most {}{}, got {got}",
            show(max),
            because(why)
        ));
    }
    Ok(value)
}

/// A whole number with its thousands separated by commas, as the messages and `--help` write
/// bounds: `Grouped(1_000_000)` shows `1,000,000`.
#[derive(Clone, Copy, Debug)]
pub struct Grouped(pub u64);

impl fmt::Display for Grouped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.0.to_string();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                f.write_str(",")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// A duration bound as the messages write it, in its largest whole unit: `24h`, `1s`, `1ms`.
pub fn show(d: Duration) -> String {
    let (s, ms) = (d.as_secs(), d.subsec_millis());
    match (s, ms) {
        (s, 0) if s > 0 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        (s, 0) if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        (s, 0) => format!("{s}s"),
        _ => format!("{}ms", d.as_millis()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_puts_a_comma_every_three_digits() {
        for (n, text) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (100_000, "100,000"),
            (1_000_000, "1,000,000"),
            (u64::MAX, "18,446,744,073,709,551,615"),
        ] {
            assert_eq!(Grouped(n).to_string(), text);
        }
        for (v, text) in [
            (1e300, "1e300"),
            (-1e300, "-1e300"),
            (1e-300, "1e-300"),
            (1e-6, "0.000001"),
            (0.5, "0.5"),
            (1e9, "1000000000"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            assert_eq!(Real(v).to_string(), text);
        }
        for (d, text) in [
            (MAX_DURATION, "24h"),
            (MAX_LATENCY, "1h"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(120), "2m"),
            (MAX_LATENCY_PER_TOKEN, "1s"),
            (MIN_THINK_TIME, "1ms"),
        ] {
            assert_eq!(show(d), text);
        }
    }
}
