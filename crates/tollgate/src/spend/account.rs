//! [`Account`]: the money and call-log side of one call, from the moment the layer sees it to its
//! settlement: its price and estimate, the money it reserves against its budgets (or waits for,
//! held at a cap), what it is billed, and its line in the call log.

#[cfg(feature = "call-log")]
use super::{rfc3339_ms, CallRecord, EstimateRecord, TokensRecord};
use super::{CallBudgets, LedgerFuture, LedgerHold, MoneyStep, OnCap, Refusal, Spend};
use crate::clock::{self, Clock};
use crate::{Cost, Priority, ScopeKey, Scopes, ThrottleError};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tollgate_core::{Micros, Price, TokenUsage};

/// The money and log side of one call, carried from its wait to its settlement. Only calls of a
/// layer with budgets, prices or a call log have one.
#[cfg_attr(not(feature = "call-log"), allow(dead_code))] // what only the log reads
pub(crate) struct Account {
    /// Every scope key of the call (`always` first).
    keys: Scopes,
    model: Option<String>,
    attempt: u32,
    priority: Priority,
    /// The estimated cost in tokens.
    cost: Cost,
    price: Option<Price>,
    /// The estimated cost in money (an upper bound when the token estimate is one).
    estimate: Micros,
    /// The call's budgets.
    budgets: CallBudgets,
    /// The money reserved against them, once it is.
    hold: Option<LedgerHold>,
    /// A reservation a shared ledger is making.
    pending: Option<LedgerFuture>,
    /// The timer of a call held at a cap.
    sleep: Option<Pin<Box<Sleep>>>,
    /// Whether its waker is registered with the held calls.
    waiting: bool,
    /// When the call was admitted.
    admitted: Option<Instant>,
    /// How long it waited for admission.
    waited: Duration,
}

/// What a settled call is billed, in tokens.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Billed {
    /// What the provider reported.
    Reported(TokenUsage),
    /// The tokens left charged in the buckets.
    Charged,
    /// Nothing: the provider turned the call away.
    Nothing,
}

/// Who the call is, for [`Account::open`].
pub(crate) struct Caller<'a> {
    /// The scope keys the call's hook gave.
    pub(crate) keys: &'a Scopes,
    /// Keys charged on every call.
    pub(crate) always: &'a [ScopeKey],
    pub(crate) cost: Cost,
    pub(crate) priority: Priority,
    pub(crate) model: Option<&'a str>,
    pub(crate) attempt: u32,
}

