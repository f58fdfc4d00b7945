//! The scope registry: which limits each scope key has, including keys instantiated from a
//! `kind:*` or `*` pattern, and changes to them at run time.

use crate::counters::ScopeCounters;
use crate::{ConfigError, ScopeKey, ScopeLimits, Scopes};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tollgate_core::{CompiledScope, Nanos, Rule};

/// The fewest keys instantiated from patterns between two sweeps for idle keys.
pub(crate) const SWEEP_EVERY: usize = 1024;

/// A dense id for a scope key, assigned by the layer the first time it sees the key.
pub type ScopeId = u32;

/// The limits of one scope as a [`Store`](crate::Store) receives them.
#[derive(Clone, Debug)]
pub struct ScopeRef {
    /// The dense id of the scope (stable for the life of the layer).
    pub id: ScopeId,
    /// The scope key.
    pub key: ScopeKey,
    /// Increases every time the scope's limits change at run time. A store keeps the limits with
    /// the highest generation it has seen and ignores older ones from calls that started earlier.
    pub generation: u64,
    /// The compiled limits.
    pub limits: Arc<CompiledScope>,
}

/// What happens to a scope key that is neither configured nor matched by a pattern.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "toml", derive(serde::Deserialize))]
#[cfg_attr(feature = "toml", serde(rename_all = "snake_case"))]
pub enum UnknownScopes {
    /// The key is not limited: the call is admitted on its other scopes alone. The default, so a
    /// new team or agent name never stops traffic; add a `kind:*` or `*` pattern to limit them.
    #[default]
    Unlimited,
    /// The call fails at once with an error that names the key.
    Reject,
}

#[derive(Debug)]
struct Entry {
    key: ScopeKey,
    generation: u64,
    limits: Arc<CompiledScope>,
    /// The pattern the key was instantiated from, or `None` for an exact key.
    pattern: Option<usize>,
    /// Shared with every lane, call and stats snapshot that uses the scope: the registry's own
    /// reference is the only one when none does.
    counters: Arc<ScopeCounters>,
    /// For a key of a pattern: the sweep that first found it unused since its last use.
    unused: Option<Unused>,
}

/// A key of a pattern found unused by a sweep: when, and its calls then (admitted and refused).
#[derive(Clone, Copy, Debug)]
struct Unused {
    since: Nanos,
    calls: u64,
}

#[derive(Debug)]
struct Pattern {
    /// `Some(kind)` for `kind:*`, `None` for `*`.
    kind: Option<String>,
    generation: u64,
    limits: Arc<CompiledScope>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Keys are hashed with foldhash (randomly seeded, several times faster than SipHash on
    /// short keys): one lookup per key of every call.
    by_key: HashMap<ScopeKey, ScopeId, foldhash::fast::RandomState>,
    /// By id; `None` where an idle key was evicted and its id is free.
    entries: Vec<Option<Entry>>,
    /// The ids of evicted keys, given to new keys first.
    free: Vec<ScopeId>,
    patterns: Vec<Pattern>,
    generation: u64,
    /// Keys of patterns now in the registry.
    instantiated: usize,
    /// Keys of patterns added since the last sweep.
    added: usize,
}

/// One resolved scope of a call: what the store needs and the counters the stats need.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub(crate) scope: ScopeRef,
    pub(crate) counters: Arc<ScopeCounters>,
}

/// Scope keys to limits.
#[derive(Debug)]
pub(crate) struct Registry {
    inner: RwLock<Inner>,
    /// `inner.generation`, readable without the lock.
    generation: AtomicU64,
    unknown: UnknownScopes,
    always: Vec<ScopeKey>,
    headroom: f64,
    /// How long a key of a pattern stays unused and idle before it is evicted.
    idle_eviction: Nanos,
    /// Set when enough keys were added since the last sweep.
    sweep_due: AtomicBool,
    /// The fewest keys added between sweeps ([`SWEEP_EVERY`]; tests lower it).
    sweep_every: AtomicUsize,
    /// Keys evicted so far.
    evicted: AtomicU64,
}

