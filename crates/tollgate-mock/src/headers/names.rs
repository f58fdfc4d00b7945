//! Which rate-limit headers each provider family sends, per dimension, in the order they are
//! written.

use http::header::HeaderName;

use crate::limits::Dimension;

/// `[limit, remaining, reset]` per dimension, in [`Dimension::ALL`] order.
pub(super) static ANTHROPIC: [[HeaderName; 3]; 3] = [
    [
        HeaderName::from_static("anthropic-ratelimit-requests-limit"),
        HeaderName::from_static("anthropic-ratelimit-requests-remaining"),
        HeaderName::from_static("anthropic-ratelimit-requests-reset"),
    ],
    [
        HeaderName::from_static("anthropic-ratelimit-input-tokens-limit"),
        HeaderName::from_static("anthropic-ratelimit-input-tokens-remaining"),
        HeaderName::from_static("anthropic-ratelimit-input-tokens-reset"),
    ],
    [
        HeaderName::from_static("anthropic-ratelimit-output-tokens-limit"),
        HeaderName::from_static("anthropic-ratelimit-output-tokens-remaining"),
        HeaderName::from_static("anthropic-ratelimit-output-tokens-reset"),
    ],
];

/// The dimensions of the OpenAI family: requests, then tokens (the input dimension).
pub(super) const OPENAI_DIMENSIONS: [Dimension; 2] = [Dimension::Requests, Dimension::InputTokens];

/// `[limit, remaining, reset]` per dimension, in [`OPENAI_DIMENSIONS`] order.
pub(super) static OPENAI: [[HeaderName; 3]; 2] = [
    [
        HeaderName::from_static("x-ratelimit-limit-requests"),
        HeaderName::from_static("x-ratelimit-remaining-requests"),
        HeaderName::from_static("x-ratelimit-reset-requests"),
    ],
    [
        HeaderName::from_static("x-ratelimit-limit-tokens"),
        HeaderName::from_static("x-ratelimit-remaining-tokens"),
        HeaderName::from_static("x-ratelimit-reset-tokens"),
    ],
];

/// The retry delay in milliseconds, beside `retry-after` in whole seconds.
pub(super) static RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
