//! No throttle, the static split and `bucket-80`: each attempt paced by the strategy, then
//! retried as the official SDKs retry (2 retries, `min(0.5·2^k, 8)·(1 − 0.25·U)`, `retry-after`
//! honoured up to 60 s).

use super::herd::{Herd, SeedBucket};
use super::Client;
use crate::rng::CallRng;
use crate::scenario::Scenario;
use crate::strategy::{Call, SDK_HONOUR};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use tollgate::feedback::Outcome;
use tollgate_core::{Backoff, NextRetry};

/// What an attempt waits for before it is sent.
pub(super) enum Pacing {
    None,
    /// Per agent: the earliest next send.
    PerAgent {
        interval: Duration,
        next: Mutex<Vec<Instant>>,
    },
    /// A shared bucket polled with sleeps.
    Polling(Herd<SeedBucket>),
}

impl Pacing {
    /// The seed's static split: each agent capped at 80 %/N of the limit, 2 s apart at least.
    pub(super) fn static_split(scenario: &Scenario, start: Instant) -> Self {
        let agents = scenario.agent_count().max(1) as f64;
        let per_agent_rpm = 0.8 * scenario.provider.rpm as f64 / agents;
        let interval = Duration::from_secs_f64(60.0 / per_agent_rpm).max(Duration::from_secs(2));
        Pacing::PerAgent {
            interval,
            next: Mutex::new(vec![start; scenario.agent_count() as usize]),
        }
    }

    /// The seed's shared bucket at 80 % of the limit, polled with sleeps of at most 0.5 s.
    pub(super) fn bucket_80(scenario: &Scenario, start: Instant) -> Self {
        let rpm = scenario.provider.rpm as f64;
        let rate = 0.8 * rpm / 60.0;
        let capacity = (0.8 * rpm).clamp(1.0, 50.0);
        Pacing::Polling(Herd::new(SeedBucket::new(rate, capacity), start))
    }

    async fn acquire(&self, agent: u32) {
        match self {
            Pacing::None => {}
            Pacing::PerAgent { interval, next } => {
                let at = {
                    let mut next = next.lock().unwrap_or_else(|e| e.into_inner());
                    let slot = &mut next[agent as usize];
                    let at = (*slot).max(Instant::now());
                    *slot = at + *interval;
                    at
                };
                tokio::time::sleep_until(at).await;
            }
            // The seed: wait = tokens / rate, slept at most 0.5 s, then poll again (simulated
            // without the polls that cannot change anything: see `herd`).
            Pacing::Polling(herd) => herd.acquire().await,
        }
    }
}

/// Sends `call` paced by `pacing` until it succeeds or the SDK retry gives up; `true` on success.
pub(super) async fn send(client: &Client, pacing: &Pacing, call: Call, rng: &mut CallRng) -> bool {
    let mut backoff = Backoff::sdk_default().start();
    loop {
        pacing.acquire(call.agent).await;
        let outcome = client.send_once(call.req).await;
        if outcome == Outcome::Success {
            return true;
        }
        if !outcome.is_retryable() {
            return false;
        }
        // The SDKs honour a retry delay up to 60 s, and back off otherwise.
        let delay = match backoff.next_delay_after(outcome.retry_after(), SDK_HONOUR, rng.get()) {
            NextRetry::Provider(d) | NextRetry::Backoff(d) => d,
            NextRetry::TooLong(_) => match backoff.next_delay(rng.get()) {
                Some(d) => d,
                None => return false,
            },
            NextRetry::Exhausted => return false,
        };
        tokio::time::sleep(delay).await;
    }
}
