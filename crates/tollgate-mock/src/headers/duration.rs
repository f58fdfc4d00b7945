//! Durations as providers write them: whole milliseconds rounded up, and OpenAI's Go-style
//! durations.

use std::time::Duration;

use super::text::Text;

/// `d` in milliseconds, rounded up; `u64::MAX` if that does not fit.
pub(super) fn ceil_millis(d: Duration) -> u64 {
    // The same as `d.as_nanos().div_ceil(1_000_000)` without dividing a u128.
    let frac = u64::from(d.subsec_nanos().div_ceil(1_000_000));
    d.as_secs()
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(frac))
        .unwrap_or(u64::MAX)
}

/// A duration the way OpenAI (and Go's `time.Duration`) writes it, rounded up to the
/// millisecond: `0s`, `120ms`, `1s`, `1.5s`, `6m0s`, `1h0m0s`.
pub(super) fn go_duration(d: Duration) -> Text {
    let ms = ceil_millis(d);
    let mut text = Text::new();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_are_rounded_up_and_saturate() {
        let cases = [
            (Duration::ZERO, 0),
            (Duration::from_nanos(1), 1),
            (Duration::from_millis(5), 5),
            (Duration::from_nanos(5_000_001), 6),
            (Duration::new(7, 999_999_999), 8_000),
            (Duration::from_secs(u64::MAX / 1000), u64::MAX / 1000 * 1000),
            (Duration::from_secs(u64::MAX / 1000 + 1), u64::MAX),
            (Duration::MAX, u64::MAX),
        ];
        for (d, ms) in cases {
            assert_eq!(ceil_millis(d), ms, "{d:?}");
        }
    }

    #[test]
    fn go_duration_formats_like_openai() {
        let ms = Duration::from_millis;
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1ms"),
            (ms(120), "120ms"),
            (ms(999), "999ms"),
            (Duration::from_nanos(999_000_001), "1s"),
            (ms(1000), "1s"),
            (ms(1001), "1.001s"),
            (ms(1010), "1.01s"),
            (ms(1100), "1.1s"),
            (ms(1500), "1.5s"),
            (ms(8640), "8.64s"),
            (ms(59_999), "59.999s"),
            (ms(60_000), "1m0s"),
            (ms(60_001), "1m0.001s"),
            (ms(6 * 60_000), "6m0s"),
            (ms(179_560), "2m59.56s"),
            (ms(3_599_999), "59m59.999s"),
            (ms(3_600_000), "1h0m0s"),
            (ms(3_723_004), "1h2m3.004s"),
            (Duration::MAX, "5124095576030h25m51.615s"),
        ];
        for (d, expected) in cases {
            assert_eq!(go_duration(d).as_str(), expected, "{d:?}");
        }
    }
}
