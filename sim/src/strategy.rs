//! The client strategies the simulator compares, all against the same mock provider:
//! today's remedies as the seeds describe them, and tollgate's own modes through the real layer.

mod herd;

use crate::scenario::Scenario;
use http::Response;
use rand_chacha::ChaCha8Rng;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tollgate::feedback::{Classify, HttpClassifier, Outcome};
use tollgate::retry::RetryPolicy;
use tollgate::{BoxError, Cost, Dimension, Limit, Priority, ScopeLimits, ThrottleLayer};
use tollgate_core::rand_core::{Rng, SeedableRng};
use tollgate_core::{AdaptiveRate, Backoff, MeasuredRate, Nanos, NextRetry, RetryBudget};
use tollgate_mock::{MockProvider, MockReply, MockRequest};
use tower::{Service, ServiceBuilder, ServiceExt};

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

/// The wall clock of the simulated provider: its epoch plus virtual time since the run started.
/// A thread-local, because the classifier takes a plain `fn`; each run sets it on its own thread.
mod wall {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// When the run started, and the wall clock then.
        static START: Cell<Option<(Instant, SystemTime)>> = const { Cell::new(None) };
    }

    pub(crate) const EPOCH_UNIX_SECS: u64 = 1_767_225_600;

    fn epoch() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH_UNIX_SECS)
    }

    pub(crate) fn start(at: Instant) {
        START.with(|s| s.set(Some((at, epoch()))));
    }

    pub(crate) fn now() -> SystemTime {
        match START.with(|s| s.get()) {
            Some((start, epoch)) => epoch + start.elapsed(),
            None => epoch(),
        }
    }
}

pub(crate) use wall::{start as start_wall_clock, EPOCH_UNIX_SECS};

fn classify(answer: &Answer) -> Outcome {
    HttpClassifier::with_clock(wall::now)
        .classify(Ok::<_, &BoxError>(answer))
        .outcome
}

/// A client as a strategy that does not use the layer builds it for one run (see [`layer`] for
/// those that do).
pub(crate) enum Client {
    /// None, static split and bucket-80: pacing, then the SDK retry.
    Sdk {
        provider: MockProvider,
        pacing: Pacing,
    },
    /// One attempt, no pacing.
    Once { provider: MockProvider },
    Cookbook {
        provider: MockProvider,
        state: Arc<Mutex<CookbookState>>,
        /// The cookbook dispatches from one loop: one new request waits for room at a time, the
        /// others in the order they came (a fair lock); retries do not queue (see `send`).
        turn: tokio::sync::Mutex<()>,
    },
    Aws {
        provider: MockProvider,
        /// The client rate limiter's bucket, polled by the callers it holds back.
        herd: herd::Herd<AwsState>,
    },
}

pub(crate) enum Pacing {
    None,
    /// Per agent: the earliest next send.
    PerAgent {
        interval: Duration,
        next: Mutex<Vec<Instant>>,
    },
    /// A shared bucket polled with sleeps.
    Polling(herd::Herd<herd::SeedBucket>),
}

