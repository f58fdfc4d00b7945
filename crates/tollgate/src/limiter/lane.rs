//! Lanes: the scopes of one set of scope keys, resolved once and taken as they are by the calls
//! that have the same keys, and the cache a service keeps them in.

use super::shared::Shared;
use crate::counters::ScopeCounters;
use crate::{Dimension, ScopeRef, Scopes, Store, ThrottleError};
use arc_swap::ArcSwap;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The scopes of one set of scope keys, resolved against the registry at one generation, with the
/// limiter state they belong to. A call in a lane takes no registry lock, hashes no key and holds
/// one reference count for its whole life instead of one per scope and one for the limiter.
pub(crate) struct Lane<St: Store> {
    pub(crate) shared: Arc<Shared<St>>,
    /// The keys the lane was resolved from, as the scope hook gave them.
    pub(crate) keys: Scopes,
    /// The registry generation they were resolved at.
    generation: u64,
    pub(crate) scopes: SmallVec<[ScopeRef; 4]>,
    pub(crate) counters: SmallVec<[Arc<ScopeCounters>; 4]>,
    /// Whether a scope caps the calls in flight.
    pub(crate) capped: bool,
    /// What the scopes' rate limits count, each once.
    pub(crate) dimensions: SmallVec<[Dimension; 4]>,
    /// Where the provider scope is among `scopes`, if the lane has it.
    pub(crate) provider: Option<usize>,
    /// The store's handle of the scopes.
    pub(crate) handle: St::Handle,
}

impl<St: Store> Lane<St> {
    /// Counts a call admitted in the lane's scopes (after `waited` in the queue, if it queued);
    /// returns its place among the provider scope's admissions (0 without that scope).
    #[inline]
    pub(crate) fn count_admitted(&self, waited: Option<std::time::Duration>) -> u64 {
        let mut place = 0;
        for (i, c) in self.counters.iter().enumerate() {
            let n = c.admitted(waited);
            if self.provider == Some(i) {
                place = n;
            }
        }
        place
    }

    /// The lane of the scope keys `keys`: their scopes resolved against the registry now.
    ///
    /// # Errors
    /// A key that is unknown when unknown keys are rejected, or more than 64 scopes.
    pub(crate) fn resolve(
        shared: &Arc<Shared<St>>,
        keys: Scopes,
    ) -> Result<Arc<Self>, ThrottleError> {
        let mut scopes = SmallVec::new();
        let mut counters = SmallVec::new();
        let registry = &shared.registry;
        let generation = registry.generation();
        let resolved = registry.resolve_into(&keys, &mut scopes, &mut counters);
        if registry.sweep_due() {
            // Amortised over the keys added; the scopes just resolved are held (`counters`), so
            // they stay.
            let (now, store) = (shared.clock.elapsed(), &shared.store);
            let evicted = registry.sweep(now, |scope, since| store.evict(scope, since));
            tracing::debug!(evicted, "idle keys of patterns evicted");
        }
        match resolved {
            Err(key) => Err(ThrottleError::unknown_scope(key)),
            Ok(()) if scopes.len() > 64 => Err(ThrottleError::too_many_scopes(scopes.len())),
            Ok(()) => Ok(Arc::new(Lane::new(
                shared, keys, generation, scopes, counters,
            ))),
        }
    }

    /// The lane of `scopes` (resolved from `keys` at `generation`), with what is derived from
    /// them: the store's handle, whether one caps the calls in flight, the dimensions limited.
    fn new(
        shared: &Arc<Shared<St>>,
        keys: Scopes,
        generation: u64,
        scopes: SmallVec<[ScopeRef; 4]>,
        counters: SmallVec<[Arc<ScopeCounters>; 4]>,
    ) -> Self {
        Lane {
            handle: shared.store.handle(&scopes, shared.clock.elapsed()),
            capped: capped(&scopes),
            dimensions: dimensions(&scopes),
            provider: shared
                .settings
                .provider_scope
                .as_ref()
                .and_then(|key| scopes.iter().position(|s| s.key == *key)),
            shared: shared.clone(),
            keys,
            generation,
            scopes,
            counters,
        }
    }

    /// Whether a call with the scope keys `keys` may take this lane: the same keys, and no limit
    /// changed since it was resolved (a change may have given a key a scope it had not).
    pub(crate) fn fits(&self, keys: &Scopes) -> bool {
        self.is_current() && self.keys == *keys
    }

