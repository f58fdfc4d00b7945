//! The configuration rules, end to end: the builder in code, the TOML file, and limit changes on
//! a running layer. Every bad configuration is an `Err` naming the broken `Rule` (and the scope,
//! where there is one); none panics.

use proptest::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tollgate::{
    ConfigError, Dimension, Limit, Priority, Rule, ScopeKey, ScopeLimits, ScopeStats, Scopes,
    ThrottleBuilder, ThrottleConfig, ThrottleError, ThrottleLayer,
};
use tower::{service_fn, ServiceExt};

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn rpm(n: u64) -> ScopeLimits {
    ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, n))
}

/// The error of a builder that must not build.
fn build_err(builder: ThrottleBuilder) -> ConfigError {
    match builder.build() {
        Ok(_) => panic!("the configuration built, but it breaks a rule"),
        Err(e) => e,
    }
}

/// The error of a builder that has a single scope `key` with `limits`.
fn scope_err(key: &'static str, limits: ScopeLimits) -> ConfigError {
    build_err(ThrottleLayer::builder().scope(key, limits))
}

/// `err` breaks `rule`, its text names the rule, and it names `scope` (in `scope()` and in the
/// text) or no scope at all.
#[track_caller]
fn assert_rule(err: &ConfigError, rule: Rule, scope: Option<&str>) {
    assert_eq!(err.rule(), rule, "wrong rule in: {err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("rule `{}`", rule.name())),
        "the text does not name the rule `{}`: {text}",
        rule.name()
    );
    assert_eq!(err.scope(), scope, "wrong scope in: {text}");
    if let Some(scope) = scope {
        assert!(
            text.contains(&format!("in scope `{scope}`")),
            "the text does not name the scope `{scope}`: {text}"
        );
    }
}

/// `err`'s text mentions `needle`.
#[track_caller]
fn assert_mentions(err: &ConfigError, needle: &str) {
    let text = err.to_string();
    assert!(text.contains(needle), "`{needle}` not in: {text}");
}

/// Parses and builds a TOML configuration; `Err` from whichever step fails.
fn toml_build(text: &str) -> Result<ThrottleLayer, ConfigError> {
    ThrottleConfig::from_toml(text)?.builder()?.build()
}

fn toml_build_err(text: &str) -> ConfigError {
    match toml_build(text) {
        Ok(_) => panic!("the configuration built, but it breaks a rule:\n{text}"),
        Err(e) => e,
    }
}

fn toml_parse_err(text: &str) -> ConfigError {
    match ThrottleConfig::from_toml(text) {
        Ok(c) => panic!("the configuration parsed, but it is not valid: {c:?}"),
        Err(e) => e,
    }
}

/// `(dimension, period, capacity)` of each bucket of a scope, in configured order.
fn buckets(stats: &ScopeStats) -> Vec<(Dimension, Duration, u64)> {
    stats
        .buckets
        .iter()
        .map(|b| (b.dimension, b.period, b.capacity))
        .collect()
}

/// A path under the temp dir that no other test (or concurrent run) uses: the process id and a
/// counter.
fn temp_path(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "tollgate-config-test-{}-{n}-{name}",
        std::process::id()
    ))
}

/// Removes the file when dropped, even if the test fails.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Builder: every rule
// ---------------------------------------------------------------------------------------------

#[test]
fn builder_valid_config_builds() {
    let layer = ThrottleLayer::builder()
        .scope(
            "global",
            ScopeLimits::new()
                .limit(Limit::per_minute(Dimension::Requests, 800))
                .limit(Limit::per_minute(Dimension::InputTokens, 80_000).with_burst(20_000))
                .limit(Limit::per_day(Dimension::TotalTokens, 2_500_000))
                .concurrency(32),
        )
        .scope("team:marketing", rpm(100))
        .scope("agent:*", rpm(20))
        .scope("*", rpm(5))
        .always(["global"])
        .headroom(0.9)
        .tier(Priority::BACKGROUND, 0.2)
        .tier(Priority::CRITICAL, 0.8)
        .max_wait(Duration::from_millis(1))
        .build();
    let layer = match layer {
        Ok(l) => l,
        Err(e) => panic!("a valid configuration did not build: {e}"),
    };
    let global = layer.limiter().scope_stats("global").expect("global");
    assert_eq!(
        buckets(&global),
        vec![
            (Dimension::Requests, MINUTE, 720),
            (Dimension::InputTokens, MINUTE, 20_000),
            (Dimension::TotalTokens, DAY, 2_250_000),
        ]
    );
    assert_eq!(global.concurrency, Some(32));
}

/// `validate` refuses what `build` refuses, with the same rule, and each rule is named for what it
/// checks: an adaptive floor is a rate, a cooldown's cap below its base is not a zero duration.
#[test]
fn builder_validate_names_the_rule_that_build_refuses_with() {
    use tollgate::feedback::Cooldown;
    let secs = Duration::from_secs;
    let cases = [
        (
            ThrottleLayer::builder()
                .scope("global", rpm(60))
                .adaptive(0.0),
            Rule::RateOutOfRange,
        ),
        (
            ThrottleLayer::builder()
                .scope("global", rpm(60))
                .adaptive(1.5),
            Rule::RateOutOfRange,
        ),
        (
            ThrottleLayer::builder().cooldown(Cooldown {
                base: secs(10),
                cap: secs(1),
            }),
            Rule::CapBelowBase,
        ),
        (
            ThrottleLayer::builder().cooldown(Cooldown {
                base: Duration::ZERO,
                cap: secs(1),
            }),
            Rule::ZeroDuration,
        ),
        (
            ThrottleLayer::builder().max_provider_delay(Duration::ZERO),
            Rule::ZeroDuration,
        ),
    ];
    for (builder, rule) in cases {
        let checked = builder.validate().expect_err("validate refuses it");
        assert_rule(&checked, rule, None);
        assert_eq!(build_err(builder).to_string(), checked.to_string());
    }
    let valid = ThrottleLayer::builder()
        .scope("global", rpm(60))
        .adaptive(0.5);
    assert!(valid.validate().is_ok());
    assert!(valid.build().is_ok());
}

