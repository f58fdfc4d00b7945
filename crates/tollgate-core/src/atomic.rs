//! [`AtomicScopeState`]: the state of one scope in atomics, so that calls in many threads are
//! admitted, settled and released by compare-and-swap, without a lock: [`admit_atomic`],
//! [`settle_atomic`], [`release_atomic`]. The rules are those of [`admit`](crate::admit),
//! [`settle`](crate::settle) and [`release`](crate::release), to the nanosecond. How the
//! admission stays all or nothing without a lock, and what happens when limits change: see
//! [`AtomicScopeState`].

use crate::{Admission, CompiledScope, Cost, Nanos, NeverFits, ScopeState};
use smallvec::SmallVec;
use std::sync::atomic::{AtomicU64, Ordering};

/// The value of every word of a retired state.
const RETIRED: u64 = u64::MAX;
/// The latest time a live word holds (one below [`RETIRED`], about 584 years).
const LATEST: u64 = RETIRED - 1;

/// The state of one scope ([`ScopeState`]) in atomics.
///
/// # All or nothing without a lock
/// [`admit_atomic`] first checks every bucket, cooldown and concurrency count of every scope
/// without writing; a refusal there changes nothing, as in [`admit`](crate::admit). Otherwise it
/// charges the buckets one by one and then takes the concurrency counts, each by compare-and-swap.
/// When another thread took the capacity in between, it takes back what it charged and starts
/// over. Between a charge and its taking back, another call may see the charge and be refused:
/// it is told to wait at most the time of this call's cost (a concurrency count: until the next
/// release); nothing is ever admitted over a limit.
///
/// # Retiring a state
/// When a scope's limits change, its state is carried over to the new limits
/// ([`CompiledScope::carry_over`]). [`AtomicScopeState::retire`] freezes the old state and returns
/// its final value, which includes every charge made before the freeze; after it, every operation
/// on the old state fails with [`Retired`] and says which charges of the call it could not take
/// back there ([`Stranded`]): they live on in the successor, where the owner of the states applies
/// them ([`AtomicScopeState::apply`]).
///
/// # Example
/// ```
/// use tollgate_core::{admit_atomic, settle_atomic, release_atomic, Admission, AtomicScopeState};
/// use tollgate_core::{Cost, Dimension, Limit, Nanos, ScopeLimits};
///
/// let scope = ScopeLimits::new().limit(Limit::per_minute(Dimension::OutputTokens, 10_000)).compile()?;
/// let state = AtomicScopeState::new(&scope.new_state());
/// let now = Nanos::ZERO;
/// let estimate = Cost::request().with_output_tokens(8_000);
/// assert_eq!(admit_atomic(now, estimate, &[(&scope, &state)]), Ok(Admission::Admitted));
/// // The call used 1,000 output tokens: 7,000 go back, and its concurrency count.
/// let used = Cost::request().with_output_tokens(1_000);
/// assert_eq!(settle_atomic(now, estimate, used, &scope, &state), Ok(()));
/// assert_eq!(release_atomic(&state), Ok(()));
/// let snapshot = state.load().expect("not retired");
/// assert_eq!(scope.available(&snapshot, now), vec![9_000.0]);
/// assert_eq!(snapshot.in_flight, 0);
/// # Ok::<(), tollgate_core::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct AtomicScopeState {
    tats: Box<[AtomicU64]>,
    in_flight: AtomicU64,
    cooldown_until: AtomicU64,
}

/// An operation met a retired state (see [`AtomicScopeState`]). What it could not take back
/// there is in `stranded`; everything else it did was taken back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retired {
    /// The charges and counts that the successor of a retired state holds on behalf of the call
    /// and must give back (or, for debt, take).
    pub stranded: Vec<Stranded>,
}

