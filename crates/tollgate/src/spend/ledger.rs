//! Where spend is kept: the [`Ledger`] trait, and [`MemoryLedger`] in this process.
//!
//! The layer decides which budgets a call is charged to, prices it, holds or refuses calls and
//! tells the alerts; a ledger only keeps the money: it reserves an estimate against several
//! budgets at once (all or nothing), settles or releases it, and says which thresholds a settle
//! crossed. A ledger shared by several processes (Redis) makes the same decisions there, so a cap
//! holds across them.

use crate::error::StoreError;
use crate::pick::pick_mut;
use crate::ScopeKey;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use tollgate_core::{
    release_budgets, reserve_budgets, settle_budgets, Alert, Budget, BudgetExhausted, BudgetState,
    Micros, Reservation,
};

use super::{BudgetAlert, SpendStats};

/// One budget of a call: its scope key and the budget that applies to it.
#[derive(Clone, Copy, Debug)]
pub struct BudgetRef<'a> {
    /// The scope key (an exact key, also when the budget comes from a `kind:*` or `*` pattern).
    pub scope: &'a ScopeKey,
    /// The budget.
    pub budget: &'a Budget,
}

/// The money a ledger holds for a call between [`reserve`](Ledger::reserve) and
/// [`settle`](Ledger::settle) or [`release`](Ledger::release). Not `Clone`: given back once.
#[derive(Debug)]
pub struct LedgerHold {
    id: u64,
    estimate: Micros,
    slots: SmallVec<[u32; 4]>,
}

impl LedgerHold {
    /// A hold of `estimate` under the ledger's own reservation `id`.
    ///
    /// ```
    /// use tollgate::spend::LedgerHold;
    /// use tollgate::Micros;
    /// let hold = LedgerHold::new(7, Micros::new(250));
    /// assert_eq!((hold.id(), hold.estimate()), (7, Micros::new(250)));
    /// ```
    pub fn new(id: u64, estimate: Micros) -> Self {
        LedgerHold {
            id,
            estimate,
            slots: SmallVec::new(),
        }
    }

    /// The ledger's reservation id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The money held.
    pub fn estimate(&self) -> Micros {
        self.estimate
    }
}

/// A reservation refused by the budget at `index` (in the order given to
/// [`reserve`](Ledger::reserve)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The refusing budget's position.
    pub index: usize,
    /// Its spend, cap and reset.
    pub exhausted: BudgetExhausted,
}

/// The future of a reservation made elsewhere.
pub type LedgerFuture =
    Pin<Box<dyn Future<Output = Result<Result<LedgerHold, Refused>, StoreError>> + Send>>;

/// The answer of [`Ledger::reserve`]: at once (in this process), or later (a shared ledger).
pub enum Reserve {
    /// Decided.
    Done(Result<LedgerHold, Refused>),
    /// Decided when the future completes. An error refuses the call: spend caps fail closed.
    Pending(LedgerFuture),
}

impl fmt::Debug for Reserve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reserve::Done(r) => f.debug_tuple("Done").field(r).finish(),
            Reserve::Pending(_) => f.write_str("Pending(..)"),
        }
    }
}

/// Where the layer's alerts go: the `tracing` warning and the user's callback. Cloned into a
/// ledger's background work.
#[derive(Clone, Default)]
pub struct Alerts {
    sink: Option<super::AlertSink>,
}

impl fmt::Debug for Alerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alerts")
            .field("callback", &self.sink.is_some())
            .finish()
    }
}

impl Alerts {
    pub(crate) fn new(sink: Option<super::AlertSink>) -> Self {
        Alerts { sink }
    }

    /// Tells that `scope`'s budget crossed a threshold.
    pub fn fire(&self, scope: &ScopeKey, alert: Alert) {
        let a = BudgetAlert {
            scope: scope.clone(),
            alert,
        };
        tracing::warn!(
            scope = %a.scope,
            spent = %a.alert.spent,
            threshold = %a.alert.threshold,
            cap = %a.alert.cap,
            "spend alert: {a}"
        );
        if let Some(sink) = &self.sink {
            sink(&a);
        }
    }
}

