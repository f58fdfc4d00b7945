//! [`Budget`]: a validated cap, window and alert thresholds.

use super::{Micros, Window, WindowClock};
use crate::{ConfigError, Rule};

/// A validated spend cap over a [`Window`], with alert thresholds. Built with [`Budget::builder`].
///
/// ```
/// use tollgate_core::{Budget, Micros, Window, WindowClock};
///
/// // The seed's example: alerts at $20, $50 and $100 a day, day boundary at 00:00 in California.
/// let budget = Budget::daily(Micros::from_dollars(100))
///     .clock(WindowClock::from_hours_minutes(-8, 0)?)
///     .thresholds([20, 50, 100].map(Micros::from_dollars))
///     .build()?;
/// assert_eq!(budget.window(), Window::Day);
/// assert_eq!(budget.thresholds().len(), 3);
/// # Ok::<(), tollgate_core::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Budget {
    pub(super) cap: Micros,
    pub(super) window: Window,
    pub(super) clock: WindowClock,
    pub(super) thresholds: Vec<Micros>,
}

/// Builds a [`Budget`]; every rule is checked once, in [`build`](BudgetBuilder::build).
///
/// Defaults: windows in UTC ([`WindowClock::UTC`]), no thresholds.
///
/// ```
/// use tollgate_core::{Budget, BudgetBuilder, Micros};
/// let builder: BudgetBuilder = Budget::daily(Micros::from_dollars(50));
/// assert!(builder.threshold(Micros::from_dollars(40)).build().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[must_use]
pub struct BudgetBuilder {
    budget: Budget,
}

// ===== impl Budget =====

impl Budget {
    /// The most thresholds one budget takes (one bit each in
    /// [`BudgetState::fired`](crate::BudgetState::fired)).
    ///
    /// ```
    /// use tollgate_core::{Budget, Micros, Rule};
    /// let many = (1..=65).map(Micros::new);
    /// let err = Budget::daily(Micros::new(100)).thresholds(many).build().unwrap_err();
    /// assert_eq!(err.rule(), Rule::TooManyThresholds);
    /// ```
    pub const MAX_THRESHOLDS: usize = 64;

    /// A budget of `cap` per `window`.
    ///
    /// ```
    /// use tollgate_core::{Budget, Micros, Window};
    /// let b = Budget::builder(Micros::from_dollars(500), Window::Month).build()?;
    /// assert_eq!(b.cap(), Micros::from_dollars(500));
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn builder(cap: Micros, window: Window) -> BudgetBuilder {
        BudgetBuilder {
            budget: Budget {
                cap,
                window,
                clock: WindowClock::UTC,
                thresholds: Vec::new(),
            },
        }
    }

    /// A budget of `cap` per hour.
    ///
    /// ```
    /// use tollgate_core::{Budget, Micros, Window};
    /// assert_eq!(Budget::hourly(Micros::from_dollars(5)).build()?.window(), Window::Hour);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn hourly(cap: Micros) -> BudgetBuilder {
        Self::builder(cap, Window::Hour)
    }

    /// A budget of `cap` per day.
    ///
    /// ```
    /// use tollgate_core::{Budget, Micros, Window};
    /// assert_eq!(Budget::daily(Micros::from_dollars(100)).build()?.window(), Window::Day);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn daily(cap: Micros) -> BudgetBuilder {
        Self::builder(cap, Window::Day)
    }

    /// A budget of `cap` per calendar month.
    ///
    /// ```
    /// use tollgate_core::{Budget, Micros, Window};
    /// assert_eq!(Budget::monthly(Micros::from_dollars(900)).build()?.window(), Window::Month);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn monthly(cap: Micros) -> BudgetBuilder {
        Self::builder(cap, Window::Month)
    }

    /// The most a window may spend.
    ///
    /// ```
    /// use tollgate_core::{Budget, Micros};
    /// assert_eq!(Budget::daily(Micros::new(7)).build()?.cap(), Micros::new(7));
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn cap(&self) -> Micros {
        self.cap
    }

    /// The window spend is counted over.
    ///
    /// ```
    /// use tollgate_core::{Budget, Micros, Window};
    /// assert_eq!(Budget::hourly(Micros::new(7)).build()?.window(), Window::Hour);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn window(&self) -> Window {
        self.window
    }

    /// Where windows start.
    ///
    /// ```
    /// use tollgate_core::{Budget, Micros, WindowClock};
    /// assert_eq!(Budget::daily(Micros::new(7)).build()?.clock(), WindowClock::UTC);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn clock(&self) -> WindowClock {
        self.clock
    }

    /// The alert thresholds, strictly ascending, each in `(0, cap]`.
    ///
    /// ```
    /// use tollgate_core::{Budget, Micros};
    /// let b = Budget::daily(Micros::new(9)).threshold(Micros::new(3)).build()?;
    /// assert_eq!(b.thresholds(), &[Micros::new(3)]);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn thresholds(&self) -> &[Micros] {
        &self.thresholds
    }

    /// Where the window containing `now_unix` started (Unix seconds).
    ///
    /// ```
    /// use tollgate_core::{Budget, Micros};
    /// assert_eq!(Budget::daily(Micros::new(9)).build()?.window_start(90_000), 86_400);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn window_start(&self, now_unix: u64) -> u64 {
        self.clock.window_start(self.window, now_unix)
    }

    /// When the window containing `now_unix` resets (Unix seconds).
    ///
    /// ```
    /// use tollgate_core::{Budget, Micros};
    /// assert_eq!(Budget::daily(Micros::new(9)).build()?.next_reset(90_000), 172_800);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn next_reset(&self, now_unix: u64) -> u64 {
        self.clock.next_reset(self.window, now_unix)
    }
}