/// One change the owner of a retired state must make to its successor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stranded {
    /// Give `units` back to the bucket of `scope` that counts what bucket `bucket` of the retired
    /// state counted (same dimension and period).
    Refund {
        /// The index of the scope, in the slice the operation was given.
        scope: usize,
        /// The index of the bucket in the retired state's limits.
        bucket: usize,
        /// The units to give back.
        units: u64,
    },
    /// Charge `units` to that bucket (the debt of a call that cost more than its estimate).
    Debt {
        /// The index of the scope, in the slice the operation was given.
        scope: usize,
        /// The index of the bucket in the retired state's limits.
        bucket: usize,
        /// The units to charge.
        units: u64,
    },
    /// Give back one concurrency count of `scope`.
    Release {
        /// The index of the scope, in the slice the operation was given.
        scope: usize,
    },
}

impl Stranded {
    /// The index of the scope the change is for.
    pub fn scope(&self) -> usize {
        match *self {
            Stranded::Refund { scope, .. }
            | Stranded::Debt { scope, .. }
            | Stranded::Release { scope } => scope,
        }
    }
}

/// One scope of a call, as [`admit_atomic`] takes it: its limits and its state. A pair
/// `(&CompiledScope, &AtomicScopeState)` is one; a store implements it for its own cell of a
/// scope, so that a call reaches its scopes without collecting pairs.
pub trait ScopeCell {
    /// The scope's limits and its state.
    fn parts(&self) -> (&CompiledScope, &AtomicScopeState);
}

impl ScopeCell for (&CompiledScope, &AtomicScopeState) {
    #[inline]
    fn parts(&self) -> (&CompiledScope, &AtomicScopeState) {
        (self.0, self.1)
    }
}

impl<T: ScopeCell + ?Sized> ScopeCell for std::sync::Arc<T> {
    #[inline]
    fn parts(&self) -> (&CompiledScope, &AtomicScopeState) {
        (**self).parts()
    }
}

impl AtomicScopeState {
    /// A live state holding `state`.
    pub fn new(state: &ScopeState) -> Self {
        let live = |n: Nanos| AtomicU64::new(n.as_u64().min(LATEST));
        AtomicScopeState {
            tats: state.tats.iter().map(|t| live(*t)).collect(),
            in_flight: AtomicU64::new(state.in_flight.min(LATEST)),
            cooldown_until: live(state.cooldown_until),
        }
    }

    /// The state now; `None` once retired. Each word is read atomically, the whole not at once.
    pub fn load(&self) -> Option<ScopeState> {
        let word = |w: &AtomicU64| Some(w.load(Ordering::Acquire)).filter(|v| *v != RETIRED);
        Some(ScopeState {
            tats: self
                .tats
                .iter()
                .map(|t| word(t).map(Nanos::new))
                .collect::<Option<_>>()?,
            in_flight: word(&self.in_flight)?,
            cooldown_until: Nanos::new(word(&self.cooldown_until)?),
        })
    }

    /// Whether the state was retired (once [`retire`](Self::retire) has returned, always).
    pub fn is_retired(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == RETIRED
    }

    /// Freezes the state and returns its final value: every operation that changed a word before
    /// it is in it, every later one fails with [`Retired`]. A second call returns the same value
    /// with every word at its latest time; call it once.
    pub fn retire(&self) -> ScopeState {
        let freeze = |w: &AtomicU64| w.swap(RETIRED, Ordering::AcqRel).min(LATEST);
        ScopeState {
            tats: self.tats.iter().map(|t| Nanos::new(freeze(t))).collect(),
            in_flight: freeze(&self.in_flight),
            cooldown_until: Nanos::new(freeze(&self.cooldown_until)),
        }
    }

    /// Pauses admissions until `until` (a later end wins; cooldowns never add up).
    ///
    /// # Errors
    /// [`Retired`] (with nothing stranded): apply it to the successor.
    pub fn cool_down(&self, until: Nanos) -> Result<(), Retired> {
        update(&self.cooldown_until, |c| {
            Some(c.max(until.as_u64().min(LATEST)))
        })
        .map(drop)
        .map_err(|_| Retired::default())
    }

