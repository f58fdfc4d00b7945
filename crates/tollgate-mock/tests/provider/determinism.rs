//! Same seed and same calls ⇒ the same answers, byte for byte.

use std::time::Duration;

use http::StatusCode;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use tokio::time::sleep;
use tollgate_mock::{MockEvent, MockProvider, MockRequest, OverloadConfig};

use crate::support::{call, header_u64};

/// 20 agents with their own RNG streams, obeying `retry-after-ms`, against one shared provider.
async fn run(provider_seed: u64) -> (Vec<MockEvent>, tollgate_mock::MockStats) {
    let provider = MockProvider::builder()
        .rpm(100)
        .input_tpm(40_000)
        .output_tpm(10_000)
        .hidden_share(0.2)
        .overload(OverloadConfig {
            threshold_in_flight: 8,
            probability: 0.5,
        })
        .latency(Duration::from_millis(300), Duration::from_millis(5), 0.3)
        .seed(provider_seed)
        .event_log(true)
        .build()
        .unwrap();
    let agents: Vec<_> = (0..20u64)
        .map(|agent| {
            let provider = provider.clone();
            tokio::spawn(async move {
                let mut rng = ChaCha8Rng::seed_from_u64(agent);
                for k in 0..15 {
                    sleep(Duration::from_millis(rng.random_range(0..2_000))).await;
                    let max_tokens = rng.random_range(100..1_000);
                    let req = MockRequest::new(
                        rng.random_range(0..2_000),
                        max_tokens,
                        rng.random_range(0..max_tokens + 200),
                    )
                    .with_tag(agent * 1_000 + k);
                    for _attempt in 0..5 {
                        let r = call(&provider, req).await;
                        match r.status() {
                            StatusCode::OK => break,
                            StatusCode::TOO_MANY_REQUESTS => {
                                sleep(Duration::from_millis(header_u64(&r, "retry-after-ms")))
                                    .await;
                            }
                            _ => sleep(Duration::from_secs(1)).await,
                        }
                    }
                }
            })
        })
        .collect();
    for agent in agents {
        agent.await.unwrap();
    }
    (provider.events(), provider.stats())
}

#[tokio::test(start_paused = true)]
async fn same_seed_same_events() {
    let (events, stats) = run(42).await;
    assert_eq!(events.len() as u64, stats.received);
    assert!(
        stats.rate_limited > 0 && stats.overloaded > 0 && stats.ok > 0,
        "{stats:?}"
    );
    assert!(
        events.windows(2).all(|w| w[0].at <= w[1].at),
        "arrival order"
    );
    let ok: Vec<_> = events
        .iter()
        .filter(|e| e.status == StatusCode::OK)
        .collect();
    assert_eq!(ok.len() as u64, stats.ok);
    assert_eq!(
        ok.iter().map(|e| e.output_tokens).sum::<u64>(),
        stats.output_tokens_ok
    );

    assert_eq!(run(42).await, (events.clone(), stats));
    assert_ne!(run(43).await.0, events);
}