#[test]
fn builder_zero_amount() {
    let err = scope_err("global", rpm(0));
    assert_rule(&err, Rule::ZeroAmount, Some("global"));
    let err = scope_err(
        "team:marketing",
        rpm(10).limit(Limit::per_day(Dimension::TotalTokens, 0)),
    );
    assert_rule(&err, Rule::ZeroAmount, Some("team:marketing"));
}

#[test]
fn builder_zero_period() {
    let limits = ScopeLimits::new().limit(Limit::new(Dimension::Requests, 10, Duration::ZERO));
    let err = scope_err("team:marketing", limits);
    assert_rule(&err, Rule::ZeroPeriod, Some("team:marketing"));
}

#[test]
fn builder_limit_headroom_out_of_range() {
    for h in [
        f64::NAN,
        0.0,
        -0.0,
        -0.5,
        1.5,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ] {
        let limits =
            ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, 100).with_headroom(h));
        let err = scope_err("agent:*", limits);
        assert_rule(&err, Rule::HeadroomOutOfRange, Some("agent:*"));
    }
}

#[test]
fn builder_default_headroom_out_of_range() {
    for h in [f64::NAN, 0.0, -0.5, 1.5, f64::INFINITY] {
        // With no scope at all ...
        let err = build_err(ThrottleLayer::builder().headroom(h));
        assert_rule(&err, Rule::HeadroomOutOfRange, None);
        assert_mentions(&err, "default headroom");
        // ... and with scopes whose limits would take it.
        let err = build_err(
            ThrottleLayer::builder()
                .scope("global", rpm(100))
                .headroom(h),
        );
        assert_rule(&err, Rule::HeadroomOutOfRange, None);
    }
}

#[test]
fn builder_headroom_edges_are_valid() {
    // (0, 1] includes 1 and tiny positive fractions (as long as one unit is left).
    for h in [1.0, 0.5, 1e-6] {
        let ok = ThrottleLayer::builder()
            .scope("global", rpm(1_000_000))
            .headroom(h)
            .build();
        assert!(ok.is_ok(), "headroom {h} was refused");
    }
}

#[test]
fn builder_effective_limit_below_one() {
    // Per limit: 1 × 0.5 leaves half a request a minute.
    let limits =
        ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, 1).with_headroom(0.5));
    let err = scope_err("global", limits);
    assert_rule(&err, Rule::EffectiveLimitBelowOne, Some("global"));

    // Through the builder's default headroom: 10 × 0.05 = 0.5.
    let err = build_err(
        ThrottleLayer::builder()
            .scope("team:a", rpm(10))
            .headroom(0.05),
    );
    assert_rule(&err, Rule::EffectiveLimitBelowOne, Some("team:a"));

    // Exactly one is enough.
    let ok = ThrottleLayer::builder()
        .scope("team:a", rpm(10))
        .headroom(0.1)
        .build();
    assert!(ok.is_ok());
}

#[test]
fn builder_burst_below_one_call() {
    let limits =
        ScopeLimits::new().limit(Limit::per_minute(Dimension::InputTokens, 1000).with_burst(0));
    let err = scope_err("global", limits);
    assert_rule(&err, Rule::BurstBelowOneCall, Some("global"));
    // A burst of one is fine.
    let limits =
        ScopeLimits::new().limit(Limit::per_minute(Dimension::InputTokens, 1000).with_burst(1));
    assert!(ThrottleLayer::builder()
        .scope("global", limits)
        .build()
        .is_ok());
}

#[test]
fn builder_zero_concurrency() {
    let err = scope_err("workflow:nightly", rpm(10).concurrency(0));
    assert_rule(&err, Rule::ZeroConcurrency, Some("workflow:nightly"));
    // A scope with only a concurrency cap of zero.
    let err = scope_err("global", ScopeLimits::new().concurrency(0));
    assert_rule(&err, Rule::ZeroConcurrency, Some("global"));
}

#[test]
fn builder_duplicate_limit() {
    // Same dimension, same period, even with a different amount or headroom.
    let limits = rpm(100).limit(Limit::per_minute(Dimension::Requests, 50).with_headroom(0.5));
    let err = scope_err("team:marketing", limits);
    assert_rule(&err, Rule::DuplicateLimit, Some("team:marketing"));
    // The same period stated differently is still the same period.
    let limits = rpm(100).limit(Limit::new(
        Dimension::Requests,
        100,
        Duration::from_millis(60_000),
    ));
    let err = scope_err("global", limits);
    assert_rule(&err, Rule::DuplicateLimit, Some("global"));
    // Same dimension over another period, or another dimension: not a duplicate.
    let limits = rpm(100)
        .limit(Limit::per_day(Dimension::Requests, 10_000))
        .limit(Limit::per_minute(Dimension::InputTokens, 100));
    assert!(ThrottleLayer::builder()
        .scope("global", limits)
        .build()
        .is_ok());
}

#[test]
fn builder_always_unknown_scope() {
    let err = build_err(
        ThrottleLayer::builder()
            .scope("global", rpm(10))
            .always(["nope"]),
    );
    assert_rule(&err, Rule::UnknownScope, None);
    assert_mentions(&err, "`nope`");

    // Nothing configured at all.
    let err = build_err(ThrottleLayer::builder().always(["global"]));
    assert_rule(&err, Rule::UnknownScope, None);
    assert_mentions(&err, "`global`");
}

