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
use crate::limits::{Dimension, DimensionState, Limiter};

/// `[limit, remaining, reset]` per dimension, in [`Dimension::ALL`] order.
static ANTHROPIC: [[HeaderName; 3]; 3] = [
    [
        HeaderName::from_static("anthropic-ratelimit-requests-limit"),
        HeaderName::from_static("anthropic-ratelimit-requests-remaining"),
        HeaderName::from_static("anthropic-ratelimit-requests-reset"),
    ],
    [
        HeaderName::from_static("anthropic-ratelimit-input-tokens-limit"),
        HeaderName::from_static("anthropic-ratelimit-input-tokens-remaining"),
        HeaderName::from_static("anthropic-ratelimit-input-tokens-reset"),
    ],
    [
        HeaderName::from_static("anthropic-ratelimit-output-tokens-limit"),
        HeaderName::from_static("anthropic-ratelimit-output-tokens-remaining"),
        HeaderName::from_static("anthropic-ratelimit-output-tokens-reset"),
    ],
];

/// The dimensions of the OpenAI family: requests, then tokens (the input dimension).
const OPENAI_DIMENSIONS: [Dimension; 2] = [Dimension::Requests, Dimension::InputTokens];

/// `[limit, remaining, reset]` per dimension, in [`OPENAI_DIMENSIONS`] order.
static OPENAI: [[HeaderName; 3]; 2] = [
    [
        HeaderName::from_static("x-ratelimit-limit-requests"),
        HeaderName::from_static("x-ratelimit-remaining-requests"),
        HeaderName::from_static("x-ratelimit-reset-requests"),
    ],
    [
        HeaderName::from_static("x-ratelimit-limit-tokens"),
        HeaderName::from_static("x-ratelimit-remaining-tokens"),
        HeaderName::from_static("x-ratelimit-reset-tokens"),
    ],
];

static RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");

// ===== impl HeaderWriter =====

/// Writes the headers of every answer of one provider.
///
/// Names never change and limits are fixed per provider, so both are put in place once, in two
/// templates (without and with the retry headers); an answer clones one, which needs no hashing of
/// names, and fills in the values that depend on the moment.
#[derive(Debug)]
pub(crate) struct HeaderWriter {
    plain: HeaderMap,
    retry: HeaderMap,
    anthropic: bool,
    openai: bool,
    /// Whether the `limit` and `reset` headers go with each `remaining`.
    limit_and_reset: bool,
    /// Per dimension: whether it is reported (limited).
    reported: [bool; 3],
    /// Unix time of virtual time zero.
    epoch: Duration,
}

