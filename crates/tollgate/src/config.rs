//! The layer's configuration from a TOML file ([`ThrottleConfig`]), the same settings as
//! [`ThrottleBuilder`] in code.

use crate::{
    ConfigError, Dimension, Limit, OnFailure, Priority, ScopeKey, ScopeLimits, ThrottleBuilder,
    UnknownScopes,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tollgate_core::Rule;

/// A layer configuration as read from TOML. Hooks (key extractor, estimator, ...) are code and are
/// set on the builder afterwards.
///
/// ```
/// use tollgate::ThrottleConfig;
///
/// let config = ThrottleConfig::from_toml(r#"
///     headroom = 0.9            # admit 90 % of each stated limit
///     max_wait = "30s"
///     max_provider_delay = "1h"  # cut any retry-after or reset to at most this
///     on_failure = "refund_output"
///     idle_eviction = "10m"     # forget an agent's bucket 10 minutes after its last call
///     always = ["global"]
///
///     [scopes.global]           # the seed's APP_LIMITS
///     requests_per_minute = 800
///     input_tokens_per_minute = { limit = 80000, burst = 20000 }
///     output_tokens_per_minute = 16000
///     tokens_per_day = 2500000
///     concurrency = 32
///
///     [scopes."team:marketing"]
///     requests_per_minute = 100
///
///     [scopes."team:engineering"]
///     requests_per_minute = 300
///
///     [scopes."workflow:nightly-batch"]
///     requests_per_minute = 50
///
///     [scopes."agent:*"]        # every agent its own bucket
///     requests_per_minute = 20
///
///     [[tiers]]
///     priority = 0
///     reserved_share = 0.2
/// "#)?;
/// let layer = config.builder()?.build()?;
/// # let _ = layer;
/// # Ok::<(), tollgate::ConfigError>(())
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Default headroom for every limit (`1.0` when absent).
    #[serde(default)]
    pub headroom: Option<f64>,
    /// Longest wait for admission, e.g. `"30s"`, `"1500ms"`. Longer than
    /// [`MAX_DURATION`](crate::MAX_DURATION) (100 years) is taken as that.
    #[serde(default, with = "humantime_serde")]
    pub max_wait: Option<Duration>,
    /// Longest pause a provider's answer may impose, e.g. `"1h"` (24 h when absent; see
    /// [`ThrottleBuilder::max_provider_delay`]). Longer than
    /// [`MAX_DURATION`](crate::MAX_DURATION) is taken as that; zero is refused at build.
    #[serde(default, with = "humantime_serde")]
    pub max_provider_delay: Option<Duration>,
    /// Refuse at once when the predicted wait exceeds `max_wait`.
    #[serde(default)]
    pub refuse_over_max_wait: bool,
    /// `keep`, `refund_output` (default), `refund_tokens` or `refund_all`.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// `unlimited` (default) or `reject`.
    #[serde(default)]
    pub unknown_scopes: UnknownScopes,
    /// How long a key of a `kind:*` or `*` pattern stays when nothing uses it, e.g. `"10m"` (the
    /// default); see [`ThrottleBuilder::idle_eviction`].
    #[serde(default, with = "humantime_serde")]
    pub idle_eviction: Option<Duration>,
    /// Scope keys charged on every call.
    #[serde(default)]
    pub always: Vec<String>,
    /// Limits per scope key or pattern (`kind:*`, `*`).
    #[serde(default)]
    pub scopes: BTreeMap<String, ScopeConfig>,
    /// Priority tiers with a reserved share.
    #[serde(default)]
    pub tiers: Vec<TierConfig>,
    /// What a call does at a spend cap or a manual pause: `"refuse"` (the default) or `"hold"`.
    #[serde(default)]
    pub on_cap: crate::spend::OnCap,
    /// The prices of the models, needed by budgets.
    #[serde(default)]
    pub prices: Option<PricesConfig>,
    /// Spend caps per scope key (exact, `kind:*` or `*`).
    #[serde(default)]
    pub budgets: BTreeMap<String, BudgetConfig>,
    /// A JSON-lines file for the call log: appended to, and replayed at start-up so the spend of
    /// the current windows survives a restart.
    #[serde(default)]
    pub call_log: Option<std::path::PathBuf>,
}