/// Checks that `name` is an exact scope key or a well-formed pattern (`kind:*` or `*`).
pub(crate) fn validate_key(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.starts_with(':') || name.ends_with(':') {
        return Err(ConfigError::new(
            Rule::InvalidScopeKey,
            format!("`{name}` is not a scope key (empty, or an empty kind or name)"),
        ));
    }
    let bad_pattern = match pattern_kind(name) {
        // The kind is what comes before the first `:` of a key, so it has neither `:` nor `*`.
        Some(Some(kind)) => kind.contains([':', '*']),
        Some(None) => false,
        None => name.contains('*'),
    };
    if bad_pattern {
        return Err(ConfigError::new(
            Rule::InvalidScopeKey,
            format!(
                "`{name}`: `*` may only stand alone or as `kind:*`, with a kind that has no `:`"
            ),
        ));
    }
    Ok(())
}

/// `Some(kind)` for `kind:*`, `Some("")`-free; `None` when `key` is not a pattern.
pub(crate) fn pattern_kind(key: &str) -> Option<Option<&str>> {
    if key == "*" {
        Some(None)
    } else {
        key.strip_suffix(":*").map(Some)
    }
}

impl Registry {
    pub(crate) fn new(
        scopes: &[(ScopeKey, ScopeLimits)],
        always: Vec<ScopeKey>,
        unknown: UnknownScopes,
        headroom: f64,
        idle_eviction: Duration,
    ) -> Result<Self, ConfigError> {
        let reg = Registry {
            inner: RwLock::new(Inner::default()),
            generation: AtomicU64::new(0),
            unknown,
            always,
            headroom,
            idle_eviction: Nanos::from(idle_eviction),
            sweep_due: AtomicBool::new(false),
            sweep_every: AtomicUsize::new(SWEEP_EVERY),
            evicted: AtomicU64::new(0),
        };
        for (key, limits) in scopes {
            reg.set(key.clone(), limits)?;
        }
        let inner = reg.inner.read().unwrap_or_else(|e| e.into_inner());
        for key in &reg.always {
            if pattern_kind(key.as_str()).is_some() {
                return Err(ConfigError::new(
                    Rule::UnknownScope,
                    format!(
                        "`{key}` is a pattern; scopes charged on every call must be exact keys"
                    ),
                ));
            }
            if !inner.by_key.contains_key(key) {
                return Err(ConfigError::new(
                    Rule::UnknownScope,
                    format!("`{key}` is to be charged on every call but no scope of that key is configured"),
                ));
            }
        }
        drop(inner);
        Ok(reg)
    }

    /// Sets the limits of an exact key or a pattern, at build time or at run time.
    pub(crate) fn set(&self, key: ScopeKey, limits: &ScopeLimits) -> Result<(), ConfigError> {
        let name = key.as_str();
        validate_key(name)?;
        let compiled = Arc::new(
            limits
                .clone()
                .with_default_headroom(self.headroom)
                .compile()
                .map_err(|e| e.in_scope(name))?,
        );
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.generation += 1;
        let generation = inner.generation;
        self.generation.store(generation, Ordering::Release);
        match pattern_kind(name) {
            Some(kind) => {
                let kind = kind.map(str::to_owned);
                let idx = match inner.patterns.iter().position(|p| p.kind == kind) {
                    Some(i) => {
                        inner.patterns[i].generation = generation;
                        inner.patterns[i].limits = compiled.clone();
                        i
                    }
                    None => {
                        inner.patterns.push(Pattern {
                            kind,
                            generation,
                            limits: compiled.clone(),
                        });
                        inner.patterns.len() - 1
                    }
                };
                for e in inner.entries.iter_mut().flatten() {
                    if e.pattern == Some(idx) {
                        e.generation = generation;
                        e.limits = compiled.clone();
                    }
                }
            }
            None => match inner.by_key.get(&key).copied() {
                Some(id) => {
                    let inner = &mut *inner;
                    if let Some(e) = inner.entries[id as usize].as_mut() {
                        e.generation = generation;
                        e.limits = compiled;
                        // Configured explicitly now: never evicted.
                        if e.pattern.take().is_some() {
                            e.unused = None;
                            inner.instantiated -= 1;
                        }
                    }
                }
                None => {
                    Self::push(&mut inner, key, generation, compiled, None);
                }
            },
        }
        Ok(())
    }

