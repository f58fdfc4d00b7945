//! [`RedisHandle`]: the keys of one set of scopes, made once and sent by every call in them.

use crate::script::Keys;
use std::sync::Arc;
use tollgate::ScopeRef;

/// A call's scopes and their keys: each scope's state, then the set of calls in flight of each
/// scope with a concurrency cap (the others have none). Made once per set of scopes when the layer
/// asks for a [`RedisHandle`], otherwise once per call; a reservation keeps it for its settle.
#[derive(Debug)]
pub(super) struct Prepared {
    /// The scopes at the generations the keys were made for (their limits price the settle).
    pub(super) scopes: Box<[ScopeRef]>,
    pub(super) keys: Box<[String]>,
}

impl Prepared {
    pub(super) fn new(keys: &Keys, scopes: &[ScopeRef]) -> Self {
        let capped = scopes.iter().filter(|s| s.limits.concurrency().is_some());
        Prepared {
            scopes: scopes.into(),
            keys: scopes
                .iter()
                .map(|s| keys.scope(s))
                .chain(capped.map(|s| keys.in_flight(s)))
                .collect(),
        }
    }

    /// Whether a call in `scopes` sends these keys and may keep these scopes: the same keys in
    /// the same order, at the same generations (a new generation may add or remove a
    /// concurrency cap, hence a key, and prices a settle anew).
    pub(super) fn fits(&self, scopes: &[ScopeRef]) -> bool {
        self.scopes.len() == scopes.len()
            && self
                .scopes
                .iter()
                .zip(scopes)
                .all(|(a, b)| a.generation == b.generation && a.key == b.key)
    }

    /// The sets of calls in flight, one per capped scope.
    pub(super) fn flights(&self) -> &[String] {
        &self.keys[self.scopes.len()..]
    }
}

/// What a [`RedisStore`](crate::RedisStore) keeps for one set of scopes (its
/// [`Store::Handle`](tollgate::Store::Handle)): the Redis keys of the scopes, so that a call in
/// them sends keys named once instead of naming them again. A call whose scopes changed limits
/// since the handle was made names its keys afresh; the layer then makes a new handle.
///
/// The layer makes and uses handles by itself; a caller of the [`Store`](tollgate::Store) trait
/// does as follows.
///
/// ```no_run
/// use std::sync::Arc;
/// use tollgate::store::{Acquire, Decision, Store};
/// use tollgate::{Cost, Dimension, Limit, ScopeLimits, ScopeRef};
/// use tollgate_core::Nanos;
/// use tollgate_redis::RedisStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379").build().await?;
/// let limits = ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, 500));
/// let scopes = [ScopeRef {
///     id: 0,
///     key: "global".into(),
///     generation: 1,
///     limits: Arc::new(limits.compile()?),
/// }];
/// let handle = store.handle(&scopes, Nanos::ZERO); // once per set of scopes
/// let call = Acquire { now: Nanos::ZERO, scopes: &scopes, cost: Cost::request() };
/// if let Decision::Admitted(reservation) = store.acquire_with(&handle, &call).await? {
///     let used = tollgate::store::Settlement { now: Nanos::ZERO, actual: Cost::request() };
///     store.settle_with(&handle, reservation, used);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct RedisHandle {
    pub(super) prepared: Option<Arc<Prepared>>,
}

impl RedisHandle {
    pub(super) fn new(keys: &Keys, scopes: &[ScopeRef]) -> Self {
        RedisHandle {
            prepared: Some(Arc::new(Prepared::new(keys, scopes))),
        }
    }

    /// The prepared keys of a call in `scopes`: the handle's, when they fit the call.
    pub(super) fn prepared(&self, keys: &Keys, scopes: &[ScopeRef]) -> Arc<Prepared> {
        match &self.prepared {
            Some(p) if p.fits(scopes) => p.clone(),
            _ => Arc::new(Prepared::new(keys, scopes)),
        }
    }
}
