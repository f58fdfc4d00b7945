//! The scope registry: which limits each scope key has, including keys instantiated from a
//! `kind:*` or `*` pattern, and changes to them at run time.

use crate::stats::ScopeCounters;
use crate::{ConfigError, ScopeKey, ScopeLimits, Scopes};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tollgate_core::{CompiledScope, Rule};

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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
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
    counters: Arc<ScopeCounters>,
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
    entries: Vec<Entry>,
    patterns: Vec<Pattern>,
    generation: u64,
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
    ) -> Result<Self, ConfigError> {
        let reg = Registry {
            inner: RwLock::new(Inner::default()),
            generation: AtomicU64::new(0),
            unknown,
            always,
            headroom,
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
                for e in inner.entries.iter_mut().filter(|e| e.pattern == Some(idx)) {
                    e.generation = generation;
                    e.limits = compiled.clone();
                }
            }
            None => match inner.by_key.get(&key).copied() {
                Some(id) => {
                    let e = &mut inner.entries[id as usize];
                    e.generation = generation;
                    e.limits = compiled;
                    e.pattern = None;
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
        let id = inner.entries.len() as ScopeId;
        inner.entries.push(Entry {
            key: key.clone(),
            generation,
            limits,
            pattern,
            counters: Arc::default(),
        });
        inner.by_key.insert(key, id);
        id
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
            if !scopes.iter().any(|s| s.id == id) {
                scopes.push(Self::scope_ref(inner, id));
                counters.push(inner.entries[id as usize].counters.clone());
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
        Ok(())
    }

    fn scope_ref(inner: &Inner, id: ScopeId) -> ScopeRef {
        let e = &inner.entries[id as usize];
        ScopeRef {
            id,
            key: e.key.clone(),
            generation: e.generation,
            limits: e.limits.clone(),
        }
    }

    fn resolved(inner: &Inner, id: ScopeId) -> Resolved {
        Resolved {
            scope: Self::scope_ref(inner, id),
            counters: inner.entries[id as usize].counters.clone(),
        }
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
        for s in scopes {
            let e = &inner.entries[s.id as usize];
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
            .map(|id| Self::resolved(&inner, id))
            .collect();
        all.sort_by(|a, b| a.scope.key.cmp(&b.scope.key));
        all
    }

    /// The scope of an exact key, if known.
    pub(crate) fn get(&self, key: &str) -> Option<Resolved> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.by_key.get(key).map(|&id| Self::resolved(&inner, id))
    }
}
