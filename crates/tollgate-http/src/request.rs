//! [`read_request`]: parse, check and estimate a request body; [`CallInfo`]: what it found.

use crate::error::{Expected, RequestError};
use crate::estimate::{self, EstimateOptions};
use crate::Provider;
use bytes::Bytes;
use serde_json::{Map, Value};
use tollgate::Cost;

/// What the adapter read from a request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallInfo {
    /// The API the body was read as.
    pub provider: Provider,
    /// The `model` field.
    pub model: String,
    /// Whether the answer is streamed (`"stream": true`).
    pub stream: bool,
    /// One request, the estimated input tokens and the reserved output tokens (see the
    /// [estimate rules](crate#estimates)).
    pub estimate: tollgate::Cost,
}

/// Parses and checks a request body and estimates its cost.
///
/// For an OpenAI chat request with `"stream": true` but without
/// `"stream_options": {"include_usage": true}`, the second value is the body with that option
/// added, so that the stream ends with the usage the layer needs to settle the call (the client
/// then sees one more chunk, with empty `choices`, before `[DONE]`); otherwise it is `None` and
/// the body goes on unchanged. When `stream_options` is absent the option is inserted at the start
/// of the object and the rest of the bytes are kept as they were.
///
/// ```
/// use tollgate_http::{read_request, EstimateOptions, Provider};
///
/// let body = br#"{"model":"claude-sonnet-4-5","max_tokens":1024,
///     "messages":[{"role":"user","content":"Hello, Claude"}]}"#;
/// let (call, rewritten) = read_request(Provider::Anthropic, body, &EstimateOptions::default())?;
/// assert_eq!(call.model, "claude-sonnet-4-5");
/// assert_eq!(call.estimate.requests, 1);
/// assert_eq!(call.estimate.output_tokens, 1024);
/// // 13 characters / 3.5 → 4, plus 3 for the message and 3 for the reply.
/// assert_eq!(call.estimate.input_tokens, 10);
/// assert!(rewritten.is_none());
///
/// let body = br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Hi"}]}"#;
/// let (call, rewritten) = read_request(Provider::OpenAiChat, body, &EstimateOptions::default())?;
/// assert!(call.stream);
/// assert_eq!(call.estimate.output_tokens, 4096);
/// let rewritten: serde_json::Value = serde_json::from_slice(&rewritten.unwrap()).unwrap();
/// assert_eq!(rewritten["stream_options"]["include_usage"], true);
/// # Ok::<(), tollgate_http::RequestError>(())
/// ```
///
/// # Errors
/// A [`RequestError`] in the provider's words when the body is not a JSON object; `model` is not
/// a string; `stream` is not a boolean; or, for Anthropic, `messages` is not a list of objects or
/// `max_tokens` not an integer ≥ 1 (it is required); for OpenAI chat, `messages` is not an array
/// of objects, `max_completion_tokens`, `max_tokens` or `n` not an integer ≥ 1, or
/// `stream_options` not an object; for Responses, `input` is not a string or an array,
/// `instructions` not a string, or `max_output_tokens` not an integer ≥ 1. Optional fields may be
/// `null`.
pub fn read_request(
    provider: Provider,
    body: &[u8],
    options: &EstimateOptions,
) -> Result<(CallInfo, Option<Bytes>), RequestError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|_| RequestError::malformed(provider))?;
    let Value::Object(fields) = &value else {
        return Err(RequestError::not_object(provider, &value));
    };
    let check = Check { provider, fields };
    let model = check
        .string("model")?
        .ok_or_else(|| RequestError::missing(provider, "model"))?;
    let stream = check.boolean("stream")?.unwrap_or(false);
    check.kind("tools", Expected::Array)?;
    let (input, output, rewritten) = match provider {
        Provider::Anthropic => {
            check.messages()?;
            check.kind("system", Expected::StringOrArray)?;
            let max = check.count("max_tokens")?;
            let max = max.ok_or_else(|| RequestError::missing(provider, "max_tokens"))?;
            (estimate::anthropic_input(fields, options), max, None)
        }
        Provider::OpenAiChat => {
            check.messages()?;
            let max = match check.count("max_completion_tokens")? {
                Some(max) => Some(max),
                None => check.count("max_tokens")?,
            };
            let choices = check.count("n")?.unwrap_or(1);
            let output = max
                .unwrap_or(options.default_max_output)
                .saturating_mul(choices);
            let rewritten = if stream {
                check.include_usage(body)?
            } else {
                None
            };
            (
                estimate::chat_input(model, fields, options),
                output,
                rewritten,
            )
        }
        Provider::OpenAiResponses => {
            if !check.kind("input", Expected::StringOrArray)? {
                return Err(RequestError::missing(provider, "input"));
            }
            check.kind("instructions", Expected::String)?;
            let output = check
                .count("max_output_tokens")?
                .unwrap_or(options.default_max_output);
            (
                estimate::responses_input(model, fields, options),
                output,
                None,
            )
        }
    };
    let call = CallInfo {
        provider,
        model: model.to_owned(),
        stream,
        estimate: Cost::request()
            .with_input_tokens(input)
            .with_output_tokens(output),
    };
    Ok((call, rewritten))
}

