//! [`ThrottleBuilder`]: the layer's configuration in code; its setters here, its checks and the
//! build in [`build`].

mod build;

use crate::feedback::{Cooldown, NoFeedback};
use crate::hooks::{GlobalScope, Hooks, KeepEstimate, ModelFn, NoMeta, OneRequest, SamePriority};
use crate::spend::{BudgetAlert, OnCap, SpendSettings};
#[cfg(feature = "call-log")]
use crate::spend::{CallLog, Replay};
use crate::{OnFailure, Priority, ScopeKey, ScopeLimits, UnknownScopes};
use std::time::Duration;

/// Builds a [`ThrottleLayer`](crate::ThrottleLayer). Every setter has a default; `build()` checks every rule at once.
///
/// | setting | default |
/// |---|---|
/// | scopes | none (nothing is limited) |
/// | [`always`](Self::always) | none |
/// | [`headroom`](Self::headroom) | `1.0` |
/// | [`tier`](Self::tier) | every priority strict, no reserved share |
/// | [`max_wait`](Self::max_wait) | none: wait as long as it takes |
/// | [`refuse_over_max_wait`](Self::refuse_over_max_wait) | `false` |
/// | [`on_failure`](Self::on_failure) | [`OnFailure::RefundOutput`] |
/// | [`unknown_scopes`](Self::unknown_scopes) | [`UnknownScopes::Unlimited`] |
/// | [`idle_eviction`](Self::idle_eviction) | 10 minutes |
/// | [`extract_scopes`](Self::extract_scopes) | [`GlobalScope`]: every call is in `"global"` |
/// | [`estimate`](Self::estimate) | [`OneRequest`]: one request, no tokens |
/// | [`read_usage`](Self::read_usage) | [`KeepEstimate`] |
/// | [`assign_priority`](Self::assign_priority) | [`SamePriority`] |
/// | [`classify`](Self::classify) | [`NoFeedback`]: nothing learnt from answers |
/// | [`provider_scope`](Self::provider_scope) | `"global"` when configured |
/// | [`cooldown`](Self::cooldown) | 1 s doubling to 60 s |
/// | [`max_provider_delay`](Self::max_provider_delay) | [`DEFAULT_MAX_PROVIDER_DELAY`](crate::DEFAULT_MAX_PROVIDER_DELAY): 24 h |
/// | [`header_sync`](Self::header_sync) | on |
/// | [`adaptive`](Self::adaptive) | off |
///
/// Every duration setting accepts any `Duration`: one longer than
/// [`MAX_DURATION`](crate::MAX_DURATION) (100 years) is taken as that, so `Duration::MAX` reads
/// as "no end" and never overflows a clock. Zero is refused where it makes no sense (see
/// [`build`](Self::build)).
///
/// ```
/// use tollgate::{Cost, Dimension, Limit, ScopeLimits, ThrottleLayer};
///
/// let layer = ThrottleLayer::builder()
///     .scope("global", ScopeLimits::new()
///         .limit(Limit::per_minute(Dimension::Requests, 50))
///         .limit(Limit::per_minute(Dimension::InputTokens, 40_000)))
///     .headroom(0.95)
///     .estimate(|prompt: &String| Cost::request().with_input_tokens(prompt.len() as u64 / 4))
///     .build()?;
/// # let _ = layer;
/// # Ok::<(), tollgate::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ThrottleBuilder<
    K = GlobalScope,
    E = OneRequest,
    U = KeepEstimate,
    P = SamePriority,
    C = NoFeedback,
    M = NoMeta,
