//! Provider feedback: what a call's answer says about the provider's limits.
//!
//! A [`Classify`] hook turns each call's result into [`Feedback`]: an [`Outcome`] (ok, rate
//! limited, overloaded, spend cap reached, transient, fatal) and the [`ProviderLimit`]s the
//! provider reported. The layer acts on it:
//!
//! * **Shared cooldown**: a rate-limited or overloaded answer pauses admissions in the provider
//!   scope for every caller at once, for the provider's retry delay, or for a computed backoff when
//!   it gives none ([`Cooldown`]). Calls in flight are not affected; a second 429 during a
//!   cooldown extends it to the later end, it never adds up.
//! * **Header sync**: when the provider reports fewer requests or tokens remaining than the local
//!   bucket believes (another client shares the key), the bucket is lowered to match. It is never
//!   raised above the configured limit. In the adaptive mode the reported `remaining` and `reset`
//!   also tell the rate the limit really refills at, and the limit follows it.
//!
//! [`HttpClassifier`] reads `http::Response`s with Anthropic's and OpenAI's semantics.

pub(crate) mod adaptive;
#[cfg(feature = "http")]
mod headers;
mod react;

#[cfg(feature = "http")]
pub use headers::{parse_go_duration, retry_delay, HttpClassifier, ProviderHeaders};
pub(crate) use react::{pause, react, Admission};

use crate::Dimension;
use smallvec::SmallVec;
use std::time::Duration;

/// What a call's answer means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The call succeeded.
    Success,
    /// The provider refused the call for the key's rate limits (HTTP 429).
    RateLimited {
        /// The provider's retry delay, if it gave one.
        retry_after: Option<Duration>,
    },
    /// The provider is overloaded (HTTP 529 or 503).
    Overloaded {
        /// The provider's retry delay, if it gave one.
        retry_after: Option<Duration>,
    },
    /// The key's spend cap is reached (Anthropic's 429 without `retry-after`): retrying will not
    /// help until the cap is raised or the period ends.
    SpendCapReached,
    /// A failure that may pass on retry (a timeout, a 5xx, 408, 409).
    Transient {
        /// The provider's retry delay, if it gave one.
        retry_after: Option<Duration>,
    },
    /// A failure that a retry will not fix (a 4xx such as 400 or 401).
    Fatal,
}

impl Outcome {
    /// The provider's retry delay, if the outcome carries one.
    pub fn retry_after(&self) -> Option<Duration> {
        match *self {
            Outcome::RateLimited { retry_after }
            | Outcome::Overloaded { retry_after }
            | Outcome::Transient { retry_after } => retry_after,
            _ => None,
        }
    }

    /// Whether a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Outcome::RateLimited { .. } | Outcome::Overloaded { .. } | Outcome::Transient { .. }
        )
    }

    /// The outcome's name in the call log: `ok`, `rate_limited`, `overloaded`, `spend_cap`,
    /// `transient` or `fatal`.
    ///
    /// ```
    /// use tollgate::feedback::Outcome;
    /// assert_eq!(Outcome::RateLimited { retry_after: None }.log_name(), "rate_limited");
    /// ```
    pub fn log_name(&self) -> &'static str {
        match self {
            Outcome::Success => "ok",
            Outcome::RateLimited { .. } => "rate_limited",
            Outcome::Overloaded { .. } => "overloaded",
            Outcome::SpendCapReached => "spend_cap",
            Outcome::Transient { .. } => "transient",
            Outcome::Fatal => "fatal",
        }
    }

    /// Whether the outcome starts a shared cooldown (rate limited or overloaded).
    pub fn starts_cooldown(&self) -> bool {
        matches!(
            self,
            Outcome::RateLimited { .. } | Outcome::Overloaded { .. }
        )
    }
}

/// What the provider reported about one of its limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProviderLimit {
    /// What the limit counts.
    pub dimension: Dimension,
    /// The limit, if reported.
    pub limit: Option<u64>,
    /// What remains.
    pub remaining: u64,
    /// When the limit is fully replenished, if reported.
    pub reset_in: Option<Duration>,
}

/// A classified answer: its outcome and the limits the provider reported with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Feedback {
    /// What the answer means.
    pub outcome: Outcome,
    /// The provider's limits as reported in the answer (empty when none were).
    pub limits: SmallVec<[ProviderLimit; 4]>,
}

impl Feedback {
    /// Feedback with an outcome and no reported limits.
    pub fn outcome(outcome: Outcome) -> Self {
        Feedback {
            outcome,
            limits: SmallVec::new(),
        }
    }
}

/// Turns a call's result into [`Feedback`]. Implemented by closures
/// `Fn(Result<&Res, &E>) -> Feedback`, for typed responses.
///
/// ```
/// use tollgate::feedback::{Classify, Feedback, Outcome};
///
/// struct Reply { status: u16 }
/// let classify = |r: Result<&Reply, &std::io::Error>| match r {
///     Ok(reply) if reply.status == 429 => Feedback::outcome(Outcome::RateLimited { retry_after: None }),
///     Ok(_) => Feedback::outcome(Outcome::Success),
///     Err(_) => Feedback::outcome(Outcome::Transient { retry_after: None }),
/// };
/// assert!(classify.classify(Ok(&Reply { status: 429 })).outcome.starts_cooldown());
/// ```
pub trait Classify<Res, E> {
    /// The feedback of one call's result.
    fn classify(&self, result: Result<&Res, &E>) -> Feedback;

    /// The outcome alone, for callers that need no reported limits (as
    /// [`RetryPolicy`](crate::retry::RetryPolicy)). The default classifies in full; an
    /// implementation may skip reading the limits where the outcome does not depend on them.
    fn outcome(&self, result: Result<&Res, &E>) -> Outcome {
        self.classify(result).outcome
    }
}

impl<Res, E, F> Classify<Res, E> for F
where
    F: Fn(Result<&Res, &E>) -> Feedback,
{
    fn classify(&self, result: Result<&Res, &E>) -> Feedback {
        self(result)
    }
}

/// The default classifier: every response is a success and every error transient; nothing is
/// learnt from the provider. Use [`HttpClassifier`] or a closure to enable cooldowns and sync.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFeedback;

impl<Res, E> Classify<Res, E> for NoFeedback {
    fn classify(&self, result: Result<&Res, &E>) -> Feedback {
        Feedback::outcome(match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Transient { retry_after: None },
        })
    }
}

/// How long a shared cooldown lasts when the provider gives no retry delay: `base` after the first
/// rate-limited answer, doubling with each consecutive one, at most `cap`; a success resets it.
/// The default is 1 s doubling to at most 60 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cooldown {
    /// The first cooldown.
    pub base: Duration,
    /// The longest cooldown.
    pub cap: Duration,
}

impl Default for Cooldown {
    fn default() -> Self {
        Cooldown {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        }
    }
}

impl Cooldown {
    /// The cooldown after `consecutive` rate-limited answers in a row (1 for the first).
    pub fn after(&self, consecutive: u32) -> Duration {
        let factor = 1u32
            .checked_shl(consecutive.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }
}
