//! The input of an Anthropic Messages request.

use super::{array, tokens, EstimateOptions, Tally};
use serde_json::{Map, Value};

/// Input tokens of a validated Anthropic request body.
pub(crate) fn anthropic_input(body: &Map<String, Value>, options: &EstimateOptions) -> u64 {
    let mut tally = Tally::new(tokens::ANTHROPIC_CHARS, options);
    content(&mut tally, body.get("system"));
    for message in array(body.get("messages")) {
        tally.message();
        content(&mut tally, message.get("content"));
    }
    tally.tools(body.get("tools"));
    tally.total()
}

/// A `content` (or `system`, or tool result content): a string or a list of blocks.
fn content(tally: &mut Tally<'_>, value: Option<&Value>) {
    match value {
        Some(Value::String(s)) => tally.text(s),
        Some(Value::Array(blocks)) => blocks.iter().for_each(|b| block(tally, b)),
        _ => {}
    }
}

fn block(tally: &mut Tally<'_>, block: &Value) {
    match block.get("type").and_then(Value::as_str) {
        Some("text") => tally.text_of(block.get("text")),
        Some("image") => tally.image(false),
        Some("document") => document(tally, block),
        Some("tool_use" | "server_tool_use") => {
            tally.text_of(block.get("name"));
            tally.json(block.get("input"));
        }
        Some("tool_result") => content(tally, block.get("content")),
        Some("thinking") => tally.text_of(block.get("thinking")),
        // Encrypted reasoning of an earlier turn: its size is unknown and small next to the rest.
        Some("redacted_thinking") => {}
        _ => tally.strings(block),
    }
}

/// A document: its text when the request carries it as text, else the fixed figure.
fn document(tally: &mut Tally<'_>, block: &Value) {
    tally.text_of(block.get("title"));
    tally.text_of(block.get("context"));
    let source = block.get("source");
    match source.and_then(|s| s.get("type")).and_then(Value::as_str) {
        Some("text") => tally.text_of(source.and_then(|s| s.get("data"))),
        Some("content") => content(tally, source.and_then(|s| s.get("content"))),
        _ => tally.document(),
    }
}
