//! [`HeaderRules`]: a call's scopes and priority from its request headers.

use http::HeaderMap;
use tollgate::{Priority, ScopeKey, Scopes};

/// The longest header value that names a scope; a longer one is ignored, so that a client cannot
/// make keys of any size.
pub const MAX_SCOPE_VALUE: usize = 128;

/// Scopes and priority from request headers.
///
/// Each [`scope_header`](HeaderRules::scope_header) maps a header to a kind of scope: the value
/// `v` gives the key `kind:v`. The value is trimmed and must be 1 to [`MAX_SCOPE_VALUE`] visible
/// ASCII characters, else the header is ignored; of a repeated header the first value counts.
/// Header names are matched without regard to case; a name that is not a valid header name
/// matches nothing.
///
/// ```
/// use http::HeaderMap;
/// use tollgate::Priority;
/// use tollgate_http::HeaderRules;
///
/// let rules = HeaderRules::new()
///     .scope_header("x-team", "team")
///     .scope_header("x-agent-id", "agent")
///     .priority_header("x-priority");
/// let mut headers = HeaderMap::new();
/// headers.insert("x-agent-id", "7".parse().unwrap());
/// headers.insert("x-priority", "2".parse().unwrap());
/// let scopes = rules.scopes(&headers);
/// assert_eq!(scopes.iter().map(|k| k.as_str()).collect::<Vec<_>>(), ["global", "agent:7"]);
/// assert_eq!(rules.priority(&headers), Priority(2));
/// assert_eq!(rules.priority(&HeaderMap::new()), Priority::default());
/// ```
#[derive(Clone, Debug, Default)]
pub struct HeaderRules {
    scopes: Vec<(Box<str>, Box<str>)>,
    priority: Option<Box<str>>,
    default_priority: Priority,
}

impl HeaderRules {
    /// No rules: every call is in `global` alone, at the default priority.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value `v` of header `name` puts the call in scope `kind:v`. Scopes come in the order
    /// of these calls, after `global`.
    ///
    /// ```
    /// # use tollgate_http::HeaderRules;
    /// let rules = HeaderRules::new().scope_header("X-Workflow", "workflow");
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("x-workflow", " triage ".parse().unwrap());
    /// assert_eq!(rules.scopes(&headers)[1].as_str(), "workflow:triage");
    /// ```
    #[must_use]
    pub fn scope_header(mut self, name: &str, kind: &str) -> Self {
        self.scopes.push((name.into(), kind.into()));
        self
    }

    /// The call's priority is the value of header `name`, a decimal integer 0 to 255 (trimmed);
    /// any other value, or none, gives the [default](HeaderRules::default_priority).
    ///
    /// ```
    /// # use tollgate_http::HeaderRules;
    /// # use tollgate::Priority;
    /// let rules = HeaderRules::new().priority_header("x-priority");
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("x-priority", "256".parse().unwrap());
    /// assert_eq!(rules.priority(&headers), Priority(0));
    /// ```
    #[must_use]
    pub fn priority_header(mut self, name: &str) -> Self {
        self.priority = Some(name.into());
        self
    }

    /// The priority of a call without a valid priority header. Default `Priority(0)`.
    ///
    /// ```
    /// # use tollgate_http::HeaderRules;
    /// # use tollgate::Priority;
    /// let rules = HeaderRules::new().priority_header("x-priority").default_priority(Priority(5));
    /// assert_eq!(rules.priority(&http::HeaderMap::new()), Priority(5));
    /// ```
    #[must_use]
    pub fn default_priority(mut self, priority: Priority) -> Self {
        self.default_priority = priority;
        self
    }

    /// The call's scopes: `global` first, then one per rule whose header has a valid value, in
    /// the rules' order, without repeats.
    pub fn scopes(&self, headers: &HeaderMap) -> Scopes {
        let mut scopes = Scopes::new();
        scopes.push(ScopeKey::GLOBAL);
        for (name, kind) in &self.scopes {
            let Some(value) = value(headers, name) else {
                continue;
            };
            if value.len() > MAX_SCOPE_VALUE {
                continue;
            }
            let key = ScopeKey::from(format!("{kind}:{value}"));
            if !scopes.contains(&key) {
                scopes.push(key);
            }
        }
        scopes
    }

    /// The call's priority.
    pub fn priority(&self, headers: &HeaderMap) -> Priority {
        self.priority
            .as_deref()
            .and_then(|name| value(headers, name))
            .and_then(|v| v.parse::<u8>().ok())
            .map_or(self.default_priority, Priority)
    }
}

/// The first value of header `name`, trimmed, if it is non-empty visible ASCII.
fn value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    let visible = value.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    (!value.is_empty() && visible).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn keys(scopes: &Scopes) -> Vec<&str> {
        scopes.iter().map(ScopeKey::as_str).collect()
    }

    #[test]
    fn scopes_in_rule_order_without_repeats() {
        let rules = HeaderRules::new()
            .scope_header("x-team", "team")
            .scope_header("x-agent-id", "agent")
            .scope_header("x-agent", "agent");
        let mut h = HeaderMap::new();
        h.insert("x-agent-id", HeaderValue::from_static("a1"));
        h.insert("x-agent", HeaderValue::from_static("a1"));
        h.insert("x-team", HeaderValue::from_static("ops"));
        assert_eq!(keys(&rules.scopes(&h)), ["global", "team:ops", "agent:a1"]);
        // The first of repeated values counts.
        h.append("x-team", HeaderValue::from_static("other"));
        assert_eq!(keys(&rules.scopes(&h))[1], "team:ops");
    }

    #[test]
    fn bad_values_are_ignored() {
        let rules = HeaderRules::new()
            .scope_header("x-agent-id", "agent")
            .scope_header("bad name", "x");
        let mut h = HeaderMap::new();
        for v in ["", "   ", &"a".repeat(MAX_SCOPE_VALUE + 1)] {
            h.insert("x-agent-id", HeaderValue::from_str(v).unwrap());
            assert_eq!(keys(&rules.scopes(&h)), ["global"], "{v:?}");
        }
        h.insert(
            "x-agent-id",
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        assert_eq!(keys(&rules.scopes(&h)), ["global"]);
        h.insert(
            "x-agent-id",
            HeaderValue::from_str(&"a".repeat(MAX_SCOPE_VALUE)).unwrap(),
        );
        assert_eq!(rules.scopes(&h).len(), 2);
    }

    #[test]
    fn priority_values() {
        let rules = HeaderRules::new()
            .priority_header("X-Priority")
            .default_priority(Priority(3));
        let mut h = HeaderMap::new();
        for (v, p) in [
            ("0", 0),
            (" 255 ", 255),
            ("256", 3),
            ("-1", 3),
            ("high", 3),
            ("1.5", 3),
            ("", 3),
        ] {
            h.insert("x-priority", HeaderValue::from_str(v).unwrap());
            assert_eq!(rules.priority(&h), Priority(p), "{v:?}");
        }
        assert_eq!(HeaderRules::new().priority(&h), Priority(0));
    }
}
