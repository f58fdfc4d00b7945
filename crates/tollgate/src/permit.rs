//! [`Permit`]: an admitted call whose settlement waits for the end of its answer.

use crate::feedback::Outcome;
use crate::limiter::Ticket;
use crate::{Cost, Store};
use tollgate_core::TokenUsage;

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

impl<St: Store> Deferred for Ticket<St> {
    fn estimate(&self) -> Cost {
        self.cost()
    }

    fn wants_tokens(&self) -> bool {
        Ticket::wants_tokens(self)
    }

    fn answered(&mut self, usage: Option<Cost>, tokens: Option<TokenUsage>, outcome: &Outcome) {
        Ticket::answered(self, usage, tokens, outcome);
    }
}

impl Permit {
    /// The permit of an admitted call whose answer was classified as `outcome`.
    pub(crate) fn new<St: Store>(ticket: Ticket<St>, outcome: Outcome) -> Self {
        Permit {
            call: Box::new(ticket),
            outcome,
        }
    }

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