#[test]
fn builder_always_pattern_is_not_allowed() {
    // Even when the pattern itself is configured: `always` needs exact keys.
    for pattern in ["agent:*", "*"] {
        let err = build_err(
            ThrottleLayer::builder()
                .scope("global", rpm(10))
                .scope(pattern, rpm(5))
                .always([pattern]),
        );
        assert_rule(&err, Rule::UnknownScope, None);
        assert_mentions(&err, &format!("`{pattern}`"));
    }
}

#[test]
fn builder_invalid_scope_keys() {
    for key in ["", ":x", "x:", "a*b", ":*", "team:*x", "*x"] {
        let err = build_err(ThrottleLayer::builder().scope(key, rpm(10)));
        assert_rule(&err, Rule::InvalidScopeKey, None);
        assert_mentions(&err, &format!("`{key}`"));
    }
    // Valid keys and patterns.
    for key in ["global", "team:marketing", "agent:*", "*", "a:b:c"] {
        let ok = ThrottleLayer::builder().scope(key, rpm(10)).build();
        assert!(ok.is_ok(), "`{key}` was refused");
    }
}

#[test]
fn builder_share_out_of_range() {
    for share in [1.0, -0.1, f64::NAN, f64::INFINITY, 2.0] {
        let err = build_err(ThrottleLayer::builder().tier(Priority(3), share));
        assert_rule(&err, Rule::ShareOutOfRange, None);
        assert_mentions(&err, "tier 3");
    }
    // [0, 1): zero is a valid share.
    assert!(ThrottleLayer::builder()
        .tier(Priority(3), 0.0)
        .build()
        .is_ok());
}

#[test]
fn builder_shares_exceed_one() {
    let err = build_err(
        ThrottleLayer::builder()
            .tier(Priority(0), 0.6)
            .tier(Priority(1), 0.6),
    );
    assert_rule(&err, Rule::SharesExceedOne, None);
    let err = build_err(
        ThrottleLayer::builder()
            .tier(Priority(0), 0.4)
            .tier(Priority(1), 0.4)
            .tier(Priority(2), 0.3),
    );
    assert_rule(&err, Rule::SharesExceedOne, None);
    // Exactly one is allowed; setting a tier twice keeps the last share.
    assert!(ThrottleLayer::builder()
        .tier(Priority(0), 0.5)
        .tier(Priority(1), 0.5)
        .build()
        .is_ok());
    assert!(ThrottleLayer::builder()
        .tier(Priority(0), 0.9)
        .tier(Priority(1), 0.5)
        .tier(Priority(0), 0.1)
        .build()
        .is_ok());
}

#[test]
fn builder_max_wait_zero() {
    let err = build_err(ThrottleLayer::builder().max_wait(Duration::ZERO));
    assert_rule(&err, Rule::ZeroDuration, None);
    assert!(ThrottleLayer::builder()
        .max_wait(Duration::from_nanos(1))
        .build()
        .is_ok());
}

/// A limit's own headroom wins over the builder's default ("unless a limit sets its own"), and
/// so does a limit that explicitly asks for all of it.
#[test]
fn builder_explicit_headroom_of_one_is_kept() {
    let limits =
        ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, 100).with_headroom(1.0));
    let layer = ThrottleLayer::builder()
        .scope("global", limits)
        .headroom(0.5)
        .build()
        .expect("valid");
    let global = layer.limiter().scope_stats("global").expect("global");
    assert_eq!(global.buckets[0].capacity, 100);
}

#[test]
fn builder_explicit_headroom_below_one_is_kept() {
    let limits =
        ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, 100).with_headroom(0.8));
    let layer = ThrottleLayer::builder()
        .scope(
            "global",
            limits.limit(Limit::per_day(Dimension::Requests, 1000)),
        )
        .headroom(0.5)
        .build()
        .expect("valid");
    let global = layer.limiter().scope_stats("global").expect("global");
    assert_eq!(global.buckets[0].capacity, 80);
    assert_eq!(global.buckets[1].capacity, 500);
}

/// Each rule is caught with several scopes configured, in whichever scope it is broken.
#[test]
fn builder_error_names_the_broken_scope_among_many() {
    let err = build_err(
        ThrottleLayer::builder()
            .scope("global", rpm(800))
            .scope("team:marketing", rpm(100))
            .scope("team:engineering", rpm(100).concurrency(0))
            .scope("agent:*", rpm(20)),
    );
    assert_rule(&err, Rule::ZeroConcurrency, Some("team:engineering"));
}

// ---------------------------------------------------------------------------------------------
// Nothing panics
// ---------------------------------------------------------------------------------------------

