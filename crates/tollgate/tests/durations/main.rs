//! Durations from anywhere — the builder, the configuration file, the limiter's methods, a
//! classifier, a provider's headers — on tokio's paused clock: none makes a call panic or wait
//! for ever, and no provider delay pauses the layer for longer than its longest provider delay.

use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use std::future::Future;
use std::time::{Duration, SystemTime};
use tokio::time::{timeout, Instant};
use tollgate::feedback::{Classify, Cooldown, Feedback, HttpClassifier, Outcome};
use tollgate::retry::RetryPolicy;
use tollgate::{
    BoxError, Dimension, GlobalScope, Hooks, KeepEstimate, Limit, OneRequest, Rule, SamePriority,
    ScopeLimits, ThrottleBuilder, ThrottleConfig, ThrottleError, ThrottleLayer,
    DEFAULT_MAX_PROVIDER_DELAY, MAX_DURATION,
};
use tollgate_core::rand_core::SeedableRng;
use tollgate_core::{Backoff, RetryBudget};
use tower::{Layer, ServiceBuilder, ServiceExt};

/// 2026-01-01T00:00:00Z, the wall clock of these tests.
fn fixed_now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

/// A scope roomy enough that only cooldowns and `max_wait` make a call wait.
fn roomy() -> ScopeLimits {
    ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, 1_000_000))
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn classify_429(pairs: &[(&str, &str)]) -> Outcome {
    HttpClassifier::with_clock(fixed_now)
        .classify_parts(StatusCode::TOO_MANY_REQUESTS, &headers(pairs))
        .outcome
}

fn close(a: Duration, b: Duration) -> bool {
    a.abs_diff(b) <= Duration::from_millis(2)
}

/// A classifier that reports the same outcome for every answer.
#[derive(Clone, Copy, Debug)]
struct Always(Outcome);

impl Classify<(), BoxError> for Always {
    fn classify(&self, _: Result<&(), &BoxError>) -> Feedback {
        Feedback::outcome(self.0)
    }
}

/// A layer with the default hooks and the classifier [`Always`].
type AlwaysLayer =
    ThrottleLayer<Hooks<GlobalScope, OneRequest, KeepEstimate, SamePriority, Always>>;

/// Sends one call through `layer` to a provider that answers at once; returns when it ended
/// (since `start`) and how.
async fn one_call<L>(layer: &L, start: Instant) -> (Duration, Result<(), BoxError>)
where
    L: Layer<tower::util::ServiceFn<fn(()) -> std::future::Ready<Result<(), BoxError>>>>,
    L::Service: tower::Service<(), Response = (), Error = BoxError>,
{
    let ok: fn(()) -> std::future::Ready<Result<(), BoxError>> = |_| std::future::ready(Ok(()));
    let res = layer.layer(tower::service_fn(ok)).oneshot(()).await;
    (start.elapsed(), res)
}

/// A layer read from TOML: `setting` and a `global` scope of 60 requests per minute.
fn from_toml(setting: &str) -> ThrottleLayer {
    let text = format!("{setting}\n[scopes.global]\nrequests_per_minute = 60\n");
    let config = ThrottleConfig::from_toml(&text).unwrap();
    config.builder().unwrap().build().unwrap()
}

/// Runs `f` on a fresh current-thread runtime on the paused clock (for proptests).
fn paused<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime")
        .block_on(f)
}

// ===== settings =====

/// Regression: `max_wait(Duration::MAX)` built, then every call panicked ("overflow when adding
/// duration to instant") computing its deadline. It is now taken as `MAX_DURATION`: a call that
/// must wait waits and is admitted, also when a predicted wait over the maximum is refused.
#[tokio::test(start_paused = true)]
async fn a_max_wait_of_duration_max_lets_calls_wait_and_go() {
    for refuse_over in [false, true] {
        let layer = ThrottleLayer::builder()
            .scope(
                "global",
                ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, 1)),
            )
            .max_wait(Duration::MAX)
            .refuse_over_max_wait(refuse_over)
            .build()
            .unwrap();
        let start = Instant::now();
        let (at, first) = one_call(&layer, start).await;
        assert!(first.is_ok() && at == Duration::ZERO);
        let (at, second) = one_call(&layer, start).await;
        assert!(second.is_ok(), "{second:?}");
        assert!(close(at, Duration::from_secs(60)), "{at:?}");
    }
}

