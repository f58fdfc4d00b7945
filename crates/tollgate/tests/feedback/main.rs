//! Provider feedback through the layer on tokio's paused clock: the shared cooldown, header sync,
//! and the HTTP classifier on real header sets from the providers' documentation.

#[path = "../support/mod.rs"]
mod support;

use http::{HeaderMap, Response, StatusCode};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use support::TestStore;
use tokio::time::Instant;
use tollgate::feedback::{
    parse_go_duration, retry_delay, Classify, Cooldown, HttpClassifier, Outcome, ProviderHeaders,
};
use tollgate::{BoxError, Dimension, Limit, Limiter, ScopeLimits, ThrottleBuilder, ThrottleLayer};
use tower::{ServiceBuilder, ServiceExt};

/// 2026-01-01T00:00:00Z, the wall clock of these tests.
fn fixed_now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

fn classify(status: u16, pairs: &[(&str, &str)]) -> Outcome {
    HttpClassifier::with_clock(fixed_now)
        .classify_parts(StatusCode::from_u16(status).unwrap(), &headers(pairs))
        .outcome
}

// The outcome alone, which the retry policy asks for, is the outcome of the full classification
// for every status and every mix of the headers it depends on.
proptest::proptest! {
    #[test]
    fn the_outcome_alone_is_the_full_outcome(
        status in 100u16..600,
        picks in proptest::collection::vec(0usize..8, 0..5),
    ) {
        const HEADERS: [(&str, &str); 8] = [
            ("retry-after", "3"),
            ("retry-after-ms", "1500"),
            ("retry-after", "soon"),
            ("x-should-retry", "true"),
            ("x-should-retry", "false"),
            ("anthropic-ratelimit-requests-remaining", "0"),
            ("anthropic-ratelimit-requests-reset", "2026-01-01T00:00:05Z"),
            ("x-ratelimit-remaining-tokens", "12"),
        ];
        let pairs: Vec<_> = picks.iter().map(|&i| HEADERS[i]).collect();
        let mut res = Response::builder().status(status).body(()).unwrap();
        *res.headers_mut() = headers(&pairs);
        let c = HttpClassifier::with_clock(fixed_now);
        let ok: Result<&Response<()>, &BoxError> = Ok(&res);
        proptest::prop_assert_eq!(c.outcome(ok), c.classify(ok).outcome);
    }
}

// ===== header parsing =====

#[test]
fn anthropic_documented_headers() {
    // The header set of Anthropic's rate-limit documentation.
    let h = headers(&[
        ("retry-after", "12"),
        ("anthropic-ratelimit-requests-limit", "50"),
        ("anthropic-ratelimit-requests-remaining", "0"),
        ("anthropic-ratelimit-requests-reset", "2026-01-01T00:00:12Z"),
        ("anthropic-ratelimit-tokens-limit", "90000"),
        ("anthropic-ratelimit-tokens-remaining", "89000"),
        ("anthropic-ratelimit-tokens-reset", "2026-01-01T00:00:01Z"),
        ("anthropic-ratelimit-input-tokens-limit", "80000"),
        ("anthropic-ratelimit-input-tokens-remaining", "80000"),
        (
            "anthropic-ratelimit-input-tokens-reset",
            "2026-01-01T00:00:00Z",
        ),
        ("anthropic-ratelimit-output-tokens-limit", "16000"),
        ("anthropic-ratelimit-output-tokens-remaining", "9000"),
        (
            "anthropic-ratelimit-output-tokens-reset",
            "2026-01-01T00:00:26.250Z",
        ),
    ]);
    let limits = ProviderHeaders::parse(&h, fixed_now());
    let find = |d| *limits.iter().find(|l| l.dimension == d).unwrap();
    let r = find(Dimension::Requests);
    assert_eq!((r.limit, r.remaining), (Some(50), 0));
    assert_eq!(r.reset_in, Some(Duration::from_secs(12)));
    assert_eq!(find(Dimension::TotalTokens).remaining, 89_000);
    assert_eq!(find(Dimension::InputTokens).reset_in, Some(Duration::ZERO));
    let o = find(Dimension::OutputTokens);
    assert_eq!((o.limit, o.remaining), (Some(16_000), 9_000));
    assert_eq!(o.reset_in, Some(Duration::from_millis(26_250)));
    assert_eq!(
        HttpClassifier::with_clock(fixed_now)
            .classify_parts(StatusCode::TOO_MANY_REQUESTS, &h)
            .outcome,
        Outcome::RateLimited {
            retry_after: Some(Duration::from_secs(12))
        }
    );
}