    /// Lowers the bucket of `dimension` as [`CompiledScope::sync_remaining`] does.
    ///
    /// # Errors
    /// [`Retired`] (with nothing stranded): apply it to the successor.
    pub fn sync_remaining(
        &self,
        limits: &CompiledScope,
        now: Nanos,
        dimension: crate::Dimension,
        remaining: u64,
    ) -> Result<(), Retired> {
        let Some(i) = limits.bucket_of(dimension) else {
            return Ok(());
        };
        let g = &limits.gcras()[i];
        update(&self.tats[i], |t| {
            Some(live(g.lowered_to(Nanos::new(t), now, remaining)))
        })
        .map(drop)
        .map_err(|_| Retired::default())
    }

    /// Makes a change that a retired predecessor of this state (with limits `old`) stranded;
    /// `limits` are this state's. A bucket of the predecessor that these limits no longer have
    /// has nothing to give back.
    ///
    /// # Errors
    /// [`Retired`] when this state was retired too: apply it to its successor.
    pub fn apply(
        &self,
        limits: &CompiledScope,
        old: &CompiledScope,
        now: Nanos,
        change: Stranded,
    ) -> Result<(), Retired> {
        let retired = |_| Retired {
            stranded: vec![change],
        };
        let (bucket, units, debt) = match change {
            Stranded::Release { .. } => return release_word(&self.in_flight).map_err(retired),
            Stranded::Refund { bucket, units, .. } => (bucket, units, false),
            Stranded::Debt { bucket, units, .. } => (bucket, units, true),
        };
        let Some(was) = old.gcras().get(bucket) else {
            return Ok(());
        };
        let Some((g, tat)) = limits
            .gcras()
            .iter()
            .zip(self.tats.iter())
            .find(|(g, _)| g.dimension() == was.dimension() && g.period() == was.period())
        else {
            return Ok(());
        };
        update(tat, |t| {
            let t = Nanos::new(t);
            Some(live(if debt {
                g.charged(t, now, units)
            } else {
                g.refunded(t, now, units)
            }))
        })
        .map(drop)
        .map_err(retired)
    }
}

/// A time as a live word.
fn live(t: Nanos) -> u64 {
    t.as_u64().min(LATEST)
}

/// Sets `word` to `f(value)` by compare-and-swap (`None`: leaves it). Returns the value it acted
/// on, or `Err(())` when the word is retired.
#[inline(always)]
fn update(word: &AtomicU64, mut f: impl FnMut(u64) -> Option<u64>) -> Result<u64, ()> {
    let mut v = word.load(Ordering::Acquire);
    loop {
        if v == RETIRED {
            return Err(());
        }
        let Some(new) = f(v) else {
            return Ok(v);
        };
        match word.compare_exchange_weak(v, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(v),
            Err(seen) => v = seen,
        }
    }
}

/// Gives back one count of `word` (never below zero).
#[inline]
fn release_word(word: &AtomicU64) -> Result<(), ()> {
    update(word, |f| Some(f.saturating_sub(1))).map(drop)
}

/// Admits a call of `cost` at `now` in every one of `scopes`, or in none, without a lock (see
/// [`AtomicScopeState`]). The same answers as [`admit`](crate::admit) for the same states.
///
/// # Errors
/// [`Retired`] when a state was retired: nothing of the call stays charged but the `stranded`
/// changes, which the owner applies to the successors before it tries again there.
#[inline]
pub fn admit_atomic(
    now: Nanos,
    cost: Cost,
    scopes: &[impl ScopeCell],
) -> Result<Admission, Retired> {
    // Each bucket's word is read once, checked, and charged by a compare-and-swap from the value
    // read. When another call changed a word in between, what was charged is taken back and the
    // call is checked again from the start.
    loop {
        let mut read = Read::new();
        let checked = match check_once(now, cost, scopes, &mut read) {
            Ok(checked) => checked,
            Err(done) => break done,
        };
        if let Some(wait) = checked {
            break Ok(wait);
        }
        match charge_once(now, cost, scopes, &read) {
            Ok(true) => break Ok(Admission::Admitted),
            Ok(false) => continue,
            Err(retired) => break Err(retired),
        }
    }
}