/// Regression: `max_wait = "300000000000y"` in TOML (more seconds than an `Instant` can add)
/// built, then every call panicked. It is now taken as `MAX_DURATION`.
#[tokio::test(start_paused = true)]
async fn a_toml_max_wait_beyond_any_instant_lets_calls_go() {
    let layer = from_toml("max_wait = \"300000000000y\"");
    let (_, res) = one_call(&layer, Instant::now()).await;
    assert!(res.is_ok(), "{res:?}");
}

/// Regression: a computed cooldown of `Duration::MAX` panicked inside the call's future. It is
/// now a cooldown of `MAX_DURATION`, and a call behind it ends at its `max_wait`.
#[tokio::test(start_paused = true)]
async fn a_cooldown_of_duration_max_holds_calls_until_their_max_wait() {
    let layer = ThrottleLayer::builder()
        .scope("global", roomy())
        .cooldown(Cooldown {
            base: Duration::MAX,
            cap: Duration::MAX,
        })
        .max_wait(Duration::from_secs(10))
        .classify(Always(Outcome::RateLimited { retry_after: None }))
        .build()
        .unwrap();
    let start = Instant::now();
    assert!(one_call(&layer, start).await.1.is_ok());
    let (at, res) = one_call(&layer, start).await;
    let err = res.unwrap_err();
    assert!(err.downcast_ref::<ThrottleError>().unwrap().is_max_wait());
    assert!(close(at, Duration::from_secs(10)), "{at:?}");
}

#[test]
fn the_longest_provider_delay_must_not_be_zero() {
    let err = ThrottleLayer::builder()
        .max_provider_delay(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.rule(), Rule::ZeroDuration);
    let err = ThrottleConfig::from_toml("max_provider_delay = \"0s\"")
        .unwrap()
        .builder()
        .unwrap()
        .build()
        .unwrap_err();
    assert_eq!(err.rule(), Rule::ZeroDuration);
    assert!(ThrottleLayer::builder()
        .max_provider_delay(Duration::MAX)
        .build()
        .is_ok());
}

// ===== provider delays through the layer =====

/// Regression: `Limiter::cool_down(Duration::MAX)` panicked. It now pauses the provider scope
/// for the longest provider delay, 24 h by default.
#[tokio::test(start_paused = true)]
async fn cool_down_of_duration_max_lasts_the_longest_provider_delay() {
    let layer = ThrottleLayer::builder()
        .scope("global", roomy())
        .build()
        .unwrap();
    let start = Instant::now();
    layer.limiter().cool_down(Duration::MAX);
    let (at, res) = one_call(&layer, start).await;
    assert!(res.is_ok());
    assert!(close(at, DEFAULT_MAX_PROVIDER_DELAY), "{at:?}");
}

/// The TOML key sets the longest provider delay.
#[tokio::test(start_paused = true)]
async fn the_toml_key_sets_the_longest_provider_delay() {
    let layer = from_toml("max_provider_delay = \"2h\"");
    let start = Instant::now();
    layer.limiter().cool_down(Duration::from_secs(30 * 86_400));
    let (at, res) = one_call(&layer, start).await;
    assert!(res.is_ok());
    assert!(close(at, Duration::from_secs(7_200)), "{at:?}");
}

/// Regression: a classifier's `retry_after: Some(Duration::MAX)` panicked inside the call's
/// future. The call now ends with its answer, and the next one waits the longest provider delay,
/// for a rate-limited and an overloaded answer alike.
#[tokio::test(start_paused = true)]
async fn a_classifier_delay_of_duration_max_lasts_the_longest_provider_delay() {
    let max = Duration::from_secs(3_600);
    for outcome in [
        Outcome::RateLimited {
            retry_after: Some(Duration::MAX),
        },
        Outcome::Overloaded {
            retry_after: Some(Duration::MAX),
        },
    ] {
        let layer = ThrottleLayer::builder()
            .scope("global", roomy())
            .max_provider_delay(max)
            .classify(Always(outcome))
            .build()
            .unwrap();
        let start = Instant::now();
        assert!(one_call(&layer, start).await.1.is_ok());
        let (at, res) = one_call(&layer, start).await;
        assert!(res.is_ok());
        assert!(close(at, max), "{outcome:?}: {at:?}");
    }
}

