//! The OpenAI cookbook's parallel processor: shared request and token buckets at the stated
//! limits, a global 15 s pause after a 429, up to 5 attempts retried without delay; new requests
//! wait for room one at a time in the order they came, retries beside them.

use super::Client;
use crate::scenario::Scenario;
use crate::strategy::Call;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use tollgate::feedback::Outcome;

/// The cookbook's client for one run.
pub(super) struct Cookbook {
    state: Mutex<CookbookState>,
    /// The cookbook dispatches from one loop: one new request waits for room at a time, the
    /// others in the order they came (a fair lock); retries do not queue (see `send`).
    turn: tokio::sync::Mutex<()>,
}

struct PollBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl PollBucket {
    /// A full bucket of `per_minute`, refilled at that rate.
    fn full(per_minute: f64, start: Instant) -> Self {
        PollBucket {
            rate: per_minute / 60.0,
            capacity: per_minute,
            tokens: per_minute,
            last: start,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = (now - self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
        self.last = now;
    }
}

struct CookbookState {
    requests: PollBucket,
    tokens: Option<PollBucket>,
    paused_until: Instant,
}

impl Cookbook {
    /// The cookbook's buckets at the scenario's limits times its headroom.
    pub(super) fn new(scenario: &Scenario, start: Instant) -> Self {
        let (p, h) = (&scenario.provider, scenario.headroom);
        let rpm = p.rpm as f64 * h;
        let tpm = (p.itpm + p.otpm) as f64 * h;
        Cookbook {
            turn: tokio::sync::Mutex::new(()),
            state: Mutex::new(CookbookState {
                requests: PollBucket::full(rpm, start),
                tokens: (tpm > 0.0).then(|| PollBucket::full(tpm, start)),
                paused_until: start,
            }),
        }
    }

    /// Sends `call` for up to 5 attempts; `true` on success.
    pub(super) async fn send(&self, client: &Client, call: Call) -> bool {
        let tokens = (call.req.input_tokens + call.req.max_tokens) as f64;
        for attempt in 0..5 {
            if attempt == 0 {
                let _turn = self.turn.lock().await;
                self.acquire(tokens).await;
            } else {
                // The cookbook's retry queue goes before new requests: a retry does not
                // queue behind them, it waits for room beside the request whose turn it is.
                self.acquire(tokens).await;
            }
            match client.send_once(call.req).await {
                Outcome::Success => return true,
                Outcome::RateLimited { .. } => {
                    let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                    s.paused_until = Instant::now() + Duration::from_secs(15);
                }
                o if o.is_retryable() => {}
                _ => return false,
            }
        }
        false
    }

    /// The cookbook's dispatch rule: wait out the global pause, then until both buckets have room
    /// (its loop checks every millisecond; here the wait is computed, to the millisecond).
    async fn acquire(&self, tokens: f64) {
        loop {
            let wait = {
                let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                if s.paused_until > now {
                    s.paused_until - now
                } else {
                    s.requests.refill(now);
                    let mut wait = 0.0f64;
                    if s.requests.tokens < 1.0 {
                        wait = wait.max((1.0 - s.requests.tokens) / s.requests.rate);
                    }
                    if let Some(t) = &mut s.tokens {
                        t.refill(now);
                        // A request above the bucket's capacity would never go: the cookbook sends it.
                        let need = tokens.min(t.capacity);
                        if t.tokens < need {
                            wait = wait.max((need - t.tokens) / t.rate);
                        }
                    }
                    if wait == 0.0 {
                        s.requests.tokens -= 1.0;
                        if let Some(t) = &mut s.tokens {
                            t.tokens -= tokens;
                        }
                        return;
                    }
                    Duration::from_secs_f64(wait).max(Duration::from_millis(1))
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{CallRng, AGENT};
    use crate::strategy::StrategyKind;
    use tollgate_mock::MockRequest;

    #[test]
    fn the_cookbook_sends_new_requests_in_the_order_they_came() {
        let mut scenario = Scenario::from_flags(3, 6000);
        scenario.provider.itpm = 60_000;
        scenario.provider.otpm = 0;
        scenario.headroom = 1.0;
        let (second, third) = crate::engine::block_on(async move {
            let start = Instant::now();
            let provider = crate::engine::provider(&scenario, false).unwrap();
            let client = Client::new(StrategyKind::Cookbook, &scenario, provider, start).unwrap();
            let client = &client;
            let send = |agent: u32, after_ms: u64, input: u64, max_tokens: u64| async move {
                tokio::time::sleep(Duration::from_millis(after_ms)).await;
                let call = Call {
                    agent,
                    priority: 0,
                    req: MockRequest::new(input, max_tokens, 10),
                };
                assert!(
                    client
                        .send(call, &mut CallRng::new(1, AGENT, agent.into()))
                        .await
                );
                start.elapsed()
            };
            // 1,000 tokens a second, 60,000 at most: the first request takes them all, the second
            // needs 5,000 (5 s of refill), the third only 500 (0.5 s), but comes after the second.
            let (_, second, third) = tokio::join!(
                send(0, 0, 59_000, 1_000),
                send(1, 1, 4_000, 1_000),
                send(2, 2, 400, 100)
            );
            (second, third)
        })
        .unwrap()
        .output;
        // Ended (sent at 5 s, plus the provider's latency) ...
        assert!(second > Duration::from_secs(5), "{second:?}");
        // ... and the third waited its turn behind it: sent 0.5 s of refill after the second.
        assert!(third > Duration::from_millis(5_500), "{third:?}");
    }
}
