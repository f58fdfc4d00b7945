//! [`Text`]: a header value written on the stack, digit by digit, without `format!`.

use http::header::HeaderValue;

/// A header value written on the stack. The longest is an RFC 3339 time at `u64::MAX`
/// milliseconds: a 9-digit year and 20 more bytes.
pub(super) struct Text {
    bytes: [u8; 32],
    len: usize,
}

impl Text {
    pub(super) fn new() -> Self {
        Self {
            bytes: [0; 32],
            len: 0,
        }
    }

    /// `n` in decimal.
    pub(super) fn number(n: u64) -> Self {
        let mut text = Self::new();
        text.push_padded(n, 1);
        text
    }

    pub(super) fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    /// `n` in decimal, zero-padded to at least `width` digits.
    pub(super) fn push_padded(&mut self, mut n: u64, width: usize) {
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

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    pub(super) fn value(&self) -> HeaderValue {
        HeaderValue::from_bytes(self.as_bytes()).expect("digits and punctuation are valid")
    }

    /// The text as a `&str`, for tests.
    #[cfg(test)]
    pub(super) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).expect("ASCII")
    }
}

#[cfg(test)]
mod tests {
    use super::Text;

    #[test]
    fn numbers_are_written_in_decimal_and_padded_to_their_width() {
        assert_eq!(Text::number(0).as_str(), "0");
        assert_eq!(Text::number(7).as_str(), "7");
        assert_eq!(Text::number(1_000).as_str(), "1000");
        assert_eq!(Text::number(u64::MAX).as_str(), "18446744073709551615");
        let mut text = Text::new();
        text.push_padded(7, 3);
        text.push(b'.');
        text.push_padded(1_234, 2);
        text.push(b'.');
        text.push_padded(0, 2);
        assert_eq!(text.as_str(), "007.1234.00");
    }

    #[test]
    fn every_power_of_ten_and_its_neighbours_as_std_writes_them() {
        let mut n = 1u64;
        while let Some(next) = n.checked_mul(10) {
            for m in [n - 1, n, n + 1, next - 1] {
                assert_eq!(Text::number(m).as_str(), m.to_string());
            }
            n = next;
        }
    }
}