// ===== the HTTP classifier =====

/// Regression: a `retry-after` date in year 9999 was a delay of 2.5·10¹¹ s, and `1e10` seconds
/// one of 31 years; resets as far were taken as they came. Each is now the classifier's longest
/// delay, 24 h by default.
#[test]
fn far_retry_delays_and_resets_are_cut_to_the_longest_delay() {
    let day = Some(DEFAULT_MAX_PROVIDER_DELAY);
    let far: [&[(&str, &str)]; 5] = [
        &[("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")],
        &[("retry-after", "1e10")],
        &[("retry-after-ms", "1e15")],
        &[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "277777h"),
        ],
        &[
            ("anthropic-ratelimit-requests-remaining", "0"),
            ("anthropic-ratelimit-requests-reset", "9999-12-31T23:59:59Z"),
        ],
    ];
    for pairs in far {
        let fb = HttpClassifier::with_clock(fixed_now)
            .classify_parts(StatusCode::TOO_MANY_REQUESTS, &headers(pairs));
        assert_eq!(
            fb.outcome,
            Outcome::RateLimited { retry_after: day },
            "{pairs:?}"
        );
        assert!(fb.limits.iter().all(|l| l.reset_in <= day), "{pairs:?}");
        let short = HttpClassifier::with_clock(fixed_now)
            .max_delay(Duration::from_secs(600))
            .classify_parts(StatusCode::TOO_MANY_REQUESTS, &headers(pairs));
        let ten_minutes = Some(Duration::from_secs(600));
        assert_eq!(short.outcome.retry_after(), ten_minutes, "{pairs:?}");
    }
    // A delay within the maximum is kept as it is.
    assert_eq!(
        classify_429(&[("retry-after", "Thu, 01 Jan 2026 00:00:30 GMT")]),
        Outcome::RateLimited {
            retry_after: Some(Duration::from_secs(30))
        }
    );
}

/// Regression: a 429 whose delay could not be read (and without rate-limit headers) was taken
/// for a spend cap: never retried. It is a rate limit whose delay is not known.
#[test]
fn a_429_with_an_unreadable_delay_is_rate_limited_not_a_spend_cap() {
    let unknown = Outcome::RateLimited { retry_after: None };
    for bad in ["abc", "-5", "1e400", "", "NaN", "inf"] {
        assert_eq!(classify_429(&[("retry-after", bad)]), unknown, "{bad:?}");
        assert_eq!(classify_429(&[("retry-after-ms", bad)]), unknown, "{bad:?}");
    }
    assert_eq!(
        classify_429(&[("x-ratelimit-remaining-requests", "many")]),
        unknown
    );
    // What really says spend cap still does: no delay and no limit named, or `x-should-retry`.
    assert_eq!(classify_429(&[]), Outcome::SpendCapReached);
    assert_eq!(
        classify_429(&[("retry-after", "abc"), ("x-should-retry", "false")]),
        Outcome::SpendCapReached
    );
}

