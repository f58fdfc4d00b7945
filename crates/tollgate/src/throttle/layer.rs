use super::Throttle;
use crate::hooks::Hooks;
use crate::{Limiter, MemoryStore, ThrottleBuilder};
use tower_layer::Layer;

/// Applies [`Throttle`] to a service. Built by [`ThrottleLayer::builder`].
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

impl<S, H: Clone, St> Layer<S> for ThrottleLayer<H, St> {
    type Service = Throttle<S, H, St>;

    fn layer(&self, inner: S) -> Self::Service {
        Throttle {
            inner,
            limiter: self.limiter.clone(),
            hooks: self.hooks.clone(),
        }
    }
}
