//! The spend ledger: money budgets per scope and window ([`tollgate_core::Budget`]) kept in
//! Redis, so that every process draws from one cap. Reserve an estimate before a call, settle the
//! real cost after it (or release it), all or nothing across the budgets of a call, in one script
//! each. Unlike the rate limits, spend always fails closed: when Redis does not answer, the call
//! gets an error, never a local guess.
//!
//! The semantics are [`tollgate_core::BudgetState`]'s (admitted iff `spent + reserved +
//! estimate ≤ cap`; spend counts in the window where the call settles; each threshold alerts
//! once per window), on the server's clock: the process computes each budget's window from its
//! idea of the server's time and the script checks it against `TIME`, so a process whose clock
//! is off by a window boundary asks again with the server's time.

use super::writer::Arg;
use super::Inner;
use crate::{Error, RedisStore};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;
use tollgate::ScopeKey;
use tollgate_core::{Budget, Micros};

/// How many times a script is sent again with the server's time when the windows computed from
/// this process's idea of it were off (at a window boundary).
const WINDOW_RETRIES: usize = 3;

/// A ledger outlives its window by this much, so calls in flight can settle into it.
const KEEP_AFTER_RESET: Duration = Duration::from_secs(3_600);

/// Money a call holds in the spend ledger between [`RedisStore::reserve_spend`] and
/// [`RedisStore::settle_spend`] (or [`RedisStore::release_spend`]).
#[derive(Debug)]
#[must_use = "a reservation holds budget until it is settled or released"]
pub struct SpendReservation {
    id: String,
    budgets: Vec<(ScopeKey, Budget)>,
    estimate: Micros,
}

impl SpendReservation {
    /// The estimate reserved in every budget of the call.
    pub fn estimate(&self) -> Micros {
        self.estimate
    }
}

/// The answer of [`RedisStore::reserve_spend`].
#[derive(Debug)]
pub enum SpendDecision {
    /// Every budget took the estimate.
    Reserved(SpendReservation),
    /// A budget has no room; nothing was reserved anywhere.
    Refused(SpendRefused),
}

/// Why [`RedisStore::reserve_spend`] refused: `spent + reserved + estimate > cap` in one budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpendRefused {
    /// The budget that refused (its index in the call's budgets).
    pub budget: usize,
    /// What the window has spent.
    pub spent: Micros,
    /// What calls in flight hold.
    pub reserved: Micros,
    /// The budget's cap.
    pub cap: Micros,
    /// When the window resets (Unix seconds, by the server's clock).
    pub resets_at: u64,
    /// The estimate alone is above the cap: no window will ever take it.
    pub never_fits: bool,
}

/// A threshold crossed for the first time in its window (each fires once per window, whichever
/// process settled the call that crossed it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpendAlert {
    /// The budget (its index in the call's budgets).
    pub budget: usize,
    /// The threshold's index in [`Budget::thresholds`].
    pub threshold: usize,
    /// The window's spend right after the call that crossed it.
    pub spent: Micros,
}

/// Money and times pass through Lua doubles: exact below 2^53 (9 billion dollars).
fn exact(m: Micros) -> f64 {
    m.as_u64().min(1 << 53) as f64
}

fn micros(v: i64) -> Micros {
    Micros::new(u64::try_from(v).unwrap_or(0))
}

impl Inner {
    /// The server's time in Unix seconds, as this process last saw it plus what has passed.
    fn server_secs(&self) -> u64 {
        let (secs, at) = *self.server_clock.lock().unwrap_or_else(|e| e.into_inner());
        secs + at.elapsed().as_secs()
    }

    fn saw_server_secs(&self, secs: i64) {
        if let Ok(secs) = u64::try_from(secs) {
            *self.server_clock.lock().unwrap_or_else(|e| e.into_inner()) = (secs, Instant::now());
        }
    }

    /// Runs a spend script, computing the windows from the server's time (`args(now)`) and again
    /// from the time the script reports when they were off.
    async fn spend_script(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: impl Fn(u64) -> Vec<Arg>,
    ) -> Result<Vec<i64>, Error> {
        let mut now = self.server_secs();
        for _ in 0..WINDOW_RETRIES {
            let reply = self.invoke::<Vec<i64>>(script, keys, &args(now)).await?;
            match reply[..] {
                [-1, server] => {
                    self.saw_server_secs(server);
                    now = u64::try_from(server).unwrap_or(now);
                }
                [_, server, ..] => {
                    self.saw_server_secs(server);
                    return Ok(reply);
                }
                _ => return Err(Error::reply(format!("spend script returned {reply:?}"))),
            }
        }
        Err(Error::reply(
            "the spend windows kept moving under the server's clock",
        ))
    }
}