/// The `[prices]` table: model prices in dollars per million tokens.
///
/// ```toml
/// [prices]
/// example = true                 # start from the dated example table of Anthropic and OpenAI models
/// unknown_model = "refuse"       # or a price: { input = 3.0, output = 15.0 }
/// [prices.models."my-finetune"]
/// input = 3.0
/// output = 15.0
/// cache_write = 3.75             # optional, default: the input price
/// cache_read = 0.30              # optional, default: the input price
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricesConfig {
    /// Start from [`PriceTable::example`](crate::PriceTable::example).
    #[serde(default)]
    pub example: bool,
    /// `"refuse"` (the default), or the price charged for models that are not listed.
    #[serde(default)]
    pub unknown_model: Option<UnknownModelConfig>,
    /// Prices per model name.
    #[serde(default)]
    pub models: BTreeMap<String, PriceConfig>,
}

/// What an unlisted model costs: `"refuse"` or a price.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(untagged)]
pub enum UnknownModelConfig {
    /// `"refuse"`.
    Refuse(RefuseWord),
    /// A default price.
    Default(PriceConfig),
}

/// The word `refuse`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefuseWord {
    /// Refuse calls to unlisted models.
    Refuse,
}

/// A model's price in dollars per million tokens.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    /// Input tokens.
    pub input: f64,
    /// Output tokens.
    pub output: f64,
    /// Tokens written to the prompt cache (default: the input price).
    pub cache_write: Option<f64>,
    /// Tokens read from the prompt cache (default: the input price).
    pub cache_read: Option<f64>,
}

impl PriceConfig {
    fn price(&self) -> Result<crate::Price, ConfigError> {
        crate::Price::from_dollars(
            self.input,
            self.output,
            self.cache_write.unwrap_or(self.input),
            self.cache_read.unwrap_or(self.input),
        )
    }
}

/// A `[budgets."key"]` table.
///
/// ```toml
/// [budgets."global"]
/// cap_usd = 100.0
/// window = "day"            # "hour", "day" (the default) or "month"
/// utc_offset = "-08:00"     # where the day starts; default "+00:00"
/// alerts_usd = [20.0, 50.0, 100.0]
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// The cap per window, in dollars.
    pub cap_usd: f64,
    /// The window.
    #[serde(default = "day")]
    pub window: crate::Window,
    /// The UTC offset of the window's boundaries, `±HH:MM`.
    #[serde(default)]
    pub utc_offset: Option<String>,
    /// Alert thresholds in dollars, ascending.
    #[serde(default)]
    pub alerts_usd: Vec<f64>,
}

fn day() -> crate::Window {
    crate::Window::Day
}

fn dollars(what: &str, d: f64) -> Result<crate::Micros, ConfigError> {
    crate::Micros::from_dollars_f64(d).ok_or_else(|| {
        ConfigError::new(
            Rule::Invalid,
            format!("{what}: {d} is not an amount of dollars"),
        )
    })
}

impl BudgetConfig {
    /// The validated budget.
    ///
    /// # Errors
    /// A cap or threshold that is not an amount, an offset that is not `±HH:MM` in range, and
    /// every rule of [`Budget`](crate::Budget).
    pub fn budget(&self) -> Result<crate::Budget, ConfigError> {
        let mut b = crate::Budget::builder(dollars("cap_usd", self.cap_usd)?, self.window);
        if let Some(offset) = &self.utc_offset {
            b = b.clock(parse_offset(offset)?);
        }
        let thresholds = self
            .alerts_usd
            .iter()
            .map(|&d| dollars("alerts_usd", d))
            .collect::<Result<Vec<_>, _>>()?;
        b.thresholds(thresholds).build()
    }
}

