//! UsageReader against answers shaped like the providers' own: JSON bodies and SSE streams.

use proptest::prelude::*;
use tollgate_http::{Provider, SeenUsage, UsageReader, JSON_BODY_CAP, SSE_EVENT_CAP};

const SSE: Option<&str> = Some("text/event-stream");

/// An Anthropic stream: cache fields at the start, cumulative output in `message_delta`.
const ANTHROPIC_STREAM: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":2000,\"output_tokens\":1}}}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\n\
data: {\"type\":\"ping\"}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Héllo 🌍, \\\"usage\\\"\"}}\n\n\
: keep-alive\n\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n\
event: message_stop\n\
data: {\"type\":\"message_stop\"}\n\n";

const ANTHROPIC_USAGE: SeenUsage = SeenUsage {
    input_tokens: Some(25),
    output_tokens: Some(15),
    cache_read: Some(2000),
    cache_write: Some(100),
    complete: true,
};

/// An OpenAI chat stream with `include_usage`: `"usage":null` on every chunk but the last.
const CHAT_STREAM: &str = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Ünïcode ✓\"},\"finish_reason\":null}],\"usage\":null}\n\n\
: comment\n\n\
data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":40,\"completion_tokens\":7,\"total_tokens\":47,\"prompt_tokens_details\":{\"cached_tokens\":32}}}\n\n\
data: [DONE]\n\n";

const CHAT_USAGE: SeenUsage = SeenUsage {
    input_tokens: Some(40),
    output_tokens: Some(7),
    cache_read: Some(32),
    cache_write: None,
    complete: true,
};

/// An OpenAI Responses stream: usage only in `response.completed`, no `[DONE]`.
const RESPONSES_STREAM: &str = "event: response.created\n\
data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\",\"usage\":null}}\n\n\
event: response.output_text.delta\n\
data: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Grüße\"}\n\n\
event: response.completed\n\
data: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"id\":\"resp_1\",\"status\":\"completed\",\"usage\":{\"input_tokens\":36,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":87,\"output_tokens_details\":{\"reasoning_tokens\":64},\"total_tokens\":123}}}\n\n";

const RESPONSES_USAGE: SeenUsage = SeenUsage {
    input_tokens: Some(36),
    output_tokens: Some(87),
    cache_read: Some(0),
    cache_write: None,
    complete: true,
};

fn read(provider: Provider, content_type: Option<&str>, chunks: &[&[u8]]) -> UsageReader {
    let mut reader = UsageReader::new(provider, content_type);
    for chunk in chunks {
        reader.feed(chunk);
    }
    reader.finish();
    reader
}

fn seen(provider: Provider, content_type: Option<&str>, body: &str) -> SeenUsage {
    read(provider, content_type, &[body.as_bytes()]).seen()
}

#[test]
fn anthropic_stream() {
    assert_eq!(
        seen(Provider::Anthropic, SSE, ANTHROPIC_STREAM),
        ANTHROPIC_USAGE
    );
}

#[test]
fn anthropic_stream_before_the_end_is_not_complete() {
    let cut = &ANTHROPIC_STREAM[..ANTHROPIC_STREAM.find("event: message_delta").unwrap()];
    let expected = SeenUsage {
        output_tokens: Some(1),
        complete: false,
        ..ANTHROPIC_USAGE
    };
    assert_eq!(seen(Provider::Anthropic, SSE, cut), expected);
}

#[test]
fn anthropic_delta_replaces_only_the_fields_it_has() {
    let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n\
        event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":5}}\n\n\
        event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":12,\"output_tokens\":9,\"cache_read_input_tokens\":null}}\n\n";
    let expected = SeenUsage {
        input_tokens: Some(12),
        output_tokens: Some(9),
        complete: true,
        ..SeenUsage::default()
    };
    assert_eq!(seen(Provider::Anthropic, SSE, stream), expected);
}

#[test]
fn anthropic_event_type_stands_in_for_a_missing_event_line_and_back() {
    // No `event:` line: the JSON type names the event.
    let no_name = "data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":4}}\n\n";
    let got = seen(Provider::Anthropic, SSE, no_name);
    assert_eq!((got.output_tokens, got.complete), (Some(4), true));
    // No JSON type: the event line names it.
    let no_type = "event: message_delta\ndata: {\"usage\":{\"output_tokens\":6}}\n\n";
    assert_eq!(
        seen(Provider::Anthropic, SSE, no_type).output_tokens,
        Some(6)
    );
    // `message_stop` alone completes.
    assert!(
        seen(
            Provider::Anthropic,
            SSE,
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
        )
        .complete
    );
}

