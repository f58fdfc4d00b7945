//! Both header families, parsed back with independent parsers.

use std::time::Duration;

use http::StatusCode;
use tokio::time::sleep;
use tollgate_mock::{MockProvider, MockRequest, OverloadConfig};

use crate::support::{call, header, header_u64, parse_go_duration, parse_rfc3339};

const EPOCH: Duration = Duration::from_secs(1_767_225_600);

fn provider() -> tollgate_mock::MockProviderBuilder {
    MockProvider::builder()
        .rpm(60)
        .input_tpm(6_000)
        .output_tpm(600)
        .latency(Duration::ZERO, Duration::ZERO, 0.0)
}

#[tokio::test(start_paused = true)]
async fn resets_parse_back_to_when_the_bucket_is_full() {
    let provider = provider().build().unwrap();
    sleep(Duration::from_secs(5)).await;
    let r = call(&provider, MockRequest::new(150, 30, 10)).await;
    let now = EPOCH + Duration::from_secs(5);

    assert_eq!(
        header(&r, "anthropic-ratelimit-requests-reset"),
        "2026-01-01T00:00:06Z"
    );
    let cases = [
        ("requests", 60, 59, Duration::from_secs(1)),
        ("input-tokens", 6_000, 5_850, Duration::from_millis(1_500)),
        // 30 reserved; the refund of 20 comes when the call ends, after the headers were written.
        ("output-tokens", 600, 570, Duration::from_secs(3)),
    ];
    for (dim, limit, remaining, until_full) in cases {
        assert_eq!(
            header_u64(&r, &format!("anthropic-ratelimit-{dim}-limit")),
            limit
        );
        assert_eq!(
            header_u64(&r, &format!("anthropic-ratelimit-{dim}-remaining")),
            remaining
        );
        let reset = parse_rfc3339(header(&r, &format!("anthropic-ratelimit-{dim}-reset")));
        assert_eq!(reset, now + until_full, "{dim}");
    }

    assert_eq!(header_u64(&r, "x-ratelimit-limit-requests"), 60);
    assert_eq!(header_u64(&r, "x-ratelimit-remaining-requests"), 59);
    assert_eq!(header(&r, "x-ratelimit-reset-requests"), "1s");
    assert_eq!(header_u64(&r, "x-ratelimit-limit-tokens"), 6_000);
    assert_eq!(header_u64(&r, "x-ratelimit-remaining-tokens"), 5_850);
    assert_eq!(header(&r, "x-ratelimit-reset-tokens"), "1.5s");
    assert_eq!(parse_go_duration("1.5s"), Duration::from_millis(1_500));
}

