//! Anthropic Messages: a `message` object, or `message_start` … `message_stop` events.

use serde_json::{json, Value};

use super::{typed, words, Reply};

fn stop_reason(reply: &Reply) -> &'static str {
    if reply.capped {
        "max_tokens"
    } else {
        "end_turn"
    }
}

fn usage(reply: &Reply, output: u64) -> Value {
    json!({
        "input_tokens": reply.input,
        "output_tokens": output,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    })
}

/// The `message` object of a non-streaming answer.
pub(super) fn message(reply: &Reply) -> Value {
    json!({
        "id": reply.id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": [{"type": "text", "text": reply.text()}],
        "stop_reason": stop_reason(reply),
        "stop_sequence": null,
        "usage": usage(reply, reply.output()),
    })
}

/// `message_start` (usage with the input tokens and one output token so far),
/// `content_block_start`, a `ping`, one `content_block_delta` per word, `content_block_stop`,
/// `message_delta` (the cumulative output tokens) and `message_stop`.
pub(super) fn stream(out: &mut String, reply: &Reply) {
    let start = json!({
        "id": reply.id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": [],
        "stop_reason": null,
        "stop_sequence": null,
        "usage": usage(reply, 1),
    });
    typed(out, &json!({"type": "message_start", "message": start}));
    typed(
        out,
        &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    typed(out, &json!({"type": "ping"}));
    for delta in words::deltas(&reply.words) {
        typed(
            out,
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": delta}}),
        );
    }
    typed(out, &json!({"type": "content_block_stop", "index": 0}));
    typed(
        out,
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(reply), "stop_sequence": null},
            "usage": {"output_tokens": reply.output()},
        }),
    );
    typed(out, &json!({"type": "message_stop"}));
}
