//! Lanes: the scopes of one set of scope keys, resolved once and taken as they are by the calls
//! that have the same keys, and the cache a service keeps them in.

use crate::limiter::Limiter;
use crate::stats::ScopeCounters;
use crate::{ScopeRef, Scopes, Store, ThrottleError};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The scopes of one set of scope keys, resolved against the registry at one generation, with the
/// limiter they belong to. A call in a lane takes no registry lock, hashes no key and holds one
/// reference count for its whole life instead of one per scope and one for the limiter.
pub(crate) struct Lane<St: Store> {
    pub(crate) limiter: Limiter<St>,
    /// The keys the lane was resolved from, as the scope hook gave them.
    pub(crate) keys: Scopes,
    /// The registry generation they were resolved at.
    generation: u64,
    pub(crate) scopes: SmallVec<[ScopeRef; 4]>,
    pub(crate) counters: SmallVec<[Arc<ScopeCounters>; 4]>,
    /// The store's handle of the scopes.
    pub(crate) handle: St::Handle,
}

impl<St: Store> Lane<St> {
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
                handle: limiter.store_handle(&scopes),
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
            handle: self.limiter.store_handle(&scopes),
            limiter: self.limiter.clone(),
            keys: self.keys.clone(),
            generation,
            scopes,
            counters: self.counters.clone(),
        }
    }
}

impl<St: Store> std::fmt::Debug for Lane<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("keys", &self.keys)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// How many lanes the shared map of a service keeps at most; when full, it starts again empty
/// (lanes are rebuilt on demand), so distinct key sets without end cost bounded memory.
const MAX_SHARED_LANES: usize = 4096;

/// Where a service keeps lanes: the lane of its last call in itself, without a lock, for a client
/// that keeps one service and calls it again with the same keys; and a map of lanes by key set
/// that every clone of the service shares, for fleets whose calls alternate between keys (one
/// agent after another) and for clients that clone the service for each call (as `oneshot` on a
/// clone, tower's `Retry` and routers do). Clones start from their original's lane.
pub(crate) struct LaneCache<St: Store> {
    own: Option<Arc<Lane<St>>>,
    shared: Arc<Mutex<SharedLanes<St>>>,
}

/// The lanes every clone of a service shares, by key set, all resolved at `generation`.
struct SharedLanes<St: Store> {
    generation: u64,
    lanes: HashMap<Scopes, Arc<Lane<St>>, foldhash::fast::RandomState>,
}

impl<St: Store> LaneCache<St> {
    /// An empty cache, with a map of its own.
    pub(crate) fn new() -> Self {
        LaneCache {
            own: None,
            shared: Arc::new(Mutex::new(SharedLanes {
                generation: 0,
                lanes: HashMap::default(),
            })),
        }
    }

    /// The lane for a call with the scope keys `keys`: a cached one if it fits, else resolved
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
        let cached = {
            let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            let generation = limiter.registry().generation();
            if shared.generation != generation {
                // Limits changed: every lane may be stale.
                shared.lanes.clear();
                shared.generation = generation;
            }
            // Every lane in the map was resolved at the map's generation, now the current one:
            // found by its keys, it fits.
            shared.lanes.get(&keys).cloned()
        };
        let lane = match cached {
            Some(lane) => lane,
            None => {
                let lane = Lane::resolve(limiter, keys)?;
                let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
                if shared.generation == lane.generation {
                    if shared.lanes.len() >= MAX_SHARED_LANES {
                        shared.lanes.clear();
                    }
                    shared.lanes.insert(lane.keys.clone(), lane.clone());
                }
                lane
            }
        };
        self.own = Some(lane.clone());
        Ok(lane)
    }
}

#[cfg(test)]
impl<St: Store> LaneCache<St> {
    /// Holds the lock of the shared map until the returned guard drops.
    pub(crate) fn hold_lock(&self) -> impl Sized + '_ {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<St: Store> Clone for LaneCache<St> {
    fn clone(&self) -> Self {
        LaneCache {
            own: self.own.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<St: Store> std::fmt::Debug for LaneCache<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneCache")
            .field("own", &self.own)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ScopeKey, ThrottleLayer};
    use smallvec::smallvec;

    fn agent(i: usize) -> Scopes {
        smallvec![ScopeKey::GLOBAL, ScopeKey::from(format!("agent:{i}"))]
    }

    #[test]
    fn clones_share_lanes_by_key_set_within_a_bound() {
        let layer = ThrottleLayer::builder().build().expect("valid");
        let limiter = layer.limiter().clone();
        let mut cache = LaneCache::new();
        let first = cache.get(&limiter, agent(0)).expect("resolves");
        cache.get(&limiter, agent(1)).expect("resolves");
        // A clone made now, asked for agent 0 after its original moved on to agent 1, finds the
        // same lane in the shared map.
        let mut clone = cache.clone();
        let again = clone.get(&limiter, agent(0)).expect("resolves");
        assert!(Arc::ptr_eq(&first, &again));
        for i in 0..2 * MAX_SHARED_LANES {
            cache.get(&limiter, agent(i)).expect("resolves");
            let kept = cache.shared.lock().expect("not poisoned").lanes.len();
            assert!(kept <= MAX_SHARED_LANES, "{kept} lanes kept");
        }
    }
}