pub(crate) struct PollBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl PollBucket {
    fn refill(&mut self, now: Instant) {
        let dt = (now - self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
        self.last = now;
    }
}

pub(crate) struct CookbookState {
    requests: PollBucket,
    tokens: Option<PollBucket>,
    paused_until: Instant,
}

pub(crate) struct AwsState {
    rate: AdaptiveRate,
    measured: MeasuredRate,
    enabled: bool,
    tokens: f64,
    last: Instant,
    budget: RetryBudget,
    start: Instant,
}

const SDK_HONOUR: Duration = Duration::from_secs(60);

impl Client {
    /// The client of `kind` for `scenario`, against `provider`.
    pub(crate) fn new(
        kind: StrategyKind,
        scenario: &Scenario,
        provider: MockProvider,
        start: Instant,
    ) -> Result<Client, BoxError> {
        let p = &scenario.provider;
        let agents = scenario.agent_count().max(1) as f64;
        Ok(match kind {
            StrategyKind::None => Client::Sdk {
                provider,
                pacing: Pacing::None,
            },
            StrategyKind::NoRetry => Client::Once { provider },
            StrategyKind::StaticSplit => {
                let per_agent_rpm = 0.8 * p.rpm as f64 / agents;
                let interval =
                    Duration::from_secs_f64(60.0 / per_agent_rpm).max(Duration::from_secs(2));
                Client::Sdk {
                    provider,
                    pacing: Pacing::PerAgent {
                        interval,
                        next: Mutex::new(vec![start; scenario.agent_count() as usize]),
                    },
                }
            }
            StrategyKind::Bucket80 => {
                let rate = 0.8 * p.rpm as f64 / 60.0;
                let capacity = (0.8 * p.rpm as f64).clamp(1.0, 50.0);
                Client::Sdk {
                    provider,
                    pacing: Pacing::Polling(herd::Herd::new(
                        herd::SeedBucket::new(rate, capacity),
                        start,
                    )),
                }
            }
            StrategyKind::Cookbook => {
                let h = scenario.headroom;
                let rpm = p.rpm as f64 * h;
                let tpm = (p.itpm + p.otpm) as f64 * h;
                Client::Cookbook {
                    provider,
                    turn: tokio::sync::Mutex::new(()),
                    state: Arc::new(Mutex::new(CookbookState {
                        requests: PollBucket {
                            rate: rpm / 60.0,
                            capacity: rpm,
                            tokens: rpm,
                            last: start,
                        },
                        tokens: (tpm > 0.0).then_some(PollBucket {
                            rate: tpm / 60.0,
                            capacity: tpm,
                            tokens: tpm,
                            last: start,
                        }),
                        paused_until: start,
                    })),
                }
            }
            StrategyKind::AwsAdaptive => {
                let ceiling = p.rpm as f64 / 60.0;
                Client::Aws {
                    provider,
                    herd: herd::Herd::new(
                        AwsState {
                            rate: AdaptiveRate::new(ceiling, (0.5f64).min(ceiling))?,
                            measured: MeasuredRate::new(Nanos::ZERO),
                            enabled: false,
                            tokens: 0.0,
                            last: start,
                            budget: RetryBudget::default(),
                            start,
                        },
                        start,
                    ),
                }
            }
            StrategyKind::Tollgate | StrategyKind::TollgateAdaptive => {
                return Err(
                    "tollgate's strategies send through the layer (`strategy::layer`)".into(),
                );
            }
        })
    }

