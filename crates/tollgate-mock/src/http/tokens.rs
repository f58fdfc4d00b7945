//! The mock's own token counts: simple, documented, and deliberately unlike any tokenizer, so a
//! client's estimate can be compared with what the provider billed.
//!
//! - **Input**: every message costs [`MESSAGE_OVERHEAD`] tokens plus `ceil(bytes / 4)` of its
//!   text. A system prompt (`system`, `instructions`) counts as one more message.
//! - **Text of a message**: its `content` string; for a list of blocks, the sum over blocks of the
//!   block's `text` string, or of the block's compact JSON when it has no `text` (images, tool
//!   calls, tool results); an item without `content` (a Responses `function_call_output`) counts
//!   its compact JSON.
//! - **Output**: one token per generated word ([`words`](super::words)).

use serde_json::Value;

/// Tokens every message costs besides its text.
pub const MESSAGE_OVERHEAD: u64 = 4;

/// Bytes of text per input token (rounded up per message).
pub const BYTES_PER_TOKEN: u64 = 4;

/// Input tokens of one message or item: the overhead plus its text.
pub(crate) fn message(item: &Value) -> u64 {
    let bytes = match item.get("content") {
        Some(content) => content_bytes(content),
        None => json_bytes(item),
    };
    text(bytes)
}

/// Input tokens of a message whose whole content is `content` (a string, or a list of blocks).
pub(crate) fn content(content: &Value) -> u64 {
    text(content_bytes(content))
}

fn text(bytes: u64) -> u64 {
    MESSAGE_OVERHEAD + bytes.div_ceil(BYTES_PER_TOKEN)
}

fn content_bytes(content: &Value) -> u64 {
    match content {
        Value::String(s) => s.len() as u64,
        Value::Array(blocks) => blocks
            .iter()
            .map(|block| match block.get("text") {
                Some(Value::String(s)) => s.len() as u64,
                _ => json_bytes(block),
            })
            .sum(),
        Value::Null => 0,
        other => json_bytes(other),
    }
}

fn json_bytes(value: &Value) -> u64 {
    // Serializing a `Value` cannot fail; count nothing if it somehow did.
    serde_json::to_vec(value).map_or(0, |v| v.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_string_costs_overhead_plus_quarter_bytes_rounded_up() {
        assert_eq!(content(&json!("")), 4);
        assert_eq!(content(&json!("abcd")), 5);
        assert_eq!(content(&json!("abcde")), 6);
        assert_eq!(message(&json!({"role": "user", "content": "héllo"})), 4 + 2);
        // 6 bytes
    }

    #[test]
    fn blocks_count_their_text_or_their_json() {
        let blocks = json!([{"type": "text", "text": "abcdefgh"}, {"type": "image"}]);
        // 8 bytes of text + 16 bytes of `{"type":"image"}` = 24 bytes = 6 tokens.
        assert_eq!(content(&blocks), 4 + 6);
        let call = json!({"type": "function_call_output", "call_id": "c", "output": "x"});
        let bytes = serde_json::to_vec(&call).unwrap().len() as u64;
        assert_eq!(message(&call), 4 + bytes.div_ceil(4));
    }
}