impl Account {
    /// The account of a call: its keys, price and estimate, or the error that ends it at once
    /// (logged).
    pub(crate) fn open(
        spend: &Spend,
        clock: &Clock,
        caller: Caller<'_>,
    ) -> Result<Box<Account>, ThrottleError> {
        let mut keys: Scopes = caller.always.iter().cloned().collect();
        for k in caller.keys {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
        let model = caller.model.unwrap_or("");
        let mut account = Box::new(Account {
            budgets: CallBudgets::new(),
            keys,
            model: caller.model.map(str::to_owned),
            attempt: caller.attempt,
            priority: caller.priority,
            cost: caller.cost,
            price: None,
            estimate: Micros::ZERO,
            hold: None,
            pending: None,
            sleep: None,
            waiting: false,
            admitted: None,
            waited: Duration::ZERO,
        });
        if let Some(table) = &spend.prices {
            match table.lookup(model) {
                Ok(found) => {
                    if found.is_default() {
                        spend.warn_default_price(model);
                    }
                    account.price = Some(*found.price());
                }
                Err(e) => {
                    let err = ThrottleError::unknown_model(e);
                    account.refused(spend, clock, None, &err);
                    return Err(err);
                }
            }
        }
        account.estimate = account.price.map_or(Micros::ZERO, |p| {
            p.upper_bound(caller.cost.input_tokens, caller.cost.output_tokens)
        });
        account.budgets = spend.budgets(&account.keys);
        Ok(account)
    }

    /// Reserves the call's estimated cost against its budgets (the call has the id `id`, its
    /// maximum wait ends at `deadline`); `Pending` while it is held at a cap or a pause.
    pub(crate) fn reserve(
        &mut self,
        spend: &Spend,
        clock: &Clock,
        id: u64,
        deadline: Option<Instant>,
        cx: &mut Context<'_>,
        now: Instant,
    ) -> Poll<Result<(), ThrottleError>> {
        if self.hold.is_some() {
            return Poll::Ready(Ok(()));
        }
        // Read before asking, so that money coming back between a refusal and the registration
        // of the waker below is not missed.
        let seen = spend.epoch();
        let step = match &mut self.pending {
            Some(fut) => match fut.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(answer) => {
                    self.pending = None;
                    match answer {
                        Ok(Ok(hold)) => MoneyStep::Held(hold),
                        Ok(Err(refused)) => {
                            MoneyStep::Refused(spend.refusal(&self.budgets, refused))
                        }
                        // Spend caps fail closed.
                        Err(e) => return Poll::Ready(Err(ThrottleError::store(e))),
                    }
                }
            },
            None => spend.reserve(
                &self.keys,
                &self.budgets,
                clock.unix_secs(now),
                self.estimate,
            ),
        };
        let refusal = match step {
            MoneyStep::Held(hold) => {
                self.hold = Some(hold);
                self.sleep = None;
                if std::mem::take(&mut self.waiting) {
                    spend.forget(id);
                }
                return Poll::Ready(Ok(()));
            }
            MoneyStep::Pending(fut) => {
                self.pending = Some(fut);
                return self.reserve(spend, clock, id, deadline, cx, now);
            }
            MoneyStep::Refused(r) => r,
        };
        let (err, until) = match refusal {
            Refusal::Exhausted(scope, e) => {
                let never = e.never_fits();
                let reset = e.resets_at();
                let err = ThrottleError::budget(scope, e);
                if never {
                    return Poll::Ready(Err(err));
                }
                (err, Some(clock.at_unix_secs(reset)))
            }
            Refusal::Paused(scope) => (ThrottleError::paused(scope), None),
        };
        if spend.on_cap == OnCap::Refuse || deadline.is_some_and(|d| now >= d) {
            return Poll::Ready(Err(err));
        }
        // Held: woken by a settle, a release, a resume, the window's reset or the deadline; with
        // a shared ledger also every second, since other processes' settles wake no one here.
        spend.wait(id, cx.waker(), seen);
        self.waiting = true;
        let poll_again = spend.is_shared().then(|| now + Duration::from_secs(1));
        if let Some(at) = clock::earliest(clock::earliest(until, poll_again), deadline) {
            clock::sleep_until(&mut self.sleep, at, cx);
        }
        Poll::Pending
    }

    /// Gives back what a call that never ran holds: its money, and its place among the calls
    /// held at a cap.
    pub(crate) fn give_back(&mut self, spend: &Spend, id: u64) {
        if let Some(hold) = self.hold.take() {
            spend.release(hold, &self.budgets);
        }
        if std::mem::take(&mut self.waiting) {
            spend.forget(id);
        }
    }

    /// The call was admitted at `now` after waiting `waited`.
    pub(crate) fn admitted(&mut self, now: Instant, waited: Duration) {
        self.admitted = Some(now);
        self.waited = waited;
    }

    /// Ends a call that the layer refused after it arrived at `arrived` (`None`: at once), with
    /// `err`: gives back what it holds (its id is `id`) and logs it.
    pub(crate) fn refuse(
        &mut self,
        spend: &Spend,
        clock: &Clock,
        id: u64,
        arrived: Option<Instant>,
        err: &ThrottleError,
    ) {
        self.give_back(spend, id);
        self.refused(spend, clock, arrived, err);
    }

    /// Logs a call the layer refused after waiting since `arrived` (`None`: not at all).
    pub(crate) fn refused(
        &self,
        spend: &Spend,
        clock: &Clock,
        arrived: Option<Instant>,
        err: &ThrottleError,
    ) {
        let now = clock::now();
        let waited = arrived.map_or(Duration::ZERO, |a| now - a);
        let ending = Ending {
            now,
            waited,
            real: None,
            cost: Micros::ZERO,
            outcome: "refused",
            refused: Some(err),
        };
        self.log(spend, clock, &ending);
    }