/// The words [`admit_atomic`] read, bucket by bucket, scope after scope: on the stack for up to
/// 16 buckets in all (a few scopes of a few limits each).
type Read = SmallVec<[u64; 16]>;

/// The check of [`admit_atomic`]: reads every word once into `read` (bucket by bucket, scope
/// after scope); `Some` refusal, `None` when the call fits, or the answer that ends it (never
/// fits, or a retired state).
#[inline(always)]
fn check_once(
    now: Nanos,
    cost: Cost,
    scopes: &[impl ScopeCell],
    read: &mut Read,
) -> Result<Option<Admission>, Result<Admission, Retired>> {
    let mut wait = Nanos::ZERO;
    let mut concurrency_blocked = false;
    let mut blocked = 0u64;
    for (i, (limits, state)) in scopes.iter().map(ScopeCell::parts).enumerate() {
        for (g, tat) in limits.gcras().iter().zip(state.tats.iter()) {
            let n = cost.amount(g.dimension());
            if n > g.burst() {
                return Err(Ok(Admission::Never(NeverFits {
                    scope: i,
                    dimension: g.dimension(),
                    requested: n,
                    capacity: g.burst(),
                })));
            }
            let t = tat.load(Ordering::Acquire);
            if t == RETIRED {
                return Err(Err(Retired::default()));
            }
            read.push(t);
            let w = g.wait(Nanos::new(t), now, n);
            if w > Nanos::ZERO {
                blocked |= 1 << (i % 64);
                wait = wait.max(w);
            }
        }
        let cooldown = state.cooldown_until.load(Ordering::Acquire);
        if cooldown == RETIRED {
            return Err(Err(Retired::default()));
        }
        if cooldown > now.as_u64() {
            blocked |= 1 << (i % 64);
            wait = wait.max(Nanos::new(cooldown) - now);
        }
        if let Some(max) = limits.concurrency() {
            match state.in_flight.load(Ordering::Acquire) {
                RETIRED => return Err(Err(Retired::default())),
                f if f >= max => {
                    blocked |= 1 << (i % 64);
                    concurrency_blocked = true;
                }
                _ => {}
            }
        }
    }
    Ok((blocked != 0).then(|| Admission::Wait {
        wait: (!concurrency_blocked).then_some(wait),
        blocked,
    }))
}

/// The charge of [`admit_atomic`]: every bucket by compare-and-swap from the value in `read`,
/// then every concurrency count. `Ok(false)` when another call came in between (everything taken
/// back: check again), `Err` when a state was retired.
#[inline(always)]
fn charge_once(
    now: Nanos,
    cost: Cost,
    scopes: &[impl ScopeCell],
    read: &Read,
) -> Result<bool, Retired> {
    let mut read = read.iter();
    for (i, (limits, state)) in scopes.iter().map(ScopeCell::parts).enumerate() {
        for (j, (g, tat)) in limits.gcras().iter().zip(state.tats.iter()).enumerate() {
            let Some(&seen) = read.next() else {
                return Ok(false);
            };
            let charged = live(g.charged(Nanos::new(seen), now, cost.amount(g.dimension())));
            if tat
                .compare_exchange(seen, charged, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                let stranded = undo(cost, scopes, i, j, 0);
                return if stranded.is_empty() {
                    Ok(false)
                } else {
                    Err(Retired { stranded })
                };
            }
        }
    }
    for (i, (limits, state)) in scopes.iter().map(ScopeCell::parts).enumerate() {
        let max = limits.concurrency().unwrap_or(LATEST);
        let mut full = false;
        let taken = update(&state.in_flight, |f| {
            full = f >= max;
            (!full).then_some(f + 1)
        });
        if taken.is_err() || full {
            let stranded = undo(cost, scopes, scopes.len(), 0, i);
            return match (taken, stranded.is_empty()) {
                (Ok(_), true) => Ok(false),
                _ => Err(Retired { stranded }),
            };
        }
    }
    Ok(true)
}