/// Through the layer and a retry policy, a 429 with an unreadable delay starts the computed
/// cooldown (2 s here) and is retried after it, where a spend cap would end the call.
#[tokio::test(start_paused = true)]
async fn a_429_with_an_unreadable_delay_is_retried_after_the_computed_cooldown() {
    let throttle = ThrottleLayer::builder()
        .scope("global", roomy())
        .cooldown(Cooldown {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(2),
        })
        .classify(HttpClassifier::with_clock(fixed_now))
        .build()
        .unwrap();
    let backoff = Backoff::builder()
        .base(Duration::from_millis(1))
        .cap(Duration::from_millis(1))
        .build()
        .unwrap();
    let retry = RetryPolicy::new(
        HttpClassifier::with_clock(fixed_now),
        backoff,
        RetryBudget::default(),
        rand_chacha::ChaCha8Rng::seed_from_u64(1),
    );
    let start = Instant::now();
    let times = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = times.clone();
    let provider = tower::service_fn(move |_: ()| {
        let mut seen = seen.lock().unwrap();
        seen.push(start.elapsed());
        let status = if seen.len() == 1 { 429 } else { 200 };
        let mut res = Response::new(());
        *res.status_mut() = StatusCode::from_u16(status).unwrap();
        res.headers_mut()
            .insert("retry-after", HeaderValue::from_static("abc"));
        std::future::ready(Ok::<_, BoxError>(res))
    });
    let client = ServiceBuilder::new()
        .layer(retry.into_layer())
        .layer(throttle)
        .service(provider);
    let res = client.oneshot(()).await.unwrap();
    assert_eq!(res.status(), 200);
    let times = times.lock().unwrap().clone();
    assert_eq!(times.len(), 2, "{times:?}");
    assert!(close(times[1], Duration::from_secs(2)), "{times:?}");
}

// ===== any input =====

/// Durations of every kind: the extremes, huge seconds, every nanosecond count, small ones.
fn any_duration() -> impl proptest::strategy::Strategy<Value = Duration> {
    use proptest::prelude::*;
    prop_oneof![
        Just(Duration::MAX),
        Just(Duration::ZERO),
        Just(MAX_DURATION),
        Just(Duration::new(u64::MAX, 0)),
        Just(Duration::new(i64::MAX as u64, 999_999_999)),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        (0u64..4 * 86_400_000, 0u32..1_000_000_000)
            .prop_map(|(ms, n)| { Duration::from_millis(ms) + Duration::from_nanos(u64::from(n)) }),
    ]
}

/// An outcome with any delay.
fn any_pushback() -> impl proptest::strategy::Strategy<Value = Outcome> {
    use proptest::prelude::*;
    (any::<bool>(), proptest::option::of(any_duration())).prop_map(|(limited, retry_after)| {
        if limited {
            Outcome::RateLimited { retry_after }
        } else {
            Outcome::Overloaded { retry_after }
        }
    })
}

/// Noise: any printable ASCII.
const NOISE: &str = "[ -~]{0,24}";

/// Numbers of seconds or milliseconds as providers write them, with any digits, signs and
/// exponents, or noise.
fn any_number() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        "[0-9]{1,30}",
        "-?[0-9]{0,20}(\\.[0-9]{0,12})?([eE][+-]?[0-9]{1,4})?",
        NOISE,
    ]
}

/// HTTP dates of any year up to 9999, or numbers.
fn any_retry_after() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        (0u64..253_402_300_799)
            .prop_map(|s| httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(s))),
        any_number(),
    ]
}

/// OpenAI's resets: Go durations with any numbers, or noise.
fn any_go_duration() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        "[0-9]{1,20}(\\.[0-9]{1,6})?(h|m|s|ms|us|ns)([0-9]{1,12}(h|m|s|ms))?",
        NOISE,
    ]
}

/// Anthropic's resets: RFC 3339 times of any year up to 9999, or noise.
fn any_rfc3339() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        (1970u32..=9999, 1u32..=12, 1u32..=28, 0u32..24)
            .prop_map(|(y, mo, d, h)| format!("{y:04}-{mo:02}-{d:02}T{h:02}:00:00Z")),
        NOISE,
    ]
}

/// A `remaining` count: mostly zero or small, sometimes anything.
fn any_remaining() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![Just("0".to_owned()), "[0-9]{1,3}", any_number()]
}

/// One header the classifier reads, with any value of the shape its name calls for.
fn any_header() -> impl proptest::strategy::Strategy<Value = (&'static str, String)> {
    use proptest::prelude::*;
    use proptest::sample::select;
    let named =
        |names: Vec<&'static str>, values: BoxedStrategy<String>| (select(names), values).boxed();
    prop_oneof![
        named(vec!["retry-after"], any_retry_after().boxed()),
        named(vec!["retry-after-ms"], any_number().boxed()),
        named(
            vec![
                "x-ratelimit-remaining-requests",
                "x-ratelimit-remaining-tokens",
                "anthropic-ratelimit-requests-remaining",
                "anthropic-ratelimit-tokens-remaining",
                "anthropic-ratelimit-input-tokens-remaining",
            ],
            any_remaining().boxed()
        ),
        named(
            vec!["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"],
            any_go_duration().boxed()
        ),
        named(
            vec![
                "anthropic-ratelimit-requests-reset",
                "anthropic-ratelimit-tokens-reset",
                "anthropic-ratelimit-input-tokens-reset",
            ],
            any_rfc3339().boxed()
        ),
        named(
            vec!["x-should-retry"],
            prop_oneof![Just("true".to_owned()), Just("false".to_owned()), NOISE].boxed()
        ),
    ]
}

