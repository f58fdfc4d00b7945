//! [`Micros`]: money as whole micro-dollars, so that adding up a day of calls never drifts.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Sub, SubAssign};

/// An amount of US dollars in whole millionths of a dollar (micro-dollars).
///
/// Integers, not floats: a day of a million calls adds up to exactly the sum of its parts, in any
/// order, on every machine. Arithmetic saturates (at zero and at [`Micros::MAX`], about
/// $18.4 trillion): it never wraps and never panics.
///
/// Displays as dollars with six decimals.
///
/// ```
/// use tollgate_core::Micros;
///
/// let cap = Micros::from_dollars(100);
/// assert_eq!(cap.as_u64(), 100_000_000);
/// assert_eq!(Micros::new(1_234_567).to_string(), "$1.234567");
/// assert_eq!(Micros::from_cents(250) + Micros::new(1), Micros::new(2_500_001));
/// assert_eq!(Micros::new(5) - Micros::new(7), Micros::ZERO); // saturates
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct Micros(u64);

impl Micros {
    /// Nothing.
    ///
    /// ```
    /// use tollgate_core::Micros;
    /// assert_eq!(Micros::ZERO, Micros::default());
    /// ```
    pub const ZERO: Micros = Micros(0);
    /// The largest amount (`u64::MAX` micro-dollars).
    ///
    /// ```
    /// use tollgate_core::Micros;
    /// assert_eq!(Micros::MAX.to_string(), "$18446744073709.551615");
    /// ```
    pub const MAX: Micros = Micros(u64::MAX);
    /// Micro-dollars in one dollar.
    ///
    /// ```
    /// use tollgate_core::Micros;
    /// assert_eq!(Micros::from_dollars(1).as_u64(), Micros::PER_DOLLAR);
    /// ```
    pub const PER_DOLLAR: u64 = 1_000_000;

    /// `n` micro-dollars.
    ///
    /// ```
    /// use tollgate_core::Micros;
    /// assert_eq!(Micros::new(1).to_string(), "$0.000001");
    /// ```
    pub const fn new(n: u64) -> Self {
        Micros(n)
    }

    /// `d` whole dollars (saturating).
    ///
    /// ```
    /// use tollgate_core::Micros;
    /// assert_eq!(Micros::from_dollars(20).to_string(), "$20.000000");
    /// ```
    pub const fn from_dollars(d: u64) -> Self {
        Micros(d.saturating_mul(Self::PER_DOLLAR))
    }

    /// `c` cents (saturating).
    ///
    /// ```
    /// use tollgate_core::Micros;
    /// assert_eq!(Micros::from_cents(1_999), Micros::new(19_990_000));
    /// ```
    pub const fn from_cents(c: u64) -> Self {
        Micros(c.saturating_mul(Self::PER_DOLLAR / 100))
    }

    /// `dollars` rounded to the nearest micro-dollar; `None` unless it is a finite number in
    /// `[0, Micros::MAX]`. For amounts read from a configuration file.
    ///
    /// ```
    /// use tollgate_core::Micros;
    /// assert_eq!(Micros::from_dollars_f64(0.075), Some(Micros::new(75_000)));
    /// assert_eq!(Micros::from_dollars_f64(-1.0), None);
    /// assert_eq!(Micros::from_dollars_f64(f64::NAN), None);
    /// ```
    pub fn from_dollars_f64(dollars: f64) -> Option<Self> {
        let micros = (dollars * Self::PER_DOLLAR as f64).round();
        // 2^64 is exactly representable; anything at or above it does not fit (nor does NaN).
        (0.0..18_446_744_073_709_551_616.0)
            .contains(&micros)
            .then_some(Micros(micros as u64))
    }

    /// The amount in micro-dollars.
    ///
    /// ```
    /// use tollgate_core::Micros;
    /// assert_eq!(Micros::from_dollars(3).as_u64(), 3_000_000);
    /// ```
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The amount in dollars, as a float (for display and metrics, never for accounting).
    ///
    /// ```
    /// use tollgate_core::Micros;
    /// assert_eq!(Micros::from_cents(150).as_dollars_f64(), 1.5);
    /// ```
    pub fn as_dollars_f64(self) -> f64 {
        self.0 as f64 / Self::PER_DOLLAR as f64
    }

    /// `self + rhs`, stopping at [`Micros::MAX`].
    ///
    /// ```
    /// use tollgate_core::Micros;
    /// assert_eq!(Micros::MAX.saturating_add(Micros::new(1)), Micros::MAX);
    /// ```
    #[must_use]
    pub const fn saturating_add(self, rhs: Micros) -> Micros {
        Micros(self.0.saturating_add(rhs.0))
    }

    /// `self - rhs`, stopping at zero.
    ///
    /// ```
    /// use tollgate_core::Micros;
    /// assert_eq!(Micros::new(1).saturating_sub(Micros::new(2)), Micros::ZERO);
    /// ```
    #[must_use]
    pub const fn saturating_sub(self, rhs: Micros) -> Micros {
        Micros(self.0.saturating_sub(rhs.0))
    }

    /// `self × n`, stopping at [`Micros::MAX`].
    ///
    /// ```
    /// use tollgate_core::Micros;
    /// assert_eq!(Micros::from_cents(5).saturating_mul(3), Micros::from_cents(15));
    /// ```
    #[must_use]
    pub const fn saturating_mul(self, n: u64) -> Micros {
        Micros(self.0.saturating_mul(n))
    }
}

impl From<Micros> for u64 {
    fn from(m: Micros) -> u64 {
        m.0
    }
}

impl Add for Micros {
    type Output = Micros;
    /// Saturating.
    fn add(self, rhs: Micros) -> Micros {
        self.saturating_add(rhs)
    }
}

impl AddAssign for Micros {
    /// Saturating.
    fn add_assign(&mut self, rhs: Micros) {
        *self = self.saturating_add(rhs);
    }
}

impl Sub for Micros {
    type Output = Micros;
    /// Saturating at zero.
    fn sub(self, rhs: Micros) -> Micros {
        self.saturating_sub(rhs)
    }
}

impl SubAssign for Micros {
    /// Saturating at zero.
    fn sub_assign(&mut self, rhs: Micros) {
        *self = self.saturating_sub(rhs);
    }
}

impl Sum for Micros {
    /// Saturating.
    fn sum<I: Iterator<Item = Micros>>(iter: I) -> Micros {
        iter.fold(Micros::ZERO, Micros::saturating_add)
    }
}

impl<'a> Sum<&'a Micros> for Micros {
    /// Saturating.
    fn sum<I: Iterator<Item = &'a Micros>>(iter: I) -> Micros {
        iter.copied().sum()
    }
}

impl fmt::Display for Micros {
    /// `$` then dollars with six decimals: `$1.234567`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (d, m) = (self.0 / Self::PER_DOLLAR, self.0 % Self::PER_DOLLAR);
        write!(f, "${d}.{m:06}")
    }
}