/// Bad configurations of every kind come back as `Err`, never as a panic.
#[test]
fn bad_inputs_return_err_not_panic() {
    type Case = (&'static str, Box<dyn Fn() -> ThrottleBuilder>);
    let cases: Vec<Case> = vec![
        (
            "zero amount",
            Box::new(|| ThrottleLayer::builder().scope("global", rpm(0))),
        ),
        (
            "NaN headroom",
            Box::new(|| ThrottleLayer::builder().headroom(f64::NAN)),
        ),
        (
            "NaN limit headroom",
            Box::new(|| {
                ThrottleLayer::builder().scope(
                    "global",
                    ScopeLimits::new()
                        .limit(Limit::per_minute(Dimension::Requests, 1).with_headroom(f64::NAN)),
                )
            }),
        ),
        (
            "subnormal headroom",
            Box::new(|| {
                ThrottleLayer::builder()
                    .scope("global", rpm(1_000))
                    .headroom(f64::MIN_POSITIVE / 2.0)
            }),
        ),
        (
            "subnormal headroom, huge amount",
            Box::new(|| {
                ThrottleLayer::builder()
                    .scope("global", rpm(u64::MAX))
                    .headroom(f64::MIN_POSITIVE)
            }),
        ),
        (
            "NaN share",
            Box::new(|| ThrottleLayer::builder().tier(Priority(9), f64::NAN)),
        ),
        (
            "empty key",
            Box::new(|| ThrottleLayer::builder().scope(String::new(), rpm(1))),
        ),
        (
            "always nothing",
            Box::new(|| ThrottleLayer::builder().always(["", "*", "x:*"])),
        ),
        (
            "zero period",
            Box::new(|| {
                ThrottleLayer::builder().scope(
                    "global",
                    ScopeLimits::new().limit(Limit::new(Dimension::Requests, 1, Duration::ZERO)),
                )
            }),
        ),
    ];
    for (name, make) in cases {
        let result = catch_unwind(AssertUnwindSafe(|| make().build().map(|_| ())));
        match result {
            Ok(Err(_)) => {}
            Ok(Ok(())) => panic!("{name}: the bad configuration built"),
            Err(_) => panic!("{name}: building panicked"),
        }
    }

    let texts = [
        "",
        "headroom = nan",
        "headroom = inf",
        "headroom = -inf",
        "[scopes.global]\nrequests_per_minute = 0",
        "[scopes.global]\nrequests_per_minute = { limit = 0, burst = 0, headroom = nan }",
        "[scopes.\"\"]\nrequests_per_minute = 1",
        "[[tiers]]\npriority = 256",
        "[[tiers]]\npriority = 1\nreserved_share = nan",
        "max_wait = \"0s\"",
        "max_wait = \"99999999999999999999999s\"",
        "always = [\"*\"]",
        "[scopes.global]\nrequests_per_minute = 9223372036854775807\nheadroom = 1e-300",
        "\u{0}\u{ffff}[[[",
    ];
    for text in texts {
        let result = catch_unwind(|| toml_build(text).map(|_| ()));
        match result {
            Ok(_) => {}
            Err(_) => panic!("parsing or building panicked on:\n{text}"),
        }
    }
}

/// Extreme but well-formed limits: `u64::MAX` as an "unlimited" amount over a year, and a period
/// as long as `Duration` allows with the largest burst. `Limit::compile` computes
/// `τ = cost_ns(burst)` as `burst × period_ns × 1000` in `u128`, which overflows once
/// `burst × period_ns` passes about 3.4e35 (a panic in debug builds, a wrapped, wrong `τ` in
/// release).
#[test]
fn extreme_limit_returns_without_panic() {
    let year = Duration::from_secs(365 * 86_400);
    let limits = [
        Limit::new(Dimension::TotalTokens, u64::MAX, year),
        Limit::new(Dimension::TotalTokens, 1000, Duration::MAX).with_burst(u64::MAX),
    ];
    for limit in limits {
        let result = catch_unwind(|| {
            ThrottleLayer::builder()
                .scope("global", ScopeLimits::new().limit(limit))
                .build()
                .map(|_| ())
        });
        assert!(result.is_ok(), "building panicked on {limit:?}");
    }
}

/// 100 days: long enough for any real limit, short enough to stay clear of the overflow above.
const HUNDRED_DAYS_NS: u64 = 100 * 86_400 * 1_000_000_000;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any limit with a period of at most 100 days either builds or is an `Err` naming the right
    /// rule; it never panics.
    #[test]
    fn arbitrary_limit_never_panics(
        amount in prop_oneof![Just(0u64), 1u64..10, any::<u64>()],
        period_ns in prop_oneof![Just(0u64), 1u64..1_000, 0u64..=HUNDRED_DAYS_NS],
        burst in proptest::option::of(prop_oneof![Just(0u64), 0u64..(1 << 40), any::<u64>()]),
        headroom in prop_oneof![
            Just(f64::NAN), Just(0.0), Just(1.0), Just(-1.0), Just(f64::INFINITY),
            any::<f64>(), 0.0f64..=1.0,
        ],
    ) {
        let limit = Limit {
            dimension: Dimension::InputTokens,
            amount,
            period: Duration::from_nanos(period_ns),
            burst,
            headroom: Some(headroom),
        };
        let result = catch_unwind(|| {
            ThrottleLayer::builder()
                .scope("agent:*", ScopeLimits::new().limit(limit))
                .build()
                .map(|_| ())
        });
        let Ok(result) = result else {
            return Err(TestCaseError::fail(format!("panicked on {limit:?}")));
        };
        let expected = if amount == 0 {
            Some(Rule::ZeroAmount)
        } else if period_ns == 0 {
            Some(Rule::ZeroPeriod)
        } else if !(headroom.is_finite() && headroom > 0.0 && headroom <= 1.0) {
            Some(Rule::HeadroomOutOfRange)
        } else if (amount as f64) * headroom < 1.0 {
            Some(Rule::EffectiveLimitBelowOne)
        } else if burst == Some(0) {
            Some(Rule::BurstBelowOneCall)
        } else {
            None
        };
        match (result, expected) {
            (Ok(()), None) => {}
            (Err(e), Some(rule)) => {
                prop_assert_eq!(e.rule(), rule);
                prop_assert_eq!(e.scope(), Some("agent:*"));
                prop_assert!(e.to_string().contains(rule.name()));
            }
            (r, e) => prop_assert!(false, "{limit:?}: got {r:?}, expected {e:?}"),
        }
    }

    /// Any tier shares: `ShareOutOfRange` for a share outside [0, 1), else `SharesExceedOne` when
    /// they add up to more than 1, else the layer builds.
    #[test]
    fn arbitrary_tiers_never_panic(
        shares in proptest::collection::vec(
            prop_oneof![Just(f64::NAN), Just(1.0), -0.5f64..1.5, 0.0f64..0.4],
            0..5,
        ),
    ) {
        let mut b = ThrottleLayer::builder();
        for (i, s) in shares.iter().enumerate() {
            b = b.tier(Priority(i as u8), *s);
        }
        let result = catch_unwind(AssertUnwindSafe(|| b.build().map(|_| ())));
        let Ok(result) = result else {
            return Err(TestCaseError::fail(format!("panicked on {shares:?}")));
        };
        let expected = if shares.iter().any(|s| !(s.is_finite() && (0.0..1.0).contains(s))) {
            Some(Rule::ShareOutOfRange)
        } else if shares.iter().sum::<f64>() > 1.0 + 1e-9 {
            Some(Rule::SharesExceedOne)
        } else {
            None
        };
        prop_assert_eq!(result.map_err(|e| e.rule()).err(), expected);
    }
}

