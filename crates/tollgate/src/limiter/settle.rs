//! Settlement: an admitted call's charge reconciled with what it really cost, in the store and on
//! the money side, and the waiting calls told when that gave capacity back.

use super::permit::Admitted;
use crate::clock;
use crate::feedback::Outcome;
use crate::spend::Billed;
use crate::store::Settlement;
use crate::{Cost, Store};
use tollgate_core::TokenUsage;

/// What a failed call (an error from the inner service, or a future dropped while the call was in
/// flight) is charged, since no usage is known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "toml", derive(serde::Deserialize))]
#[cfg_attr(feature = "toml", serde(rename_all = "snake_case"))]
pub enum OnFailure {
    /// Keep the whole estimate charged.
    Keep,
    /// Refund the estimated output tokens, keep the request and the input tokens. The default:
    /// providers count a failed request and the prompt they read, but no output was produced.
    #[default]
    RefundOutput,
    /// Refund all tokens, keep the request.
    RefundTokens,
    /// Refund everything.
    RefundAll,
}

impl OnFailure {
    /// What a call charged `charged` is left charged when it fails.
    fn actual(self, charged: Cost) -> Cost {
        match self {
            OnFailure::Keep => charged,
            OnFailure::RefundOutput => charged.with_output_tokens(0),
            OnFailure::RefundTokens => charged.with_input_tokens(0).with_output_tokens(0),
            OnFailure::RefundAll => Cost::ZERO,
        }
    }
}

impl<St: Store> Admitted<St> {
    /// What the call is left charged when it fails.
    fn failed_charge(&self) -> Cost {
        self.lane.shared.settings.on_failure.actual(self.cost)
    }

    /// Settles a call that got an answer. A success is charged its real usage (`None`: the
    /// estimate stays charged). Any other answer without a reported usage is charged by the
    /// failure rule in the buckets, and costs no money when the provider turned the call away
    /// (rate limited, overloaded, spend cap: nothing was billed), else the failure rule's tokens.
    pub(crate) fn answered(
        &mut self,
        usage: Option<Cost>,
        tokens: Option<TokenUsage>,
        outcome: &Outcome,
    ) {
        let reported = usage.map(|u| Cost {
            requests: self.cost.requests,
            ..u
        });
        let success = *outcome == Outcome::Success;
        let actual = match reported {
            Some(u) => u,
            None if success => self.cost,
            None => self.failed_charge(),
        };
        let billed = match tokens {
            Some(t) => Billed::Reported(t),
            None if reported.is_some() || success => Billed::Charged,
            None => match outcome {
                Outcome::RateLimited { .. }
                | Outcome::Overloaded { .. }
                | Outcome::SpendCapReached => Billed::Nothing,
                _ => Billed::Charged,
            },
        };
        self.settle(actual, billed, outcome.log_name());
    }

    /// Settles a call whose inner service failed.
    pub(crate) fn fail(&mut self) {
        self.settle(self.failed_charge(), Billed::Charged, "error");
    }

    /// Settles a call dropped in flight.
    pub(super) fn dropped(&mut self) {
        self.settle(self.failed_charge(), Billed::Charged, "dropped");
    }

    fn settle(&mut self, actual: Cost, billed: Billed, outcome: &'static str) {
        // A refund gives the same buckets at any time after admission (a bucket refunded below
        // the present is simply full), so it is booked at the admission's time and the clock is
        // not read again; a shortfall is charged as debt from now.
        let c = self.cost;
        let debt = actual.requests > c.requests
            || actual.input_tokens > c.input_tokens
            || actual.output_tokens > c.output_tokens;
        let read = (debt || self.account.is_some()).then(clock::now);
        let shared = &self.lane.shared;
        if let Some(r) = self.reservation.take() {
            let now = read.map_or(self.at, |t| shared.clock.nanos(t));
            (shared.store).settle_with(&self.lane.handle, r, Settlement { now, actual });
            self.wake_if_given_back(actual);
        }
        if let (Some(account), Some(now)) = (self.account.take(), read) {
            if let Some(spend) = &shared.spend {
                account.settle(spend, &shared.clock, now, actual, billed, outcome);
            }
        }
    }

    /// Tells the waiting calls (see [`crate::wake`]) if this call, settled at `actual`, gave
    /// something back: a refund to a bucket, or its place under a concurrency cap (which limits
    /// set since it was admitted may have added). Woken otherwise, the calls a bucket or a cap
    /// refused would ask again and be refused again.
    #[inline]
    fn wake_if_given_back(&self, actual: Cost) {
        let lane = &self.lane;
        let c = self.cost;
        let refund =
            actual != c && (lane.dimensions.iter()).any(|&d| actual.amount(d) < c.amount(d));
        if refund || lane.capped || !lane.is_current() {
            lane.shared.waiters.gave_back();
        }
    }
}
