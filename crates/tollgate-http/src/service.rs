//! The two tower layers around a [`ThrottleLayer`](tollgate::ThrottleLayer) for HTTP:
//! [`ReadRequestLayer`] (outside: reads and checks the request body) and [`UsageLayer`] (inside:
//! wraps response bodies in [`UsageBody`]).

use crate::{read_request, CallInfo, EstimateOptions, Provider, UsageBody};
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tollgate::BoxError;
use tower_layer::Layer;
use tower_service::Service;

/// The largest request body [`ReadRequestLayer`] reads by default: 32 MiB, the size of the
/// largest request Anthropic's Messages API takes.
pub const DEFAULT_MAX_REQUEST_BODY: usize = 32 * 1024 * 1024;

/// A request body above the configured limit (see [`ReadRequestLayer::max_body`]); a gateway
/// answers it with 413.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyTooLarge {
    /// The limit, in bytes.
    pub limit: usize,
}

impl std::fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body is larger than {} bytes", self.limit)
    }
}

impl std::error::Error for BodyTooLarge {}

/// Reads each request's body (up to a limit), and for the paths of a provider's API
/// ([`Provider::from_path`]) checks it and puts what it learnt, a [`CallInfo`], in the request's
/// extensions for the throttle's hooks ([`HttpHooks`](crate::HttpHooks)). The inner service
/// gets the body as [`Full<Bytes>`], rewritten where [`read_request`] says so (an OpenAI stream
/// asked to report its usage).
///
/// A body the provider would refuse ends the call with a
/// [`RequestError`](crate::RequestError) before it reaches the throttle or the network; a body
/// over the limit with [`BodyTooLarge`].
#[derive(Clone, Debug)]
pub struct ReadRequestLayer {
    options: Arc<EstimateOptions>,
    max_body: usize,
}

impl Default for ReadRequestLayer {
    fn default() -> Self {
        ReadRequestLayer::new(EstimateOptions::default())
    }
}

impl ReadRequestLayer {
    /// Reads requests with these estimate options and the default body limit.
    pub fn new(options: EstimateOptions) -> Self {
        ReadRequestLayer {
            options: Arc::new(options),
            max_body: DEFAULT_MAX_REQUEST_BODY,
        }
    }

    /// Refuses request bodies larger than `bytes` with [`BodyTooLarge`].
    #[must_use]
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }
}

impl<S> Layer<S> for ReadRequestLayer {
    type Service = ReadRequest<S>;

    fn layer(&self, inner: S) -> ReadRequest<S> {
        ReadRequest {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`ReadRequestLayer`].
#[derive(Clone, Debug)]
pub struct ReadRequest<S> {
    inner: S,
    layer: ReadRequestLayer,
}

impl<S, B, Res> Service<Request<B>> for ReadRequest<S>
where
    S: Service<Request<Full<Bytes>>, Response = Res> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Res;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Res, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The clone that was made ready goes with this call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let bytes = match Limited::new(body, layer.max_body).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return Err(BodyTooLarge {
                        limit: layer.max_body,
                    }
                    .into())
                }
                Err(e) => return Err(e),
            };
            let body = match Provider::from_path(parts.uri.path()) {
                Some(provider) => {
                    let (info, rewritten) = read_request(provider, &bytes, &layer.options)?;
                    parts.extensions.insert(info);
                    match rewritten {
                        Some(body) => {
                            parts
                                .headers
                                .insert(http::header::CONTENT_LENGTH, body.len().into());
                            body
                        }
                        None => bytes,
                    }
                }
                None => bytes,
            };
            inner
                .call(Request::from_parts(parts, Full::new(body)))
                .await
                .map_err(Into::into)
        })
    }
}

/// Wraps the body of each answer to a request that [`ReadRequestLayer`] read in a
/// [`UsageBody`], which reads the usage as the body passes; other answers' bodies pass through
/// ([`UsageBody::plain`]). Put it between the throttle and the HTTP client.
#[derive(Clone, Copy, Debug, Default)]
pub struct UsageLayer;

impl UsageLayer {
    /// The layer.
    pub fn new() -> Self {
        UsageLayer
    }
}

impl<S> Layer<S> for UsageLayer {
    type Service = ReadUsageBody<S>;

    fn layer(&self, inner: S) -> ReadUsageBody<S> {
        ReadUsageBody { inner }
    }
}

/// The service of [`UsageLayer`].
#[derive(Clone, Debug)]
pub struct ReadUsageBody<S> {
    inner: S,
}

impl<S, B, RB> Service<Request<B>> for ReadUsageBody<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<UsageBody<RB>>;
    type Error = S::Error;
    type Future = UsageFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let provider = req.extensions().get::<CallInfo>().map(|i| i.provider);
        UsageFuture {
            fut: self.inner.call(req),
            provider,
        }
    }
}

pin_project! {
    /// The future of [`ReadUsageBody`].
    #[derive(Debug)]
    pub struct UsageFuture<F> {
        #[pin]
        fut: F,
        provider: Option<Provider>,
    }
}

impl<F, RB, E> Future for UsageFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<UsageBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.fut.poll(cx))?;
        let provider = this.provider.filter(|_| res.status().is_success());
        Poll::Ready(Ok(wrap(res, provider)))
    }
}

/// `res` with its body in a [`UsageBody`] that reads `provider`'s usage (`None`: none).
fn wrap<RB>(res: Response<RB>, provider: Option<Provider>) -> Response<UsageBody<RB>> {
    let (parts, body) = res.into_parts();
    let body = match provider {
        Some(p) => {
            let content_type = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            UsageBody::new(body, p, content_type)
        }
        None => UsageBody::plain(body),
    };
    Response::from_parts(parts, body)
}
