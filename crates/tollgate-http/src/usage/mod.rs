//! [`UsageReader`]: the usage of an answer, read from its body as the chunks pass.

mod fields;
mod sse;

use crate::Provider;
use sse::SseParser;

/// The most bytes of one stream event kept while it arrives: 1 MiB. A larger event (a huge
/// content delta) is dropped unread; usage events are a few hundred bytes.
pub const SSE_EVENT_CAP: usize = 1 << 20;

/// The most bytes of a JSON answer kept to read its usage at the end: 4 MiB. Over it the usage is
/// unknown (`None`), and the caller settles the call by its estimate.
pub const JSON_BODY_CAP: usize = 4 << 20;

/// Usage as seen so far in an answer.
///
/// `input_tokens` counts the uncached input as the provider reports it (Anthropic's
/// `input_tokens` excludes cache reads and writes; OpenAI's `prompt_tokens` / `input_tokens`
/// include the cached part, which `cache_read` repeats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeenUsage {
    /// Input tokens (Anthropic `input_tokens`, OpenAI `prompt_tokens` or `input_tokens`).
    pub input_tokens: Option<u64>,
    /// Output tokens (Anthropic `output_tokens`, cumulative in a stream; OpenAI
    /// `completion_tokens` or `output_tokens`).
    pub output_tokens: Option<u64>,
    /// Input tokens read from the prompt cache (Anthropic `cache_read_input_tokens`, OpenAI
    /// `cached_tokens`).
    pub cache_read: Option<u64>,
    /// Input tokens written to the prompt cache (Anthropic `cache_creation_input_tokens`).
    pub cache_write: Option<u64>,
    /// The answer's final usage was read: the JSON body's `usage`; Anthropic's `message_delta`
    /// with usage or `message_stop`; the OpenAI chat chunk with usage; Responses'
    /// `response.completed` (or `.incomplete`, `.failed`) with usage.
    pub complete: bool,
}

/// Reads usage from a response body as its chunks pass, never holding more than it needs.
///
/// With a `text/event-stream` content type it parses server-sent events incrementally, keeping
/// only the current event (at most [`SSE_EVENT_CAP`] bytes; a larger one is dropped and
/// [`truncated`](UsageReader::truncated) says so). Otherwise it keeps the body, up to
/// [`JSON_BODY_CAP`] bytes, and reads its `usage` at [`finish`](UsageReader::finish); a larger body
/// leaves the usage unknown.
///
/// ```
/// use tollgate_http::{Provider, UsageReader};
///
/// let mut reader = UsageReader::new(Provider::Anthropic, Some("text/event-stream; charset=utf-8"));
/// reader.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":");
/// reader.feed(b"{\"input_tokens\":25,\"output_tokens\":1}}}\n\n");
/// assert_eq!(reader.seen().input_tokens, Some(25));
/// assert!(!reader.seen().complete);
/// reader.feed(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n");
/// reader.finish();
/// let seen = reader.seen();
/// assert_eq!((seen.input_tokens, seen.output_tokens, seen.complete), (Some(25), Some(15), true));
/// ```
#[derive(Debug)]
pub struct UsageReader {
    provider: Provider,
    mode: Mode,
    seen: SeenUsage,
}

#[derive(Debug)]
enum Mode {
    Sse(SseParser),
    Json(JsonBody),
}

/// The kept JSON body.
#[derive(Debug)]
struct JsonBody {
    kept: Vec<u8>,
    cap: usize,
    over_cap: bool,
    finished: bool,
}

impl UsageReader {
    /// A reader for an answer of `provider` with this `content-type` header value:
    /// `text/event-stream` (any case, any parameters) reads events, anything else (or none) JSON.
    pub fn new(provider: Provider, content_type: Option<&str>) -> UsageReader {
        Self::with_caps(provider, content_type, SSE_EVENT_CAP, JSON_BODY_CAP)
    }

    pub(crate) fn with_caps(
        provider: Provider,
        content_type: Option<&str>,
        event_cap: usize,
        body_cap: usize,
    ) -> UsageReader {
        let mime = content_type
            .and_then(|c| c.split(';').next())
            .map(str::trim);
        let mode = if mime.is_some_and(|m| m.eq_ignore_ascii_case("text/event-stream")) {
            Mode::Sse(SseParser::new(event_cap))
        } else {
            Mode::Json(JsonBody {
                kept: Vec::new(),
                cap: body_cap,
                over_cap: false,
                finished: false,
            })
        };
        UsageReader {
            provider,
            mode,
            seen: SeenUsage::default(),
        }
    }

    /// The next bytes of the body, split anywhere (mid-line, mid-UTF-8 character).
    pub fn feed(&mut self, chunk: &[u8]) {
        let provider = self.provider;
        match &mut self.mode {
            Mode::Sse(parser) => {
                let seen = &mut self.seen;
                parser.feed(chunk, &mut |event| {
                    if fields::may_carry_usage(provider, event.name) {
                        fields::apply_event(provider, seen, event.name, event.data);
                    }
                });
            }
            Mode::Json(json) if json.finished || json.over_cap => {}
            Mode::Json(json) => {
                if json.kept.len().saturating_add(chunk.len()) > json.cap {
                    json.over_cap = true;
                    json.kept = Vec::new();
                } else {
                    json.kept.extend_from_slice(chunk);
                }
            }
        }
    }

    /// The end of the body. In JSON mode the kept body is parsed for its usage and released; in
    /// SSE mode an event left open (no blank line after it) is discarded, as the SSE rules say.
    /// Calling it again, or feeding after it, changes nothing.
    pub fn finish(&mut self) {
        if let Mode::Json(json) = &mut self.mode {
            if !json.finished {
                json.finished = true;
                let body = std::mem::take(&mut json.kept);
                if !json.over_cap {
                    if let Some(seen) = fields::from_body(self.provider, &body) {
                        self.seen = seen;
                    }
                }
            }
        }
    }

    /// The usage seen so far.
    pub fn seen(&self) -> SeenUsage {
        self.seen
    }

    /// Whether part of the body was dropped for its size: a stream event over
    /// [`SSE_EVENT_CAP`], or a JSON body over [`JSON_BODY_CAP`].
    pub fn truncated(&self) -> bool {
        match &self.mode {
            Mode::Sse(parser) => parser.dropped() > 0,
            Mode::Json(json) => json.over_cap,
        }
    }
}
