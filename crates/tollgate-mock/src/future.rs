//! The future of an admitted call, and the in-flight record it holds.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::Response;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::limits::Dimension;
use crate::service::{MockReply, Shared};

// ===== impl ResponseFuture =====

pin_project! {
    /// Resolves to the answer after the call's latency (at once for errors). Dropping it early
    /// ends the call then: the output refund happens and the call counts as cancelled.
    pub struct ResponseFuture {
        #[pin]
        sleep: Option<Sleep>,
        response: Option<Response<MockReply>>,
        guard: Option<InFlight>,
    }
}

impl ResponseFuture {
    /// Answers `response` after `latency` from `now` (the current instant, which the caller has
    /// at hand); `guard` is the admitted call, if it was admitted.
    pub(crate) fn new(
        response: Response<MockReply>,
        now: Instant,
        latency: Duration,
        guard: Option<InFlight>,
    ) -> Self {
        let sleep = (latency > Duration::ZERO).then(|| match now.checked_add(latency) {
            Some(deadline) => tokio::time::sleep_until(deadline),
            None => tokio::time::sleep(latency), // far in the future
        });
        Self {
            sleep,
            response: Some(response),
            guard,
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<MockReply>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(sleep) = this.sleep.as_pin_mut() {
            ready!(sleep.poll(cx));
        }
        if let Some(mut guard) = this.guard.take() {
            guard.finished = true;
        }
        let response = this.response.take();
        Poll::Ready(Ok(response.expect("ResponseFuture polled after completion")))
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("response", &self.response)
            .finish_non_exhaustive()
    }
}

// ===== impl InFlight =====

/// An admitted call in flight; dropping it ends the call and refunds unused output.
pub(crate) struct InFlight {
    shared: Arc<Shared>,
    charged_at: Duration,
    refund: u64,
    finished: bool,
}

impl InFlight {
    /// A call admitted at `charged_at` that will give back `refund` output tokens when it ends.
    pub(crate) fn new(shared: Arc<Shared>, charged_at: Duration, refund: u64) -> Self {
        Self {
            shared,
            charged_at,
            refund,
            finished: false,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.shared.elapsed();
        let mut state = self.shared.lock();
        state.stats.in_flight = state.stats.in_flight.saturating_sub(1);
        if !self.finished {
            state.stats.cancelled += 1;
        }
        let (refund, charged_at) = (self.refund, self.charged_at);
        state
            .limiter
            .refund(now, Dimension::OutputTokens, refund, charged_at);
    }
}