#[test]
fn openai_documented_headers() {
    // The header table of OpenAI's rate-limit guide.
    let h = headers(&[
        ("x-ratelimit-limit-requests", "60"),
        ("x-ratelimit-limit-tokens", "150000"),
        ("x-ratelimit-remaining-requests", "59"),
        ("x-ratelimit-remaining-tokens", "149984"),
        ("x-ratelimit-reset-requests", "1s"),
        ("x-ratelimit-reset-tokens", "6m0s"),
    ]);
    let limits = ProviderHeaders::parse(&h, fixed_now());
    assert_eq!(limits.len(), 2);
    assert_eq!(limits[0].dimension, Dimension::Requests);
    assert_eq!(
        (limits[0].limit, limits[0].remaining, limits[0].reset_in),
        (Some(60), 59, Some(Duration::from_secs(1)))
    );
    assert_eq!(limits[1].dimension, Dimension::TotalTokens);
    assert_eq!(
        (limits[1].remaining, limits[1].reset_in),
        (149_984, Some(Duration::from_secs(360)))
    );
    assert_eq!(classify(200, &[]), Outcome::Success);
}

#[test]
fn retry_after_ms_wins_over_retry_after() {
    let h = headers(&[("retry-after", "7"), ("retry-after-ms", "250")]);
    assert_eq!(
        retry_delay(&h, fixed_now()),
        Some(Duration::from_millis(250))
    );
}

#[test]
fn retry_after_as_an_http_date() {
    let h = headers(&[("retry-after", "Thu, 01 Jan 2026 00:00:30 GMT")]);
    assert_eq!(retry_delay(&h, fixed_now()), Some(Duration::from_secs(30)));
    // A date in the past is no delay at all.
    let h = headers(&[("retry-after", "Wed, 31 Dec 2025 23:00:00 GMT")]);
    assert_eq!(retry_delay(&h, fixed_now()), Some(Duration::ZERO));
}

#[test]
fn garbage_headers_are_ignored() {
    for bad in ["soon", "-3", "NaN", "inf", "7 seconds", ""] {
        let h = headers(&[("retry-after", bad)]);
        assert_eq!(retry_delay(&h, fixed_now()), None, "{bad:?}");
    }
    let h = headers(&[("retry-after-ms", "lots"), ("retry-after", "2")]);
    assert_eq!(retry_delay(&h, fixed_now()), Some(Duration::from_secs(2)));
    let h = headers(&[
        ("x-ratelimit-remaining-requests", "many"),
        ("x-ratelimit-reset-tokens", "later"),
        ("x-ratelimit-remaining-tokens", "10"),
        ("anthropic-ratelimit-requests-remaining", "-1"),
        ("anthropic-ratelimit-tokens-remaining", "5"),
        ("anthropic-ratelimit-tokens-reset", "yesterday"),
    ]);
    let limits = ProviderHeaders::parse(&h, fixed_now());
    assert_eq!(limits.len(), 2, "{limits:?}");
    assert!(limits.iter().all(|l| l.reset_in.is_none()));
    for bad in ["", "5", "1x", "m", "1.2.3s", "-1s"] {
        assert_eq!(parse_go_duration(bad), None, "{bad:?}");
    }
}