> {
    pub(crate) scopes: Vec<(ScopeKey, ScopeLimits)>,
    pub(crate) always: Vec<ScopeKey>,
    pub(crate) tiers: Vec<(Priority, f64)>,
    pub(crate) headroom: f64,
    pub(crate) max_wait: Option<Duration>,
    pub(crate) refuse_over_max_wait: bool,
    pub(crate) on_failure: OnFailure,
    pub(crate) unknown: UnknownScopes,
    pub(crate) idle_eviction: Duration,
    pub(crate) provider_scope: Option<ScopeKey>,
    pub(crate) cooldown: Cooldown,
    pub(crate) max_provider_delay: Duration,
    pub(crate) header_sync: bool,
    pub(crate) adaptive_floor: Option<f64>,
    pub(crate) spend: SpendSettings,
    /// The Unix time (ms) at which the layer is built; `None` reads the system clock.
    pub(crate) wall_clock: Option<u64>,
    hooks: Hooks<K, E, U, P, C, M>,
}

/// The default [`idle_eviction`](ThrottleBuilder::idle_eviction): ten times the period of the
/// usual limits (per minute), so that an agent that thinks for a few minutes between calls keeps
/// its key, while one that has finished its work costs nothing ten minutes later. The memory kept
/// is about the keys first seen in the last ten minutes.
pub(crate) const DEFAULT_IDLE_EVICTION: Duration = Duration::from_secs(600);

impl Default for ThrottleBuilder {
    fn default() -> Self {
        ThrottleBuilder::new()
    }
}

impl ThrottleBuilder {
    /// A builder with every default.
    pub fn new() -> Self {
        ThrottleBuilder {
            scopes: Vec::new(),
            always: Vec::new(),
            tiers: Vec::new(),
            headroom: 1.0,
            max_wait: None,
            refuse_over_max_wait: false,
            on_failure: OnFailure::default(),
            unknown: UnknownScopes::default(),
            idle_eviction: DEFAULT_IDLE_EVICTION,
            provider_scope: Some(ScopeKey::GLOBAL),
            cooldown: Cooldown::default(),
            max_provider_delay: crate::DEFAULT_MAX_PROVIDER_DELAY,
            header_sync: true,
            adaptive_floor: None,
            spend: SpendSettings::default(),
            wall_clock: None,
            hooks: Hooks::default(),
        }
    }
}