#[tokio::test(start_paused = true)]
async fn exhausted_bucket_reports_a_minute_to_full() {
    let provider = provider().build().unwrap();
    for _ in 0..60 {
        call(&provider, MockRequest::new(1, 1, 1)).await;
    }
    let r = call(&provider, MockRequest::new(1, 1, 1)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header_u64(&r, "anthropic-ratelimit-requests-remaining"), 0);
    assert_eq!(
        header(&r, "anthropic-ratelimit-requests-reset"),
        "2026-01-01T00:01:00Z"
    );
    assert_eq!(header(&r, "x-ratelimit-reset-requests"), "1m0s");
    assert_eq!(parse_go_duration("1m0s"), Duration::from_secs(60));

    // t = 480 ms: 60 input tokens used at t = 0, 48 refilled, 12 to go at 100/s.
    sleep(Duration::from_millis(480)).await;
    let r = call(&provider, MockRequest::new(1, 1, 1)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let reset = header(&r, "x-ratelimit-reset-tokens");
    assert_eq!(reset, "120ms");
    assert_eq!(parse_go_duration(reset), Duration::from_millis(120));
    assert_eq!(header(&r, "x-ratelimit-reset-requests"), "59.52s");
    let reset = header(&r, "anthropic-ratelimit-input-tokens-reset");
    assert_eq!(reset, "2026-01-01T00:00:00.600Z");
    assert_eq!(parse_rfc3339(reset), EPOCH + Duration::from_millis(600));
}

#[test]
fn go_duration_parser_reads_openai_examples() {
    assert_eq!(parse_go_duration("120ms"), Duration::from_millis(120));
    assert_eq!(parse_go_duration("1s"), Duration::from_secs(1));
    assert_eq!(parse_go_duration("6m0s"), Duration::from_secs(360));
    assert_eq!(
        parse_go_duration("1h2m3.004s"),
        Duration::from_millis(3_723_004)
    );
}

#[tokio::test(start_paused = true)]
async fn epoch_is_configurable() {
    let provider = provider().epoch_unix_secs(0).build().unwrap();
    let r = call(&provider, MockRequest::new(1, 1, 1)).await;
    assert_eq!(
        header(&r, "anthropic-ratelimit-requests-reset"),
        "1970-01-01T00:00:01Z"
    );
}

#[tokio::test(start_paused = true)]
async fn each_family_can_be_switched_off() {
    let only_openai = provider().anthropic_headers(false).build().unwrap();
    let r = call(&only_openai, MockRequest::new(1, 1, 1)).await;
    assert!(r
        .headers()
        .keys()
        .all(|k| !k.as_str().starts_with("anthropic-")));
    assert_eq!(
        r.headers()
            .keys()
            .filter(|k| k.as_str().starts_with("x-ratelimit-"))
            .count(),
        6
    );

    let only_anthropic = provider().openai_headers(false).build().unwrap();
    let r = call(&only_anthropic, MockRequest::new(1, 1, 1)).await;
    assert!(r
        .headers()
        .keys()
        .all(|k| !k.as_str().starts_with("x-ratelimit-")));
    assert_eq!(
        r.headers()
            .keys()
            .filter(|k| k.as_str().starts_with("anthropic-"))
            .count(),
        9
    );
}

#[tokio::test(start_paused = true)]
async fn errors_carry_the_headers_too() {
    let provider = provider()
        .overload(OverloadConfig {
            threshold_in_flight: 0,
            probability: 1.0,
        })
        .build()
        .unwrap();
    let r = call(&provider, MockRequest::new(1, 1, 1)).await;
    assert_eq!(r.status().as_u16(), 529);
    assert_eq!(header_u64(&r, "anthropic-ratelimit-requests-remaining"), 60);
    assert!(r.headers().get("retry-after").is_none());
}

#[tokio::test(start_paused = true)]
async fn without_limit_and_reset_only_remaining_and_retry_headers_are_left() {
    let provider = provider()
        .rpm(1)
        .limit_and_reset_headers(false)
        .build()
        .unwrap();
    let ok = call(&provider, MockRequest::new(1, 1, 1)).await;
    let names: Vec<&str> = ok.headers().keys().map(|k| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "anthropic-ratelimit-requests-remaining",
            "anthropic-ratelimit-input-tokens-remaining",
            "anthropic-ratelimit-output-tokens-remaining",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-remaining-tokens",
        ]
    );
    assert_eq!(header_u64(&ok, "anthropic-ratelimit-requests-remaining"), 0);
    let limited = call(&provider, MockRequest::new(1, 1, 1)).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header_u64(&limited, "retry-after"), 60);
    assert_eq!(limited.headers().len(), 7);
}

/// A provider that tells nothing of its limits: no rate-limit header on any answer, but a 429
/// still says when to retry.
#[tokio::test(start_paused = true)]
async fn without_rate_limit_headers_only_the_retry_delay_is_left() {
    let provider = provider().rpm(1).rate_limit_headers(false).build().unwrap();
    let ok = call(&provider, MockRequest::new(1, 1, 1)).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers().len(), 0, "{:?}", ok.headers());
    let limited = call(&provider, MockRequest::new(1, 1, 1)).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let names: Vec<&str> = limited.headers().keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["retry-after", "retry-after-ms"]);
    assert_eq!(header_u64(&limited, "retry-after"), 60);
}

#[tokio::test(start_paused = true)]
async fn an_unlimited_dimension_admits_anything_and_is_not_reported() {
    use tollgate_mock::Dimension;
    let provider = provider()
        .unlimited(Dimension::InputTokens)
        .unlimited(Dimension::OutputTokens)
        .build()
        .unwrap();
    assert_eq!(provider.limits().input_tpm, u64::MAX / 4);
    let r = call(&provider, MockRequest::new(1_000_000_000, 1_000_000, 10)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().keys().all(|k| !k.as_str().contains("tokens")));
    assert_eq!(header_u64(&r, "anthropic-ratelimit-requests-remaining"), 59);
    assert_eq!(header_u64(&r, "x-ratelimit-remaining-requests"), 59);
    assert_eq!(r.headers().len(), 6);
}

#[tokio::test(start_paused = true)]
async fn recycled_answers_change_no_later_answer() {
    // The same calls to two providers, one of them given back every answer once read (and
    // changed by its reader: values rewritten, or a header added); each answer is the same.
    let (plain, recycling) = (provider().build().unwrap(), provider().build().unwrap());
    for i in 0..70u64 {
        let req = MockRequest::new(1 + i % 3, 2, 1);
        let expected = call(&plain, req).await;
        let mut got = call(&recycling, req).await;
        assert_eq!(got.status(), expected.status(), "call {i}");
        assert_eq!(got.headers(), expected.headers(), "call {i}");
        if i % 2 == 0 {
            for (_, value) in got.headers_mut().iter_mut() {
                *value = http::HeaderValue::from_static("0");
            }
        } else {
            got.headers_mut()
                .insert("x-other", http::HeaderValue::from_static("1"));
        }
        recycling.recycle(got);
        sleep(Duration::from_millis(10 * (i % 7))).await;
    }
    // Some of them were 429s, which carry `retry-after`.
    assert!(plain.stats().rate_limited > 0);
}
