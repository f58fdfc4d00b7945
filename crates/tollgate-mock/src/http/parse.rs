//! Request bodies: checked as the real APIs check them (the fields the mock reads), and turned
//! into what the limit model needs.

use serde_json::{Map, Value};

use super::api::Api;
use super::tokens;

/// A valid request, as the mock sees it.
#[derive(Debug)]
pub(crate) struct Call {
    /// The `model` string, echoed back.
    pub(crate) model: String,
    /// Input tokens by the mock's rule ([`tokens`]).
    pub(crate) input_tokens: u64,
    /// The request's output cap, if it set one.
    pub(crate) max_tokens: Option<u64>,
    /// `"stream": true`.
    pub(crate) stream: bool,
    /// Chat Completions' `stream_options.include_usage`.
    pub(crate) include_usage: bool,
}

/// Why a body was refused (400): the message, and the parameter at fault if there is one.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub(crate) message: String,
    pub(crate) param: Option<&'static str>,
}

impl Invalid {
    fn new(param: &'static str, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            param: Some(param),
        }
    }
}

/// Checks `body` for `api`.
pub(crate) fn parse(api: Api, body: &[u8]) -> Result<Call, Invalid> {
    let value: Value = serde_json::from_slice(body).map_err(|e| Invalid {
        message: format!("the body is not valid JSON: {e}"),
        param: None,
    })?;
    let Value::Object(obj) = value else {
        return Err(Invalid {
            message: "the body must be a JSON object".into(),
            param: None,
        });
    };
    let model = match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => return Err(Invalid::new("model", "`model` must be a non-empty string")),
        None => return Err(Invalid::new("model", "`model`: field required")),
    };
    let stream = optional_bool(&obj, "stream")?;
    let (input_tokens, max_tokens, include_usage) = match api {
        Api::Anthropic => anthropic(&obj)?,
        Api::Chat => chat(&obj, stream)?,
        Api::Responses => responses(&obj)?,
    };
    Ok(Call {
        model,
        input_tokens,
        max_tokens,
        stream,
        include_usage,
    })
}

type Parts = (u64, Option<u64>, bool);

fn anthropic(obj: &Map<String, Value>) -> Result<Parts, Invalid> {
    let max = positive(obj, "max_tokens")?
        .ok_or_else(|| Invalid::new("max_tokens", "`max_tokens`: field required"))?;
    let mut input = messages(obj, "messages")?;
    match obj.get("system") {
        None | Some(Value::Null) => {}
        Some(system @ (Value::String(_) | Value::Array(_))) => input += tokens::content(system),
        Some(_) => {
            return Err(Invalid::new(
                "system",
                "`system` must be a string or a list of text blocks",
            ))
        }
    }
    Ok((input, Some(max), false))
}

fn chat(obj: &Map<String, Value>, stream: bool) -> Result<Parts, Invalid> {
    let input = messages(obj, "messages")?;
    let max = match positive(obj, "max_completion_tokens")? {
        Some(max) => Some(max),
        None => positive(obj, "max_tokens")?,
    };
    let include_usage = match obj.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(options)) if stream => optional_bool(options, "include_usage")?,
        Some(Value::Object(_)) => {
            return Err(Invalid::new(
                "stream_options",
                "`stream_options` is only allowed when `stream` is true",
            ))
        }
        Some(_) => {
            return Err(Invalid::new(
                "stream_options",
                "`stream_options` must be an object",
            ))
        }
    };
    Ok((input, max, include_usage))
}

fn responses(obj: &Map<String, Value>) -> Result<Parts, Invalid> {
    let mut input = match obj.get("input") {
        Some(text @ Value::String(_)) => tokens::content(text),
        Some(Value::Array(items)) => {
            if let Some(bad) = items.iter().position(|item| !item.is_object()) {
                return Err(Invalid::new(
                    "input",
                    format!("`input[{bad}]` must be an object"),
                ));
            }
            items.iter().map(tokens::message).sum()
        }
        Some(_) => {
            return Err(Invalid::new(
                "input",
                "`input` must be a string or a list of items",
            ))
        }
        None => return Err(Invalid::new("input", "`input`: field required")),
    };
    match obj.get("instructions") {
        None | Some(Value::Null) => {}
        Some(text @ Value::String(_)) => input += tokens::content(text),
        Some(_) => {
            return Err(Invalid::new(
                "instructions",
                "`instructions` must be a string",
            ))
        }
    }
    let max = positive(obj, "max_output_tokens")?;
    Ok((input, max, false))
}

