//! Limits of one scope ([`ScopeLimits`], compiled to [`CompiledScope`]), the state they act on
//! ([`ScopeState`]), and the all-or-nothing admission of one call across all of its scopes
//! ([`admit`], [`settle`], [`release`]).

use crate::{ConfigError, Cost, Gcra, Limit, Nanos, Rule};

/// Everything one scope (global, a team, a workflow, an agent) limits.
///
/// ```
/// use tollgate_core::{Dimension, Limit, ScopeLimits};
///
/// let global = ScopeLimits::new()
///     .limit(Limit::per_minute(Dimension::Requests, 800))
///     .limit(Limit::per_minute(Dimension::InputTokens, 80_000))
///     .limit(Limit::per_day(Dimension::TotalTokens, 2_500_000))
///     .concurrency(16);
/// assert!(global.compile().is_ok());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScopeLimits {
    /// The rate limits.
    pub limits: Vec<Limit>,
    /// The most calls in flight at once, if capped.
    pub concurrency: Option<u32>,
}

impl ScopeLimits {
    /// No limits at all.
    pub fn new() -> Self {
        ScopeLimits::default()
    }

    /// Adds a rate limit.
    #[must_use]
    pub fn limit(mut self, limit: Limit) -> Self {
        self.limits.push(limit);
        self
    }

    /// Caps the calls in flight at once.
    #[must_use]
    pub fn concurrency(mut self, max: u32) -> Self {
        self.concurrency = Some(max);
        self
    }

    /// Applies `headroom` to every limit that does not set its own.
    #[must_use]
    pub fn with_default_headroom(mut self, headroom: f64) -> Self {
        for l in &mut self.limits {
            l.headroom.get_or_insert(headroom);
        }
        self
    }

    /// Checks every rule and compiles the scope.
    ///
    /// # Errors
    /// Any error of [`Limit::compile`], [`Rule::ZeroConcurrency`], and [`Rule::DuplicateLimit`] when
    /// two limits count the same dimension over the same period.
    pub fn compile(&self) -> Result<CompiledScope, ConfigError> {
        let mut gcras: Vec<Gcra> = Vec::with_capacity(self.limits.len());
        for limit in &self.limits {
            let g = limit.compile()?;
            if gcras
                .iter()
                .any(|o| o.dimension() == g.dimension() && o.period() == g.period())
            {
                return Err(ConfigError::new(
                    Rule::DuplicateLimit,
                    format!(
                        "two {} limits over the same period {:?}",
                        g.dimension(),
                        limit.period
                    ),
                ));
            }
            gcras.push(g);
        }
        if self.concurrency == Some(0) {
            return Err(ConfigError::new(
                Rule::ZeroConcurrency,
                "a concurrency cap of 0 admits nothing",
            ));
        }
        Ok(CompiledScope {
            gcras,
            concurrency: self.concurrency.map(u64::from),
        })
    }
}

/// A validated [`ScopeLimits`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledScope {
    gcras: Vec<Gcra>,
    concurrency: Option<u64>,
}

impl CompiledScope {
    /// The compiled rate limits, in the order they were configured.
    pub fn gcras(&self) -> &[Gcra] {
        &self.gcras
    }

    /// The concurrency cap.
    pub fn concurrency(&self) -> Option<u64> {
        self.concurrency
    }

    /// A fresh state for this scope: every bucket full, nothing in flight.
    pub fn new_state(&self) -> ScopeState {
        ScopeState {
            tats: vec![Nanos::ZERO; self.gcras.len()],
            in_flight: 0,
            cooldown_until: Nanos::ZERO,
        }
    }

    /// Carries `state`, kept under `old`, over to these limits at `now`: a bucket that counts the same
    /// dimension over the same period keeps what it owes (in units); a new bucket starts full.
    pub fn carry_over(&self, old: &CompiledScope, state: &ScopeState, now: Nanos) -> ScopeState {
        let tats = self
            .gcras
            .iter()
            .map(|g| {
                old.gcras
                    .iter()
                    .zip(&state.tats)
                    .find(|(o, _)| o.dimension() == g.dimension() && o.period() == g.period())
                    .map_or(Nanos::ZERO, |(o, tat)| g.rescaled(o, *tat, now))
            })
            .collect();
        ScopeState {
            tats,
            in_flight: state.in_flight,
            cooldown_until: state.cooldown_until,
        }
    }