    /// Sends one request until it succeeds or the strategy gives up; `true` on success.
    pub(crate) async fn send(&self, call: Call, rng: &mut CallRng) -> bool {
        match self {
            Client::Sdk { provider, pacing } => {
                let mut backoff = Backoff::sdk_default().start();
                loop {
                    pacing.acquire(call.agent).await;
                    let outcome = send_once(provider, call.req).await;
                    if outcome == Outcome::Success {
                        return true;
                    }
                    if !outcome.is_retryable() {
                        return false;
                    }
                    // The SDKs honour a retry delay up to 60 s, and back off otherwise.
                    let delay = match backoff.next_delay_after(
                        outcome.retry_after(),
                        SDK_HONOUR,
                        rng.get(),
                    ) {
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
            Client::Once { provider } => {
                let answer = answer(provider, call.req).await;
                let ok = answer.status().is_success();
                provider.recycle(answer);
                ok
            }
            Client::Cookbook {
                provider,
                state,
                turn,
            } => {
                let tokens = (call.req.input_tokens + call.req.max_tokens) as f64;
                for attempt in 0..5 {
                    if attempt == 0 {
                        let _turn = turn.lock().await;
                        cookbook_acquire(state, tokens).await;
                    } else {
                        // The cookbook's retry queue goes before new requests: a retry does not
                        // queue behind them, it waits for room beside the request whose turn it is.
                        cookbook_acquire(state, tokens).await;
                    }
                    match send_once(provider, call.req).await {
                        Outcome::Success => return true,
                        Outcome::RateLimited { .. } => {
                            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                            s.paused_until = Instant::now() + Duration::from_secs(15);
                        }
                        o if o.is_retryable() => {}
                        _ => return false,
                    }
                }
                false
            }
            Client::Aws { provider, herd } => {
                let mut backoff = Backoff::aws_standard().start();
                loop {
                    herd.acquire().await;
                    let outcome = send_once(provider, call.req).await;
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
                        Ok(s.budget.try_withdraw(tollgate_core::RetryKind::Throttle))
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
    }
}

/// The client of tollgate's strategies (`kind` is [`StrategyKind::Tollgate`] or
/// [`StrategyKind::TollgateAdaptive`]): the layer with the scenario's limits and budget, and its
/// retry policy outside it, against `provider`. Its type is left unnamed, so that a call's future
/// holds the whole stack's future without a box.
pub(crate) fn layer(
    kind: StrategyKind,
    scenario: &Scenario,
    provider: MockProvider,
    log: Option<tollgate::spend::CallLog>,
) -> Result<impl Service<Call, Response = Answer, Error = BoxError> + Clone, BoxError> {
    let p = &scenario.provider;
    let mut limits = ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, p.rpm));
    if p.itpm > 0 {
        limits = limits.limit(Limit::per_minute(Dimension::InputTokens, p.itpm));
    }
    if p.otpm > 0 {
        limits = limits.limit(Limit::per_minute(Dimension::OutputTokens, p.otpm));
    }
    let mut builder = ThrottleLayer::builder()
        .scope("global", limits)
        .headroom(scenario.headroom);
    if kind == StrategyKind::TollgateAdaptive {
        builder = builder.adaptive(0.1);
    }
    if let Some(budget) = &scenario.budget {
        builder = with_budget(builder, scenario, budget)?;
    }
    let attempts = log.as_ref().map(|_| Arc::default());
    if let Some(log) = log {
        builder = builder.call_log(log).wall_clock(EPOCH_UNIX_SECS * 1000);
    }
    // Calls belong to their agent's scope only when a budget counts per agent; recorded calls to
    // the scopes they had (and to the provider's, `global`, which the limits are on).
    let per_agent = scenario.budget.is_some();
    let traffic = scenario.traffic.clone();
    let throttle = builder
        .extract_scopes(move |c: &Call| {
            let mut scopes = tollgate::Scopes::new();
            scopes.push(tollgate::ScopeKey::GLOBAL);
            match traffic.as_ref().and_then(|t| t.scopes_of(c.agent)) {
                Some(recorded) => {
                    for key in recorded.iter().filter(|k| *k != "global") {
                        scopes.push(tollgate::ScopeKey::from(key.clone()));
                    }
                }
                None if per_agent => {
                    scopes.push(tollgate::ScopeKey::from(format!("agent:{}", c.agent)));
                }
                None => {}
            }
            scopes
        })
        .estimate(|c: &Call| {
            Cost::request()
                .with_input_tokens(c.req.input_tokens)
                .with_output_tokens(c.req.max_tokens)
        })
        .read_usage(|a: &Answer| {
            a.body().usage.map(|u| {
                Cost::request()
                    .with_input_tokens(u.input_tokens)
                    .with_output_tokens(u.output_tokens)
            })
        })
        .assign_priority(|c: &Call| Priority(c.priority))
        .classify(HttpClassifier::with_clock(wall::now))
        .call_meta(Attempts(attempts))
        .build()?;
    let retry = RetryPolicy::new(
        HttpClassifier::with_clock(wall::now),
        Backoff::sdk_default(),
        RetryBudget::default(),
        ChaCha8Rng::seed_from_u64(scenario.seed ^ 0x7011_6a7e),
    )
    .honour_retry_after_up_to(SDK_HONOUR);
    Ok(ServiceBuilder::new()
        .layer(retry.into_layer())
        .layer(throttle)
        .map_request(|c: Call| c.req)
        .service(provider))
}

/// The call log's attempt numbers: each pass of a request through the layer is its next attempt
/// (the retry policy outside the layer sends the same request again). Counted only while a call
/// log is written.
#[derive(Clone, Debug)]
struct Attempts(Option<Arc<Mutex<std::collections::BTreeMap<u64, u32>>>>);

impl tollgate::CallMeta<Call> for Attempts {
    fn model<'r>(&self, _: &'r Call) -> Option<&'r str> {
        None
    }

    fn attempt(&self, call: &Call) -> u32 {
        let Some(seen) = &self.0 else { return 1 };
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        let n = seen.entry(call.req.tag).or_insert(0);
        *n += 1;
        *n
    }
}

/// The scenario's budget on a layer: its prices, per-agent and fleet caps, windows starting at
/// the simulation's fixed wall clock.
fn with_budget(
    builder: tollgate::ThrottleBuilder,
    scenario: &Scenario,
    spec: &crate::scenario::BudgetSpec,
) -> Result<tollgate::ThrottleBuilder, BoxError> {
    use tollgate::{Budget, Micros, Price, PriceTable, UnknownModel};
    let p = scenario.prices;
    let price = Price::from_dollars(
        p.input_per_mtok,
        p.output_per_mtok,
        p.input_per_mtok,
        p.input_per_mtok,
    )?;
    let window = match spec.window {
        crate::scenario::BudgetWindow::Hour => tollgate::Window::Hour,
        crate::scenario::BudgetWindow::Day => tollgate::Window::Day,
    };
    let cap = |usd: f64| -> Result<Budget, BoxError> {
        let micros = Micros::from_dollars_f64(usd).ok_or("a budget cap is not an amount")?;
        Ok(Budget::builder(micros, window).build()?)
    };
    let mut b = builder
        .prices(PriceTable::new(UnknownModel::Default(price)))
        .wall_clock(EPOCH_UNIX_SECS * 1000)
        .on_cap(match spec.on_cap {
            crate::scenario::CapMode::Refuse => tollgate::spend::OnCap::Refuse,
            crate::scenario::CapMode::Hold => tollgate::spend::OnCap::Hold,
        });
    if let Some(usd) = spec.agent_usd {
        b = b.budget("agent:*", cap(usd)?);
    }
    if let Some(usd) = spec.global_usd {
        b = b.budget("global", cap(usd)?);
    }
    Ok(b)
}

/// Sends `req` once and classifies the answer (whose headers then go back to the provider for
/// its next answer).
async fn send_once(provider: &MockProvider, req: MockRequest) -> Outcome {
    let answer = answer(provider, req).await;
    let outcome = classify(&answer);
    provider.recycle(answer);
    outcome
}

async fn answer(provider: &MockProvider, req: MockRequest) -> Answer {
    match provider.clone().oneshot(req).await {
        Ok(a) => a,
        Err(never) => match never {},
    }
}

impl Pacing {
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

/// The cookbook's dispatch rule: wait out the global pause, then until both buckets have room
/// (its loop checks every millisecond; here the wait is computed, to the millisecond).
async fn cookbook_acquire(state: &Mutex<CookbookState>, tokens: f64) {
    loop {
        let wait = {
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
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

/// An agent's random generator: its own ChaCha stream from the seed and its index, so adding an
/// agent does not change the others' draws.
pub(crate) fn agent_rng(seed: u64, agent: u32) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(u64::from(agent) + 1);
    rng
}

/// A random generator made on its first draw: [`agent_rng`] of its seed and agent. Most strategies
/// never draw for a request, and a generator is large to make and to move.
#[derive(Debug)]
pub(crate) struct CallRng {
    seed: u64,
    agent: u32,
    rng: Option<Box<ChaCha8Rng>>,
}

impl CallRng {
    /// The generator `agent_rng(seed, agent)`, not made yet.
    pub(crate) fn new(seed: u64, agent: u32) -> Self {
        CallRng {
            seed,
            agent,
            rng: None,
        }
    }

    /// The generator, made now if this is its first draw.
    pub(crate) fn get(&mut self) -> &mut ChaCha8Rng {
        let (seed, agent) = (self.seed, self.agent);
        self.rng
            .get_or_insert_with(|| Box::new(agent_rng(seed, agent)))
    }
}

/// A uniform draw in [0, 1).
pub(crate) fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

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
                assert!(client.send(call, &mut CallRng::new(1, agent)).await);
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