// ---------------------------------------------------------------------------------------------
// TOML
// ---------------------------------------------------------------------------------------------

const FULL: &str = r#"
headroom = 0.9              # admit 90 % of each stated limit
max_wait = "30s"
refuse_over_max_wait = true
on_failure = "refund_tokens"
unknown_scopes = "reject"
always = ["global"]

[scopes.global]
requests_per_minute = 800
input_tokens_per_minute = { limit = 80000, burst = 20000 }
output_tokens_per_minute = { limit = 16000, burst = 4000, headroom = 0.5 }
tokens_per_minute = { limit = 96000, headroom = 0.5 }
requests_per_day = 100000
tokens_per_day = 2500000
concurrency = 32

[scopes."team:marketing"]
requests_per_minute = 100

[scopes."team:engineering"]
requests_per_minute = 300
headroom = 0.5              # this scope's own headroom

[scopes."workflow:nightly-batch"]
requests_per_minute = 50
concurrency = 4

[scopes."agent:*"]          # every agent its own bucket
requests_per_minute = 20

[[tiers]]
priority = 0
reserved_share = 0.2

[[tiers]]
priority = 1
reserved_share = 0.3
"#;

#[test]
fn toml_full_example_parses() {
    let config = ThrottleConfig::from_toml(FULL).expect("parses");
    assert_eq!(config.headroom, Some(0.9));
    assert_eq!(config.max_wait, Some(Duration::from_secs(30)));
    assert!(config.refuse_over_max_wait);
    assert_eq!(config.on_failure, tollgate::OnFailure::RefundTokens);
    assert_eq!(config.unknown_scopes, tollgate::UnknownScopes::Reject);
    assert_eq!(config.always, vec!["global".to_owned()]);
    let keys: Vec<&str> = config.scopes.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "agent:*",
            "global",
            "team:engineering",
            "team:marketing",
            "workflow:nightly-batch"
        ]
    );
    assert_eq!(config.tiers.len(), 2);
    assert_eq!(
        (config.tiers[1].priority, config.tiers[1].reserved_share),
        (1, 0.3)
    );
}

#[test]
fn toml_full_example_builds_with_the_configured_buckets() {
    let layer = match toml_build(FULL) {
        Ok(l) => l,
        Err(e) => panic!("the full example did not build: {e}"),
    };
    let stats = layer.limiter().stats();

    // Exact keys only, sorted; the `agent:*` pattern is not listed before a key matches it.
    let keys: Vec<&str> = stats.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "global",
            "team:engineering",
            "team:marketing",
            "workflow:nightly-batch"
        ]
    );

    let global = &stats[0];
    assert_eq!(
        buckets(global),
        vec![
            // 800 × 0.9 (the file's headroom)
            (Dimension::Requests, MINUTE, 720),
            // an explicit burst is used as given
            (Dimension::InputTokens, MINUTE, 20_000),
            (Dimension::OutputTokens, MINUTE, 4_000),
            // the limit's own headroom: 96 000 × 0.5
            (Dimension::TotalTokens, MINUTE, 48_000),
            (Dimension::Requests, DAY, 90_000),
            (Dimension::TotalTokens, DAY, 2_250_000),
        ]
    );
    assert_eq!(global.concurrency, Some(32));
    assert_eq!(global.in_flight, 0);
    assert_eq!(
        (global.admitted, global.refused, global.queue_depth),
        (0, 0, 0)
    );
    // Fresh buckets are full.
    for b in &global.buckets {
        assert_eq!(b.available, b.capacity as f64, "{b:?}");
    }

    // The scope's own headroom: 300 × 0.5.
    assert_eq!(buckets(&stats[1]), vec![(Dimension::Requests, MINUTE, 150)]);
    assert_eq!(stats[1].concurrency, None);
    assert_eq!(buckets(&stats[2]), vec![(Dimension::Requests, MINUTE, 90)]);
    assert_eq!(buckets(&stats[3]), vec![(Dimension::Requests, MINUTE, 45)]);
    assert_eq!(stats[3].concurrency, Some(4));

    assert!(layer.limiter().scope_stats("agent:*").is_none());
    assert!(layer.limiter().scope_stats("agent:7").is_none());
}

/// After a call, a key matching `agent:*` gets its own bucket (and is listed); a key that matches
/// nothing is rejected by `unknown_scopes = "reject"`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn toml_full_example_pattern_and_unknown_keys_at_run_time() {
    let config = ThrottleConfig::from_toml(FULL).expect("parses");
    let layer = config
        .builder()
        .expect("builder")
        .extract_scopes(|key: &&'static str| -> Scopes {
            std::iter::once(ScopeKey::from(*key)).collect()
        })
        .build()
        .expect("builds");
    let limiter = layer.limiter().clone();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|_: &'static str| async {
            Ok::<_, std::convert::Infallible>(())
        }));

    svc.clone().oneshot("agent:7").await.expect("admitted");
    let agent = limiter
        .scope_stats("agent:7")
        .expect("instantiated from agent:*");
    // 20 × 0.9
    assert_eq!(buckets(&agent), vec![(Dimension::Requests, MINUTE, 18)]);
    assert_eq!(agent.admitted, 1);
    // `always = ["global"]` charged global as well.
    assert_eq!(limiter.scope_stats("global").expect("global").admitted, 1);
    let keys: Vec<String> = limiter.stats().iter().map(|s| s.key.to_string()).collect();
    assert!(keys.contains(&"agent:7".to_owned()), "{keys:?}");
    assert!(!keys.contains(&"agent:*".to_owned()), "{keys:?}");

    let err = svc.oneshot("team:sales").await.expect_err("unknown scope");
    let err = err.downcast::<ThrottleError>().expect("a ThrottleError");
    assert!(err.is_unknown_scope(), "{err}");
    assert_eq!(err.scope().map(ScopeKey::as_str), Some("team:sales"));
}

