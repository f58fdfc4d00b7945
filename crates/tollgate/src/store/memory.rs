//! [`MemoryStore`]: the buckets in this process, in atomics.
//!
//! Each scope's state is an [`AtomicScopeState`] in a cell; a call admitted through its scopes'
//! [`MemoryHandle`] takes no lock: it charges the buckets and takes the concurrency counts by
//! compare-and-swap ([`admit_atomic`]), and its settle gives back the same way. The mutex guards
//! only the table of cells: it is taken to make a handle, to carry a scope's state over to new
//! limits (the old cell is retired and the calls that meet it go through the table), for the
//! calls of a store used without handles, and for cooldowns, header syncs and stats.

use super::{Acquire, Decision, ReportedSince, ScopeState, Settlement, Store, StoreError};
use crate::feedback::ProviderLimit;
use crate::registry::ScopeId;
use crate::ScopeRef;
use smallvec::SmallVec;
use std::future::{ready, Ready};
use std::sync::{Arc, Mutex, MutexGuard};
use tollgate_core::{
    admit_atomic, release_atomic, settle_atomic, Admission, AtomicScopeState, CompiledScope, Cost,
    Dimension, Nanos, Retired, ScopeCell, Stranded,
};

/// The default store: every scope's buckets in this process. Admission and settle through a
/// [`MemoryHandle`] are lock-free; no `.await`, and no allocation once a scope has been seen.
#[derive(Debug, Default)]
pub struct MemoryStore {
    cells: Mutex<Vec<Option<Arc<Cell>>>>,
}

/// One scope's state under one generation of its limits.
#[derive(Debug)]
struct Cell {
    id: ScopeId,
    generation: u64,
    limits: Arc<CompiledScope>,
    state: AtomicScopeState,
}

/// The cells of one set of scopes, in the order of the scopes (see [`Store::Handle`]).
#[derive(Debug, Default)]
pub struct MemoryHandle {
    cells: SmallVec<[Arc<Cell>; 4]>,
}

/// What an admission in a [`MemoryStore`] holds: the scopes and the charged estimate.
#[derive(Debug)]
pub struct MemoryReservation {
    scopes: SmallVec<[ScopeId; 4]>,
    charged: Cost,
}

