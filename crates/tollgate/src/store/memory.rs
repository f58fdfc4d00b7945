//! [`MemoryStore`]: the buckets in this process, behind one mutex.

use super::{Acquire, Decision, ScopeState, Settlement, Store, StoreError};
use crate::feedback::ProviderLimit;
use crate::pick::pick_mut;
use crate::registry::ScopeId;
use crate::ScopeRef;
use smallvec::SmallVec;
use std::future::{ready, Ready};
use std::sync::{Arc, Mutex};
use tollgate_core::{admit, release, settle, Admission, CompiledScope, Cost, Dimension, Nanos};

/// The default store: every scope's buckets in this process, behind one mutex that is held only
/// for the arithmetic of one decision (no `.await`, no allocation on the admission path once a
/// scope has been seen).
#[derive(Debug, Default)]
pub struct MemoryStore {
    slots: Mutex<Vec<Option<Slot>>>,
}

#[derive(Debug)]
struct Slot {
    generation: u64,
    limits: Arc<CompiledScope>,
    state: tollgate_core::ScopeState,
}

/// What an admission in a [`MemoryStore`] holds: the scopes and the charged estimate.
#[derive(Debug)]
pub struct MemoryReservation {
    scopes: SmallVec<[ScopeId; 4]>,
    charged: Cost,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// Brings the slot of `scope` up to date with its limits (creating it, or carrying its state
    /// over to newer limits).
    fn refresh(slots: &mut Vec<Option<Slot>>, scope: &ScopeRef, now: Nanos) {
        let i = scope.id as usize;
        if slots.len() <= i {
            slots.resize_with(i + 1, || None);
        }
        match &mut slots[i] {
            Some(slot) if slot.generation >= scope.generation => {}
            Some(slot) => {
                slot.state = scope.limits.carry_over(&slot.limits, &slot.state, now);
                slot.limits = scope.limits.clone();
                slot.generation = scope.generation;
            }
            empty @ None => {
                *empty = Some(Slot {
                    generation: scope.generation,
                    limits: scope.limits.clone(),
                    state: scope.limits.new_state(),
                })
            }
        }
    }

    /// Runs `f` over the slots of `ids`, as core's `(limits, state)` pairs in the order of `ids`,
    /// borrowed in place.
    fn with_scopes<T>(
        slots: &mut [Option<Slot>],
        ids: &[ScopeId],
        f: impl FnOnce(&mut [(&CompiledScope, &mut tollgate_core::ScopeState)]) -> T,
    ) -> T {
        if let [id] = ids {
            // The common case, without collecting anything.
            return match slots.get_mut(*id as usize) {
                Some(Some(s)) => f(&mut [(&*s.limits, &mut s.state)]),
                _ => f(&mut []),
            };
        }
        let indices: SmallVec<[usize; 4]> = ids.iter().map(|&id| id as usize).collect();
        let mut pairs: SmallVec<[(&CompiledScope, &mut tollgate_core::ScopeState); 4]> =
            pick_mut(slots, &indices)
                .into_iter()
                .flatten()
                .filter_map(|slot| slot.as_mut().map(|s| (&*s.limits, &mut s.state)))
                .collect();
        f(&mut pairs)
    }
}

impl Store for MemoryStore {
    type Reservation = MemoryReservation;
    type AcquireFuture = Ready<Result<Decision<MemoryReservation>, StoreError>>;

    fn acquire(&self, call: &Acquire<'_>) -> Self::AcquireFuture {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        for scope in call.scopes {
            Self::refresh(&mut slots, scope, call.now);
        }
        let mut ids: SmallVec<[ScopeId; 4]> = SmallVec::new();
        for scope in call.scopes {
            ids.push(scope.id);
        }
        let admission =
            Self::with_scopes(&mut slots, &ids, |pairs| admit(call.now, call.cost, pairs));
        drop(slots);
        ready(Ok(match admission {
            Admission::Admitted => Decision::Admitted(MemoryReservation {
                scopes: ids,
                charged: call.cost,
            }),
            Admission::Wait { wait, blocked } => Decision::Wait {
                wait: wait.map(Nanos::as_duration),
                blocked,
            },
            Admission::Never(n) => Decision::Never(n),
        }))
    }

    fn settle(&self, reservation: MemoryReservation, settlement: Settlement) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        Self::with_scopes(&mut slots, &reservation.scopes, |pairs| {
            settle(
                settlement.now,
                reservation.charged,
                settlement.actual,
                pairs,
            );
            release(pairs);
        });
    }

    fn cool_down(&self, scope: &ScopeRef, now: Nanos, until: Nanos) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        Self::refresh(&mut slots, scope, now);
        if let Some(slot) = slots[scope.id as usize].as_mut() {
            slot.state.cool_down(until);
        }
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
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        Self::refresh(&mut slots, scope, now);
        if let Some(slot) = slots[scope.id as usize].as_mut() {
            for l in reported {
                slot.limits
                    .sync_remaining(&mut slot.state, now, l.dimension, l.remaining);
            }
        }
    }

    fn state(&self, scope: &ScopeRef, now: Nanos) -> Option<ScopeState> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = slots.get(scope.id as usize)?.as_ref()?;
        Some(ScopeState {
            available: slot.limits.available(&slot.state, now),
            in_flight: slot.state.in_flight,
        })
    }
}
