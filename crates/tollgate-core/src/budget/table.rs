//! [`PriceTable`]: model name → [`Price`], with a policy for models it does not list.

use super::{Micros, Price, TokenUsage};
use std::collections::BTreeMap;
use std::fmt;

/// What [`PriceTable`] does with a model it has no price for. Never a silent zero.
///
/// ```
/// use tollgate_core::{Price, UnknownModel};
/// assert_eq!(UnknownModel::default(), UnknownModel::Refuse);
/// let lenient = UnknownModel::Default(Price::from_dollars(15.0, 75.0, 18.75, 1.5)?);
/// # let _ = lenient;
/// # Ok::<(), tollgate_core::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum UnknownModel {
    /// Return an [`UnknownModelError`]: the caller refuses the call. The default.
    #[default]
    Refuse,
    /// Charge this price ([`PriceMatch::Default`] tells the caller to warn). Pick a dear one:
    /// the budget's guarantee holds only if it is not below the real price.
    Default(Price),
}

/// A model has no price and the table's policy is [`UnknownModel::Refuse`].
///
/// ```
/// use tollgate_core::{PriceTable, TokenUsage};
/// let err = PriceTable::example().cost_of("my-finetune", TokenUsage::new(1, 1)).unwrap_err();
/// assert_eq!(err.model(), "my-finetune");
/// assert_eq!(err.to_string(), "no price for model `my-finetune`, and unknown models are refused");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownModelError {
    model: String,
}

impl UnknownModelError {
    /// The model that has no price.
    ///
    /// ```
    /// use tollgate_core::{PriceTable, TokenUsage};
    /// let err = PriceTable::default().cost_of("x", TokenUsage::ZERO).unwrap_err();
    /// assert_eq!(err.model(), "x");
    /// ```
    pub fn model(&self) -> &str {
        &self.model
    }
}

impl fmt::Display for UnknownModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no price for model `{}`, and unknown models are refused",
            self.model
        )
    }
}

impl std::error::Error for UnknownModelError {}

/// Which price [`PriceTable::lookup`] found.
///
/// ```
/// use tollgate_core::{PriceMatch, PriceTable};
/// let t = PriceTable::example();
/// match t.lookup("gpt-4o-mini-2024-07-18")? {
///     PriceMatch::Listed { name, .. } => assert_eq!(name, "gpt-4o-mini"),
///     PriceMatch::Default(_) => unreachable!(),
/// }
/// # Ok::<(), tollgate_core::UnknownModelError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PriceMatch<'a> {
    /// The table lists the model under `name`.
    Listed {
        /// The name in the table (the model without its date suffix, or the model itself).
        name: &'a str,
        /// Its price.
        price: &'a Price,
    },
    /// The model is not listed; the policy's default price applies (warn about it).
    Default(&'a Price),
}

impl<'a> PriceMatch<'a> {
    /// The price found.
    ///
    /// ```
    /// use tollgate_core::PriceTable;
    /// assert!(PriceTable::example().lookup("gpt-5").unwrap().price().output_per_mtok.as_u64() > 0);
    /// ```
    pub fn price(&self) -> &'a Price {
        match self {
            PriceMatch::Listed { price, .. } | PriceMatch::Default(price) => price,
        }
    }

    /// Whether the default price of [`UnknownModel::Default`] was used.
    ///
    /// ```
    /// use tollgate_core::{Price, PriceTable, UnknownModel};
    /// let t = PriceTable::new(UnknownModel::Default(Price::default()));
    /// assert!(t.lookup("anything").unwrap().is_default());
    /// ```
    pub fn is_default(&self) -> bool {
        matches!(self, PriceMatch::Default(_))
    }
}

