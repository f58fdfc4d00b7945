//! [`Scenario`]: who sends what, when, to which provider — from a TOML file, a built-in name, or
//! CLI flags.

mod locate;
mod validate;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// How an agent's requests arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrival {
    /// One request at a time: send, wait for the answer, think, send again.
    Closed,
    /// Requests at a constant rate, whether earlier ones finished or not.
    Constant,
    /// Requests at exponentially distributed intervals (a Poisson process).
    Poisson,
}

impl fmt::Display for Arrival {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arrival::Closed => "closed",
            Arrival::Constant => "constant",
            Arrival::Poisson => "poisson",
        })
    }
}

/// A group of identical agents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentGroup {
    /// How many agents.
    pub count: u32,
    /// Their priority (higher is more important).
    #[serde(default)]
    pub priority: u8,
    /// How their requests arrive.
    pub arrival: Arrival,
    /// Requests per minute per agent (`constant`, `poisson`).
    #[serde(default)]
    pub rate_per_min: f64,
    /// Time between an answer and the next request (`closed`).
    #[serde(default, with = "humantime_serde")]
    pub think_time: Duration,
    /// Input tokens per request.
    pub input_tokens: u64,
    /// `max_tokens` of each request.
    pub max_tokens: u64,
    /// What the model really writes, as a fraction of `max_tokens`.
    pub output_fraction: f64,
}

/// A burst of extra demand: arrival rates are multiplied by `multiplier` from `at` for `length`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spike {
    /// When it starts.
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// The factor on arrival rates (and the divisor of think times).
    pub multiplier: f64,
    /// How long it lasts.
    #[serde(with = "humantime_serde")]
    pub length: Duration,
}

/// The provider's limit algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderAlgorithm {
    /// A continuously refilled token bucket (capacity = the per-minute limit).
    TokenBucket,
    /// A fixed 60 s window.
    FixedWindow,
}

/// The mock provider of a scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// Requests per minute the client is told.
    pub rpm: u64,
    /// Input tokens per minute (0: none).
    #[serde(default)]
    pub itpm: u64,
    /// Output tokens per minute (0: none).
    #[serde(default)]
    pub otpm: u64,
    /// The limit algorithm.
    #[serde(default = "default_algorithm")]
    pub algorithm: ProviderAlgorithm,
    /// The share of every limit other clients of the key use (the provider's real capacity for
    /// this client is `1 − hidden_share` of what it was told).
    #[serde(default)]
    pub hidden_share: f64,
    /// Latency before the first token.
    #[serde(default = "default_latency", with = "humantime_serde")]
    pub latency: Duration,
    /// Latency per output token.
    #[serde(default = "default_per_token", with = "humantime_serde")]
    pub latency_per_token: Duration,
    /// Noise on the latency, as a fraction (uniform ±).
    #[serde(default = "default_jitter")]
    pub latency_jitter: f64,
    /// Answer 529 (overloaded) when more than this many calls are in flight (0: never).
    #[serde(default)]
    pub overload_in_flight: u64,
    /// The probability of a 529 above that threshold.
    #[serde(default)]
    pub overload_probability: f64,
    /// Whether answers carry rate-limit headers (`limit`, `remaining`, `reset`; default true).
    /// Without them a client learns the limit from 429s alone, which still carry
    /// `retry-after`.
    #[serde(default = "default_true")]
    pub rate_limit_headers: bool,
}

fn default_true() -> bool {
    true
}

fn default_algorithm() -> ProviderAlgorithm {
    ProviderAlgorithm::TokenBucket
}
fn default_latency() -> Duration {
    Duration::from_millis(800)
}
fn default_per_token() -> Duration {
    Duration::from_millis(2)
}
fn default_jitter() -> f64 {
    0.1
}

/// Prices in US dollars per million tokens.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    /// Per million input tokens.
    pub input_per_mtok: f64,
    /// Per million output tokens.
    pub output_per_mtok: f64,
}

