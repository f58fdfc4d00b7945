//! RFC 3339 UTC times, as Anthropic writes its `reset` headers, from a duration since the Unix
//! epoch.

use std::time::Duration;

use super::duration::ceil_millis;
use super::text::Text;

/// RFC 3339 UTC time of `since_unix_epoch`, rounded up to the millisecond:
/// `2026-01-01T00:00:01Z`, or `2026-01-01T00:00:01.250Z` when there are milliseconds.
pub(super) fn rfc3339(since_unix_epoch: Duration) -> Text {
    let ms = ceil_millis(since_unix_epoch);
    let (secs, frac) = (ms / 1000, ms % 1000);
    let (year, month, day) = civil_from_days(secs / 86_400);
    let sod = secs % 86_400;
    let mut text = Text::new();
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
    fn rfc3339_known_dates() {
        let s = Duration::from_secs;
        let cases = [
            (Duration::ZERO, "1970-01-01T00:00:00Z"),
            (Duration::from_nanos(1), "1970-01-01T00:00:00.001Z"),
            (s(1_767_225_600), "2026-01-01T00:00:00Z"),
            (
                s(1_767_225_600) + Duration::from_micros(250_001),
                "2026-01-01T00:00:00.251Z",
            ),
            (
                Duration::new(1_767_225_600, 999_999_999),
                "2026-01-01T00:00:01Z",
            ),
            (s(951_782_400), "2000-02-29T00:00:00Z"),
            (s(1_709_251_199), "2024-02-29T23:59:59Z"),
            (s(4_102_444_800), "2100-01-01T00:00:00Z"),
            (s(253_402_300_799), "9999-12-31T23:59:59Z"),
            (s(253_402_300_800), "10000-01-01T00:00:00Z"),
            (Duration::MAX, "584556019-04-03T14:25:51.615Z"),
        ];
        for (d, expected) in cases {
            assert_eq!(rfc3339(d).as_str(), expected, "{d:?}");
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
