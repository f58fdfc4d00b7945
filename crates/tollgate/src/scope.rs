//! Scope keys ([`ScopeKey`], [`Scopes`]) and call priorities ([`Priority`]).

use smallvec::SmallVec;
use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// The name of a scope a call belongs to: `"global"`, `"team:marketing"`, `"agent:7"`.
///
/// By convention a key is `kind:name`; a configured pattern `kind:*` gives every key of that kind
/// its own bucket with the pattern's limits, and `*` matches any key (see
/// [`ThrottleBuilder::scope`](crate::ThrottleBuilder::scope)). Cloning is cheap: static keys are
/// borrowed, others reference-counted.
///
/// ```
/// use tollgate::ScopeKey;
///
/// let team = ScopeKey::from("team:marketing");
/// assert_eq!(team.kind(), Some("team"));
/// assert_eq!(team.as_str(), "team:marketing");
/// let agent = ScopeKey::from(format!("agent:{}", 7));
/// assert_eq!(agent.kind(), Some("agent"));
/// ```
#[derive(Clone)]
pub struct ScopeKey(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl ScopeKey {
    /// The key `"global"`.
    pub const GLOBAL: ScopeKey = ScopeKey(Repr::Static("global"));

    /// A key from a static string, without allocating.
    pub const fn from_static(key: &'static str) -> Self {
        ScopeKey(Repr::Static(key))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
        }
    }

    /// The part before the first `:`, if there is one.
    pub fn kind(&self) -> Option<&str> {
        self.as_str().split_once(':').map(|(k, _)| k)
    }
}

impl From<&'static str> for ScopeKey {
    fn from(s: &'static str) -> Self {
        ScopeKey::from_static(s)
    }
}

impl From<String> for ScopeKey {
    fn from(s: String) -> Self {
        ScopeKey(Repr::Shared(s.into()))
    }
}

impl From<Arc<str>> for ScopeKey {
    fn from(s: Arc<str>) -> Self {
        ScopeKey(Repr::Shared(s))
    }
}

// Equality, order and hash are those of the string, whatever the representation (`Borrow<str>`
// requires it).
impl PartialEq for ScopeKey {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.as_str(), other.as_str());
        // The same string (a static key, or one `Arc`) needs no byte comparison.
        std::ptr::eq(a, b) || a == b
    }
}

impl Eq for ScopeKey {}

impl PartialOrd for ScopeKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ScopeKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for ScopeKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl Borrow<str> for ScopeKey {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for ScopeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ScopeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scopes of one call, as a [key extractor](crate::ExtractScopes) returns them. Up to four are
/// stored inline (global, team, workflow, agent) without allocating.
pub type Scopes = SmallVec<[ScopeKey; 4]>;

/// A call's priority: higher is more important. `Priority::default()` is `0`.
///
/// ```
/// use tollgate::Priority;
/// assert!(Priority::CRITICAL > Priority::BACKGROUND);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(pub u8);

impl Priority {
    /// `Priority(0)`: background work.
    pub const BACKGROUND: Priority = Priority(0);
    /// `Priority(1)`: the critical path.
    pub const CRITICAL: Priority = Priority(1);
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
