//! [`BudgetState`]: one window's spend of a [`Budget`]; reserve before a call, settle after it.

use super::{Alert, Budget, BudgetExhausted, Micros};

/// The money a call holds between [`BudgetState::reserve`] and [`BudgetState::settle`] (or
/// [`BudgetState::release`]): its estimate. Not `Clone`: each reservation is given back once.
///
/// ```
/// use tollgate_core::{Budget, BudgetState, Micros};
/// let budget = Budget::daily(Micros::from_dollars(1)).build()?;
/// let mut state = BudgetState::new(&budget, 0);
/// let r = state.reserve(&budget, 0, Micros::from_cents(30)).unwrap();
/// assert_eq!(r.estimate(), Micros::from_cents(30));
/// state.release(r);
/// assert_eq!(state.reserved, Micros::ZERO);
/// # Ok::<(), tollgate_core::ConfigError>(())
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
#[must_use = "a reservation holds budget until it is settled or released"]
pub struct Reservation {
    pub(super) estimate: Micros,
}

impl Reservation {
    /// The reservation of `estimate` that a store kept elsewhere (in another process, or as
    /// numbers in a shared store) and now gives back to settle or release it.
    ///
    /// ```
    /// use tollgate_core::{Micros, Reservation};
    /// assert_eq!(Reservation::new(Micros::new(5)).estimate(), Micros::new(5));
    /// ```
    pub fn new(estimate: Micros) -> Reservation {
        Reservation { estimate }
    }

    /// The estimate reserved.
    ///
    /// ```
    /// use tollgate_core::{Budget, BudgetState, Micros};
    /// let budget = Budget::daily(Micros::from_dollars(1)).build()?;
    /// let mut state = BudgetState::new(&budget, 0);
    /// let r = state.reserve(&budget, 0, Micros::new(5)).unwrap();
    /// assert_eq!(r.estimate(), Micros::new(5));
    /// # state.release(r);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn estimate(&self) -> Micros {
        self.estimate
    }
}

/// The spend of one [`Budget`] in its current window.
///
/// **Reserve, then settle.** Before a call, [`reserve`](BudgetState::reserve) its estimated cost:
/// it is admitted iff `spent + reserved + estimate ≤ cap`, and the estimate is then held in
/// `reserved`. After the call, [`settle`](BudgetState::settle) moves it from `reserved` to its
/// real cost in `spent`; a call that never happened is [`release`](BudgetState::release)d.
///
/// **The guarantee.** Let a call's *overrun* be `actual − estimate` when positive, else 0.
/// * If every estimate is an upper bound of its call's actual cost (no overrun), the settled spend
///   of a window never exceeds the cap, whatever the interleaving of concurrent calls:
///   `spent + reserved ≤ cap` holds after every admission and nothing but an overrun raises it.
/// * Otherwise, the settled spend exceeds the cap by at most the sum of the overruns of the calls
///   that were in flight together at the last admission (or at the last window roll): one call's
///   overrun when calls run one at a time. Once over the cap, every call is refused until the
///   window resets.
///
/// **Windows.** Every method that takes `now_unix` first rolls the window when `now_unix` is
/// past its reset: `spent` drops to zero and the fired thresholds are cleared, while `reserved`
/// is carried (calls in flight settle into the window in which they finish). Time that goes
/// backwards never rolls a window back. Spend is counted in the window where the call *settles*.
///
/// **Alerts.** A threshold fires when the settled spend first reaches it (`spent ≥ threshold`) in
/// a window, once per window, from [`settle`](BudgetState::settle).
///
/// The fields are public so that a store can persist them or seed them after a restart
/// ([`BudgetState::seeded`]); `fired` must then be kept in step with `spent`.
///
/// ```
/// use tollgate_core::{Budget, BudgetState, Micros};
///
/// let budget = Budget::daily(Micros::from_dollars(10))
///     .threshold(Micros::from_dollars(5))
///     .build()?;
/// let mut state = BudgetState::new(&budget, 0);
/// // Two calls in flight at once, each estimated at $4.
/// let a = state.reserve(&budget, 0, Micros::from_dollars(4)).unwrap();
/// let b = state.reserve(&budget, 0, Micros::from_dollars(4)).unwrap();
/// // A third does not fit: $8 held + $4 > $10.
/// assert!(state.reserve(&budget, 0, Micros::from_dollars(4)).is_err());
/// // They cost $3 each: the second crosses the $5 threshold.
/// assert!(state.settle(&budget, 10, a, Micros::from_dollars(3)).is_empty());
/// assert_eq!(state.settle(&budget, 20, b, Micros::from_dollars(3)).len(), 1);
/// assert_eq!(state.remaining(&budget), Micros::from_dollars(4));
/// // The next day starts from zero.
/// let c = state.reserve(&budget, 86_400, Micros::from_dollars(10)).unwrap();
/// assert_eq!(state.spent, Micros::ZERO);
/// # state.release(c);
/// # Ok::<(), tollgate_core::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BudgetState {
    /// When the current window started (Unix seconds).
    pub window_start: u64,
    /// The real cost of the calls settled in this window.
    pub spent: Micros,
    /// The estimates of the calls in flight.
    pub reserved: Micros,
    /// Bit `i` is set once threshold `i` has fired in this window.
    pub fired: u64,
}