    /// Whether no limit changed since the lane was resolved.
    pub(crate) fn is_current(&self) -> bool {
        self.shared.registry.generation() == self.generation
    }

    /// The same lane with the limits its scopes have now.
    pub(crate) fn refreshed(&self) -> Self {
        let registry = &self.shared.registry;
        let generation = registry.generation();
        let mut scopes = self.scopes.clone();
        registry.refresh(&mut scopes);
        Lane::new(
            &self.shared,
            self.keys.clone(),
            generation,
            scopes,
            self.counters.clone(),
        )
    }
}

/// Whether one of `scopes` caps the calls in flight.
fn capped(scopes: &[ScopeRef]) -> bool {
    scopes.iter().any(|s| s.limits.concurrency().is_some())
}

/// What the rate limits of `scopes` count, each once, in [`Dimension::ALL`]'s order.
fn dimensions(scopes: &[ScopeRef]) -> SmallVec<[Dimension; 4]> {
    let limited =
        |d: Dimension| (scopes.iter()).any(|s| s.limits.gcras().iter().any(|g| g.dimension() == d));
    Dimension::ALL.into_iter().filter(|&d| limited(d)).collect()
}

impl<St: Store> std::fmt::Debug for Lane<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("keys", &self.keys)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// How many lanes the snapshot of a service's shared map holds at most (the recent lanes beside it:
/// at most a quarter of that); when full, it starts again from the recent lanes (lanes are rebuilt
/// on demand), so distinct key sets without end cost bounded memory.
const MAX_SHARED_LANES: usize = 4096;

/// The fewest recent lanes that make a new snapshot without any of them being asked for again.
const MIN_RECENT: usize = 8;

/// Where a service keeps lanes: the lane of its last call in itself, for a client that keeps one
/// service and calls it again with the same keys; and a map of lanes by key set that every clone
/// of the service shares, for fleets whose calls alternate between keys (one agent after another)
/// and for clients that clone the service for each call (as `oneshot` on a clone, tower's `Retry`
/// and routers do). Clones start from their original's lane. Finding a lane takes no lock once its
/// keys have been used twice: see [`SharedLanes`].
pub(crate) struct LaneCache<St: Store> {
    own: Option<Arc<Lane<St>>>,
    shared: Arc<SharedLanes<St>>,
}

/// The lanes every clone of a service shares, by key set. Calls look a lane up in an immutable
/// snapshot, without a lock. A lane resolved since the snapshot was made waits in `recent`, under
/// a lock, until a new snapshot takes it in with every other recent lane: as soon as a call asks
/// for it again (its keys come back), or when the recent lanes reach a quarter of the snapshot (so
/// that making snapshots copies each lane a bounded number of times on average).
struct SharedLanes<St: Store> {
    snapshot: ArcSwap<Lanes<St>>,
    recent: Mutex<Lanes<St>>,
}

/// Lanes by key set, all resolved at `generation`.
struct Lanes<St: Store> {
    generation: u64,
    lanes: HashMap<Scopes, Arc<Lane<St>>, foldhash::fast::RandomState>,
    /// The same lanes by [`place`] of their keys (in a snapshot only; see [`place`]).
    by_place: HashMap<u64, Arc<Lane<St>>, foldhash::fast::RandomState>,
}

impl<St: Store> Lanes<St> {
    fn empty(generation: u64) -> Self {
        Lanes {
            generation,
            lanes: HashMap::default(),
            by_place: HashMap::default(),
        }
    }

    /// The lane of `keys`, if it is here and resolved at `generation`: found by where the keys'
    /// strings are, without hashing them, when they are those the lane was resolved from (a
    /// caller that keeps its keys); else by the keys' contents.
    #[inline]
    fn get(&self, keys: &Scopes, generation: u64) -> Option<&Arc<Lane<St>>> {
        if self.generation != generation {
            return None;
        }
        match self.by_place.get(&place(keys)) {
            Some(lane) if lane.keys == *keys => Some(lane),
            _ => self.lanes.get(keys),
        }
    }
}

/// Where the strings of `keys` are in memory, mixed into one word: an index, not a hash of the
/// contents. Keys that come back as the same allocations (static keys, or keys a caller made
/// once and keeps, such as an agent's) find their lane by it without hashing a byte. Two key sets
/// may share a place, and equal keys in other allocations have another: a lane found by place is
/// used only when its keys equal the call's (the same allocations compare without reading them),
/// and a miss looks the keys up by their contents. The lane's own keys keep their allocations
/// alive while the lane is kept, so no other string can take their place meanwhile.
#[inline]
fn place(keys: &Scopes) -> u64 {
    keys.iter().fold(0u64, |h, k| {
        let s = k.as_str();
        let at = s.as_ptr() as usize as u64 ^ (s.len() as u64).rotate_right(8);
        (h.rotate_left(23) ^ at).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    })
}

