//! Configuration: the builder, its validation and the error it returns.

use std::fmt;
use std::time::Duration;

use crate::limits::Dimension;
use crate::service::MockProvider;

/// 2026-01-01T00:00:00Z, the default wall-clock anchor of virtual time zero.
const DEFAULT_EPOCH_UNIX_SECS: u64 = 1_767_225_600;

/// The limit of an [unlimited](MockProviderBuilder::unlimited) dimension: more than any run can
/// charge, with room left for the arithmetic.
const UNLIMITED: u64 = u64::MAX / 4;

/// How the mock refills its limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Algorithm {
    /// A continuously refilled token bucket per dimension, as Anthropic documents: the capacity is
    /// the per-minute limit and it refills at limit / 60 per second. The default.
    #[default]
    TokenBucket,
    /// A counter per dimension that resets at every 60 s boundary since the provider was built.
    FixedWindow,
}

/// 529 "overloaded" answers that depend on load, not on the key's limits.
///
/// A call that arrives while `threshold_in_flight` or more calls are already in flight is answered
/// 529 with `probability` (drawn from the seeded RNG). A threshold of 0 with a small probability
/// models random overload independent of load.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OverloadConfig {
    /// Calls already in flight at or above which new calls may get 529.
    pub threshold_in_flight: u64,
    /// Chance in `[0, 1]` that such a call gets 529.
    pub probability: f64,
}

/// Configured limits, per minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Requests per minute.
    pub rpm: u64,
    /// Input tokens per minute.
    pub input_tpm: u64,
    /// Output tokens per minute (reserved at `max_tokens`, corrected when the call ends).
    pub output_tpm: u64,
}

impl Limits {
    pub(crate) fn get(&self, dimension: Dimension) -> u64 {
        match dimension {
            Dimension::Requests => self.rpm,
            Dimension::InputTokens => self.input_tpm,
            Dimension::OutputTokens => self.output_tpm,
        }
    }

    fn get_mut(&mut self, dimension: Dimension) -> &mut u64 {
        match dimension {
            Dimension::Requests => &mut self.rpm,
            Dimension::InputTokens => &mut self.input_tpm,
            Dimension::OutputTokens => &mut self.output_tpm,
        }
    }
}

/// Everything [`MockProviderBuilder::build`] validated.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) limits: Limits,
    pub(crate) effective: Limits,
    pub(crate) algorithm: Algorithm,
    pub(crate) overload: Option<OverloadConfig>,
    pub(crate) latency_base: Duration,
    pub(crate) latency_per_output_token: Duration,
    pub(crate) jitter_fraction: f64,
    pub(crate) seed: u64,
    pub(crate) epoch_unix_secs: u64,
    pub(crate) anthropic_headers: bool,
    pub(crate) openai_headers: bool,
    pub(crate) limit_and_reset_headers: bool,
    /// Per dimension, in [`Dimension::ALL`] order: whether the headers report it (it is limited).
    pub(crate) reported: [bool; 3],
    pub(crate) event_log: bool,
}

// ===== impl MockProviderBuilder =====

/// Builds a [`MockProvider`]; every value is checked once, in [`build`](Self::build).
///
/// Defaults: 50 RPM, 30 000 input TPM, 8 000 output TPM (Anthropic's tier 1),
/// [`Algorithm::TokenBucket`], no overload, no hidden share, latency 500 ms + 10 ms per output
/// token with ±10 % jitter, seed 0, epoch 1 767 225 600 (2026-01-01T00:00:00Z), both header
/// families on with their limit and reset headers, event log off.
///
/// ```
/// use std::time::Duration;
/// use tollgate_mock::{Algorithm, MockProvider};
///
/// let provider = MockProvider::builder()
///     .rpm(60)
///     .input_tpm(100_000)
///     .output_tpm(20_000)
///     .algorithm(Algorithm::FixedWindow)
///     .latency(Duration::from_millis(200), Duration::from_millis(5), 0.0)
///     .seed(7)
///     .build()
///     .unwrap();
/// assert_eq!(provider.limits().rpm, 60);
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct MockProviderBuilder {
    limits: Limits,
    algorithm: Algorithm,
    overload: Option<OverloadConfig>,
    hidden_share: f64,
    latency_base: Duration,
    latency_per_output_token: Duration,
    jitter_fraction: f64,
    seed: u64,
    epoch_unix_secs: u64,
    anthropic_headers: bool,
    openai_headers: bool,
    limit_and_reset_headers: bool,
    unlimited: [bool; 3],
    event_log: bool,
}

