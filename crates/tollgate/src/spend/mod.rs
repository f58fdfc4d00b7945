//! Money in the layer: spend caps per scope and window, alerts, the pause at the cap, and the
//! per-call log.
//!
//! The arithmetic (reserve, settle, release, windows, thresholds) is `tollgate-core`'s
//! [`BudgetState`](tollgate_core::BudgetState), kept per scope key by a [`Ledger`]
//! ([`MemoryLedger`] in this process by default). This module decides which budgets a call is
//! charged to and what a call that does not fit does ([`OnCap`]), tells the user about crossed
//! thresholds ([`BudgetAlert`]), holds the calls that wait for a window to reset or for a manual
//! [`resume`](crate::Limiter::resume), and writes the [`CallLog`].
//!
//! Time here is wall-clock time: the Unix time at which the layer was built (read once, or set
//! with [`ThrottleBuilder::wall_clock`](crate::ThrottleBuilder::wall_clock)) plus the elapsed
//! time of tokio's clock, so budgets follow tokio's paused clock in tests and in the simulator.

mod account;
mod ledger;
#[cfg(feature = "call-log")]
mod log;

pub(crate) use account::{Account, Billed, Caller};
pub use ledger::{
    Alerts, BudgetRef, Ledger, LedgerFuture, LedgerHold, MemoryLedger, Refused, Reserve,
};
#[cfg(feature = "call-log")]
pub use log::{CallLog, CallRecord, EstimateRecord, Replay, ReplayedCall, TokensRecord};

use crate::registry::pattern_kind;
use crate::{ScopeKey, Scopes};
use smallvec::SmallVec;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use tollgate_core::{Alert, Budget, BudgetExhausted, Micros, PriceTable};

/// What a call does when one of its scopes is at its spend cap, or paused by hand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "toml", derive(serde::Deserialize))]
#[cfg_attr(feature = "toml", serde(rename_all = "snake_case"))]
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
    #[cfg(feature = "call-log")]
    pub(crate) log: Option<CallLog>,
    #[cfg(feature = "call-log")]
    pub(crate) seed: Option<Replay>,
    pub(crate) ledger: Option<Arc<dyn Ledger>>,
}

impl fmt::Debug for SpendSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpendSettings")
            .field("budgets", &self.budgets)
            .field("prices", &self.prices.as_ref().map(PriceTable::len))
            .field("on_cap", &self.on_cap)
            .field("alert", &self.alert.is_some())
            .field("log", &self.logs())
            .finish_non_exhaustive()
    }
}

impl SpendSettings {
    /// Whether anything of the money side is configured (otherwise calls skip it entirely).
    pub(crate) fn is_active(&self) -> bool {
        !self.budgets.is_empty() || self.prices.is_some() || self.logs()
    }

    /// Whether calls are logged.
    fn logs(&self) -> bool {
        #[cfg(feature = "call-log")]
        return self.log.is_some();
        #[cfg(not(feature = "call-log"))]
        return false;
    }
}

#[derive(Default)]
struct Local {
    paused: HashSet<ScopeKey>,
    /// Models already warned about being priced at the default price.
    defaulted: HashSet<String>,
    /// Calls held at a cap or a pause, woken when money comes back or a scope resumes.
    /// Keyed by the call's id, so that a call that goes away takes its waker with it.
    waiters: Vec<(u64, Waker)>,
    /// Counts the times money came back or a scope resumed (each `wake_all`), so that a call
    /// refused just before it registers its waker still learns of it.
    epoch: u64,
}

/// The budgets of one call: each budgeted scope key with its budget.
pub(crate) type CallBudgets = SmallVec<[(ScopeKey, Arc<Budget>); 4]>;

/// The money side of every clone of a layer: which budget applies to which key, the ledger that
/// keeps the spend, pauses, held calls and alerts.
pub(crate) struct Spend {
    exact: HashMap<ScopeKey, Arc<Budget>>,
    /// `(Some(kind), budget)` for `kind:*`, `(None, budget)` for `*`.
    patterns: Vec<(Option<String>, Arc<Budget>)>,
    pub(crate) prices: Option<PriceTable>,
    pub(crate) on_cap: OnCap,
    alerts: Alerts,
    #[cfg(feature = "call-log")]
    pub(crate) log: Option<CallLog>,
    ledger: Arc<dyn Ledger>,
    local: Mutex<Local>,
}

impl fmt::Debug for Spend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spend")
            .field("exact", &self.exact)
            .field("patterns", &self.patterns)
            .field("on_cap", &self.on_cap)
            .field("shared_ledger", &self.ledger.is_shared())
            .finish_non_exhaustive()
    }
}

/// What [`Spend::reserve`] decided.
pub(crate) enum MoneyStep {
    Held(LedgerHold),
    Refused(Refusal),
    Pending(LedgerFuture),
}

fn refs(budgets: &CallBudgets) -> SmallVec<[BudgetRef<'_>; 4]> {
    budgets
        .iter()
        .map(|(scope, budget)| BudgetRef { scope, budget })
        .collect()
}

