//! OpenAI Chat Completions: a `chat.completion`, or `chat.completion.chunk`s and `[DONE]`.

use serde_json::{json, Value};

use super::{event, words, Reply};

fn finish_reason(reply: &Reply) -> &'static str {
    if reply.capped {
        "length"
    } else {
        "stop"
    }
}

fn usage(reply: &Reply) -> Value {
    json!({
        "prompt_tokens": reply.input,
        "completion_tokens": reply.output(),
        "total_tokens": reply.input + reply.output(),
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    })
}

/// The `chat.completion` of a non-streaming answer.
pub(super) fn completion(reply: &Reply) -> Value {
    json!({
        "id": reply.id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": reply.text(), "refusal": null},
            "logprobs": null,
            "finish_reason": finish_reason(reply),
        }],
        "usage": usage(reply),
    })
}

/// A chunk with the role, one per word, one with the finish reason; with `include_usage` every
/// chunk has `"usage": null` and a last one has `"choices": []` and the usage; then `[DONE]`.
pub(super) fn stream(out: &mut String, reply: &Reply, include_usage: bool) {
    let chunk = |choices: Value, usage: Value| {
        let mut chunk = json!({
            "id": reply.id,
            "object": "chat.completion.chunk",
            "created": reply.created,
            "model": reply.model,
            "choices": choices,
        });
        if include_usage {
            chunk["usage"] = usage;
        }
        chunk
    };
    let choice = |delta: Value, finish: Value| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
    let role = choice(json!({"role": "assistant", "content": ""}), Value::Null);
    event(out, None, &chunk(role, Value::Null));
    for delta in words::deltas(&reply.words) {
        let content = choice(json!({"content": delta}), Value::Null);
        event(out, None, &chunk(content, Value::Null));
    }
    let finish = choice(json!({}), json!(finish_reason(reply)));
    event(out, None, &chunk(finish, Value::Null));
    if include_usage {
        event(out, None, &chunk(json!([]), usage(reply)));
    }
    out.push_str("data: [DONE]\n\n");
}
