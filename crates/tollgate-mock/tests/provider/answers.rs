//! Overload, latency, cancellation and shared state.

use std::time::Duration;

use http::StatusCode;
use tokio::time::{sleep, Instant};
use tollgate_mock::{MockErrorKind, MockProvider, MockRequest, OverloadConfig};

use crate::support::{call, header_u64, start};

fn overloaded_above(threshold: u64, probability: f64) -> MockProvider {
    MockProvider::builder()
        .rpm(60)
        .latency(Duration::from_secs(1), Duration::ZERO, 0.0)
        .overload(OverloadConfig {
            threshold_in_flight: threshold,
            probability,
        })
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn overload_with_probability_one_answers_529_above_threshold() {
    let provider = overloaded_above(2, 1.0);
    let running = [0, 1].map(|_| start(&provider, MockRequest::new(1, 1, 1)));
    let r = call(&provider, MockRequest::new(1, 1, 1)).await;
    assert_eq!(r.status().as_u16(), 529);
    assert_eq!(r.body().error, Some(MockErrorKind::Overloaded));
    // Not charged against the key.
    assert_eq!(header_u64(&r, "anthropic-ratelimit-requests-remaining"), 58);
    for f in running {
        assert_eq!(f.await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(
        call(&provider, MockRequest::new(1, 1, 1)).await.status(),
        StatusCode::OK
    );
    let stats = provider.stats();
    assert_eq!(
        (
            stats.ok,
            stats.overloaded,
            stats.max_in_flight,
            stats.in_flight
        ),
        (3, 1, 2, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn overload_with_probability_zero_never_answers_529() {
    let provider = overloaded_above(0, 0.0);
    let running: Vec<_> = (0..20)
        .map(|_| start(&provider, MockRequest::new(1, 1, 1)))
        .collect();
    for f in running {
        assert_eq!(f.await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(provider.stats().overloaded, 0);
    assert_eq!(provider.stats().max_in_flight, 20);
}

#[tokio::test(start_paused = true)]
async fn latency_is_base_plus_per_token() {
    let provider = MockProvider::builder()
        .latency(Duration::from_millis(100), Duration::from_millis(10), 0.0)
        .event_log(true)
        .build()
        .unwrap();
    let t0 = Instant::now();
    call(&provider, MockRequest::new(1, 100, 50)).await;
    assert_eq!(t0.elapsed(), Duration::from_millis(600));
    let t1 = Instant::now();
    call(&provider, MockRequest::new(1, 20, 50)).await; // clamped to 20 tokens
    assert_eq!(t1.elapsed(), Duration::from_millis(300));
    let latencies: Vec<_> = provider.events().iter().map(|e| e.latency).collect();
    assert_eq!(
        latencies,
        [Duration::from_millis(600), Duration::from_millis(300)]
    );
}

async fn jittered_latencies(seed: u64) -> Vec<Duration> {
    let provider = MockProvider::builder()
        .rpm(1_000)
        .latency(Duration::from_millis(100), Duration::from_millis(10), 0.5)
        .seed(seed)
        .event_log(true)
        .build()
        .unwrap();
    for _ in 0..20 {
        let t0 = Instant::now();
        call(&provider, MockRequest::new(1, 100, 100)).await;
        let measured = t0.elapsed();
        let recorded = provider.events().last().unwrap().latency;
        // tokio's timer has 1 ms resolution and rounds up.
        assert!(measured >= recorded && measured - recorded < Duration::from_millis(1));
    }
    provider.events().iter().map(|e| e.latency).collect()
}

#[tokio::test(start_paused = true)]
async fn latency_noise_is_seeded() {
    let a = jittered_latencies(1).await;
    assert!(a
        .iter()
        .all(|l| (Duration::from_millis(550)..=Duration::from_millis(1650)).contains(l)));
    assert!(a.windows(2).any(|w| w[0] != w[1]), "noise varies: {a:?}");
    assert_eq!(a, jittered_latencies(1).await);
    assert_ne!(a, jittered_latencies(2).await);
}

/// Dropping an admitted call ends it: in-flight goes down and unused output comes back.
#[tokio::test(start_paused = true)]
async fn dropped_call_is_cancelled_and_refunded() {
    let provider = MockProvider::builder()
        .output_tpm(6_000)
        .algorithm(tollgate_mock::Algorithm::FixedWindow)
        .latency(Duration::from_secs(10), Duration::ZERO, 0.0)
        .build()
        .unwrap();
    let f = start(&provider, MockRequest::new(1, 5_000, 1_000));
    assert_eq!(provider.stats().in_flight, 1);
    sleep(Duration::from_secs(1)).await;
    drop(f);
    let stats = provider.stats();
    assert_eq!((stats.in_flight, stats.cancelled, stats.ok), (0, 1, 1));
    let r = call(&provider, MockRequest::new(1, 1, 0)).await;
    assert_eq!(
        header_u64(&r, "anthropic-ratelimit-output-tokens-remaining"),
        4_999
    );
}

#[tokio::test(start_paused = true)]
async fn clones_share_limits_and_counters() {
    let provider = MockProvider::builder()
        .rpm(2)
        .latency(Duration::ZERO, Duration::ZERO, 0.0)
        .build()
        .unwrap();
    let other = provider.clone();
    assert_eq!(
        call(&provider, MockRequest::new(1, 1, 1)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        call(&other, MockRequest::new(1, 1, 1)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        call(&provider, MockRequest::new(1, 1, 1)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(other.stats(), provider.stats());
    assert_eq!(other.stats().received, 3);
}
