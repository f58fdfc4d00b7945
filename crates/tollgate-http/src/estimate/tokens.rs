//! Counting the tokens of a piece of text: the model's BPE where one is known (feature
//! `tiktoken`), else the characters rule.

/// How text turns into tokens for one request.
#[derive(Clone, Copy)]
pub(crate) enum TextRule {
    /// `ceil(chars / (half_chars_per_token / 2))`: the characters rule, with the divisor in halves
    /// so that 3.5 stays an integer (7).
    Chars { half_chars_per_token: u64 },
    /// The model's byte-pair encoding.
    #[cfg(feature = "tiktoken")]
    Bpe(&'static tiktoken_rs::CoreBPE),
}

impl std::fmt::Debug for TextRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TextRule::Chars {
                half_chars_per_token,
            } => f
                .debug_struct("Chars")
                .field("half_chars_per_token", half_chars_per_token)
                .finish(),
            #[cfg(feature = "tiktoken")]
            TextRule::Bpe(_) => f.write_str("Bpe"),
        }
    }
}

/// Anthropic's rule of thumb: about 3.5 characters per token.
pub(crate) const ANTHROPIC_CHARS: TextRule = TextRule::Chars {
    half_chars_per_token: 7,
};
/// OpenAI's rule of thumb: about 4 characters per token.
pub(crate) const OPENAI_CHARS: TextRule = TextRule::Chars {
    half_chars_per_token: 8,
};

/// The rule for an OpenAI model: its tiktoken encoding when the model name is known (feature
/// `tiktoken`), else 4 characters per token.
pub(crate) fn openai_rule(model: &str) -> TextRule {
    #[cfg(feature = "tiktoken")]
    if let Some(bpe) = bpe_for_model(model) {
        return TextRule::Bpe(bpe);
    }
    let _ = model;
    OPENAI_CHARS
}

/// Which encoding an OpenAI model uses, by name prefix (a fine-tuned `ft:` prefix is skipped).
#[cfg(any(test, feature = "tiktoken"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    O200k,
    Cl100k,
}

#[cfg(any(test, feature = "tiktoken"))]
pub(crate) fn encoding_for_model(model: &str) -> Option<Encoding> {
    const O200K: [&str; 8] = [
        "gpt-4o",
        "chatgpt-4o",
        "gpt-4.1",
        "gpt-4.5",
        "gpt-5",
        "o1",
        "o3",
        "o4-mini",
    ];
    const CL100K: [&str; 3] = ["gpt-4", "gpt-3.5-turbo", "text-embedding-3-"];
    let model = model.strip_prefix("ft:").unwrap_or(model);
    if O200K.iter().any(|p| model.starts_with(p)) {
        Some(Encoding::O200k)
    } else if CL100K.iter().any(|p| model.starts_with(p)) {
        Some(Encoding::Cl100k)
    } else {
        None
    }
}

#[cfg(feature = "tiktoken")]
fn bpe_for_model(model: &str) -> Option<&'static tiktoken_rs::CoreBPE> {
    Some(match encoding_for_model(model)? {
        Encoding::O200k => tiktoken_rs::o200k_base_singleton(),
        Encoding::Cl100k => tiktoken_rs::cl100k_base_singleton(),
    })
}

/// Loads the BPE tables now rather than at the first OpenAI request that needs them (about
/// 0.15 s each in a release build). Does nothing without the feature `tiktoken`.
///
/// ```
/// tollgate_http::preload_tokenizers();
/// ```
pub fn preload_tokenizers() {
    #[cfg(feature = "tiktoken")]
    {
        let _ = tiktoken_rs::o200k_base_singleton();
        let _ = tiktoken_rs::cl100k_base_singleton();
    }
}

/// The longest piece of text handed to the BPE at once. Byte-pair encoding is superlinear in the
/// length of a piece without separators, and its regex can give up (and the encoder panic) on a
/// very long run of one character; pieces this short do neither, and cutting a long text at a
/// space every 1 KiB changes its count by at most about one token per cut.
#[cfg(feature = "tiktoken")]
const BPE_PIECE: usize = 1024;

/// The text's tokens, plus its characters when the rule counts characters.
pub(crate) fn count(rule: TextRule, text: &str) -> Counted {
    match rule {
        TextRule::Chars { .. } => Counted {
            tokens: 0,
            chars: text.chars().count() as u64,
        },
        #[cfg(feature = "tiktoken")]
        TextRule::Bpe(bpe) => {
            let tokens = pieces(text)
                .map(|p| bpe.encode_ordinary(p).len() as u64)
                .sum();
            Counted { tokens, chars: 0 }
        }
    }
}