#[test]
fn anthropic_json() {
    let body = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5",
        "content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","stop_sequence":null,
        "usage":{"input_tokens":25,"output_tokens":15,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000}}"#;
    assert_eq!(
        seen(Provider::Anthropic, Some("application/json"), body),
        ANTHROPIC_USAGE
    );
    assert_eq!(seen(Provider::Anthropic, None, body), ANTHROPIC_USAGE);
}

#[test]
fn error_bodies_have_no_usage() {
    let anthropic = r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;
    assert_eq!(
        seen(Provider::Anthropic, None, anthropic),
        SeenUsage::default()
    );
    let openai = r#"{"error":{"message":"slow down","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;
    assert_eq!(
        seen(Provider::OpenAiChat, None, openai),
        SeenUsage::default()
    );
    let stream_error = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"x\"}}\n\n";
    assert_eq!(
        seen(Provider::Anthropic, SSE, stream_error),
        SeenUsage::default()
    );
    assert_eq!(
        seen(Provider::OpenAiResponses, None, "not json"),
        SeenUsage::default()
    );
}

#[test]
fn chat_stream() {
    assert_eq!(seen(Provider::OpenAiChat, SSE, CHAT_STREAM), CHAT_USAGE);
}

#[test]
fn chat_stream_without_include_usage_has_none() {
    let without: String = CHAT_STREAM
        .split("\n\n")
        .filter(|e| !e.contains("prompt_tokens"))
        .map(|e| format!("{e}\n\n"))
        .collect();
    assert_eq!(
        seen(Provider::OpenAiChat, SSE, &without),
        SeenUsage::default()
    );
}

#[test]
fn chat_json() {
    let body = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o",
        "choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],
        "usage":{"prompt_tokens":40,"completion_tokens":7,"total_tokens":47,"prompt_tokens_details":{"cached_tokens":32}}}"#;
    assert_eq!(
        seen(Provider::OpenAiChat, Some("application/json"), body),
        CHAT_USAGE
    );
}

#[test]
fn responses_stream() {
    assert_eq!(
        seen(Provider::OpenAiResponses, SSE, RESPONSES_STREAM),
        RESPONSES_USAGE
    );
    // Cut short by `max_output_tokens`: `response.incomplete` carries the usage.
    let incomplete = RESPONSES_STREAM.replace("response.completed", "response.incomplete");
    assert_eq!(
        seen(Provider::OpenAiResponses, SSE, &incomplete),
        RESPONSES_USAGE
    );
    // Without the final event nothing is known.
    let cut = &RESPONSES_STREAM[..RESPONSES_STREAM.find("event: response.completed").unwrap()];
    assert_eq!(
        seen(Provider::OpenAiResponses, SSE, cut),
        SeenUsage::default()
    );
}

#[test]
fn responses_json() {
    let body = r#"{"id":"resp_1","object":"response","status":"completed","output":[],
        "usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,
        "output_tokens_details":{"reasoning_tokens":64},"total_tokens":123}}"#;
    assert_eq!(
        seen(
            Provider::OpenAiResponses,
            Some("application/json; charset=utf-8"),
            body
        ),
        RESPONSES_USAGE
    );
}

#[test]
fn content_type_is_matched_without_case_or_parameters() {
    assert_eq!(
        seen(
            Provider::OpenAiChat,
            Some(" Text/Event-Stream ; charset=utf-8"),
            CHAT_STREAM
        ),
        CHAT_USAGE
    );
    // An SSE body read as JSON yields nothing.
    assert_eq!(
        seen(Provider::OpenAiChat, Some("application/json"), CHAT_STREAM),
        SeenUsage::default()
    );
}

#[test]
fn a_json_body_over_the_cap_leaves_usage_unknown() {
    let body = r#"{"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
    let padding = vec![b' '; JSON_BODY_CAP - body.len()];
    // At the cap exactly: read.
    let reader = read(Provider::OpenAiChat, None, &[body.as_bytes(), &padding]);
    assert_eq!(reader.seen().output_tokens, Some(2));
    assert!(!reader.truncated());
    // One byte more: unknown, and noted.
    let reader = read(
        Provider::OpenAiChat,
        None,
        &[body.as_bytes(), &padding, b" "],
    );
    assert_eq!(reader.seen(), SeenUsage::default());
    assert!(reader.truncated());
}

