//! A call's scopes and priority tier: [`ScopeRules`] from `[[proxy.scopes]]` and
//! `priority_header`, worked out once per call into [`CallScopes`], which the throttle's hooks
//! ([`FromExtensions`]) read back.

use crate::config::ProxyConfig;
use crate::keys::CallerId;
use http::{HeaderMap, Request};
use tollgate::{AssignPriority, ExtractScopes, Priority, ScopeKey, Scopes};
use tollgate_http::HeaderRules;

/// How requests map to scopes: `global`, then the header scopes, the key scopes and the fixed
/// scopes of the configuration, without repeats.
#[derive(Clone, Debug)]
pub(crate) struct ScopeRules {
    headers: HeaderRules,
    key_kinds: Vec<String>,
    fixed: Vec<ScopeKey>,
}

/// The scopes and tier of one call, in the request's extensions.
#[derive(Clone, Debug)]
pub(crate) struct CallScopes {
    pub(crate) scopes: Scopes,
    pub(crate) priority: Priority,
}

impl ScopeRules {
    pub(crate) fn from_config(proxy: &ProxyConfig) -> ScopeRules {
        let mut headers = HeaderRules::new();
        let mut key_kinds = Vec::new();
        let mut fixed = Vec::new();
        for s in &proxy.scopes {
            if let (Some(h), Some(kind)) = (&s.header, &s.kind) {
                headers = headers.scope_header(h, kind);
            }
            if let Some(kind) = &s.api_key {
                key_kinds.push(kind.clone());
            }
            if let Some(key) = &s.fixed {
                fixed.push(ScopeKey::from(key.clone()));
            }
        }
        if let Some(h) = &proxy.priority_header {
            headers = headers.priority_header(h);
        }
        ScopeRules {
            headers,
            key_kinds,
            fixed,
        }
    }

    /// Whether a scope is named after the caller's key.
    pub(crate) fn needs_caller(&self) -> bool {
        !self.key_kinds.is_empty()
    }

    /// The call's scopes and tier.
    pub(crate) fn call(&self, headers: &HeaderMap, caller: Option<&CallerId>) -> CallScopes {
        let mut scopes = self.headers.scopes(headers);
        let keyed = caller
            .into_iter()
            .flat_map(|c| self.key_kinds.iter().map(move |k| format!("{k}:{}", c.0)));
        for key in keyed.map(ScopeKey::from).chain(self.fixed.iter().cloned()) {
            if !scopes.contains(&key) {
                scopes.push(key);
            }
        }
        CallScopes {
            scopes,
            priority: self.headers.priority(headers),
        }
    }
}

/// The throttle's scope and priority hooks: what the gateway put in the request's extensions.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FromExtensions;

impl<B> ExtractScopes<Request<B>> for FromExtensions {
    fn scopes(&self, req: &Request<B>) -> Scopes {
        req.extensions().get::<CallScopes>().map_or_else(
            || Scopes::from_iter([ScopeKey::GLOBAL]),
            |c| c.scopes.clone(),
        )
    }
}

impl<B> AssignPriority<Request<B>> for FromExtensions {
    fn priority(&self, req: &Request<B>) -> Priority {
        req.extensions()
            .get::<CallScopes>()
            .map_or_else(Priority::default, |c| c.priority)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn headers_keys_and_fixed_scopes_in_order() {
        let c = Config::from_toml(
            r#"
            [proxy]
            listen = "127.0.0.1:0"
            upstream = { openai = "http://127.0.0.1:1" }
            priority_header = "x-priority"
            [[proxy.scopes]]
            header = "x-agent-id"
            kind = "agent"
            [[proxy.scopes]]
            api_key = "key"
            [[proxy.scopes]]
            fixed = "team:research"
            "#,
        )
        .unwrap();
        let rules = ScopeRules::from_config(&c.proxy);
        assert!(rules.needs_caller());
        let mut h = HeaderMap::new();
        h.insert("x-agent-id", "7".parse().unwrap());
        h.insert("x-priority", "3".parse().unwrap());
        let call = rules.call(&h, Some(&CallerId("abc".into())));
        let keys: Vec<_> = call.scopes.iter().map(ScopeKey::as_str).collect();
        assert_eq!(keys, ["global", "agent:7", "key:abc", "team:research"]);
        assert_eq!(call.priority, Priority(3));
        let call = rules.call(&HeaderMap::new(), None);
        let keys: Vec<_> = call.scopes.iter().map(ScopeKey::as_str).collect();
        assert_eq!(keys, ["global", "team:research"]);
    }
}