impl HeaderWriter {
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            plain: template(config, false),
            retry: template(config, true),
            anthropic: config.anthropic_headers,
            openai: config.openai_headers,
            limit_and_reset: config.limit_and_reset_headers,
            reported: config.reported,
            epoch: Duration::from_secs(config.epoch_unix_secs),
        }
    }

    /// What [`HeaderWriter::write`] reads of `limiter` at `now`: the `remaining` of each reported
    /// dimension, and its time until full when the `reset` headers are on (left at zero
    /// otherwise, as are the dimensions not reported).
    pub(crate) fn states(&self, limiter: &mut Limiter, now: Duration) -> [DimensionState; 3] {
        limiter.advance_to(now);
        let mut states = [DimensionState {
            remaining: 0,
            until_full: Duration::ZERO,
        }; 3];
        if !(self.anthropic || self.openai) {
            return states;
        }
        for dimension in Dimension::ALL {
            if self.reported[dimension as usize] {
                let state = &mut states[dimension as usize];
                state.remaining = limiter.remaining(dimension);
                if self.limit_and_reset {
                    state.until_full = limiter.until_full(dimension, now);
                }
            }
        }
        states
    }

    /// The headers of an answer at virtual time `now`, with `retry-after` when `retry` is set.
    #[cfg(test)]
    pub(crate) fn write(
        &self,
        now: Duration,
        states: &[DimensionState; 3],
        retry: Option<Duration>,
    ) -> HeaderMap {
        self.write_into(None, now, states, retry)
    }

    /// The headers of an answer at virtual time `now`, with `retry-after` when `retry` is set,
    /// written into `spare` when there is one: the headers of an earlier answer of the same kind
    /// ([`HeaderWriter::kind`]), whose storage is reused and whose every value is written over.
    pub(crate) fn write_into(
        &self,
        spare: Option<HeaderMap>,
        now: Duration,
        states: &[DimensionState; 3],
        retry: Option<Duration>,
    ) -> HeaderMap {
        let template = match retry {
            Some(_) => &self.retry,
            None => &self.plain,
        };
        let mut headers = match spare {
            Some(mut spare) => {
                if self.limit_and_reset {
                    // The `limit` values are not written below: they come from the template.
                    for ((_, value), (_, limit)) in spare.iter_mut().zip(template) {
                        value.clone_from(limit);
                    }
                }
                spare
            }
            None => template.clone(),
        };
        // A clone keeps the template's order, which is the order below.
        let mut slots = headers.iter_mut();
        let mut slot = |name: &HeaderName| {
            let (slot_name, value) = slots.next().expect("the template has every header");
            debug_assert_eq!(slot_name, name);
            value
        };
        let full = self.limit_and_reset;
        if self.anthropic {
            let wall_now = self.epoch.saturating_add(now);
            for ([limit, remaining, reset], dimension) in ANTHROPIC.iter().zip(Dimension::ALL) {
                if !self.reported[dimension as usize] {
                    continue;
                }
                let state = states[dimension as usize];
                if full {
                    slot(limit); // already in place
                }
                *slot(remaining) = number(state.remaining);
                if full {
                    let reset_at = wall_now.saturating_add(state.until_full);
                    *slot(reset) = Text::rfc3339(reset_at).value();
                }
            }
        }
        if self.openai {
            for ([limit, remaining, reset], dimension) in OPENAI.iter().zip(OPENAI_DIMENSIONS) {
                if !self.reported[dimension as usize] {
                    continue;
                }
                let state = states[dimension as usize];
                if full {
                    slot(limit); // already in place
                }
                *slot(remaining) = number(state.remaining);
                if full {
                    *slot(reset) = Text::go_duration(state.until_full).value();
                }
            }
        }
        if let Some(wait) = retry {
            // `retry-after` in whole seconds and `retry-after-ms`, both rounded up.
            let ms = ceil_millis(wait);
            *slot(&RETRY_AFTER) = number(ms.div_ceil(1000));
            *slot(&RETRY_AFTER_MS) = number(ms);
        }
        headers
    }
}

impl HeaderWriter {
    /// Which template `headers` has the shape of (the same names in the same order, one value
    /// each): `Some(false)` for an answer without `retry-after`, `Some(true)` with, `None` for
    /// neither.
    pub(crate) fn kind(&self, headers: &HeaderMap) -> Option<bool> {
        let same = |template: &HeaderMap| {
            headers.len() == template.len()
                && headers.keys_len() == template.keys_len()
                && headers.keys().zip(template.keys()).all(|(a, b)| a == b)
        };
        if same(&self.plain) {
            Some(false)
        } else if same(&self.retry) {
            Some(true)
        } else {
            None
        }
    }
}

