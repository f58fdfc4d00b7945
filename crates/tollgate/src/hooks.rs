//! Hooks that tell the layer about a call: its scopes, its priority, its estimated cost, and its
//! real usage once the response is in. Each has a default and is implemented by closures.

use crate::{Cost, Priority, ScopeKey, Scopes};
use smallvec::smallvec;
use tollgate_core::TokenUsage;

/// Maps a request to the scopes it belongs to (global, team, workflow, agent).
///
/// Implemented by closures `Fn(&Req) -> Scopes`. The scopes named by
/// [`ThrottleBuilder::always`](crate::ThrottleBuilder::always) are added to every call.
///
/// ```
/// use tollgate::{ExtractScopes, ScopeKey, Scopes};
/// use smallvec::smallvec;
///
/// struct Call { team: &'static str, agent: u32 }
/// let extract = |c: &Call| -> Scopes {
///     smallvec![ScopeKey::from(c.team), ScopeKey::from(format!("agent:{}", c.agent))]
/// };
/// let scopes = extract.scopes(&Call { team: "team:marketing", agent: 3 });
/// assert_eq!(scopes[1].as_str(), "agent:3");
/// ```
pub trait ExtractScopes<Req> {
    /// The scopes of `req`.
    fn scopes(&self, req: &Req) -> Scopes;
}

impl<Req, F> ExtractScopes<Req> for F
where
    F: Fn(&Req) -> Scopes,
{
    fn scopes(&self, req: &Req) -> Scopes {
        self(req)
    }
}

/// The default key extractor: every call belongs to the scope `"global"` only.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalScope;

impl<Req> ExtractScopes<Req> for GlobalScope {
    fn scopes(&self, _: &Req) -> Scopes {
        smallvec![ScopeKey::GLOBAL]
    }
}

/// Estimates what a call will cost before it is made: requests, input tokens, output tokens.
///
/// A good estimate is an *upper bound*: prompt characters / 4 for input and the request's
/// `max_tokens` for output (what the provider itself reserves). The real usage settles the
/// difference after the call.
///
/// ```
/// use tollgate::{Cost, EstimateCost};
///
/// struct Call { prompt: String, max_tokens: u64 }
/// let estimate = |c: &Call| Cost::request()
///     .with_input_tokens(c.prompt.len() as u64 / 4)
///     .with_output_tokens(c.max_tokens);
/// let cost = estimate.estimate(&Call { prompt: "x".repeat(400), max_tokens: 256 });
/// assert_eq!((cost.input_tokens, cost.output_tokens), (100, 256));
/// ```
pub trait EstimateCost<Req> {
    /// The estimated cost of `req`.
    fn estimate(&self, req: &Req) -> Cost;
}

impl<Req, F> EstimateCost<Req> for F
where
    F: Fn(&Req) -> Cost,
{
    fn estimate(&self, req: &Req) -> Cost {
        self(req)
    }
}

/// The default estimator: one request and no tokens.
#[derive(Clone, Copy, Debug, Default)]
pub struct OneRequest;

impl<Req> EstimateCost<Req> for OneRequest {
    fn estimate(&self, _: &Req) -> Cost {
        Cost::request()
    }
}

/// Reads a call's real usage from its response. `None` keeps the estimate as the charge.
///
/// The `requests` field of the returned cost is ignored: a call is always one request.
///
/// ```
/// use tollgate::{Cost, ReadUsage};
///
/// struct Reply { input_tokens: u64, output_tokens: u64 }
/// let usage = |r: &Reply| Some(Cost::request().with_input_tokens(r.input_tokens).with_output_tokens(r.output_tokens));
/// assert_eq!(usage.usage(&Reply { input_tokens: 10, output_tokens: 5 }).unwrap().output_tokens, 5);
/// ```
pub trait ReadUsage<Res> {
    /// The real cost of the call that produced `res`.
    fn usage(&self, res: &Res) -> Option<Cost>;

    /// The real usage in the detail that prices need (prompt-cache reads and writes apart). Only
    /// asked when the layer tracks spend; by default the input and output tokens of
    /// [`usage`](ReadUsage::usage), with no cache tokens.
    fn tokens(&self, res: &Res) -> Option<TokenUsage> {
        self.usage(res)
            .map(|c| TokenUsage::new(c.input_tokens, c.output_tokens))
    }

    /// Whether the usage of `res` is known only later (a response body that streams it): the
    /// layer then hands the call's [`Permit`](crate::Permit) to [`defer`](ReadUsage::defer)
    /// instead of settling the call now. By default `false`.
    fn defers(&self, res: &Res) -> bool {
        let _ = res;
        false
    }

