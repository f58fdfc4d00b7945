use super::future::After;
use super::ResponseFuture;
use crate::feedback::Classify;
use crate::hooks::{AssignPriority, CallMeta, EstimateCost, ExtractScopes, Hooks, ReadUsage};
use crate::limiter::{admit_at_once, LaneCache, Waiting};
use crate::spend::{Account, Caller};
use crate::{BoxError, Limiter, MemoryStore, Store};
use std::task::{Context, Poll};
use tower_service::Service;

/// Throttles calls to the inner service by the limits of their scopes.
///
/// `call` reads the request's scopes, priority and estimated cost. A call that can go at once
/// (nothing queued, room in every bucket and under every cap, no money to reserve) is admitted
/// there and then, and the inner service made ready by `poll_ready` is called (its future, dropped
/// before it is polled, is settled by the [`OnFailure`](crate::OnFailure) rule, as a call dropped
/// in flight); any other call's future waits its turn in the queue from its first poll, then calls
/// the inner service. Either way the future settles the charge from the response's usage. The inner service must be
/// `Clone`: for a call that waits, the instance made ready by `poll_ready` goes into the future
/// and a clone stays behind.
///
/// # Clone
/// Clones share the [`Limiter`] (buckets and queue); see [`ThrottleLayer`](crate::ThrottleLayer).
#[derive(Debug)]
pub struct Throttle<S, H = Hooks, St: Store = MemoryStore> {
    pub(crate) inner: S,
    pub(crate) limiter: Limiter<St>,
    pub(crate) hooks: H,
    /// The scopes of the last call, taken as they are by the next call with the same keys.
    pub(crate) lanes: LaneCache<St>,
}

impl<S: Clone, H: Clone, St: Store> Clone for Throttle<S, H, St> {
    fn clone(&self) -> Self {
        Throttle {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
            hooks: self.hooks.clone(),
            lanes: self.lanes.clone(),
        }
    }
}

impl<S, H, St: Store> Throttle<S, H, St> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The shared limiter.
    pub fn limiter(&self) -> &Limiter<St> {
        &self.limiter
    }
}

impl<S, Req, K, E, U, P, C, M, St> Service<Req> for Throttle<S, Hooks<K, E, U, P, C, M>, St>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    K: ExtractScopes<Req>,
    E: EstimateCost<Req>,
    U: ReadUsage<S::Response> + Clone,
    P: AssignPriority<Req>,
    C: Classify<S::Response, S::Error> + Clone,
    M: CallMeta<Req>,
    St: Store,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, U, C, St>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let keys = self.hooks.scopes.scopes(&req);
        let cost = self.hooks.estimate.estimate(&req);
        let priority = self.hooks.priority.priority(&req);
        let after = After {
            usage: self.hooks.usage.clone(),
            classify: self.hooks.classify.clone(),
        };
        let shared = self.limiter.shared();
        let account = match &shared.spend {
            None => None,
            Some(spend) => {
                let caller = Caller {
                    keys: &keys,
                    always: shared.registry.always(),
                    cost,
                    priority,
                    model: self.hooks.meta.model(&req),
                    attempt: self.hooks.meta.attempt(&req),
                };
                match Account::open(spend, &shared.clock, caller) {
                    Ok(account) => Some(account),
                    Err(e) => return ResponseFuture::failed(e, after),
                }
            }
        };
        let lane = match self.lanes.get(shared, keys) {
            Ok(lane) => lane,
            Err(e) => {
                if let (Some(a), Some(spend)) = (&account, &shared.spend) {
                    a.refused(spend, &shared.clock, None, &e);
                }
                return ResponseFuture::failed(e, after);
            }
        };
        let (lane, asked) = match account {
            // A call that can go at once goes now, into the service made ready by `poll_ready`.
            None => match admit_at_once(lane, cost) {
                Ok(call) => return ResponseFuture::calling(self.inner.call(req), call, after),
                Err(refused) => refused,
            },
            Some(_) => (lane, None),
        };
        let waiting = Waiting::new(lane, cost, priority, account, asked);
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::waiting(waiting, ready, req, after)
    }
}
