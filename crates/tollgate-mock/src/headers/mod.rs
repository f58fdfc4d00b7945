//! Rate-limit headers in the two families providers send, and their time formats.
//!
//! - Anthropic: `anthropic-ratelimit-{requests,input-tokens,output-tokens}-{limit,remaining,reset}`,
//!   where `reset` is the RFC 3339 UTC time at which the bucket is full again.
//! - OpenAI: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, where `reset` is a Go-style
//!   duration (`120ms`, `1s`, `6m0s`) and `tokens` is the input-token dimension.
//! - On 429: `retry-after` (whole seconds, rounded up) and `retry-after-ms`.
//!
//! Every time is rounded *up* to the millisecond, so a client that waits what it was told is never
//! early.
//!
//! One job per file: [`names`] says which headers each family sends, [`writer`] puts an answer's
//! headers together from them, and the values are written by [`number`] (decimal), [`date`]
//! (RFC 3339) and [`duration`] (milliseconds and Go durations), each into a [`text::Text`] on the
//! stack.

mod date;
mod duration;
mod names;
mod number;
mod text;
mod writer;

pub(crate) use writer::HeaderWriter;
