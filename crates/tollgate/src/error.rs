//! [`ThrottleError`]: why the layer did not let a call through.

use crate::ScopeKey;
use std::fmt;
use std::time::Duration;
use tollgate_core::{BudgetExhausted, Dimension, UnknownModelError};

/// The error type of boxed service errors, as tower uses it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why the layer refused a call. The service's error is a [`BoxError`]; find this one with
/// `downcast_ref`:
///
/// ```
/// # use tollgate::{BoxError, ThrottleError};
/// fn explain(err: &BoxError) -> String {
///     match err.downcast_ref::<ThrottleError>() {
///         Some(e) if e.is_never_fits() => format!("too large for {}", e.scope().unwrap()),
///         Some(e) if e.is_max_wait() => format!("would wait {:?}", e.predicted_wait()),
///         Some(e) => e.to_string(),
///         None => format!("the provider failed: {err}"),
///     }
/// }
/// # let _ = explain;
/// ```
#[derive(Debug)]
pub struct ThrottleError {
    /// Boxed: errors are rare, and a small error keeps every `Result` of the call path small.
    kind: Box<Kind>,
}

#[derive(Debug)]
enum Kind {
    NeverFits {
        scope: ScopeKey,
        dimension: Dimension,
        requested: u64,
        capacity: u64,
    },
    MaxWait {
        max: Duration,
        waited: Duration,
        predicted: Option<Duration>,
    },
    UnknownScope(ScopeKey),
    TooManyScopes(usize),
    Store(StoreError),
    Budget {
        scope: ScopeKey,
        exhausted: BudgetExhausted,
    },
    Paused(ScopeKey),
    UnknownModel(UnknownModelError),
    PolledAfterCompletion,
}

impl ThrottleError {
    pub(crate) fn never_fits(
        scope: ScopeKey,
        dimension: Dimension,
        requested: u64,
        capacity: u64,
    ) -> Self {
        ThrottleError {
            kind: Box::new(Kind::NeverFits {
                scope,
                dimension,
                requested,
                capacity,
            }),
        }
    }

    pub(crate) fn max_wait(max: Duration, waited: Duration, predicted: Option<Duration>) -> Self {
        ThrottleError {
            kind: Box::new(Kind::MaxWait {
                max,
                waited,
                predicted,
            }),
        }
    }

    pub(crate) fn unknown_scope(key: ScopeKey) -> Self {
        ThrottleError {
            kind: Box::new(Kind::UnknownScope(key)),
        }
    }

    pub(crate) fn too_many_scopes(n: usize) -> Self {
        ThrottleError {
            kind: Box::new(Kind::TooManyScopes(n)),
        }
    }

    pub(crate) fn store(e: StoreError) -> Self {
        ThrottleError {
            kind: Box::new(Kind::Store(e)),
        }
    }

    pub(crate) fn budget(scope: ScopeKey, exhausted: BudgetExhausted) -> Self {
        ThrottleError {
            kind: Box::new(Kind::Budget { scope, exhausted }),
        }
    }

    pub(crate) fn paused(scope: ScopeKey) -> Self {
        ThrottleError {
            kind: Box::new(Kind::Paused(scope)),
        }
    }

    pub(crate) fn unknown_model(e: UnknownModelError) -> Self {
        ThrottleError {
            kind: Box::new(Kind::UnknownModel(e)),
        }
    }

    pub(crate) fn polled_after_completion() -> Self {
        ThrottleError {
            kind: Box::new(Kind::PolledAfterCompletion),
        }
    }

    /// The call costs more than a bucket can ever hold: waiting would never help.
    pub fn is_never_fits(&self) -> bool {
        matches!(*self.kind, Kind::NeverFits { .. })
    }

    /// The call would wait (or waited) longer than the configured maximum.
    pub fn is_max_wait(&self) -> bool {
        matches!(*self.kind, Kind::MaxWait { .. })
    }

    /// A scope key of the call is not configured and unknown keys are rejected.
    pub fn is_unknown_scope(&self) -> bool {
        matches!(*self.kind, Kind::UnknownScope(_))
    }

    /// The store failed (only stores outside the process fail).
    pub fn is_store(&self) -> bool {
        matches!(*self.kind, Kind::Store(_))
    }