impl ScopeCell for Cell {
    #[inline]
    fn parts(&self) -> (&CompiledScope, &AtomicScopeState) {
        (&self.limits, &self.state)
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// Header sync of `scope` under one lock: each report applied as read at `now`, but a
    /// report of requests, with `since`, as of the reported call's admission
    /// ([`Store::sync_reported_since`]).
    fn sync(
        &self,
        scope: &ScopeRef,
        now: Nanos,
        since: Option<ReportedSince>,
        reported: &[ProviderLimit],
    ) {
        let mut table = self.table();
        let cell = Self::current(&mut table, scope, now);
        for l in reported {
            let bucket = cell.limits.bucket_of(l.dimension);
            let (at, remaining) = match (since, l.dimension, bucket) {
                (Some(since), Dimension::Requests, Some(i)) => {
                    let g = &cell.limits.gcras()[i];
                    // A whole burst available at the bound: full no earlier than it.
                    (super::reported_tat(g, since, now, l), g.burst())
                }
                _ => (now, l.remaining),
            };
            // Under the lock: not retired.
            let synced = cell
                .state
                .sync_remaining(&cell.limits, at, l.dimension, remaining);
            debug_assert!(synced.is_ok(), "a current cell is never retired");
        }
    }

    fn table(&self) -> MutexGuard<'_, Vec<Option<Arc<Cell>>>> {
        self.cells.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many scopes the store keeps a state of (idle keys of patterns are evicted: see
    /// [`ThrottleBuilder::idle_eviction`](crate::ThrottleBuilder::idle_eviction)).
    ///
    /// ```
    /// use tollgate::MemoryStore;
    /// assert_eq!(MemoryStore::new().kept(), 0);
    /// ```
    pub fn kept(&self) -> usize {
        self.table().iter().filter(|c| c.is_some()).count()
    }

    /// Holds the table's lock until the returned guard drops.
    #[cfg(test)]
    pub(crate) fn hold_lock(&self) -> impl Sized + '_ {
        self.table()
    }

    /// The current cell of `scope`, brought up to date with its limits: created, or (for newer
    /// limits) a successor that carries the state over, the old cell being retired.
    fn current(table: &mut Vec<Option<Arc<Cell>>>, scope: &ScopeRef, now: Nanos) -> Arc<Cell> {
        let i = scope.id as usize;
        if table.len() <= i {
            table.resize_with(i + 1, || None);
        }
        let state = match &table[i] {
            Some(cell) if cell.generation >= scope.generation => return cell.clone(),
            Some(old) => scope
                .limits
                .carry_over(&old.limits, &old.state.retire(), now),
            None => scope.limits.new_state(),
        };
        let cell = Arc::new(Cell {
            id: scope.id,
            generation: scope.generation,
            limits: scope.limits.clone(),
            state: AtomicScopeState::new(&state),
        });
        table[i] = Some(cell.clone());
        cell
    }

    /// Makes the changes that the retired cells `cells` (in the order of the call's scopes) kept
    /// for a call, in the current cells of their scopes.
    fn forward(
        table: &[Option<Arc<Cell>>],
        cells: &[Arc<Cell>],
        now: Nanos,
        stranded: &[Stranded],
    ) {
        for change in stranded {
            let Some(old) = cells.get(change.scope()) else {
                continue;
            };
            if let Some(Some(current)) = table.get(old.id as usize) {
                // The current cell of a scope is retired only under the table's lock, held here.
                let applied = current
                    .state
                    .apply(&current.limits, &old.limits, now, *change);
                debug_assert!(applied.is_ok(), "a current cell is never retired");
            }
        }
    }

    /// Admits `call` under the table's lock, in the current cells of its scopes.
    fn acquire_locked(&self, call: &Acquire<'_>) -> Admission {
        let mut table = self.table();
        let cells: SmallVec<[Arc<Cell>; 4]> = call
            .scopes
            .iter()
            .map(|s| Self::current(&mut table, s, call.now))
            .collect();
        let admission = admit_atomic(call.now, call.cost, &cells);
        match admission {
            Ok(admission) => admission,
            // Cells are retired only under the lock, held here, so this does not happen; were it
            // to, the call would try again at once.
            Err(Retired { stranded }) => {
                Self::forward(&table, &cells, call.now, &stranded);
                Admission::Wait {
                    wait: Some(Nanos::ZERO),
                    blocked: 0,
                }
            }
        }
    }

    fn decision(call: &Acquire<'_>, admission: Admission) -> Decision<MemoryReservation> {
        match admission {
            Admission::Admitted => Decision::Admitted(MemoryReservation {
                scopes: match call.scopes {
                    [one] => smallvec::smallvec![one.id],
                    many => many.iter().map(|s| s.id).collect(),
                },
                charged: call.cost,
            }),
            Admission::Wait { wait, blocked } => Decision::Wait {
                wait: wait.map(Nanos::as_duration),
                blocked,
            },
            Admission::Never(n) => Decision::Never(n),
        }
    }

    /// Admits `call` through the cells of `handle` (see [`Store::acquire_with`]).
    #[inline]
    fn decide(&self, handle: &MemoryHandle, call: &Acquire<'_>) -> Decision<MemoryReservation> {
        let fits = handle.cells.len() == call.scopes.len()
            && handle
                .cells
                .iter()
                .zip(call.scopes)
                .all(|(c, s)| c.id == s.id && c.generation >= s.generation);
        if !fits {
            return Self::decision(call, self.acquire_locked(call));
        }
        let answer = admit_atomic(call.now, call.cost, &handle.cells);
        let admission = match answer {
            Ok(admission) => admission,
            Err(Retired { stranded }) => {
                // Limits changed: what the retired cells kept goes to their successors, and the
                // call tries again in the current cells.
                Self::forward(&self.table(), &handle.cells, call.now, &stranded);
                self.acquire_locked(call)
            }
        };
        Self::decision(call, admission)
    }

    /// Settles and releases one cell; what a retired cell kept goes through the table.
    #[inline]
    fn settle_cell(&self, cell: &Arc<Cell>, charged: Cost, settlement: Settlement) {
        let settled = settle_atomic(
            settlement.now,
            charged,
            settlement.actual,
            &cell.limits,
            &cell.state,
        );
        let released = release_atomic(&cell.state);
        if settled.is_err() || released.is_err() {
            let stranded: Vec<Stranded> = [settled, released]
                .into_iter()
                .filter_map(Result::err)
                .flat_map(|r| r.stranded)
                .collect();
            Self::forward(
                &self.table(),
                std::slice::from_ref(cell),
                settlement.now,
                &stranded,
            );
        }
    }
}

impl Store for MemoryStore {
    type Reservation = MemoryReservation;
    type Handle = MemoryHandle;
    type AcquireFuture = Ready<Result<Decision<MemoryReservation>, StoreError>>;

    fn acquire(&self, call: &Acquire<'_>) -> Self::AcquireFuture {
        ready(Ok(Self::decision(call, self.acquire_locked(call))))
    }

