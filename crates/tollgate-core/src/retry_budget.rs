//! [`RetryBudget`]: the AWS SDKs' retry quota, a token bucket that retries draw from and
//! successes refill, so that a failing provider sees a bounded number of retries instead of
//! `max_retries ×` the traffic.

use crate::{ConfigError, Rule};

/// Why a call is being retried; decides what the retry costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryKind {
    /// The provider throttled the call (429, 529, a rate-limit error). Costs 5 by default.
    Throttle,
    /// Another retryable error (a 5xx, a dropped connection). Costs 5 by default.
    Transient,
    /// The call timed out. Costs 10 by default.
    Timeout,
}

/// The AWS SDKs' retry quota: a token bucket that retries draw from and successes refill.
///
/// Defaults ([`RetryBudget::aws_standard`]), from botocore `retries/quota.py` and
/// `retries/standard.py` (`INITIAL_CAPACITY = 500`, `_RETRY_COST = 5`,
/// `_TIMEOUT_RETRY_REQUEST = 10`, `_NO_RETRY_INCREMENT = 1`), the same in aws-c-io
/// `standard_retry_strategy.c` and the AWS SDKs and Tools Reference Guide, "Retry behavior":
///
/// * capacity 500, and the bucket starts full;
/// * a retry withdraws 5 ([`RetryKind::Throttle`], [`RetryKind::Transient`]) or 10
///   ([`RetryKind::Timeout`]); when fewer tokens are left the retry is refused, not delayed;
/// * a call that succeeds at the first try deposits 1 ([`deposit_success`](RetryBudget::deposit_success));
///   a call that succeeds after a retry gets that retry's cost back
///   ([`refund`](RetryBudget::refund)); deposits stop at the capacity.
///
/// **The bound.** Under 100 % failure nothing is deposited, so a budget that starts full allows
/// at most `⌊capacity / cost⌋` retries in all (500 / 5 = **100**, or 50 if every retry is a
/// timeout; Java's `THROTTLED_RETRIES = 100`), however many calls share it. Under sustained
/// failure (no retry succeeds, so nothing is refunded) each further retry needs `cost / deposit`
/// first-try successes: retries stay within the capacity's worth plus `deposit / cost` (0.2) of
/// the first-try successes.
///
/// **Threads.** A plain struct with `&mut self` methods: whoever shares one (the tower layer)
/// puts it behind a lock.
///
/// ```
/// use tollgate_core::{RetryBudget, RetryKind};
///
/// let mut budget = RetryBudget::aws_standard();
/// // The provider is down: every call fails and asks for a retry.
/// let retries = std::iter::from_fn(|| budget.try_withdraw(RetryKind::Throttle).then_some(()))
///     .count();
/// assert_eq!(retries, 100);
/// // It is back: each first-try success puts one token back; five allow one more retry.
/// for _ in 0..5 {
///     budget.deposit_success();
/// }
/// assert!(budget.try_withdraw(RetryKind::Throttle));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RetryBudget {
    capacity: u32,
    available: u32,
    throttle_cost: u32,
    transient_cost: u32,
    timeout_cost: u32,
    success_deposit: u32,
}

/// Builds a [`RetryBudget`]; every rule is checked once, in [`build`](RetryBudgetBuilder::build).
///
/// Defaults (the AWS SDKs'): capacity 500, throttle and transient retries cost 5, timeouts 10, a
/// first-try success deposits 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use]
pub struct RetryBudgetBuilder {
    capacity: u32,
    throttle_cost: u32,
    transient_cost: u32,
    timeout_cost: u32,
    success_deposit: u32,
}

// ===== impl RetryBudget =====

impl RetryBudget {
    /// The AWS SDKs' retry quota: capacity 500, retries cost 5 (timeouts 10), a first-try success
    /// deposits 1. Starts full.
    pub const fn aws_standard() -> RetryBudget {
        RetryBudget {
            capacity: 500,
            available: 500,
            throttle_cost: 5,
            transient_cost: 5,
            timeout_cost: 10,
            success_deposit: 1,
        }
    }

