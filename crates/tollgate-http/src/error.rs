//! [`RequestError`]: a request the provider would refuse, answered in the provider's own words.

use crate::Provider;
use bytes::Bytes;
use http::StatusCode;
use std::fmt;

/// A request the provider would refuse with `400 Bad Request`: the body is not a JSON object, or a
/// field the provider requires is missing or of the wrong type.
///
/// [`body`](RequestError::body) is the error JSON the provider itself would send, so a proxy can
/// answer the client without calling the provider, and the client's SDK raises its usual error.
///
/// ```
/// use tollgate_http::{read_request, EstimateOptions, Provider};
///
/// let err = read_request(Provider::Anthropic, br#"{"model":"claude-sonnet-4-5","messages":[]}"#,
///     &EstimateOptions::default()).unwrap_err();
/// assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
/// assert_eq!(err.param(), Some("max_tokens"));
/// assert_eq!(err.message(), "max_tokens: Field required");
/// let body: serde_json::Value = serde_json::from_slice(&err.body()).unwrap();
/// assert_eq!(body["error"]["type"], "invalid_request_error");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestError {
    provider: Provider,
    param: Option<String>,
    message: String,
}

/// The JSON type a field should have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expected {
    String,
    Array,
    Integer,
    Boolean,
    Object,
    StringOrArray,
}

impl Expected {
    fn anthropic(self) -> &'static str {
        match self {
            Expected::String => "a valid string",
            Expected::Array => "a valid list",
            Expected::Integer => "a valid integer",
            Expected::Boolean => "a valid boolean",
            Expected::Object => "a valid dictionary",
            Expected::StringOrArray => "a valid string or list",
        }
    }

    fn openai(self) -> &'static str {
        match self {
            Expected::String => "a string",
            Expected::Array => "an array",
            Expected::Integer => "an integer",
            Expected::Boolean => "a boolean",
            Expected::Object => "an object",
            Expected::StringOrArray => "a string or an array",
        }
    }
}

/// The JSON type of `value`, as OpenAI names it in its messages.
fn json_type(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a decimal",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl RequestError {
    /// The body is not JSON at all.
    pub(crate) fn malformed(provider: Provider) -> Self {
        let message = match provider {
            Provider::Anthropic => "There was an error parsing the body of your request: it is not valid JSON",
            _ => "We could not parse the JSON body of your request. The API expects a JSON payload, but what was sent was not valid JSON.",
        };
        RequestError {
            provider,
            param: None,
            message: message.to_owned(),
        }
    }

    /// The body is JSON but not an object.
    pub(crate) fn not_object(provider: Provider, got: &serde_json::Value) -> Self {
        let message = match provider {
            Provider::Anthropic => "Input should be a valid dictionary".to_owned(),
            _ => format!(
                "Invalid type for the request body: expected an object, but got {} instead.",
                json_type(got)
            ),
        };
        RequestError {
            provider,
            param: None,
            message,
        }
    }

    /// A required field is missing (or null).
    pub(crate) fn missing(provider: Provider, field: &str) -> Self {
        let message = match provider {
            Provider::Anthropic => format!("{field}: Field required"),
            _ => format!("Missing required parameter: '{field}'."),
        };
        RequestError {
            provider,
            param: Some(field.to_owned()),
            message,
        }
    }

    /// A field has the wrong JSON type.
    pub(crate) fn wrong_type(
        provider: Provider,
        field: &str,
        expected: Expected,
        got: &serde_json::Value,
    ) -> Self {
        let message = match provider {
            Provider::Anthropic => format!("{field}: Input should be {}", expected.anthropic()),
            _ => format!(
                "Invalid type for '{field}': expected {}, but got {} instead.",
                expected.openai(),
                json_type(got)
            ),
        };
        RequestError {
            provider,
            param: Some(field.to_owned()),
            message,
        }
    }

    /// An integer field is below its minimum.
    pub(crate) fn below_min(
        provider: Provider,
        field: &str,
        min: u64,
        got: &serde_json::Value,
    ) -> Self {
        let message = match provider {
            Provider::Anthropic => {
                format!("{field}: Input should be greater than or equal to {min}")
            }
            _ => format!(
                "Invalid '{field}': integer below minimum value. Expected a value >= {min}, but got {got} instead."
            ),
        };
        RequestError {
            provider,
            param: Some(field.to_owned()),
            message,
        }
    }

    /// The status the provider answers with: always `400 Bad Request`.
    pub fn status(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }

    /// The provider's own error JSON for this refusal.
    ///
    /// * Anthropic: `{"type":"error","error":{"type":"invalid_request_error","message":…}}`
    /// * OpenAI: `{"error":{"message":…,"type":"invalid_request_error","param":…,"code":null}}`
    pub fn body(&self) -> Bytes {
        let value = match self.provider {
            Provider::Anthropic => serde_json::json!({
                "type": "error",
                "error": { "type": "invalid_request_error", "message": self.message },
            }),
            _ => serde_json::json!({
                "error": {
                    "message": self.message,
                    "type": "invalid_request_error",
                    "param": self.param,
                    "code": null,
                },
            }),
        };
        Bytes::from(value.to_string())
    }

    /// The message, in the provider's wording; it names the field at fault.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The field at fault, if one is (`None` when the body as a whole is wrong).
    pub fn param(&self) -> Option<&str> {
        self.param.as_deref()
    }

    /// The provider whose rules the request broke.
    pub fn provider(&self) -> Provider {
        self.provider
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid request: {}", self.message)
    }
}

impl std::error::Error for RequestError {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn body(e: &RequestError) -> Value {
        serde_json::from_slice(&e.body()).unwrap()
    }

    #[test]
    fn anthropic_body_shape() {
        let e = RequestError::wrong_type(
            Provider::Anthropic,
            "messages",
            Expected::Array,
            &json!("x"),
        );
        assert_eq!(
            body(&e),
            json!({"type":"error","error":{"type":"invalid_request_error",
                "message":"messages: Input should be a valid list"}})
        );
        assert_eq!(
            e.to_string(),
            "invalid request: messages: Input should be a valid list"
        );
    }

    #[test]
    fn openai_body_shape() {
        let e = RequestError::wrong_type(
            Provider::OpenAiChat,
            "messages",
            Expected::Array,
            &json!("x"),
        );
        assert_eq!(
            body(&e),
            json!({"error":{"message":"Invalid type for 'messages': expected an array, but got a string instead.",
                "type":"invalid_request_error","param":"messages","code":null}})
        );
        let e = RequestError::malformed(Provider::OpenAiResponses);
        assert_eq!(body(&e)["error"]["param"], Value::Null);
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }
}
