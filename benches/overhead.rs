//! The cost of the bookkeeping: one call through tollgate (requests and input tokens per minute in
//! one scope, in-memory store) over a ready no-op `service_fn`, against what users write today, in
//! the same criterion group so the ratios are like for like.
//!
//! * `tollgate`: `ThrottleLayer` with one scope `global` (an RPM and an input-TPM limit), an
//!   estimator of 1 request + [`INPUT_TOKENS`] input tokens and a usage reader, so every call is
//!   admitted, charged, and reconciled against its usage.
//! * `governor`: two direct governor limiters (requests, tokens), `check()` and `check_n()` before
//!   the same service: the check-only pattern of the crates that hand-roll RPM + TPM today (no
//!   queue, no reconcile; a refusal would be an error, not a wait).
//! * `tower`: tower's `ConcurrencyLimit` (one semaphore shared by every task) over `RateLimit`.
//!   Requests only: `RateLimit` has no weights, so no TPM (tower#713). `RateLimit` is not `Clone`
//!   (tower#794), so every task builds its own: in the 64-task workload that is 64 separate rate
//!   limits, not one global limit, which flatters tower (the global alternative, `Buffer`, adds a
//!   channel hop and a worker task per call).
//! * `leaky-bucket`: two `leaky_bucket::RateLimiter`s (requests, tokens) with their default fair
//!   scheduler, `acquire_one()` and `acquire(n)` before the service.
//!
//! Every limit is far above what a bench can send, so nothing ever waits: a peer that would refuse
//! panics instead of measuring a shortcut, and tollgate's stats are checked for waits at the end.
//! Workloads: see `support.rs`.

mod support;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::convert::Infallible;
use std::future::{ready, Ready};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use support::{Caller, Svc, Workload};
use tokio::sync::Semaphore;
use tollgate::{Cost, Dimension, Limit, Limiter, ScopeLimits, ThrottleLayer};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

/// The input tokens of every call.
const INPUT_TOKENS: u64 = 10;

/// A call as the bench sends it.
#[derive(Clone, Copy, Debug)]
struct Prompt {
    input_tokens: u64,
}

/// What the provider answers.
#[derive(Clone, Copy, Debug)]
struct Reply {
    input_tokens: u64,
}

fn prompt(_: u64) -> Prompt {
    Prompt {
        input_tokens: INPUT_TOKENS,
    }
}

/// The provider: a ready no-op.
fn provider(p: Prompt) -> Ready<Result<Reply, Infallible>> {
    ready(Ok(Reply {
        input_tokens: p.input_tokens,
    }))
}

// ===== tollgate =====

/// tollgate over the provider, and its limiter. The limits are far above any rate a bench reaches:
/// 10¹² requests and 10¹³ input tokens a minute.
fn tollgate() -> (Limiter, impl Caller + Clone) {
    let layer = ThrottleLayer::builder()
        .scope(
            "global",
            ScopeLimits::new()
                .limit(Limit::per_minute(Dimension::Requests, 1_000_000_000_000))
                .limit(Limit::per_minute(
                    Dimension::InputTokens,
                    10_000_000_000_000,
                )),
        )
        .estimate(|p: &Prompt| Cost::request().with_input_tokens(p.input_tokens))
        .read_usage(|r: &Reply| Some(Cost::request().with_input_tokens(r.input_tokens)))
        .build()
        .expect("valid limits");
    let limiter = layer.limiter().clone();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(provider));
    (
        limiter,
        Svc {
            svc,
            make_req: prompt,
        },
    )
}

// ===== governor =====

/// Two direct governor limiters checked before the service; a refusal panics (never happens).
#[derive(Clone)]
struct Governor<S> {
    requests: Arc<DefaultDirectRateLimiter>,
    tokens: Arc<DefaultDirectRateLimiter>,
    svc: S,
}

impl<S> Caller for Governor<S>
where
    S: Service<Prompt, Response = Reply, Error = Infallible> + Send + 'static,
    S::Future: Send,
{
    fn call(&mut self, i: u64) -> impl std::future::Future<Output = ()> + Send {
        let p = prompt(i);
        self.requests.check().expect("the request limit admits");
        let n = NonZeroU32::new(p.input_tokens as u32).expect("tokens > 0");
        self.tokens
            .check_n(n)
            .expect("fits the burst")
            .expect("the token limit admits");
        async move {
            let svc = self.svc.ready().await.expect("ready");
            std::hint::black_box(svc.call(p).await.expect("the call succeeds"));
        }
    }
}