/// Every header an answer carries, in order, with the limits in place and the other values empty.
fn template(config: &Config, retry: bool) -> HeaderMap {
    // Sized once: 3 Anthropic and 2 OpenAI dimensions of 3 headers (or 1, `remaining` alone),
    // and 2 retry headers at most.
    let full = config.limit_and_reset_headers;
    let per_dimension = if full { 3 } else { 1 };
    let mut headers = HeaderMap::with_capacity(
        per_dimension
            * (3 * usize::from(config.anthropic_headers) + 2 * usize::from(config.openai_headers))
            + 2 * usize::from(retry),
    );
    let mut put = |[limit, remaining, reset]: &[HeaderName; 3], dimension: Dimension| {
        if !config.reported[dimension as usize] {
            return;
        }
        if full {
            headers.insert(
                limit.clone(),
                HeaderValue::from(config.limits.get(dimension)),
            );
        }
        headers.insert(remaining.clone(), HeaderValue::from_static(""));
        if full {
            headers.insert(reset.clone(), HeaderValue::from_static(""));
        }
    };
    if config.anthropic_headers {
        for (names, dimension) in ANTHROPIC.iter().zip(Dimension::ALL) {
            put(names, dimension);
        }
    }
    if config.openai_headers {
        for (names, dimension) in OPENAI.iter().zip(OPENAI_DIMENSIONS) {
            put(names, dimension);
        }
    }
    if retry {
        headers.insert(RETRY_AFTER, HeaderValue::from_static(""));
        headers.insert(RETRY_AFTER_MS.clone(), HeaderValue::from_static(""));
    }
    headers
}

/// `n` in decimal: text borrowed from [`SMALL`] up to [`SMALL_MAX`] (requests left, `retry-after`:
/// most values), copied into the value above.
fn number(n: u64) -> HeaderValue {
    let (start, len) = match n {
        0..=9 => (n, 1),
        10..=99 => (10 + (n - 10) * 2, 2),
        100..=999 => (190 + (n - 100) * 3, 3),
        1_000..=SMALL_MAX => (2_890 + (n - 1_000) * 4, 4),
        _ => return Text::number(n).value(),
    };
    let start = start as usize;
    match SMALL.get(start..start + len) {
        Some(text) => HeaderValue::from_static(text),
        None => Text::number(n).value(), // not reached: in bounds, and ASCII
    }
}

/// The largest number in [`SMALL`].
const SMALL_MAX: u64 = 9_999;

/// `0123…91011…99991000…9999`: every number up to [`SMALL_MAX`] in decimal, one after the other
/// (10 of 1 digit, 90 of 2, 900 of 3, 9,000 of 4).
/// Checked once, when compiled, rather than on every use.
static SMALL: &str = match std::str::from_utf8(&DIGITS) {
    Ok(text) => text,
    Err(_) => panic!("digits are UTF-8"),
};

/// The bytes of [`SMALL`].
static DIGITS: [u8; 38_890] = small_numbers();

const fn small_numbers() -> [u8; 38_890] {
    let mut text = [0; 38_890];
    let (mut n, mut end) = (0, 0);
    while n <= SMALL_MAX {
        let mut digits = 1;
        while n >= 10u64.pow(digits) {
            digits += 1;
        }
        let mut rest = n;
        let mut i = digits as usize;
        while i > 0 {
            i -= 1;
            text[end + i] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        end += digits as usize;
        n += 1;
    }
    text
}

/// `d` in milliseconds, rounded up; `u64::MAX` if that does not fit.
fn ceil_millis(d: Duration) -> u64 {
    // The same as `d.as_nanos().div_ceil(1_000_000)` without dividing a u128.
    let frac = u64::from(d.subsec_nanos().div_ceil(1_000_000));
    d.as_secs()
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(frac))
        .unwrap_or(u64::MAX)
}

// ===== impl Text =====

/// A header value written on the stack. The longest is an RFC 3339 time at `u64::MAX`
/// milliseconds: a 9-digit year and 20 more bytes.
struct Text {
    bytes: [u8; 32],
    len: usize,
}

impl Text {
    fn new() -> Self {
        Self {
            bytes: [0; 32],
            len: 0,
        }
    }

    /// `n` in decimal.
    fn number(n: u64) -> Self {
        let mut text = Self::new();
        text.push_padded(n, 1);
        text
    }