    /// Lowers the bucket of `dimension` (the one with the shortest period) so that at most
    /// `remaining` units are available at `now`: the provider reported fewer left than the bucket
    /// believed (another client shares the key). Never raises a bucket. Returns whether a bucket
    /// of that dimension exists.
    pub fn sync_remaining(
        &self,
        state: &mut ScopeState,
        now: Nanos,
        dimension: crate::Dimension,
        remaining: u64,
    ) -> bool {
        match self.bucket_of(dimension) {
            Some(i) => {
                state.tats[i] = self.gcras[i].lowered_to(state.tats[i], now, remaining);
                true
            }
            None => false,
        }
    }

    /// The index of the bucket a provider's report of `dimension` speaks of: the one of that
    /// dimension with the shortest period.
    pub fn bucket_of(&self, dimension: crate::Dimension) -> Option<usize> {
        self.gcras
            .iter()
            .enumerate()
            .filter(|(_, g)| g.dimension() == dimension)
            .min_by_key(|(_, g)| g.period())
            .map(|(i, _)| i)
    }

    /// The units available now in each bucket, in configured order (negative while in debt).
    pub fn available(&self, state: &ScopeState, now: Nanos) -> Vec<f64> {
        self.gcras
            .iter()
            .zip(&state.tats)
            .map(|(g, tat)| g.available(*tat, now))
            .collect()
    }
}

/// The mutable state of one scope: one time value per bucket, and the calls in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeState {
    /// The theoretical arrival time of each bucket (see [`Gcra`]).
    pub tats: Vec<Nanos>,
    /// Calls admitted and not yet released.
    pub in_flight: u64,
    /// No call is admitted before this time (a shared cooldown after the provider said 429/529).
    pub cooldown_until: Nanos,
}

impl ScopeState {
    /// Pauses admissions until `until`. A second cooldown during one extends it to the later end,
    /// it never adds up.
    pub fn cool_down(&mut self, until: Nanos) {
        self.cooldown_until = self.cooldown_until.max(until);
    }

    /// Whether the scope has been idle since `since`: every bucket full (no charge and no debt
    /// left after `since`), no cooldown after it and nothing in flight.
    ///
    /// Such a state answers every operation at any time from `since` on exactly as a
    /// [`new_state`](CompiledScope::new_state) does (bucket arithmetic only ever reads a time
    /// through `max(tat, now)` or `tat − now`, both the same for any `tat ≤ now`), so its owner
    /// may forget it and start a new one later without changing any admission.
    ///
    /// ```
    /// use tollgate_core::{admit, Admission, Cost, Dimension, Limit, Nanos, ScopeLimits};
    ///
    /// let scope = ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, 60)).compile()?;
    /// let mut state = scope.new_state();
    /// let now = Nanos::from_secs(10);
    /// assert_eq!(admit(now, Cost::request(), &mut [(&scope, &mut state)]), Admission::Admitted);
    /// state.in_flight = 0; // released
    /// // The request refills in one second.
    /// assert!(!state.is_idle_since(now));
    /// assert!(state.is_idle_since(now + Nanos::from_secs(1)));
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn is_idle_since(&self, since: Nanos) -> bool {
        self.in_flight == 0
            && self.cooldown_until <= since
            && self.tats.iter().all(|tat| *tat <= since)
    }
}

/// Why a call can never be admitted: it asks more of one bucket than the bucket's burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeverFits {
    /// The index of the scope (in the slice given to [`admit`]).
    pub scope: usize,
    /// What the bucket counts.
    pub dimension: crate::Dimension,
    /// What the call asked for.
    pub requested: u64,
    /// The bucket's burst: the most it can ever admit at once.
    pub capacity: u64,
}

/// The outcome of [`admit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Every scope admitted the call and was charged.
    Admitted,
    /// Some scope refused; nothing was charged anywhere.
    Wait {
        /// The shortest wait after which every rate limit would admit the call, if nothing else is
        /// admitted meanwhile; `None` when a concurrency cap refuses (wait for a release instead).
        wait: Option<Nanos>,
        /// Bit `i` is set when scope `i` refused.
        blocked: u64,
    },
    /// The call can never be admitted; nothing was charged.
    Never(NeverFits),
}