/// Keeps the spend of budgets.
///
/// # Contract
/// * [`reserve`](Ledger::reserve) reserves `estimate` in every budget given, or in none: it is
///   admitted iff `spent + reserved + estimate ≤ cap` in each budget's current window (see
///   [`BudgetState`] for the exact rule, windows and the guarantee).
/// * [`settle`](Ledger::settle) or [`release`](Ledger::release) is called exactly once per
///   hold, with the same budgets; neither may block (a remote ledger sends them in the
///   background). `settle` fires each threshold that the settled spend reaches first in a window,
///   once per window, through `alerts`.
pub trait Ledger: Send + Sync + 'static {
    /// Reserves `estimate` in every budget of `budgets` at wall time `now_unix` (seconds).
    fn reserve(&self, budgets: &[BudgetRef<'_>], now_unix: u64, estimate: Micros) -> Reserve;

    /// Settles a hold with the call's real cost.
    fn settle(
        &self,
        hold: LedgerHold,
        budgets: &[BudgetRef<'_>],
        now_unix: u64,
        actual: Micros,
        alerts: &Alerts,
    );

    /// Gives a hold back unused.
    fn release(&self, hold: LedgerHold, budgets: &[BudgetRef<'_>]);

    /// The spend of one budget in its current window, as far as this process knows it without
    /// waiting (a shared ledger may answer from its last reply, or not at all).
    fn spent(&self, budget: BudgetRef<'_>, now_unix: u64) -> Option<SpendStats>;

    /// Sets the spend of a budget's current window after a restart (from the call log). A shared
    /// ledger, which survives restarts itself, ignores it.
    fn seed(&self, budget: BudgetRef<'_>, now_unix: u64, spent: Micros) {
        let _ = (budget, now_unix, spent);
    }

    /// Whether other processes change this ledger too: calls held at a cap then also look again
    /// every second, since another process's settle does not wake them.
    fn is_shared(&self) -> bool {
        false
    }
}

struct Entry {
    budget: Arc<Budget>,
    state: BudgetState,
}

#[derive(Default)]
struct Entries {
    entries: Vec<Entry>,
    by_key: HashMap<ScopeKey, u32>,
}

/// The default ledger: spend in this process, behind one mutex held for the arithmetic only.
///
/// ```
/// use tollgate::spend::{Alerts, BudgetRef, Ledger, MemoryLedger, Reserve};
/// use tollgate::{Budget, Micros, ScopeKey};
///
/// let ledger = MemoryLedger::new();
/// let budget = Budget::daily(Micros::from_dollars(1)).build()?;
/// let key = ScopeKey::from("team:a");
/// let budgets = [BudgetRef { scope: &key, budget: &budget }];
/// let Reserve::Done(Ok(hold)) = ledger.reserve(&budgets, 0, Micros::from_cents(60)) else { panic!() };
/// let Reserve::Done(Err(refused)) = ledger.reserve(&budgets, 0, Micros::from_cents(60)) else { panic!() };
/// assert_eq!(refused.exhausted.reserved(), Micros::from_cents(60));
/// ledger.settle(hold, &budgets, 10, Micros::from_cents(20), &Alerts::default());
/// assert_eq!(ledger.spent(budgets[0], 10).unwrap().spent, Micros::from_cents(20));
/// # Ok::<(), tollgate::ConfigError>(())
/// ```
#[derive(Default)]
pub struct MemoryLedger {
    entries: Mutex<Entries>,
}

impl fmt::Debug for MemoryLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.lock().entries.len();
        f.debug_struct("MemoryLedger").field("budgets", &n).finish()
    }
}

impl MemoryLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        MemoryLedger::default()
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The slot of `b`, created on first sight. A key whose budget changed keeps its spend (when
    /// the current window is the same) and its reservations, under the new cap and thresholds.
    fn slot(st: &mut Entries, b: BudgetRef<'_>, now_unix: u64) -> u32 {
        if let Some(&i) = st.by_key.get(b.scope) {
            let e = &mut st.entries[i as usize];
            if *e.budget != *b.budget {
                e.state.roll(&e.budget, now_unix);
                let same_window = e.state.window_start == b.budget.window_start(now_unix);
                let spent = if same_window {
                    e.state.spent
                } else {
                    Micros::ZERO
                };
                let reserved = e.state.reserved;
                e.state = BudgetState::seeded(b.budget, now_unix, spent);
                e.state.reserved = reserved;
                e.budget = Arc::new(b.budget.clone());
            }
            return i;
        }
        let i = st.entries.len() as u32;
        st.entries.push(Entry {
            budget: Arc::new(b.budget.clone()),
            state: BudgetState::new(b.budget, now_unix),
        });
        st.by_key.insert(b.scope.clone(), i);
        i
    }

    fn with_budgets<T>(
        st: &mut Entries,
        slots: &[u32],
        f: impl FnOnce(&mut [(&Budget, &mut BudgetState)]) -> T,
    ) -> T {
        let indices: SmallVec<[usize; 4]> = slots.iter().map(|&i| i as usize).collect();
        let mut pairs: SmallVec<[(&Budget, &mut BudgetState); 4]> =
            pick_mut(&mut st.entries, &indices)
                .into_iter()
                .flatten()
                .map(|e| (&*e.budget, &mut e.state))
                .collect();
        f(&mut pairs)
    }
}

impl Ledger for MemoryLedger {
    fn reserve(&self, budgets: &[BudgetRef<'_>], now_unix: u64, estimate: Micros) -> Reserve {
        let mut st = self.lock();
        let mut slots: SmallVec<[u32; 4]> = SmallVec::new();
        for b in budgets {
            slots.push(Self::slot(&mut st, *b, now_unix));
        }
        let result = Self::with_budgets(&mut st, &slots, |pairs| {
            reserve_budgets(now_unix, estimate, pairs)
        });
        Reserve::Done(match result {
            Ok(r) => Ok(LedgerHold {
                id: 0,
                estimate: r.estimate(),
                slots,
            }),
            Err((index, exhausted)) => Err(Refused { index, exhausted }),
        })
    }

    fn settle(
        &self,
        hold: LedgerHold,
        budgets: &[BudgetRef<'_>],
        now_unix: u64,
        actual: Micros,
        alerts: &Alerts,
    ) {
        let fired = {
            let mut st = self.lock();
            let reservation = Reservation::new(hold.estimate);
            Self::with_budgets(&mut st, &hold.slots, |pairs| {
                settle_budgets(now_unix, reservation, actual, pairs)
            })
        };
        for (i, alert) in fired {
            if let Some(b) = budgets.get(i) {
                alerts.fire(b.scope, alert);
            }
        }
    }

    fn release(&self, hold: LedgerHold, _budgets: &[BudgetRef<'_>]) {
        let mut st = self.lock();
        let reservation = Reservation::new(hold.estimate);
        Self::with_budgets(&mut st, &hold.slots, |pairs| {
            release_budgets(reservation, pairs)
        });
    }

    fn spent(&self, b: BudgetRef<'_>, now_unix: u64) -> Option<SpendStats> {
        let mut st = self.lock();
        let i = Self::slot(&mut st, b, now_unix);
        let e = &mut st.entries[i as usize];
        e.state.roll(&e.budget, now_unix);
        Some(SpendStats {
            spent: e.state.spent,
            reserved: e.state.reserved,
            cap: e.budget.cap(),
            resets_at: e.state.resets_at(&e.budget),
        })
    }

    fn seed(&self, b: BudgetRef<'_>, now_unix: u64, spent: Micros) {
        let mut st = self.lock();
        let i = Self::slot(&mut st, b, now_unix);
        let e = &mut st.entries[i as usize];
        // Calls in flight (of another layer on this ledger) keep their reservations.
        let reserved = e.state.reserved;
        e.state = BudgetState::seeded(&e.budget, now_unix, spent);
        e.state.reserved = reserved;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_that_changes_keeps_its_spend_and_reservations() {
        let ledger = MemoryLedger::new();
        let key = ScopeKey::from("team:a");
        let small = Budget::daily(Micros::new(1_000)).build().unwrap();
        let large = Budget::daily(Micros::new(5_000)).build().unwrap();
        fn at<'a>(key: &'a ScopeKey, budget: &'a Budget) -> [BudgetRef<'a>; 1] {
            [BudgetRef { scope: key, budget }]
        }
        let Reserve::Done(Ok(a)) = ledger.reserve(&at(&key, &small), 0, Micros::new(400)) else {
            panic!("fits");
        };
        let Reserve::Done(Ok(b)) = ledger.reserve(&at(&key, &small), 0, Micros::new(400)) else {
            panic!("fits");
        };
        ledger.settle(
            a,
            &at(&key, &small),
            0,
            Micros::new(300),
            &Alerts::default(),
        );
        // Another layer on the same ledger names a larger cap for the key.
        let s = ledger.spent(at(&key, &large)[0], 1).unwrap();
        assert_eq!(
            (s.spent, s.reserved, s.cap),
            (Micros::new(300), Micros::new(400), Micros::new(5_000))
        );
        // A seed at its start-up keeps the reservation in flight.
        ledger.seed(at(&key, &large)[0], 2, Micros::new(300));
        assert_eq!(
            ledger.spent(at(&key, &large)[0], 2).unwrap().reserved,
            Micros::new(400)
        );
        ledger.release(b, &at(&key, &large));
        assert_eq!(
            ledger.spent(at(&key, &large)[0], 3).unwrap().reserved,
            Micros::ZERO
        );
    }
}