impl<K, E, U, P, C, M> ThrottleBuilder<K, E, U, P, C, M> {
    /// Limits a scope. `key` is an exact key (`"global"`, `"team:marketing"`), a pattern `kind:*`
    /// that gives every key of that kind its own bucket with these limits (`"agent:*"`), or `*` for
    /// any key no exact key or kind pattern matches. Setting a key twice keeps the last.
    ///
    /// ```
    /// use tollgate::{Dimension, Limit, ScopeLimits, ThrottleLayer};
    ///
    /// let rpm = |n| ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, n));
    /// let layer = ThrottleLayer::builder()
    ///     .scope("global", rpm(800))
    ///     .scope("team:marketing", rpm(100))
    ///     .scope("team:engineering", rpm(300))
    ///     .scope("agent:*", rpm(20)) // each agent its own 20 RPM
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), tollgate::ConfigError>(())
    /// ```
    pub fn scope(mut self, key: impl Into<ScopeKey>, limits: ScopeLimits) -> Self {
        let key = key.into();
        self.scopes.retain(|(k, _)| *k != key);
        self.scopes.push((key, limits));
        self
    }

    /// Scopes charged on every call, whatever the key extractor says (each must be configured).
    ///
    /// ```
    /// use tollgate::{Dimension, Limit, ScopeKey, ScopeLimits, Scopes, ThrottleLayer};
    /// use smallvec::smallvec;
    ///
    /// let layer = ThrottleLayer::builder()
    ///     .scope("global", ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, 800)))
    ///     .scope("agent:*", ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, 20)))
    ///     .always(["global"])
    ///     .extract_scopes(|agent: &u32| -> Scopes { smallvec![ScopeKey::from(format!("agent:{agent}"))] })
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), tollgate::ConfigError>(())
    /// ```
    pub fn always<I, T>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<ScopeKey>,
    {
        self.always = keys.into_iter().map(Into::into).collect();
        self
    }

    /// The fraction of every stated limit that is admitted, unless a limit sets its own.
    ///
    /// ```
    /// # use tollgate::ThrottleLayer;
    /// assert!(ThrottleLayer::builder().headroom(0.9).build().is_ok()); // admit 90 % of each limit
    /// assert!(ThrottleLayer::builder().headroom(1.5).build().is_err());
    /// ```
    pub fn headroom(mut self, fraction: f64) -> Self {
        self.headroom = fraction;
        self
    }

    /// Gives a priority tier a reserved share of the calls admitted from the queue while several
    /// tiers wait (see the [`queue policy`](crate#priority-tiers)).
    ///
    /// ```
    /// # use tollgate::{Priority, ThrottleLayer};
    /// // Background work keeps at least one admission in five while the critical path waits too.
    /// assert!(ThrottleLayer::builder().tier(Priority::BACKGROUND, 0.2).build().is_ok());
    /// // Shares are in [0, 1) and add up to at most 1.
    /// assert!(ThrottleLayer::builder().tier(Priority(0), 0.6).tier(Priority(1), 0.6).build().is_err());
    /// ```
    pub fn tier(mut self, priority: Priority, reserved_share: f64) -> Self {
        self.tiers.retain(|(p, _)| *p != priority);
        self.tiers.push((priority, reserved_share));
        self
    }

    /// The longest a call may wait for admission; past it the call fails with a
    /// [`ThrottleError`](crate::ThrottleError) for which `is_max_wait()` holds. Zero is refused
    /// by `build()`; a maximum longer than [`MAX_DURATION`](crate::MAX_DURATION) is taken as that.
    ///
    /// ```
    /// # use tollgate::ThrottleLayer;
    /// # use std::time::Duration;
    /// assert!(ThrottleLayer::builder().max_wait(Duration::from_secs(30)).build().is_ok());
    /// assert!(ThrottleLayer::builder().max_wait(Duration::MAX).build().is_ok()); // 100 years
    /// assert!(ThrottleLayer::builder().max_wait(Duration::ZERO).build().is_err());
    /// ```
    pub fn max_wait(mut self, max: Duration) -> Self {
        self.max_wait = Some(max);
        self
    }

    /// With a [`max_wait`](Self::max_wait): refuse a call at once when its predicted wait already
    /// exceeds the maximum, instead of waiting the maximum out first.
    ///
    /// ```
    /// # use tollgate::ThrottleLayer;
    /// # use std::time::Duration;
    /// let layer = ThrottleLayer::builder().max_wait(Duration::from_secs(5)).refuse_over_max_wait(true).build();
    /// assert!(layer.is_ok());
    /// ```
    pub fn refuse_over_max_wait(mut self, refuse: bool) -> Self {
        self.refuse_over_max_wait = refuse;
        self
    }

    /// What a failed call is charged.
    ///
    /// ```
    /// # use tollgate::{OnFailure, ThrottleLayer};
    /// assert!(ThrottleLayer::builder().on_failure(OnFailure::Keep).build().is_ok());
    /// ```
    pub fn on_failure(mut self, rule: OnFailure) -> Self {
        self.on_failure = rule;
        self
    }

    /// What happens to a scope key that is neither configured nor matched by a pattern.
    ///
    /// ```
    /// # use tollgate::{UnknownScopes, ThrottleLayer};
    /// assert!(ThrottleLayer::builder().unknown_scopes(UnknownScopes::Reject).build().is_ok());
    /// ```
    pub fn unknown_scopes(mut self, rule: UnknownScopes) -> Self {
        self.unknown = rule;
        self
    }

    /// How long a key instantiated from a `kind:*` or `*` pattern (`agent:7` of `agent:*`) stays
    /// when nothing uses it. Each such key has its own buckets; once no call has used it for this
    /// long and its buckets are full again (no debt, nothing in flight, no cooldown), the layer
    /// forgets it, with its [stats](crate::Limiter::stats), so that a fleet of short-lived agents
    /// costs the memory of the keys recently used, not of every key ever seen. A key that comes
    /// back starts with full buckets, as it would have had: eviction never changes an admission.
    /// Exact keys (`global`, `team:marketing`) are never evicted. Default: 10 minutes.
    ///
    /// Idle keys are looked for each time many new keys have been added (at least 1,024 and a
    /// quarter of the keys of patterns), so a key may stay somewhat longer than this. A store
    /// that cannot forget a scope ([`Store::evict`](crate::Store::evict)) keeps every key.
    ///
    /// ```
    /// # use tollgate::ThrottleLayer;
    /// # use std::time::Duration;
    /// assert!(ThrottleLayer::builder().idle_eviction(Duration::from_secs(60)).build().is_ok());
    /// assert!(ThrottleLayer::builder().idle_eviction(Duration::ZERO).build().is_err());
    /// ```
    pub fn idle_eviction(mut self, after: Duration) -> Self {
        self.idle_eviction = after;
        self
    }

    /// The key extractor: which scopes a request belongs to.
    pub fn extract_scopes<K2>(self, scopes: K2) -> ThrottleBuilder<K2, E, U, P, C, M> {
        self.map_hooks(|h| Hooks {
            scopes,
            estimate: h.estimate,
            usage: h.usage,
            priority: h.priority,
            classify: h.classify,
            meta: h.meta,
        })
    }

    /// The cost estimator: what a request will cost before it is sent.
    pub fn estimate<E2>(self, estimate: E2) -> ThrottleBuilder<K, E2, U, P, C, M> {
        self.map_hooks(|h| Hooks {
            scopes: h.scopes,
            estimate,
            usage: h.usage,
            priority: h.priority,
            classify: h.classify,
            meta: h.meta,
        })
    }

    /// The usage reader: what a call really cost, from its response.
    pub fn read_usage<U2>(self, usage: U2) -> ThrottleBuilder<K, E, U2, P, C, M> {
        self.map_hooks(|h| Hooks {
            scopes: h.scopes,
            estimate: h.estimate,
            usage,
            priority: h.priority,
            classify: h.classify,
            meta: h.meta,
        })
    }

    /// The priority of a request.
    pub fn assign_priority<P2>(self, priority: P2) -> ThrottleBuilder<K, E, U, P2, C, M> {
        self.map_hooks(|h| Hooks {
            scopes: h.scopes,
            estimate: h.estimate,
            usage: h.usage,
            priority,
            classify: h.classify,
            meta: h.meta,
        })
    }

    /// The classifier of answers: what a call's result says about the provider (rate limited,
    /// overloaded, ...) and the limits it reported. [`HttpClassifier`](crate::feedback::HttpClassifier)
    /// reads `http::Response`s; the default learns nothing.
    pub fn classify<C2>(self, classify: C2) -> ThrottleBuilder<K, E, U, P, C2, M> {
        self.map_hooks(|h| Hooks {
            scopes: h.scopes,
            estimate: h.estimate,
            usage: h.usage,
            priority: h.priority,
            classify,
            meta: h.meta,
        })
    }

    /// The scope that stands for the provider's key (default `"global"`, when configured): a
    /// rate-limited or overloaded answer pauses it for everyone (a shared cooldown), and the
    /// provider's rate-limit headers lower its buckets. `None` turns both off.
    ///
    /// ```
    /// # use tollgate::{Dimension, Limit, ScopeLimits, ThrottleLayer};
    /// let layer = ThrottleLayer::builder()
    ///     .scope("key:prod", ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, 50)))
    ///     .always(["key:prod"])
    ///     .provider_scope(Some("key:prod"))
    ///     .build();
    /// assert!(layer.is_ok());
    /// ```
    pub fn provider_scope(mut self, key: Option<impl Into<ScopeKey>>) -> Self {
        self.provider_scope = key.map(Into::into);
        self
    }

    /// How long a shared cooldown lasts when the provider gives no retry delay. `build()` needs
    /// `0 < base <= cap`; either longer than [`MAX_DURATION`](crate::MAX_DURATION) is taken as
    /// that.
    ///
    /// ```
    /// # use tollgate::{feedback::Cooldown, ThrottleLayer};
    /// # use std::time::Duration;
    /// // The OpenAI cookbook's fixed 15 s pause after a 429:
    /// let fixed = Cooldown { base: Duration::from_secs(15), cap: Duration::from_secs(15) };
    /// assert!(ThrottleLayer::builder().cooldown(fixed).build().is_ok());
    /// ```
    pub fn cooldown(mut self, cooldown: Cooldown) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The longest pause a provider may impose on the provider scope (default
    /// [`DEFAULT_MAX_PROVIDER_DELAY`](crate::DEFAULT_MAX_PROVIDER_DELAY), 24 h: the longest window
    /// providers enforce is a day). Every delay the classifier reports — a `retry-after` header,
    /// an exhausted limit's reset, any `retry_after` of an [`Outcome`](crate::feedback::Outcome)
    /// — and every [`Limiter::cool_down`](crate::Limiter::cool_down) is cut to it, so a malformed
    /// or hostile answer cannot stall every caller for longer. The computed
    /// [`cooldown`](Self::cooldown) is not a provider delay and is not cut. Zero is refused by
    /// `build()`; a maximum longer than [`MAX_DURATION`](crate::MAX_DURATION) is taken as that.
    ///
    /// ```
    /// # use tollgate::ThrottleLayer;
    /// # use std::time::Duration;
    /// let layer = ThrottleLayer::builder().max_provider_delay(Duration::from_secs(3600)).build();
    /// assert!(layer.is_ok());
    /// assert!(ThrottleLayer::builder().max_provider_delay(Duration::ZERO).build().is_err());
    /// ```
    pub fn max_provider_delay(mut self, max: Duration) -> Self {
        self.max_provider_delay = max;
        self
    }

    /// Whether the provider's rate-limit headers lower the provider scope's buckets (default on).
    ///
    /// A report is applied as the answer is read: at most what it says remained. In the adaptive
    /// mode, once the answers have told the rate the requests really refill at, a report of
    /// requests is applied as of the call's admission, which it describes: what the provider
    /// refilled while the answer was on its way (at the slowest rate the answers allow), less the
    /// requests admitted since, stays available (see
    /// [`Store::sync_reported_since`](crate::Store::sync_reported_since)).
    ///
    /// ```
    /// # use tollgate::ThrottleLayer;
    /// assert!(ThrottleLayer::builder().header_sync(false).build().is_ok());
    /// ```
    pub fn header_sync(mut self, on: bool) -> Self {
        self.header_sync = on;
        self
    }

    /// Turns on the adaptive mode, for limits that are unknown or shared with other clients: the
    /// provider scope's rate follows what the provider really allows, never above the configured
    /// limits and never below `floor` × them. Two sources, the stricter wins:
    ///
    /// * the answers' `remaining` and `reset`: each bounds the rate the limit really refills at
    ///   ([`RefillEstimate`](tollgate_core::RefillEstimate)); once the recent answers agree on a
    ///   rate below the configured one, the limits are scaled to the upper bound they agree on
    ///   (header sync holds the buckets to what the provider reports, so they may refill a hair
    ///   faster, never slower);
    /// * rate-limited or overloaded answers: the rate drops to 0.7 of itself and climbs back
    ///   linearly in the limit's own period ([`AimdRate`](tollgate_core::AimdRate), which
    ///   derives its constants); a 429 also empties the local bucket of that limit. Once the
    ///   requests between two 429s have measured the rate the provider refills at
    ///   ([`ThrottleRefill`](tollgate_core::ThrottleRefill)), or the answers have reported it, a
    ///   cut restarts from that rate instead (but from at most 0.95 of the rate it cuts).
    ///
    /// The rate is that of the scope's request limit (or its first limit); every limit of the
    /// scope is scaled alike (their rates; their bursts stay as configured).
    ///
    /// ```
    /// # use tollgate::{Dimension, Limit, ScopeLimits, ThrottleLayer};
    /// let layer = ThrottleLayer::builder()
    ///     .scope("global", ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, 600)))
    ///     .adaptive(0.1)
    ///     .build();
    /// assert!(layer.is_ok());
    /// assert!(ThrottleLayer::builder().adaptive(1.5).build().is_err());
    /// ```
    pub fn adaptive(mut self, floor: f64) -> Self {
        self.adaptive_floor = Some(floor);
        self
    }

    /// Names the model of each call, for the price table: a closure `Fn(&Req) -> Option<&str>`.
    /// Without it (or when it returns `None`), calls are priced by the table's
    /// [`UnknownModel`](crate::UnknownModel) rule.
    ///
    /// ```
    /// # use tollgate::{PriceTable, ThrottleLayer};
    /// struct Req { model: String }
    /// let layer = ThrottleLayer::builder()
    ///     .prices(PriceTable::example())
    ///     .model(|r: &Req| Some(r.model.as_str()))
    ///     .build();
    /// assert!(layer.is_ok());
    /// ```
    pub fn model<Req, F>(self, f: F) -> ThrottleBuilder<K, E, U, P, C, ModelFn<F>>
    where
        F: Fn(&Req) -> Option<&str>,
    {
        self.call_meta(ModelFn::new(f))
    }

    /// The metadata hook ([`CallMeta`](crate::CallMeta)): the model and the attempt number of a
    /// call, for prices and the call log.
    pub fn call_meta<M2>(self, meta: M2) -> ThrottleBuilder<K, E, U, P, C, M2> {
        self.map_hooks(|h| Hooks {
            scopes: h.scopes,
            estimate: h.estimate,
            usage: h.usage,
            priority: h.priority,
            classify: h.classify,
            meta,
        })
    }

    /// The prices of the models (per million tokens), to turn each call's tokens into money. An
    /// estimate is priced as an upper bound (the estimated input tokens, the estimated output
    /// tokens at the output price); a settled call by its real usage
    /// ([`ReadUsage::tokens`](crate::ReadUsage::tokens)).
    ///
    /// ```
    /// # use tollgate::{PriceTable, ThrottleLayer};
    /// assert!(ThrottleLayer::builder().prices(PriceTable::example()).build().is_ok());
    /// ```
    pub fn prices(mut self, table: crate::PriceTable) -> Self {
        self.spend.prices = Some(table);
        self
    }

    /// A spend cap with its alerts for the scope `key` (an exact key, `kind:*` for each key of a
    /// kind, or `*` for every key). Needs [`prices`](Self::prices). Spend is counted per scope
    /// key, in every budget of the call's scopes at once (reserve, then settle; see
    /// [`BudgetState`](tollgate_core::BudgetState) for the exact guarantee).
    ///
    /// ```
    /// use tollgate::{Budget, Micros, PriceTable, ThrottleLayer, WindowClock};
    /// let layer = ThrottleLayer::builder()
    ///     .prices(PriceTable::example())
    ///     // The whole fleet: $100 a day (day boundary at 00:00 UTC−8), alerts at $20, $50, $100.
    ///     .budget("global", Budget::daily(Micros::from_dollars(100))
    ///         .clock(WindowClock::from_hours_minutes(-8, 0)?)
    ///         .thresholds([20, 50, 100].map(Micros::from_dollars))
    ///         .build()?)
    ///     // Each agent on its own: $5 a day.
    ///     .budget("agent:*", Budget::daily(Micros::from_dollars(5)).build()?)
    ///     .build();
    /// assert!(layer.is_ok());
    /// # Ok::<(), tollgate::ConfigError>(())
    /// ```
    pub fn budget(mut self, key: impl Into<ScopeKey>, budget: crate::Budget) -> Self {
        let key = key.into();
        self.spend.budgets.retain(|(k, _)| *k != key);
        self.spend.budgets.push((key, budget));
        self
    }

    /// What a call does when a scope is at its cap or paused: refuse at once (the default) or
    /// hold until the window resets.
    ///
    /// ```
    /// # use tollgate::{spend::OnCap, ThrottleLayer};
    /// assert!(ThrottleLayer::builder().on_cap(OnCap::Hold).build().is_ok());
    /// ```
    pub fn on_cap(mut self, on_cap: OnCap) -> Self {
        self.spend.on_cap = on_cap;
        self
    }

    /// Called for every crossed spend threshold (each fires once per window), besides the
    /// `tracing` warning. Keep it short: it runs where the call settles. To a channel:
    ///
    /// ```
    /// use std::sync::mpsc;
    /// # use tollgate::ThrottleLayer;
    /// let (tx, alerts) = mpsc::channel();
    /// let layer = ThrottleLayer::builder()
    ///     .on_alert(move |alert| {
    ///         let _ = tx.send(alert.clone());
    ///     })
    ///     .build();
    /// assert!(layer.is_ok());
    /// # drop(alerts);
    /// ```
    pub fn on_alert(mut self, f: impl Fn(&BudgetAlert) + Send + Sync + 'static) -> Self {
        self.spend.alert = Some(std::sync::Arc::new(f));
        self
    }

    /// Writes one JSON line per call to `log` ([`CallLog`]). A log opened with
    /// [`CallLog::append_to_file`] also seeds the spend of the current windows from the calls it
    /// already holds, so a restart does not forget the day's spend.
    #[cfg(feature = "call-log")]
    pub fn call_log(mut self, log: CallLog) -> Self {
        if let Some(replay) = log.replay() {
            self.spend.seed = Some(replay.clone());
        }
        self.spend.log = Some(log);
        self
    }

    /// Where spend is kept (default: the store's own ledger if it has one, such as a Redis
    /// store's, else a [`MemoryLedger`](crate::spend::MemoryLedger) in this process).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tollgate::spend::MemoryLedger;
    /// # use tollgate::ThrottleLayer;
    /// assert!(ThrottleLayer::builder().ledger(Arc::new(MemoryLedger::new())).build().is_ok());
    /// ```
    pub fn ledger(mut self, ledger: std::sync::Arc<dyn crate::spend::Ledger>) -> Self {
        self.spend.ledger = Some(ledger);
        self
    }

    /// Seeds the spend of the current windows from earlier calls (see [`Replay`]).
    #[cfg(feature = "call-log")]
    pub fn seed_spend(mut self, replay: Replay) -> Self {
        self.spend.seed = Some(replay);
        self
    }

    /// The wall-clock time at which the layer is built, in Unix milliseconds (default: the
    /// system clock, read once). Spend windows follow it plus tokio's clock, so tests and
    /// simulations on a paused clock get exact, repeatable windows.
    ///
    /// ```
    /// # use tollgate::ThrottleLayer;
    /// // 2026-01-01T00:00:00Z
    /// assert!(ThrottleLayer::builder().wall_clock(1_767_225_600_000).build().is_ok());
    /// ```
    pub fn wall_clock(mut self, unix_ms: u64) -> Self {
        self.wall_clock = Some(unix_ms);
        self
    }

    fn map_hooks<K2, E2, U2, P2, C2, M2>(
        self,
        f: impl FnOnce(Hooks<K, E, U, P, C, M>) -> Hooks<K2, E2, U2, P2, C2, M2>,
    ) -> ThrottleBuilder<K2, E2, U2, P2, C2, M2> {
        ThrottleBuilder {
            scopes: self.scopes,
            always: self.always,
            tiers: self.tiers,
            headroom: self.headroom,
            max_wait: self.max_wait,
            refuse_over_max_wait: self.refuse_over_max_wait,
            on_failure: self.on_failure,
            unknown: self.unknown,
            idle_eviction: self.idle_eviction,
            provider_scope: self.provider_scope,
            cooldown: self.cooldown,
            max_provider_delay: self.max_provider_delay,
            header_sync: self.header_sync,
            adaptive_floor: self.adaptive_floor,
            spend: self.spend,
            wall_clock: self.wall_clock,
            hooks: f(self.hooks),
        }
    }
}