    /// The spend cap of a scope ([`scope`](ThrottleError::scope)) refused the call: what was
    /// spent and reserved, the cap, and when the window resets
    /// ([`BudgetExhausted::resets_at`], Unix seconds).
    ///
    /// ```
    /// use tollgate::spend::OnCap;
    /// use tollgate::{Budget, Micros, PriceTable, ThrottleError, ThrottleLayer};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let layer = ThrottleLayer::builder()
    ///     .prices(PriceTable::new(tollgate::UnknownModel::Default(tollgate::Price::from_dollars(1.0, 1.0, 1.0, 1.0)?)))
    ///     .budget("global", Budget::daily(Micros::from_cents(1)).build()?)
    ///     .estimate(|_: &()| tollgate::Cost::request().with_input_tokens(20_000))
    ///     .on_cap(OnCap::Refuse)
    ///     .build()?;
    /// let svc = layer.layer(service_fn(|_: ()| async { Ok::<_, std::convert::Infallible>(()) }));
    /// let err = svc.oneshot(()).await.unwrap_err();
    /// let err = err.downcast_ref::<ThrottleError>().unwrap();
    /// let exhausted = err.budget_exhausted().unwrap();
    /// assert!(exhausted.never_fits()); // $0.02 estimated against a $0.01 cap
    /// assert_eq!(err.scope().unwrap().as_str(), "global");
    /// # Ok(()) }
    /// ```
    pub fn budget_exhausted(&self) -> Option<&BudgetExhausted> {
        match &*self.kind {
            Kind::Budget { exhausted, .. } => Some(exhausted),
            _ => None,
        }
    }

    /// The scope ([`scope`](ThrottleError::scope)) was paused by hand with
    /// [`Limiter::pause`](crate::Limiter::pause).
    pub fn is_paused(&self) -> bool {
        matches!(*self.kind, Kind::Paused(_))
    }

    /// The call names a model that the price table does not list, and the table refuses unknown
    /// models.
    pub fn is_unknown_model(&self) -> bool {
        matches!(*self.kind, Kind::UnknownModel(_))
    }

    /// The scope the error is about, for never-fits and unknown-scope errors.
    pub fn scope(&self) -> Option<&ScopeKey> {
        match &*self.kind {
            Kind::NeverFits { scope, .. }
            | Kind::UnknownScope(scope)
            | Kind::Budget { scope, .. }
            | Kind::Paused(scope) => Some(scope),
            _ => None,
        }
    }

    /// For a never-fits error: the dimension, what the call asked for and the bucket's capacity.
    pub fn requested_vs_capacity(&self) -> Option<(Dimension, u64, u64)> {
        match *self.kind {
            Kind::NeverFits {
                dimension,
                requested,
                capacity,
                ..
            } => Some((dimension, requested, capacity)),
            _ => None,
        }
    }

    /// For a max-wait error: how much longer the call would still have had to wait, when known
    /// (a lower bound when calls were queued ahead of it).
    pub fn predicted_wait(&self) -> Option<Duration> {
        match *self.kind {
            Kind::MaxWait { predicted, .. } => predicted,
            _ => None,
        }
    }

    /// For a max-wait error: how long the call waited before it was refused (zero when it was
    /// refused at once because the predicted wait was already too long).
    pub fn waited(&self) -> Option<Duration> {
        match *self.kind {
            Kind::MaxWait { waited, .. } => Some(waited),
            _ => None,
        }
    }
}

impl fmt::Display for ThrottleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.kind {
            Kind::NeverFits {
                scope,
                dimension,
                requested,
                capacity,
            } => write!(
                f,
                "call can never be admitted: it needs {requested} {dimension} but scope `{scope}` holds at most {capacity}"
            ),
            Kind::MaxWait {
                max,
                waited,
                predicted,
            } => {
                write!(f, "call would wait longer than the maximum of {max:?} (waited {waited:?}")?;
                match predicted {
                    Some(p) => write!(f, ", at least {p:?} more predicted)"),
                    None => write!(f, ")"),
                }
            }
            Kind::UnknownScope(key) => write!(f, "scope `{key}` is not configured"),
            Kind::TooManyScopes(n) => write!(f, "a call may belong to at most 64 scopes, not {n}"),
            Kind::Store(e) => fmt::Display::fmt(e, f),
            Kind::Budget { scope, exhausted } => write!(f, "scope `{scope}`: {exhausted}"),
            Kind::Paused(scope) => write!(f, "scope `{scope}` is paused"),
            Kind::UnknownModel(e) => fmt::Display::fmt(e, f),
            Kind::PolledAfterCompletion => write!(f, "response future polled after completion"),
        }
    }
}

impl std::error::Error for ThrottleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.kind {
            Kind::Store(e) => Some(e),
            Kind::Budget { exhausted, .. } => Some(exhausted),
            Kind::UnknownModel(e) => Some(e),
            _ => None,
        }
    }
}

/// An error of a store that lives outside the process (the in-memory store never fails).
#[derive(Debug)]
pub struct StoreError {
    inner: Box<dyn std::error::Error + Send + Sync>,
}

impl StoreError {
    /// Wraps the store's own error.
    pub fn new(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError { inner: err.into() }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "limiter store failed: {}", self.inner)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.inner)
    }
}
