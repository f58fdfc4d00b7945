//! [`RedisLedger`]: spend caps kept in Redis, so that every process on it shares them.

mod wire;

use super::{Inner, RedisStore};
use crate::fallback::Route;
use crate::Error;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;
use tollgate::spend::{Alerts, BudgetRef, Ledger, LedgerHold, Refused, Reserve, SpendStats};
use tollgate::store::StoreError;
use tollgate::ScopeKey;
use tollgate_core::{Alert, Budget, BudgetState, Micros};
use wire::owned;

/// The budgets of a call, owned, for work done after the call returned.
type Owned = Vec<(ScopeKey, Budget)>;

/// A call's answer from the reserve script.
type Answer = Result<Result<LedgerHold, Refused>, StoreError>;

/// A hold on its way to the call that asked for it: released if it is dropped untaken (the call
/// went away after Redis answered).
struct Delivered {
    hold: Option<LedgerHold>,
    ledger: RedisLedger,
    owned: Owned,
}

impl Delivered {
    fn take(mut self) -> LedgerHold {
        self.hold.take().expect("a delivered hold is taken once")
    }
}

impl Drop for Delivered {
    fn drop(&mut self) {
        if let Some(hold) = self.hold.take() {
            let refs: Vec<BudgetRef<'_>> = self
                .owned
                .iter()
                .map(|(scope, budget)| BudgetRef { scope, budget })
                .collect();
            self.ledger.release(hold, &refs);
        }
    }
}

/// A [`Ledger`] in Redis: every process whose layer is built on a [`RedisStore`] with the same
/// Redis, prefix and hash tag shares the spend of each budget (scope key, window and UTC offset),
/// so a spend cap holds across all of them. The layer takes it from the store by itself
/// ([`Store::ledger`](tollgate::Store::ledger)); nothing else needs setting up.
///
/// * **One round trip per reservation**: one Lua script checks every budget of the call and
///   either reserves the estimate in all of them or refuses, naming the budget. The rule is
///   [`BudgetState`]'s, exactly: admitted iff `spent + reserved + estimate ≤ cap` in the current
///   window; `reserved` is carried across windows, `spent` and the fired thresholds restart each
///   window, and spend counts in the window in which a call settles. With estimates that are
///   upper bounds, the settled spend of a window never exceeds the cap, across all processes.
/// * **Settle and release** are sent in the background and are idempotent by reservation id: a
///   release acts only while the reservation is live, and a settle leaves a marker (kept twice
///   the [spend reservation TTL](crate::RedisStoreBuilder::spend_reservation_ttl)) with a token
///   of its own and its outcome. The same settle sent again (its reply was lost to a timeout or a
///   broken connection) gets that outcome back, so the thresholds it crossed still fire, once,
///   and nothing is charged again; any other settle of the reservation changes nothing.
/// * **Retries**: a settle or release that times out or whose connection breaks is sent again at
///   once, up to 3 times, 50, 100 and 200 ms apart. If it still fails it is kept and retried
///   every [probe interval](crate::RedisStoreBuilder::probe_interval) like the store's writes,
///   until the spend reservation TTL has passed (then it is lost: its spend is not counted).
///   Each threshold fires once per window **across all processes**, in the process whose settle
///   reached it.
/// * **Renewal and reclaim**: while a reservation is held (from the reply of its reservation to
///   its settle or release), a heartbeat of its store renews it every third of the spend
///   reservation TTL (default 10 minutes, so every 200 s), together with every other
///   reservation of the store, in one round trip; so a call may wait and run for as long as it
///   likes. A reservation that is no longer renewed (its process died or dropped its store, or
///   the reply of its reservation was lost) gives its estimate back one TTL after its last
///   renewal, at the next reservation that touches its budget. A hold that is neither settled
///   nor released (which the layer never does) is renewed as long as its store lives.
/// * **Fail closed**: when Redis fails, times out, or is known to be away, a reservation is an
///   error and the layer refuses the call ([`ThrottleError::is_store`](tollgate::ThrottleError)),
///   whatever the store's [`FailMode`](crate::FailMode) for rate limits. No call waits longer
///   than the store's timeout.
/// * **Windows follow each process's clock**: the window of a reservation or a settle is computed
///   in the process from the wall time the layer passes, so a process whose clock is `s` seconds
///   off moves its window boundary by `s`. A window never goes back: a process behind the others
///   reserves in the window they already rolled to. (Rate limits use Redis's `TIME`.)
/// * **Money** is integer micro-dollars, exact up to 2^53 µ$ (about $9 billion).
/// * [`spent`](Ledger::spent) cannot wait for Redis: it answers from the last numbers of the
///   budget this process saw (in a reserve or settle reply), rolled to the current window, or
///   `None` before the first. [`seed`](Ledger::seed) is ignored: Redis keeps the spend across
///   restarts of the processes by itself.
///
/// Keys, under the store's prefix and hash tag: `…:L:b:<window>:<utc offset>:<scope>` (a hash:
/// window start, spent, reserved, fired count), `…:L:h:…` (the budget's live reservations),
/// `…:L:id` and `…:L:live`. A budget's keys expire when idle for the rest of its window or the
/// spend reservation TTL, whichever is longer, plus a minute. A budget whose cap or thresholds change
/// keeps its window's spend.
///
/// ```no_run
/// use tollgate::{Budget, Micros, PriceTable, ThrottleLayer};
/// use tollgate_redis::RedisStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // The same lines in every process: $100 a day for the whole fleet.
/// let store = RedisStore::builder("redis://127.0.0.1:6379").hash_tag("org-1").build().await?;
/// let layer = ThrottleLayer::builder()
///     .prices(PriceTable::example())
///     .budget("global", Budget::daily(Micros::from_dollars(100)).build()?)
///     .build_with_store(store.clone())?;
/// # let _ = layer;
/// // The same ledger, to inspect or audit.
/// let ledger = tollgate_redis::RedisLedger::new(&store);
/// # let _ = ledger;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisLedger {
    inner: Arc<Inner>,
    /// The last state of each budget this process saw.
    seen: Arc<Mutex<HashMap<ScopeKey, BudgetState>>>,
}