fn governor<S>(svc: S) -> Governor<S> {
    let max = NonZeroU32::MAX;
    // Requests: ~4.3·10⁹ a minute. Tokens: one every nanosecond (governor's finest period), a burst
    // of ~4.3·10⁹; at 10 tokens a call that is 10⁸ calls a second, above any rate measured here.
    let requests = Quota::per_minute(max);
    let tokens = Quota::with_period(Duration::from_nanos(1))
        .expect("non-zero period")
        .allow_burst(max);
    Governor {
        requests: Arc::new(RateLimiter::direct(requests)),
        tokens: Arc::new(RateLimiter::direct(tokens)),
        svc,
    }
}

// ===== leaky-bucket =====

/// Two leaky-bucket limiters acquired before the service.
#[derive(Clone)]
struct Leaky<S> {
    requests: Arc<leaky_bucket::RateLimiter>,
    tokens: Arc<leaky_bucket::RateLimiter>,
    svc: S,
}

impl<S> Caller for Leaky<S>
where
    S: Service<Prompt, Response = Reply, Error = Infallible> + Send + 'static,
    S::Future: Send,
{
    fn call(&mut self, i: u64) -> impl std::future::Future<Output = ()> + Send {
        let p = prompt(i);
        async move {
            self.requests.acquire_one().await;
            self.tokens.acquire(p.input_tokens as usize).await;
            let svc = self.svc.ready().await.expect("ready");
            std::hint::black_box(svc.call(p).await.expect("the call succeeds"));
        }
    }
}

fn leaky<S>(svc: S) -> Leaky<S> {
    // 2⁵⁰ permits to start with and as the maximum, 2⁵⁰ more every second: never empty.
    let bucket = || {
        Arc::new(
            leaky_bucket::RateLimiter::builder()
                .initial(1 << 50)
                .max(1 << 50)
                .refill(1 << 50)
                .interval(Duration::from_secs(1))
                .build(),
        )
    };
    Leaky {
        requests: bucket(),
        tokens: bucket(),
        svc,
    }
}

/// No call was refused or queued. The limiter records the time between a call's first poll and
/// its admission as its wait even when the call never queued (the store's own latency, well under
/// a microsecond, more when the OS deschedules the thread in between), so "never waited" is checked
/// as "the median wait is under a millisecond". The limits rule out real waits anyway: a call
/// moves a bucket forward by at most a few nanoseconds of its 60-second burst.
fn assert_never_waited(s: &tollgate::ScopeStats) {
    assert!(
        s.refused == 0 && s.queue_depth == 0 && s.wait_p50 < Duration::from_millis(1),
        "a tollgate call waited or was refused: {s:?}"
    );
}

// ===== the group =====

fn overhead(c: &mut Criterion) {
    for workload in Workload::ALL {
        let rt = workload.runtime();
        let mut group = c.benchmark_group(format!("overhead/{}", workload.name()));
        group.throughput(Throughput::Elements(1));

        let (limiter, tollgate) = tollgate();
        workload.bench(&mut group, &rt, "tollgate", || tollgate.clone());
        let global = limiter.scope_stats("global").expect("global is configured");
        assert_never_waited(&global);

        let gov = governor(service_fn(provider));
        workload.bench(&mut group, &rt, "governor", || gov.clone());

        // One semaphore for every task: the concurrency cap is global. The rate limit is per
        // stack (see the module docs).
        let semaphore = Arc::new(Semaphore::new(1 << 20));
        workload.bench(&mut group, &rt, "tower", || Svc {
            svc: ServiceBuilder::new()
                .layer(GlobalConcurrencyLimitLayer::with_semaphore(
                    semaphore.clone(),
                ))
                .rate_limit(1 << 50, Duration::from_secs(60))
                .service(service_fn(provider)),
            make_req: prompt,
        });

        let lb = leaky(service_fn(provider));
        workload.bench(&mut group, &rt, "leaky-bucket", || lb.clone());

        group.finish();
    }
}

criterion_group!(benches, overhead);
criterion_main!(benches);