/// Headers with any values under the names the classifier reads.
fn any_headers() -> impl proptest::strategy::Strategy<Value = HeaderMap> {
    use proptest::prelude::*;
    proptest::collection::vec(any_header(), 0..8).prop_map(|pairs| {
        let mut h = HeaderMap::new();
        for (name, v) in pairs {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.append(HeaderName::from_static(name), v);
            }
        }
        h
    })
}

/// The expected pause of the provider scope after `outcome` (its delay cut to `max`, or the
/// default computed cooldown's first second) and a `cool_down(extra)` at the same instant.
fn expected_pause(outcome: Option<Outcome>, extra: Option<Duration>, max: Duration) -> Duration {
    let answer = outcome.map_or(Duration::ZERO, |o| {
        o.retry_after()
            .map_or(Cooldown::default().after(1), |d| d.min(max))
    });
    answer.max(extra.map_or(Duration::ZERO, |d| d.min(max)))
}

/// Checks how the second call ended: when the pause ended (admitted), or at its maximum wait if
/// that came first (refused then, or at once when predicted waits over the maximum are
/// refused); and that the pause was no longer than the longest provider delay (or the computed
/// cooldown's first second).
fn check_second_call(
    at: Duration,
    res: Result<(), BoxError>,
    pause: Duration,
    max_wait: Option<Duration>,
    refuse_over: bool,
    max: Duration,
) -> Result<(), proptest::test_runner::TestCaseError> {
    use proptest::prop_assert;
    let max_wait = max_wait.map(|m| m.min(MAX_DURATION));
    let slack = Duration::from_millis(2);
    prop_assert!(pause <= max.max(Cooldown::default().after(1)));
    let refused_at_once = refuse_over && max_wait.is_some_and(|m| m + slack < pause);
    let end = match max_wait {
        _ if refused_at_once => Duration::ZERO,
        Some(m) => pause.min(m),
        None => pause,
    };
    prop_assert!(close(at, end), "{at:?}, expected {end:?}");
    match res {
        Ok(()) => prop_assert!(max_wait.is_none_or(|m| pause <= m + slack)),
        Err(e) => {
            let e = e.downcast_ref::<ThrottleError>().expect("a throttle error");
            prop_assert!(e.is_max_wait(), "{e}");
            prop_assert!(max_wait.is_some_and(|m| m <= pause + slack));
        }
    }
    Ok(())
}

