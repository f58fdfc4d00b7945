//! [`Cost`]: what one call takes from a limit, and [`Dimension`]: which part of it a limit counts.

use std::fmt;

/// What one call costs: requests, input tokens and output tokens.
///
/// Before a call the layer charges an *estimate*; after it, the real usage settles the difference.
///
/// ```
/// use tollgate_core::{Cost, Dimension};
///
/// let c = Cost::request().with_input_tokens(1_200).with_output_tokens(800);
/// assert_eq!(c.amount(Dimension::TotalTokens), 2_000);
/// assert_eq!(c.amount(Dimension::Requests), 1);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Cost {
    /// Requests (one per call).
    pub requests: u64,
    /// Input (prompt) tokens.
    pub input_tokens: u64,
    /// Output (completion) tokens.
    pub output_tokens: u64,
}

impl Cost {
    /// No cost at all.
    pub const ZERO: Cost = Cost {
        requests: 0,
        input_tokens: 0,
        output_tokens: 0,
    };

    /// One request and no tokens.
    pub const fn request() -> Self {
        Cost {
            requests: 1,
            input_tokens: 0,
            output_tokens: 0,
        }
    }

    /// The same cost with `n` input tokens.
    #[must_use]
    pub const fn with_input_tokens(mut self, n: u64) -> Self {
        self.input_tokens = n;
        self
    }

    /// The same cost with `n` output tokens.
    #[must_use]
    pub const fn with_output_tokens(mut self, n: u64) -> Self {
        self.output_tokens = n;
        self
    }

    /// What this cost counts in one dimension.
    pub const fn amount(&self, dimension: Dimension) -> u64 {
        match dimension {
            Dimension::Requests => self.requests,
            Dimension::InputTokens => self.input_tokens,
            Dimension::OutputTokens => self.output_tokens,
            Dimension::TotalTokens => self.input_tokens.saturating_add(self.output_tokens),
        }
    }
}

/// The quantity a rate limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Dimension {
    /// Requests.
    Requests,
    /// Input tokens.
    InputTokens,
    /// Output tokens.
    OutputTokens,
    /// Input plus output tokens.
    TotalTokens,
}

impl Dimension {
    /// Every dimension, in a fixed order.
    pub const ALL: [Dimension; 4] = [
        Dimension::Requests,
        Dimension::InputTokens,
        Dimension::OutputTokens,
        Dimension::TotalTokens,
    ];

    /// A short lowercase name (`requests`, `input_tokens`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Dimension::Requests => "requests",
            Dimension::InputTokens => "input_tokens",
            Dimension::OutputTokens => "output_tokens",
            Dimension::TotalTokens => "total_tokens",
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
