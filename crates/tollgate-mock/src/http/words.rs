//! The answer's text: words from a small fixed vocabulary, drawn from the seed and the request.

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

/// The vocabulary of every answer.
const VOCABULARY: [&str; 32] = [
    "the", "gate", "token", "agent", "limit", "minute", "budget", "request", "answer", "model",
    "quota", "bucket", "refill", "wait", "retry", "header", "stream", "usage", "input", "output",
    "fleet", "queue", "fair", "share", "steady", "burst", "window", "count", "mock", "reply",
    "plan", "step",
];

/// The fewest and the most words an answer draws before `max_tokens` cuts it.
pub const LENGTH: std::ops::RangeInclusive<u64> = 8..=64;

/// What the model "wants" to say to a request: the same seed and request body give the same words.
pub(crate) fn draw(seed: u64, body: &[u8]) -> Vec<&'static str> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv1a(body));
    let len = rng.random_range(LENGTH);
    (0..len)
        .map(|_| VOCABULARY[rng.random_range(0..VOCABULARY.len())])
        .collect()
}

/// The text of `words`: joined by single spaces. Each word is one output token.
pub(crate) fn text(words: &[&str]) -> String {
    words.join(" ")
}

/// The stream deltas of `words`: each word, with a leading space after the first, so that the
/// deltas concatenate to [`text`].
pub(crate) fn deltas<'a>(words: &'a [&'a str]) -> impl Iterator<Item = String> + 'a {
    words.iter().enumerate().map(|(i, w)| {
        if i == 0 {
            (*w).to_owned()
        } else {
            format!(" {w}")
        }
    })
}

/// 64-bit FNV-1a: a stable hash of the request body (no std hasher, whose output may change).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn same_seed_and_body_same_words_within_length(seed: u64, body: Vec<u8>) {
            let words = draw(seed, &body);
            prop_assert_eq!(&words, &draw(seed, &body));
            prop_assert!(LENGTH.contains(&(words.len() as u64)));
            let joined: String = deltas(&words).collect();
            prop_assert_eq!(joined, text(&words));
        }
    }

    #[test]
    fn fnv1a_known_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
