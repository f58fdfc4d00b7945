//! Numbers as header values: the common small ones borrowed from a table built when compiled,
//! the others written on the stack.

use http::header::HeaderValue;

use super::text::Text;

/// `n` in decimal: text borrowed from [`SMALL`] up to [`SMALL_MAX`] (requests left, `retry-after`:
/// most values), copied into the value above.
pub(super) fn number(n: u64) -> HeaderValue {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_from_the_table_and_beyond() {
        for n in (0..=SMALL_MAX + 1_000).chain([u64::MAX / 4, u64::MAX]) {
            assert_eq!(number(n).as_bytes(), n.to_string().as_bytes(), "{n}");
        }
    }

    #[test]
    fn the_table_s_edges_byte_for_byte() {
        let cases: [(u64, &str); 10] = [
            (0, "0"),
            (9, "9"),
            (10, "10"),
            (99, "99"),
            (100, "100"),
            (999, "999"),
            (1_000, "1000"),
            (9_999, "9999"),
            (10_000, "10000"),
            (u64::MAX, "18446744073709551615"),
        ];
        for (n, expected) in cases {
            assert_eq!(number(n).as_bytes(), expected.as_bytes(), "{n}");
        }
    }
}