/// `±HH:MM` (or `Z`) as a [`WindowClock`](crate::WindowClock).
fn parse_offset(text: &str) -> Result<crate::WindowClock, ConfigError> {
    let bad = || {
        ConfigError::new(
            Rule::UtcOffsetOutOfRange,
            format!("utc_offset `{text}` is not of the form +HH:MM or -HH:MM"),
        )
    };
    if text == "Z" {
        return Ok(crate::WindowClock::UTC);
    }
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1i8, &text[1..]),
        Some(b'-') => (-1i8, &text[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u8 = h.parse().map_err(|_| bad())?;
    let m: u8 = m.parse().map_err(|_| bad())?;
    if m >= 60 {
        return Err(bad());
    }
    crate::WindowClock::new(i32::from(sign) * (i32::from(h) * 3_600 + i32::from(m) * 60))
}

impl PricesConfig {
    /// The price table.
    ///
    /// # Errors
    /// A price that is not a finite number of dollars in `[0, 1e6]`.
    pub fn table(&self) -> Result<crate::PriceTable, ConfigError> {
        let mut t = if self.example {
            crate::PriceTable::example()
        } else {
            crate::PriceTable::new(crate::UnknownModel::Refuse)
        };
        for (model, p) in &self.models {
            let price = p.price().map_err(|e| e.in_scope(model))?;
            t.insert(model.clone(), price);
        }
        match self.unknown_model {
            None | Some(UnknownModelConfig::Refuse(_)) => {
                Ok(t.with_unknown_model(crate::UnknownModel::Refuse))
            }
            Some(UnknownModelConfig::Default(p)) => {
                Ok(t.with_unknown_model(crate::UnknownModel::Default(p.price()?)))
            }
        }
    }
}

/// The limits of one scope in a [`ThrottleConfig`]. Each limit is a number, or a table
/// `{ limit = N, burst = B, headroom = H }`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeConfig {
    /// Requests per minute.
    pub requests_per_minute: Option<LimitValue>,
    /// Input tokens per minute.
    pub input_tokens_per_minute: Option<LimitValue>,
    /// Output tokens per minute.
    pub output_tokens_per_minute: Option<LimitValue>,
    /// Input plus output tokens per minute.
    pub tokens_per_minute: Option<LimitValue>,
    /// Requests per day.
    pub requests_per_day: Option<LimitValue>,
    /// Input plus output tokens per day.
    pub tokens_per_day: Option<LimitValue>,
    /// Calls in flight at once.
    pub concurrency: Option<u32>,
    /// Headroom for this scope's limits (overrides the file's default).
    pub headroom: Option<f64>,
}

/// One limit in a [`ScopeConfig`]: `800` or `{ limit = 800, burst = 100, headroom = 0.9 }`.
#[derive(Clone, Copy, Debug)]
pub enum LimitValue {
    /// The amount alone.
    Amount(u64),
    /// The amount with a burst and/or a headroom.
    Detailed(DetailedLimit),
}

// By hand rather than `untagged`, so a negative or fractional number gets a message that says so.
impl<'de> Deserialize<'de> for LimitValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LimitValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a whole number of at least 1, or a table `{ limit = N, burst = B, headroom = H }`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LimitValue, E> {
                Ok(LimitValue::Amount(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LimitValue, E> {
                u64::try_from(v)
                    .map(LimitValue::Amount)
                    .map_err(|_| E::custom(format!("a limit cannot be negative, got {v}")))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LimitValue, A::Error> {
                DetailedLimit::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(LimitValue::Detailed)
            }
        }
        d.deserialize_any(V)
    }
}

/// The table form of a [`LimitValue`].
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetailedLimit {
    /// The amount per period.
    pub limit: u64,
    /// The burst, in units.
    pub burst: Option<u64>,
    /// The headroom of this limit.
    pub headroom: Option<f64>,
}

/// A priority tier in a [`ThrottleConfig`].
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// The priority (higher is more important).
    pub priority: u8,
    /// The reserved share of admissions while several tiers wait, in `[0, 1)`.
    #[serde(default)]
    pub reserved_share: f64,
}

