//! The tower middleware: [`ThrottleLayer`], the [`Throttle`] service and its [`ResponseFuture`].

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::ThrottleLayer;
pub use service::Throttle;
