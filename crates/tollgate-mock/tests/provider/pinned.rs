//! The exact bytes of whole answers: names, values and order of every header must never change.

use std::time::Duration;

use http::Response;
use tollgate_mock::{MockProvider, MockReply, MockRequest};

use crate::support::call;

fn assert_headers(response: &Response<MockReply>, status: u16, expected: &[(&str, &str)]) {
    assert_eq!(response.status().as_u16(), status);
    let got: Vec<(&str, &[u8])> = response
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect();
    let expected: Vec<(&str, &[u8])> = expected
        .iter()
        .map(|&(name, value)| (name, value.as_bytes()))
        .collect();
    assert_eq!(got, expected);
}

#[tokio::test(start_paused = true)]
async fn a_200_and_a_429_byte_for_byte() {
    let provider = MockProvider::builder()
        .rpm(7)
        .input_tpm(7_000)
        .output_tpm(1_300)
        .latency(Duration::ZERO, Duration::ZERO, 0.0)
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_micros(1_234_567)).await;
    let ok = call(&provider, MockRequest::new(1_234, 300, 100)).await;
    assert_headers(
        &ok,
        200,
        &[
            ("anthropic-ratelimit-requests-limit", "7"),
            ("anthropic-ratelimit-requests-remaining", "6"),
            (
                "anthropic-ratelimit-requests-reset",
                "2026-01-01T00:00:09.807Z",
            ),
            ("anthropic-ratelimit-input-tokens-limit", "7000"),
            ("anthropic-ratelimit-input-tokens-remaining", "5766"),
            (
                "anthropic-ratelimit-input-tokens-reset",
                "2026-01-01T00:00:11.813Z",
            ),
            ("anthropic-ratelimit-output-tokens-limit", "1300"),
            ("anthropic-ratelimit-output-tokens-remaining", "1000"),
            (
                "anthropic-ratelimit-output-tokens-reset",
                "2026-01-01T00:00:15.082Z",
            ),
            ("x-ratelimit-limit-requests", "7"),
            ("x-ratelimit-remaining-requests", "6"),
            ("x-ratelimit-reset-requests", "8.572s"),
            ("x-ratelimit-limit-tokens", "7000"),
            ("x-ratelimit-remaining-tokens", "5766"),
            ("x-ratelimit-reset-tokens", "10.578s"),
        ],
    );
    for _ in 0..6 {
        call(&provider, MockRequest::new(10, 10, 10)).await;
    }
    tokio::time::sleep(Duration::from_micros(3_001)).await;
    let limited = call(&provider, MockRequest::new(10, 10, 10)).await;
    assert_headers(
        &limited,
        429,
        &[
            ("anthropic-ratelimit-requests-limit", "7"),
            ("anthropic-ratelimit-requests-remaining", "0"),
            (
                "anthropic-ratelimit-requests-reset",
                "2026-01-01T00:01:01.235Z",
            ),
            ("anthropic-ratelimit-input-tokens-limit", "7000"),
            ("anthropic-ratelimit-input-tokens-remaining", "5706"),
            (
                "anthropic-ratelimit-input-tokens-reset",
                "2026-01-01T00:00:12.327Z",
            ),
            ("anthropic-ratelimit-output-tokens-limit", "1300"),
            ("anthropic-ratelimit-output-tokens-remaining", "1140"),
            (
                "anthropic-ratelimit-output-tokens-reset",
                "2026-01-01T00:00:08.620Z",
            ),
            ("x-ratelimit-limit-requests", "7"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "59.996s"),
            ("x-ratelimit-limit-tokens", "7000"),
            ("x-ratelimit-remaining-tokens", "5706"),
            ("x-ratelimit-reset-tokens", "11.088s"),
            ("retry-after", "9"),
            ("retry-after-ms", "8568"),
        ],
    );
}

#[tokio::test(start_paused = true)]
async fn unlimited_tokens_as_the_simulator_configures_them() {
    let provider = MockProvider::builder()
        .rpm(1)
        .input_tpm(u64::MAX / 4)
        .output_tpm(u64::MAX / 4)
        .epoch_unix_secs(1_700_000_000)
        .latency(Duration::ZERO, Duration::ZERO, 0.0)
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3_725)).await;
    let ok = call(&provider, MockRequest::new(2_000, 1_000, 500)).await;
    assert_headers(
        &ok,
        200,
        &[
            ("anthropic-ratelimit-requests-limit", "1"),
            ("anthropic-ratelimit-requests-remaining", "0"),
            ("anthropic-ratelimit-requests-reset", "2023-11-14T23:16:25Z"),
            (
                "anthropic-ratelimit-input-tokens-limit",
                "4611686018427387903",
            ),
            (
                "anthropic-ratelimit-input-tokens-remaining",
                "4611686018427385904",
            ),
            (
                "anthropic-ratelimit-input-tokens-reset",
                "2023-11-14T23:15:25.001Z",
            ),
            (
                "anthropic-ratelimit-output-tokens-limit",
                "4611686018427387903",
            ),
            (
                "anthropic-ratelimit-output-tokens-remaining",
                "4611686018427386904",
            ),
            (
                "anthropic-ratelimit-output-tokens-reset",
                "2023-11-14T23:15:25.001Z",
            ),
            ("x-ratelimit-limit-requests", "1"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "1m0s"),
            ("x-ratelimit-limit-tokens", "4611686018427387903"),
            ("x-ratelimit-remaining-tokens", "4611686018427385904"),
            ("x-ratelimit-reset-tokens", "1ms"),
        ],
    );
    tokio::time::sleep(Duration::from_micros(500_250)).await;
    let limited = call(&provider, MockRequest::new(2_000, 1_000, 500)).await;
    assert_headers(
        &limited,
        429,
        &[
            ("anthropic-ratelimit-requests-limit", "1"),
            ("anthropic-ratelimit-requests-remaining", "0"),
            ("anthropic-ratelimit-requests-reset", "2023-11-14T23:16:25Z"),
            (
                "anthropic-ratelimit-input-tokens-limit",
                "4611686018427387903",
            ),
            (
                "anthropic-ratelimit-input-tokens-remaining",
                "4611686018427387904",
            ),
            (
                "anthropic-ratelimit-input-tokens-reset",
                "2023-11-14T23:15:25.501Z",
            ),
            (
                "anthropic-ratelimit-output-tokens-limit",
                "4611686018427387903",
            ),
            (
                "anthropic-ratelimit-output-tokens-remaining",
                "4611686018427387904",
            ),
            (
                "anthropic-ratelimit-output-tokens-reset",
                "2023-11-14T23:15:25.501Z",
            ),
            ("x-ratelimit-limit-requests", "1"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "59.499s"),
            ("x-ratelimit-limit-tokens", "4611686018427387903"),
            ("x-ratelimit-remaining-tokens", "4611686018427387904"),
            ("x-ratelimit-reset-tokens", "0s"),
            ("retry-after", "60"),
            ("retry-after-ms", "59499"),
        ],
    );
}
