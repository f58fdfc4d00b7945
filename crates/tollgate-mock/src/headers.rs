//! Rate-limit headers in the two families providers send, and their time formats.
//!
//! - Anthropic: `anthropic-ratelimit-{requests,input-tokens,output-tokens}-{limit,remaining,reset}`,
//!   where `reset` is the RFC 3339 UTC time at which the bucket is full again.
//! - OpenAI: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, where `reset` is a Go-style
//!   duration (`120ms`, `1s`, `6m0s`) and `tokens` is the input-token dimension.
//! - On 429: `retry-after` (whole seconds, rounded up) and `retry-after-ms`.
//!
//! Every time is rounded *up* to the millisecond, so a client that waits what it was told is never
//! early.

use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use crate::config::Config;
use crate::limits::{Dimension, DimensionState};

/// `[limit, remaining, reset]` per dimension, in [`Dimension::ALL`] order.
const ANTHROPIC: [[&str; 3]; 3] = [
    [
        "anthropic-ratelimit-requests-limit",
        "anthropic-ratelimit-requests-remaining",
        "anthropic-ratelimit-requests-reset",
    ],
    [
        "anthropic-ratelimit-input-tokens-limit",
        "anthropic-ratelimit-input-tokens-remaining",
        "anthropic-ratelimit-input-tokens-reset",
    ],
    [
        "anthropic-ratelimit-output-tokens-limit",
        "anthropic-ratelimit-output-tokens-remaining",
        "anthropic-ratelimit-output-tokens-reset",
    ],
];

/// `[limit, remaining, reset]` for requests, then for tokens (the input dimension).
const OPENAI: [(Dimension, [&str; 3]); 2] = [
    (
        Dimension::Requests,
        [
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        ],
    ),
    (
        Dimension::InputTokens,
        [
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        ],
    ),
];

/// Writes the enabled header families. `now` is virtual time since the provider was built.
pub(crate) fn insert_rate_limit_headers(
    headers: &mut HeaderMap,
    config: &Config,
    now: Duration,
    states: &[DimensionState; 3],
) {
    if config.anthropic_headers {
        let wall_now = Duration::from_secs(config.epoch_unix_secs).saturating_add(now);
        for (dimension, names) in Dimension::ALL.into_iter().zip(ANTHROPIC) {
            let state = states[dimension as usize];
            let reset = rfc3339(wall_now.saturating_add(state.until_full));
            insert(
                headers,
                names,
                config.limits.get(dimension),
                state.remaining,
                reset,
            );
        }
    }
    if config.openai_headers {
        for (dimension, names) in OPENAI {
            let state = states[dimension as usize];
            let reset = go_duration(state.until_full);
            insert(
                headers,
                names,
                config.limits.get(dimension),
                state.remaining,
                reset,
            );
        }
    }
}

fn insert(
    headers: &mut HeaderMap,
    names: [&'static str; 3],
    limit: u64,
    remaining: u64,
    reset: String,
) {
    let [limit_name, remaining_name, reset_name] = names.map(HeaderName::from_static);
    headers.insert(limit_name, HeaderValue::from(limit));
    headers.insert(remaining_name, HeaderValue::from(remaining));
    if let Ok(reset) = HeaderValue::try_from(reset) {
        headers.insert(reset_name, reset);
    }
}

/// `retry-after` in whole seconds and `retry-after-ms`, both rounded up.
pub(crate) fn insert_retry_after(headers: &mut HeaderMap, wait: Duration) {
    let ms = ceil_millis(wait);
    headers.insert(RETRY_AFTER, HeaderValue::from(ms.div_ceil(1000)));
    headers.insert(
        HeaderName::from_static("retry-after-ms"),
        HeaderValue::from(ms),
    );
}

fn ceil_millis(d: Duration) -> u64 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// RFC 3339 UTC time of `since_unix_epoch`, rounded up to the millisecond:
/// `2026-01-01T00:00:01Z`, or `2026-01-01T00:00:01.250Z` when there are milliseconds.
pub(crate) fn rfc3339(since_unix_epoch: Duration) -> String {
    let ms = ceil_millis(since_unix_epoch);
    let (secs, frac) = (ms / 1000, ms % 1000);
    let (year, month, day) = civil_from_days(secs / 86_400);
    let sod = secs % 86_400;
    let (h, m, s) = (sod / 3600, sod / 60 % 60, sod % 60);
    if frac == 0 {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    } else {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{frac:03}Z")
    }
}

/// Gregorian `(year, month, day)` of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, restricted to non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A duration the way OpenAI (and Go's `time.Duration`) writes it, rounded up to the millisecond:
/// `0s`, `120ms`, `1s`, `1.5s`, `6m0s`, `1h0m0s`.
pub(crate) fn go_duration(d: Duration) -> String {
    let ms = ceil_millis(d);
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m) = (ms / 3_600_000, ms / 60_000 % 60);
    let (s, frac) = (ms / 1000 % 60, ms % 1000);
    let seconds = if frac == 0 {
        format!("{s}s")
    } else {
        let frac = format!("{frac:03}");
        format!("{s}.{}s", frac.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{h}h{m}m{seconds}")
    } else if m > 0 {
        format!("{m}m{seconds}")
    } else {
        seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_formats_like_openai() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(ms(120)), "120ms");
        assert_eq!(go_duration(Duration::from_nanos(1)), "1ms");
        assert_eq!(go_duration(ms(1000)), "1s");
        assert_eq!(go_duration(ms(1500)), "1.5s");
        assert_eq!(go_duration(ms(8640)), "8.64s");
        assert_eq!(go_duration(ms(6 * 60_000)), "6m0s");
        assert_eq!(go_duration(ms(179_560)), "2m59.56s");
        assert_eq!(go_duration(ms(3_600_000)), "1h0m0s");
        assert_eq!(go_duration(ms(3_723_004)), "1h2m3.004s");
    }

    #[test]
    fn rfc3339_known_dates() {
        let s = Duration::from_secs;
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(s(1_767_225_600)), "2026-01-01T00:00:00Z");
        assert_eq!(rfc3339(s(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(s(1_709_251_199)), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(s(4_102_444_800)), "2100-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(s(1_767_225_600) + Duration::from_micros(250_001)),
            "2026-01-01T00:00:00.251Z"
        );
    }

    #[test]
    fn civil_from_days_round_trips_every_day_for_a_few_centuries() {
        // Walk day by day from 1970 and check the calendar steps like a calendar.
        let (mut y, mut m, mut d) = (1970, 1, 1);
        for days in 0..(400 * 366) {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ][m as usize - 1];
            d += 1;
            if d > len {
                (d, m) = (1, m + 1);
                if m > 12 {
                    (m, y) = (1, y + 1);
                }
            }
        }
    }
}