    fn push(
        inner: &mut Inner,
        key: ScopeKey,
        generation: u64,
        limits: Arc<CompiledScope>,
        pattern: Option<usize>,
    ) -> ScopeId {
        let entry = Entry {
            key: key.clone(),
            generation,
            limits,
            pattern,
            counters: Arc::default(),
            unused: None,
        };
        let id = match inner.free.pop() {
            Some(id) => {
                inner.entries[id as usize] = Some(entry);
                id
            }
            None => {
                inner.entries.push(Some(entry));
                (inner.entries.len() - 1) as ScopeId
            }
        };
        inner.by_key.insert(key, id);
        if pattern.is_some() {
            inner.instantiated += 1;
            inner.added += 1;
        }
        id
    }

    /// Whether enough keys were added since the last sweep that one is due (see
    /// [`sweep`](Registry::sweep)): at least [`SWEEP_EVERY`] and a quarter of the keys of
    /// patterns, so that sweeping costs a bounded number of entry visits per key added.
    pub(crate) fn sweep_due(&self) -> bool {
        self.sweep_due.load(Ordering::Relaxed)
    }

    /// Evicts the keys of patterns that are idle at `now` (the layer's time): unused (no lane,
    /// call or stats snapshot holds the scope, and no call was admitted or refused in it) since a
    /// sweep at least the idle-eviction time ago, and forgotten by the store, which `forget` asks
    /// with the time the scope must have been idle since (`now` less the idle-eviction time).
    /// Exact keys are never evicted. Returns how many keys were evicted.
    ///
    /// # Why no decision changes
    /// An entry whose counters only the registry holds is used by no lane (every lane, and so
    /// every call and store handle, holds the counters of each of its scopes), and none can start
    /// using it without the registry's lock, held here. Its id is then in no queue entry, no
    /// reservation and no handle; the store forgets the scope only when its state has been idle
    /// since that time, which answers every later call exactly as the new state the key gets when
    /// it comes back (`ScopeState::is_idle_since`).
    pub(crate) fn sweep(
        &self,
        now: Nanos,
        mut forget: impl FnMut(&ScopeRef, Nanos) -> bool,
    ) -> usize {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *inner;
        inner.added = 0;
        self.sweep_due.store(false, Ordering::Relaxed);
        let idle = self.idle_eviction;
        let since = now - idle;
        let mut evicted = 0;
        for id in 0..inner.entries.len() {
            let Some(e) = inner.entries[id].as_mut() else {
                continue;
            };
            if e.pattern.is_none() {
                continue;
            }
            if Arc::strong_count(&e.counters) > 1 {
                e.unused = None;
                continue;
            }
            // Pairs with the release of the last other reference: what its holder did to the
            // scope's state and counters is seen from here on.
            fence(Ordering::Acquire);
            let calls = e.counters.calls();
            match e.unused {
                Some(u) if u.calls == calls && now - u.since >= idle => {}
                Some(u) if u.calls == calls => continue,
                _ => {
                    e.unused = Some(Unused { since: now, calls });
                    continue;
                }
            }
            let scope = Self::scope_ref(e, id as ScopeId);
            if forget(&scope, since) {
                inner.by_key.remove(&scope.key);
                inner.entries[id] = None;
                inner.free.push(id as ScopeId);
                inner.instantiated -= 1;
                evicted += 1;
            }
        }
        self.evicted.fetch_add(evicted as u64, Ordering::Relaxed);
        evicted
    }

    /// Sweeps after every `n` keys added (and a quarter of the keys of patterns).
    #[cfg(test)]
    pub(crate) fn sweep_every(&self, n: usize) {
        self.sweep_every.store(n, Ordering::Relaxed);
    }