#[test]
fn toml_negative_number_is_invalid_and_names_the_line() {
    let text = "headroom = 0.9\n\n[scopes.global]\nrequests_per_minute = -5\n";
    let err = toml_parse_err(text);
    assert_rule(&err, Rule::Invalid, None);
    assert_mentions(&err, "line 4");
}

#[test]
fn toml_negative_number_in_a_table_or_count_is_invalid() {
    for text in [
        "[scopes.global]\nrequests_per_minute = { limit = -5 }",
        "[scopes.global]\nrequests_per_minute = { limit = 5, burst = -1 }",
        "[scopes.global]\nconcurrency = -1",
        "[[tiers]]\npriority = -1",
    ] {
        let err = toml_parse_err(text);
        assert_rule(&err, Rule::Invalid, None);
        assert_mentions(&err, "line 2");
    }
}

#[test]
fn toml_unknown_key_is_invalid_and_names_the_field() {
    // A typo in a scope.
    let err = toml_parse_err("[scopes.global]\nrequest_per_minute = 5\n");
    assert_rule(&err, Rule::Invalid, None);
    assert_mentions(&err, "request_per_minute");
    assert_mentions(&err, "line 2");
    // At the top level.
    let err = toml_parse_err("head_room = 0.9\n");
    assert_rule(&err, Rule::Invalid, None);
    assert_mentions(&err, "head_room");
    // In a detailed limit.
    let err = toml_parse_err("[scopes.global]\nrequests_per_minute = { limit = 5, brust = 2 }\n");
    assert_rule(&err, Rule::Invalid, None);
    // In a tier.
    let err = toml_parse_err("[[tiers]]\npriority = 1\nshare = 0.2\n");
    assert_rule(&err, Rule::Invalid, None);
    assert_mentions(&err, "share");
}

#[test]
fn toml_wrong_type_is_invalid() {
    let err = toml_parse_err("max_wait = 5\n");
    assert_rule(&err, Rule::Invalid, None);
    assert_mentions(&err, "line 1");
    for text in [
        "headroom = \"0.9\"",
        "always = \"global\"",
        "refuse_over_max_wait = \"yes\"",
        "on_failure = \"refund_everything\"",
        "unknown_scopes = \"Reject\"",
        "[scopes.global]\nrequests_per_minute = 1.5",
        "[scopes.global]\nrequests_per_minute = \"800\"",
        "[[tiers]]\npriority = 256",
        "scopes = 5",
    ] {
        let err = toml_parse_err(text);
        assert_rule(&err, Rule::Invalid, None);
    }
}

#[test]
fn toml_unparseable_duration_is_invalid() {
    let err = toml_parse_err("max_wait = \"banana\"\n");
    assert_rule(&err, Rule::Invalid, None);
    assert_mentions(&err, "line 1");
}

#[test]
fn toml_not_toml_is_invalid() {
    let err = toml_parse_err("[scopes.global\nrequests_per_minute = 5\n");
    assert_rule(&err, Rule::Invalid, None);
    assert_mentions(&err, "line 1");
}

#[test]
fn toml_nan_headroom_fails_at_build() {
    // The file's default headroom.
    let config = ThrottleConfig::from_toml("headroom = nan\n").expect("NaN is a TOML float");
    assert!(config.headroom.is_some_and(f64::is_nan));
    let err = match config.builder().expect("builder").build() {
        Ok(_) => panic!("a NaN headroom built"),
        Err(e) => e,
    };
    assert_rule(&err, Rule::HeadroomOutOfRange, None);

    // A scope's headroom.
    let err = toml_build_err("[scopes.\"team:a\"]\nrequests_per_minute = 10\nheadroom = nan\n");
    assert_rule(&err, Rule::HeadroomOutOfRange, Some("team:a"));

    // A limit's headroom.
    let err =
        toml_build_err("[scopes.global]\nrequests_per_minute = { limit = 10, headroom = nan }\n");
    assert_rule(&err, Rule::HeadroomOutOfRange, Some("global"));
}

#[test]
fn toml_headroom_out_of_range_fails_at_build() {
    for h in ["0", "0.0", "-0.5", "1.5", "inf", "-inf"] {
        let err = toml_build_err(&format!("headroom = {h}\n"));
        assert_rule(&err, Rule::HeadroomOutOfRange, None);
        let err = toml_build_err(&format!(
            "[scopes.global]\nrequests_per_minute = {{ limit = 10, headroom = {h} }}\n"
        ));
        assert_rule(&err, Rule::HeadroomOutOfRange, Some("global"));
    }
}