    fn handle(&self, scopes: &[ScopeRef], now: Nanos) -> MemoryHandle {
        let mut table = self.table();
        MemoryHandle {
            cells: scopes
                .iter()
                .map(|s| Self::current(&mut table, s, now))
                .collect(),
        }
    }

    fn acquire_with(&self, handle: &MemoryHandle, call: &Acquire<'_>) -> Self::AcquireFuture {
        ready(Ok(self.decide(handle, call)))
    }

    #[inline]
    fn acquire_now(
        &self,
        handle: &MemoryHandle,
        call: &Acquire<'_>,
    ) -> Option<Result<Decision<MemoryReservation>, StoreError>> {
        Some(Ok(self.decide(handle, call)))
    }

    fn settle(&self, reservation: MemoryReservation, settlement: Settlement) {
        // The current cells of the call's scopes, settled as through a handle (out of the lock,
        // which a cell retired meanwhile takes to forward what it kept).
        let cells: SmallVec<[Arc<Cell>; 4]> = {
            let table = self.table();
            reservation
                .scopes
                .iter()
                .filter_map(|id| table.get(*id as usize)?.clone())
                .collect()
        };
        for cell in &cells {
            self.settle_cell(cell, reservation.charged, settlement);
        }
    }

    fn settle_with(
        &self,
        handle: &MemoryHandle,
        reservation: MemoryReservation,
        settlement: Settlement,
    ) {
        if let ([cell], [id]) = (&handle.cells[..], &reservation.scopes[..]) {
            if cell.id == *id {
                return self.settle_cell(cell, reservation.charged, settlement);
            }
        }
        let same = handle.cells.len() == reservation.scopes.len()
            && handle
                .cells
                .iter()
                .zip(&reservation.scopes)
                .all(|(c, id)| c.id == *id);
        if !same {
            return self.settle(reservation, settlement);
        }
        for cell in &handle.cells {
            self.settle_cell(cell, reservation.charged, settlement);
        }
    }

    fn cool_down(&self, scope: &ScopeRef, now: Nanos, until: Nanos) {
        let mut table = self.table();
        let cooled = Self::current(&mut table, scope, now).state.cool_down(until);
        debug_assert!(cooled.is_ok(), "a current cell is never retired");
    }

    fn sync_remaining(&self, scope: &ScopeRef, now: Nanos, dimension: Dimension, remaining: u64) {
        let limit = ProviderLimit {
            dimension,
            limit: None,
            remaining,
            reset_in: None,
        };
        self.sync_reported(scope, now, &[limit]);
    }

    fn sync_reported(&self, scope: &ScopeRef, now: Nanos, reported: &[ProviderLimit]) {
        self.sync(scope, now, None, reported);
    }

    fn sync_reported_since(
        &self,
        scope: &ScopeRef,
        now: Nanos,
        since: ReportedSince,
        reported: &[ProviderLimit],
    ) {
        self.sync(scope, now, Some(since), reported);
    }

    fn evict(&self, scope: &ScopeRef, since: Nanos) -> bool {
        let mut table = self.table();
        let Some(slot) = table.get_mut(scope.id as usize) else {
            return true;
        };
        let Some(cell) = slot else {
            return true;
        };
        // A handle reaches the cell without the lock, held here: none may hold it. (Handles are
        // made under the lock, so none can appear meanwhile.)
        if Arc::strong_count(cell) > 1 {
            return false;
        }
        // Pairs with the release of the last handle: its holder's changes to the state are seen.
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        // A current cell is never retired, so `load` answers.
        if !cell.state.load().is_some_and(|s| s.is_idle_since(since)) {
            return false;
        }
        *slot = None;
        true
    }