/// Type checks of a body's fields. A `null` field counts as absent.
struct Check<'a> {
    provider: Provider,
    fields: &'a Map<String, Value>,
}

impl<'a> Check<'a> {
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.fields.get(field).filter(|v| !v.is_null())
    }

    fn wrong(&self, field: &str, expected: Expected, got: &Value) -> RequestError {
        RequestError::wrong_type(self.provider, field, expected, got)
    }

    /// Whether `field` is present, checking its type if it is.
    fn kind(&self, field: &str, expected: Expected) -> Result<bool, RequestError> {
        let Some(value) = self.get(field) else {
            return Ok(false);
        };
        let fits = match expected {
            Expected::String => value.is_string(),
            Expected::Array => value.is_array(),
            Expected::Integer => value.is_u64() || value.is_i64(),
            Expected::Boolean => value.is_boolean(),
            Expected::Object => value.is_object(),
            Expected::StringOrArray => value.is_string() || value.is_array(),
        };
        if fits {
            Ok(true)
        } else {
            Err(self.wrong(field, expected, value))
        }
    }

    fn string(&self, field: &str) -> Result<Option<&'a str>, RequestError> {
        self.kind(field, Expected::String)?;
        Ok(self.get(field).and_then(Value::as_str))
    }

    fn boolean(&self, field: &str) -> Result<Option<bool>, RequestError> {
        self.kind(field, Expected::Boolean)?;
        Ok(self.get(field).and_then(Value::as_bool))
    }

    /// An integer that must be at least 1.
    fn count(&self, field: &str) -> Result<Option<u64>, RequestError> {
        self.kind(field, Expected::Integer)?;
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        match value.as_u64() {
            Some(n) if n >= 1 => Ok(Some(n)),
            _ => Err(RequestError::below_min(self.provider, field, 1, value)),
        }
    }

    /// `messages`: required, an array of objects.
    fn messages(&self) -> Result<(), RequestError> {
        if !self.kind("messages", Expected::Array)? {
            return Err(RequestError::missing(self.provider, "messages"));
        }
        let messages = self
            .get("messages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for (i, message) in messages.enumerate() {
            if !message.is_object() {
                let field = match self.provider {
                    Provider::Anthropic => format!("messages.{i}"),
                    _ => format!("messages[{i}]"),
                };
                return Err(self.wrong(&field, Expected::Object, message));
            }
        }
        Ok(())
    }

    /// The body with `stream_options.include_usage` set to `true`, unless it already is.
    fn include_usage(&self, body: &[u8]) -> Result<Option<Bytes>, RequestError> {
        const FIELD: &str = "stream_options";
        if !self.kind(FIELD, Expected::Object)? {
            if self.fields.contains_key(FIELD) {
                // `null`: replace it, re-encoding the body.
                let mut fields = self.fields.clone();
                fields.insert(FIELD.into(), serde_json::json!({ "include_usage": true }));
                return Ok(Some(encode(fields)));
            }
            return Ok(Some(insert_first_field(
                body,
                r#""stream_options":{"include_usage":true},"#,
            )));
        }
        let mut options = self
            .get(FIELD)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        match options.get("include_usage") {
            Some(Value::Bool(true)) => return Ok(None),
            None | Some(Value::Null | Value::Bool(false)) => {}
            Some(other) => {
                return Err(self.wrong("stream_options.include_usage", Expected::Boolean, other))
            }
        }
        options.insert("include_usage".into(), Value::Bool(true));
        let mut fields = self.fields.clone();
        fields.insert(FIELD.into(), Value::Object(options));
        Ok(Some(encode(fields)))
    }
}

fn encode(fields: Map<String, Value>) -> Bytes {
    Bytes::from(Value::Object(fields).to_string())
}

/// `body` (a JSON object with at least one field) with `field` (ending in `,`) inserted right
/// after its opening brace.
fn insert_first_field(body: &[u8], field: &str) -> Bytes {
    let brace = body.iter().position(|&b| b == b'{').map_or(0, |i| i + 1);
    let mut out = Vec::with_capacity(body.len() + field.len());
    out.extend_from_slice(&body[..brace]);
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(&body[brace..]);
    Bytes::from(out)
}