impl<St: Store> SharedLanes<St> {
    fn lock_recent(&self) -> MutexGuard<'_, Lanes<St>> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lane of `keys` at `generation` if it was resolved before, under the lock; a lane found
    /// among the recent ones goes into a new snapshot.
    fn find_locked(&self, keys: &Scopes, generation: u64) -> Option<Arc<Lane<St>>> {
        let mut recent = self.lock_recent();
        self.catch_up(&mut recent, generation);
        // A snapshot made since the caller looked may hold it.
        if let Some(lane) = self.snapshot.load().get(keys, generation) {
            return Some(lane.clone());
        }
        let lane = recent.lanes.get(keys).cloned()?;
        self.publish(&mut recent);
        Some(lane)
    }

    /// Drops every lane (recent and in the snapshot) when limits changed since they were resolved:
    /// `generation` is newer than theirs. (A caller that read an older generation changes nothing.)
    fn catch_up(&self, recent: &mut Lanes<St>, generation: u64) {
        if recent.generation < generation {
            *recent = Lanes::empty(generation);
            self.snapshot.store(Arc::new(Lanes::empty(generation)));
        }
    }

    /// Keeps `lane` among the recent lanes (unless limits changed since it was resolved); makes a
    /// new snapshot when they are many enough.
    fn insert(&self, lane: &Arc<Lane<St>>) {
        let mut recent = self.lock_recent();
        self.catch_up(&mut recent, lane.generation);
        if recent.generation != lane.generation {
            // Resolved before a limit change that another call has seen.
            return;
        }
        recent.lanes.insert(lane.keys.clone(), lane.clone());
        let in_snapshot = self.snapshot.load().lanes.len();
        if recent.lanes.len() >= (in_snapshot / 4).max(MIN_RECENT) {
            self.publish(&mut recent);
        }
    }

    /// Replaces the snapshot by one with the recent lanes added (or by the recent lanes alone if
    /// the map is full). Only the holder of `recent`'s lock makes snapshots, so none is lost, and
    /// the snapshot's generation is always the recent lanes' one.
    fn publish(&self, recent: &mut Lanes<St>) {
        let snapshot = self.snapshot.load();
        let mut lanes = if snapshot.lanes.len() + recent.lanes.len() <= MAX_SHARED_LANES {
            snapshot.lanes.clone()
        } else {
            HashMap::default()
        };
        lanes.extend(recent.lanes.drain());
        let by_place = (lanes.values())
            .map(|lane| (place(&lane.keys), lane.clone()))
            .collect();
        self.snapshot.store(Arc::new(Lanes {
            generation: recent.generation,
            lanes,
            by_place,
        }));
    }
}

impl<St: Store> LaneCache<St> {
    /// An empty cache, with a map of its own.
    pub(crate) fn new() -> Self {
        LaneCache {
            own: None,
            shared: Arc::new(SharedLanes {
                snapshot: ArcSwap::from_pointee(Lanes::empty(0)),
                recent: Mutex::new(Lanes::empty(0)),
            }),
        }
    }