    /// Takes the call's permit into `res`, to settle it when the usage is known (asked only when
    /// [`defers`](ReadUsage::defers) said so). The call holds its charge, its concurrency slot
    /// and its money until then. By default the permit is dropped, which settles the call by the
    /// layer's [`OnFailure`](crate::OnFailure) rule.
    fn defer(&self, res: &mut Res, permit: crate::Permit) {
        let _ = res;
        drop(permit);
    }
}

impl<Res, F> ReadUsage<Res> for F
where
    F: Fn(&Res) -> Option<Cost>,
{
    fn usage(&self, res: &Res) -> Option<Cost> {
        self(res)
    }
}

/// The default usage reader: reads nothing, so the estimate stays charged.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeepEstimate;

impl<Res> ReadUsage<Res> for KeepEstimate {
    fn usage(&self, _: &Res) -> Option<Cost> {
        None
    }
}

/// Gives a call its [`Priority`].
///
/// ```
/// use tollgate::{AssignPriority, Priority};
///
/// struct Call { critical: bool }
/// let prio = |c: &Call| if c.critical { Priority::CRITICAL } else { Priority::BACKGROUND };
/// assert_eq!(prio.priority(&Call { critical: true }), Priority::CRITICAL);
/// ```
pub trait AssignPriority<Req> {
    /// The priority of `req`.
    fn priority(&self, req: &Req) -> Priority;
}

impl<Req, F> AssignPriority<Req> for F
where
    F: Fn(&Req) -> Priority,
{
    fn priority(&self, req: &Req) -> Priority {
        self(req)
    }
}

/// The default: every call has [`Priority::default()`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SamePriority;

impl<Req> AssignPriority<Req> for SamePriority {
    fn priority(&self, _: &Req) -> Priority {
        Priority::default()
    }
}

/// Tells what the layer cannot see in a request by itself: the model it calls (to price it) and
/// its attempt number (for the call log). Only asked when the layer tracks spend or logs calls.
///
/// [`ThrottleBuilder::model`](crate::ThrottleBuilder::model) takes a closure that names the model
/// ([`ModelFn`]); implement the trait to tell the attempt too.
///
/// ```
/// use tollgate::CallMeta;
///
/// struct Req { model: String, attempt: u32 }
/// struct Meta;
/// impl CallMeta<Req> for Meta {
///     fn model<'r>(&self, req: &'r Req) -> Option<&'r str> {
///         Some(&req.model)
///     }
///     fn attempt(&self, req: &Req) -> u32 {
///         req.attempt
///     }
/// }
/// let req = Req { model: "claude-haiku-4-5".into(), attempt: 2 };
/// assert_eq!(Meta.model(&req), Some("claude-haiku-4-5"));
/// let by_closure = tollgate::ModelFn::new(|r: &Req| Some(r.model.as_str()));
/// assert_eq!(by_closure.attempt(&req), 1);
/// ```
pub trait CallMeta<Req> {
    /// The model the call asks for, if known.
    fn model<'r>(&self, req: &'r Req) -> Option<&'r str>;

    /// The attempt number, 1 for a first try.
    fn attempt(&self, req: &Req) -> u32 {
        let _ = req;
        1
    }
}

/// A [`CallMeta`] from a closure that names the model (every call is a first attempt).
#[derive(Clone, Copy, Debug)]
pub struct ModelFn<F>(F);

impl<F> ModelFn<F> {
    /// Wraps `f`. The bound here lets the compiler see that the returned name borrows from the
    /// request.
    pub fn new<Req>(f: F) -> Self
    where
        F: Fn(&Req) -> Option<&str>,
    {
        ModelFn(f)
    }
}

impl<Req, F> CallMeta<Req> for ModelFn<F>
where
    F: Fn(&Req) -> Option<&str>,
{
    fn model<'r>(&self, req: &'r Req) -> Option<&'r str> {
        (self.0)(req)
    }
}

/// The default metadata hook: no model (calls are priced by the price table's default price, if
/// it has one), first attempt.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMeta;

impl<Req> CallMeta<Req> for NoMeta {
    fn model<'r>(&self, _: &'r Req) -> Option<&'r str> {
        None
    }
}

/// The hooks of a layer, bundled: scopes, estimate, usage, priority and the classifier of answers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hooks<
    K = GlobalScope,
    E = OneRequest,
    U = KeepEstimate,
    P = SamePriority,
    C = crate::feedback::NoFeedback,
    M = NoMeta,
> {
    pub(crate) scopes: K,
    pub(crate) estimate: E,
    pub(crate) usage: U,
    pub(crate) priority: P,
    pub(crate) classify: C,
    pub(crate) meta: M,
}
