//! The client strategies the simulator compares, all against the same mock provider:
//! today's remedies as the seeds describe them (`baselines`), and tollgate's own modes through
//! the real layer (`layer`).

mod baselines;
mod layer;

pub(crate) use baselines::Client;
pub(crate) use layer::layer;

use http::Response;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tollgate::feedback::HttpClassifier;
use tollgate_mock::{MockReply, MockRequest};

/// A client strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StrategyKind {
    /// No client throttle; the official SDKs' own retry (2 retries,
    /// `min(0.5·2^k, 8)·(1 − 0.25·U)`, `retry-after` honoured up to 60 s).
    None,
    /// The seed's static split: each agent capped at 80 %/N of the limit, 2 s minimum spacing,
    /// plus the SDK retry.
    StaticSplit,
    /// The seed's shared token bucket at 80 % that polls with sleeps of at most 0.5 s, plus the
    /// SDK retry.
    Bucket80,
    /// The OpenAI cookbook's parallel processor: shared request and token buckets at the stated
    /// limits, a global 15 s pause after a 429, up to 5 attempts retried without delay; new
    /// requests wait for room one at a time in the order they came, retries beside them.
    Cookbook,
    /// The AWS SDKs' adaptive retry mode: a client rate limiter with CUBIC, standard retry
    /// (3 attempts, full jitter, base 1 s, cap 20 s) and the retry quota.
    AwsAdaptive,
    /// tollgate's layer with its default settings, and its retry policy outside it.
    Tollgate,
    /// The same with the adaptive mode on (floor 10 %).
    TollgateAdaptive,
    /// No throttle and no retry at all: each request is sent once. Not among `all`; it exists
    /// for the analytical check (the 429 fraction converges to `1 − r/λ`).
    NoRetry,
}

impl StrategyKind {
    /// Every strategy, in table order.
    pub const ALL: [StrategyKind; 7] = [
        StrategyKind::None,
        StrategyKind::StaticSplit,
        StrategyKind::Bucket80,
        StrategyKind::Cookbook,
        StrategyKind::AwsAdaptive,
        StrategyKind::Tollgate,
        StrategyKind::TollgateAdaptive,
    ];

    /// The name used on the command line and in outputs.
    pub const fn name(self) -> &'static str {
        match self {
            StrategyKind::None => "none",
            StrategyKind::StaticSplit => "static-split",
            StrategyKind::Bucket80 => "bucket-80",
            StrategyKind::Cookbook => "cookbook",
            StrategyKind::AwsAdaptive => "aws-adaptive",
            StrategyKind::Tollgate => "tollgate",
            StrategyKind::TollgateAdaptive => "tollgate-adaptive",
            StrategyKind::NoRetry => "no-retry",
        }
    }

    /// Whether the strategy sends through tollgate's layer (and so can write its call log).
    pub const fn is_tollgate(self) -> bool {
        matches!(
            self,
            StrategyKind::Tollgate | StrategyKind::TollgateAdaptive
        )
    }

    /// Whether the strategy takes the scenario's headroom (and so varies in a sweep).
    pub const fn takes_headroom(self) -> bool {
        matches!(
            self,
            StrategyKind::Tollgate | StrategyKind::TollgateAdaptive | StrategyKind::Cookbook
        )
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StrategyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        StrategyKind::ALL
            .into_iter()
            .chain([StrategyKind::NoRetry])
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = StrategyKind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown strategy `{s}`; strategies: {}, all",
                    names.join(", ")
                )
            })
    }
}

/// One request of one agent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Call {
    pub(crate) agent: u32,
    pub(crate) priority: u8,
    pub(crate) req: MockRequest,
}

type Answer = Response<MockReply>;

/// The longest `retry-after` the official SDKs honour (a longer one, they back off instead);
/// tollgate's retry policy is given the same.
const SDK_HONOUR: Duration = Duration::from_secs(60);

/// Unix time of the simulated provider's virtual time zero, 2026-01-01T00:00:00Z: its
/// `reset` headers, the call log and the budget windows all count from it.
pub(crate) const EPOCH_UNIX_SECS: u64 = 1_767_225_600;

/// The classifier of a run that started at `start`: its wall clock is the provider's epoch plus
/// the virtual time since then, read on the run's own paused clock.
pub(crate) fn classifier(start: Instant) -> HttpClassifier {
    let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH_UNIX_SECS);
    HttpClassifier::with_clock(move || epoch + start.elapsed())
}
