//! For random arrival schedules in virtual time, the provider never admits more than its model
//! allows, judged from its own event log.

use std::time::Duration;

use http::StatusCode;
use proptest::prelude::*;
use tollgate_mock::{Algorithm, Limits, MockEvent, MockProvider, MockRequest};

use crate::support::start;

const MINUTE_NS: u128 = 60_000_000_000;

/// Gap before the arrival (ms), input tokens, max_tokens (= output, so nothing is refunded).
type Schedule = Vec<(u64, u64, u64)>;

fn schedule() -> impl Strategy<Value = Schedule> {
    prop::collection::vec((0u64..2_000, 0u64..400, 0u64..300), 1..150)
}

/// Replays the schedule on a fresh paused runtime; calls overlap (latency up to a few seconds).
fn replay(
    algorithm: Algorithm,
    limits: Limits,
    share: f64,
    schedule: &Schedule,
) -> (Limits, Vec<MockEvent>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let provider = MockProvider::builder()
            .rpm(limits.rpm)
            .input_tpm(limits.input_tpm)
            .output_tpm(limits.output_tpm)
            .hidden_share(share)
            .algorithm(algorithm)
            .latency(Duration::from_millis(200), Duration::from_millis(10), 0.5)
            .event_log(true)
            .build()
            .unwrap();
        let mut running = Vec::new();
        for (tag, &(gap, input, max)) in (0..).zip(schedule) {
            tokio::time::sleep(Duration::from_millis(gap)).await;
            running.push(tokio::spawn(start(
                &provider,
                MockRequest::new(input, max, max).with_tag(tag),
            )));
        }
        for call in running {
            call.await.unwrap().unwrap();
        }
        (provider.effective_limits(), provider.events())
    })
}

fn limits() -> impl Strategy<Value = Limits> {
    (1u64..30, 1u64..3_000, 1u64..2_000).prop_map(|(rpm, input_tpm, output_tpm)| Limits {
        rpm,
        input_tpm,
        output_tpm,
    })
}

fn costs(e: &MockEvent) -> [u128; 3] {
    [1, u128::from(e.input_tokens), u128::from(e.max_tokens)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// In any window [a, b]: admitted ≤ capacity + rate · (b − a), per dimension.
    #[test]
    fn token_bucket_admits_at_most_capacity_plus_refill(limits in limits(), share in 0.0..0.5f64, schedule in schedule()) {
        let (eff, events) = replay(Algorithm::TokenBucket, limits, share, &schedule);
        let caps = [eff.rpm, eff.input_tpm, eff.output_tpm].map(u128::from);
        let ok: Vec<_> = events.iter().filter(|e| e.status == StatusCode::OK).collect();
        for i in 0..ok.len() {
            let mut sum = [0u128; 3];
            for j in i..ok.len() {
                let c = costs(ok[j]);
                for d in 0..3 {
                    sum[d] += c[d];
                }
                let w = (ok[j].at - ok[i].at).as_nanos();
                for d in 0..3 {
                    prop_assert!(sum[d] * MINUTE_NS <= caps[d] * MINUTE_NS + caps[d] * w,
                        "dimension {d}: {} admitted in {w} ns with capacity {}", sum[d], caps[d]);
                }
            }
        }
    }

    /// Per 60 s window since the start: admitted ≤ limit, per dimension.
    #[test]
    fn fixed_window_admits_at_most_the_limit(limits in limits(), share in 0.0..0.5f64, schedule in schedule()) {
        let (eff, events) = replay(Algorithm::FixedWindow, limits, share, &schedule);
        let caps = [eff.rpm, eff.input_tpm, eff.output_tpm].map(u128::from);
        let mut per_window = std::collections::BTreeMap::<u64, [u128; 3]>::new();
        for e in events.iter().filter(|e| e.status == StatusCode::OK) {
            let sum = per_window.entry(e.at.as_secs() / 60).or_default();
            for (s, c) in sum.iter_mut().zip(costs(e)) {
                *s += c;
            }
        }
        for (window, sum) in per_window {
            for d in 0..3 {
                prop_assert!(sum[d] <= caps[d], "window {window}, dimension {d}: {} > {}", sum[d], caps[d]);
            }
        }
    }
}
