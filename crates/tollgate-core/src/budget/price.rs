//! [`Price`] and [`TokenUsage`]: what a call costs in money.

use super::Micros;
use crate::{ConfigError, Rule};

/// The tokens one call used, split the way providers price them. The four counts are disjoint.
///
/// * Anthropic reports them this way: `input_tokens` (not cached), `cache_creation_input_tokens`,
///   `cache_read_input_tokens`, `output_tokens`.
/// * OpenAI's `prompt_tokens` *include* the cached ones (`prompt_tokens_details.cached_tokens`):
///   use [`TokenUsage::from_openai`], which subtracts them.
///
/// ```
/// use tollgate_core::TokenUsage;
///
/// let u = TokenUsage::new(1_000, 200).with_cache_read(9_000);
/// assert_eq!(u.total(), 10_200);
/// assert_eq!(TokenUsage::from_openai(10_000, 9_000, 200), u);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TokenUsage {
    /// Input tokens that neither wrote nor read a prompt cache.
    pub input: u64,
    /// Output tokens (reasoning tokens included).
    pub output: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
}

impl TokenUsage {
    /// No tokens.
    ///
    /// ```
    /// use tollgate_core::TokenUsage;
    /// assert_eq!(TokenUsage::ZERO.total(), 0);
    /// ```
    pub const ZERO: TokenUsage = TokenUsage::new(0, 0);

    /// `input` uncached input tokens and `output` output tokens.
    ///
    /// ```
    /// use tollgate_core::TokenUsage;
    /// assert_eq!(TokenUsage::new(3, 4).output, 4);
    /// ```
    pub const fn new(input: u64, output: u64) -> Self {
        TokenUsage {
            input,
            output,
            cache_write: 0,
            cache_read: 0,
        }
    }

    /// The same usage with `n` tokens written to the cache.
    ///
    /// ```
    /// use tollgate_core::TokenUsage;
    /// assert_eq!(TokenUsage::ZERO.with_cache_write(5).cache_write, 5);
    /// ```
    #[must_use]
    pub const fn with_cache_write(mut self, n: u64) -> Self {
        self.cache_write = n;
        self
    }

    /// The same usage with `n` tokens read from the cache.
    ///
    /// ```
    /// use tollgate_core::TokenUsage;
    /// assert_eq!(TokenUsage::ZERO.with_cache_read(5).cache_read, 5);
    /// ```
    #[must_use]
    pub const fn with_cache_read(mut self, n: u64) -> Self {
        self.cache_read = n;
        self
    }

    /// From OpenAI's usage object: `prompt_tokens` (cached ones included),
    /// `prompt_tokens_details.cached_tokens` and `completion_tokens`. OpenAI does not charge extra
    /// for cache writes, so `cache_write` is 0.
    ///
    /// ```
    /// use tollgate_core::TokenUsage;
    /// let u = TokenUsage::from_openai(1_500, 1_024, 300);
    /// assert_eq!((u.input, u.cache_read, u.output), (476, 1_024, 300));
    /// ```
    pub const fn from_openai(
        prompt_tokens: u64,
        cached_tokens: u64,
        completion_tokens: u64,
    ) -> Self {
        TokenUsage {
            input: prompt_tokens.saturating_sub(cached_tokens),
            output: completion_tokens,
            cache_write: 0,
            cache_read: cached_tokens,
        }
    }

    /// All four counts added up (saturating).
    ///
    /// ```
    /// use tollgate_core::TokenUsage;
    /// assert_eq!(TokenUsage::new(1, 2).with_cache_write(3).with_cache_read(4).total(), 10);
    /// ```
    pub const fn total(&self) -> u64 {
        self.input
            .saturating_add(self.output)
            .saturating_add(self.cache_write)
            .saturating_add(self.cache_read)
    }
}

/// What one model costs: US dollars per million tokens of each kind, held as [`Micros`] (so
/// `$3 / Mtok` is `Micros::from_dollars(3)`).
///
/// Always valid once built; [`Price::from_dollars`] validates amounts given as floats.
///
/// ```
/// use tollgate_core::{Micros, Price, TokenUsage};
///
/// // $3 in, $15 out, $3.75 cache write, $0.30 cache read per million tokens.
/// let sonnet = Price::from_dollars(3.0, 15.0, 3.75, 0.30)?;
/// assert_eq!(sonnet.output_per_mtok, Micros::from_dollars(15));
/// // 10k in + 1k out = $0.03 + $0.015.
/// assert_eq!(sonnet.cost_of(TokenUsage::new(10_000, 1_000)), Micros::new(45_000));
/// # Ok::<(), tollgate_core::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Price {
    /// Per million uncached input tokens.
    pub input_per_mtok: Micros,
    /// Per million output tokens.
    pub output_per_mtok: Micros,
    /// Per million input tokens written to the prompt cache.
    pub cache_write_per_mtok: Micros,
    /// Per million input tokens read from the prompt cache.
    pub cache_read_per_mtok: Micros,
}

