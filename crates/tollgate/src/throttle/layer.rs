use super::Throttle;
use crate::hooks::Hooks;
use crate::{Limiter, MemoryStore, Store, ThrottleBuilder};
use tower_layer::Layer;

/// Applies [`Throttle`] to a service. Built by [`ThrottleLayer::builder`].
///
/// On the client side, wrap the provider client in a `ServiceBuilder` (see the [crate
/// example](crate)). On a server, an axum `Router` takes it behind a `HandleErrorLayer` that turns
/// a refusal into a response; the router clones the service for every request, and every clone
/// counts against the same limit:
///
/// ```
/// use axum::{body::Body, error_handling::HandleErrorLayer, http::{Request, StatusCode}, routing::get, Router};
/// use std::time::Duration;
/// use tollgate::{BoxError, Dimension, Limit, ScopeLimits, ThrottleError, ThrottleLayer};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let throttle = ThrottleLayer::builder()
///     .scope("global", ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, 2)))
///     .max_wait(Duration::from_secs(1))
///     .refuse_over_max_wait(true)
///     .build()?;
/// let app = Router::new().route("/", get(|| async { "hello" })).layer(
///     ServiceBuilder::new()
///         .layer(HandleErrorLayer::new(|err: BoxError| async move {
///             match err.downcast_ref::<ThrottleError>() {
///                 Some(e) if e.is_max_wait() => (StatusCode::TOO_MANY_REQUESTS, e.to_string()),
///                 _ => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
///             }
///         }))
///         .layer(throttle),
/// );
///
/// let get_root = || Request::get("/").body(Body::empty()).unwrap();
/// assert_eq!(app.clone().oneshot(get_root()).await?.status(), StatusCode::OK);
/// assert_eq!(app.clone().oneshot(get_root()).await?.status(), StatusCode::OK);
/// // The third request in the minute would wait 30 s: refused at once.
/// assert_eq!(app.clone().oneshot(get_root()).await?.status(), StatusCode::TOO_MANY_REQUESTS);
/// # Ok(())
/// # }
/// ```
///
/// # Clone
/// Every clone of the layer, and every service it makes, shares one [`Limiter`]: one set of
/// buckets, one queue. Axum clones a service per connection; the limit stays one limit.
#[derive(Debug)]
pub struct ThrottleLayer<H = Hooks, St = MemoryStore> {
    pub(crate) limiter: Limiter<St>,
    pub(crate) hooks: H,
}

impl<H: Clone, St> Clone for ThrottleLayer<H, St> {
    fn clone(&self) -> Self {
        ThrottleLayer {
            limiter: self.limiter.clone(),
            hooks: self.hooks.clone(),
        }
    }
}

impl ThrottleLayer {
    /// A builder with no scopes, the default hooks and the in-memory store.
    pub fn builder() -> ThrottleBuilder {
        ThrottleBuilder::new()
    }
}

impl<H, St> ThrottleLayer<H, St> {
    /// The shared limiter: stats and runtime limit changes.
    pub fn limiter(&self) -> &Limiter<St> {
        &self.limiter
    }
}

impl<S, H: Clone, St: Store> Layer<S> for ThrottleLayer<H, St> {
    type Service = Throttle<S, H, St>;

    fn layer(&self, inner: S) -> Self::Service {
        Throttle {
            inner,
            limiter: self.limiter.clone(),
            hooks: self.hooks.clone(),
            lanes: crate::limiter::LaneCache::new(),
        }
    }
}