// ===== impl BudgetState =====

impl BudgetState {
    /// A state at `now_unix` with nothing spent and nothing reserved.
    ///
    /// ```
    /// use tollgate_core::{Budget, BudgetState, Micros};
    /// let budget = Budget::daily(Micros::from_dollars(1)).build()?;
    /// assert_eq!(BudgetState::new(&budget, 100_000).window_start, 86_400);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn new(budget: &Budget, now_unix: u64) -> Self {
        Self::seeded(budget, now_unix, Micros::ZERO)
    }

    /// A state at `now_unix` whose window has already spent `spent` (say, read back from a call
    /// log after a restart). Thresholds already reached count as fired, so they do not fire again.
    ///
    /// ```
    /// use tollgate_core::{Budget, BudgetState, Micros};
    /// let budget = Budget::daily(Micros::from_dollars(100))
    ///     .thresholds([20, 50].map(Micros::from_dollars))
    ///     .build()?;
    /// let state = BudgetState::seeded(&budget, 0, Micros::from_dollars(30));
    /// assert_eq!(state.fired, 0b01);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn seeded(budget: &Budget, now_unix: u64, spent: Micros) -> Self {
        BudgetState {
            window_start: budget.window_start(now_unix),
            spent,
            reserved: Micros::ZERO,
            fired: reached(budget, spent),
        }
    }

    /// Moves to the window containing `now_unix` if it is a later one: `spent` drops to zero and
    /// the thresholds may fire again; `reserved` is kept. Returns whether the window rolled. Every
    /// method that takes `now_unix` calls this first.
    ///
    /// ```
    /// use tollgate_core::{Budget, BudgetState, Micros};
    /// let budget = Budget::hourly(Micros::from_dollars(1)).build()?;
    /// let mut state = BudgetState::seeded(&budget, 0, Micros::from_cents(40));
    /// assert!(!state.roll(&budget, 3_599));
    /// assert!(state.roll(&budget, 3_600));
    /// assert_eq!((state.window_start, state.spent), (3_600, Micros::ZERO));
    /// assert!(!state.roll(&budget, 10)); // time going backwards changes nothing
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn roll(&mut self, budget: &Budget, now_unix: u64) -> bool {
        let start = budget.window_start(now_unix);
        let rolled = start > self.window_start;
        if rolled {
            self.window_start = start;
            self.spent = Micros::ZERO;
            self.fired = 0;
        }
        rolled
    }

    /// Reserves `estimate` for a call at `now_unix`: admitted iff
    /// `spent + reserved + estimate ≤ cap` (exact, no overflow), after rolling the window.
    ///
    /// # Errors
    /// [`BudgetExhausted`] (nothing reserved) when the call does not fit; it says when the window
    /// resets and whether the call could ever fit.
    ///
    /// ```
    /// use tollgate_core::{Budget, BudgetState, Micros};
    /// let budget = Budget::daily(Micros::from_dollars(1)).build()?;
    /// let mut state = BudgetState::new(&budget, 0);
    /// let r = state.reserve(&budget, 0, Micros::from_dollars(1)).unwrap(); // exactly the cap
    /// assert!(state.reserve(&budget, 0, Micros::new(1)).is_err());
    /// assert!(state.reserve(&budget, 0, Micros::from_dollars(2)).unwrap_err().never_fits());
    /// # state.release(r);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn reserve(
        &mut self,
        budget: &Budget,
        now_unix: u64,
        estimate: Micros,
    ) -> Result<Reservation, BudgetExhausted> {
        self.roll(budget, now_unix);
        self.check(budget, estimate)?;
        self.reserved += estimate;
        Ok(Reservation { estimate })
    }

    /// Settles a reserved call at `now_unix` now that its real cost is known, after rolling the
    /// window: `reserved -= estimate`, `spent += actual`. Returns the thresholds crossed for the
    /// first time in this window, in ascending order.
    ///
    /// ```
    /// use tollgate_core::{Budget, BudgetState, Micros};
    /// let budget = Budget::daily(Micros::from_dollars(100))
    ///     .thresholds([20, 50, 100].map(Micros::from_dollars))
    ///     .build()?;
    /// let mut state = BudgetState::new(&budget, 0);
    /// let r = state.reserve(&budget, 0, Micros::from_dollars(60)).unwrap();
    /// let alerts = state.settle(&budget, 5, r, Micros::from_dollars(55));
    /// let crossed: Vec<_> = alerts.iter().map(|a| a.threshold).collect();
    /// assert_eq!(crossed, [20, 50].map(Micros::from_dollars));
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn settle(
        &mut self,
        budget: &Budget,
        now_unix: u64,
        reservation: Reservation,
        actual: Micros,
    ) -> Vec<Alert> {
        self.roll(budget, now_unix);
        self.reserved -= reservation.estimate;
        self.spent += actual;
        let newly = reached(budget, self.spent) & !self.fired;
        self.fired |= newly;
        let resets_at = budget.next_reset(self.window_start);
        budget
            .thresholds
            .iter()
            .enumerate()
            .filter(|(i, _)| newly & (1 << i) != 0)
            .map(|(index, &threshold)| Alert {
                index,
                threshold,
                spent: self.spent,
                cap: budget.cap,
                window: budget.window,
                window_start: self.window_start,
                resets_at,
            })
            .collect()
    }

    /// Gives back the reservation of a call that never happened (refused elsewhere, cancelled,
    /// failed before the provider charged anything).
    ///
    /// ```
    /// use tollgate_core::{Budget, BudgetState, Micros};
    /// let budget = Budget::daily(Micros::from_dollars(1)).build()?;
    /// let mut state = BudgetState::new(&budget, 0);
    /// let r = state.reserve(&budget, 0, Micros::from_dollars(1)).unwrap();
    /// state.release(r);
    /// assert_eq!(state.remaining(&budget), Micros::from_dollars(1));
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn release(&mut self, reservation: Reservation) {
        self.reserved -= reservation.estimate;
    }

    /// What a new call may still reserve: `cap − spent − reserved`, or zero. Does not roll the
    /// window.
    ///
    /// ```
    /// use tollgate_core::{Budget, BudgetState, Micros};
    /// let budget = Budget::daily(Micros::from_dollars(1)).build()?;
    /// let state = BudgetState::seeded(&budget, 0, Micros::from_dollars(3));
    /// assert_eq!(state.remaining(&budget), Micros::ZERO);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn remaining(&self, budget: &Budget) -> Micros {
        budget.cap - self.spent - self.reserved
    }

    /// When the current window resets (Unix seconds).
    ///
    /// ```
    /// use tollgate_core::{Budget, BudgetState, Micros};
    /// let budget = Budget::daily(Micros::from_dollars(1)).build()?;
    /// assert_eq!(BudgetState::new(&budget, 5).resets_at(&budget), 86_400);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn resets_at(&self, budget: &Budget) -> u64 {
        budget.next_reset(self.window_start)
    }

    /// Whether `estimate` fits now (without rolling).
    pub(super) fn check(&self, budget: &Budget, estimate: Micros) -> Result<(), BudgetExhausted> {
        let total = u128::from(self.spent.as_u64())
            + u128::from(self.reserved.as_u64())
            + u128::from(estimate.as_u64());
        if total <= u128::from(budget.cap.as_u64()) {
            Ok(())
        } else {
            Err(BudgetExhausted {
                spent: self.spent,
                reserved: self.reserved,
                estimate,
                cap: budget.cap,
                window: budget.window,
                resets_at: self.resets_at(budget),
            })
        }
    }
}

/// The bit set of thresholds at or below `spent`.
fn reached(budget: &Budget, spent: Micros) -> u64 {
    budget
        .thresholds
        .iter()
        .enumerate()
        .filter(|(_, &t)| t <= spent)
        .fold(0, |bits, (i, _)| bits | (1 << i))
}
