//! Lanes: the scopes of one set of scope keys, resolved once and taken as they are by the calls
//! that have the same keys, and the cache a service keeps them in.

use crate::limiter::Limiter;
use crate::stats::ScopeCounters;
use crate::{ScopeRef, Scopes, ThrottleError};
use smallvec::SmallVec;
use std::sync::{Arc, Mutex};

/// The scopes of one set of scope keys, resolved against the registry at one generation, with the
/// limiter they belong to. A call in a lane takes no registry lock, hashes no key and holds one
/// reference count for its whole life instead of one per scope and one for the limiter.
pub(crate) struct Lane<St> {
    pub(crate) limiter: Limiter<St>,
    /// The keys the lane was resolved from, as the scope hook gave them.
    pub(crate) keys: Scopes,
    /// The registry generation they were resolved at.
    generation: u64,
    pub(crate) scopes: SmallVec<[ScopeRef; 4]>,
    pub(crate) counters: SmallVec<[Arc<ScopeCounters>; 4]>,
}

impl<St> Lane<St> {
    /// The lane of the scope keys `keys`: their scopes resolved against the registry now.
    ///
    /// # Errors
    /// A key that is unknown when unknown keys are rejected, or more than 64 scopes.
    pub(crate) fn resolve(limiter: &Limiter<St>, keys: Scopes) -> Result<Arc<Self>, ThrottleError> {
        let mut scopes = SmallVec::new();
        let mut counters = SmallVec::new();
        let registry = limiter.registry();
        let generation = registry.generation();
        match registry.resolve_into(&keys, &mut scopes, &mut counters) {
            Err(key) => Err(ThrottleError::unknown_scope(key)),
            Ok(()) if scopes.len() > 64 => Err(ThrottleError::too_many_scopes(scopes.len())),
            Ok(()) => Ok(Arc::new(Lane {
                limiter: limiter.clone(),
                keys,
                generation,
                scopes,
                counters,
            })),
        }
    }

    /// Whether a call with the scope keys `keys` may take this lane: the same keys, and no limit
    /// changed since it was resolved (a change may have given a key a scope it had not).
    pub(crate) fn fits(&self, keys: &Scopes) -> bool {
        self.is_current() && self.keys == *keys
    }

    /// Whether no limit changed since the lane was resolved.
    pub(crate) fn is_current(&self) -> bool {
        self.limiter.registry().generation() == self.generation
    }

    /// The same lane with the limits its scopes have now.
    pub(crate) fn refreshed(&self) -> Self {
        let registry = self.limiter.registry();
        let generation = registry.generation();
        let mut scopes = self.scopes.clone();
        registry.refresh(&mut scopes);
        Lane {
            limiter: self.limiter.clone(),
            keys: self.keys.clone(),
            generation,
            scopes,
            counters: self.counters.clone(),
        }
    }
}

impl<St> std::fmt::Debug for Lane<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("keys", &self.keys)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// Where a service keeps the lane of its last call: in itself, without a lock, for a client that
/// keeps one service and calls it again; and in a slot that every clone of the service shares, for
/// clients that clone the service for each call (as `oneshot` on a clone, tower's `Retry` and
/// routers do). Clones start from their original's lane.
pub(crate) struct LaneCache<St> {
    own: Option<Arc<Lane<St>>>,
    shared: Arc<Mutex<Option<Arc<Lane<St>>>>>,
}

impl<St> LaneCache<St> {
    /// An empty cache, with a slot of its own.
    pub(crate) fn new() -> Self {
        LaneCache {
            own: None,
            shared: Arc::default(),
        }
    }

    /// The lane for a call with the scope keys `keys`: the cached one if it fits, else resolved
    /// now and cached.
    ///
    /// # Errors
    /// As [`Lane::resolve`].
    pub(crate) fn get(
        &mut self,
        limiter: &Limiter<St>,
        keys: Scopes,
    ) -> Result<Arc<Lane<St>>, ThrottleError> {
        if let Some(lane) = self.own.as_ref().filter(|l| l.fits(&keys)) {
            return Ok(lane.clone());
        }
        let shared = self
            .shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|l| l.fits(&keys))
            .cloned();
        let lane = match shared {
            Some(lane) => lane,
            None => {
                let lane = Lane::resolve(limiter, keys)?;
                *self.shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(lane.clone());
                lane
            }
        };
        self.own = Some(lane.clone());
        Ok(lane)
    }
}

impl<St> Clone for LaneCache<St> {
    fn clone(&self) -> Self {
        LaneCache {
            own: self.own.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<St> std::fmt::Debug for LaneCache<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneCache")
            .field("own", &self.own)
            .finish_non_exhaustive()
    }
}