/// Model name → [`Price`], plus the [`UnknownModel`] policy. A `BTreeMap`, so iteration (and
/// anything serialized from it) is in name order.
///
/// A model is found by its exact name, or else by its name without a date snapshot suffix
/// (`-YYYYMMDD` or `-YYYY-MM-DD`): `claude-sonnet-4-5-20250929` is priced as `claude-sonnet-4-5`,
/// `gpt-4o-2024-08-06` as `gpt-4o`. No other fuzzy matching: `claude-opus-4-5` is never priced as
/// `claude-opus-4`.
///
/// ```
/// use tollgate_core::{Micros, Price, PriceTable, TokenUsage, UnknownModel};
///
/// let table = PriceTable::new(UnknownModel::Refuse)
///     .with("claude-haiku-4-5", Price::from_dollars(1.0, 5.0, 1.25, 0.10)?);
/// let usage = TokenUsage::new(2_000, 500).with_cache_read(50_000);
/// // 2k × $1 + 500 × $5 + 50k × $0.10 per million = $0.0095.
/// assert_eq!(table.cost_of("claude-haiku-4-5-20251001", usage), Ok(Micros::new(9_500)));
/// assert!(table.cost_of("claude-haiku-5", usage).is_err());
/// # Ok::<(), tollgate_core::ConfigError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PriceTable {
    prices: BTreeMap<String, Price>,
    #[cfg_attr(feature = "serde", serde(default))]
    unknown_model: UnknownModel,
}

impl PriceTable {
    /// An empty table with the given policy for unlisted models.
    ///
    /// ```
    /// use tollgate_core::{PriceTable, UnknownModel};
    /// assert!(PriceTable::new(UnknownModel::Refuse).is_empty());
    /// ```
    pub fn new(unknown_model: UnknownModel) -> Self {
        PriceTable {
            prices: BTreeMap::new(),
            unknown_model,
        }
    }

    /// The same table with `model` priced at `price` (replacing any earlier price).
    ///
    /// ```
    /// use tollgate_core::{Price, PriceTable};
    /// let t = PriceTable::default().with("m", Price::from_micros(1, 2, 3, 4));
    /// assert_eq!(t.get("m"), Some(&Price::from_micros(1, 2, 3, 4)));
    /// ```
    #[must_use]
    pub fn with(mut self, model: impl Into<String>, price: Price) -> Self {
        self.insert(model, price);
        self
    }

    /// Prices `model` at `price`; returns the price it replaces.
    ///
    /// ```
    /// use tollgate_core::{Price, PriceTable};
    /// let mut t = PriceTable::example();
    /// let old = t.insert("gpt-5", Price::from_micros(1, 1, 1, 1));
    /// assert!(old.is_some());
    /// ```
    pub fn insert(&mut self, model: impl Into<String>, price: Price) -> Option<Price> {
        self.prices.insert(model.into(), price)
    }

    /// The same table with another policy for unlisted models.
    ///
    /// ```
    /// use tollgate_core::{Price, PriceTable, UnknownModel};
    /// let t = PriceTable::example().with_unknown_model(UnknownModel::Default(Price::default()));
    /// assert!(t.lookup("nope").is_ok());
    /// ```
    #[must_use]
    pub fn with_unknown_model(mut self, policy: UnknownModel) -> Self {
        self.unknown_model = policy;
        self
    }

    /// The policy for unlisted models.
    ///
    /// ```
    /// use tollgate_core::{PriceTable, UnknownModel};
    /// assert_eq!(PriceTable::example().unknown_model(), &UnknownModel::Refuse);
    /// ```
    pub fn unknown_model(&self) -> &UnknownModel {
        &self.unknown_model
    }

    /// The price listed under exactly `model` (no suffix stripping, no default).
    ///
    /// ```
    /// use tollgate_core::PriceTable;
    /// assert!(PriceTable::example().get("gpt-5").is_some());
    /// assert!(PriceTable::example().get("gpt-5-2025-08-07").is_none());
    /// ```
    pub fn get(&self, model: &str) -> Option<&Price> {
        self.prices.get(model)
    }

