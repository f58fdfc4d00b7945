use crate::feedback::Classify;
use crate::hooks::ReadUsage;
use crate::limiter::{Admitted, Waiting};
use crate::{BoxError, Store, ThrottleError};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tower_service::Service;

pin_project! {
    /// The future of [`Throttle`](super::Throttle): waits for admission, calls the inner service,
    /// settles the charge.
    ///
    /// Dropping it at any point gives back what it holds: while waiting, its place in the queue;
    /// while the call is in flight, its concurrency slot, and its charge is settled by the layer's
    /// [`OnFailure`](crate::OnFailure) rule.
    pub struct ResponseFuture<S, Req, U, C, St>
    where
        S: Service<Req>,
        St: Store,
    {
        #[pin]
        state: State<S, Req, St>,
        after: After<U, C>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req, St>
    where
        S: Service<Req>,
        St: Store,
    {
        Failed { error: Option<ThrottleError> },
        Waiting { waiting: Waiting<St>, svc: Option<S>, req: Option<Req> },
        // The admitted call is `None` once settled or handed out as a permit.
        Calling { #[pin] fut: S::Future, call: Option<Admitted<St>> },
        Done,
    }
}

/// What the future does with the answer: read the usage, classify it.
#[derive(Clone, Debug)]
pub(crate) struct After<U, C> {
    pub(crate) usage: U,
    pub(crate) classify: C,
}

impl<S, Req, U, C, St> ResponseFuture<S, Req, U, C, St>
where
    S: Service<Req>,
    St: Store,
{
    pub(crate) fn waiting(waiting: Waiting<St>, svc: S, req: Req, after: After<U, C>) -> Self {
        ResponseFuture {
            state: State::Waiting {
                waiting,
                svc: Some(svc),
                req: Some(req),
            },
            after,
        }
    }

    pub(crate) fn calling(fut: S::Future, call: Admitted<St>, after: After<U, C>) -> Self {
        ResponseFuture {
            state: State::Calling {
                fut,
                call: Some(call),
            },
            after,
        }
    }

    pub(crate) fn failed(error: ThrottleError, after: After<U, C>) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
            after,
        }
    }
}

impl<S, Req, U, C, St> std::fmt::Debug for ResponseFuture<S, Req, U, C, St>
where
    S: Service<Req>,
    St: Store,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Failed { .. } => "failed",
            State::Waiting { .. } => "waiting",
            State::Calling { .. } => "calling",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<S, Req, U, C, St> Future for ResponseFuture<S, Req, U, C, St>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    U: ReadUsage<S::Response>,
    C: Classify<S::Response, S::Error>,
    St: Store,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Failed { error } => {
                    let e = error
                        .take()
                        .unwrap_or_else(ThrottleError::polled_after_completion);
                    this.state.set(State::Done);
                    return Poll::Ready(Err(e.into()));
                }
                StateProj::Waiting { waiting, svc, req } => {
                    let admitted = ready!(waiting.poll_acquire(cx));
                    let (call, Some(mut svc), Some(req)) = (admitted, svc.take(), req.take())
                    else {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(ThrottleError::polled_after_completion().into()));
                    };
                    let call = match call {
                        Ok(call) => call,
                        Err(e) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(e.into()));
                        }
                    };
                    let fut = svc.call(req);
                    this.state.set(State::Calling {
                        fut,
                        call: Some(call),
                    });
                }
                StateProj::Calling { fut, call } => {
                    let mut result = ready!(fut.poll(cx));
                    if let Some(admitted) = call.as_mut() {
                        let feedback = this.after.classify.classify(result.as_ref());
                        admitted.feedback(&feedback);
                        match &mut result {
                            // Settled when the answer's usage is known.
                            Ok(res) if this.after.usage.defers(res) => {
                                if let Some(admitted) = call.take() {
                                    let permit = admitted.into_permit(feedback.outcome);
                                    this.after.usage.defer(res, permit);
                                }
                            }
                            Ok(res) => {
                                let usage = this.after.usage.usage(res);
                                let tokens = if admitted.wants_tokens() {
                                    this.after.usage.tokens(res)
                                } else {
                                    None
                                };
                                admitted.answered(usage, tokens, &feedback.outcome);
                            }
                            // Settled by the failure rule.
                            Err(_) => admitted.fail(),
                        }
                    }
                    this.state.set(State::Done);
                    return Poll::Ready(result.map_err(Into::into));
                }
                StateProj::Done => {
                    return Poll::Ready(Err(ThrottleError::polled_after_completion().into()))
                }
            }
        }
    }
}