    /// The lane for a call with the scope keys `keys`: a cached one if it fits, else resolved
    /// now and cached.
    ///
    /// # Errors
    /// As [`Lane::resolve`].
    pub(crate) fn get(
        &mut self,
        shared: &Arc<Shared<St>>,
        keys: Scopes,
    ) -> Result<Arc<Lane<St>>, ThrottleError> {
        if let Some(lane) = self.own.as_ref().filter(|l| l.fits(&keys)) {
            return Ok(lane.clone());
        }
        let generation = shared.registry.generation();
        // Every lane in a snapshot of the current generation was resolved at it: found by its
        // keys, it fits.
        let cached = self.shared.snapshot.load().get(&keys, generation).cloned();
        let lane = match cached.or_else(|| self.shared.find_locked(&keys, generation)) {
            Some(lane) => lane,
            None => {
                let lane = Lane::resolve(shared, keys)?;
                self.shared.insert(&lane);
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
        self.shared.lock_recent()
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
        let limiter = layer.limiter().shared().clone();
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
            let in_snapshot = cache.shared.snapshot.load().lanes.len();
            let recent = cache.shared.lock_recent().lanes.len();
            assert!(
                in_snapshot <= MAX_SHARED_LANES,
                "{in_snapshot} lanes in the snapshot"
            );
            assert!(recent <= MAX_SHARED_LANES / 4, "{recent} recent lanes");
        }
    }

    /// The lanes in the snapshot (the lock-free part of the map) and among the recent ones.
    fn kept<St: Store>(cache: &LaneCache<St>) -> (Vec<String>, usize) {
        let mut keys: Vec<String> = (cache.shared.snapshot.load().lanes.keys())
            .map(|k| k[1].as_str().to_owned())
            .collect();
        keys.sort();
        (keys, cache.shared.lock_recent().lanes.len())
    }

    #[test]
    fn lanes_asked_for_again_go_into_the_snapshot() {
        let layer = ThrottleLayer::builder().build().expect("valid");
        let limiter = layer.limiter().shared().clone();
        let mut cache = LaneCache::new();
        let first = cache.get(&limiter, agent(0)).expect("resolves");
        cache.get(&limiter, agent(1)).expect("resolves");
        assert_eq!(kept(&cache), (vec![], 2));
        // Agent 0 comes back: it and every other recent lane go into the snapshot.
        let again = cache.get(&limiter, agent(0)).expect("resolves");
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(kept(&cache), (vec!["agent:0".into(), "agent:1".into()], 0));
        // New key sets wait among the recent ones until there are MIN_RECENT of them.
        for i in 2..2 + MIN_RECENT - 1 {
            cache.get(&limiter, agent(i)).expect("resolves");
        }
        assert_eq!(kept(&cache).1, MIN_RECENT - 1);
        cache.get(&limiter, agent(99)).expect("resolves");
        let (in_snapshot, recent) = kept(&cache);
        assert_eq!((in_snapshot.len(), recent), (2 + MIN_RECENT, 0));
        assert!(in_snapshot.contains(&"agent:99".to_owned()));
    }

    /// Keys that come back as the same allocations find their lane by place; equal keys in other
    /// allocations find it by contents; a lane at the place of other keys is never taken.
    #[test]
    fn lanes_are_found_by_place_only_for_their_own_keys() {
        let layer = ThrottleLayer::builder().build().expect("valid");
        let limiter = layer.limiter().shared().clone();
        let mut cache = LaneCache::new();
        let kept = agent(0);
        let first = cache.get(&limiter, kept.clone()).expect("resolves");
        let other = cache.get(&limiter, agent(1)).expect("resolves");
        cache.get(&limiter, kept.clone()).expect("resolves");
        let snapshot = cache.shared.snapshot.load();
        let generation = snapshot.generation;
        let by_place = snapshot.by_place.get(&place(&kept)).expect("published");
        assert!(Arc::ptr_eq(by_place, &first));
        let again = agent(0);
        assert_ne!(
            place(&again),
            place(&kept),
            "other allocations, another place"
        );
        let found = snapshot.get(&again, generation).expect("found by contents");
        assert!(Arc::ptr_eq(found, &first));
        // Another key set's lane at the keys' place (as two places may collide) is not taken.
        let mut lanes = Lanes::empty(generation);
        lanes.lanes.insert(kept.clone(), first.clone());
        lanes.by_place.insert(place(&kept), other.clone());
        let found = lanes.get(&kept, generation).expect("found by contents");
        assert!(Arc::ptr_eq(found, &first));
    }

    #[test]
    fn a_limit_change_makes_every_kept_lane_stale() {
        let layer = ThrottleLayer::builder().build().expect("valid");
        let limiter = layer.limiter().shared().clone();
        let mut cache = LaneCache::new();
        let first = cache.get(&limiter, agent(0)).expect("resolves");
        cache.get(&limiter, agent(1)).expect("resolves");
        cache.get(&limiter, agent(0)).expect("resolves");
        assert_eq!(kept(&cache).0.len(), 2);
        layer
            .limiter()
            .set_limits("global", crate::ScopeLimits::new().concurrency(3))
            .expect("valid limits");
        let again = cache.get(&limiter, agent(0)).expect("resolves");
        assert!(!Arc::ptr_eq(&first, &again), "a lane of the old limits");
        assert!(again.is_current());
        assert_eq!(again.scopes[0].limits.concurrency(), Some(3));
        assert_eq!(kept(&cache), (vec![], 1), "the old lanes are dropped");
    }
}