impl Default for MockProviderBuilder {
    fn default() -> Self {
        Self {
            limits: Limits {
                rpm: 50,
                input_tpm: 30_000,
                output_tpm: 8_000,
            },
            algorithm: Algorithm::TokenBucket,
            overload: None,
            hidden_share: 0.0,
            latency_base: Duration::from_millis(500),
            latency_per_output_token: Duration::from_millis(10),
            jitter_fraction: 0.1,
            seed: 0,
            epoch_unix_secs: DEFAULT_EPOCH_UNIX_SECS,
            anthropic_headers: true,
            openai_headers: true,
            limit_and_reset_headers: true,
            unlimited: [false; 3],
            event_log: false,
        }
    }
}

impl MockProviderBuilder {
    /// Requests per minute (default 50). Must be greater than zero.
    pub fn rpm(mut self, rpm: u64) -> Self {
        self.limits.rpm = rpm;
        self
    }

    /// Input tokens per minute (default 30 000). Must be greater than zero.
    pub fn input_tpm(mut self, tpm: u64) -> Self {
        self.limits.input_tpm = tpm;
        self
    }

    /// Output tokens per minute (default 8 000). Must be greater than zero.
    pub fn output_tpm(mut self, tpm: u64) -> Self {
        self.limits.output_tpm = tpm;
        self
    }

    /// Leaves `dimension` unlimited, as a provider without such a limit (default: all three are
    /// limited): any amount is admitted, and no header reports the dimension. Its limit setting is
    /// ignored; [`MockProvider::limits`] shows `u64::MAX / 4` for it.
    pub fn unlimited(mut self, dimension: Dimension) -> Self {
        self.unlimited[dimension as usize] = true;
        self
    }

    /// Token bucket (default) or fixed 60 s window.
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// Answer 529 under load (default: never). The probability must lie in `[0, 1]`.
    pub fn overload(mut self, overload: OverloadConfig) -> Self {
        self.overload = Some(overload);
        self
    }

    /// The fraction in `[0, 1)` of every limit that the key's other, invisible clients use
    /// (default 0). The mock admits only `round((1 − share) · limit)` per dimension, while its
    /// headers still report the full limit; `remaining` shows what is left for this client.
    pub fn hidden_share(mut self, share: f64) -> Self {
        self.hidden_share = share;
        self
    }

    /// Latency of an admitted call: `(base + per_output_token · output_tokens) · (1 + u)` with `u`
    /// uniform in `[−jitter_fraction, +jitter_fraction]`, drawn from the seeded RNG.
    /// `jitter_fraction` must lie in `[0, 1]`. Errors (429, 529, 400) answer at once.
    pub fn latency(mut self, base: Duration, per_output_token: Duration, jitter: f64) -> Self {
        self.latency_base = base;
        self.latency_per_output_token = per_output_token;
        self.jitter_fraction = jitter;
        self
    }

    /// Seed of the provider's RNG (overload draws and latency noise; default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Unix time, in seconds, of virtual time zero (the moment [`build`](Self::build) runs); used
    /// only to write the RFC 3339 `anthropic-ratelimit-*-reset` headers. Default 1 767 225 600.
    pub fn epoch_unix_secs(mut self, secs: u64) -> Self {
        self.epoch_unix_secs = secs;
        self
    }

    /// Send the `anthropic-ratelimit-*` headers (default on).
    pub fn anthropic_headers(mut self, on: bool) -> Self {
        self.anthropic_headers = on;
        self
    }

    /// Send the OpenAI-style `x-ratelimit-*` headers (default on). Their `tokens` are the
    /// input-token dimension.
    pub fn openai_headers(mut self, on: bool) -> Self {
        self.openai_headers = on;
        self
    }

    /// Send no rate-limit headers at all (`on` = false), as a provider or gateway that tells
    /// nothing of its limits: neither family's `limit`, `remaining` or `reset`. A 429 still
    /// carries `retry-after` and `retry-after-ms`. Same as turning off both
    /// [`anthropic_headers`](Self::anthropic_headers) and
    /// [`openai_headers`](Self::openai_headers).
    ///
    /// ```
    /// let mock = tollgate_mock::MockProvider::builder().rate_limit_headers(false).build();
    /// assert!(mock.is_ok());
    /// ```
    pub fn rate_limit_headers(self, on: bool) -> Self {
        self.anthropic_headers(on).openai_headers(on)
    }

    /// Send each family's `limit` and `reset` headers besides its `remaining` (default on). Off,
    /// an answer carries only the `remaining` headers (and `retry-after` / `retry-after-ms` on a
    /// 429): all that a client reads when it syncs what is left and waits what it is told, for
    /// less formatting and parsing per call.
    pub fn limit_and_reset_headers(mut self, on: bool) -> Self {
        self.limit_and_reset_headers = on;
        self
    }

    /// Record a [`MockEvent`](crate::MockEvent) per call (default off, so long runs stay bounded;
    /// the counters in [`MockStats`](crate::MockStats) are always on).
    pub fn event_log(mut self, on: bool) -> Self {
        self.event_log = on;
        self
    }

