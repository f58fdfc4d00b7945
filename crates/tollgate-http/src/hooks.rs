//! [`HttpHooks`]: the throttle's hooks for provider HTTP calls, and [`ThrottleBuilderExt`] to
//! set them all at once.

use crate::{CallInfo, HeaderRules, UsageBody};
use http::{Request, Response};
use std::sync::Arc;
use tollgate::feedback::HttpClassifier;
use tollgate::{
    AssignPriority, CallMeta, Cost, EstimateCost, ExtractScopes, Permit, Priority, ReadUsage,
    Scopes, ThrottleBuilder,
};

/// The throttle's hooks for calls to a provider's HTTP API, read from what
/// [`ReadRequestLayer`](crate::ReadRequestLayer) put in a request's extensions ([`CallInfo`])
/// and from its headers ([`HeaderRules`]):
/// * **scopes** and **priority** from the request headers the rules name;
/// * **estimate**: [`CallInfo::estimate`], or one request for a call to another path;
/// * **model** (for the price table): [`CallInfo::model`];
/// * **usage**: deferred to the end of a successful answer's [`UsageBody`]; an answer with an
///   error status is settled when its head arrives, by the layer's failure rule.
#[derive(Clone, Debug, Default)]
pub struct HttpHooks {
    rules: Arc<HeaderRules>,
}

impl HttpHooks {
    /// Hooks that read scopes and priority by `rules`.
    pub fn new(rules: HeaderRules) -> Self {
        HttpHooks {
            rules: Arc::new(rules),
        }
    }
}

impl<B> ExtractScopes<Request<B>> for HttpHooks {
    fn scopes(&self, req: &Request<B>) -> Scopes {
        self.rules.scopes(req.headers())
    }
}

impl<B> AssignPriority<Request<B>> for HttpHooks {
    fn priority(&self, req: &Request<B>) -> Priority {
        self.rules.priority(req.headers())
    }
}

impl<B> EstimateCost<Request<B>> for HttpHooks {
    fn estimate(&self, req: &Request<B>) -> Cost {
        req.extensions()
            .get::<CallInfo>()
            .map_or_else(Cost::request, |i| i.estimate)
    }
}

impl<B> CallMeta<Request<B>> for HttpHooks {
    fn model<'r>(&self, req: &'r Request<B>) -> Option<&'r str> {
        req.extensions().get::<CallInfo>().map(|i| i.model.as_str())
    }
}

impl<B> ReadUsage<Response<UsageBody<B>>> for HttpHooks {
    fn usage(&self, _: &Response<UsageBody<B>>) -> Option<Cost> {
        None
    }

    fn defers(&self, res: &Response<UsageBody<B>>) -> bool {
        res.status().is_success() && res.body().reads_usage()
    }

    fn defer(&self, res: &mut Response<UsageBody<B>>, permit: Permit) {
        res.body_mut().carry(permit);
    }
}

/// Sets every hook of a [`ThrottleBuilder`] for provider HTTP calls.
pub trait ThrottleBuilderExt {
    /// The builder with [`HttpHooks`] reading scopes and priority by `rules`, and the HTTP
    /// classifier (both providers' rate-limit headers, `retry-after`, 429/529 and 5xx).
    fn http(
        self,
        rules: HeaderRules,
    ) -> ThrottleBuilder<HttpHooks, HttpHooks, HttpHooks, HttpHooks, HttpClassifier, HttpHooks>;
}

impl<K, E, U, P, C, M> ThrottleBuilderExt for ThrottleBuilder<K, E, U, P, C, M> {
    fn http(
        self,
        rules: HeaderRules,
    ) -> ThrottleBuilder<HttpHooks, HttpHooks, HttpHooks, HttpHooks, HttpClassifier, HttpHooks>
    {
        let hooks = HttpHooks::new(rules);
        self.extract_scopes(hooks.clone())
            .estimate(hooks.clone())
            .read_usage(hooks.clone())
            .assign_priority(hooks.clone())
            .classify(HttpClassifier::new())
            .call_meta(hooks)
    }
}
