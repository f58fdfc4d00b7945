//! The checks of a [`ThrottleBuilder`]'s configuration ([`validate`](ThrottleBuilder::validate))
//! and the build of the layer from it.

use super::ThrottleBuilder;
use crate::bounds;
use crate::feedback::adaptive::Adaptive;
use crate::feedback::Cooldown;
use crate::hooks::Hooks;
use crate::limiter::{Shared, WaitSettings};
use crate::registry::Registry;
use crate::{ConfigError, Limiter, MemoryStore, ScopeKey, Store, ThrottleLayer};
use std::time::Duration;
use tollgate_core::Rule;

/// A configuration that passed every check: what the layer is built from.
struct Checked {
    registry: Registry,
    provider_scope: Option<ScopeKey>,
    adaptive: Option<Adaptive>,
}

impl<K, E, U, P, C, M> ThrottleBuilder<K, E, U, P, C, M> {
    /// Checks every rule of the configuration without building the layer: what
    /// [`build`](Self::build) would refuse, it refuses.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate::{feedback::Cooldown, Rule, ThrottleLayer};
    ///
    /// let builder = ThrottleLayer::builder()
    ///     .cooldown(Cooldown { base: Duration::from_secs(10), cap: Duration::from_secs(1) });
    /// assert_eq!(builder.validate().unwrap_err().rule(), Rule::CapBelowBase);
    /// ```
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first broken rule:
    /// * every limit: [`Rule::ZeroAmount`], [`Rule::ZeroPeriod`], [`Rule::HeadroomOutOfRange`],
    ///   [`Rule::EffectiveLimitBelowOne`], [`Rule::BurstBelowOneCall`];
    /// * every scope: [`Rule::ZeroConcurrency`], [`Rule::DuplicateLimit`], [`Rule::InvalidScopeKey`];
    /// * [`Rule::HeadroomOutOfRange`] for the default headroom;
    /// * [`Rule::ShareOutOfRange`], [`Rule::SharesExceedOne`] for the tiers;
    /// * [`Rule::ZeroDuration`] for a maximum wait of zero, an idle-eviction time below one
    ///   second, a longest provider delay of zero, or a cooldown whose base is zero;
    /// * [`Rule::CapBelowBase`] for a cooldown whose cap is below its base;
    /// * [`Rule::UnknownScope`] for an [`always`](Self::always) key that is not configured, a
    ///   [`provider_scope`](Self::provider_scope) other than `global` that is not configured, and
    ///   the [`adaptive`](Self::adaptive) mode without a provider scope or without a rate limit on
    ///   it;
    /// * [`Rule::RateOutOfRange`] for an adaptive floor outside `(0, 1]`;
    /// * [`Rule::InvalidScopeKey`] for a malformed [`budget`](Self::budget) key;
    /// * [`Rule::BudgetWithoutPrices`] for budgets without a [`prices`](Self::prices) table.
    ///
    /// No duration is refused for being long: one longer than
    /// [`MAX_DURATION`](crate::MAX_DURATION) is taken as that.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map(drop)
    }

    /// Builds the layer on the in-memory store.
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    #[allow(clippy::type_complexity)]
    pub fn build(self) -> Result<ThrottleLayer<Hooks<K, E, U, P, C, M>>, ConfigError> {
        self.build_with_store(MemoryStore::new())
    }

    /// Builds the layer on `store`.
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    #[allow(clippy::type_complexity)]
    pub fn build_with_store<St: Store>(
        self,
        store: St,
    ) -> Result<ThrottleLayer<Hooks<K, E, U, P, C, M>, St>, ConfigError> {
        let checked = self.check()?;
        let mut spend = self.spend;
        if spend.ledger.is_none() {
            spend.ledger = store.ledger();
        }
        let settings = WaitSettings {
            max_wait: self.max_wait.map(bounds::saturate),
            refuse_over_max_wait: self.refuse_over_max_wait,
            on_failure: self.on_failure,
            provider_scope: checked.provider_scope,
            cooldown: Cooldown {
                base: bounds::saturate(self.cooldown.base),
                cap: bounds::saturate(self.cooldown.cap),
            },
            header_sync: self.header_sync,
            max_provider_delay: bounds::saturate(self.max_provider_delay),
        };
        let shared = Shared::new(
            store,
            checked.registry,
            &self.tiers,
            settings,
            checked.adaptive,
            spend,
            self.wall_clock.unwrap_or_else(system_unix_ms),
        );
        Ok(ThrottleLayer {
            limiter: Limiter::new(shared),
            hooks: self.hooks,
        })
    }

    /// Checks every rule (see [`validate`](Self::validate)).
    fn check(&self) -> Result<Checked, ConfigError> {
        let h = self.headroom;
        if !(h.is_finite() && h > 0.0 && h <= 1.0) {
            return Err(ConfigError::new(
                Rule::HeadroomOutOfRange,
                format!("the default headroom must be in (0, 1], got {h}"),
            ));
        }
        self.check_tiers()?;
        self.check_durations()?;
        let provider_scope = self.checked_provider_scope()?;
        let adaptive = self.adaptive_state(provider_scope.as_ref())?;
        for (key, _) in &self.spend.budgets {
            crate::registry::validate_key(key.as_str())?;
        }
        if !self.spend.budgets.is_empty() && self.spend.prices.is_none() {
            return Err(ConfigError::new(
                Rule::BudgetWithoutPrices,
                "budgets count money: give the layer a price table with `prices(..)`",
            ));
        }
        let registry = Registry::new(
            &self.scopes,
            self.always.clone(),
            self.unknown,
            h,
            self.idle_eviction,
        )?;
        Ok(Checked {
            registry,
            provider_scope,
            adaptive,
        })
    }

    fn check_tiers(&self) -> Result<(), ConfigError> {
        let mut total = 0.0;
        for &(p, share) in &self.tiers {
            if !(share.is_finite() && (0.0..1.0).contains(&share)) {
                return Err(ConfigError::new(
                    Rule::ShareOutOfRange,
                    format!("tier {p}: a reserved share must be in [0, 1), got {share}"),
                ));
            }
            total += share;
        }
        if total > 1.0 + 1e-9 {
            return Err(ConfigError::new(
                Rule::SharesExceedOne,
                format!("the tiers reserve {total} of the admissions, more than all of them"),
            ));
        }
        Ok(())
    }

    fn check_durations(&self) -> Result<(), ConfigError> {
        if self.max_wait.is_some_and(|m| m.is_zero()) {
            return Err(ConfigError::new(
                Rule::ZeroDuration,
                "a maximum wait of zero refuses every call that would wait; set at least 1 ms",
            ));
        }
        if self.idle_eviction < Duration::from_secs(1) {
            return Err(ConfigError::new(
                Rule::ZeroDuration,
                format!(
                    "keys must be idle at least 1s before they are evicted, got {:?}",
                    self.idle_eviction
                ),
            ));
        }
        let Cooldown { base, cap } = self.cooldown;
        if base.is_zero() {
            return Err(ConfigError::new(
                Rule::ZeroDuration,
                "a cooldown's base of zero pauses nothing; set at least 1 ms",
            ));
        }
        if cap < base {
            return Err(ConfigError::new(
                Rule::CapBelowBase,
                format!("a cooldown needs base <= cap, got base {base:?} and cap {cap:?}"),
            ));
        }
        if self.max_provider_delay.is_zero() {
            return Err(ConfigError::new(
                Rule::ZeroDuration,
                "a longest provider delay of zero ignores every retry delay; set at least 1 ms",
            ));
        }
        Ok(())
    }

    /// The provider scope: an exact configured key; the default `global` is simply off when no
    /// such scope is configured.
    fn checked_provider_scope(&self) -> Result<Option<ScopeKey>, ConfigError> {
        match &self.provider_scope {
            Some(key) if self.scopes.iter().any(|(k, _)| k == key) => Ok(Some(key.clone())),
            Some(key) if *key != ScopeKey::GLOBAL => Err(ConfigError::new(
                Rule::UnknownScope,
                format!("the provider scope `{key}` is not a configured scope"),
            )),
            _ => Ok(None),
        }
    }

    /// The adaptive mode's state on the provider scope `provider`, if the mode is on.
    fn adaptive_state(&self, provider: Option<&ScopeKey>) -> Result<Option<Adaptive>, ConfigError> {
        let Some(floor) = self.adaptive_floor else {
            return Ok(None);
        };
        if !(floor.is_finite() && floor > 0.0 && floor <= 1.0) {
            return Err(ConfigError::new(
                Rule::RateOutOfRange,
                format!("the adaptive floor is a fraction of the limits in (0, 1], got {floor}"),
            ));
        }
        let Some(key) = provider else {
            return Err(ConfigError::new(
                Rule::UnknownScope,
                "the adaptive mode needs a provider scope (configure `global` or set one)",
            ));
        };
        let base = (self.scopes.iter())
            .find(|(k, _)| k == key)
            .map(|(_, l)| l.clone())
            .unwrap_or_default();
        let adaptive = Adaptive::new(base, self.headroom, floor);
        Ok(Some(adaptive.map_err(|e| e.in_scope(key.as_str()))?))
    }
}

/// The system's wall clock in Unix milliseconds: read once per layer, for spend windows.
#[allow(clippy::disallowed_methods)] // the one place that reads the wall clock
fn system_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