impl ThrottleConfig {
    /// Parses a configuration.
    ///
    /// # Errors
    /// [`Rule::Invalid`] with the parser's message (line and column) for TOML that does not
    /// parse, an unknown key, or a value of the wrong type (a negative count, say).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::new(Rule::Invalid, e.to_string()))
    }

    /// Reads and parses a configuration file.
    ///
    /// # Errors
    /// [`Rule::Invalid`] when the file cannot be read or does not parse.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                Rule::Invalid,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        Self::from_toml(&text)
            .map_err(|e| ConfigError::new(e.rule(), format!("{}: {}", path.display(), e.detail())))
    }

    /// A builder with these settings and the default hooks. Every rule is checked by its
    /// `build()`; this returns `Result` so that checks can move here without breaking callers.
    ///
    /// # Errors
    /// None today.
    pub fn builder(&self) -> Result<ThrottleBuilder, ConfigError> {
        let mut b = ThrottleBuilder::new()
            .refuse_over_max_wait(self.refuse_over_max_wait)
            .on_failure(self.on_failure)
            .unknown_scopes(self.unknown_scopes)
            .always(self.always.iter().cloned().map(ScopeKey::from));
        if let Some(h) = self.headroom {
            b = b.headroom(h);
        }
        if let Some(m) = self.max_wait {
            b = b.max_wait(m);
        }
        if let Some(d) = self.idle_eviction {
            b = b.idle_eviction(d);
        }
        if let Some(m) = self.max_provider_delay {
            b = b.max_provider_delay(m);
        }
        for (key, scope) in &self.scopes {
            b = b.scope(ScopeKey::from(key.clone()), scope.limits());
        }
        for t in &self.tiers {
            b = b.tier(Priority(t.priority), t.reserved_share);
        }
        b = b.on_cap(self.on_cap);
        if let Some(p) = &self.prices {
            b = b.prices(p.table()?);
        }
        for (key, budget) in &self.budgets {
            let budget = budget.budget().map_err(|e| e.in_scope(key))?;
            b = b.budget(ScopeKey::from(key.clone()), budget);
        }
        if let Some(path) = &self.call_log {
            let log = crate::spend::CallLog::append_to_file(path).map_err(|e| {
                ConfigError::new(Rule::Invalid, format!("call_log {}: {e}", path.display()))
            })?;
            b = b.call_log(log);
        }
        Ok(b)
    }
}

impl ScopeConfig {
    /// The scope's limits.
    pub fn limits(&self) -> ScopeLimits {
        let minute = Duration::from_secs(60);
        let day = Duration::from_secs(86_400);
        let fields = [
            (self.requests_per_minute, Dimension::Requests, minute),
            (self.input_tokens_per_minute, Dimension::InputTokens, minute),
            (
                self.output_tokens_per_minute,
                Dimension::OutputTokens,
                minute,
            ),
            (self.tokens_per_minute, Dimension::TotalTokens, minute),
            (self.requests_per_day, Dimension::Requests, day),
            (self.tokens_per_day, Dimension::TotalTokens, day),
        ];
        let mut limits = ScopeLimits::new();
        for (value, dimension, period) in fields {
            let Some(value) = value else { continue };
            let (amount, burst, headroom) = match value {
                LimitValue::Amount(n) => (n, None, None),
                LimitValue::Detailed(d) => (d.limit, d.burst, d.headroom),
            };
            let mut limit = Limit::new(dimension, amount, period);
            limit.burst = burst;
            limit.headroom = headroom.or(self.headroom);
            limits = limits.limit(limit);
        }
        limits.concurrency = self.concurrency;
        limits
    }
}