impl RedisStore {
    /// Reserves `estimate` in every one of `budgets` (each a scope key and its budget), or in
    /// none. Fails closed: an error when Redis does not answer within the timeout.
    ///
    /// ```no_run
    /// use tollgate::ScopeKey;
    /// use tollgate_core::{Budget, Micros};
    /// use tollgate_redis::{RedisStore, SpendDecision};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RedisStore::builder("redis://127.0.0.1:6379").build().await?;
    /// let team = (ScopeKey::from("team:research"), Budget::daily(Micros::from_dollars(50)).build()?);
    /// match store.reserve_spend(&[team], Micros::from_cents(12)).await? {
    ///     SpendDecision::Reserved(held) => {
    ///         // … the call; then its real cost:
    ///         let alerts = store.settle_spend(held, Micros::from_cents(9)).await?;
    ///         assert!(alerts.is_empty());
    ///     }
    ///     SpendDecision::Refused(why) => println!("no budget left until {}", why.resets_at),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// Redis failed or did not answer within the timeout.
    pub async fn reserve_spend(
        &self,
        budgets: &[(ScopeKey, Budget)],
        estimate: Micros,
    ) -> Result<SpendDecision, Error> {
        let inner = &self.inner;
        let keys: Vec<String> = budgets
            .iter()
            .map(|(s, b)| inner.keys.spend(s.as_str(), b))
            .collect();
        let args = |now: u64| {
            let mut args = vec![
                Arg::Int(exact(estimate) as i64),
                (budgets.len() as u64).into(),
                KEEP_AFTER_RESET.as_secs().into(),
            ];
            args.extend(budgets.iter().map(|(_, b)| {
                Arg::doubles([
                    exact(b.cap()),
                    b.window_start(now) as f64,
                    b.next_reset(now) as f64,
                ])
            }));
            args
        };
        let reply = inner
            .spend_script(&inner.scripts.spend_reserve, &keys, args)
            .await?;
        match reply[..] {
            [1, _] => Ok(SpendDecision::Reserved(SpendReservation {
                id: format!(
                    "{}${}",
                    inner.client,
                    inner.next.fetch_add(1, Ordering::Relaxed)
                ),
                budgets: budgets.to_vec(),
                estimate,
            })),
            [0, i, spent, reserved, now] => {
                let budget = usize::try_from(i).unwrap_or(0).min(budgets.len() - 1);
                let b = &budgets[budget].1;
                Ok(SpendDecision::Refused(SpendRefused {
                    budget,
                    spent: micros(spent),
                    reserved: micros(reserved),
                    cap: b.cap(),
                    resets_at: b.next_reset(u64::try_from(now).unwrap_or(0)),
                    never_fits: estimate > b.cap(),
                }))
            }
            _ => Err(Error::reply(format!("spend_reserve returned {reply:?}"))),
        }
    }

    /// Settles a reservation with the call's real cost in every budget it was reserved in, once
    /// (a repeated settle of the same reservation changes nothing). Returns the thresholds the
    /// call crossed, in ascending order per budget.
    ///
    /// # Errors
    /// Redis failed or did not answer within the timeout: the estimate stays reserved (until the
    /// window's ledger expires).
    pub async fn settle_spend(
        &self,
        reservation: SpendReservation,
        actual: Micros,
    ) -> Result<Vec<SpendAlert>, Error> {
        let reply = self.end_spend(&reservation, Some(actual)).await?;
        Ok(reply[2..]
            .chunks_exact(3)
            .map(|c| SpendAlert {
                budget: usize::try_from(c[0]).unwrap_or(0),
                threshold: usize::try_from(c[1]).unwrap_or(0),
                spent: micros(c[2]),
            })
            .collect())
    }

    /// Gives back a reservation whose call never happened.
    ///
    /// # Errors
    /// As [`settle_spend`](Self::settle_spend).
    pub async fn release_spend(&self, reservation: SpendReservation) -> Result<(), Error> {
        self.end_spend(&reservation, None).await.map(drop)
    }

    async fn end_spend(
        &self,
        r: &SpendReservation,
        actual: Option<Micros>,
    ) -> Result<Vec<i64>, Error> {
        let inner = &self.inner;
        let keys: Vec<String> = std::iter::once(inner.keys.settled(&r.id))
            .chain(
                r.budgets
                    .iter()
                    .map(|(s, b)| inner.keys.spend(s.as_str(), b)),
            )
            .collect();
        let marker_ms = (KEEP_AFTER_RESET * 2).as_millis() as u64;
        let args = |now: u64| {
            let mut args = vec![
                Arg::Str(r.id.clone()),
                marker_ms.into(),
                Arg::Int(exact(r.estimate) as i64),
                Arg::Int(actual.map_or(-1, |a| exact(a) as i64)),
                (r.budgets.len() as u64).into(),
                KEEP_AFTER_RESET.as_secs().into(),
            ];
            args.extend(r.budgets.iter().map(|(_, b)| {
                let bounds = [b.window_start(now) as f64, b.next_reset(now) as f64];
                Arg::doubles(
                    bounds
                        .into_iter()
                        .chain(b.thresholds().iter().map(|t| exact(*t))),
                )
            }));
            args
        };
        inner
            .spend_script(&inner.scripts.spend_settle, &keys, args)
            .await
    }
}