    /// Every listed model and its price, in name order.
    ///
    /// ```
    /// use tollgate_core::PriceTable;
    /// let table = PriceTable::example();
    /// let names: Vec<&str> = table.iter().map(|(n, _)| n).collect();
    /// assert!(names.windows(2).all(|w| w[0] < w[1]));
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Price)> + '_ {
        self.prices.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// How many models are listed.
    ///
    /// ```
    /// use tollgate_core::PriceTable;
    /// assert!(PriceTable::example().len() > 10);
    /// ```
    pub fn len(&self) -> usize {
        self.prices.len()
    }

    /// Whether no model is listed.
    ///
    /// ```
    /// use tollgate_core::PriceTable;
    /// assert!(PriceTable::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }

    /// The price of `model`: listed under its name, or under its name without a date suffix, or the
    /// policy's default.
    ///
    /// # Errors
    /// [`UnknownModelError`] when the model is not listed and the policy is
    /// [`UnknownModel::Refuse`].
    ///
    /// ```
    /// use tollgate_core::PriceTable;
    /// let t = PriceTable::example();
    /// assert!(!t.lookup("claude-sonnet-4-5-20250929")?.is_default());
    /// assert!(t.lookup("claude-sonnet-9").is_err());
    /// # Ok::<(), tollgate_core::UnknownModelError>(())
    /// ```
    pub fn lookup(&self, model: &str) -> Result<PriceMatch<'_>, UnknownModelError> {
        let listed = self.prices.get_key_value(model).or_else(|| {
            without_date_suffix(model).and_then(|base| self.prices.get_key_value(base))
        });
        match (listed, &self.unknown_model) {
            (Some((name, price)), _) => Ok(PriceMatch::Listed { name, price }),
            (None, UnknownModel::Default(price)) => Ok(PriceMatch::Default(price)),
            (None, UnknownModel::Refuse) => Err(UnknownModelError {
                model: model.to_owned(),
            }),
        }
    }

    /// What `usage` on `model` costs ([`Price::cost_of`] of [`lookup`](PriceTable::lookup)).
    ///
    /// # Errors
    /// As [`lookup`](PriceTable::lookup).
    ///
    /// ```
    /// use tollgate_core::{Micros, PriceTable, TokenUsage};
    /// let cost = PriceTable::example().cost_of("gpt-4o-mini", TokenUsage::new(1_000_000, 0))?;
    /// assert_eq!(cost, Micros::from_cents(15));
    /// # Ok::<(), tollgate_core::UnknownModelError>(())
    /// ```
    pub fn cost_of(&self, model: &str, usage: TokenUsage) -> Result<Micros, UnknownModelError> {
        Ok(self.lookup(model)?.price().cost_of(usage))
    }

    /// [`Price::upper_bound`] of `model`: what to reserve before the call.
    ///
    /// # Errors
    /// As [`lookup`](PriceTable::lookup).
    ///
    /// ```
    /// use tollgate_core::{Micros, PriceTable};
    /// // claude-haiku-4-5: 10k prompt tokens at the $1.25 cache-write price, 1k out at $5.
    /// let est = PriceTable::example().upper_bound("claude-haiku-4-5", 10_000, 1_000)?;
    /// assert_eq!(est, Micros::new(12_500 + 5_000));
    /// # Ok::<(), tollgate_core::UnknownModelError>(())
    /// ```
    pub fn upper_bound(
        &self,
        model: &str,
        prompt_tokens: u64,
        max_output_tokens: u64,
    ) -> Result<Micros, UnknownModelError> {
        Ok(self
            .lookup(model)?
            .price()
            .upper_bound(prompt_tokens, max_output_tokens))
    }

    /// **Example data, dated 2026-11**: Anthropic and OpenAI models at illustrative list prices
    /// (standard tier, prompts up to 200k tokens, Anthropic's 5-minute cache writes at 1.25× input
    /// and cache reads at 0.1×; OpenAI's cached input, and cache writes at the input price).
    /// Check every figure against the providers' pricing pages before relying on it; long-context,
    /// batch and priority tiers are not modelled. The policy is [`UnknownModel::Refuse`].
    ///
    /// | model | input | output | cache write | cache read ($ / Mtok) |
    /// |---|---|---|---|---|
    /// | claude-opus-4-5 | 5 | 25 | 6.25 | 0.50 |
    /// | claude-opus-4-1 | 15 | 75 | 18.75 | 1.50 |
    /// | claude-sonnet-4-5, claude-sonnet-4 | 3 | 15 | 3.75 | 0.30 |
    /// | claude-haiku-4-5 | 1 | 5 | 1.25 | 0.10 |
    /// | claude-3-5-haiku | 0.80 | 4 | 1 | 0.08 |
    /// | gpt-5 | 1.25 | 10 | 1.25 | 0.125 |
    /// | gpt-5-mini | 0.25 | 2 | 0.25 | 0.025 |
    /// | gpt-5-nano | 0.05 | 0.40 | 0.05 | 0.005 |
    /// | gpt-4.1 | 2 | 8 | 2 | 0.50 |
    /// | gpt-4.1-mini | 0.40 | 1.60 | 0.40 | 0.10 |
    /// | gpt-4o | 2.50 | 10 | 2.50 | 1.25 |
    /// | gpt-4o-mini | 0.15 | 0.60 | 0.15 | 0.075 |
    /// | o3 | 2 | 8 | 2 | 0.50 |
    /// | o4-mini | 1.10 | 4.40 | 1.10 | 0.275 |
    ///
    /// ```
    /// use tollgate_core::{Micros, PriceTable, TokenUsage};
    /// let t = PriceTable::example();
    /// let usage = TokenUsage::new(1_000_000, 1_000_000);
    /// assert_eq!(t.cost_of("claude-sonnet-4-5", usage)?, Micros::from_dollars(18));
    /// # Ok::<(), tollgate_core::UnknownModelError>(())
    /// ```
    pub fn example() -> PriceTable {
        const fn p(input: u64, output: u64, cache_write: u64, cache_read: u64) -> Price {
            Price::from_micros(input, output, cache_write, cache_read)
        }
        const EXAMPLE: [(&str, Price); 15] = [
            (
                "claude-opus-4-5",
                p(5_000_000, 25_000_000, 6_250_000, 500_000),
            ),
            (
                "claude-opus-4-1",
                p(15_000_000, 75_000_000, 18_750_000, 1_500_000),
            ),
            (
                "claude-sonnet-4-5",
                p(3_000_000, 15_000_000, 3_750_000, 300_000),
            ),
            (
                "claude-sonnet-4",
                p(3_000_000, 15_000_000, 3_750_000, 300_000),
            ),
            (
                "claude-haiku-4-5",
                p(1_000_000, 5_000_000, 1_250_000, 100_000),
            ),
            ("claude-3-5-haiku", p(800_000, 4_000_000, 1_000_000, 80_000)),
            ("gpt-5", p(1_250_000, 10_000_000, 1_250_000, 125_000)),
            ("gpt-5-mini", p(250_000, 2_000_000, 250_000, 25_000)),
            ("gpt-5-nano", p(50_000, 400_000, 50_000, 5_000)),
            ("gpt-4.1", p(2_000_000, 8_000_000, 2_000_000, 500_000)),
            ("gpt-4.1-mini", p(400_000, 1_600_000, 400_000, 100_000)),
            ("gpt-4o", p(2_500_000, 10_000_000, 2_500_000, 1_250_000)),
            ("gpt-4o-mini", p(150_000, 600_000, 150_000, 75_000)),
            ("o3", p(2_000_000, 8_000_000, 2_000_000, 500_000)),
            ("o4-mini", p(1_100_000, 4_400_000, 1_100_000, 275_000)),
        ];
        EXAMPLE
            .iter()
            .fold(PriceTable::new(UnknownModel::Refuse), |t, (name, price)| {
                t.with(*name, *price)
            })
    }
}

/// `model` without a trailing `-YYYYMMDD` or `-YYYY-MM-DD`, if it has one.
fn without_date_suffix(model: &str) -> Option<&str> {
    let is_date = |s: &[u8]| match s.len() {
        8 => s.iter().all(u8::is_ascii_digit),
        10 => s.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        }),
        _ => false,
    };
    let bytes = model.as_bytes();
    [9, 11].into_iter().find_map(|n| {
        let cut = bytes.len().checked_sub(n).filter(|&c| c > 0)?;
        // The suffix is ASCII, so `cut` is a character boundary.
        (bytes[cut] == b'-' && is_date(&bytes[cut + 1..])).then(|| &model[..cut])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_suffixes() {
        assert_eq!(
            without_date_suffix("claude-sonnet-4-5-20250929"),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(without_date_suffix("gpt-4o-2024-08-06"), Some("gpt-4o"));
        assert_eq!(without_date_suffix("claude-opus-4-5"), None);
        assert_eq!(without_date_suffix("-20250929"), None);
        assert_eq!(without_date_suffix("x-2024-0806"), None);
        assert_eq!(without_date_suffix("é-2024-08-0é"), None);
        assert_eq!(without_date_suffix(""), None);
    }
}
