//! [`Nanos`]: a point in time or a span, in whole nanoseconds since an epoch the caller chooses.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// Nanoseconds since an epoch chosen by the caller (for the tower layer: the moment the limiter was
/// built). Every function of this crate takes time as a `Nanos`, so the algorithms never read a clock.
///
/// Arithmetic saturates: time never wraps.
///
/// ```
/// use tollgate_core::Nanos;
/// use std::time::Duration;
///
/// let t = Nanos::from(Duration::from_millis(1500));
/// assert_eq!(t.as_u64(), 1_500_000_000);
/// assert_eq!(t - Nanos::from_secs(2), Nanos::ZERO); // saturates at zero
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Nanos(u64);

impl Nanos {
    /// The epoch.
    pub const ZERO: Nanos = Nanos(0);
    /// The largest representable time (about 584 years).
    pub const MAX: Nanos = Nanos(u64::MAX);

    /// A time of `n` nanoseconds.
    pub const fn new(n: u64) -> Self {
        Nanos(n)
    }

    /// A time of `s` whole seconds.
    pub const fn from_secs(s: u64) -> Self {
        Nanos(s.saturating_mul(1_000_000_000))
    }

    /// A time of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Nanos(ms.saturating_mul(1_000_000))
    }

    /// The value in nanoseconds.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The span as a [`Duration`].
    pub const fn as_duration(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// `self - other`, or zero when `other` is later.
    pub const fn saturating_sub(self, other: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(other.0))
    }
}

impl From<Duration> for Nanos {
    fn from(d: Duration) -> Self {
        Nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

impl From<Nanos> for Duration {
    fn from(n: Nanos) -> Self {
        n.as_duration()
    }
}

impl Add for Nanos {
    type Output = Nanos;
    fn add(self, rhs: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(rhs.0))
    }
}

impl Sub for Nanos {
    type Output = Nanos;
    fn sub(self, rhs: Nanos) -> Nanos {
        self.saturating_sub(rhs)
    }
}

impl fmt::Debug for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.as_duration(), f)
    }
}