/// A non-empty list of messages, each an object with a string `role` and a string, list or null
/// `content`; their input tokens.
fn messages(obj: &Map<String, Value>, field: &'static str) -> Result<u64, Invalid> {
    let list = match obj.get(field) {
        Some(Value::Array(list)) if !list.is_empty() => list,
        Some(Value::Array(_)) => {
            return Err(Invalid::new(field, format!("`{field}` must not be empty")))
        }
        Some(_) => return Err(Invalid::new(field, format!("`{field}` must be a list"))),
        None => return Err(Invalid::new(field, format!("`{field}`: field required"))),
    };
    let mut input = 0u64;
    for (i, message) in list.iter().enumerate() {
        let ok = message.get("role").is_some_and(Value::is_string)
            && matches!(
                message.get("content"),
                Some(Value::String(_) | Value::Array(_) | Value::Null) | None
            );
        if !ok {
            return Err(Invalid::new(
                field,
                format!("`{field}[{i}]` must be an object with a string `role` and a string or list `content`"),
            ));
        }
        input = input.saturating_add(tokens::message(message));
    }
    Ok(input)
}

fn optional_bool(obj: &Map<String, Value>, field: &'static str) -> Result<bool, Invalid> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(Invalid::new(field, format!("`{field}` must be a boolean"))),
    }
}

/// An optional integer of at least 1.
fn positive(obj: &Map<String, Value>, field: &'static str) -> Result<Option<u64>, Invalid> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Ok(Some(n)),
            _ => Err(Invalid::new(
                field,
                format!("`{field}` must be an integer of at least 1"),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(api: Api, body: &str) -> Invalid {
        parse(api, body.as_bytes()).unwrap_err()
    }

    #[test]
    fn anthropic_requires_model_messages_and_max_tokens() {
        let ok = r#"{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"abcd"}],"system":"abcdefgh"}"#;
        let call = parse(Api::Anthropic, ok.as_bytes()).unwrap();
        assert_eq!((call.input_tokens, call.max_tokens), (5 + 6, Some(10)));
        let missing = err(
            Api::Anthropic,
            r#"{"model":"m","messages":[{"role":"user","content":"a"}]}"#,
        );
        assert_eq!(missing.param, Some("max_tokens"));
        assert_eq!(
            err(Api::Anthropic, r#"{"max_tokens":1}"#).param,
            Some("model")
        );
        assert_eq!(
            err(Api::Anthropic, r#"{"model":"m","max_tokens":1}"#).param,
            Some("messages")
        );
        let wrong = err(
            Api::Anthropic,
            r#"{"model":"m","max_tokens":"9","messages":[]}"#,
        );
        assert_eq!(wrong.param, Some("max_tokens"));
        assert_eq!(err(Api::Anthropic, "[1]").param, None);
        assert_eq!(err(Api::Anthropic, "{").param, None);
    }

    #[test]
    fn chat_takes_either_cap_and_usage_only_when_streaming() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":7,"stream":true,"stream_options":{"include_usage":true}}"#;
        let call = parse(Api::Chat, body.as_bytes()).unwrap();
        assert_eq!(
            (call.max_tokens, call.stream, call.include_usage),
            (Some(7), true, true)
        );
        let body = r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}"#;
        assert_eq!(err(Api::Chat, body).param, Some("stream_options"));
    }

    #[test]
    fn responses_count_input_and_instructions() {
        let body =
            r#"{"model":"m","input":"abcd","instructions":"abcdefgh","max_output_tokens":3}"#;
        let call = parse(Api::Responses, body.as_bytes()).unwrap();
        assert_eq!((call.input_tokens, call.max_tokens), (5 + 6, Some(3)));
        assert_eq!(err(Api::Responses, r#"{"model":"m"}"#).param, Some("input"));
        assert_eq!(
            err(Api::Responses, r#"{"model":"m","input":[1]}"#).param,
            Some("input")
        );
    }
}