    /// The keys evicted so far.
    #[cfg(test)]
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// The limited scopes of a call, `always` first, then `keys`, without duplicates: appended to
    /// `scopes`, with their counters in `counters`.
    ///
    /// # Errors
    /// The first key that is unknown when unknown keys are rejected.
    pub(crate) fn resolve_into(
        &self,
        keys: &Scopes,
        scopes: &mut SmallVec<[ScopeRef; 4]>,
        counters: &mut SmallVec<[Arc<ScopeCounters>; 4]>,
    ) -> Result<(), ScopeKey> {
        let mut missing: SmallVec<[&ScopeKey; 4]> = SmallVec::new();
        let mut push = |inner: &Inner, id: ScopeId| {
            if let Some(e) = inner.entries[id as usize].as_ref() {
                if !scopes.iter().any(|s| s.id == id) {
                    scopes.push(Self::scope_ref(e, id));
                    counters.push(e.counters.clone());
                }
            }
        };
        {
            let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
            for key in self.always.iter().chain(keys.iter()) {
                match inner.by_key.get(key) {
                    Some(&id) => push(&inner, id),
                    None => missing.push(key),
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        for key in missing {
            let id = match inner.by_key.get(key) {
                Some(&id) => id,
                None => {
                    let kind = key.kind();
                    let found = inner
                        .patterns
                        .iter()
                        .position(|p| p.kind.is_some() && p.kind.as_deref() == kind)
                        .or_else(|| inner.patterns.iter().position(|p| p.kind.is_none()));
                    match found {
                        Some(p) => {
                            let (generation, limits) = (
                                inner.patterns[p].generation,
                                inner.patterns[p].limits.clone(),
                            );
                            Self::push(&mut inner, key.clone(), generation, limits, Some(p))
                        }
                        None if self.unknown == UnknownScopes::Reject => return Err(key.clone()),
                        None => continue,
                    }
                }
            };
            push(&inner, id);
        }
        let every = self.sweep_every.load(Ordering::Relaxed);
        if inner.added >= every.max(inner.instantiated / 4) {
            self.sweep_due.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    fn scope_ref(e: &Entry, id: ScopeId) -> ScopeRef {
        ScopeRef {
            id,
            key: e.key.clone(),
            generation: e.generation,
            limits: e.limits.clone(),
        }
    }

    fn resolved(inner: &Inner, id: ScopeId) -> Option<Resolved> {
        let e = inner.entries.get(id as usize)?.as_ref()?;
        Some(Resolved {
            scope: Self::scope_ref(e, id),
            counters: e.counters.clone(),
        })
    }

    /// The keys charged on every call.
    pub(crate) fn always(&self) -> &[ScopeKey] {
        &self.always
    }

    /// Holds the registry's lock for writing until the returned guard drops.
    #[cfg(test)]
    pub(crate) fn hold_lock(&self) -> impl Sized + '_ {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Increases with every change of limits.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Brings the limits of already resolved scopes up to date.
    pub(crate) fn refresh(&self, scopes: &mut [ScopeRef]) {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        // The scopes of a lane are never evicted while it lives.
        for s in scopes {
            let Some(e) = inner.entries[s.id as usize].as_ref() else {
                continue;
            };
            if e.generation != s.generation {
                s.generation = e.generation;
                s.limits = e.limits.clone();
            }
        }
    }

    /// Every known scope, sorted by key.
    pub(crate) fn all(&self) -> Vec<Resolved> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<Resolved> = (0..inner.entries.len() as ScopeId)
            .filter_map(|id| Self::resolved(&inner, id))
            .collect();
        all.sort_by(|a, b| a.scope.key.cmp(&b.scope.key));
        all
    }

    /// The scope of an exact key, if known.
    pub(crate) fn get(&self, key: &str) -> Option<Resolved> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let id = *inner.by_key.get(key)?;
        Self::resolved(&inner, id)
    }
}
