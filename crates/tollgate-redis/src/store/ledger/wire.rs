//! The wire side of [`RedisLedger`]: the scripts' keys and arguments, and their replies read back
//! through tollgate-core's arithmetic.

use super::{Answer, Owned, RedisLedger};
use crate::store::writer::{Arg, Done, Op, OpKind};
use crate::Error;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::time::Instant;
use tollgate::spend::{Alerts, BudgetRef, LedgerHold, Refused};
use tollgate::store::StoreError;
use tollgate_core::{Alert, Budget, BudgetState, Micros, Reservation};

/// The largest amount passed to a script: 2^53 − 1 µ$ (about $9 billion), where Lua's doubles
/// stop being exact. Larger caps, estimates and costs are passed as this.
const MAX_EXACT: u64 = (1 << 53) - 1;
/// How long a budget's keys outlive its window (or the reservation TTL) when idle, in seconds.
const SLACK_S: u64 = 60;
/// The id counter and the set of live reservations live this long past the TTL when idle.
const IDLE_MS: u64 = 86_400_000;

impl RedisLedger {
    /// The reserve script's keys and arguments.
    pub(super) fn reserve_call(
        &self,
        budgets: &[BudgetRef<'_>],
        now_unix: u64,
        estimate: Micros,
    ) -> (Vec<String>, Vec<Arg>) {
        let mut keys = Vec::with_capacity(2 + 2 * budgets.len());
        keys.push(self.inner.keys.named("L:id"));
        keys.push(self.inner.keys.named("L:live"));
        let idle = u64::try_from(self.inner.settings.spend_ttl.as_millis()).unwrap_or(u64::MAX);
        let mut args: Vec<Arg> = vec![
            exact(estimate).into(),
            self.ttl_us().into(),
            idle.saturating_add(IDLE_MS).into(),
        ];
        for b in budgets {
            keys.extend(self.budget_keys(b));
            args.push(b.budget.window_start(now_unix).into());
            args.push(exact(b.budget.cap()).into());
            args.push(self.keep_ms(b.budget, now_unix).into());
        }
        (keys, args)
    }

    /// A budget's hash and set of live reservations.
    pub(super) fn budget_keys(&self, b: &BudgetRef<'_>) -> [String; 2] {
        let tail = format!(
            "{}:{}:{}",
            b.budget.window(),
            b.budget.clock().utc_offset_secs(),
            b.scope.as_str()
        );
        ["b", "h"].map(|k| self.inner.keys.named(&format!("L:{k}:{tail}")))
    }

    /// How long a budget's keys live idle: the rest of the window or the TTL, plus slack.
    pub(super) fn keep_ms(&self, budget: &Budget, now_unix: u64) -> u64 {
        let window = budget.next_reset(now_unix).saturating_sub(now_unix);
        let ttl = self.inner.settings.spend_ttl.as_secs() + 1;
        window.max(ttl).saturating_add(SLACK_S).saturating_mul(1000)
    }

    pub(super) fn ttl_us(&self) -> u64 {
        u64::try_from(self.inner.settings.spend_ttl.as_micros()).unwrap_or(u64::MAX)
    }

    /// The reserve script's answer.
    pub(super) async fn reserved(
        &self,
        keys: &[String],
        args: &[Arg],
        owned: &Owned,
        now_unix: u64,
        estimate: Micros,
    ) -> Answer {
        let inner = &self.inner;
        let reply = match inner
            .invoke::<Vec<i64>>(&inner.scripts.ledger_reserve, keys, args)
            .await
        {
            Ok(reply) => {
                inner.health.succeeded();
                reply
            }
            Err(e) => {
                inner.health.failed(&e, inner.fails_open());
                return Err(StoreError::new(e));
            }
        };
        let answer = self
            .decided(&reply, owned, now_unix, estimate)
            .map_err(StoreError::new)?;
        if let Ok(hold) = &answer {
            // Renewed until settled or released: the member the script wrote in each budget's
            // set, and each budget's hash and set (the keys after the first two).
            let member = format!("{}:{}", hold.id(), exact(estimate));
            inner.renew_hold(hold.id(), member, &keys[2..]);
        }
        Ok(answer)
    }

    /// A hold, or the refusal built by tollgate-core from the refusing budget's numbers.
    pub(super) fn decided(
        &self,
        reply: &[i64],
        owned: &Owned,
        now_unix: u64,
        estimate: Micros,
    ) -> Result<Result<LedgerHold, Refused>, Error> {
        let bad = || Error::reply(format!("ledger reserve returned {reply:?}"));
        let [ok, n, ref rest @ ..] = *reply else {
            return Err(bad());
        };
        if rest.len() != 4 * owned.len() {
            return Err(bad());
        }
        let states: Vec<BudgetState> = rest
            .chunks_exact(4)
            .map(|c| state(c[0], c[1], c[2], c[3]))
            .collect();
        self.remember(owned, &states);
        if ok == 1 {
            let id = u64::try_from(n).map_err(|_| bad())?;
            return Ok(Ok(LedgerHold::new(id, estimate)));
        }
        let index = usize::try_from(n)
            .ok()
            .filter(|&i| i < owned.len())
            .ok_or_else(bad)?;
        let mut s = states[index];
        match s.reserve(&owned[index].1, now_unix, estimate) {
            Err(exhausted) => Ok(Err(Refused { index, exhausted })),
            // Only past the exact range of doubles could the script refuse what fits.
            Ok(_) => Err(bad()),
        }
    }

    pub(super) fn remember(&self, owned: &Owned, states: &[BudgetState]) {
        let mut seen = self.seen();
        for ((scope, _), s) in owned.iter().zip(states) {
            seen.insert(scope.clone(), *s);
        }
    }

    /// The settle (or, without `actual`, release) of a hold, as a background write that fires
    /// the crossed thresholds through `alerts` once Redis took it.
    pub(super) fn settle_op(
        &self,
        hold: &LedgerHold,
        budgets: &[BudgetRef<'_>],
        now_unix: u64,
        actual: Option<Micros>,
        alerts: &Alerts,
    ) -> Op {
        // Settled or released now: its renewal stops (if this settle never reaches Redis, the
        // hold expires after the TTL).
        self.inner.forget_hold(hold.id());
        let mut keys = Vec::with_capacity(2 + 2 * budgets.len());
        keys.push(self.inner.keys.named("L:live"));
        keys.push(self.inner.keys.named(&format!("L:d:{}", hold.id())));
        // The settled marker outlives every retry of this settle.
        let marker_ms = u64::try_from(self.inner.settings.spend_ttl.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_mul(2);
        // The settle's token: its retries carry the same one and get its outcome back (with the
        // thresholds it crossed) when only its reply was lost; any other settle of the hold
        // changes nothing.
        let token = format!(
            "{}.{}",
            self.inner.client,
            self.inner.next.fetch_add(1, Ordering::Relaxed)
        );
        let mut args: Vec<Arg> = vec![
            hold.id().into(),
            exact(hold.estimate()).into(),
            actual.map_or(Arg::Str(String::new()), |a| exact(a).into()),
            marker_ms.into(),
            Arg::Str(token),
        ];
        for b in budgets {
            keys.extend(self.budget_keys(b));
            args.push(b.budget.window_start(now_unix).into());
            args.push(self.keep_ms(b.budget, now_unix).into());
            let thresholds = if actual.is_some() {
                b.budget.thresholds()
            } else {
                &[]
            };
            args.push((thresholds.len() as u64).into());
            args.extend(thresholds.iter().map(|&t| exact(t).into()));
        }
        let (this, owned, alerts) = (self.clone(), owned(budgets), alerts.clone());
        let estimate = hold.estimate();
        let done = Done(Arc::new(move |v: redis::Value| {
            let reply = <Vec<i64> as redis::FromRedisValue>::from_redis_value(v);
            let fired = reply
                .map_err(|e| Error::reply(e.to_string()))
                .and_then(|r| this.applied(&r, &owned, now_unix, estimate, actual));
            match fired {
                Ok(fired) => {
                    for (i, alert) in fired.into_iter().flatten() {
                        alerts.fire(&owned[i].0, alert);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "a spend settle's reply was not understood"),
            }
        }));
        Op {
            kind: OpKind::Ledger(done),
            keys: keys.into(),
            args,
            give_up: Instant::now() + self.inner.settings.spend_ttl,
        }
    }

    /// Reads the settle script's reply: `None` when the reservation was not live (or settled by
    /// another settle), else the thresholds crossed (computed by tollgate-core from the numbers
    /// before the settle; the same again for a retry whose first reply was lost).
    pub(super) fn applied(
        &self,
        reply: &[i64],
        owned: &Owned,
        now_unix: u64,
        estimate: Micros,
        actual: Option<Micros>,
    ) -> Result<Option<Vec<(usize, Alert)>>, Error> {
        let bad = || Error::reply(format!("ledger settle returned {reply:?}"));
        match reply {
            [0] => return Ok(None),
            [1, rest @ ..] if rest.len() == 5 * owned.len() => {}
            _ => return Err(bad()),
        }
        let mut fired = Vec::new();
        let mut states = Vec::with_capacity(owned.len());
        for (i, c) in reply[1..].chunks_exact(5).enumerate() {
            let (ws, before, fired_before, after, reserved) = (c[0], c[1], c[2], c[3], c[4]);
            if let Some(actual) = actual {
                let mut s = state(ws, before, estimate.as_u64() as i64, fired_before);
                let budget = &owned[i].1;
                let crossed = s.settle(budget, now_unix, Reservation::new(estimate), actual);
                fired.extend(crossed.into_iter().map(|a| (i, a)));
            }
            states.push(state(ws, after, reserved, fired_before));
        }
        self.remember(owned, &states);
        Ok(Some(fired))
    }
}

pub(super) fn owned(budgets: &[BudgetRef<'_>]) -> Owned {
    budgets
        .iter()
        .map(|b| (b.scope.clone(), b.budget.clone()))
        .collect()
}

/// An amount as a script takes it.
fn exact(m: Micros) -> u64 {
    m.as_u64().min(MAX_EXACT)
}

/// A budget's state from a script's numbers; `fired` counts the first thresholds.
fn state(ws: i64, spent: i64, reserved: i64, fired: i64) -> BudgetState {
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    BudgetState {
        window_start: n(ws),
        spent: Micros::new(n(spent)),
        reserved: Micros::new(n(reserved)),
        fired: match n(fired) {
            f if f >= 64 => u64::MAX,
            f => (1 << f) - 1,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fired_counts_are_the_first_bits() {
        assert_eq!(state(0, 0, 0, 0).fired, 0);
        assert_eq!(state(0, 0, 0, 3).fired, 0b111);
        assert_eq!(state(0, 0, 0, 64).fired, u64::MAX);
        assert_eq!(state(-1, -5, 7, 1).spent, Micros::ZERO);
    }

    #[test]
    fn amounts_stay_exact_in_doubles() {
        assert_eq!(exact(Micros::new(u64::MAX)), MAX_EXACT);
        assert_eq!(MAX_EXACT as f64 as u64, MAX_EXACT);
        assert_eq!(exact(Micros::new(42)), 42);
    }
}