impl Price {
    /// The most accepted by [`Price::from_dollars`]: $1,000,000 per million tokens.
    ///
    /// ```
    /// use tollgate_core::Price;
    /// assert!(Price::from_dollars(Price::MAX_DOLLARS_PER_MTOK, 0.0, 0.0, 0.0).is_ok());
    /// assert!(Price::from_dollars(1e7, 0.0, 0.0, 0.0).is_err());
    /// ```
    pub const MAX_DOLLARS_PER_MTOK: f64 = 1_000_000.0;

    /// A price from micro-dollars per million tokens (`const`, for tables in code).
    ///
    /// ```
    /// use tollgate_core::{Micros, Price};
    /// const HAIKU: Price = Price::from_micros(1_000_000, 5_000_000, 1_250_000, 100_000);
    /// assert_eq!(HAIKU.cache_read_per_mtok, Micros::from_cents(10));
    /// ```
    pub const fn from_micros(input: u64, output: u64, cache_write: u64, cache_read: u64) -> Price {
        Price {
            input_per_mtok: Micros::new(input),
            output_per_mtok: Micros::new(output),
            cache_write_per_mtok: Micros::new(cache_write),
            cache_read_per_mtok: Micros::new(cache_read),
        }
    }

    /// A price from US dollars per million tokens, each rounded to the nearest micro-dollar.
    ///
    /// # Errors
    /// [`Rule::PriceOutOfRange`] when an amount is not a finite number in
    /// `[0, MAX_DOLLARS_PER_MTOK]` (NaN, infinite, negative, absurdly large).
    ///
    /// ```
    /// use tollgate_core::{Price, Rule};
    /// assert!(Price::from_dollars(2.5, 10.0, 2.5, 1.25).is_ok());
    /// let err = Price::from_dollars(2.5, f64::NAN, 2.5, 1.25).unwrap_err();
    /// assert_eq!(err.rule(), Rule::PriceOutOfRange);
    /// ```
    pub fn from_dollars(
        input: f64,
        output: f64,
        cache_write: f64,
        cache_read: f64,
    ) -> Result<Price, ConfigError> {
        let m = |what: &str, d: f64| {
            if (0.0..=Self::MAX_DOLLARS_PER_MTOK).contains(&d) {
                Micros::from_dollars_f64(d).ok_or(())
            } else {
                Err(())
            }
            .map_err(|()| {
                ConfigError::new(
                    Rule::PriceOutOfRange,
                    format!("{what} price of {d} $/Mtok is not a finite number in [0, 1e6]"),
                )
            })
        };
        Ok(Price {
            input_per_mtok: m("input", input)?,
            output_per_mtok: m("output", output)?,
            cache_write_per_mtok: m("cache write", cache_write)?,
            cache_read_per_mtok: m("cache read", cache_read)?,
        })
    }

    /// What `usage` costs, rounded *up* to a whole micro-dollar (never under-counts; at most one
    /// micro-dollar over per call). Exact integer arithmetic, saturating at [`Micros::MAX`].
    ///
    /// ```
    /// use tollgate_core::{Micros, Price, TokenUsage};
    /// let p = Price::from_micros(150_000, 600_000, 150_000, 75_000); // $0.15 / $0.60 per Mtok
    /// assert_eq!(p.cost_of(TokenUsage::new(1, 0)), Micros::new(1)); // 0.15 µ$ rounds up
    /// assert_eq!(p.cost_of(TokenUsage::new(1_000_000, 1_000_000)), Micros::from_cents(75));
    /// ```
    pub fn cost_of(&self, usage: TokenUsage) -> Micros {
        let pico = [
            (usage.input, self.input_per_mtok),
            (usage.output, self.output_per_mtok),
            (usage.cache_write, self.cache_write_per_mtok),
            (usage.cache_read, self.cache_read_per_mtok),
        ]
        .into_iter()
        .fold(0u128, |acc, (n, p)| {
            acc.saturating_add(u128::from(n) * u128::from(p.as_u64()))
        });
        Micros::new(u64::try_from(pico.div_ceil(1_000_000)).unwrap_or(u64::MAX))
    }

    /// An upper bound of what a call can cost before it is made: every one of `prompt_tokens`
    /// priced at the dearest of the input, cache-write and cache-read prices (the provider decides
    /// which apply, and a cache write costs more than plain input at Anthropic), plus
    /// `max_output_tokens` at the output price. Reserving this keeps a budget's hard guarantee
    /// (see [`BudgetState`](crate::BudgetState)), as long as `prompt_tokens` is not an
    /// under-count.
    ///
    /// ```
    /// use tollgate_core::{Micros, Price};
    /// let p = Price::from_dollars(3.0, 15.0, 3.75, 0.30)?;
    /// // 100k prompt tokens at $3.75 + 1k output tokens at $15.
    /// assert_eq!(p.upper_bound(100_000, 1_000), Micros::new(375_000 + 15_000));
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn upper_bound(&self, prompt_tokens: u64, max_output_tokens: u64) -> Micros {
        let dearest = self
            .input_per_mtok
            .max(self.cache_write_per_mtok)
            .max(self.cache_read_per_mtok);
        Price {
            input_per_mtok: dearest,
            ..*self
        }
        .cost_of(TokenUsage::new(prompt_tokens, max_output_tokens))
    }
}
