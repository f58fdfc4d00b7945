//! The official Python SDKs (anthropic, openai; versions pinned in `scripts/sdk-venv.sh`)
//! against the `tollgate-mock` binary: they parse its answers, report the usage the mock counted,
//! and retry its 429s after the `retry-after` it sent.
//!
//! Needs `TOLLGATE_SDK_PYTHON`, the venv's python that `scripts/sdk-venv.sh` prints (and
//! `scripts/test.sh` exports). Without it every test here fails, unless `TOLLGATE_SKIP_SDK=1`.
#![cfg(feature = "http")]

mod support;

use serde_json::Value;
use support::{python, Mock};

/// "How many requests fit in a minute?" is 34 bytes: 4 + ceil(34 / 4) = 13 tokens.
const USER_TOKENS: u64 = 13;
/// "You are a careful assistant." is 28 bytes: 4 + 7 = 11 tokens.
const SYSTEM_TOKENS: u64 = 11;

/// Checks each call the SDK reported: input tokens by the mock's rule, output tokens = words of
/// the text, the stop reason; returns the sums.
fn check_calls(report: &Value, expected: &[(&str, u64, u64, &str)]) -> (u64, u64) {
    let calls = &report["calls"];
    let mut sums = (0, 0);
    for &(name, input, cap, stop) in expected {
        let call = &calls[name];
        let text = call["text"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no text in {call}"));
        let words = text.split(' ').count() as u64;
        assert_eq!(call["input_tokens"], input, "{name}: input tokens");
        assert_eq!(
            call["output_tokens"], words,
            "{name}: output tokens = words of {text:?}"
        );
        assert!(
            words <= cap && words >= 8.min(cap),
            "{name}: {words} words, cap {cap}"
        );
        assert_eq!(call["stop_reason"], stop, "{name}: stop reason");
        sums.0 += input;
        sums.1 += words;
    }
    sums
}

/// The route's ground truth agrees with what the SDK settled.
fn check_route(stats: &Value, path: &str, calls: u64, (input, output): (u64, u64)) {
    let route = &stats["routes"][path];
    assert_eq!(route["admitted"], calls, "{path}: {route}");
    assert_eq!(route["requests"], calls, "{path}: {route}");
    assert_eq!(route["input_tokens"], input, "{path}: {route}");
    assert_eq!(route["output_tokens"], output, "{path}: {route}");
}

#[test]
fn anthropic_sdk_parses_json_and_streams_with_the_mocks_usage() {
    let Some(python) = python() else { return };
    let mock = Mock::start(&["--rpm", "1000", "--seed", "7"]);
    let report = mock.run(&python, &["anthropic_usage.py", mock.url()]);
    let both = USER_TOKENS + SYSTEM_TOKENS;
    let sums = check_calls(
        &report,
        &[
            ("create", both, 64, "end_turn"),
            ("create_capped", USER_TOKENS, 5, "max_tokens"),
            ("stream_helper", both, 64, "end_turn"),
            ("stream_raw", USER_TOKENS, 64, "end_turn"),
        ],
    );
    for call in report["calls"]
        .as_object()
        .into_iter()
        .flat_map(|c| c.values())
    {
        assert_eq!(call["cache_creation_input_tokens"], 0);
        assert_eq!(call["cache_read_input_tokens"], 0);
    }
    check_route(&mock.stats(), "/v1/messages", 4, sums);
}

#[test]
fn openai_sdk_parses_chat_and_responses_with_the_mocks_usage() {
    let Some(python) = python() else { return };
    let mock = Mock::start(&["--rpm", "1000", "--seed", "7"]);
    let report = mock.run(&python, &["openai_usage.py", mock.url()]);
    let both = USER_TOKENS + SYSTEM_TOKENS;
    let chat = check_calls(
        &report,
        &[
            ("chat_create", both, 64, "stop"),
            ("chat_create_capped", both, 5, "length"),
            ("chat_stream", both, 64, "stop"),
        ],
    );
    let responses = check_calls(
        &report,
        &[
            ("responses_create", both, 64, "completed"),
            ("responses_stream", both, 64, "completed"),
            ("responses_stream_helper", both, 64, "completed"),
        ],
    );
    let stats = mock.stats();
    check_route(&stats, "/v1/responses", 3, responses);
    // The script also streams once without include_usage: no usage reaches the SDK then.
    let route = &stats["routes"]["/v1/chat/completions"];
    assert_eq!(route["admitted"], 4, "{route}");
    assert_eq!(route["input_tokens"], chat.0 + both, "{route}");
    let output = route["output_tokens"].as_u64().unwrap_or(0);
    assert!((chat.1 + 8..=chat.1 + 64).contains(&output), "{route}");
    assert_eq!(stats["provider"]["ok"], 7);
}

/// Drains the bucket with `max_retries=0` (the SDK raises `RateLimitError` on the first 429),
/// then one call with `max_retries=2`: the SDK gets a 429 with `retry-after`, waits and the retry
/// is admitted. Its own backoff (0.5 s, then 1 s) is shorter than the 3 s the mock asks for at 20
/// RPM, so a retry that ignored `retry-after` would meet more 429s and fail.
fn retry_after_is_honoured(sdk: &str, path: &str) {
    let Some(python) = python() else { return };
    let mock = Mock::start(&["--rpm", "20"]);
    let report = mock.run(&python, &["retry.py", sdk, mock.url()]);
    assert_eq!(report["admitted_before_429"], 20, "{report}");
    assert_eq!(report["retry_after"], 3, "{report}");
    let route = &mock.stats()["routes"][path];
    assert_eq!(
        route["rate_limited"], 2,
        "the drain's 429 and exactly one for the retried call: {route}"
    );
    assert_eq!(route["admitted"], 21, "{route}");
    assert_eq!(route["requests"], 23, "{route}");
    eprintln!("{sdk}: the retried call took {} s", report["elapsed_s"]);
}

#[test]
fn anthropic_sdk_raises_rate_limit_error_and_retries_after_retry_after() {
    retry_after_is_honoured("anthropic", "/v1/messages");
}

#[test]
fn openai_sdk_raises_rate_limit_error_and_retries_after_retry_after() {
    retry_after_is_honoured("openai", "/v1/chat/completions");
}