    fn state(&self, scope: &ScopeRef, now: Nanos) -> Option<ScopeState> {
        let table = self.table();
        let cell = table.get(scope.id as usize)?.as_ref()?;
        let state = cell.state.load()?;
        Some(ScopeState {
            available: cell.limits.available(&state, now),
            in_flight: state.in_flight,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScopeKey;
    use tollgate_core::{Limit, ScopeLimits};

    fn scope(generation: u64, per_minute: u64, concurrency: u32) -> ScopeRef {
        let limits = ScopeLimits::new()
            .limit(Limit::per_minute(Dimension::Requests, per_minute))
            .limit(Limit::per_minute(Dimension::InputTokens, 100 * per_minute))
            .concurrency(concurrency)
            .compile()
            .expect("valid");
        ScopeRef {
            id: 0,
            key: ScopeKey::from("global"),
            generation,
            limits: Arc::new(limits),
        }
    }

    fn admitted(d: Decision<MemoryReservation>) -> MemoryReservation {
        match d {
            Decision::Admitted(r) => r,
            other => panic!("not admitted: {other:?}"),
        }
    }

    fn acquire_with(
        store: &MemoryStore,
        handle: &MemoryHandle,
        scopes: &[ScopeRef],
        cost: Cost,
    ) -> Decision<MemoryReservation> {
        let call = Acquire {
            now: Nanos::ZERO,
            scopes,
            cost,
        };
        store
            .acquire_with(handle, &call)
            .into_inner()
            .expect("in memory")
    }

    /// A call admitted in a cell whose limits then change settles into the cell that carried its
    /// state over: its concurrency count and its refund are not lost with the old cell.
    #[test]
    fn a_call_admitted_before_a_limit_change_settles_into_the_new_limits() {
        let store = MemoryStore::new();
        let old = [scope(1, 60, 2)];
        let handle = store.handle(&old, Nanos::ZERO);
        let cost = Cost::request().with_input_tokens(1_000);
        let r = admitted(acquire_with(&store, &handle, &old, cost));
        // New limits: the old cell is retired, its state carried over.
        let new = [scope(2, 120, 2)];
        let new_handle = store.handle(&new, Nanos::ZERO);
        let state = store.state(&new[0], Nanos::ZERO).expect("seen");
        assert_eq!(state.in_flight, 1);
        assert_eq!(state.available, vec![119.0, 11_000.0]);
        // A call on the old handle is admitted in the new cell.
        let r2 = admitted(acquire_with(&store, &handle, &old, Cost::request()));
        assert_eq!(
            store.state(&new[0], Nanos::ZERO).expect("seen").in_flight,
            2
        );
        // Both settle through the old handle: the refund of 900 tokens and both counts reach the
        // new cell.
        let used = Settlement {
            now: Nanos::ZERO,
            actual: Cost::request().with_input_tokens(100),
        };
        store.settle_with(&handle, r, used);
        store.settle_with(
            &handle,
            r2,
            Settlement {
                now: Nanos::ZERO,
                actual: Cost::request(),
            },
        );
        let state = store.state(&new[0], Nanos::ZERO).expect("seen");
        assert_eq!(state.in_flight, 0);
        assert_eq!(state.available, vec![118.0, 11_900.0]);
        // The new handle reaches the same cell without the table.
        assert!(Arc::ptr_eq(
            &new_handle.cells[0],
            store.table()[0].as_ref().expect("cell")
        ));
    }

    /// Without a handle (as the Redis store's fallback calls it), a call admitted before a limit
    /// change settles into the current cell too.
    #[test]
    fn a_call_admitted_without_a_handle_settles_into_the_new_limits() {
        let store = MemoryStore::new();
        let old = [scope(1, 60, 2)];
        let call = Acquire {
            now: Nanos::ZERO,
            scopes: &old,
            cost: Cost::request().with_input_tokens(1_000),
        };
        let r = admitted(store.acquire(&call).into_inner().expect("in memory"));
        let new = [scope(2, 120, 2)];
        store.handle(&new, Nanos::ZERO);
        assert_eq!(
            store.state(&new[0], Nanos::ZERO).expect("seen").in_flight,
            1
        );
        let used = Settlement {
            now: Nanos::ZERO,
            actual: Cost::request().with_input_tokens(100),
        };
        store.settle(r, used);
        let state = store.state(&new[0], Nanos::ZERO).expect("seen");
        assert_eq!(state.in_flight, 0);
        assert_eq!(state.available, vec![119.0, 11_900.0]);
    }

    /// Threads admitting and settling through a handle while another thread changes the limits
    /// again and again: every count comes back, and no more calls are ever in flight than the
    /// cap.
    #[test]
    fn limit_changes_racing_with_calls_lose_no_count() {
        let store = MemoryStore::new();
        let first = [scope(1, 1_000_000, 2)];
        let handle = store.handle(&first, Nanos::ZERO);
        let in_flight = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..2_000 {
                        if let Decision::Admitted(r) =
                            acquire_with(&store, &handle, &first, Cost::request())
                        {
                            let now = in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            assert!(now < 2, "{} calls in flight", now + 1);
                            in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                            let done = Settlement {
                                now: Nanos::ZERO,
                                actual: Cost::ZERO,
                            };
                            store.settle_with(&handle, r, done);
                        }
                    }
                });
            }
            s.spawn(|| {
                for generation in 2..200 {
                    store.handle(&[scope(generation, 1_000_000, 2)], Nanos::ZERO);
                }
            });
        });
        let last = scope(200, 1_000_000, 2);
        let state = store.state(&last, Nanos::ZERO).expect("seen");
        assert_eq!(state.in_flight, 0);
        // Every call was refunded: the buckets are full again (less a nanosecond of rounding per
        // call at most).
        assert!(state.available[0] > 1_000_000.0 - 0.01, "{state:?}");
    }
}