    /// Checks the configuration and builds the provider. Virtual time zero is now, so build it
    /// inside the runtime whose clock drives it.
    ///
    /// # Errors
    ///
    /// - `rpm`, `input_tpm` or `output_tpm` is zero;
    /// - `hidden_share` is not a finite number in `[0, 1)`, or leaves less than one unit of some
    ///   limit;
    /// - the overload probability is not a finite number in `[0, 1]`;
    /// - the latency jitter fraction is not a finite number in `[0, 1]`.
    pub fn build(mut self) -> Result<MockProvider, MockConfigError> {
        for dimension in Dimension::ALL {
            if self.unlimited[dimension as usize] {
                *self.limits.get_mut(dimension) = UNLIMITED;
            }
        }
        for (field, value) in [
            ("rpm", self.limits.rpm),
            ("input_tpm", self.limits.input_tpm),
            ("output_tpm", self.limits.output_tpm),
        ] {
            if value == 0 {
                return Err(MockConfigError::new(field, Problem::Zero));
            }
        }
        let share = self.hidden_share;
        if !(share.is_finite() && (0.0..1.0).contains(&share)) {
            return Err(MockConfigError::out_of_range(
                "hidden_share",
                share,
                "[0, 1)",
            ));
        }
        let left_of = |field: &'static str, limit: u64| {
            // Exact enough: shares are user-typed decimals, limits far below 2^53.
            let left = ((1.0 - share) * limit as f64).round() as u64;
            if left == 0 {
                Err(MockConfigError::new(
                    field,
                    Problem::NoCapacityLeft { share, limit },
                ))
            } else {
                Ok(left)
            }
        };
        let effective = Limits {
            rpm: left_of("rpm", self.limits.rpm)?,
            input_tpm: left_of("input_tpm", self.limits.input_tpm)?,
            output_tpm: left_of("output_tpm", self.limits.output_tpm)?,
        };
        if let Some(overload) = self.overload {
            let p = overload.probability;
            if !(p.is_finite() && (0.0..=1.0).contains(&p)) {
                return Err(MockConfigError::out_of_range(
                    "overload.probability",
                    p,
                    "[0, 1]",
                ));
            }
        }
        let jitter = self.jitter_fraction;
        if !(jitter.is_finite() && (0.0..=1.0).contains(&jitter)) {
            return Err(MockConfigError::out_of_range(
                "jitter_fraction",
                jitter,
                "[0, 1]",
            ));
        }
        Ok(MockProvider::from_config(Config {
            limits: self.limits,
            effective,
            algorithm: self.algorithm,
            overload: self.overload,
            latency_base: self.latency_base,
            latency_per_output_token: self.latency_per_output_token,
            jitter_fraction: jitter,
            seed: self.seed,
            epoch_unix_secs: self.epoch_unix_secs,
            anthropic_headers: self.anthropic_headers,
            openai_headers: self.openai_headers,
            limit_and_reset_headers: self.limit_and_reset_headers,
            reported: self.unlimited.map(|unlimited| !unlimited),
            event_log: self.event_log,
        }))
    }
}

// ===== impl MockConfigError =====

/// A value given to [`MockProviderBuilder`] that [`build`](MockProviderBuilder::build) rejected.
///
/// ```
/// let err = tollgate_mock::MockProvider::builder().hidden_share(f64::NAN).build().unwrap_err();
/// assert_eq!(err.field(), "hidden_share");
/// assert_eq!(err.to_string(), "invalid mock config: `hidden_share` must be a finite number in [0, 1), got NaN");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct MockConfigError {
    field: &'static str,
    problem: Problem,
}

#[derive(Clone, Debug, PartialEq)]
enum Problem {
    Zero,
    OutOfRange { value: f64, range: &'static str },
    NoCapacityLeft { share: f64, limit: u64 },
}

impl MockConfigError {
    fn new(field: &'static str, problem: Problem) -> Self {
        Self { field, problem }
    }

    fn out_of_range(field: &'static str, value: f64, range: &'static str) -> Self {
        Self::new(field, Problem::OutOfRange { value, range })
    }

    /// The setting that was rejected, e.g. `"rpm"` or `"hidden_share"`.
    pub fn field(&self) -> &'static str {
        self.field
    }
}

impl fmt::Display for MockConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = self.field;
        match &self.problem {
            Problem::Zero => write!(f, "invalid mock config: `{field}` must be greater than zero"),
            Problem::OutOfRange { value, range } => write!(
                f,
                "invalid mock config: `{field}` must be a finite number in {range}, got {value}"
            ),
            Problem::NoCapacityLeft { share, limit } => write!(
                f,
                "invalid mock config: hidden share {share} leaves no capacity of `{field}` (limit {limit})"
            ),
        }
    }
}

impl std::error::Error for MockConfigError {}
