//! The usage fields of each provider's answers, and how each event or body updates
//! [`SeenUsage`].

use super::SeenUsage;
use crate::Provider;
use serde::Deserialize;

/// Anthropic `usage` (of a message, or of a `message_delta` event).
#[derive(Deserialize)]
struct AnthropicUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

/// An Anthropic message body, or the `message` of `message_start`.
#[derive(Deserialize)]
struct AnthropicMessage {
    usage: Option<AnthropicUsage>,
}

/// An Anthropic stream event.
#[derive(Deserialize)]
struct AnthropicEvent {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<AnthropicMessage>,
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct Details {
    cached_tokens: Option<u64>,
}

/// OpenAI `usage`: chat names its fields `prompt_…` and `completion_…`, Responses `input_…` and
/// `output_…`.
#[derive(Deserialize)]
struct OpenAiUsage {
    #[serde(alias = "prompt_tokens")]
    input_tokens: Option<u64>,
    #[serde(alias = "completion_tokens")]
    output_tokens: Option<u64>,
    #[serde(alias = "prompt_tokens_details")]
    input_tokens_details: Option<Details>,
}

/// A chat completion or a chunk of one; a response object.
#[derive(Deserialize)]
struct OpenAiBody {
    usage: Option<OpenAiUsage>,
}

/// A Responses stream event.
#[derive(Deserialize)]
struct ResponsesEvent {
    #[serde(rename = "type")]
    kind: Option<String>,
    response: Option<OpenAiBody>,
}

/// Anthropic `usage` replaces the fields it has; values are cumulative, never added.
fn apply_anthropic(seen: &mut SeenUsage, usage: &AnthropicUsage) {
    let fields = [
        (&mut seen.input_tokens, usage.input_tokens),
        (&mut seen.output_tokens, usage.output_tokens),
        (&mut seen.cache_write, usage.cache_creation_input_tokens),
        (&mut seen.cache_read, usage.cache_read_input_tokens),
    ];
    for (field, value) in fields {
        if value.is_some() {
            *field = value;
        }
    }
}

fn apply_openai(seen: &mut SeenUsage, usage: &OpenAiUsage) {
    seen.input_tokens = usage.input_tokens;
    seen.output_tokens = usage.output_tokens;
    seen.cache_read = usage
        .input_tokens_details
        .as_ref()
        .and_then(|d| d.cached_tokens);
    seen.complete = true;
}

/// Whether an event of this name (empty: unnamed) may carry usage for `provider`; others are
/// skipped without parsing their JSON.
pub(super) fn may_carry_usage(provider: Provider, name: &[u8]) -> bool {
    match provider {
        Provider::Anthropic => {
            matches!(
                name,
                b"" | b"message_start" | b"message_delta" | b"message_stop"
            )
        }
        Provider::OpenAiChat => true,
        Provider::OpenAiResponses => matches!(
            name,
            b"" | b"response.completed" | b"response.incomplete" | b"response.failed"
        ),
    }
}

/// Updates `seen` from one stream event. Data that is not JSON of the expected shape (`[DONE]`,
/// an error, a field of the wrong type) changes nothing.
pub(super) fn apply_event(provider: Provider, seen: &mut SeenUsage, name: &[u8], data: &[u8]) {
    match provider {
        Provider::Anthropic => {
            let Ok(event) = serde_json::from_slice::<AnthropicEvent>(data) else {
                return;
            };
            // The JSON `type` names the event; the `event:` line stands in when it is missing.
            let kind = event.kind.as_deref().map_or(name, str::as_bytes);
            match kind {
                b"message_start" => {
                    if let Some(usage) = event.message.and_then(|m| m.usage) {
                        apply_anthropic(seen, &usage);
                    }
                }
                b"message_delta" => {
                    if let Some(usage) = event.usage {
                        apply_anthropic(seen, &usage);
                        seen.complete = true;
                    }
                }
                b"message_stop" => seen.complete = true,
                _ => {}
            }
        }
        Provider::OpenAiChat => {
            if let Ok(OpenAiBody { usage: Some(usage) }) = serde_json::from_slice(data) {
                apply_openai(seen, &usage);
            }
        }
        Provider::OpenAiResponses => {
            let Ok(event) = serde_json::from_slice::<ResponsesEvent>(data) else {
                return;
            };
            let kind = event.kind.as_deref().map_or(name, str::as_bytes);
            // A response cut short by `max_output_tokens` ends in `response.incomplete`, with
            // its usage; a failed one may have usage too.
            if matches!(
                kind,
                b"response.completed" | b"response.incomplete" | b"response.failed"
            ) {
                if let Some(usage) = event.response.and_then(|r| r.usage) {
                    apply_openai(seen, &usage);
                }
            }
        }
    }
}

/// The usage of a whole JSON answer (`None` for an error body or one without usage).
pub(super) fn from_body(provider: Provider, body: &[u8]) -> Option<SeenUsage> {
    let mut seen = SeenUsage::default();
    match provider {
        Provider::Anthropic => {
            let usage = serde_json::from_slice::<AnthropicMessage>(body)
                .ok()?
                .usage?;
            apply_anthropic(&mut seen, &usage);
            seen.complete = true;
        }
        Provider::OpenAiChat | Provider::OpenAiResponses => {
            let usage = serde_json::from_slice::<OpenAiBody>(body).ok()?.usage?;
            apply_openai(&mut seen, &usage);
        }
    }
    Some(seen)
}
