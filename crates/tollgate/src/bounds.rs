//! Bounds on the durations the layer is given: the longest a duration setting is taken to be
//! ([`MAX_DURATION`]), the default longest provider delay ([`DEFAULT_MAX_PROVIDER_DELAY`]), and
//! an instant plus a duration that never overflows.
//!
//! Any `Duration` is accepted by the builder, the configuration file and the limiter's methods:
//! settings longer than [`MAX_DURATION`] are taken as [`MAX_DURATION`], and every delay a
//! provider (or a classifier) names is cut to the layer's longest provider delay. So no time the
//! layer computes can overflow an `Instant`, and no answer can pause the layer for longer than
//! the configuration says.

use std::time::Duration;
use tokio::time::Instant;

/// The longest duration the layer keeps: 100 years of 365 days. A longer duration setting
/// ([`max_wait`](crate::ThrottleBuilder::max_wait), a [`Cooldown`](crate::feedback::Cooldown)'s
/// base or cap, [`max_provider_delay`](crate::ThrottleBuilder::max_provider_delay)) is taken as
/// this one: it means "never" for any process, and it keeps every instant the layer computes far
/// inside what `Instant` and the stores' nanosecond clocks (about 584 years) can hold.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(tollgate::MAX_DURATION, Duration::from_secs(100 * 365 * 86_400));
/// ```
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The longest delay a provider may impose by default: 24 hours. The longest windows providers
/// enforce are per day (requests or tokens per day), so a genuine retry delay or reset is never
/// longer than a day; anything longer is a malformed or hostile value, and honouring it would
/// stall every caller for good. A delay cut short this way costs at worst one more rate-limited
/// answer per day. Set another with
/// [`max_provider_delay`](crate::ThrottleBuilder::max_provider_delay) or
/// [`HttpClassifier::max_delay`](crate::feedback::HttpClassifier::max_delay).
///
/// ```
/// use std::time::Duration;
/// assert_eq!(tollgate::DEFAULT_MAX_PROVIDER_DELAY, Duration::from_secs(86_400));
/// ```
pub const DEFAULT_MAX_PROVIDER_DELAY: Duration = Duration::from_secs(24 * 3600);

/// `d`, or [`MAX_DURATION`] when it is longer.
pub(crate) fn saturate(d: Duration) -> Duration {
    d.min(MAX_DURATION)
}

/// `t + d`, never overflowing: a `d` too long for an `Instant` is cut to [`MAX_DURATION`] (and
/// in the unreachable case that this overflows too, the result is `t`).
pub(crate) fn after(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(MAX_DURATION))
        .unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            Just(Duration::MAX),
            Just(Duration::ZERO),
            Just(MAX_DURATION),
            (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
            (0u64..10 * MAX_DURATION.as_secs()).prop_map(Duration::from_secs),
        ]
    }

    proptest! {
        /// Any duration after an instant the layer reads: never a panic, exactly `t + d` when
        /// an `Instant` can hold it, else `t + MAX_DURATION`.
        #[test]
        fn after_never_overflows(d in duration()) {
            let t = Instant::now();
            let at = after(t, d);
            match t.checked_add(d) {
                Some(exact) => prop_assert_eq!(at, exact),
                None => prop_assert_eq!(at - t, MAX_DURATION),
            }
            prop_assert!(saturate(d) <= MAX_DURATION && saturate(d) <= d);
        }
    }

    #[test]
    fn the_longest_duration_is_cut_to_the_maximum() {
        let t = Instant::now();
        assert_eq!(after(t, Duration::MAX) - t, MAX_DURATION);
        assert_eq!(saturate(Duration::MAX), MAX_DURATION);
        assert_eq!(saturate(Duration::from_secs(5)), Duration::from_secs(5));
    }
}