    /// RFC 3339 UTC time of `since_unix_epoch`, rounded up to the millisecond:
    /// `2026-01-01T00:00:01Z`, or `2026-01-01T00:00:01.250Z` when there are milliseconds.
    fn rfc3339(since_unix_epoch: Duration) -> Self {
        let ms = ceil_millis(since_unix_epoch);
        let (secs, frac) = (ms / 1000, ms % 1000);
        let (year, month, day) = civil_from_days(secs / 86_400);
        let sod = secs % 86_400;
        let mut text = Self::new();
        text.push_padded(year, 4);
        text.push(b'-');
        text.push_padded(month, 2);
        text.push(b'-');
        text.push_padded(day, 2);
        text.push(b'T');
        text.push_padded(sod / 3600, 2);
        text.push(b':');
        text.push_padded(sod / 60 % 60, 2);
        text.push(b':');
        text.push_padded(sod % 60, 2);
        if frac != 0 {
            text.push(b'.');
            text.push_padded(frac, 3);
        }
        text.push(b'Z');
        text
    }

    /// A duration the way OpenAI (and Go's `time.Duration`) writes it, rounded up to the
    /// millisecond: `0s`, `120ms`, `1s`, `1.5s`, `6m0s`, `1h0m0s`.
    fn go_duration(d: Duration) -> Self {
        let ms = ceil_millis(d);
        let mut text = Self::new();
        if ms == 0 {
            text.push(b'0');
            text.push(b's');
            return text;
        }
        if ms < 1000 {
            text.push_padded(ms, 1);
            text.push(b'm');
            text.push(b's');
            return text;
        }
        let (h, m) = (ms / 3_600_000, ms / 60_000 % 60);
        let (s, frac) = (ms / 1000 % 60, ms % 1000);
        if h > 0 {
            text.push_padded(h, 1);
            text.push(b'h');
        }
        if h > 0 || m > 0 {
            text.push_padded(m, 1);
            text.push(b'm');
        }
        text.push_padded(s, 1);
        if frac != 0 {
            // Three digits without their trailing zeros: `.5`, `.56`, `.004`.
            let (digits, width) = match frac {
                _ if frac % 100 == 0 => (frac / 100, 1),
                _ if frac % 10 == 0 => (frac / 10, 2),
                _ => (frac, 3),
            };
            text.push(b'.');
            text.push_padded(digits, width);
        }
        text.push(b's');
        text
    }

    fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    /// `n` in decimal, zero-padded to at least `width` digits.
    fn push_padded(&mut self, mut n: u64, width: usize) {
        let mut digits = 1;
        let mut rest = n / 10;
        while rest > 0 {
            digits += 1;
            rest /= 10;
        }
        let end = self.len + digits.max(width);
        for byte in self.bytes[self.len..end].iter_mut().rev() {
            *byte = b'0' + (n % 10) as u8;
            n /= 10;
        }
        self.len = end;
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn value(&self) -> HeaderValue {
        HeaderValue::from_bytes(self.as_bytes()).expect("digits and punctuation are valid")
    }
}

/// [`Text::rfc3339`] as a `String`.
#[cfg(test)]
pub(crate) fn rfc3339(since_unix_epoch: Duration) -> String {
    Text::rfc3339(since_unix_epoch).into_string()
}

/// [`Text::go_duration`] as a `String`.
#[cfg(test)]
pub(crate) fn go_duration(d: Duration) -> String {
    Text::go_duration(d).into_string()
}

#[cfg(test)]
impl Text {
    fn into_string(self) -> String {
        String::from_utf8(self.as_bytes().to_vec()).expect("ASCII")
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
    fn numbers_from_the_table_and_beyond() {
        for n in (0..=SMALL_MAX + 1_000).chain([u64::MAX / 4, u64::MAX]) {
            assert_eq!(number(n).as_bytes(), n.to_string().as_bytes(), "{n}");
        }
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

/// The writer against the implementation it replaced (kept here verbatim: `HeaderName` parsed and
/// every value formatted with `format!` on every call), on arbitrary states.
#[cfg(test)]
mod same_as_before {
    use std::time::Duration;

    use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
    use proptest::prelude::*;

    use super::HeaderWriter;
    use crate::config::{Algorithm, Config, Limits};
    use crate::limits::{Dimension, DimensionState};

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

    fn insert_rate_limit_headers(
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

    fn insert_retry_after(headers: &mut HeaderMap, wait: Duration) {
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

    fn rfc3339(since_unix_epoch: Duration) -> String {
        let ms = ceil_millis(since_unix_epoch);
        let (secs, frac) = (ms / 1000, ms % 1000);
        let (year, month, day) = super::civil_from_days(secs / 86_400);
        let sod = secs % 86_400;
        let (h, m, s) = (sod / 3600, sod / 60 % 60, sod % 60);
        if frac == 0 {
            format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
        } else {
            format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{frac:03}Z")
        }
    }

    fn go_duration(d: Duration) -> String {
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

    /// What the service did before: a map sized once, then inserts.
    fn before(
        config: &Config,
        now: Duration,
        states: &[DimensionState; 3],
        retry: Option<Duration>,
    ) -> HeaderMap {
        let capacity = 9 * usize::from(config.anthropic_headers)
            + 6 * usize::from(config.openai_headers)
            + 2 * usize::from(retry.is_some());
        let mut headers = HeaderMap::with_capacity(capacity);
        insert_rate_limit_headers(&mut headers, config, now, states);
        if let Some(wait) = retry {
            insert_retry_after(&mut headers, wait);
        }
        headers
    }

    fn pairs(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
        headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect()
    }

    fn config(limits: [u64; 3], epoch_unix_secs: u64, anthropic: bool, openai: bool) -> Config {
        let [rpm, input_tpm, output_tpm] = limits;
        let limits = Limits {
            rpm,
            input_tpm,
            output_tpm,
        };
        Config {
            limits,
            effective: limits,
            algorithm: Algorithm::TokenBucket,
            overload: None,
            latency_base: Duration::ZERO,
            latency_per_output_token: Duration::ZERO,
            jitter_fraction: 0.0,
            seed: 0,
            epoch_unix_secs,
            anthropic_headers: anthropic,
            openai_headers: openai,
            limit_and_reset_headers: true,
            reported: [true; 3],
            event_log: false,
        }
    }

    /// Any duration, weighted towards the small ones a provider really reports.
    fn duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            4 => (0u64..120_000_000_000).prop_map(Duration::from_nanos),
            2 => (0u64..100_000).prop_map(Duration::from_millis),
            1 => any::<u64>().prop_map(Duration::from_nanos),
            1 => (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
            1 => Just(Duration::MAX),
        ]
    }

    fn number() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..100_000,
            any::<u64>(),
            Just(u64::MAX),
            Just(u64::MAX / 4)
        ]
    }

    fn state() -> impl Strategy<Value = DimensionState> {
        (number(), duration()).prop_map(|(remaining, until_full)| DimensionState {
            remaining,
            until_full,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn headers_are_byte_identical(
            limits in [number(), number(), number()],
            epoch in prop_oneof![Just(1_767_225_600u64), any::<u64>()],
            anthropic in any::<bool>(),
            openai in any::<bool>(),
            now in duration(),
            states in [state(), state(), state()],
            retry in proptest::option::of(duration()),
        ) {
            let config = config(limits, epoch, anthropic, openai);
            let writer = HeaderWriter::new(&config);
            let got = writer.write(now, &states, retry);
            prop_assert_eq!(pairs(&got), pairs(&before(&config, now, &states, retry)));
        }

        #[test]
        fn without_limit_and_reset_only_those_are_left_out(
            limits in [number(), number(), number()],
            anthropic in any::<bool>(),
            openai in any::<bool>(),
            now in duration(),
            states in [state(), state(), state()],
            retry in proptest::option::of(duration()),
        ) {
            let full = config(limits, 1_767_225_600, anthropic, openai);
            let lean = Config { limit_and_reset_headers: false, ..full.clone() };
            let got = HeaderWriter::new(&lean).write(now, &states, retry);
            let mut expected = pairs(&HeaderWriter::new(&full).write(now, &states, retry));
            expected.retain(|(name, _)| !name.contains("-limit") && !name.contains("-reset"));
            prop_assert_eq!(pairs(&got), expected);
        }

        #[test]
        fn a_reused_map_gives_what_a_new_one_gives(
            limits in [number(), number(), number()],
            anthropic in any::<bool>(),
            openai in any::<bool>(),
            full in any::<bool>(),
            (now, earlier) in (duration(), duration()),
            states in [state(), state(), state()],
            earlier_states in [state(), state(), state()],
            retry in proptest::option::of(duration()),
            earlier_retry in duration(),
        ) {
            let config = Config {
                limit_and_reset_headers: full,
                ..config(limits, 1_767_225_600, anthropic, openai)
            };
            let writer = HeaderWriter::new(&config);
            // The headers of an earlier answer of the same kind, every value since changed by
            // their reader.
            let mut spare = writer.write(earlier, &earlier_states, retry.map(|_| earlier_retry));
            for (_, value) in spare.iter_mut() {
                *value = HeaderValue::from_static("changed");
            }
            prop_assert_eq!(writer.kind(&spare), Some(retry.is_some()));
            let got = writer.write_into(Some(spare), now, &states, retry);
            prop_assert_eq!(pairs(&got), pairs(&writer.write(now, &states, retry)));
        }

        #[test]
        fn values_are_byte_identical(d in duration(), n in number()) {
            prop_assert_eq!(super::ceil_millis(d), ceil_millis(d));
            prop_assert_eq!(super::rfc3339(d), rfc3339(d));
            prop_assert_eq!(super::go_duration(d), go_duration(d));
            prop_assert_eq!(super::Text::number(n).into_string(), n.to_string());
        }
    }

    #[test]
    fn only_maps_of_a_template_s_shape_are_reused() {
        let writer = HeaderWriter::new(&config([60, 1_000, 1_000], 0, true, true));
        let states = [DimensionState {
            remaining: 1,
            until_full: Duration::ZERO,
        }; 3];
        let plain = writer.write(Duration::ZERO, &states, None);
        let retry = writer.write(Duration::ZERO, &states, Some(Duration::from_secs(1)));
        assert_eq!(writer.kind(&plain), Some(false));
        assert_eq!(writer.kind(&retry), Some(true));
        let mut more = plain.clone();
        more.insert("x-other", HeaderValue::from_static("1"));
        assert_eq!(writer.kind(&more), None);
        let mut twice = plain.clone();
        twice.append(ANTHROPIC[0][1], HeaderValue::from_static("2"));
        assert_eq!(writer.kind(&twice), None);
        let mut fewer = plain;
        fewer.remove(ANTHROPIC[0][1]);
        assert_eq!(writer.kind(&fewer), None);
        assert_eq!(writer.kind(&HeaderMap::new()), None);
    }

    #[test]
    fn edge_values_are_byte_identical() {
        let mut durations = vec![Duration::ZERO, Duration::from_nanos(1), Duration::MAX];
        for ms in (0..4_000).chain([59_999, 60_000, 60_001, 3_599_999, 3_600_000, 3_723_004]) {
            let ms = Duration::from_millis(ms);
            durations.extend([
                ms,
                ms + Duration::from_nanos(1),
                ms.saturating_sub(Duration::from_nanos(1)),
            ]);
        }
        for d in durations {
            assert_eq!(super::rfc3339(d), rfc3339(d), "{d:?}");
            assert_eq!(super::go_duration(d), go_duration(d), "{d:?}");
        }
        let mut n = 1u64;
        while let Some(next) = n.checked_mul(10) {
            for m in [n - 1, n, n + 1, next - 1] {
                assert_eq!(super::Text::number(m).into_string(), m.to_string());
            }
            n = next;
        }
        assert_eq!(super::Text::number(0).into_string(), "0");
        assert_eq!(
            super::Text::number(u64::MAX).into_string(),
            u64::MAX.to_string()
        );
    }
}

/// The exact bytes of whole answers, pinned against the implementation that formatted every value
/// with `format!`: names, values and order must never change.
#[cfg(test)]
mod pinned {
    use std::time::Duration;

    use http::Response;
    use tower::ServiceExt;

    use crate::{MockProvider, MockReply, MockRequest};

    fn paused<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(f)
    }

    async fn call(provider: &MockProvider, req: MockRequest) -> Response<MockReply> {
        match provider.clone().oneshot(req).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    fn assert_headers(response: &Response<MockReply>, status: u16, expected: &[(&str, &str)]) {
        assert_eq!(response.status().as_u16(), status);
        let got: Vec<(&str, &[u8])> = response
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        let expected: Vec<(&str, &[u8])> = expected
            .iter()
            .map(|&(name, value)| (name, value.as_bytes()))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn a_200_and_a_429_byte_for_byte() {
        paused(async {
            let provider = MockProvider::builder()
                .rpm(7)
                .input_tpm(7_000)
                .output_tpm(1_300)
                .latency(Duration::ZERO, Duration::ZERO, 0.0)
                .build()
                .unwrap();
            tokio::time::sleep(Duration::from_micros(1_234_567)).await;
            let ok = call(&provider, MockRequest::new(1_234, 300, 100)).await;
            assert_headers(
                &ok,
                200,
                &[
                    ("anthropic-ratelimit-requests-limit", "7"),
                    ("anthropic-ratelimit-requests-remaining", "6"),
                    (
                        "anthropic-ratelimit-requests-reset",
                        "2026-01-01T00:00:09.807Z",
                    ),
                    ("anthropic-ratelimit-input-tokens-limit", "7000"),
                    ("anthropic-ratelimit-input-tokens-remaining", "5766"),
                    (
                        "anthropic-ratelimit-input-tokens-reset",
                        "2026-01-01T00:00:11.813Z",
                    ),
                    ("anthropic-ratelimit-output-tokens-limit", "1300"),
                    ("anthropic-ratelimit-output-tokens-remaining", "1000"),
                    (
                        "anthropic-ratelimit-output-tokens-reset",
                        "2026-01-01T00:00:15.082Z",
                    ),
                    ("x-ratelimit-limit-requests", "7"),
                    ("x-ratelimit-remaining-requests", "6"),
                    ("x-ratelimit-reset-requests", "8.572s"),
                    ("x-ratelimit-limit-tokens", "7000"),
                    ("x-ratelimit-remaining-tokens", "5766"),
                    ("x-ratelimit-reset-tokens", "10.578s"),
                ],
            );
            for _ in 0..6 {
                call(&provider, MockRequest::new(10, 10, 10)).await;
            }
            tokio::time::sleep(Duration::from_micros(3_001)).await;
            let limited = call(&provider, MockRequest::new(10, 10, 10)).await;
            assert_headers(
                &limited,
                429,
                &[
                    ("anthropic-ratelimit-requests-limit", "7"),
                    ("anthropic-ratelimit-requests-remaining", "0"),
                    (
                        "anthropic-ratelimit-requests-reset",
                        "2026-01-01T00:01:01.235Z",
                    ),
                    ("anthropic-ratelimit-input-tokens-limit", "7000"),
                    ("anthropic-ratelimit-input-tokens-remaining", "5706"),
                    (
                        "anthropic-ratelimit-input-tokens-reset",
                        "2026-01-01T00:00:12.327Z",
                    ),
                    ("anthropic-ratelimit-output-tokens-limit", "1300"),
                    ("anthropic-ratelimit-output-tokens-remaining", "1140"),
                    (
                        "anthropic-ratelimit-output-tokens-reset",
                        "2026-01-01T00:00:08.620Z",
                    ),
                    ("x-ratelimit-limit-requests", "7"),
                    ("x-ratelimit-remaining-requests", "0"),
                    ("x-ratelimit-reset-requests", "59.996s"),
                    ("x-ratelimit-limit-tokens", "7000"),
                    ("x-ratelimit-remaining-tokens", "5706"),
                    ("x-ratelimit-reset-tokens", "11.088s"),
                    ("retry-after", "9"),
                    ("retry-after-ms", "8568"),
                ],
            );
        });
    }

    #[test]
    fn unlimited_tokens_as_the_simulator_configures_them() {
        paused(async {
            let provider = MockProvider::builder()
                .rpm(1)
                .input_tpm(u64::MAX / 4)
                .output_tpm(u64::MAX / 4)
                .epoch_unix_secs(1_700_000_000)
                .latency(Duration::ZERO, Duration::ZERO, 0.0)
                .build()
                .unwrap();
            tokio::time::sleep(Duration::from_secs(3_725)).await;
            let ok = call(&provider, MockRequest::new(2_000, 1_000, 500)).await;
            assert_headers(
                &ok,
                200,
                &[
                    ("anthropic-ratelimit-requests-limit", "1"),
                    ("anthropic-ratelimit-requests-remaining", "0"),
                    ("anthropic-ratelimit-requests-reset", "2023-11-14T23:16:25Z"),
                    (
                        "anthropic-ratelimit-input-tokens-limit",
                        "4611686018427387903",
                    ),
                    (
                        "anthropic-ratelimit-input-tokens-remaining",
                        "4611686018427385904",
                    ),
                    (
                        "anthropic-ratelimit-input-tokens-reset",
                        "2023-11-14T23:15:25.001Z",
                    ),
                    (
                        "anthropic-ratelimit-output-tokens-limit",
                        "4611686018427387903",
                    ),
                    (
                        "anthropic-ratelimit-output-tokens-remaining",
                        "4611686018427386904",
                    ),
                    (
                        "anthropic-ratelimit-output-tokens-reset",
                        "2023-11-14T23:15:25.001Z",
                    ),
                    ("x-ratelimit-limit-requests", "1"),
                    ("x-ratelimit-remaining-requests", "0"),
                    ("x-ratelimit-reset-requests", "1m0s"),
                    ("x-ratelimit-limit-tokens", "4611686018427387903"),
                    ("x-ratelimit-remaining-tokens", "4611686018427385904"),
                    ("x-ratelimit-reset-tokens", "1ms"),
                ],
            );
            tokio::time::sleep(Duration::from_micros(500_250)).await;
            let limited = call(&provider, MockRequest::new(2_000, 1_000, 500)).await;
            assert_headers(
                &limited,
                429,
                &[
                    ("anthropic-ratelimit-requests-limit", "1"),
                    ("anthropic-ratelimit-requests-remaining", "0"),
                    ("anthropic-ratelimit-requests-reset", "2023-11-14T23:16:25Z"),
                    (
                        "anthropic-ratelimit-input-tokens-limit",
                        "4611686018427387903",
                    ),
                    (
                        "anthropic-ratelimit-input-tokens-remaining",
                        "4611686018427387904",
                    ),
                    (
                        "anthropic-ratelimit-input-tokens-reset",
                        "2023-11-14T23:15:25.501Z",
                    ),
                    (
                        "anthropic-ratelimit-output-tokens-limit",
                        "4611686018427387903",
                    ),
                    (
                        "anthropic-ratelimit-output-tokens-remaining",
                        "4611686018427387904",
                    ),
                    (
                        "anthropic-ratelimit-output-tokens-reset",
                        "2023-11-14T23:15:25.501Z",
                    ),
                    ("x-ratelimit-limit-requests", "1"),
                    ("x-ratelimit-remaining-requests", "0"),
                    ("x-ratelimit-reset-requests", "59.499s"),
                    ("x-ratelimit-limit-tokens", "4611686018427387903"),
                    ("x-ratelimit-remaining-tokens", "4611686018427387904"),
                    ("x-ratelimit-reset-tokens", "0s"),
                    ("retry-after", "60"),
                    ("retry-after-ms", "59499"),
                ],
            );
        });
    }
}