    /// A builder with the AWS defaults.
    ///
    /// ```
    /// use tollgate_core::{RetryBudget, RetryKind};
    ///
    /// // Brooker's retry bucket: 10 tokens a retry, a success deposits 1: about 10 % retries.
    /// let budget = RetryBudget::builder()
    ///     .capacity(100)
    ///     .cost(RetryKind::Throttle, 10)
    ///     .cost(RetryKind::Transient, 10)
    ///     .build()?;
    /// assert_eq!(budget.available(), 100);
    /// assert_eq!(budget.cost(RetryKind::Timeout), 10);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub const fn builder() -> RetryBudgetBuilder {
        RetryBudgetBuilder {
            capacity: 500,
            throttle_cost: 5,
            transient_cost: 5,
            timeout_cost: 10,
            success_deposit: 1,
        }
    }

    /// Withdraws the cost of one retry of `kind`. `false` (and nothing withdrawn) when fewer tokens
    /// are left: the caller must not retry.
    pub fn try_withdraw(&mut self, kind: RetryKind) -> bool {
        let cost = self.cost(kind);
        match self.available.checked_sub(cost) {
            Some(left) => {
                self.available = left;
                true
            }
            None => false,
        }
    }

    /// A call succeeded at its first try: deposits the success deposit (1 by default), up to the
    /// capacity.
    pub fn deposit_success(&mut self) {
        self.deposit(self.success_deposit);
    }

    /// A call succeeded after a retry of `kind`: gives that retry's cost back, up to the capacity
    /// (what the AWS SDKs do instead of [`deposit_success`](Self::deposit_success) for such a
    /// call).
    ///
    /// ```
    /// use tollgate_core::{RetryBudget, RetryKind};
    ///
    /// let mut budget = RetryBudget::aws_standard();
    /// assert!(budget.try_withdraw(RetryKind::Timeout));
    /// assert_eq!(budget.available(), 490);
    /// budget.refund(RetryKind::Timeout); // the retry worked
    /// assert_eq!(budget.available(), 500);
    /// ```
    pub fn refund(&mut self, kind: RetryKind) {
        self.deposit(self.cost(kind));
    }

    fn deposit(&mut self, amount: u32) {
        self.available = self.available.saturating_add(amount).min(self.capacity);
    }

    /// The tokens left.
    pub const fn available(&self) -> u32 {
        self.available
    }

    /// The most tokens the budget holds.
    pub const fn capacity(&self) -> u32 {
        self.capacity
    }

    /// What one retry of `kind` costs.
    pub const fn cost(&self, kind: RetryKind) -> u32 {
        match kind {
            RetryKind::Throttle => self.throttle_cost,
            RetryKind::Transient => self.transient_cost,
            RetryKind::Timeout => self.timeout_cost,
        }
    }

    /// What a first-try success deposits.
    pub const fn success_deposit(&self) -> u32 {
        self.success_deposit
    }
}

impl Default for RetryBudget {
    /// [`RetryBudget::aws_standard`].
    fn default() -> Self {
        RetryBudget::aws_standard()
    }
}

// ===== impl RetryBudgetBuilder =====

impl RetryBudgetBuilder {
    /// The most tokens the budget holds, and what it starts with (default 500).
    ///
    /// ```
    /// use tollgate_core::RetryBudget;
    /// assert_eq!(RetryBudget::builder().capacity(50).build()?.available(), 50);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub const fn capacity(mut self, capacity: u32) -> Self {
        self.capacity = capacity;
        self
    }

    /// What a retry of `kind` costs (defaults 5, 5, 10); in `1..=capacity`.
    ///
    /// ```
    /// use tollgate_core::{RetryBudget, RetryKind};
    /// // The AWS SDKs' 2026 retry behaviour charges 14 for a transient retry.
    /// let b = RetryBudget::builder().cost(RetryKind::Transient, 14).build()?;
    /// assert_eq!(b.cost(RetryKind::Transient), 14);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub const fn cost(mut self, kind: RetryKind, cost: u32) -> Self {
        match kind {
            RetryKind::Throttle => self.throttle_cost = cost,
            RetryKind::Transient => self.transient_cost = cost,
            RetryKind::Timeout => self.timeout_cost = cost,
        }
        self
    }

    /// What a first-try success deposits (default 1). Zero makes the budget a fixed allowance that
    /// only [`refund`](RetryBudget::refund) tops up.
    ///
    /// ```
    /// use tollgate_core::RetryBudget;
    /// assert_eq!(RetryBudget::builder().success_deposit(2).build()?.success_deposit(), 2);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub const fn success_deposit(mut self, deposit: u32) -> Self {
        self.success_deposit = deposit;
        self
    }

    /// Checks every rule and builds a full [`RetryBudget`].
    ///
    /// # Errors
    /// [`Rule::RetryCostOutOfRange`]: a cost of zero (retries would be unbounded), or above the
    /// capacity (that kind could never retry; this includes a capacity of zero).
    ///
    /// ```
    /// use tollgate_core::{RetryBudget, RetryKind, Rule};
    /// let err = RetryBudget::builder().cost(RetryKind::Throttle, 0).build().unwrap_err();
    /// assert_eq!(err.rule(), Rule::RetryCostOutOfRange);
    /// ```
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        for (kind, cost) in [
            (RetryKind::Throttle, self.throttle_cost),
            (RetryKind::Transient, self.transient_cost),
            (RetryKind::Timeout, self.timeout_cost),
        ] {
            if cost == 0 || cost > self.capacity {
                return Err(ConfigError::new(
                    Rule::RetryCostOutOfRange,
                    format!(
                        "a {kind:?} retry costs {cost}; it must be in 1..={} (the capacity)",
                        self.capacity
                    ),
                ));
            }
        }
        Ok(RetryBudget {
            capacity: self.capacity,
            available: self.capacity,
            throttle_cost: self.throttle_cost,
            transient_cost: self.transient_cost,
            timeout_cost: self.timeout_cost,
            success_deposit: self.success_deposit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_alone_allow_fifty() {
        let mut b = RetryBudget::aws_standard();
        let n = (0..1_000)
            .filter(|_| b.try_withdraw(RetryKind::Timeout))
            .count();
        assert_eq!(n, 50);
        assert_eq!(b.available(), 0);
    }

    #[test]
    fn capacity_zero_is_refused() {
        let err = RetryBudget::builder().capacity(0).build().unwrap_err();
        assert_eq!(err.rule(), Rule::RetryCostOutOfRange);
    }

    #[test]
    fn refused_withdrawal_takes_nothing() {
        let mut b = RetryBudget::builder().capacity(12).build().unwrap();
        assert!(b.try_withdraw(RetryKind::Timeout));
        assert!(!b.try_withdraw(RetryKind::Throttle));
        assert_eq!(b.available(), 2);
    }
}