    /// Settles the money of an admitted call at `now`: it cost `actual` in its buckets, is
    /// billed `billed`, and ended with `outcome`. Writes its line in the call log.
    pub(crate) fn settle(
        mut self: Box<Self>,
        spend: &Spend,
        clock: &Clock,
        now: Instant,
        actual: Cost,
        billed: Billed,
        outcome: &'static str,
    ) {
        let charged_tokens = TokenUsage::new(actual.input_tokens, actual.output_tokens);
        let used = match billed {
            Billed::Reported(t) => Some(t),
            Billed::Charged => Some(charged_tokens),
            Billed::Nothing => None,
        };
        let cost = match (self.price, used) {
            (Some(p), Some(u)) => p.cost_of(u),
            _ => Micros::ZERO,
        };
        if let Some(hold) = self.hold.take() {
            spend.settle(hold, &self.budgets, clock.unix_secs(now), cost);
        }
        // The log's `actual` is what the provider reported, or the charge of a success.
        let real = match billed {
            Billed::Reported(t) => Some(t),
            _ => (outcome == "ok").then_some(charged_tokens),
        };
        let ending = Ending {
            now,
            waited: self.waited,
            real,
            cost,
            outcome,
            refused: None,
        };
        self.log(spend, clock, &ending);
    }

    /// Without the call log, nothing is written.
    #[cfg(not(feature = "call-log"))]
    fn log(&self, _: &Spend, _: &Clock, _: &Ending<'_>) {}

    /// Writes the call's record to the call log, if there is one.
    #[cfg(feature = "call-log")]
    fn log(&self, spend: &Spend, clock: &Clock, end: &Ending<'_>) {
        let Some(log) = &spend.log else {
            return;
        };
        let unix_ms = clock.unix_ms(end.now);
        // It reached the layer `waited` before its admission (or before now, if never admitted).
        let arrived = self.admitted.unwrap_or(end.now).checked_sub(end.waited);
        let estimated = self.cost;
        log.write(CallRecord {
            v: CallRecord::FORMAT_VERSION,
            arrived_unix_ms: arrived.map(|a| clock.unix_ms(a)),
            time: rfc3339_ms(unix_ms),
            unix_ms,
            scopes: self.keys.iter().map(|k| k.as_str().to_owned()).collect(),
            priority: self.priority.0,
            attempt: self.attempt,
            model: self.model.clone(),
            estimated: EstimateRecord {
                requests: estimated.requests,
                input_tokens: estimated.input_tokens,
                output_tokens: estimated.output_tokens,
            },
            actual: end.real.map(|u| TokensRecord {
                input_tokens: u.input,
                output_tokens: u.output,
                cache_read: u.cache_read,
                cache_write: u.cache_write,
            }),
            estimated_cost_micros: self.estimate.as_u64(),
            cost_micros: end.cost.as_u64(),
            cost_usd: end.cost.as_dollars_f64(),
            wait_ms: clock::millis(end.waited),
            latency_ms: self.admitted.map(|a| clock::millis(end.now - a)),
            outcome: end.outcome.to_owned(),
            refused_because: end.refused.map(ToString::to_string),
        });
    }
}

/// How a call ended, for its line in the call log.
#[cfg_attr(not(feature = "call-log"), allow(dead_code))]
struct Ending<'a> {
    now: Instant,
    /// How long it waited for admission (or until it was refused).
    waited: Duration,
    /// Its real token usage, when known.
    real: Option<TokenUsage>,
    /// What it cost.
    cost: Micros,
    outcome: &'static str,
    refused: Option<&'a ThrottleError>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("keys", &self.keys)
            .field("model", &self.model)
            .field("estimate", &self.estimate)
            .field("hold", &self.hold)
            .finish_non_exhaustive()
    }
}