// ===== impl BudgetBuilder =====

impl BudgetBuilder {
    /// Counts windows at this UTC offset instead of UTC.
    ///
    /// ```
    /// use tollgate_core::{Budget, Micros, WindowClock};
    /// let ist = WindowClock::from_hours_minutes(5, 30)?;
    /// let b = Budget::daily(Micros::from_dollars(1)).clock(ist).build()?;
    /// assert_eq!(b.window_start(0), 0); // 1970-01-01 05:30 local: that day began before the epoch
    /// assert_eq!(b.next_reset(0), 86_400 - 19_800);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn clock(mut self, clock: WindowClock) -> Self {
        self.budget.clock = clock;
        self
    }

    /// Adds an alert threshold.
    ///
    /// ```
    /// use tollgate_core::{Budget, Micros};
    /// let b = Budget::daily(Micros::from_dollars(9)).threshold(Micros::from_dollars(5)).build()?;
    /// assert_eq!(b.thresholds().len(), 1);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn threshold(mut self, threshold: Micros) -> Self {
        self.budget.thresholds.push(threshold);
        self
    }

    /// Adds alert thresholds.
    ///
    /// ```
    /// use tollgate_core::{Budget, Micros};
    /// let b = Budget::daily(Micros::from_dollars(9)).thresholds([1, 2].map(Micros::from_dollars)).build()?;
    /// assert_eq!(b.thresholds().len(), 2);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn thresholds(mut self, thresholds: impl IntoIterator<Item = Micros>) -> Self {
        self.budget.thresholds.extend(thresholds);
        self
    }

    /// Checks every rule and builds the budget.
    ///
    /// # Errors
    /// * [`Rule::ZeroBudgetCap`]: the cap is zero.
    /// * [`Rule::ThresholdOutOfRange`]: a threshold is zero or above the cap.
    /// * [`Rule::ThresholdsNotAscending`]: the thresholds are not strictly ascending.
    /// * [`Rule::TooManyThresholds`]: more than [`Budget::MAX_THRESHOLDS`].
    ///
    /// ```
    /// use tollgate_core::{Budget, Micros, Rule};
    /// let cap = Micros::from_dollars(100);
    /// let err = |b: tollgate_core::BudgetBuilder| b.build().unwrap_err().rule();
    /// assert_eq!(err(Budget::daily(Micros::ZERO)), Rule::ZeroBudgetCap);
    /// assert_eq!(err(Budget::daily(cap).threshold(Micros::from_dollars(101))), Rule::ThresholdOutOfRange);
    /// assert_eq!(err(Budget::daily(cap).thresholds([50, 20].map(Micros::from_dollars))), Rule::ThresholdsNotAscending);
    /// ```
    pub fn build(self) -> Result<Budget, ConfigError> {
        let b = self.budget;
        if b.cap == Micros::ZERO {
            return Err(ConfigError::new(
                Rule::ZeroBudgetCap,
                "a budget cap of $0 admits nothing",
            ));
        }
        if b.thresholds.len() > Budget::MAX_THRESHOLDS {
            return Err(ConfigError::new(
                Rule::TooManyThresholds,
                format!(
                    "{} thresholds, at most {} allowed",
                    b.thresholds.len(),
                    Budget::MAX_THRESHOLDS
                ),
            ));
        }
        if let Some(t) = b
            .thresholds
            .iter()
            .find(|&&t| t == Micros::ZERO || t > b.cap)
        {
            return Err(ConfigError::new(
                Rule::ThresholdOutOfRange,
                format!("threshold {t} is not in ($0, cap {}]", b.cap),
            ));
        }
        if let Some(w) = b.thresholds.windows(2).find(|w| w[0] >= w[1]) {
            return Err(ConfigError::new(
                Rule::ThresholdsNotAscending,
                format!("threshold {} does not follow {} upwards", w[1], w[0]),
            ));
        }
        Ok(b)
    }
}
