//! Money in the layer: spend caps per scope and window, alerts, the pause at the cap, and the
//! per-call log.
//!
//! The arithmetic (reserve, settle, release, windows, thresholds) is `tollgate-core`'s
//! [`BudgetState`]; this module keeps one state per scope key, decides what a call that does not
//! fit does ([`OnCap`]), tells the user about crossed thresholds ([`BudgetAlert`]) and holds the
//! calls that wait for a window to reset or for a manual [`resume`](crate::Limiter::resume).
//!
//! Time here is wall-clock time: the Unix time at which the layer was built (read once, or set
//! with [`ThrottleBuilder::wall_clock`](crate::ThrottleBuilder::wall_clock)) plus the elapsed
//! time of tokio's clock, so budgets follow tokio's paused clock in tests and in the simulator.

mod log;

pub use log::{CallLog, CallRecord, EstimateRecord, Replay, ReplayedCall, TokensRecord};

use crate::pick::pick_mut;
use crate::registry::pattern_kind;
use crate::{ScopeKey, Scopes};
use smallvec::SmallVec;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use tollgate_core::{
    release_budgets, reserve_budgets, settle_budgets, Alert, Budget, BudgetExhausted, BudgetState,
    Micros, PriceTable, Reservation,
};

/// What a call does when one of its scopes is at its spend cap, or paused by hand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnCap {
    /// Fail at once with a [`ThrottleError`](crate::ThrottleError) for which
    /// [`budget_exhausted`](crate::ThrottleError::budget_exhausted) (or
    /// [`is_paused`](crate::ThrottleError::is_paused)) tells the scope, what was spent, the cap and
    /// when the window resets. The default.
    #[default]
    Refuse,
    /// Wait until the window resets, calls in flight settle below their estimates, or the scope
    /// is resumed; then go on. A call whose estimate alone is above the cap still fails at once,
    /// and a [`max_wait`](crate::ThrottleBuilder::max_wait) bounds the hold.
    Hold,
}

/// A spend threshold crossed in a scope, given to the
/// [`on_alert`](crate::ThrottleBuilder::on_alert) callback and logged as a `tracing` warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetAlert {
    /// The scope whose budget crossed the threshold.
    pub scope: ScopeKey,
    /// The threshold, the spend and the window.
    pub alert: Alert,
}

impl fmt::Display for BudgetAlert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scope `{}`: {}", self.scope, self.alert)
    }
}

/// The callback of alerts.
pub(crate) type AlertSink = Arc<dyn Fn(&BudgetAlert) + Send + Sync>;

/// Why the money side refused a call.
#[derive(Debug)]
pub(crate) enum Refusal {
    Exhausted(ScopeKey, BudgetExhausted),
    Paused(ScopeKey),
}

/// The configuration of the money side, validated by the builder.
#[derive(Clone, Default)]
pub(crate) struct SpendSettings {
    /// Budgets of exact keys and of patterns (`kind:*`, `*`).
    pub(crate) budgets: Vec<(ScopeKey, Budget)>,
    pub(crate) prices: Option<PriceTable>,
    pub(crate) on_cap: OnCap,
    pub(crate) alert: Option<AlertSink>,
    pub(crate) log: Option<CallLog>,
    pub(crate) seed: Option<Replay>,
}

impl fmt::Debug for SpendSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpendSettings")
            .field("budgets", &self.budgets)
            .field("prices", &self.prices.as_ref().map(PriceTable::len))
            .field("on_cap", &self.on_cap)
            .field("alert", &self.alert.is_some())
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl SpendSettings {
    /// Whether anything of the money side is configured (otherwise calls skip it entirely).
    pub(crate) fn is_active(&self) -> bool {
        !self.budgets.is_empty() || self.prices.is_some() || self.log.is_some()
    }
}

struct Entry {
    key: ScopeKey,
    budget: Arc<Budget>,
    state: BudgetState,
}

#[derive(Default)]
struct State {
    entries: Vec<Entry>,
    by_key: HashMap<ScopeKey, usize>,
    /// Keys known to have no budget (so the patterns are not searched again).
    unbudgeted: HashSet<ScopeKey>,
    paused: HashSet<ScopeKey>,
    /// Models already warned about being priced at the default price.
    defaulted: HashSet<String>,
    /// Calls held at a cap or a pause, woken when money comes back or a scope resumes.
    waiters: Vec<Waker>,
}

