//! OpenAI Responses: a `response` object, or `response.created` … `response.completed` events.

use serde_json::{json, Value};

use super::{typed, words, Reply};

/// The id of the answer's one output message.
fn item_id(reply: &Reply) -> String {
    format!("msg_{}", reply.id.trim_start_matches("resp_"))
}

fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": []})
}

fn item(reply: &Reply, done: bool) -> Value {
    let (status, content) = if done {
        ("completed", json!([text_part(&reply.text())]))
    } else {
        ("in_progress", json!([]))
    };
    json!({
        "type": "message",
        "id": item_id(reply),
        "status": status,
        "role": "assistant",
        "content": content,
    })
}

/// The `response` object: finished (`completed`, or `incomplete` when `max_output_tokens` cut
/// it, with the output and the usage) or just created (`in_progress`, no output, no usage).
pub(super) fn response(reply: &Reply, done: bool) -> Value {
    let status = match (done, reply.capped) {
        (false, _) => "in_progress",
        (true, false) => "completed",
        (true, true) => "incomplete",
    };
    let incomplete = (done && reply.capped).then(|| json!({"reason": "max_output_tokens"}));
    let (output, usage) = if done {
        let usage = json!({
            "input_tokens": reply.input,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": reply.output(),
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": reply.input + reply.output(),
        });
        (json!([item(reply, true)]), usage)
    } else {
        (json!([]), Value::Null)
    };
    json!({
        "id": reply.id,
        "object": "response",
        "created_at": reply.created,
        "status": status,
        "error": null,
        "incomplete_details": incomplete,
        "model": reply.model,
        "output": output,
        "parallel_tool_calls": true,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    })
}

/// `response.created`, `response.in_progress`, `response.output_item.added`,
/// `response.content_part.added`, one `response.output_text.delta` per word, the matching
/// `….done` events and `response.completed` (`response.incomplete` when cut), each with its
/// `sequence_number`.
pub(super) fn stream(out: &mut String, reply: &Reply) {
    let mut seq = 0u64;
    let mut send = |out: &mut String, mut data: Value| {
        data["sequence_number"] = json!(seq);
        seq += 1;
        typed(out, &data);
    };
    let id = item_id(reply);
    let text = reply.text();
    let part = |t: &str| json!({"item_id": id, "output_index": 0, "content_index": 0, "part": text_part(t)});
    let created = response(reply, false);
    send(
        out,
        json!({"type": "response.created", "response": created}),
    );
    send(
        out,
        json!({"type": "response.in_progress", "response": created}),
    );
    send(
        out,
        json!({"type": "response.output_item.added", "output_index": 0, "item": item(reply, false)}),
    );
    let mut added = part("");
    added["type"] = json!("response.content_part.added");
    send(out, added);
    for delta in words::deltas(&reply.words) {
        send(
            out,
            json!({"type": "response.output_text.delta", "item_id": id, "output_index": 0,
                   "content_index": 0, "delta": delta, "logprobs": []}),
        );
    }
    send(
        out,
        json!({"type": "response.output_text.done", "item_id": id, "output_index": 0,
               "content_index": 0, "text": text, "logprobs": []}),
    );
    let mut done = part(&text);
    done["type"] = json!("response.content_part.done");
    send(out, done);
    send(
        out,
        json!({"type": "response.output_item.done", "output_index": 0, "item": item(reply, true)}),
    );
    let last = if reply.capped {
        "response.incomplete"
    } else {
        "response.completed"
    };
    send(
        out,
        json!({"type": last, "response": response(reply, true)}),
    );
}
