//! 200 answers of each API, as one JSON body or as an SSE stream.

mod anthropic;
mod chat;
mod responses;

use std::fmt::Write as _;

use serde_json::Value;

use super::api::Api;
use super::words;

/// What an admitted call answers, whatever the API.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The answer's id, with the API's prefix.
    pub(crate) id: String,
    /// The request's model.
    pub(crate) model: String,
    /// Unix seconds.
    pub(crate) created: u64,
    /// The generated words: one output token each.
    pub(crate) words: Vec<&'static str>,
    /// Input tokens billed.
    pub(crate) input: u64,
    /// Whether `max_tokens` cut the answer short.
    pub(crate) capped: bool,
}

impl Reply {
    /// Output tokens billed: the number of words.
    pub(crate) fn output(&self) -> u64 {
        self.words.len() as u64
    }

    fn text(&self) -> String {
        words::text(&self.words)
    }
}

/// The JSON body of `reply`.
pub(crate) fn json(api: Api, reply: &Reply) -> Value {
    match api {
        Api::Anthropic => anthropic::message(reply),
        Api::Chat => chat::completion(reply),
        Api::Responses => responses::response(reply, true),
    }
}

/// The SSE body of `reply`.
pub(crate) fn stream(api: Api, reply: &Reply, include_usage: bool) -> String {
    let mut out = String::new();
    match api {
        Api::Anthropic => anthropic::stream(&mut out, reply),
        Api::Chat => chat::stream(&mut out, reply, include_usage),
        Api::Responses => responses::stream(&mut out, reply),
    }
    out
}

/// Appends one SSE event: an `event:` line when `name` is set, then one `data:` line.
fn event(out: &mut String, name: Option<&str>, data: &Value) {
    if let Some(name) = name {
        let _ = writeln!(out, "event: {name}");
    }
    let _ = write!(out, "data: {data}\n\n");
}

/// Appends an event named as its JSON `type`, as Anthropic and the Responses API send them.
fn typed(out: &mut String, data: &Value) {
    let name = data["type"].as_str().unwrap_or("message");
    event(out, Some(name), data);
}
