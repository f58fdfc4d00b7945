//! The value parsers of the flags: each value read and checked against its bound
//! ([`crate::bounds`]) as clap parses the command line, so that a refused value names its flag
//! and no run is built.

use super::Sweep;
use crate::bounds::{
    because, real, span, whole, Grouped, Interval, Real, MAX_AGENTS, MAX_DURATION, MAX_RPM,
    MAX_SPIKE_MULTIPLIER, MAX_SWEEP_POINTS, MAX_TPM, MIN_SPIKE_MULTIPLIER, WHY_AGENTS,
    WHY_DURATION, WHY_RPM, WHY_SPIKE, WHY_TPM,
};
use crate::scenario::{Arrival, Spike};
use std::time::Duration;

/// Why a sweep is bounded.
const WHY_SWEEP: &str = "each point is one more run per strategy";

pub(super) fn agents(s: &str) -> Result<u32, String> {
    let n = integer("--agents", s, 1, MAX_AGENTS, WHY_AGENTS)?;
    // MAX_AGENTS is far below u32::MAX.
    u32::try_from(n).map_err(|_| format!("--agents must be at most {}", Grouped(MAX_AGENTS)))
}

pub(super) fn rpm(s: &str) -> Result<u64, String> {
    integer("--rpm", s, 1, MAX_RPM, WHY_RPM)
}

pub(super) fn tpm(s: &str) -> Result<u64, String> {
    integer("--tpm", s, 0, MAX_TPM, WHY_TPM)
}

pub(super) fn itpm(s: &str) -> Result<u64, String> {
    integer("--itpm", s, 0, MAX_TPM, WHY_TPM)
}

pub(super) fn otpm(s: &str) -> Result<u64, String> {
    integer("--otpm", s, 0, MAX_TPM, WHY_TPM)
}

pub(super) fn seed(s: &str) -> Result<u64, String> {
    integer("--seed", s, 0, u64::MAX, "")
}

pub(super) fn duration(s: &str) -> Result<Duration, String> {
    let positive = Duration::from_nanos(1);
    within("--duration", s, positive)
}

pub(super) fn headroom(s: &str) -> Result<f64, String> {
    real(
        "--headroom",
        number("--headroom", s)?,
        Interval::above(0.0, 1.0),
        "",
    )
}

pub(super) fn arrival(s: &str) -> Result<Arrival, String> {
    match s {
        "closed" => Ok(Arrival::Closed),
        "constant" => Ok(Arrival::Constant),
        "poisson" => Ok(Arrival::Poisson),
        _ => Err(format!(
            "--arrival `{s}` is not closed, constant or poisson"
        )),
    }
}

pub(super) fn spike(s: &str) -> Result<Spike, String> {
    let parts: Vec<&str> = s.split(',').collect();
    let [at_text, times_text, length_text] = parts[..] else {
        return Err(format!(
            "--spike `{s}`: a spike is AT,MULTIPLIER,LENGTH, e.g. 4m,2,1m"
        ));
    };
    let times = "--spike multiplier";
    let at = within("--spike start", at_text, Duration::ZERO)?;
    let multiplier = real(
        times,
        number(times, times_text)?,
        Interval::closed(MIN_SPIKE_MULTIPLIER, MAX_SPIKE_MULTIPLIER),
        WHY_SPIKE,
    )?;
    let length = within("--spike length", length_text, Duration::ZERO)?;
    Ok(Spike {
        at,
        multiplier,
        length,
    })
}

pub(super) fn sweep(s: &str) -> Result<Sweep, String> {
    let shape = || format!("--sweep `{s}`: a sweep is FROM:TO:STEP, e.g. 0.6:1.0:0.1");
    let nums: Result<Vec<f64>, _> = s.split(':').map(|p| p.trim().parse::<f64>()).collect();
    let Ok(nums) = nums else {
        return Err(shape());
    };
    let [from, to, step] = nums[..] else {
        return Err(shape());
    };
    let ok = |v: f64| v.is_finite() && v > 0.0 && v <= 1.0;
    if !(ok(from) && ok(to) && from <= to && step.is_finite() && step > 0.0) {
        return Err(format!(
            "--sweep `{s}`: need 0 < FROM <= TO <= 1 and STEP > 0 (headroom fractions)"
        ));
    }
    // Counted in floating point: a tiny step gives more points than any integer holds (or
    // infinitely many; never NaN, as every part is finite and the step positive).
    let points = ((to - from) / step + 1e-9).floor() + 1.0;
    if points > MAX_SWEEP_POINTS as f64 {
        return Err(format!(
            "--sweep `{s}` is {} runs per strategy; at most {MAX_SWEEP_POINTS} ({WHY_SWEEP})",
            Real(points)
        ));
    }
    Ok(Sweep(
        (0..points as usize)
            .map(|i| ((from + step * i as f64) * 1000.0).round() / 1000.0)
            .collect(),
    ))
}

/// A whole number of `flag` in `min..=max`.
fn integer(flag: &str, text: &str, min: u64, max: u64, why: &str) -> Result<u64, String> {
    let t = text.trim();
    match t.parse::<u64>() {
        Ok(v) => whole(flag, v, min, max, why),
        // Digits only, too many for 64 bits: beyond every bound.
        Err(_) if is_digits(t.strip_prefix('+').unwrap_or(t)) => Err(format!(
            "{flag} must be at most {}{}, got {t}",
            Grouped(max),
            because(why)
        )),
        Err(_) => Err(format!(
            "{flag} must be a {} integer, got {t}",
            if min > 0 { "positive" } else { "non-negative" }
        )),
    }
}

fn is_digits(t: &str) -> bool {
    !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())
}

/// A real number of `flag` (any: the caller checks the range).
fn number(flag: &str, text: &str) -> Result<f64, String> {
    let t = text.trim();
    t.parse::<f64>()
        .map_err(|_| format!("{flag} must be a number, got {t}"))
}

/// A duration of `flag` from `min` to [`MAX_DURATION`]; a refusal quotes the text as written.
fn within(flag: &str, text: &str, min: Duration) -> Result<Duration, String> {
    let t = text.trim();
    span(flag, time(flag, t)?, min, MAX_DURATION, WHY_DURATION).map_err(|e| {
        match e.rfind(", got ") {
            Some(i) => format!("{}, got {t}", &e[..i]),
            None => e,
        }
    })
}

/// A duration of `flag`, e.g. `10m`, `90s`, `1h` (any: the caller checks the range).
fn time(flag: &str, text: &str) -> Result<Duration, String> {
    let t = text.trim();
    humantime::parse_duration(t)
        .map_err(|e| format!("{flag} must be a duration such as 10m, 90s or 1h, got {t} ({e})"))
}