impl Spend {
    pub(crate) fn new(settings: SpendSettings, ledger: Arc<dyn Ledger>, now_unix: u64) -> Self {
        #[cfg(not(feature = "call-log"))]
        let _ = now_unix; // only the call log's replay reads it
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
            alerts: Alerts::new(settings.alert),
            #[cfg(feature = "call-log")]
            log: settings.log,
            ledger,
            local: Mutex::new(Local::default()),
        };
        #[cfg(feature = "call-log")]
        if let Some(seed) = &settings.seed {
            spend.seed(seed, now_unix);
        }
        spend
    }

    fn lock(&self) -> MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether other processes share the ledger.
    pub(crate) fn is_shared(&self) -> bool {
        self.ledger.is_shared()
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

    /// The budgets of a call with these keys.
    pub(crate) fn budgets(&self, keys: &Scopes) -> CallBudgets {
        let mut out = CallBudgets::new();
        if self.exact.is_empty() && self.patterns.is_empty() {
            return out;
        }
        for key in keys {
            if let Some(b) = self.budget_of(key) {
                out.push((key.clone(), b));
            }
        }
        out
    }

    /// Seeds the spend of the current windows from earlier calls (a restart).
    #[cfg(feature = "call-log")]
    fn seed(&self, replay: &Replay, now_unix: u64) {
        let mut sums: HashMap<ScopeKey, (Arc<Budget>, Micros)> = HashMap::new();
        for call in replay.calls() {
            let at = call.unix_ms / 1000;
            for key in &call.scopes {
                let Some(budget) = self.budget_of(key) else {
                    continue;
                };
                if budget.window_start(at) == budget.window_start(now_unix) {
                    sums.entry(key.clone()).or_insert((budget, Micros::ZERO)).1 += call.cost;
                }
            }
        }
        for (scope, (budget, spent)) in &sums {
            self.ledger
                .seed(BudgetRef { scope, budget }, now_unix, *spent);
        }
    }

    /// Reserves `estimate` against `budgets` (all or nothing), unless a key is paused.
    pub(crate) fn reserve(
        &self,
        keys: &Scopes,
        budgets: &CallBudgets,
        now_unix: u64,
        estimate: Micros,
    ) -> MoneyStep {
        {
            let local = self.lock();
            if let Some(k) = keys.iter().find(|k| local.paused.contains(*k)) {
                return MoneyStep::Refused(Refusal::Paused(k.clone()));
            }
        }
        if budgets.is_empty() {
            return MoneyStep::Held(LedgerHold::new(0, estimate));
        }
        match self.ledger.reserve(&refs(budgets), now_unix, estimate) {
            Reserve::Done(Ok(hold)) => MoneyStep::Held(hold),
            Reserve::Done(Err(refused)) => MoneyStep::Refused(self.refusal(budgets, refused)),
            Reserve::Pending(fut) => MoneyStep::Pending(fut),
        }
    }

    /// The refusal of the budget a ledger named.
    pub(crate) fn refusal(&self, budgets: &CallBudgets, refused: Refused) -> Refusal {
        let scope = budgets
            .get(refused.index)
            .map_or(ScopeKey::GLOBAL, |(k, _)| k.clone());
        Refusal::Exhausted(scope, refused.exhausted)
    }

    /// Settles a hold with the call's real cost; tells the alerts and wakes held calls.
    pub(crate) fn settle(
        &self,
        hold: LedgerHold,
        budgets: &CallBudgets,
        now_unix: u64,
        actual: Micros,
    ) {
        if !budgets.is_empty() {
            self.ledger
                .settle(hold, &refs(budgets), now_unix, actual, &self.alerts);
        }
        wake_all(&mut self.lock());
    }

    /// Gives a hold back unused.
    pub(crate) fn release(&self, hold: LedgerHold, budgets: &CallBudgets) {
        if !budgets.is_empty() {
            self.ledger.release(hold, &refs(budgets));
        }
        wake_all(&mut self.lock());
    }

    /// The count of wake-ups so far: read it before a reservation, give it to
    /// [`wait`](Self::wait) after a refusal.
    pub(crate) fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Registers a held call to be woken when money comes back or a scope resumes; at once when
    /// that happened since `seen` was read.
    pub(crate) fn wait(&self, id: u64, waker: &Waker, seen: u64) {
        let mut st = self.lock();
        if st.epoch != seen {
            // Money came back (or a scope resumed) after the call was refused: look again now.
            waker.wake_by_ref();
            return;
        }
        match st.waiters.iter_mut().find(|(i, _)| *i == id) {
            Some((_, w)) if w.will_wake(waker) => {}
            Some((_, w)) => *w = waker.clone(),
            None => st.waiters.push((id, waker.clone())),
        }
    }

    /// Forgets the waker of a held call that goes away (dropped, refused, or admitted).
    pub(crate) fn forget(&self, id: u64) {
        let mut st = self.lock();
        if let Some(i) = st.waiters.iter().position(|(w, _)| *w == id) {
            st.waiters.swap_remove(i);
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

    /// The spend of `key` in its current window.
    pub(crate) fn spent(&self, key: &ScopeKey, now_unix: u64) -> Option<SpendStats> {
        let budget = self.budget_of(key)?;
        self.ledger.spent(
            BudgetRef {
                scope: key,
                budget: &budget,
            },
            now_unix,
        )
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
#[cfg(feature = "call-log")]
pub(crate) fn rfc3339_ms(unix_ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms);
    humantime::format_rfc3339_millis(t).to_string()
}

fn wake_all(st: &mut Local) {
    st.epoch = st.epoch.wrapping_add(1);
    for (_, w) in st.waiters.drain(..) {
        w.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_call_refused_just_before_money_comes_back_is_woken_at_once() {
        let spend = Spend::new(SpendSettings::default(), Arc::new(MemoryLedger::new()), 0);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        // The call reads the epoch, is refused, and before it registers, money comes back.
        let seen = spend.epoch();
        spend.resume("global");
        spend.wait(1, &waker, seen);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "woken at once, not parked"
        );
        // Registered with a current epoch, it is parked until the next wake-up.
        spend.wait(1, &waker, spend.epoch());
        // A call that goes away takes its waker with it.
        spend.wait(2, &waker, spend.epoch());
        spend.forget(2);
        assert_eq!(spend.lock().waiters.len(), 1);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        spend.resume("global");
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
    }
}