#[test]
fn status_codes_map_to_outcomes() {
    assert_eq!(
        classify(429, &[("retry-after", "3")]),
        Outcome::RateLimited {
            retry_after: Some(Duration::from_secs(3))
        }
    );
    // Anthropic's spend cap: a 429 with no retry-after and no rate-limit headers.
    assert_eq!(classify(429, &[]), Outcome::SpendCapReached);
    assert_eq!(
        classify(429, &[("retry-after", "3"), ("x-should-retry", "false")]),
        Outcome::SpendCapReached
    );
    // A 429 with only reset headers waits for the exhausted limit's reset.
    assert_eq!(
        classify(
            429,
            &[
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "120ms"),
                ("x-ratelimit-remaining-tokens", "500"),
                ("x-ratelimit-reset-tokens", "9s"),
            ]
        ),
        Outcome::RateLimited {
            retry_after: Some(Duration::from_millis(120))
        }
    );
    assert_eq!(
        classify(529, &[]),
        Outcome::Overloaded { retry_after: None }
    );
    assert_eq!(
        classify(503, &[("retry-after", "1")]),
        Outcome::Overloaded {
            retry_after: Some(Duration::from_secs(1))
        }
    );
    for s in [408, 409, 500, 502] {
        assert_eq!(
            classify(s, &[]),
            Outcome::Transient { retry_after: None },
            "{s}"
        );
    }
    for s in [400, 401, 403, 404, 413] {
        assert_eq!(classify(s, &[]), Outcome::Fatal, "{s}");
    }
    assert_eq!(
        classify(400, &[("x-should-retry", "true")]),
        Outcome::Transient { retry_after: None }
    );
    assert_eq!(
        classify(500, &[("x-should-retry", "false")]),
        Outcome::Fatal
    );
    let err: Result<&Response<()>, &std::io::Error> =
        Err(&std::io::Error::other("connection reset"));
    assert_eq!(
        HttpClassifier::new().classify(err).outcome,
        Outcome::Transient { retry_after: None }
    );
}

// ===== through the layer =====

/// A provider that answers with the next scripted response, and logs when calls reached it.
#[derive(Clone)]
struct Script {
    answers: Arc<Mutex<Vec<Response<()>>>>,
    log: Arc<Mutex<Vec<Duration>>>,
    start: Instant,
    latency: Duration,
}

impl Script {
    fn new(start: Instant, answers: Vec<Response<()>>) -> Self {
        let mut answers = answers;
        answers.reverse();
        Script {
            answers: Arc::new(Mutex::new(answers)),
            log: Arc::default(),
            start,
            latency: Duration::ZERO,
        }
    }
    fn latency(mut self, l: Duration) -> Self {
        self.latency = l;
        self
    }
    fn times(&self) -> Vec<Duration> {
        self.log.lock().unwrap().clone()
    }
}

fn ok() -> Response<()> {
    Response::new(())
}

fn answer(status: u16, pairs: &[(&str, &str)]) -> Response<()> {
    let mut r = Response::new(());
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    *r.headers_mut() = headers(pairs);
    r
}

type Client = tower::util::BoxCloneService<u32, Response<()>, BoxError>;

fn client(b: ThrottleBuilder, script: &Script) -> (Limiter, Client) {
    let layer = b
        .classify(HttpClassifier::with_clock(fixed_now))
        .build()
        .unwrap();
    let limiter = layer.limiter().clone();
    let s = script.clone();
    let provider = tower::service_fn(move |_: u32| {
        let s = s.clone();
        async move {
            s.log.lock().unwrap().push(s.start.elapsed());
            tokio::time::sleep(s.latency).await;
            let next = s.answers.lock().unwrap().pop().unwrap_or_else(ok);
            Ok::<_, BoxError>(next)
        }
    });
    (
        limiter,
        Client::new(ServiceBuilder::new().layer(layer).service(provider)),
    )
}

fn rpm(n: u64) -> ScopeLimits {
    ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, n))
}

fn close(a: Duration, b: Duration) -> bool {
    a.abs_diff(b) <= Duration::from_millis(2)
}

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_pauses_every_clone_for_exactly_that_long() {
    let start = Instant::now();
    let script = Script::new(start, vec![answer(429, &[("retry-after", "7")])]);
    let (_, svc) = client(
        ThrottleLayer::builder().scope("global", rpm(6_000)),
        &script,
    );
    let first = svc.clone().oneshot(0).await.unwrap();
    assert_eq!(first.status(), 429);
    // Ten clones in ten tasks, all sent right after the 429.
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot(i).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().status(), 200);
    }
    let times = script.times();
    assert_eq!(times.len(), 11);
    // Nobody went before 7 s; the first went at 7 s, not later.
    assert!(
        times[1..].iter().all(|t| *t >= Duration::from_secs(7)),
        "{times:?}"
    );
    assert!(close(times[1], Duration::from_secs(7)), "{times:?}");
}