#[test]
fn toml_rules_checked_at_build() {
    let cases: [(&str, Rule, Option<&str>); 9] = [
        (
            "[scopes.global]\nrequests_per_minute = 0",
            Rule::ZeroAmount,
            Some("global"),
        ),
        (
            "[scopes.global]\ntokens_per_day = { limit = 100, burst = 0 }",
            Rule::BurstBelowOneCall,
            Some("global"),
        ),
        (
            "headroom = 0.5\n[scopes.\"agent:*\"]\nrequests_per_minute = 1",
            Rule::EffectiveLimitBelowOne,
            Some("agent:*"),
        ),
        (
            "[scopes.global]\nconcurrency = 0",
            Rule::ZeroConcurrency,
            Some("global"),
        ),
        (
            "[scopes.\"\"]\nrequests_per_minute = 1",
            Rule::InvalidScopeKey,
            None,
        ),
        (
            "always = [\"nope\"]\n[scopes.global]\nrequests_per_minute = 1",
            Rule::UnknownScope,
            None,
        ),
        (
            "always = [\"agent:*\"]\n[scopes.\"agent:*\"]\nrequests_per_minute = 1",
            Rule::UnknownScope,
            None,
        ),
        (
            "[[tiers]]\npriority = 2\nreserved_share = 1.0",
            Rule::ShareOutOfRange,
            None,
        ),
        (
            "[[tiers]]\npriority = 0\nreserved_share = 0.6\n[[tiers]]\npriority = 1\nreserved_share = 0.6",
            Rule::SharesExceedOne,
            None,
        ),
    ];
    for (text, rule, scope) in cases {
        let err = toml_build_err(text);
        assert_rule(&err, rule, scope);
    }
    // `max_wait = "0s"` parses to zero and is refused at build.
    let err = toml_build_err("max_wait = \"0s\"\n");
    assert_rule(&err, Rule::ZeroDuration, None);
}

#[test]
fn toml_human_durations_parse() {
    for (text, d) in [
        ("max_wait = \"30s\"", Duration::from_secs(30)),
        ("max_wait = \"1500ms\"", Duration::from_millis(1500)),
        ("max_wait = \"2m\"", Duration::from_secs(120)),
    ] {
        let config = ThrottleConfig::from_toml(text).expect("parses");
        assert_eq!(config.max_wait, Some(d));
        assert!(config.builder().expect("builder").build().is_ok());
    }
}

#[test]
fn toml_empty_file_builds_with_no_scopes() {
    let layer = toml_build("").expect("an empty file is a valid configuration");
    assert!(layer.limiter().stats().is_empty());
}

#[test]
fn from_file_missing_path_is_invalid_and_names_the_path() {
    let path = temp_path("missing.toml");
    let _ = std::fs::remove_file(&path); // a leftover of an earlier run with the same pid
    let err = ThrottleConfig::from_file(&path).expect_err("no such file");
    assert_rule(&err, Rule::Invalid, None);
    assert_mentions(&err, &path.display().to_string());
}

#[test]
fn from_file_reads_a_valid_file() {
    let file = TempFile(temp_path("valid.toml"));
    std::fs::write(&file.0, FULL).expect("write the temp file");
    let config = ThrottleConfig::from_file(&file.0).expect("a valid file");
    let layer = config.builder().expect("builder").build().expect("builds");
    assert_eq!(layer.limiter().stats().len(), 4);
    let global = layer.limiter().scope_stats("global").expect("global");
    assert_eq!(global.buckets[0].capacity, 720);
}

#[test]
fn from_file_bad_content_names_the_path_and_the_line() {
    let file = TempFile(temp_path("bad.toml"));
    std::fs::write(&file.0, "[scopes.global]\nrequest_per_minute = 5\n").expect("write");
    let err = ThrottleConfig::from_file(&file.0).expect_err("a typo");
    assert_rule(&err, Rule::Invalid, None);
    assert_mentions(&err, &file.0.display().to_string());
    assert_mentions(&err, "request_per_minute");
    assert_mentions(&err, "line 2");
}

/// A scope's own headroom "overrides the file's default", also when it asks for all of it.
#[test]
fn toml_scope_headroom_of_one_overrides_the_file_default() {
    let layer = toml_build(
        "headroom = 0.5\n\
         [scopes.global]\nrequests_per_minute = 100\nheadroom = 1.0\n\
         [scopes.other]\nrequests_per_minute = { limit = 100, headroom = 1.0 }\n",
    )
    .expect("builds");
    let global = layer.limiter().scope_stats("global").expect("global");
    assert_eq!(global.buckets[0].capacity, 100);
    let other = layer.limiter().scope_stats("other").expect("other");
    assert_eq!(other.buckets[0].capacity, 100);
}

// ---------------------------------------------------------------------------------------------
// Runtime: set_limits
// ---------------------------------------------------------------------------------------------

fn running_layer() -> ThrottleLayer {
    ThrottleLayer::builder()
        .scope(
            "global",
            rpm(100).limit(Limit::per_minute(Dimension::InputTokens, 10_000).with_burst(2_000)),
        )
        .scope("agent:*", rpm(10))
        .headroom(0.9)
        .build()
        .expect("valid")
}