/// Admits a call of `cost` at `now` in every one of `scopes`, or in none.
///
/// All or nothing: either every bucket of every scope is charged and every concurrency count taken,
/// or nothing changes. At most 64 scopes per call (bit positions of [`Admission::Wait::blocked`]).
///
/// ```
/// use tollgate_core::{admit, Admission, Cost, Dimension, Limit, Nanos, ScopeLimits};
///
/// let team = ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, 2)).compile().unwrap();
/// let agent = ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, 1)).compile().unwrap();
/// let (mut t, mut a) = (team.new_state(), agent.new_state());
/// let now = Nanos::ZERO;
/// assert_eq!(admit(now, Cost::request(), &mut [(&team, &mut t), (&agent, &mut a)]), Admission::Admitted);
/// // The agent's bucket is empty: the second call waits 60 s, and the team is not charged.
/// match admit(now, Cost::request(), &mut [(&team, &mut t), (&agent, &mut a)]) {
///     Admission::Wait { wait, blocked } => {
///         assert_eq!(wait, Some(Nanos::from_secs(60)));
///         assert_eq!(blocked, 0b10);
///     }
///     other => panic!("{other:?}"),
/// }
/// assert_eq!(team.available(&t, now), vec![1.0]);
/// ```
pub fn admit(
    now: Nanos,
    cost: Cost,
    scopes: &mut [(&CompiledScope, &mut ScopeState)],
) -> Admission {
    let mut wait = Nanos::ZERO;
    let mut concurrency_blocked = false;
    let mut blocked = 0u64;
    for (i, (limits, state)) in scopes.iter().enumerate() {
        for (g, tat) in limits.gcras.iter().zip(&state.tats) {
            let n = cost.amount(g.dimension());
            if n > g.burst() {
                return Admission::Never(NeverFits {
                    scope: i,
                    dimension: g.dimension(),
                    requested: n,
                    capacity: g.burst(),
                });
            }
            let w = g.wait(*tat, now, n);
            if w > Nanos::ZERO {
                blocked |= 1 << (i % 64);
                wait = wait.max(w);
            }
        }
        if state.cooldown_until > now {
            blocked |= 1 << (i % 64);
            wait = wait.max(state.cooldown_until - now);
        }
        if let Some(max) = limits.concurrency {
            if state.in_flight >= max {
                blocked |= 1 << (i % 64);
                concurrency_blocked = true;
            }
        }
    }
    if blocked != 0 {
        return Admission::Wait {
            wait: (!concurrency_blocked).then_some(wait),
            blocked,
        };
    }
    for (limits, state) in scopes.iter_mut() {
        for (g, tat) in limits.gcras.iter().zip(state.tats.iter_mut()) {
            *tat = g.charged(*tat, now, cost.amount(g.dimension()));
        }
        state.in_flight += 1;
    }
    Admission::Admitted
}

/// Settles a call admitted with `charged` now that its real cost `actual` is known: each bucket is
/// refunded what was over-charged or charged the shortfall as debt. Does not release the
/// concurrency count (see [`release`]).
pub fn settle(
    now: Nanos,
    charged: Cost,
    actual: Cost,
    scopes: &mut [(&CompiledScope, &mut ScopeState)],
) {
    if actual == charged {
        return;
    }
    for (limits, state) in scopes.iter_mut() {
        for (g, tat) in limits.gcras.iter().zip(state.tats.iter_mut()) {
            let (c, a) = (charged.amount(g.dimension()), actual.amount(g.dimension()));
            if a == c {
                continue;
            }
            *tat = if a > c {
                g.charged(*tat, now, a - c)
            } else {
                g.refunded(*tat, now, c - a)
            };
        }
    }
}

/// Gives back the concurrency count a call took in [`admit`].
pub fn release(scopes: &mut [(&CompiledScope, &mut ScopeState)]) {
    for (_, state) in scopes.iter_mut() {
        state.in_flight = state.in_flight.saturating_sub(1);
    }
}
