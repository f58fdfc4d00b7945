//! The AWS SDKs' adaptive retry mode: a client rate limiter with CUBIC, standard retry
//! (3 attempts, full jitter, base 1 s, cap 20 s) and the retry quota.

use super::herd::{self, Herd};
use super::Client;
use crate::rng::CallRng;
use crate::scenario::Scenario;
use crate::strategy::Call;
use std::time::Duration;
use tokio::time::Instant;
use tollgate::feedback::Outcome;
use tollgate::BoxError;
use tollgate_core::{AdaptiveRate, Backoff, MeasuredRate, Nanos, RetryBudget, RetryKind};

/// The client rate limiter's bucket, polled by the callers it holds back.
pub(super) struct Aws {
    herd: Herd<AwsState>,
}

struct AwsState {
    rate: AdaptiveRate,
    measured: MeasuredRate,
    enabled: bool,
    tokens: f64,
    last: Instant,
    budget: RetryBudget,
    start: Instant,
}

impl Aws {
    /// The limiter of `scenario`, its ceiling the provider's stated rate.
    pub(super) fn new(scenario: &Scenario, start: Instant) -> Result<Self, BoxError> {
        let ceiling = scenario.provider.rpm as f64 / 60.0;
        let state = AwsState {
            rate: AdaptiveRate::new(ceiling, (0.5f64).min(ceiling))?,
            measured: MeasuredRate::new(Nanos::ZERO),
            enabled: false,
            tokens: 0.0,
            last: start,
            budget: RetryBudget::default(),
            start,
        };
        Ok(Aws {
            herd: Herd::new(state, start),
        })
    }

    /// Sends `call` until it succeeds, the retry quota is spent or the backoff gives up; `true` on
    /// success.
    pub(super) async fn send(&self, client: &Client, call: Call, rng: &mut CallRng) -> bool {
        let herd = &self.herd;
        let mut backoff = Backoff::aws_standard().start();
        loop {
            herd.acquire().await;
            let outcome = client.send_once(call.req).await;
            let now = Instant::now();
            // `Err(ok)`: the call ends; `Ok(retry)`: whether the retry quota allows one.
            let retry = herd.with_bucket(|s| {
                let t = Nanos::from(now - s.start);
                let measured = s.measured.record(t, 1);
                match outcome {
                    Outcome::Success => {
                        s.rate.on_success(t);
                        s.budget.deposit_success();
                        return Err(true);
                    }
                    Outcome::RateLimited { .. } | Outcome::Overloaded { .. } => {
                        s.rate.on_throttle(t, Some(measured));
                        s.enabled = true;
                    }
                    o if o.is_retryable() => {}
                    _ => return Err(false),
                }
                Ok(s.budget.try_withdraw(RetryKind::Throttle))
            });
            match retry {
                Err(ok) => return ok,
                Ok(false) => return false,
                Ok(true) => {}
            }
            match backoff.next_delay(rng.get()) {
                Some(d) => tokio::time::sleep(d).await,
                None => return false,
            }
        }
    }
}

/// The AWS client rate limiter: unpaced until the first throttle, then a bucket filled at the
/// adaptive rate (capacity one second's worth, at least 1); a caller short of a token sleeps until
/// the bucket should hold one (at least 1 ms) and polls again.
impl herd::Polled for AwsState {
    fn poll(&mut self, tick: u64) -> Result<(), u64> {
        if !self.enabled {
            return Ok(());
        }
        let now = self.start + Duration::from_millis(tick);
        let t = Nanos::from(now - self.start);
        let rate = self.rate.rate(t);
        let dt = (now - self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(rate.max(1.0));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let wait =
            Duration::from_secs_f64((1.0 - self.tokens) / rate).max(Duration::from_millis(1));
        Err(herd::tick_after(tick, wait))
    }
}
