//! Token estimates of a request's input, before the provider has seen it.
//!
//! # The rules
//! Input tokens are the sum of:
//! * **text**: every text the model reads: the system prompt (`system`, `instructions`), each
//!   message's text content, tool calls (name and arguments or input JSON), tool results, and
//!   each tool's name, description and JSON schema. For OpenAI models whose encoding is known
//!   (`gpt-4o*`, `gpt-4.1*`, `gpt-4.5*`, `gpt-5*`, `o1*`, `o3*`, `o4-mini*` use `o200k_base`;
//!   `gpt-4*`, `gpt-3.5-turbo*` use `cl100k_base`) the text is counted with that byte-pair
//!   encoding (feature `tiktoken`, on by default). Otherwise, and for Claude, whose tokenizer is
//!   not public, characters are counted and divided, rounded up: by **3.5** for Anthropic, by
//!   **4** for OpenAI. JSON (tool input, schemas) is counted as its compact text.
//! * **3 tokens per message** (role and framing) and **3** for priming the reply, as OpenAI's
//!   own counting does; the same for Anthropic.
//! * **images**: a fixed [`EstimateOptions::image_tokens`] (default 1,600: about the most a Claude
//!   image costs once downscaled to 1.15 megapixels, `w·h/750`, and more than the most an OpenAI
//!   high-detail image costs, 1,445); an OpenAI image with `"detail":"low"` costs 85. Image sizes
//!   are not decoded.
//! * **documents and files** (PDF, audio, `file` parts): a fixed
//!   [`EstimateOptions::document_tokens`] (default 3,000: one dense PDF page, text and image),
//!   since the page count is unknown; a plain-text Anthropic document is counted as text.
//! * anything else (a block type this crate does not know): the text of its strings.
//!
//! Output tokens are reserved at the request's maximum: Anthropic `max_tokens` (required);
//! OpenAI chat `max_completion_tokens`, else `max_tokens`, times `n` (every choice is billed);
//! Responses `max_output_tokens`; else [`EstimateOptions::default_max_output`].
//!
//! An estimate only has to be close: the layer charges it before the call and settles the
//! difference with the usage the answer reports.

mod anthropic;
mod openai;
mod tokens;

pub(crate) use anthropic::anthropic_input;
pub(crate) use openai::{chat_input, responses_input};
pub use tokens::preload_tokenizers;

use serde_json::Value;
use tokens::TextRule;

/// Options of the estimate. The defaults are written on each field.
///
/// ```
/// use tollgate_http::EstimateOptions;
///
/// let options = EstimateOptions { default_max_output: 1_024, ..EstimateOptions::default() };
/// assert_eq!(options.image_tokens, 1_600);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EstimateOptions {
    /// Output tokens reserved when an OpenAI request names no maximum. Default 4,096.
    pub default_max_output: u64,
    /// Input tokens of one image. Default 1,600.
    pub image_tokens: u64,
    /// Input tokens of one document, file or audio clip whose text is not in the request.
    /// Default 3,000.
    pub document_tokens: u64,
}

impl Default for EstimateOptions {
    fn default() -> Self {
        EstimateOptions {
            default_max_output: 4_096,
            image_tokens: 1_600,
            document_tokens: 3_000,
        }
    }
}

/// Per message: role and framing.
const MESSAGE_TOKENS: u64 = 3;
/// Priming of the reply.
const REPLY_TOKENS: u64 = 3;
/// An OpenAI image with `"detail":"low"`.
const LOW_DETAIL_IMAGE_TOKENS: u64 = 85;

/// The running count of one request's input.
#[derive(Debug)]
pub(crate) struct Tally<'o> {
    rule: TextRule,
    options: &'o EstimateOptions,
    tokens: u64,
    chars: u64,
}

impl<'o> Tally<'o> {
    pub(crate) fn new(rule: TextRule, options: &'o EstimateOptions) -> Self {
        Tally {
            rule,
            options,
            tokens: REPLY_TOKENS,
            chars: 0,
        }
    }

    /// The input tokens so far.
    pub(crate) fn total(&self) -> u64 {
        self.tokens
            .saturating_add(tokens::chars_to_tokens(self.rule, self.chars))
    }

    fn fixed(&mut self, tokens: u64) {
        self.tokens = self.tokens.saturating_add(tokens);
    }

    fn message(&mut self) {
        self.fixed(MESSAGE_TOKENS);
    }

    fn image(&mut self, low_detail: bool) {
        self.fixed(if low_detail {
            LOW_DETAIL_IMAGE_TOKENS
        } else {
            self.options.image_tokens
        });
    }

    fn document(&mut self) {
        self.fixed(self.options.document_tokens);
    }

    fn text(&mut self, text: &str) {
        let counted = tokens::count(self.rule, text);
        self.fixed(counted.tokens);
        self.chars = self.chars.saturating_add(counted.chars);
    }

    /// The text of `value` if it is a string.
    fn text_of(&mut self, value: Option<&Value>) {
        if let Some(Value::String(s)) = value {
            self.text(s);
        }
    }

    /// JSON as its compact text; a string as itself (OpenAI's `arguments` are JSON in a string).
    fn json(&mut self, value: Option<&Value>) {
        match value {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => self.text(s),
            Some(v) => self.text(&v.to_string()),
        }
    }

    /// Every string inside `value`: the rule for blocks this crate does not know.
    fn strings(&mut self, value: &Value) {
        match value {
            Value::String(s) => self.text(s),
            Value::Array(items) => items.iter().for_each(|v| self.strings(v)),
            Value::Object(map) => map.values().for_each(|v| self.strings(v)),
            _ => {}
        }
    }

    /// A tool definition, in any provider's shape: name, description and parameters schema,
    /// possibly under `function` (OpenAI chat).
    fn tool(&mut self, tool: &Value) {
        let tool = tool
            .get("function")
            .filter(|f| f.is_object())
            .unwrap_or(tool);
        self.text_of(tool.get("name"));
        self.text_of(tool.get("description"));
        self.json(tool.get("input_schema").or_else(|| tool.get("parameters")));
    }

    /// Each tool of a `tools` array.
    fn tools(&mut self, tools: Option<&Value>) {
        for tool in array(tools) {
            self.tool(tool);
        }
    }
}

/// The items of `value` if it is an array, else none.
fn array(value: Option<&Value>) -> &[Value] {
    match value {
        Some(Value::Array(items)) => items,
        _ => &[],
    }
}
