//! [`reserve_budgets`], [`settle_budgets`], [`release_budgets`]: one call against every budget
//! of its scopes, all or nothing.

use super::{Alert, Budget, BudgetExhausted, BudgetState, Micros, Reservation};

/// Reserves `estimate` in every one of `budgets` at `now_unix`, or in none (each window is rolled
/// first either way).
///
/// # Errors
/// The index of the first budget that refuses, and its [`BudgetExhausted`]; nothing is reserved.
///
/// ```
/// use tollgate_core::{reserve_budgets, settle_budgets, Budget, BudgetState, Micros};
///
/// let team = Budget::daily(Micros::from_dollars(100)).build()?;
/// let agent = Budget::daily(Micros::from_dollars(5)).threshold(Micros::from_dollars(1)).build()?;
/// let (mut t, mut a) = (BudgetState::new(&team, 0), BudgetState::new(&agent, 0));
/// let r = reserve_budgets(0, Micros::from_dollars(2), &mut [(&team, &mut t), (&agent, &mut a)]).unwrap();
/// let alerts = settle_budgets(1, r, Micros::from_dollars(2), &mut [(&team, &mut t), (&agent, &mut a)]);
/// assert_eq!(alerts.len(), 1);
/// assert_eq!(alerts[0].0, 1); // the agent's $1 threshold
/// // $6 fits the team, not the agent: nothing is reserved anywhere.
/// let (i, err) = reserve_budgets(2, Micros::from_dollars(6), &mut [(&team, &mut t), (&agent, &mut a)]).unwrap_err();
/// assert_eq!(i, 1);
/// assert!(err.never_fits());
/// assert_eq!(t.reserved, Micros::ZERO);
/// # Ok::<(), tollgate_core::ConfigError>(())
/// ```
pub fn reserve_budgets(
    now_unix: u64,
    estimate: Micros,
    budgets: &mut [(&Budget, &mut BudgetState)],
) -> Result<Reservation, (usize, BudgetExhausted)> {
    for (i, (budget, state)) in budgets.iter_mut().enumerate() {
        state.roll(budget, now_unix);
        state.check(budget, estimate).map_err(|e| (i, e))?;
    }
    for (_, state) in budgets.iter_mut() {
        state.reserved += estimate;
    }
    Ok(Reservation { estimate })
}

/// Settles a call reserved with [`reserve_budgets`] in every one of `budgets` (the same ones, in
/// any order). Returns each alert with the index of its budget.
///
/// ```
/// use tollgate_core::{reserve_budgets, settle_budgets, Budget, BudgetState, Micros};
/// let b = Budget::daily(Micros::from_dollars(1)).build()?;
/// let mut s = BudgetState::new(&b, 0);
/// let r = reserve_budgets(0, Micros::new(10), &mut [(&b, &mut s)]).unwrap();
/// assert!(settle_budgets(0, r, Micros::new(7), &mut [(&b, &mut s)]).is_empty());
/// assert_eq!(s.spent, Micros::new(7));
/// # Ok::<(), tollgate_core::ConfigError>(())
/// ```
pub fn settle_budgets(
    now_unix: u64,
    reservation: Reservation,
    actual: Micros,
    budgets: &mut [(&Budget, &mut BudgetState)],
) -> Vec<(usize, Alert)> {
    let Reservation { estimate } = reservation;
    let mut alerts = Vec::new();
    for (i, (budget, state)) in budgets.iter_mut().enumerate() {
        let share = Reservation { estimate };
        alerts.extend(
            state
                .settle(budget, now_unix, share, actual)
                .into_iter()
                .map(|a| (i, a)),
        );
    }
    alerts
}

/// Gives back a reservation of [`reserve_budgets`] in every one of `budgets`.
///
/// ```
/// use tollgate_core::{release_budgets, reserve_budgets, Budget, BudgetState, Micros};
/// let b = Budget::daily(Micros::from_dollars(1)).build()?;
/// let mut s = BudgetState::new(&b, 0);
/// let r = reserve_budgets(0, Micros::new(10), &mut [(&b, &mut s)]).unwrap();
/// release_budgets(r, &mut [(&b, &mut s)]);
/// assert_eq!(s.reserved, Micros::ZERO);
/// # Ok::<(), tollgate_core::ConfigError>(())
/// ```
pub fn release_budgets(reservation: Reservation, budgets: &mut [(&Budget, &mut BudgetState)]) {
    for (_, state) in budgets.iter_mut() {
        state.reserved -= reservation.estimate;
    }
}
