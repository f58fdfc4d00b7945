//! The writer's answers: exact bytes for given states, and the properties of its templates.

use std::time::Duration;

use http::header::{HeaderMap, HeaderValue};
use proptest::prelude::*;

use super::super::names::ANTHROPIC;
use super::HeaderWriter;
use crate::config::{Algorithm, Config, Limits};
use crate::limits::DimensionState;

const EPOCH: u64 = 1_767_225_600;

fn config(limits: [u64; 3], epoch_unix_secs: u64, anthropic: bool, openai: bool) -> Config {
    let [rpm, input_tpm, output_tpm] = limits;
    let limits = Limits {
        rpm,
        input_tpm,
        output_tpm,
    };
    Config {
        limits,
        effective: limits,
        algorithm: Algorithm::TokenBucket,
        overload: None,
        latency_base: Duration::ZERO,
        latency_per_output_token: Duration::ZERO,
        jitter_fraction: 0.0,
        seed: 0,
        epoch_unix_secs,
        anthropic_headers: anthropic,
        openai_headers: openai,
        limit_and_reset_headers: true,
        reported: [true; 3],
        event_log: false,
    }
}

fn state(remaining: u64, until_full: Duration) -> DimensionState {
    DimensionState {
        remaining,
        until_full,
    }
}

fn pairs(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect()
}

/// Asserts that `headers` are exactly `expected`: names, values and order.
fn assert_bytes(headers: &HeaderMap, expected: &[(&str, &str)]) {
    let expected: Vec<(String, Vec<u8>)> = expected
        .iter()
        .map(|&(name, value)| (name.to_owned(), value.as_bytes().to_vec()))
        .collect();
    assert_eq!(pairs(headers), expected);
}

// ===== exact bytes =====

#[test]
fn both_families_with_retry_byte_for_byte() {
    let ms = Duration::from_millis;
    let writer = HeaderWriter::new(&config([60, 30_000, 8_000], EPOCH, true, true));
    let states = [
        state(59, ms(1_000)),
        state(29_000, Duration::from_nanos(2_000_000_001)),
        state(7_999, ms(60_000)),
    ];
    let headers = writer.write(
        Duration::from_micros(1_234_500),
        &states,
        Some(Duration::from_micros(1_000_100)),
    );
    assert_bytes(
        &headers,
        &[
            ("anthropic-ratelimit-requests-limit", "60"),
            ("anthropic-ratelimit-requests-remaining", "59"),
            (
                "anthropic-ratelimit-requests-reset",
                "2026-01-01T00:00:02.235Z",
            ),
            ("anthropic-ratelimit-input-tokens-limit", "30000"),
            ("anthropic-ratelimit-input-tokens-remaining", "29000"),
            (
                "anthropic-ratelimit-input-tokens-reset",
                "2026-01-01T00:00:03.235Z",
            ),
            ("anthropic-ratelimit-output-tokens-limit", "8000"),
            ("anthropic-ratelimit-output-tokens-remaining", "7999"),
            (
                "anthropic-ratelimit-output-tokens-reset",
                "2026-01-01T00:01:01.235Z",
            ),
            ("x-ratelimit-limit-requests", "60"),
            ("x-ratelimit-remaining-requests", "59"),
            ("x-ratelimit-reset-requests", "1s"),
            ("x-ratelimit-limit-tokens", "30000"),
            ("x-ratelimit-remaining-tokens", "29000"),
            ("x-ratelimit-reset-tokens", "2.001s"),
            ("retry-after", "2"),
            ("retry-after-ms", "1001"),
        ],
    );
}

#[test]
fn openai_alone_without_limit_and_reset_byte_for_byte() {
    let ms = Duration::from_millis;
    let lean = Config {
        limit_and_reset_headers: false,
        ..config([60, 30_000, 8_000], EPOCH, false, true)
    };
    let states = [state(0, ms(1_000)), state(12_345, ms(5)), state(7, ms(7))];
    let headers = HeaderWriter::new(&lean).write(
        Duration::from_secs(3_600),
        &states,
        Some(Duration::from_secs(59)),
    );
    assert_bytes(
        &headers,
        &[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-remaining-tokens", "12345"),
            ("retry-after", "59"),
            ("retry-after-ms", "59000"),
        ],
    );
}

#[test]
fn an_unreported_dimension_is_left_out_byte_for_byte() {
    let only_two = Config {
        reported: [true, true, false],
        ..config([1, u64::MAX / 4, 0], 1_700_000_000, true, false)
    };
    let states = [
        state(0, Duration::from_millis(59_999)),
        state(u64::MAX, Duration::ZERO),
        state(5, Duration::from_millis(5)),
    ];
    let headers =
        HeaderWriter::new(&only_two).write(Duration::from_secs(86_400 * 365), &states, None);
    assert_bytes(
        &headers,
        &[
            ("anthropic-ratelimit-requests-limit", "1"),
            ("anthropic-ratelimit-requests-remaining", "0"),
            (
                "anthropic-ratelimit-requests-reset",
                "2024-11-13T22:14:19.999Z",
            ),
            (
                "anthropic-ratelimit-input-tokens-limit",
                "4611686018427387903",
            ),
            (
                "anthropic-ratelimit-input-tokens-remaining",
                "18446744073709551615",
            ),
            (
                "anthropic-ratelimit-input-tokens-reset",
                "2024-11-13T22:13:20Z",
            ),
        ],
    );
}