#[test]
fn an_sse_event_over_the_cap_is_dropped_and_later_usage_read() {
    let big = format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"{}\"}}}}],\"usage\":{{\"prompt_tokens\":999}}}}\n\n", "x".repeat(SSE_EVENT_CAP));
    let mut reader = UsageReader::new(Provider::OpenAiChat, SSE);
    for chunk in big.as_bytes().chunks(64 * 1024) {
        reader.feed(chunk);
    }
    assert_eq!(reader.seen(), SeenUsage::default());
    assert!(reader.truncated());
    reader.feed(CHAT_STREAM.as_bytes());
    assert_eq!(reader.seen(), CHAT_USAGE);
}

#[test]
fn finish_is_idempotent_and_later_bytes_are_ignored() {
    let body = r#"{"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
    let mut reader = read(Provider::OpenAiChat, None, &[body.as_bytes()]);
    reader.feed(b"garbage");
    reader.finish();
    assert_eq!(reader.seen().input_tokens, Some(1));
}

/// The stream with every line end written as `eol`.
fn with_line_ends(stream: &str, eol: &str) -> String {
    stream.replace('\n', eol)
}

/// Anthropic events whose JSON has no `type`: only the `event:` line names them, so a line end
/// read wrong (an `\r\n` taken for two) loses them.
const ANTHROPIC_UNTYPED: &str = "event: message_start\ndata: {\"message\":{\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n\
event: message_delta\ndata: {\"usage\":{\"output_tokens\":2}}\n\n";

const ANTHROPIC_UNTYPED_USAGE: SeenUsage = SeenUsage {
    input_tokens: Some(3),
    output_tokens: Some(2),
    cache_read: None,
    cache_write: None,
    complete: true,
};

fn sample() -> impl Strategy<Value = (Provider, String, SeenUsage)> {
    let streams = [
        (Provider::Anthropic, ANTHROPIC_STREAM, ANTHROPIC_USAGE),
        (
            Provider::Anthropic,
            ANTHROPIC_UNTYPED,
            ANTHROPIC_UNTYPED_USAGE,
        ),
        (Provider::OpenAiChat, CHAT_STREAM, CHAT_USAGE),
        (Provider::OpenAiResponses, RESPONSES_STREAM, RESPONSES_USAGE),
    ];
    (
        0..streams.len(),
        prop::sample::select(vec!["\n", "\r\n", "\r"]),
    )
        .prop_map(move |(i, eol)| {
            let (provider, stream, usage) = streams[i];
            (provider, with_line_ends(stream, eol), usage)
        })
}

/// Cuts `bytes` at the given positions (taken modulo its length, in any order).
fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        out.push(&bytes[start..cut]);
        start = cut;
    }
    out
}

proptest! {
    /// Any split of a stream into chunks, mid-line, mid-`\r\n` or mid-character, reads the same
    /// usage as the stream whole, with any of the three line ends.
    #[test]
    fn any_split_reads_the_same_usage(
        (provider, stream, usage) in sample(),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let whole = read(provider, SSE, &[stream.as_bytes()]).seen();
        prop_assert_eq!(whole, usage);
        let chunks = split(stream.as_bytes(), &cuts);
        prop_assert_eq!(read(provider, SSE, &chunks).seen(), whole);
    }

    /// One byte at a time too.
    #[test]
    fn byte_by_byte_reads_the_same_usage((provider, stream, usage) in sample()) {
        let chunks: Vec<&[u8]> = stream.as_bytes().chunks(1).collect();
        prop_assert_eq!(read(provider, SSE, &chunks).seen(), usage);
    }

    /// Arbitrary bytes in arbitrary chunks, in either mode, never panic.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(prop_oneof![any::<u8>(), Just(b'\n'), Just(b'\r'), Just(b':')], 0..2000),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
        provider in prop::sample::select(vec![Provider::Anthropic, Provider::OpenAiChat, Provider::OpenAiResponses]),
        sse in any::<bool>(),
    ) {
        let content_type = if sse { SSE } else { None };
        let reader = read(provider, content_type, &split(&bytes, &cuts));
        let _ = reader.seen();
    }
}