#[tokio::test(start_paused = true)]
async fn calls_in_flight_are_not_paused_and_a_second_429_extends_never_stacks() {
    let start = Instant::now();
    let script = Script::new(
        start,
        vec![
            answer(429, &[("retry-after", "5")]),
            answer(429, &[("retry-after", "3")]),
        ],
    )
    .latency(Duration::from_millis(100));
    let (_, svc) = client(
        ThrottleLayer::builder().scope("global", rpm(6_000)),
        &script,
    );
    // Two calls admitted together: both in flight when the first 429 arrives.
    let (a, b) = tokio::join!(svc.clone().oneshot(0), svc.clone().oneshot(1));
    assert_eq!(
        (a.unwrap().status().as_u16(), b.unwrap().status().as_u16()),
        (429, 429)
    );
    // Both reached the provider at once; 5 s and 3 s from the same instant (0.1 s): the pause
    // ends at 5.1 s, not 8.1 s.
    svc.clone().oneshot(2).await.unwrap();
    let t = script.times();
    assert!(close(t[1], Duration::ZERO), "{t:?}");
    assert!(close(t[2], Duration::from_millis(5_100)), "{t:?}");
}

#[tokio::test(start_paused = true)]
async fn without_a_retry_delay_the_cooldown_is_computed() {
    let start = Instant::now();
    let limited = || answer(429, &[("x-ratelimit-remaining-requests", "3")]);
    let script = Script::new(start, vec![limited(), limited(), ok()]);
    let b = ThrottleLayer::builder()
        .scope("global", rpm(6_000))
        .cooldown(Cooldown {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(3),
        });
    let (_, svc) = client(b, &script);
    for i in 0..4 {
        svc.clone().oneshot(i).await.unwrap();
    }
    let t = script.times();
    // 2 s after the first 429, then min(4, 3) = 3 s after the second; then no pause.
    assert!(close(t[1], Duration::from_secs(2)), "{t:?}");
    assert!(close(t[2], Duration::from_secs(5)), "{t:?}");
    assert!(close(t[3], Duration::from_secs(5)), "{t:?}");
}