impl fmt::Debug for RedisLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLedger")
            .field("keys", &self.inner.keys)
            .field("budgets_seen", &self.seen().len())
            .finish_non_exhaustive()
    }
}

// ===== impl RedisLedger =====

impl RedisLedger {
    /// The ledger of `store`: same connection, keys, timeout and reservation TTL. The layer gets
    /// one through [`Store::ledger`](tollgate::Store::ledger); build one yourself to settle and
    /// wait ([`settle_and_wait`](Self::settle_and_wait)).
    pub fn new(store: &RedisStore) -> Self {
        RedisLedger {
            inner: store.inner.clone(),
            seen: Arc::default(),
        }
    }

    /// Settles a hold as [`Ledger::settle`] does (and fires the alerts it crossed through
    /// `alerts`), but waits for Redis. Returns the alerts with the index of their budget, or
    /// `None` when the reservation was settled or released before: then nothing changed. A
    /// settle whose reply is lost is sent again up to 3 times (see above) and returns the
    /// alerts of the settle that was applied; so this waits at most 4 timeouts and 350 ms.
    /// For audits and tests; the layer uses the background settle.
    ///
    /// # Errors
    /// Redis failed, or did not answer within the timeout, at every attempt; the settle is then
    /// kept and retried in the background, as [`Ledger::settle`] would (and its alerts fire
    /// through `alerts` when it is taken).
    pub async fn settle_and_wait(
        &self,
        hold: LedgerHold,
        budgets: &[BudgetRef<'_>],
        now_unix: u64,
        actual: Micros,
        alerts: &Alerts,
    ) -> Result<Option<Vec<(usize, Alert)>>, Error> {
        let op = self.settle_op(&hold, budgets, now_unix, Some(actual), alerts);
        let inner = &self.inner;
        match inner
            .invoke_settle::<Vec<i64>>(&inner.scripts.ledger_settle, &op.keys, &op.args)
            .await
        {
            Ok(reply) => {
                inner.health.succeeded();
                let owned = owned(budgets);
                let fired =
                    self.applied(&reply, &owned, now_unix, hold.estimate(), Some(actual))?;
                for (i, alert) in fired.iter().flatten() {
                    alerts.fire(&owned[*i].0, *alert);
                }
                Ok(fired)
            }
            Err(e) => {
                inner.health.failed(&e, inner.fails_open());
                inner.keep(op);
                Err(e)
            }
        }
    }

    fn seen(&self) -> MutexGuard<'_, HashMap<ScopeKey, BudgetState>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Ledger for RedisLedger {
    fn reserve(&self, budgets: &[BudgetRef<'_>], now_unix: u64, estimate: Micros) -> Reserve {
        if self.inner.health.route() == Route::Away {
            // Spend caps fail closed, whatever the fail mode of the rate limits.
            let err = StoreError::new(Error::unavailable());
            return Reserve::Pending(Box::pin(std::future::ready(Err(err))));
        }
        let (keys, args) = self.reserve_call(budgets, now_unix, estimate);
        let owned = owned(budgets);
        let (tx, rx) = oneshot::channel::<Result<Result<Delivered, Refused>, StoreError>>();
        let this = self.clone();
        // The round trip runs in its own task, so that a reservation made for a call dropped
        // meanwhile is still read, and given back: by the task when the call is gone already,
        // or by the delivered hold's drop when the call goes before taking it.
        self.inner.runtime.spawn(async move {
            let answer = this
                .reserved(&keys, &args, &owned, now_unix, estimate)
                .await
                .map(|r| {
                    r.map(|hold| Delivered {
                        hold: Some(hold),
                        ledger: this.clone(),
                        owned: owned.clone(),
                    })
                });
            drop(tx.send(answer));
        });
        Reserve::Pending(Box::pin(async move {
            match rx.await {
                Ok(answer) => answer.map(|r| r.map(Delivered::take)),
                Err(_) => Err(StoreError::new(Error::reply(
                    "the reservation's task ended without an answer",
                ))),
            }
        }))
    }

    fn settle(
        &self,
        hold: LedgerHold,
        budgets: &[BudgetRef<'_>],
        now_unix: u64,
        actual: Micros,
        alerts: &Alerts,
    ) {
        let op = self.settle_op(&hold, budgets, now_unix, Some(actual), alerts);
        self.inner.send(op);
    }

    fn release(&self, hold: LedgerHold, budgets: &[BudgetRef<'_>]) {
        // A release never crosses a threshold; the window only matters for the keys' expiry.
        let now_unix = budgets
            .first()
            .and_then(|b| self.seen().get(b.scope).map(|s| s.window_start))
            .unwrap_or(0);
        let op = self.settle_op(&hold, budgets, now_unix, None, &Alerts::default());
        self.inner.send(op);
    }

    fn spent(&self, b: BudgetRef<'_>, now_unix: u64) -> Option<SpendStats> {
        let mut s = *self.seen().get(b.scope)?;
        s.roll(b.budget, now_unix);
        Some(SpendStats {
            spent: s.spent,
            reserved: s.reserved,
            cap: b.budget.cap(),
            resets_at: s.resets_at(b.budget),
        })
    }

    fn is_shared(&self) -> bool {
        true
    }
}