/// The spend of every budgeted scope, shared by every clone of a layer.
pub(crate) struct Spend {
    exact: HashMap<ScopeKey, Arc<Budget>>,
    /// `(Some(kind), budget)` for `kind:*`, `(None, budget)` for `*`.
    patterns: Vec<(Option<String>, Arc<Budget>)>,
    pub(crate) prices: Option<PriceTable>,
    pub(crate) on_cap: OnCap,
    alert: Option<AlertSink>,
    pub(crate) log: Option<CallLog>,
    state: Mutex<State>,
}

impl fmt::Debug for Spend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spend")
            .field("exact", &self.exact)
            .field("patterns", &self.patterns)
            .field("on_cap", &self.on_cap)
            .finish_non_exhaustive()
    }
}

/// The money a call holds between admission and settlement. Give it back with
/// [`Spend::settle`] or [`Spend::release`].
#[derive(Debug)]
pub(crate) struct MoneyHold {
    entries: SmallVec<[usize; 4]>,
    reservation: Reservation,
}

impl Spend {
    pub(crate) fn new(settings: SpendSettings, now_unix: u64) -> Self {
        let mut exact = HashMap::new();
        let mut patterns = Vec::new();
        for (key, budget) in settings.budgets {
            let budget = Arc::new(budget);
            match pattern_kind(key.as_str()) {
                Some(kind) => patterns.push((kind.map(str::to_owned), budget)),
                None => {
                    exact.insert(key, budget);
                }
            }
        }
        let spend = Spend {
            exact,
            patterns,
            prices: settings.prices,
            on_cap: settings.on_cap,
            alert: settings.alert,
            log: settings.log,
            state: Mutex::new(State::default()),
        };
        if let Some(seed) = &settings.seed {
            spend.seed(seed, now_unix);
        }
        spend
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The budget of `key`: its own, else that of its kind's pattern, else that of `*`.
    fn budget_of(&self, key: &ScopeKey) -> Option<Arc<Budget>> {
        if let Some(b) = self.exact.get(key) {
            return Some(b.clone());
        }
        let kind = key.kind();
        self.patterns
            .iter()
            .find(|(k, _)| k.is_some() && k.as_deref() == kind)
            .or_else(|| self.patterns.iter().find(|(k, _)| k.is_none()))
            .map(|(_, b)| b.clone())
    }

    /// The entry of `key`, created on first sight; `None` when the key has no budget.
    fn entry(&self, st: &mut State, key: &ScopeKey, now_unix: u64) -> Option<usize> {
        if let Some(&i) = st.by_key.get(key) {
            return Some(i);
        }
        if st.unbudgeted.contains(key) {
            return None;
        }
        match self.budget_of(key) {
            None => {
                st.unbudgeted.insert(key.clone());
                None
            }
            Some(budget) => {
                let i = st.entries.len();
                st.entries.push(Entry {
                    key: key.clone(),
                    state: BudgetState::new(&budget, now_unix),
                    budget,
                });
                st.by_key.insert(key.clone(), i);
                Some(i)
            }
        }
    }

    /// Seeds the spend of the current windows from earlier calls (a restart).
    fn seed(&self, replay: &Replay, now_unix: u64) {
        let mut st = self.lock();
        let mut sums: HashMap<usize, Micros> = HashMap::new();
        for call in replay.calls() {
            let at = call.unix_ms / 1000;
            for key in &call.scopes {
                let Some(i) = self.entry(&mut st, key, now_unix) else {
                    continue;
                };
                let budget = &st.entries[i].budget;
                if budget.window_start(at) == budget.window_start(now_unix) {
                    *sums.entry(i).or_default() += call.cost;
                }
            }
        }
        for (i, spent) in sums {
            let e = &mut st.entries[i];
            e.state = BudgetState::seeded(&e.budget, now_unix, spent);
        }
    }

    /// Reserves `estimate` against the budget of every key, all or nothing.
    pub(crate) fn reserve(
        &self,
        keys: &Scopes,
        now_unix: u64,
        estimate: Micros,
    ) -> Result<MoneyHold, Refusal> {
        let mut st = self.lock();
        if let Some(k) = keys.iter().find(|k| st.paused.contains(*k)) {
            return Err(Refusal::Paused(k.clone()));
        }
        let mut entries: SmallVec<[usize; 4]> = SmallVec::new();
        for key in keys {
            if let Some(i) = self.entry(&mut st, key, now_unix) {
                if !entries.contains(&i) {
                    entries.push(i);
                }
            }
        }
        let result = with_budgets(&mut st.entries, &entries, |pairs| {
            reserve_budgets(now_unix, estimate, pairs)
        });
        match result {
            Ok(reservation) => Ok(MoneyHold {
                entries,
                reservation,
            }),
            Err((i, e)) => Err(Refusal::Exhausted(st.entries[entries[i]].key.clone(), e)),
        }
    }

    /// Settles a held reservation with the call's real cost; tells the alerts and wakes held calls.
    pub(crate) fn settle(&self, hold: MoneyHold, now_unix: u64, actual: Micros) {
        let alerts: Vec<BudgetAlert> = {
            let mut st = self.lock();
            let MoneyHold {
                entries,
                reservation,
            } = hold;
            let fired = with_budgets(&mut st.entries, &entries, |pairs| {
                settle_budgets(now_unix, reservation, actual, pairs)
            });
            let alerts = fired
                .into_iter()
                .map(|(i, alert)| BudgetAlert {
                    scope: st.entries[entries[i]].key.clone(),
                    alert,
                })
                .collect();
            wake_all(&mut st);
            alerts
        };
        for a in &alerts {
            tracing::warn!(
                scope = %a.scope,
                spent = %a.alert.spent,
                threshold = %a.alert.threshold,
                cap = %a.alert.cap,
                "spend alert: {a}"
            );
            if let Some(sink) = &self.alert {
                sink(a);
            }
        }
    }

    /// Gives a reservation back unused.
    pub(crate) fn release(&self, hold: MoneyHold) {
        let mut st = self.lock();
        let MoneyHold {
            entries,
            reservation,
        } = hold;
        with_budgets(&mut st.entries, &entries, |pairs| {
            release_budgets(reservation, pairs)
        });
        wake_all(&mut st);
    }

    /// Registers a held call to be woken when money comes back or a scope resumes.
    pub(crate) fn wait(&self, waker: &Waker) {
        let mut st = self.lock();
        if !st.waiters.iter().any(|w| w.will_wake(waker)) {
            st.waiters.push(waker.clone());
        }
    }

    /// Warns, once per model, that a model is charged the price table's default price.
    pub(crate) fn warn_default_price(&self, model: &str) {
        let mut st = self.lock();
        if !st.defaulted.contains(model) {
            st.defaulted.insert(model.to_owned());
            drop(st);
            tracing::warn!(
                model,
                "no price listed for this model: charging the default price"
            );
        }
    }

    pub(crate) fn pause(&self, key: ScopeKey) {
        self.lock().paused.insert(key);
    }

    pub(crate) fn resume(&self, key: &str) -> bool {
        let mut st = self.lock();
        let was = st.paused.remove(key);
        wake_all(&mut st);
        was
    }

    pub(crate) fn is_paused(&self, key: &str) -> bool {
        self.lock().paused.contains(key)
    }

    /// The spend of `key` in its current window: `(spent, reserved, cap, resets_at)`.
    pub(crate) fn spent(&self, key: &ScopeKey, now_unix: u64) -> Option<SpendStats> {
        let mut st = self.lock();
        let i = self.entry(&mut st, key, now_unix)?;
        let e = &mut st.entries[i];
        e.state.roll(&e.budget, now_unix);
        Some(SpendStats {
            spent: e.state.spent,
            reserved: e.state.reserved,
            cap: e.budget.cap(),
            resets_at: e.state.resets_at(&e.budget),
        })
    }
}

/// The spend of one scope in its current window, from
/// [`Limiter::spend`](crate::Limiter::spend).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpendStats {
    /// Settled spend in the window.
    pub spent: Micros,
    /// Estimates held by calls in flight.
    pub reserved: Micros,
    /// The cap of the window.
    pub cap: Micros,
    /// When the window resets, in Unix seconds.
    pub resets_at: u64,
}

/// `unix_ms` as RFC 3339 in UTC with milliseconds, e.g. `2026-11-22T10:00:00.000Z`.
pub(crate) fn rfc3339_ms(unix_ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms);
    humantime::format_rfc3339_millis(t).to_string()
}

fn wake_all(st: &mut State) {
    for w in st.waiters.drain(..) {
        w.wake();
    }
}

/// Runs `f` over the `(budget, state)` pairs of `ids`, in the order of `ids` (distinct indices).
fn with_budgets<T>(
    entries: &mut [Entry],
    ids: &[usize],
    f: impl FnOnce(&mut [(&Budget, &mut BudgetState)]) -> T,
) -> T {
    let mut pairs: SmallVec<[(&Budget, &mut BudgetState); 4]> = pick_mut(entries, ids)
        .into_iter()
        .flatten()
        .map(|e| (&*e.budget, &mut e.state))
        .collect();
    f(&mut pairs)
}
