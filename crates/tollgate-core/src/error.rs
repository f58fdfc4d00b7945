//! [`ConfigError`]: a configuration that breaks a rule, found when the limiter is built.

use std::fmt;

/// The rule a configuration breaks. Each has a stable snake_case [`name`](Rule::name) that appears
/// in the error text, so a log line or a CLI message says exactly what to fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// A limit's amount is zero.
    ZeroAmount,
    /// A limit's period is zero.
    ZeroPeriod,
    /// The headroom fraction is not a number in `(0, 1]`.
    HeadroomOutOfRange,
    /// The amount times the headroom leaves less than one unit per period.
    EffectiveLimitBelowOne,
    /// The burst is smaller than one call (zero, or below the largest call declared for the scope).
    BurstBelowOneCall,
    /// A concurrency cap of zero.
    ZeroConcurrency,
    /// Two limits of one scope count the same dimension over the same period.
    DuplicateLimit,
    /// A name references a scope that is not configured.
    UnknownScope,
    /// A scope key is empty, or a pattern is malformed.
    InvalidScopeKey,
    /// A priority tier's reserved share is not a number in `[0, 1)`.
    ShareOutOfRange,
    /// The reserved shares of all tiers add up to more than 1.
    SharesExceedOne,
    /// A duration (maximum wait, period) is zero where it must be positive.
    ZeroDuration,
    /// A value could not be read (a configuration file that does not parse).
    Invalid,
    /// A backoff's cap is below its base delay.
    CapBelowBase,
    /// A backoff allows no retry at all.
    ZeroRetries,
    /// A retry budget's cost of a retry is zero or above the budget's capacity.
    RetryCostOutOfRange,
    /// An adaptive rate's floor is not a positive finite number, or its ceiling is not finite or
    /// is below the floor.
    RateOutOfRange,
    /// A price per million tokens is not a finite number of dollars in `[0, 1e6]`.
    PriceOutOfRange,
    /// A UTC offset is outside −12:00 ..= +14:00 (or has 60 minutes or more).
    UtcOffsetOutOfRange,
    /// A budget's cap is zero.
    ZeroBudgetCap,
    /// A budget's alert threshold is zero or above its cap.
    ThresholdOutOfRange,
    /// A budget's alert thresholds are not strictly ascending.
    ThresholdsNotAscending,
    /// A budget has more than 64 alert thresholds.
    TooManyThresholds,
    /// Budgets are configured but no price table turns tokens into money.
    BudgetWithoutPrices,
}

impl Rule {
    /// The rule's stable name.
    pub const fn name(self) -> &'static str {
        match self {
            Rule::ZeroAmount => "zero_amount",
            Rule::ZeroPeriod => "zero_period",
            Rule::HeadroomOutOfRange => "headroom_out_of_range",
            Rule::EffectiveLimitBelowOne => "effective_limit_below_one",
            Rule::BurstBelowOneCall => "burst_below_one_call",
            Rule::ZeroConcurrency => "zero_concurrency",
            Rule::DuplicateLimit => "duplicate_limit",
            Rule::UnknownScope => "unknown_scope",
            Rule::InvalidScopeKey => "invalid_scope_key",
            Rule::ShareOutOfRange => "share_out_of_range",
            Rule::SharesExceedOne => "shares_exceed_one",
            Rule::ZeroDuration => "zero_duration",
            Rule::Invalid => "invalid",
            Rule::CapBelowBase => "cap_below_base",
            Rule::ZeroRetries => "zero_retries",
            Rule::RetryCostOutOfRange => "retry_cost_out_of_range",
            Rule::RateOutOfRange => "rate_out_of_range",
            Rule::PriceOutOfRange => "price_out_of_range",
            Rule::UtcOffsetOutOfRange => "utc_offset_out_of_range",
            Rule::ZeroBudgetCap => "zero_budget_cap",
            Rule::BudgetWithoutPrices => "budget_without_prices",
            Rule::ThresholdOutOfRange => "threshold_out_of_range",
            Rule::ThresholdsNotAscending => "thresholds_not_ascending",
            Rule::TooManyThresholds => "too_many_thresholds",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A configuration that breaks a [`Rule`]. Returned by every `build()` and by file loading; nothing
/// in tollgate panics on a bad configuration.
///
/// ```
/// use tollgate_core::{Dimension, Limit, Rule};
/// use std::time::Duration;
///
/// let err = Limit::new(Dimension::Requests, 0, Duration::from_secs(60)).compile().unwrap_err();
/// assert_eq!(err.rule(), Rule::ZeroAmount);
/// assert!(err.to_string().contains("zero_amount"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    rule: Rule,
    scope: Option<String>,
    detail: String,
}

impl ConfigError {
    /// An error for `rule` with a human-readable detail.
    pub fn new(rule: Rule, detail: impl Into<String>) -> Self {
        ConfigError {
            rule,
            scope: None,
            detail: detail.into(),
        }
    }

    /// The same error, naming the scope it was found in.
    #[must_use]
    pub fn in_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The rule that was broken.
    pub fn rule(&self) -> Rule {
        self.rule
    }

    /// The scope the error was found in, if any.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The detail text.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration (rule `{}`)", self.rule)?;
        if let Some(scope) = &self.scope {
            write!(f, " in scope `{scope}`")?;
        }
        write!(f, ": {}", self.detail)
    }
}

impl std::error::Error for ConfigError {}