#[test]
fn the_largest_values_saturate_byte_for_byte() {
    let writer = HeaderWriter::new(&config([u64::MAX, 10, 10], u64::MAX, true, true));
    let states = [
        state(u64::MAX, Duration::MAX),
        state(10_000, Duration::from_nanos(1)),
        state(9_999, Duration::ZERO),
    ];
    let headers = writer.write(Duration::MAX, &states, Some(Duration::MAX));
    let end_of_time = "584556019-04-03T14:25:51.615Z";
    assert_bytes(
        &headers,
        &[
            ("anthropic-ratelimit-requests-limit", "18446744073709551615"),
            (
                "anthropic-ratelimit-requests-remaining",
                "18446744073709551615",
            ),
            ("anthropic-ratelimit-requests-reset", end_of_time),
            ("anthropic-ratelimit-input-tokens-limit", "10"),
            ("anthropic-ratelimit-input-tokens-remaining", "10000"),
            ("anthropic-ratelimit-input-tokens-reset", end_of_time),
            ("anthropic-ratelimit-output-tokens-limit", "10"),
            ("anthropic-ratelimit-output-tokens-remaining", "9999"),
            ("anthropic-ratelimit-output-tokens-reset", end_of_time),
            ("x-ratelimit-limit-requests", "18446744073709551615"),
            ("x-ratelimit-remaining-requests", "18446744073709551615"),
            ("x-ratelimit-reset-requests", "5124095576030h25m51.615s"),
            ("x-ratelimit-limit-tokens", "10"),
            ("x-ratelimit-remaining-tokens", "10000"),
            ("x-ratelimit-reset-tokens", "1ms"),
            ("retry-after", "18446744073709552"),
            ("retry-after-ms", "18446744073709551615"),
        ],
    );
}

#[test]
fn only_maps_of_a_template_s_shape_are_reused() {
    let writer = HeaderWriter::new(&config([60, 1_000, 1_000], 0, true, true));
    let states = [state(1, Duration::ZERO); 3];
    let plain = writer.write(Duration::ZERO, &states, None);
    let retry = writer.write(Duration::ZERO, &states, Some(Duration::from_secs(1)));
    assert_eq!(writer.kind(&plain), Some(false));
    assert_eq!(writer.kind(&retry), Some(true));
    let mut more = plain.clone();
    more.insert("x-other", HeaderValue::from_static("1"));
    assert_eq!(writer.kind(&more), None);
    let mut twice = plain.clone();
    twice.append(&ANTHROPIC[0][1], HeaderValue::from_static("2"));
    assert_eq!(writer.kind(&twice), None);
    let mut fewer = plain;
    fewer.remove(&ANTHROPIC[0][1]);
    assert_eq!(writer.kind(&fewer), None);
    assert_eq!(writer.kind(&HeaderMap::new()), None);
}

// ===== properties =====

/// Any duration, weighted towards the small ones a provider really reports.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        4 => (0u64..120_000_000_000).prop_map(Duration::from_nanos),
        2 => (0u64..100_000).prop_map(Duration::from_millis),
        1 => any::<u64>().prop_map(Duration::from_nanos),
        1 => (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        1 => Just(Duration::MAX),
    ]
}

fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..100_000,
        any::<u64>(),
        Just(u64::MAX),
        Just(u64::MAX / 4)
    ]
}

fn any_state() -> impl Strategy<Value = DimensionState> {
    (number(), duration()).prop_map(|(remaining, until_full)| state(remaining, until_full))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn without_limit_and_reset_only_those_are_left_out(
        limits in [number(), number(), number()],
        anthropic in any::<bool>(),
        openai in any::<bool>(),
        now in duration(),
        states in [any_state(), any_state(), any_state()],
        retry in proptest::option::of(duration()),
    ) {
        let full = config(limits, EPOCH, anthropic, openai);
        let lean = Config { limit_and_reset_headers: false, ..full.clone() };
        let got = HeaderWriter::new(&lean).write(now, &states, retry);
        let mut expected = pairs(&HeaderWriter::new(&full).write(now, &states, retry));
        expected.retain(|(name, _)| !name.contains("-limit") && !name.contains("-reset"));
        prop_assert_eq!(pairs(&got), expected);
    }

    #[test]
    fn a_reused_map_gives_what_a_new_one_gives(
        limits in [number(), number(), number()],
        anthropic in any::<bool>(),
        openai in any::<bool>(),
        full in any::<bool>(),
        (now, earlier) in (duration(), duration()),
        states in [any_state(), any_state(), any_state()],
        earlier_states in [any_state(), any_state(), any_state()],
        retry in proptest::option::of(duration()),
        earlier_retry in duration(),
    ) {
        let config = Config {
            limit_and_reset_headers: full,
            ..config(limits, EPOCH, anthropic, openai)
        };
        let writer = HeaderWriter::new(&config);
        // The headers of an earlier answer of the same kind, every value since changed by
        // their reader.
        let mut spare = writer.write(earlier, &earlier_states, retry.map(|_| earlier_retry));
        for (_, value) in spare.iter_mut() {
            *value = HeaderValue::from_static("changed");
        }
        prop_assert_eq!(writer.kind(&spare), Some(retry.is_some()));
        let got = writer.write_into(Some(spare), now, &states, retry);
        prop_assert_eq!(pairs(&got), pairs(&writer.write(now, &states, retry)));
    }
}