impl Default for Prices {
    fn default() -> Self {
        // Example data: a mid-size model's list price (2026).
        Prices {
            input_per_mtok: 3.0,
            output_per_mtok: 15.0,
        }
    }
}

/// Everything one simulation run needs but the strategy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The scenario's name.
    pub name: String,
    /// What it shows.
    #[serde(default)]
    pub description: String,
    /// The root seed: every random stream of a run is derived from it by name ([`crate::rng`]).
    #[serde(default)]
    pub seed: u64,
    /// How long requests arrive.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// How long after `duration` the backlog may drain before the run stops.
    #[serde(default = "default_drain", with = "humantime_serde")]
    pub drain: Duration,
    /// The provider.
    pub provider: Provider,
    /// The agents.
    pub agents: Vec<AgentGroup>,
    /// Bursts of extra demand.
    #[serde(default)]
    pub spikes: Vec<Spike>,
    /// The headroom fraction of the throttling strategies that take one.
    #[serde(default = "default_headroom")]
    pub headroom: f64,
    /// Prices.
    #[serde(default)]
    pub prices: Prices,
    /// Spend caps, applied by the tollgate strategies (the others have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetSpec>,
    /// Recorded traffic to replay instead of the agents' arrival processes (`sim --replay`):
    /// its calls arrive when they did, each agent group being one agent of the log.
    #[serde(skip)]
    pub traffic: Option<std::sync::Arc<crate::traffic::Traffic>>,
    /// Where the tollgate strategies' layer writes its call log (`sim --call-log`), if anywhere.
    #[serde(skip)]
    pub call_log: Option<std::path::PathBuf>,
}

/// The `[budget]` of a scenario: spend caps per agent and for the whole fleet, per window, at
/// the scenario's prices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    /// Each agent's cap per window, in dollars.
    #[serde(default)]
    pub agent_usd: Option<f64>,
    /// The fleet's cap per window, in dollars.
    #[serde(default)]
    pub global_usd: Option<f64>,
    /// The window of the caps.
    #[serde(default = "default_window")]
    pub window: BudgetWindow,
    /// What a call does at a cap.
    #[serde(default)]
    pub on_cap: CapMode,
}

/// The window of a scenario's budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetWindow {
    /// A clock hour.
    Hour,
    /// A day (UTC).
    Day,
}

fn default_window() -> BudgetWindow {
    BudgetWindow::Hour
}

/// What a call does at a cap: the layer's `OnCap`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapMode {
    /// Refused at once.
    #[default]
    Refuse,
    /// Held until the window resets.
    Hold,
}

fn default_drain() -> Duration {
    Duration::from_secs(600)
}
fn default_headroom() -> f64 {
    1.0
}

/// A scenario that cannot run, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError(pub String);

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScenarioError {}

/// The built-in scenarios: name and TOML.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("reference", include_str!("../scenarios/reference.toml")),
    (
        "launch-spike",
        include_str!("../scenarios/launch-spike.toml"),
    ),
    ("shared-key", include_str!("../scenarios/shared-key.toml")),
    (
        "max-tokens-skew",
        include_str!("../scenarios/max-tokens-skew.toml"),
    ),
    ("priority", include_str!("../scenarios/priority.toml")),
    ("runaway", include_str!("../scenarios/runaway.toml")),
    ("no-headers", include_str!("../scenarios/no-headers.toml")),
];

