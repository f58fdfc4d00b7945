//! What the gateway records of each call: its wait and estimate when admitted ([`entered`],
//! [`admitted`], one [`Trace`] per call shared by its attempts), and its settled usage and
//! outcome when its answer's body ends ([`ObservedBody`]), as metrics and a `tracing` event in
//! the call's span.

use crate::metrics as m;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tollgate::{Cost, Scopes};
use tollgate_http::{charge, CallInfo, Provider, UsageBody};

/// What one call learnt on its way, shared by its attempts.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    data: Mutex<TraceData>,
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TraceData {
    /// Time spent waiting for admission, over every attempt.
    pub(crate) wait: Duration,
    /// Attempts admitted.
    pub(crate) attempts: u32,
    /// The estimate charged at admission.
    pub(crate) estimate: Cost,
}

impl Trace {
    pub(crate) fn get(&self) -> TraceData {
        *self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The trace and the scopes of a call, in its request's extensions.
#[derive(Clone, Debug)]
pub(crate) struct CallTrace {
    pub(crate) trace: Arc<Trace>,
    pub(crate) scopes: Scopes,
}

/// When an attempt reached the throttle.
#[derive(Clone, Copy, Debug)]
struct Entered(Instant);

/// Marks the moment an attempt reaches the throttle (a layer's `map_request`).
pub(crate) fn entered<B>(mut req: Request<B>) -> Request<B> {
    req.extensions_mut().insert(Entered(Instant::now()));
    req
}

/// Records an attempt the throttle admitted: its wait, per scope, and its estimate.
pub(crate) fn admitted<B>(req: Request<B>) -> Request<B> {
    let ext = req.extensions();
    let wait = ext
        .get::<Entered>()
        .map_or(Duration::ZERO, |e| e.0.elapsed());
    let estimate = ext
        .get::<CallInfo>()
        .map_or_else(Cost::request, |i| i.estimate);
    if let Some(call) = ext.get::<CallTrace>() {
        {
            let mut d = call.trace.data.lock().unwrap_or_else(|e| e.into_inner());
            d.wait += wait;
            d.attempts += 1;
            d.estimate = estimate;
        }
        for scope in &call.scopes {
            m::admitted(scope.as_str(), wait);
            m::tokens_estimated(scope.as_str(), estimate);
        }
    }
    req
}

pin_project! {
    /// The answer's body on its way to the client: passes every frame through and, when the body
    /// ends, errs or is dropped, records the call's settled usage and outcome once.
    pub(crate) struct ObservedBody<B> {
        #[pin]
        inner: UsageBody<B>,
        end: Option<End>,
    }

    impl<B> PinnedDrop for ObservedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(end) = this.end.take() {
                end.finish(&this.inner, "client_gone");
            }
        }
    }
}

/// What is recorded at the end of a body.
#[derive(Debug)]
pub(crate) struct End {
    pub(crate) span: tracing::Span,
    pub(crate) call: Option<CallTrace>,
    pub(crate) provider: Option<Provider>,
    pub(crate) status: StatusCode,
    pub(crate) started: Instant,
}

impl End {
    fn finish<B>(self, body: &UsageBody<B>, how: &'static str) {
        let data = self
            .call
            .as_ref()
            .map(|c| c.trace.get())
            .unwrap_or_default();
        let settled = match self.provider {
            Some(p) if self.status.is_success() && body.reads_usage() => {
                Some(charge(p, body.seen(), data.estimate).0)
            }
            _ => None,
        };
        if let (Some(s), Some(call)) = (settled, &self.call) {
            for scope in &call.scopes {
                m::tokens_settled(scope.as_str(), s);
            }
        }
        let outcome = match (self.status.as_u16(), how) {
            (200..=299, "ok") => "ok",
            (200..=299, other) => other,
            (429, _) => "upstream_rate_limited",
            (529, _) | (503, _) => "upstream_overloaded",
            (s, _) if s >= 500 => "upstream_error",
            _ => "upstream_refused",
        };
        m::call_done(outcome);
        let _enter = self.span.enter();
        let scopes = self.call.as_ref().map(|c| scope_list(&c.scopes));
        tracing::info!(
            scopes = scopes.as_deref().unwrap_or("global"),
            status = self.status.as_u16(),
            outcome,
            attempts = data.attempts,
            wait_ms = data.wait.as_millis() as u64,
            estimated_input = data.estimate.input_tokens,
            estimated_output = data.estimate.output_tokens,
            input_tokens = settled.map(|s| s.input_tokens),
            output_tokens = settled.map(|s| s.output_tokens),
            total_ms = self.started.elapsed().as_millis() as u64,
            "call done"
        );
    }
}

/// `a,b,c`.
pub(crate) fn scope_list(scopes: &Scopes) -> String {
    let keys: Vec<&str> = scopes.iter().map(|k| k.as_str()).collect();
    keys.join(",")
}

impl<B> ObservedBody<B> {
    pub(crate) fn new(inner: UsageBody<B>, end: End) -> Self {
        ObservedBody {
            inner,
            end: Some(end),
        }
    }
}

impl<B> Body for ObservedBody<B>
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
        let how = match &frame {
            None => Some("ok"),
            Some(Err(_)) => Some("stream_error"),
            // A server writing a body of known length stops polling after its last byte: the
            // inner body has settled the call here, and so the call ends here.
            Some(Ok(_)) => this.inner.is_end_stream().then_some("ok"),
        };
        if let Some(how) = how {
            if let Some(end) = this.end.take() {
                end.finish(&this.inner, how);
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