#[tokio::test(start_paused = true)]
async fn a_header_showing_less_remaining_lowers_local_capacity() {
    let start = Instant::now();
    // Another client shares the key: the provider says 2 requests remain of 60.
    let script = Script::new(
        start,
        vec![answer(
            200,
            &[
                ("x-ratelimit-limit-requests", "60"),
                ("x-ratelimit-remaining-requests", "2"),
            ],
        )],
    );
    let (limiter, svc) = client(ThrottleLayer::builder().scope("global", rpm(60)), &script);
    svc.clone().oneshot(0).await.unwrap();
    let g = limiter.scope_stats("global").unwrap();
    assert!((g.buckets[0].available - 2.0).abs() < 1e-6, "{g:?}");
    // Two go at once, the third waits for one request to refill (1 s).
    for i in 1..=3 {
        svc.clone().oneshot(i).await.unwrap();
    }
    let t = script.times();
    assert!(
        close(t[2], Duration::ZERO) && close(t[3], Duration::from_secs(1)),
        "{t:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_header_never_raises_local_capacity() {
    let start = Instant::now();
    let script = Script::new(
        start,
        vec![answer(
            200,
            &[
                ("x-ratelimit-limit-requests", "1000"),
                ("x-ratelimit-remaining-requests", "999"),
            ],
        )],
    );
    let (limiter, svc) = client(ThrottleLayer::builder().scope("global", rpm(10)), &script);
    svc.oneshot(0).await.unwrap();
    let g = limiter.scope_stats("global").unwrap();
    assert!((g.buckets[0].available - 9.0).abs() < 1e-6, "{g:?}");
}

#[tokio::test(start_paused = true)]
async fn header_sync_can_be_turned_off() {
    let start = Instant::now();
    let script = Script::new(
        start,
        vec![answer(200, &[("x-ratelimit-remaining-requests", "0")])],
    );
    let b = ThrottleLayer::builder()
        .scope("global", rpm(10))
        .header_sync(false);
    let (limiter, svc) = client(b, &script);
    svc.oneshot(0).await.unwrap();
    let g = limiter.scope_stats("global").unwrap();
    assert!((g.buckets[0].available - 9.0).abs() < 1e-6, "{g:?}");
}

// ===== retry =====

mod retry {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tollgate::retry::RetryPolicy;
    use tollgate_core::rand_core::SeedableRng;
    use tollgate_core::{Backoff, Jitter, RetryBudget};

    type Retrying = (
        Client,
        Arc<AtomicU32>,
        RetryPolicy<HttpClassifier, ChaCha8Rng>,
    );

    /// A throttled client with a retry outside it, against a provider that always answers `status`.
    fn retrying(status: u16, max_retries: u32) -> Retrying {
        let calls = Arc::new(AtomicU32::new(0));
        let counter = calls.clone();
        let provider = tower::service_fn(move |_: u32| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, BoxError>(answer(status, &[])) }
        });
        let throttle = ThrottleLayer::builder()
            .scope(
                "global",
                ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, 600_000)),
            )
            .build()
            .unwrap();
        let backoff = Backoff::builder()
            .jitter(Jitter::Full)
            .base(Duration::from_millis(10))
            .cap(Duration::from_millis(100))
            .max_retries(max_retries)
            .build()
            .unwrap();
        let policy = RetryPolicy::new(
            HttpClassifier::with_clock(fixed_now),
            backoff,
            RetryBudget::default(),
            ChaCha8Rng::seed_from_u64(1),
        );
        let svc = ServiceBuilder::new()
            .layer(policy.clone().into_layer())
            .layer(throttle)
            .service(provider);
        (Client::new(svc), calls, policy)
    }

    #[tokio::test(start_paused = true)]
    async fn under_total_failure_retries_never_exceed_the_budget() {
        let (svc, calls, policy) = retrying(503, 10);
        for i in 0..50 {
            let res = svc.clone().oneshot(i).await.unwrap();
            assert_eq!(res.status(), 503);
        }
        // 50 first tries, and the budget (500 tokens, 5 a retry) pays for exactly 100 retries,
        // though the calls asked for 500.
        assert_eq!(calls.load(Ordering::SeqCst), 150);
        assert_eq!(policy.budget().available(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn each_call_stops_at_its_maximum_retries() {
        let (svc, calls, _) = retrying(500, 2);
        svc.oneshot(0).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn spend_cap_and_fatal_answers_are_never_retried() {
        for status in [429, 400, 401] {
            let (svc, calls, _) = retrying(status, 5);
            svc.oneshot(0).await.unwrap();
            assert_eq!(calls.load(Ordering::SeqCst), 1, "{status}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_throttles_own_refusals_are_never_retried() {
        let calls = Arc::new(AtomicU32::new(0));
        let counter = calls.clone();
        let provider = tower::service_fn(move |_: u32| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, BoxError>(ok()) }
        });
        let throttle = ThrottleLayer::builder()
            .scope("global", rpm(60))
            .max_wait(Duration::from_millis(10))
            .refuse_over_max_wait(true)
            .build()
            .unwrap();
        let policy = RetryPolicy::new(
            HttpClassifier::new(),
            Backoff::default(),
            RetryBudget::default(),
            ChaCha8Rng::seed_from_u64(1),
        );
        let svc = ServiceBuilder::new()
            .layer(policy.into_layer())
            .layer(throttle)
            .service(provider);
        let svc = tower::util::BoxCloneService::new(svc);
        for i in 0..60 {
            svc.clone().oneshot(i).await.unwrap();
        }
        let err = svc.oneshot(60).await.unwrap_err();
        assert!(err
            .downcast_ref::<tollgate::ThrottleError>()
            .unwrap()
            .is_max_wait());
        assert_eq!(calls.load(Ordering::SeqCst), 60);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_reproducible_from_the_seed() {
        async fn run() -> Vec<Duration> {
            let start = Instant::now();
            let times = Arc::new(Mutex::new(Vec::new()));
            let log = times.clone();
            let provider = tower::service_fn(move |_: u32| {
                log.lock().unwrap().push(start.elapsed());
                async move { Ok::<_, BoxError>(answer(500, &[])) }
            });
            let policy = RetryPolicy::new(
                HttpClassifier::new(),
                Backoff::builder()
                    .jitter(Jitter::Decorrelated)
                    .base(Duration::from_millis(100))
                    .cap(Duration::from_secs(10))
                    .max_retries(6)
                    .build()
                    .unwrap(),
                RetryBudget::default(),
                ChaCha8Rng::seed_from_u64(42),
            );
            let svc = ServiceBuilder::new()
                .layer(policy.into_layer())
                .service(provider);
            svc.oneshot(0).await.unwrap();
            let t = times.lock().unwrap().clone();
            t
        }
        let (a, b) = (run().await, run().await);
        assert_eq!(a.len(), 7);
        let gaps: Vec<_> = a.windows(2).map(|w| w[1] - w[0]).collect();
        let gaps_b: Vec<_> = b.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps, gaps_b);
        // Decorrelated jitter: each gap in [base, min(cap, 3 × previous)] (1 ms timer rounding).
        let mut prev = Duration::from_millis(100);
        for g in gaps {
            assert!(g >= Duration::from_millis(100), "{g:?}");
            assert!(g <= (prev * 3).min(Duration::from_secs(10)) + Duration::from_millis(1));
            prev = g;
        }
    }
}

// ===== adaptive =====

#[tokio::test(start_paused = true)]
async fn the_adaptive_rate_follows_the_documented_curve() {
    let start = Instant::now();
    let script = Script::new(start, vec![answer(429, &[("retry-after", "1")])]);
    let (limiter, svc) = adaptive_client(&script);
    let per_period = || limiter.scope_stats("global").unwrap().buckets[0].per_period;
    assert_eq!(per_period(), 600.0);
    svc.clone().oneshot(0).await.unwrap();
    // Cut to 0.7 of W = 10 requests/s.
    assert!((per_period() - 420.0).abs() < 1e-6, "{}", per_period());
    // A success a minute later: rate(t) = 0.7·W + a·t with a = (1 − 0.7)²·W / (2·60 s).
    tokio::time::sleep(Duration::from_secs(60)).await;
    svc.clone().oneshot(1).await.unwrap();
    let t = start.elapsed().as_secs_f64();
    let expect = (7.0 + 0.09 * 10.0 / 120.0 * t) * 60.0;
    assert!(
        (per_period() - expect).abs() < 0.5,
        "{} vs {expect}",
        per_period()
    );
    // Past 2·P / (1 − β) = 400 s the configured limit is back, and never above it.
    tokio::time::sleep(Duration::from_secs(340)).await;
    svc.clone().oneshot(2).await.unwrap();
    assert_eq!(per_period(), 600.0);
    tokio::time::sleep(Duration::from_secs(300)).await;
    svc.clone().oneshot(3).await.unwrap();
    assert_eq!(per_period(), 600.0);
}

#[tokio::test(start_paused = true)]
async fn the_adaptive_rate_never_goes_below_its_floor() {
    let start = Instant::now();
    let limited = || answer(429, &[("retry-after", "0")]);
    let script = Script::new(start, (0..20).map(|_| limited()).collect());
    let b = ThrottleLayer::builder()
        .scope("global", rpm(600))
        .adaptive(0.2);
    let (limiter, svc) = client(b, &script);
    for i in 0..20 {
        svc.clone().oneshot(i).await.unwrap();
        // Past the grace after a cut (0.05 × 60 s), each throttle cuts again.
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    let p = limiter.scope_stats("global").unwrap().buckets[0].per_period;
    assert!((p - 120.0).abs() < 1e-6, "{p}");
}

/// Throttles that answer calls sent before a cut do not cut again: a burst of 429s cuts the
/// rate once.
#[tokio::test(start_paused = true)]
async fn a_burst_of_throttles_cuts_the_adaptive_rate_once() {
    let start = Instant::now();
    let limited = || answer(429, &[("retry-after", "0")]);
    let script = Script::new(start, (0..5).map(|_| limited()).collect());
    let (limiter, svc) = adaptive_client(&script);
    for i in 0..5 {
        svc.clone().oneshot(i).await.unwrap();
    }
    let p = limiter.scope_stats("global").unwrap().buckets[0].per_period;
    assert!((p - 420.0).abs() < 1e-6, "{p}");
}

/// An answer of a key that really refills at 7 requests a second (told 10): the provider's bucket
/// of 420 held `x` right after it charged the call, and the answer is read `age` after that
/// (its `reset` is then `age` shorter).
fn report_read_after(x: f64, age: Duration) -> Response<()> {
    let remaining = (x.floor() as u64).to_string();
    let reset = format!("{:.3}s", (420.0 - x) / 7.0 - age.as_secs_f64());
    answer(
        200,
        &[
            ("x-ratelimit-limit-requests", "600"),
            ("x-ratelimit-remaining-requests", remaining.as_str()),
            ("x-ratelimit-reset-requests", reset.as_str()),
        ],
    )
}

/// Levels of the provider's bucket that teach the adaptive mode its rate.
const LEVELS: [f64; 10] = [
    400.5, 390.2, 350.0, 301.7, 250.25, 199.9, 150.0, 120.6, 99.0, 80.4,
];

/// A client of the layer in the adaptive mode (floor 10 %) on 600 requests a minute.
fn adaptive_client(script: &Script) -> (Limiter, Client) {
    let b = ThrottleLayer::builder()
        .scope("global", rpm(600))
        .adaptive(0.1);
    client(b, script)
}

/// Sends the calls the answers of [`LEVELS`] go to, one after the other.
async fn learn_levels(svc: &Client) {
    for i in 0..LEVELS.len() as u32 {
        svc.clone().oneshot(i).await.unwrap();
    }
}

/// A key that really refills at 70 % of its configured rate for this client: the answers'
/// `remaining` and `reset` tell it, and the adaptive mode scales the limits to it without a
/// single 429.
#[tokio::test(start_paused = true)]
async fn the_adaptive_mode_learns_the_rate_the_answers_report() {
    let start = Instant::now();
    // Configured 600 a minute; really 420 a minute (7/s), answers read at once.
    let answers = LEVELS
        .iter()
        .map(|&x| report_read_after(x, Duration::ZERO))
        .collect();
    let script = Script::new(start, answers);
    let (limiter, svc) = adaptive_client(&script);
    let per_period = || limiter.scope_stats("global").unwrap().buckets[0].per_period;
    for i in 0..LEVELS.len() as u32 {
        svc.clone().oneshot(i).await.unwrap();
        if i + 1 < tollgate_core::RefillEstimate::MIN_SAMPLES as u32 {
            assert_eq!(per_period(), 600.0, "trusted after {} answers", i + 1);
        }
    }
    let p = per_period();
    assert!((p - 420.0).abs() < 0.01 * 420.0, "{p}");
}

/// Once the adaptive mode knows the rate the requests really refill at, a report read late is
/// applied as of the call's admission: the bucket keeps what the provider refilled while the
/// answer was on its way (less the requests admitted meanwhile), where a report applied as read
/// would leave only what it says remained.
#[tokio::test(start_paused = true)]
async fn in_the_adaptive_mode_a_report_read_late_keeps_the_refill_meanwhile() {
    let start = Instant::now();
    let age = Duration::from_secs(2);
    let mut answers: Vec<_> = LEVELS.iter().map(|&x| report_read_after(x, age)).collect();
    // Call A finds 10.5 left; call B, admitted a second after A, is answered without a report.
    answers.push(report_read_after(10.5, age));
    answers.push(ok());
    let script = Script::new(start, answers).latency(age);
    let (limiter, svc) = adaptive_client(&script);
    learn_levels(&svc).await;
    let p = limiter.scope_stats("global").unwrap().buckets[0].per_period;
    assert!((p - 420.0).abs() < 0.01 * 420.0, "{p}");
    // A full bucket again, then A, and B a second later.
    tokio::time::sleep(Duration::from_secs(120)).await;
    let a = tokio::spawn(svc.clone().oneshot(100));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let b = tokio::spawn(svc.clone().oneshot(101));
    // Just after A's answer is read: 10.5 + 7/s × 2 s − B.
    tokio::time::sleep(age - Duration::from_secs(1) + Duration::from_millis(1)).await;
    let available = limiter.scope_stats("global").unwrap().buckets[0].available;
    assert!((available - 23.5).abs() < 0.2, "{available}");
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
}

/// A 429 on a key whose answers tell its rate restarts the adaptive rate from what they allow
/// (at most 0.95 of the rate it was cut from), not from 0.7 of it.
#[tokio::test(start_paused = true)]
async fn a_429_restarts_from_the_rate_the_answers_report() {
    let start = Instant::now();
    let mut answers: Vec<_> = LEVELS
        .iter()
        .map(|&x| report_read_after(x, Duration::ZERO))
        .collect();
    answers.push(answer(429, &[("retry-after", "0")]));
    let script = Script::new(start, answers);
    let (limiter, svc) = adaptive_client(&script);
    let per_period = || limiter.scope_stats("global").unwrap().buckets[0].per_period;
    learn_levels(&svc).await;
    let before = per_period();
    assert!((before - 420.0).abs() < 0.01 * 420.0, "{before}");
    svc.clone().oneshot(100).await.unwrap();
    let after = per_period();
    assert!((after - 0.95 * before).abs() < 0.01 * before, "{after}");
}

/// Without rate-limit headers, the requests that went through between two 429s measure the rate
/// the provider refills at, and the second cut restarts from it instead of 0.7 of the rate.
#[tokio::test(start_paused = true)]
async fn the_requests_between_two_429s_measure_the_refill() {
    let start = Instant::now();
    let limited = || answer(429, &[("retry-after", "0")]);
    let mut answers = vec![limited()];
    answers.extend((0..99).map(|_| ok()));
    answers.push(limited());
    let script = Script::new(start, answers);
    let (limiter, svc) = adaptive_client(&script);
    let per_period = || limiter.scope_stats("global").unwrap().buckets[0].per_period;
    svc.clone().oneshot(0).await.unwrap();
    assert!((per_period() - 420.0).abs() < 1e-6, "{}", per_period());
    // 99 calls, one every 1/6 s (below the climbing 7 a second), then the second 429.
    for i in 1..=100 {
        tokio::time::sleep(Duration::from_micros(166_667)).await;
        svc.clone().oneshot(i).await.unwrap();
    }
    let t = script.times();
    let span = (t[100] - t[0]).as_secs_f64();
    let measured = 99.0 / span * 60.0;
    assert!((measured - 360.0).abs() < 0.02 * 360.0, "{measured}");
    // 0.7 × W would be about 300 a minute.
    let p = per_period();
    assert!((p - measured).abs() < 0.01 * measured, "{p} vs {measured}");
}

#[tokio::test(start_paused = true)]
async fn a_cut_of_the_adaptive_rate_reaches_every_process_sharing_the_store() {
    let start = Instant::now();
    let cut = Arc::new(Mutex::new(None));
    let process = |answers: Vec<Response<()>>| {
        let script = Script::new(start, answers);
        let layer = ThrottleLayer::builder()
            .scope("global", rpm(600))
            .adaptive(0.1)
            .wall_clock(1_767_225_600_000)
            .classify(HttpClassifier::with_clock(fixed_now))
            .build_with_store(TestStore {
                cuts: cut.clone(),
                ..TestStore::default()
            })
            .unwrap();
        let limiter = layer.limiter().clone();
        let s = script.clone();
        let svc = ServiceBuilder::new()
            .layer(layer)
            .service(tower::service_fn(move |_: u32| {
                let s = s.clone();
                async move { Ok::<_, BoxError>(s.answers.lock().unwrap().pop().unwrap_or_else(ok)) }
            }));
        (limiter, svc)
    };
    let (a, svc_a) = process(vec![answer(429, &[("retry-after", "0")])]);
    let (b, svc_b) = process(vec![]);
    let per_period =
        |l: &tollgate::Limiter<TestStore>| l.scope_stats("global").unwrap().buckets[0].per_period;
    // Process B is at full rate; process A is told 429 and cuts 10 requests/s to 7 ...
    svc_b.clone().oneshot(0).await.unwrap();
    assert_eq!(per_period(&b), 600.0);
    svc_a.clone().oneshot(0).await.unwrap();
    assert!((per_period(&a) - 420.0).abs() < 1e-6, "{}", per_period(&a));
    let published = cut.lock().unwrap().expect("the cut is published");
    assert_eq!(published.at_unix_ms, 1_767_225_600_000);
    assert_eq!(published.max_rate, 10.0);
    // ... and B, at its next answer 100 ms later, follows the same line as A.
    tokio::time::advance(Duration::from_millis(100)).await;
    svc_b.clone().oneshot(1).await.unwrap();
    svc_a.clone().oneshot(1).await.unwrap();
    let (pa, pb) = (per_period(&a), per_period(&b));
    assert!(pb < 430.0, "B did not follow the cut: {pb}");
    // (Each applies a move of more than 1 % only.)
    assert!((pa - pb).abs() < 0.01 * pa, "A {pa} and B {pb} differ");
    // Both recover to the configured limit past 2·P / (1 − β) = 400 s.
    tokio::time::advance(Duration::from_secs(400)).await;
    svc_b.clone().oneshot(2).await.unwrap();
    assert_eq!(per_period(&b), 600.0);
}