impl Scenario {
    /// A built-in scenario by name.
    ///
    /// # Errors
    /// An unknown name, listing the known ones.
    pub fn built_in(name: &str) -> Result<Self, ScenarioError> {
        let text = BUILT_IN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                let names: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
                ScenarioError(format!(
                    "unknown scenario `{name}`; built-in scenarios: {}",
                    names.join(", ")
                ))
            })?;
        Self::from_toml(text)
    }

    /// A scenario from TOML.
    ///
    /// # Errors
    /// TOML that does not parse, or a scenario that breaks a rule of [`validate`](Self::validate).
    /// The message names the line of the file and the field (`line 5, field provider.rpm: …`),
    /// when the file gives the field.
    ///
    /// ```
    /// use tollgate_sim::scenario::Scenario;
    /// let text = "name = \"x\"\nduration = \"1m\"\n\n[provider]\nrpm = \"many\"\n";
    /// let err = Scenario::from_toml(text).unwrap_err().to_string();
    /// assert!(err.starts_with("scenario: line 5, field provider.rpm: "), "{err}");
    /// ```
    pub fn from_toml(text: &str) -> Result<Self, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| {
            let place = match e.span().map(|span| locate::field_at(text, span.start)) {
                Some((line, Some(field))) => format!("line {line}, field {field}: "),
                Some((line, None)) => format!("line {line}: "),
                None => String::new(),
            };
            ScenarioError(format!("scenario: {place}{}", e.message().trim_end()))
        })?;
        s.validate().map_err(|ScenarioError(m)| {
            // The message is `scenario `name`: <field> must …`.
            let rest = m.split_once("`: ").map_or(m.as_str(), |(_, r)| r);
            let line = locate::leading_path(rest)
                .and_then(|path| Some((locate::line_of(text, path)?, path)));
            ScenarioError(match line {
                Some((line, path)) => format!("scenario: line {line}, field {path}: {rest}"),
                None => m.clone(),
            })
        })?;
        Ok(s)
    }

    /// The default scenario for `--agents N --rpm R`: demand 1.5 times the limit from constant
    /// arrivals, a spike of 2× for a minute at 4 minutes, ten simulated minutes.
    pub fn from_flags(agents: u32, rpm: u64) -> Self {
        let mut s = Scenario::built_in("reference").unwrap_or_else(|_| unreachable_default());
        s.name = format!("agents-{agents}-rpm-{rpm}");
        s.description =
            format!("{agents} agents, provider {rpm} RPM, demand 1.5× the limit with a 2× spike");
        s.provider.rpm = rpm;
        s.provider.itpm = 0;
        s.provider.otpm = 0;
        if let Some(g) = s.agents.first_mut() {
            g.count = agents;
            g.rate_per_min = 1.5 * rpm as f64 / agents.max(1) as f64;
        }
        s
    }

    /// The arrival-rate multiplier at `t`.
    pub fn multiplier(&self, t: Duration) -> f64 {
        self.spikes
            .iter()
            .filter(|s| t >= s.at && t < s.at.saturating_add(s.length))
            .map(|s| s.multiplier)
            .product()
    }

    /// The number of agents.
    pub fn agent_count(&self) -> u32 {
        self.agents.iter().map(|g| g.count).sum()
    }
}

fn unreachable_default() -> Scenario {
    // The embedded reference scenario is tested to parse; this is never reached.
    Scenario {
        name: "reference".into(),
        description: String::new(),
        seed: 0,
        duration: Duration::from_secs(600),
        drain: default_drain(),
        provider: Provider {
            rpm: 50,
            itpm: 0,
            otpm: 0,
            algorithm: default_algorithm(),
            hidden_share: 0.0,
            latency: default_latency(),
            latency_per_token: default_per_token(),
            latency_jitter: default_jitter(),
            overload_in_flight: 0,
            overload_probability: 0.0,
            rate_limit_headers: true,
        },
        agents: vec![AgentGroup {
            count: 5,
            priority: 0,
            arrival: Arrival::Constant,
            rate_per_min: 15.0,
            think_time: Duration::ZERO,
            input_tokens: 1_000,
            max_tokens: 1_024,
            output_fraction: 0.5,
        }],
        spikes: Vec::new(),
        headroom: 1.0,
        prices: Prices::default(),
        budget: None,
        traffic: None,
        call_log: None,
    }
}
