//! Admission: token bucket, fixed window, output reservation and refund, hidden share.

use std::time::Duration;

use http::StatusCode;
use tokio::time::sleep;
use tollgate_mock::{Algorithm, Dimension, MockErrorKind, MockProvider, MockRequest};

use crate::support::{call, header, header_u64, start};

fn instant_provider() -> tollgate_mock::MockProviderBuilder {
    MockProvider::builder().latency(Duration::ZERO, Duration::ZERO, 0.0)
}

#[tokio::test(start_paused = true)]
async fn token_bucket_burst_then_one_per_second() {
    let provider = instant_provider().rpm(60).build().unwrap();
    for tag in 0..60 {
        let r = call(&provider, MockRequest::new(10, 10, 10).with_tag(tag)).await;
        assert_eq!(r.status(), StatusCode::OK, "call {tag}");
        assert_eq!(r.body().tag, tag);
    }
    let r = call(&provider, MockRequest::new(10, 10, 10)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        r.body().error,
        Some(MockErrorKind::RateLimited(Dimension::Requests))
    );
    assert_eq!(r.body().usage, None);
    assert_eq!(header(&r, "retry-after"), "1");
    assert_eq!(header(&r, "retry-after-ms"), "1000");

    sleep(Duration::from_millis(999)).await;
    let r = call(&provider, MockRequest::new(10, 10, 10)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "retry-after-ms"), "1");

    sleep(Duration::from_millis(1)).await;
    assert_eq!(
        call(&provider, MockRequest::new(10, 10, 10)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        call(&provider, MockRequest::new(10, 10, 10)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let stats = provider.stats();
    assert_eq!((stats.received, stats.ok, stats.rate_limited), (64, 61, 3));
    assert_eq!((stats.input_tokens_ok, stats.output_tokens_ok), (610, 610));
}

#[tokio::test(start_paused = true)]
async fn fixed_window_resets_at_the_minute() {
    let provider = instant_provider()
        .rpm(10)
        .algorithm(Algorithm::FixedWindow)
        .build()
        .unwrap();
    sleep(Duration::from_secs(15)).await;
    for _ in 0..10 {
        assert_eq!(
            call(&provider, MockRequest::new(1, 1, 1)).await.status(),
            StatusCode::OK
        );
    }
    let r = call(&provider, MockRequest::new(1, 1, 1)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "retry-after"), "45");
    assert_eq!(header(&r, "retry-after-ms"), "45000");

    sleep(Duration::from_millis(44_999)).await;
    let r = call(&provider, MockRequest::new(1, 1, 1)).await;
    assert_eq!(
        (r.status(), header(&r, "retry-after")),
        (StatusCode::TOO_MANY_REQUESTS, "1")
    );

    sleep(Duration::from_millis(1)).await;
    for _ in 0..10 {
        assert_eq!(
            call(&provider, MockRequest::new(1, 1, 1)).await.status(),
            StatusCode::OK
        );
    }
    let r = call(&provider, MockRequest::new(1, 1, 1)).await;
    assert_eq!(
        (r.status(), header(&r, "retry-after")),
        (StatusCode::TOO_MANY_REQUESTS, "60")
    );
}

/// Output is reserved at `max_tokens` while the call runs and the unused part comes back at the end.
#[tokio::test(start_paused = true)]
async fn output_reserved_at_max_tokens_and_refunded() {
    for algorithm in [Algorithm::TokenBucket, Algorithm::FixedWindow] {
        let provider = MockProvider::builder()
            .output_tpm(1_000)
            .algorithm(algorithm)
            .latency(Duration::from_secs(1), Duration::ZERO, 0.0)
            .build()
            .unwrap();
        let a = start(&provider, MockRequest::new(10, 800, 100));
        let b = call(&provider, MockRequest::new(10, 500, 500)).await;
        assert_eq!(b.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            b.body().error,
            Some(MockErrorKind::RateLimited(Dimension::OutputTokens))
        );
        assert_eq!(
            header_u64(&b, "anthropic-ratelimit-output-tokens-remaining"),
            200
        );

        let a = a.await.unwrap();
        assert_eq!(
            header_u64(&a, "anthropic-ratelimit-output-tokens-remaining"),
            200
        );
        assert_eq!(a.body().usage.unwrap().output_tokens, 100);
        // t = 1 s: 700 refunded (plus 16.7 refilled for the token bucket).
        let b = call(&provider, MockRequest::new(10, 500, 500)).await;
        assert_eq!(b.status(), StatusCode::OK, "{algorithm:?}");
        let expected = match algorithm {
            Algorithm::TokenBucket => 416,
            Algorithm::FixedWindow => 400,
        };
        assert_eq!(
            header_u64(&b, "anthropic-ratelimit-output-tokens-remaining"),
            expected
        );
    }
}

#[tokio::test(start_paused = true)]
async fn output_beyond_max_tokens_is_clamped() {
    let provider = instant_provider().build().unwrap();
    let r = call(&provider, MockRequest::new(5, 50, 500)).await;
    assert_eq!(r.body().usage.unwrap().output_tokens, 50);
    assert_eq!(provider.stats().output_tokens_ok, 50);
}

#[tokio::test(start_paused = true)]
async fn hidden_share_leaves_seventy_of_a_hundred() {
    let provider = instant_provider()
        .rpm(100)
        .hidden_share(0.3)
        .build()
        .unwrap();
    assert_eq!(provider.limits().rpm, 100);
    assert_eq!(provider.effective_limits().rpm, 70);
    for i in 0..70 {
        let r = call(&provider, MockRequest::new(1, 1, 1)).await;
        assert_eq!(r.status(), StatusCode::OK, "call {i}");
        assert_eq!(header_u64(&r, "anthropic-ratelimit-requests-limit"), 100);
        assert_eq!(header_u64(&r, "x-ratelimit-limit-requests"), 100);
        assert_eq!(
            header_u64(&r, "anthropic-ratelimit-requests-remaining"),
            69 - i
        );
    }
    let r = call(&provider, MockRequest::new(1, 1, 1)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // The hidden share refills too: one of ours every 60 s / 70.
    assert_eq!(header(&r, "retry-after-ms"), "858");
}

#[tokio::test(start_paused = true)]
async fn request_larger_than_capacity_is_a_400() {
    let provider = instant_provider()
        .input_tpm(1_000)
        .hidden_share(0.5)
        .build()
        .unwrap();
    let r = call(&provider, MockRequest::new(501, 10, 10)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body().error,
        Some(MockErrorKind::RequestTooLarge(Dimension::InputTokens))
    );
    assert!(r.headers().get("retry-after").is_none());
    assert_eq!(
        call(&provider, MockRequest::new(500, 10, 10))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(provider.stats().too_large, 1);
}
