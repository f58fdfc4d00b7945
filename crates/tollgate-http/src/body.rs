//! [`UsageBody`]: a response body that reads the answer's usage as it passes and settles the
//! call when it ends.

use crate::{Provider, SeenUsage, UsageReader};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tollgate::{Cost, Permit, TokenUsage};

pin_project! {
    /// A response body that passes every frame through unchanged, reads the provider's usage from
    /// it on the way (JSON or SSE, see [`UsageReader`]) and settles the throttled call when it
    /// ends. Nothing is buffered beyond what the reader keeps.
    ///
    /// The call's [`Permit`] travels in the body, so the call keeps its concurrency slot and its
    /// charge until the last byte has gone to the client:
    /// * **The body ends** with the answer's final usage read: the call is settled at that usage
    ///   (the difference to the estimate is refunded or charged as debt). The end is the frame
    ///   after which the inner body says [`is_end_stream`](Body::is_end_stream), or the end of
    ///   the frames, whichever comes first: a server that writes a body of known length stops
    ///   reading it after its last byte.
    /// * **The body ends, errs, or is dropped before the final usage** (the client went away, the
    ///   connection broke): the call is settled at the input tokens the answer reported, if it
    ///   reported them (Anthropic's `message_start` does), else the estimated ones, and at the
    ///   **reserved** output tokens: the provider bills what it generated, which the adapter
    ///   cannot know, so the reservation stays charged.
    ///
    /// A body of an answer that carries no usage to read (an error status, or a body wrapped
    /// without a reader) has no permit; the layer settled it when the head arrived.
    pub struct UsageBody<B> {
        #[pin]
        inner: B,
        reader: Option<(Provider, UsageReader)>,
        permit: Option<Permit>,
    }

    impl<B> PinnedDrop for UsageBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // A JSON answer kept whole is read; a cut one does not parse and reports nothing.
            ended(this.reader, this.permit);
        }
    }
}

impl<B> UsageBody<B> {
    /// A body whose usage is read as `provider` writes it; `content_type` (the response's
    /// `content-type`) tells JSON from an SSE stream.
    pub fn new(inner: B, provider: Provider, content_type: Option<&str>) -> Self {
        UsageBody {
            inner,
            reader: Some((provider, UsageReader::new(provider, content_type))),
            permit: None,
        }
    }

    /// A body passed through as it is, with no usage to read.
    pub fn plain(inner: B) -> Self {
        UsageBody {
            inner,
            reader: None,
            permit: None,
        }
    }

    /// Whether the body reads usage (a permit can be settled from it).
    pub fn reads_usage(&self) -> bool {
        self.reader.is_some()
    }

    /// Carries `permit` to the end of the body. A body with no reader settles it at once by
    /// the rule for an answer whose usage never came.
    pub fn carry(&mut self, permit: Permit) {
        if self.reader.is_some() {
            self.permit = Some(permit);
        } else {
            settle(permit, None);
        }
    }

    /// The usage read so far.
    pub fn seen(&self) -> SeenUsage {
        self.reader
            .as_ref()
            .map_or_else(SeenUsage::default, |(_, r)| r.seen())
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for UsageBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageBody")
            .field("inner", &self.inner)
            .field("seen", &self.seen())
            .field("permit", &self.permit)
            .finish()
    }
}

impl<B> Body for UsageBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let (Some(data), Some((_, reader))) = (f.data_ref(), this.reader.as_mut()) {
                    reader.feed(data);
                }
                // A consumer that knows the length (a server writing `content-length` bytes)
                // stops polling after the last byte: the end is here.
                if this.inner.is_end_stream() {
                    ended(this.reader, this.permit);
                }
            }
            None => ended(this.reader, this.permit),
            Some(Err(_)) => {
                if let Some(permit) = this.permit.take() {
                    settle(permit, this.reader.as_ref());
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The body ended: the reader reads what it kept, and the permit (if not settled yet) is
/// settled from it.
fn ended(reader: &mut Option<(Provider, UsageReader)>, permit: &mut Option<Permit>) {
    if let Some((_, reader)) = reader.as_mut() {
        reader.finish();
    }
    if let Some(permit) = permit.take() {
        settle(permit, reader.as_ref());
    }
}

/// Settles `permit` from what `reader` saw (see [`UsageBody`] for the rule when the final usage
/// never came).
fn settle(permit: Permit, reader: Option<&(Provider, UsageReader)>) {
    let estimate = permit.estimate();
    let Some((provider, reader)) = reader else {
        // Nothing to read: the estimate stays charged.
        permit.settle(None, None);
        return;
    };
    let seen = reader.seen();
    let (usage, tokens) = charge(*provider, seen, estimate);
    permit.settle(Some(usage), tokens);
}

/// What a call is charged, in the layer's buckets and for its price, from the usage an answer
/// reported (`seen`) and the call's estimate.
///
/// The buckets count input tokens as the provider's own limiter does: Anthropic's input
/// tokens plus those written to the prompt cache (reads from the cache do not count towards its
/// input-token limits); OpenAI's prompt tokens, cached ones included.
pub fn charge(provider: Provider, seen: SeenUsage, estimate: Cost) -> (Cost, Option<TokenUsage>) {
    let cache_read = seen.cache_read.unwrap_or(0);
    let cache_write = seen.cache_write.unwrap_or(0);
    let (input, uncached) = match (provider, seen.input_tokens) {
        (Provider::Anthropic, Some(i)) => (i.saturating_add(cache_write), i),
        (_, Some(i)) => (i, i.saturating_sub(cache_read).saturating_sub(cache_write)),
        (_, None) => (estimate.input_tokens, estimate.input_tokens),
    };
    let output = match (seen.complete, seen.output_tokens) {
        (true, Some(o)) => o,
        // The answer did not end: the reservation stays charged.
        _ => estimate.output_tokens,
    };
    let usage = Cost::request()
        .with_input_tokens(input)
        .with_output_tokens(output);
    let tokens = TokenUsage::new(uncached, output)
        .with_cache_read(cache_read)
        .with_cache_write(cache_write);
    (usage, Some(tokens))
}