/// What [`count`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counted {
    pub(crate) tokens: u64,
    pub(crate) chars: u64,
}

/// The tokens for `chars` characters under the characters rule (`0` for a BPE rule).
pub(crate) fn chars_to_tokens(rule: TextRule, chars: u64) -> u64 {
    match rule {
        TextRule::Chars {
            half_chars_per_token,
        } => chars.saturating_mul(2).div_ceil(half_chars_per_token),
        #[cfg(feature = "tiktoken")]
        TextRule::Bpe(_) => 0,
    }
}

/// `text` cut into pieces of at most [`BPE_PIECE`] bytes, each cut after the last whitespace of
/// its window when there is one in the window's second half, else at a character boundary.
#[cfg(feature = "tiktoken")]
fn pieces(mut text: &str) -> impl Iterator<Item = &str> {
    std::iter::from_fn(move || {
        if text.is_empty() {
            return None;
        }
        if text.len() <= BPE_PIECE {
            return Some(std::mem::take(&mut text));
        }
        let mut end = BPE_PIECE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if let Some(space) = text.as_bytes()[BPE_PIECE / 2..end]
            .iter()
            .rposition(|b| b.is_ascii_whitespace())
        {
            end = BPE_PIECE / 2 + space + 1;
        }
        let (piece, rest) = text.split_at(end);
        text = rest;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chars_rule_rounds_up() {
        assert_eq!(chars_to_tokens(ANTHROPIC_CHARS, 0), 0);
        assert_eq!(chars_to_tokens(ANTHROPIC_CHARS, 7), 2);
        assert_eq!(chars_to_tokens(ANTHROPIC_CHARS, 8), 3);
        assert_eq!(chars_to_tokens(OPENAI_CHARS, 8), 2);
        assert_eq!(chars_to_tokens(OPENAI_CHARS, 9), 3);
        // Characters, not bytes.
        assert_eq!(count(ANTHROPIC_CHARS, "héllo").chars, 5);
    }

    #[test]
    fn encodings_by_prefix() {
        assert_eq!(encoding_for_model("gpt-4o-mini"), Some(Encoding::O200k));
        assert_eq!(
            encoding_for_model("ft:gpt-4o-mini:org::id"),
            Some(Encoding::O200k)
        );
        assert_eq!(encoding_for_model("gpt-5"), Some(Encoding::O200k));
        assert_eq!(encoding_for_model("o4-mini"), Some(Encoding::O200k));
        assert_eq!(encoding_for_model("gpt-4-turbo"), Some(Encoding::Cl100k));
        assert_eq!(encoding_for_model("gpt-3.5-turbo"), Some(Encoding::Cl100k));
        assert_eq!(encoding_for_model("llama-3"), None);
    }

    #[cfg(feature = "tiktoken")]
    #[test]
    fn bpe_counts_known_text() {
        let rule = openai_rule("gpt-4o");
        assert!(matches!(rule, TextRule::Bpe(_)));
        // "hello world" is two tokens in both encodings.
        assert_eq!(
            count(rule, "hello world"),
            Counted {
                tokens: 2,
                chars: 0
            }
        );
        assert_eq!(count(openai_rule("gpt-4"), "hello world").tokens, 2);
        assert!(matches!(openai_rule("my-model"), TextRule::Chars { .. }));
    }

    #[cfg(feature = "tiktoken")]
    #[test]
    fn pieces_cover_the_text_and_stay_short() {
        let text = format!("{}é{}", "word ".repeat(500), "x".repeat(3000));
        let parts: Vec<&str> = pieces(&text).collect();
        assert_eq!(parts.concat(), text);
        assert!(parts.iter().all(|p| p.len() <= BPE_PIECE && !p.is_empty()));
        // Cut at a space where there is one.
        assert!(parts[0].ends_with(' '));
    }

    /// Long runs of one character make the BPE's regex give up (and the encoder panic) when
    /// handed whole; in pieces they are counted.
    #[cfg(feature = "tiktoken")]
    #[test]
    fn pathological_runs_do_not_panic() {
        let rule = openai_rule("gpt-4o");
        for c in ["^", " ", "a", "\n", "0"] {
            let text = c.repeat(200_000);
            assert!(count(rule, &text).tokens > 0);
        }
    }
}