/// Takes back a partial admission: the charges of every bucket before bucket `bucket` of scope
/// `scope` (all of them when `scope` is past the end) and the counts of the scopes before
/// `counted`. Returns what retired states keep.
#[cold]
fn undo(
    cost: Cost,
    scopes: &[impl ScopeCell],
    scope: usize,
    bucket: usize,
    counted: usize,
) -> Vec<Stranded> {
    let mut stranded = Vec::new();
    for (i, (limits, state)) in scopes
        .iter()
        .map(ScopeCell::parts)
        .enumerate()
        .take(scope + 1)
    {
        let upto = if i < scope { usize::MAX } else { bucket };
        for (j, (g, tat)) in limits.gcras().iter().zip(state.tats.iter()).enumerate() {
            if j >= upto {
                break;
            }
            let units = cost.amount(g.dimension());
            // The exact charge comes off: what others charged since stays charged.
            let ns = g.cost_ns(units);
            if update(tat, |t| Some(t.saturating_sub(ns))).is_err() {
                stranded.push(Stranded::Refund {
                    scope: i,
                    bucket: j,
                    units,
                });
            }
        }
    }
    for (i, (_, state)) in scopes
        .iter()
        .map(ScopeCell::parts)
        .enumerate()
        .take(counted)
    {
        if release_word(&state.in_flight).is_err() {
            stranded.push(Stranded::Release { scope: i });
        }
    }
    stranded
}

/// Settles one scope of a call admitted with `charged` now that its real cost `actual` is known,
/// as [`settle`](crate::settle) does. Does not release the concurrency count
/// ([`release_atomic`]).
///
/// # Errors
/// [`Retired`] with the refunds and debts its successor must take (scope index 0).
#[inline]
pub fn settle_atomic(
    now: Nanos,
    charged: Cost,
    actual: Cost,
    limits: &CompiledScope,
    state: &AtomicScopeState,
) -> Result<(), Retired> {
    if actual == charged {
        return Ok(());
    }
    settle_buckets(now, charged, actual, limits, state)
}

/// The part of [`settle_atomic`] for a call whose cost differed from its charge.
fn settle_buckets(
    now: Nanos,
    charged: Cost,
    actual: Cost,
    limits: &CompiledScope,
    state: &AtomicScopeState,
) -> Result<(), Retired> {
    let mut stranded = Vec::new();
    for (j, (g, tat)) in limits.gcras().iter().zip(state.tats.iter()).enumerate() {
        let (c, a) = (charged.amount(g.dimension()), actual.amount(g.dimension()));
        if a == c {
            continue;
        }
        let done = update(tat, |t| {
            let t = Nanos::new(t);
            Some(live(if a > c {
                g.charged(t, now, a - c)
            } else {
                g.refunded(t, now, c - a)
            }))
        });
        if done.is_err() {
            stranded.push(if a > c {
                Stranded::Debt {
                    scope: 0,
                    bucket: j,
                    units: a - c,
                }
            } else {
                Stranded::Refund {
                    scope: 0,
                    bucket: j,
                    units: c - a,
                }
            });
        }
    }
    if stranded.is_empty() {
        Ok(())
    } else {
        Err(Retired { stranded })
    }
}

/// Gives back the concurrency count a call took in [`admit_atomic`], as
/// [`release`](crate::release) does.
///
/// # Errors
/// [`Retired`] with the release its successor must make (scope index 0).
#[inline]
pub fn release_atomic(state: &AtomicScopeState) -> Result<(), Retired> {
    release_word(&state.in_flight).map_err(|_| Retired {
        stranded: vec![Stranded::Release { scope: 0 }],
    })
}