fn global_buckets(layer: &ThrottleLayer) -> Vec<(Dimension, Duration, u64)> {
    buckets(&layer.limiter().scope_stats("global").expect("global"))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn set_limits_rejects_bad_limits_and_keeps_the_old_ones() {
    let layer = running_layer();
    let before = global_buckets(&layer);
    assert_eq!(
        before,
        vec![
            (Dimension::Requests, MINUTE, 90),
            (Dimension::InputTokens, MINUTE, 2_000),
        ]
    );

    let bad: Vec<(ScopeLimits, Rule)> = vec![
        (rpm(0), Rule::ZeroAmount),
        (
            ScopeLimits::new().limit(Limit::new(Dimension::Requests, 5, Duration::ZERO)),
            Rule::ZeroPeriod,
        ),
        (
            ScopeLimits::new()
                .limit(Limit::per_minute(Dimension::Requests, 5).with_headroom(f64::NAN)),
            Rule::HeadroomOutOfRange,
        ),
        (
            ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, 5).with_headroom(1.5)),
            Rule::HeadroomOutOfRange,
        ),
        (
            ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, 5).with_headroom(-0.1)),
            Rule::HeadroomOutOfRange,
        ),
        // 1 × the layer's default headroom 0.9 < 1.
        (rpm(1), Rule::EffectiveLimitBelowOne),
        (
            ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, 5).with_burst(0)),
            Rule::BurstBelowOneCall,
        ),
        (rpm(50).concurrency(0), Rule::ZeroConcurrency),
        (
            rpm(50).limit(Limit::per_minute(Dimension::Requests, 60)),
            Rule::DuplicateLimit,
        ),
        // A good limit first, then a bad one: nothing of it is applied.
        (
            rpm(1_000).limit(Limit::per_minute(Dimension::InputTokens, 0)),
            Rule::ZeroAmount,
        ),
    ];
    for (limits, rule) in bad {
        let err = layer
            .limiter()
            .set_limits("global", limits.clone())
            .expect_err("bad limits were accepted");
        assert_rule(&err, rule, Some("global"));
        assert_eq!(global_buckets(&layer), before, "after {limits:?}");
    }

    // A good change applies.
    layer
        .limiter()
        .set_limits("global", rpm(200))
        .expect("valid limits");
    assert_eq!(
        global_buckets(&layer),
        vec![(Dimension::Requests, MINUTE, 180)]
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn set_limits_rejects_invalid_keys_without_adding_them() {
    let layer = running_layer();
    for key in ["", ":x", "x:", "a*b"] {
        let err = layer
            .limiter()
            .set_limits(key, rpm(10))
            .expect_err("an invalid key was accepted");
        assert_rule(&err, Rule::InvalidScopeKey, None);
        assert_mentions(&err, &format!("`{key}`"));
        assert!(layer.limiter().scope_stats(key).is_none());
    }
    let keys: Vec<String> = layer
        .limiter()
        .stats()
        .iter()
        .map(|s| s.key.to_string())
        .collect();
    assert_eq!(keys, ["global"]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn set_limits_on_a_pattern_checks_the_rules() {
    let layer = running_layer();
    let err = layer
        .limiter()
        .set_limits("agent:*", rpm(10).concurrency(0))
        .expect_err("zero concurrency");
    assert_rule(&err, Rule::ZeroConcurrency, Some("agent:*"));
    let err = layer
        .limiter()
        .set_limits("*", rpm(0))
        .expect_err("zero amount");
    assert_rule(&err, Rule::ZeroAmount, Some("*"));
    // The global scope is untouched, and no new key appeared.
    assert_eq!(layer.limiter().stats().len(), 1);
    assert_eq!(global_buckets(&layer)[0].2, 90);
}

const MONEY: &str = r#"
on_cap = "refuse"

[prices]
example = true
unknown_model = { input = 1.0, output = 2.0 }
[prices.models."my-finetune"]
input = 3.0
output = 15.0

[budgets."global"]
cap_usd = 0.001
window = "day"
utc_offset = "-08:00"
alerts_usd = [0.0005, 0.001]

[budgets."agent:*"]
cap_usd = 5
"#;

#[tokio::test(start_paused = true)]
async fn toml_budgets_and_prices_limit_spend() {
    use tower::{Layer, ServiceExt};
    let layer = ThrottleConfig::from_toml(MONEY)
        .unwrap()
        .builder()
        .unwrap()
        // 1,000 input tokens and 0 output at the default $1/Mtok: $0.001 per call.
        .estimate(|_: &()| tollgate::Cost::request().with_input_tokens(1_000))
        .build()
        .unwrap();
    let svc = layer.layer(tower::service_fn(|_: ()| async {
        Ok::<_, std::convert::Infallible>(())
    }));
    svc.clone().oneshot(()).await.unwrap();
    let err = svc.oneshot(()).await.unwrap_err();
    let err = err.downcast_ref::<tollgate::ThrottleError>().unwrap();
    assert_eq!(err.budget_exhausted().unwrap().cap().as_u64(), 1_000);
    assert_eq!(
        layer.limiter().spend("global").unwrap().spent.as_u64(),
        1_000
    );
}

#[test]
fn toml_money_errors_name_the_field() {
    let with = |extra: &str| format!("[prices]\nexample = true\n{extra}");
    let cases = [
        (
            with("[budgets.global]\ncap_usd = 1\nutc_offset = \"8:00\""),
            Rule::UtcOffsetOutOfRange,
            "8:00",
        ),
        (
            with("[budgets.global]\ncap_usd = 1\nutc_offset = \"+15:00\""),
            Rule::UtcOffsetOutOfRange,
            "",
        ),
        (
            with("[budgets.global]\ncap_usd = 1\nalerts_usd = [2]"),
            Rule::ThresholdOutOfRange,
            "",
        ),
        (
            with("[budgets.global]\ncap_usd = -1"),
            Rule::Invalid,
            "cap_usd",
        ),
        (
            with("[prices.models.x]\ninput = -3\noutput = 1"),
            Rule::PriceOutOfRange,
            "input",
        ),
        (
            "[budgets.global]\ncap_usd = 1".to_owned(),
            Rule::BudgetWithoutPrices,
            "prices",
        ),
    ];
    for (text, rule, needle) in cases {
        let err = match ThrottleConfig::from_toml(&text).and_then(|c| c.builder()) {
            Ok(b) => b.build().unwrap_err(),
            Err(e) => e,
        };
        assert_eq!(err.rule(), rule, "{text}: {err}");
        assert!(err.to_string().contains(needle), "{err} lacks {needle}");
    }
    let err = toml_parse_err("[budgets.global]\ncap_usd = 1\ncap = 2");
    assert_mentions(&err, "unknown field `cap`");
    let err = toml_parse_err("[prices]\nunknown_model = \"maybe\"");
    assert_eq!(err.rule(), Rule::Invalid);
}

#[test]
fn toml_call_log_path_that_cannot_be_opened_is_a_config_error() {
    let err = ThrottleConfig::from_toml("call_log = \"/nonexistent-dir/x/calls.jsonl\"")
        .unwrap()
        .builder()
        .unwrap_err();
    assert_eq!(err.rule(), Rule::Invalid);
    assert_mentions(&err, "/nonexistent-dir/x/calls.jsonl");
}
