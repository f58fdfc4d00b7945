//! An admitted call: [`Admitted`], which holds the call's charge until it is settled (its `Drop`
//! settles a call that ends without an answer by the failure rule), and [`Permit`], the same
//! handed out to settle later, once a streamed answer's usage is known.

use super::lane::Lane;
use crate::feedback::Outcome;
use crate::spend::Account;
use crate::{Cost, Store};
use std::sync::Arc;
use tollgate_core::{Nanos, TokenUsage};

/// An admitted call. It holds what the store reserved for it and the money reserved against its
/// budgets until it is settled ([`answered`](Admitted::answered), [`fail`](Admitted::fail));
/// dropped before, it is settled by the layer's [`OnFailure`](crate::OnFailure) rule as
/// `dropped` (its future was dropped while the call was in flight).
pub(crate) struct Admitted<St: Store> {
    /// Its scopes and the limiter.
    pub(super) lane: Arc<Lane<St>>,
    /// What it was charged when admitted.
    pub(super) cost: Cost,
    /// When it was admitted, in the layer's time.
    pub(super) at: Nanos,
    /// Its place among the provider scope's admissions (0 outside that scope): the calls
    /// admitted there after it are those counted since.
    pub(super) place: u64,
    /// What the store holds for it until it is settled.
    pub(super) reservation: Option<St::Reservation>,
    pub(super) account: Option<Box<Account>>,
}

impl<St: Store> Admitted<St> {
    pub(super) fn new(
        lane: Arc<Lane<St>>,
        cost: Cost,
        at: Nanos,
        place: u64,
        reservation: Option<St::Reservation>,
        account: Option<Box<Account>>,
    ) -> Self {
        Admitted {
            lane,
            cost,
            at,
            place,
            reservation,
            account,
        }
    }

    /// What the call was charged when admitted.
    pub(crate) fn cost(&self) -> Cost {
        self.cost
    }

    /// Whether the call's detailed token usage is wanted (the layer tracks spend or logs calls).
    pub(crate) fn wants_tokens(&self) -> bool {
        self.account.is_some()
    }

    /// Acts on the call's feedback (see [`crate::feedback`]).
    pub(crate) fn feedback(&self, feedback: &crate::feedback::Feedback) {
        let admitted = crate::feedback::Admission {
            at: self.at,
            place: self.place,
        };
        crate::feedback::react(&self.lane.shared, feedback, &self.lane, admitted);
    }

    /// The call, to be settled later through a [`Permit`].
    pub(crate) fn into_permit(self, outcome: Outcome) -> Permit {
        Permit {
            call: Box::new(self),
            outcome,
        }
    }
}

impl<St: Store> Drop for Admitted<St> {
    fn drop(&mut self) {
        if self.reservation.is_some() || self.account.is_some() {
            // Not settled: the call's future (or its permit) was dropped while it ran.
            self.dropped();
        }
    }
}

impl<St: Store> std::fmt::Debug for Admitted<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admitted")
            .field("scopes", &self.lane.keys)
            .field("cost", &self.cost)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

/// An admitted call that settles later, once its usage is known: a streamed answer reports its
/// usage in its last events, so an HTTP adapter carries the permit in the response body and
/// settles it when the body ends.
///
/// The layer hands out a permit through [`ReadUsage::defer`](crate::ReadUsage::defer) when
/// [`ReadUsage::defers`](crate::ReadUsage::defers) says the answer's usage comes later. Until it
/// is settled the call keeps everything it was charged: its tokens and requests in every bucket,
/// its place under any concurrency cap, and the money reserved for it.
///
/// Dropped without [`settle`](Permit::settle) (the body was dropped before its usage came), the
/// call is settled by the layer's [`OnFailure`](crate::OnFailure) rule, as a call whose future
/// was dropped in flight.
///
/// ```
/// use tollgate::{Cost, Permit, ReadUsage, ThrottleLayer};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// /// An answer whose usage is known only when its stream ends.
/// struct Streamed { permit: Option<Permit> }
///
/// #[derive(Clone)]
/// struct Later;
/// impl ReadUsage<Streamed> for Later {
///     fn usage(&self, _: &Streamed) -> Option<Cost> { None }
///     fn defers(&self, _: &Streamed) -> bool { true }
///     fn defer(&self, res: &mut Streamed, permit: Permit) { res.permit = Some(permit); }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tollgate::BoxError> {
/// let layer = ThrottleLayer::builder()
///     .scope("global", tollgate::ScopeLimits::new().concurrency(1))
///     .estimate(|_: &()| Cost::request().with_output_tokens(1_000))
///     .read_usage(Later)
///     .build()?;
/// let limiter = layer.limiter().clone();
/// let svc = layer.layer(service_fn(|()| async { Ok::<_, std::convert::Infallible>(Streamed { permit: None }) }));
///
/// let mut answer = svc.oneshot(()).await?;
/// // The stream still runs: the call holds its place under the cap.
/// assert_eq!(limiter.scope_stats("global").unwrap().in_flight, 1);
/// let permit = answer.permit.take().unwrap();
/// assert_eq!(permit.estimate().output_tokens, 1_000);
/// // The stream ended, reporting 120 output tokens.
/// permit.settle(Some(Cost::request().with_output_tokens(120)), None);
/// assert_eq!(limiter.scope_stats("global").unwrap().in_flight, 0);
/// # Ok(())
/// # }
/// ```
pub struct Permit {
    call: Box<dyn Deferred + Send>,
    outcome: Outcome,
}

/// The settling side of an admitted call, whatever its store.
pub(crate) trait Deferred {
    fn estimate(&self) -> Cost;
    fn wants_tokens(&self) -> bool;
    fn answered(&mut self, usage: Option<Cost>, tokens: Option<TokenUsage>, outcome: &Outcome);
}

impl<St: Store> Deferred for Admitted<St> {
    fn estimate(&self) -> Cost {
        self.cost()
    }

    fn wants_tokens(&self) -> bool {
        Admitted::wants_tokens(self)
    }

    fn answered(&mut self, usage: Option<Cost>, tokens: Option<TokenUsage>, outcome: &Outcome) {
        Admitted::answered(self, usage, tokens, outcome);
    }
}

impl Permit {
    /// What the call was charged when admitted (its estimate).
    pub fn estimate(&self) -> Cost {
        self.call.estimate()
    }

    /// How the layer classified the answer's head.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// Whether the layer wants the detailed token usage (it tracks spend or logs calls), so that
    /// a reader may skip working it out otherwise.
    pub fn wants_tokens(&self) -> bool {
        self.call.wants_tokens()
    }

    /// Settles the call: `usage` is what it really cost (`None`: the estimate stays charged) and
    /// `tokens` the provider's detailed usage for the spend side (`None`: read from `usage`).
    /// The difference to the estimate is refunded, or charged as debt.
    pub fn settle(mut self, usage: Option<Cost>, tokens: Option<TokenUsage>) {
        let tokens =
            tokens.or_else(|| usage.map(|u| TokenUsage::new(u.input_tokens, u.output_tokens)));
        let outcome = self.outcome;
        self.call.answered(usage, tokens, &outcome);
    }
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("estimate", &self.estimate())
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}
