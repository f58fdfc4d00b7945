//! The input of an OpenAI Chat Completions or Responses request.

use super::{array, tokens, EstimateOptions, Tally};
use serde_json::{Map, Value};

/// Input tokens of a validated chat request body for `model`.
pub(crate) fn chat_input(model: &str, body: &Map<String, Value>, options: &EstimateOptions) -> u64 {
    let mut tally = Tally::new(tokens::openai_rule(model), options);
    for message in array(body.get("messages")) {
        tally.message();
        let Some(message) = message.as_object() else {
            continue;
        };
        // As OpenAI counts: every string field (role, content, name, tool_call_id, refusal).
        for (key, value) in message {
            match (key.as_str(), value) {
                (_, Value::String(s)) => tally.text(s),
                ("content", Value::Array(parts)) => parts.iter().for_each(|p| part(&mut tally, p)),
                ("tool_calls", Value::Array(calls)) => {
                    for call in calls {
                        function_call(&mut tally, call.get("function").unwrap_or(call));
                    }
                }
                ("function_call", call) => function_call(&mut tally, call),
                _ => {}
            }
        }
    }
    tally.tools(body.get("tools"));
    tally.total()
}

/// Input tokens of a validated Responses request body for `model`.
pub(crate) fn responses_input(
    model: &str,
    body: &Map<String, Value>,
    options: &EstimateOptions,
) -> u64 {
    let mut tally = Tally::new(tokens::openai_rule(model), options);
    tally.text_of(body.get("instructions"));
    match body.get("input") {
        Some(Value::String(s)) => {
            tally.message();
            tally.text(s);
        }
        Some(Value::Array(items)) => items.iter().for_each(|i| item(&mut tally, i)),
        _ => {}
    }
    tally.tools(body.get("tools"));
    tally.total()
}

/// One item of a Responses `input`.
fn item(tally: &mut Tally<'_>, item: &Value) {
    let kind = item.get("type").and_then(Value::as_str);
    match kind {
        // A message may leave out its type.
        None | Some("message") => {
            tally.message();
            tally.text_of(item.get("role"));
            match item.get("content") {
                Some(Value::String(s)) => tally.text(s),
                Some(Value::Array(parts)) => parts.iter().for_each(|p| part(tally, p)),
                _ => {}
            }
        }
        Some("function_call" | "custom_tool_call") => {
            function_call(tally, item);
            tally.text_of(item.get("input"));
        }
        Some("function_call_output" | "custom_tool_call_output") => match item.get("output") {
            Some(Value::Array(parts)) => parts.iter().for_each(|p| part(tally, p)),
            output => tally.text_of(output),
        },
        Some("reasoning") => {
            for summary in array(item.get("summary")) {
                tally.text_of(summary.get("text"));
            }
        }
        Some(_) => tally.strings(item),
    }
}

/// A content part of a chat message or a Responses message.
fn part(tally: &mut Tally<'_>, part: &Value) {
    match part.get("type").and_then(Value::as_str) {
        Some("text" | "input_text" | "output_text") => tally.text_of(part.get("text")),
        Some("refusal") => tally.text_of(part.get("refusal")),
        Some("image_url" | "input_image") => {
            let detail = part
                .get("detail")
                .or_else(|| part.pointer("/image_url/detail"));
            tally.image(detail.and_then(Value::as_str) == Some("low"));
        }
        Some("file" | "input_file" | "input_audio") => tally.document(),
        _ => tally.strings(part),
    }
}

/// A function call's name and arguments (a JSON string).
fn function_call(tally: &mut Tally<'_>, call: &Value) {
    tally.text_of(call.get("name"));
    tally.json(call.get("arguments"));
}