/// A layer of these settings (with or without refusing predicted waits over the maximum) whose
/// classifier reports `outcome` (success when `None`).
fn layer_with(
    max_wait: Option<Duration>,
    refuse_over: bool,
    max_provider: Duration,
    outcome: Option<Outcome>,
) -> Result<AlwaysLayer, tollgate::ConfigError> {
    let mut b: ThrottleBuilder = ThrottleLayer::builder()
        .scope("global", roomy())
        .refuse_over_max_wait(refuse_over)
        .max_provider_delay(max_provider);
    if let Some(m) = max_wait {
        b = b.max_wait(m);
    }
    b.classify(Always(outcome.unwrap_or(Outcome::Success)))
        .build()
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(128))]

    /// Any `max_wait`, any longest provider delay, any `cool_down` and any delay a classifier
    /// reports: no panic, every setting either builds or is a zero refused with
    /// `ZeroDuration`, and the next call ends when the pause (cut to the longest provider
    /// delay) or its maximum wait ends, whichever is first.
    #[test]
    fn any_duration_through_the_layer(
        max_wait in proptest::option::of(any_duration()),
        refuse_over in proptest::bool::ANY,
        max_provider in any_duration(),
        cool_down in proptest::option::of(any_duration()),
        outcome in proptest::option::of(any_pushback()),
    ) {
        let built = layer_with(max_wait, refuse_over, max_provider, outcome);
        if max_wait.is_some_and(|m| m.is_zero()) || max_provider.is_zero() {
            proptest::prop_assert_eq!(built.unwrap_err().rule(), Rule::ZeroDuration);
            return Ok(());
        }
        let layer = built.expect("a valid layer");
        let max = max_provider.min(MAX_DURATION);
        let pause = expected_pause(outcome, cool_down, max);
        let (at, res) = paused(async {
            let start = Instant::now();
            let first = one_call(&layer, start).await;
            proptest::prop_assert!(first.1.is_ok() && first.0 == Duration::ZERO);
            if let Some(d) = cool_down {
                layer.limiter().cool_down(d);
            }
            let guard = pause.saturating_add(Duration::from_secs(1));
            Ok(timeout(guard, one_call(&layer, start)).await.expect("the call ends"))
        })?;
        check_second_call(at, res, pause, max_wait, refuse_over, max)?;
    }

    /// Any header values under the names it reads: the classifier does not panic, reports no
    /// delay or reset longer than its maximum, and takes no 429 that names a delay or a limit
    /// for a spend cap (unless `x-should-retry: false` says so).
    #[test]
    fn any_headers_through_the_classifier(
        h in any_headers(),
        max in any_duration(),
        status in proptest::sample::select(vec![429u16, 503, 529, 500, 408, 400, 200]),
    ) {
        let c = HttpClassifier::with_clock(fixed_now).max_delay(max);
        let fb = c.classify_parts(StatusCode::from_u16(status).unwrap(), &h);
        proptest::prop_assert!(fb.outcome.retry_after().is_none_or(|d| d <= max));
        proptest::prop_assert!(fb.limits.iter().all(|l| l.reset_in.is_none_or(|d| d <= max)));
        let named = h.contains_key("retry-after")
            || h.contains_key("retry-after-ms")
            || h.keys().any(|k| k.as_str().contains("-remaining"));
        let refused = h
            .get("x-should-retry")
            .is_some_and(|v| v.to_str().is_ok_and(|v| v.trim() == "false"));
        if status == 429 && named && !refused {
            let limited = matches!(fb.outcome, Outcome::RateLimited { .. });
            proptest::prop_assert!(limited, "{:?}", fb.outcome);
        }
    }

    /// A 429 with any headers, through the layer and its HTTP classifier: the call ends, and the
    /// next one waits at most the layer's longest provider delay (or the computed cooldown's
    /// first second when no delay could be read).
    #[test]
    fn any_429_headers_through_the_layer(h in any_headers(), max_provider in any_duration()) {
        proptest::prop_assume!(!max_provider.is_zero());
        let layer = ThrottleLayer::builder()
            .scope("global", roomy())
            .max_provider_delay(max_provider)
            .classify(HttpClassifier::with_clock(fixed_now))
            .build()
            .expect("a valid layer");
        let max = max_provider.min(MAX_DURATION);
        let bound = max.max(Cooldown::default().after(1));
        let answer = h.clone();
        let (first, second) = paused(async {
            let start = Instant::now();
            let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
            let provider = tower::service_fn(move |_: ()| {
                let n = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut res = Response::new(());
                if n == 0 {
                    *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                    *res.headers_mut() = answer.clone();
                }
                std::future::ready(Ok::<_, BoxError>(res))
            });
            let svc = layer.layer(provider);
            let guard = bound.saturating_add(Duration::from_secs(1));
            let first = timeout(guard, svc.clone().oneshot(())).await.expect("the call ends");
            let second = timeout(guard, svc.oneshot(())).await.expect("the call ends");
            (first.map(|r| r.status()), second.map(|_| start.elapsed()))
        });
        proptest::prop_assert_eq!(first.unwrap(), StatusCode::TOO_MANY_REQUESTS);
        let at = second.unwrap();
        proptest::prop_assert!(at <= bound + Duration::from_millis(2), "{:?} > {:?}", at, bound);
    }
}
