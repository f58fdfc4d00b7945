//! What a budget tells its caller: [`Alert`] when a threshold is crossed, [`BudgetExhausted`]
//! when a call does not fit.

use super::{Micros, Window};
use std::fmt;

/// A spend threshold was crossed for the first time in a window. Each threshold fires at most
/// once per window.
///
/// ```
/// use tollgate_core::{Budget, BudgetState, Micros};
///
/// let budget = Budget::daily(Micros::from_dollars(100))
///     .thresholds([20, 50].map(Micros::from_dollars))
///     .build()?;
/// let mut state = BudgetState::new(&budget, 0);
/// let r = state.reserve(&budget, 0, Micros::from_dollars(30)).unwrap();
/// let alerts = state.settle(&budget, 0, r, Micros::from_dollars(25));
/// assert_eq!(alerts.len(), 1);
/// assert_eq!(alerts[0].threshold, Micros::from_dollars(20));
/// assert_eq!(alerts[0].to_string(), "day spend $25.000000 crossed the $20.000000 threshold (cap $100.000000)");
/// # Ok::<(), tollgate_core::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Alert {
    /// The threshold's position in [`Budget::thresholds`](crate::Budget::thresholds).
    pub index: usize,
    /// The threshold crossed.
    pub threshold: Micros,
    /// The settled spend of the window right after the call that crossed it.
    pub spent: Micros,
    /// The budget's cap.
    pub cap: Micros,
    /// The budget's window.
    pub window: Window,
    /// When the window started (Unix seconds).
    pub window_start: u64,
    /// When the window resets (Unix seconds).
    pub resets_at: u64,
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} spend {} crossed the {} threshold (cap {})",
            self.window, self.spent, self.threshold, self.cap
        )
    }
}

/// A call's estimated cost does not fit in the budget: `spent + reserved + estimate > cap`.
///
/// Two cases, told apart by [`never_fits`](BudgetExhausted::never_fits): the estimate alone is
/// above the cap (no window will ever admit it), or the window's spend leaves no room until
/// [`resets_at`](BudgetExhausted::resets_at) (or until calls in flight settle below their
/// estimates).
///
/// ```
/// use tollgate_core::{Budget, BudgetState, Micros};
///
/// let budget = Budget::daily(Micros::from_dollars(10)).build()?;
/// let mut state = BudgetState::new(&budget, 0);
/// let _held = state.reserve(&budget, 0, Micros::from_dollars(8)).unwrap();
/// let err = state.reserve(&budget, 3_600, Micros::from_dollars(5)).unwrap_err();
/// assert!(!err.never_fits());
/// assert_eq!(err.reserved(), Micros::from_dollars(8));
/// assert_eq!(err.resets_at(), 86_400);
/// assert_eq!(
///     err.to_string(),
///     "budget exhausted: $0.000000 spent and $8.000000 reserved of the $10.000000 day cap \
///      leave no room for $5.000000 until unix time 86400",
/// );
/// # Ok::<(), tollgate_core::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BudgetExhausted {
    pub(super) spent: Micros,
    pub(super) reserved: Micros,
    pub(super) estimate: Micros,
    pub(super) cap: Micros,
    pub(super) window: Window,
    pub(super) resets_at: u64,
}

impl BudgetExhausted {
    /// The settled spend of the current window.
    ///
    /// ```
    /// use tollgate_core::{Budget, BudgetState, Micros};
    /// let budget = Budget::daily(Micros::from_dollars(10)).build()?;
    /// let mut state = BudgetState::seeded(&budget, 0, Micros::from_dollars(9));
    /// let err = state.reserve(&budget, 0, Micros::from_dollars(2)).unwrap_err();
    /// assert_eq!(err.spent(), Micros::from_dollars(9));
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn spent(&self) -> Micros {
        self.spent
    }

    /// What calls in flight hold.
    ///
    /// ```
    /// use tollgate_core::{Budget, BudgetState, Micros};
    /// let budget = Budget::daily(Micros::from_dollars(10)).build()?;
    /// let mut state = BudgetState::seeded(&budget, 0, Micros::from_dollars(9));
    /// let err = state.reserve(&budget, 0, Micros::from_dollars(2)).unwrap_err();
    /// assert_eq!(err.reserved(), Micros::ZERO);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn reserved(&self) -> Micros {
        self.reserved
    }

    /// The refused call's estimate.
    ///
    /// ```
    /// use tollgate_core::{Budget, BudgetState, Micros};
    /// let budget = Budget::daily(Micros::from_dollars(10)).build()?;
    /// let mut state = BudgetState::seeded(&budget, 0, Micros::from_dollars(9));
    /// let err = state.reserve(&budget, 0, Micros::from_dollars(2)).unwrap_err();
    /// assert_eq!(err.estimate(), Micros::from_dollars(2));
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn estimate(&self) -> Micros {
        self.estimate
    }

    /// The budget's cap.
    ///
    /// ```
    /// use tollgate_core::{Budget, BudgetState, Micros};
    /// let budget = Budget::daily(Micros::from_dollars(10)).build()?;
    /// let mut state = BudgetState::seeded(&budget, 0, Micros::from_dollars(9));
    /// let err = state.reserve(&budget, 0, Micros::from_dollars(2)).unwrap_err();
    /// assert_eq!(err.cap(), Micros::from_dollars(10));
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn cap(&self) -> Micros {
        self.cap
    }

    /// The budget's window.
    ///
    /// ```
    /// use tollgate_core::{Budget, BudgetState, Micros};
    /// let budget = Budget::daily(Micros::from_dollars(10)).build()?;
    /// let mut state = BudgetState::seeded(&budget, 0, Micros::from_dollars(9));
    /// let err = state.reserve(&budget, 0, Micros::from_dollars(2)).unwrap_err();
    /// assert_eq!(err.window(), tollgate_core::Window::Day);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn window(&self) -> Window {
        self.window
    }

    /// When the current window ends and spend drops to zero (Unix seconds).
    ///
    /// ```
    /// use tollgate_core::{Budget, BudgetState, Micros};
    /// let budget = Budget::daily(Micros::from_dollars(10)).build()?;
    /// let mut state = BudgetState::seeded(&budget, 0, Micros::from_dollars(9));
    /// let err = state.reserve(&budget, 0, Micros::from_dollars(2)).unwrap_err();
    /// assert_eq!(err.resets_at(), 86_400);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn resets_at(&self) -> u64 {
        self.resets_at
    }

    /// Whether the estimate alone exceeds the cap, so that no window will ever admit the call.
    ///
    /// ```
    /// use tollgate_core::{Budget, BudgetState, Micros};
    /// let budget = Budget::daily(Micros::from_dollars(10)).build()?;
    /// let mut state = BudgetState::seeded(&budget, 0, Micros::from_dollars(9));
    /// let err = state.reserve(&budget, 0, Micros::from_dollars(2)).unwrap_err();
    /// assert!(!err.never_fits());
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn never_fits(&self) -> bool {
        self.estimate > self.cap
    }
}

impl fmt::Display for BudgetExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.never_fits() {
            write!(
                f,
                "budget exhausted: a call estimated at {} exceeds the whole {} {} cap",
                self.estimate, self.cap, self.window
            )
        } else {
            write!(
                f,
                "budget exhausted: {} spent and {} reserved of the {} {} cap leave no room for {} \
                 until unix time {}",
                self.spent, self.reserved, self.cap, self.window, self.estimate, self.resets_at
            )
        }
    }
}

impl std::error::Error for BudgetExhausted {}
