//! [`Window`] and [`WindowClock`]: which hour, day or calendar month a wall time falls in, at a
//! fixed UTC offset, and when that window resets.

use crate::{ConfigError, Rule};

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

/// The span a budget's spend is counted over. Windows are fixed (calendar) windows, not sliding:
/// the spend drops to zero at the reset.
///
/// ```
/// use tollgate_core::Window;
/// assert_eq!(Window::Day.name(), "day");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Window {
    /// A clock hour in the configured offset (it starts at `:30` UTC at +05:30).
    Hour,
    /// A calendar day, from midnight to midnight in the configured offset.
    Day,
    /// A calendar month, from midnight on the 1st in the configured offset.
    Month,
}

impl Window {
    /// A short lowercase name (`hour`, `day`, `month`).
    ///
    /// ```
    /// use tollgate_core::Window;
    /// assert_eq!(Window::Month.to_string(), "month");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Month => "month",
        }
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where windows start: a fixed offset from UTC, in seconds east of Greenwich.
///
/// A fixed offset, not a time zone: no daylight saving time. Time is Unix seconds passed in by the
/// caller (the clock is never read here). Offsets from −12:00 to +14:00 are accepted (every civil
/// offset in use). Results saturate at `0` and `u64::MAX` instead of overflowing.
///
/// ```
/// use tollgate_core::{Window, WindowClock};
///
/// // India (+05:30): 2024-03-01 00:10 UTC is 05:40 local on 1 March.
/// let ist = WindowClock::from_hours_minutes(5, 30)?;
/// let now = 1_709_251_800; // 2024-03-01T00:10:00Z
/// assert_eq!(ist.window_start(Window::Day, now), 1_709_231_400); // 2024-02-29T18:30:00Z
/// assert_eq!(ist.next_reset(Window::Day, now), 1_709_317_800); // 2024-03-01T18:30:00Z
/// assert_eq!(ist.window_start(Window::Month, now), 1_709_231_400); // 1 March, local midnight
/// # Ok::<(), tollgate_core::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "i32", into = "i32"))]
pub struct WindowClock {
    utc_offset_secs: i32,
}

impl WindowClock {
    /// Windows in UTC.
    ///
    /// ```
    /// use tollgate_core::WindowClock;
    /// assert_eq!(WindowClock::UTC, WindowClock::default());
    /// ```
    pub const UTC: WindowClock = WindowClock { utc_offset_secs: 0 };
    /// The most western offset accepted, −12:00.
    ///
    /// ```
    /// use tollgate_core::WindowClock;
    /// assert!(WindowClock::new(WindowClock::MIN_OFFSET_SECS - 1).is_err());
    /// ```
    pub const MIN_OFFSET_SECS: i32 = -12 * 3_600;
    /// The most eastern offset accepted, +14:00.
    ///
    /// ```
    /// use tollgate_core::WindowClock;
    /// assert!(WindowClock::new(WindowClock::MAX_OFFSET_SECS).is_ok());
    /// ```
    pub const MAX_OFFSET_SECS: i32 = 14 * 3_600;

    /// Windows at `utc_offset_secs` seconds east of UTC (negative west of it).
    ///
    /// # Errors
    /// [`Rule::UtcOffsetOutOfRange`] outside −12:00 ..= +14:00.
    ///
    /// ```
    /// use tollgate_core::{Rule, WindowClock};
    ///
    /// let pst = WindowClock::new(-8 * 3_600)?;
    /// assert_eq!(pst.utc_offset_secs(), -28_800);
    /// // A whole day is no offset.
    /// assert_eq!(WindowClock::new(86_400).unwrap_err().rule(), Rule::UtcOffsetOutOfRange);
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn new(utc_offset_secs: i32) -> Result<WindowClock, ConfigError> {
        if !(Self::MIN_OFFSET_SECS..=Self::MAX_OFFSET_SECS).contains(&utc_offset_secs) {
            return Err(ConfigError::new(
                Rule::UtcOffsetOutOfRange,
                format!("utc offset of {utc_offset_secs} s is outside -12:00 ..= +14:00"),
            ));
        }
        Ok(WindowClock { utc_offset_secs })
    }

    /// Windows at `hours:minutes` from UTC; the sign of `hours` applies to the minutes too
    /// (`(-3, 30)` is −03:30). For −00:30 use [`new`](WindowClock::new)`(-1800)`.
    ///
    /// # Errors
    /// [`Rule::UtcOffsetOutOfRange`] outside −12:00 ..= +14:00 or when `minutes` ≥ 60.
    ///
    /// ```
    /// use tollgate_core::WindowClock;
    /// assert_eq!(WindowClock::from_hours_minutes(-3, 30)?.utc_offset_secs(), -12_600);
    /// assert!(WindowClock::from_hours_minutes(5, 60).is_err());
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn from_hours_minutes(hours: i8, minutes: u8) -> Result<WindowClock, ConfigError> {
        if minutes >= 60 {
            return Err(ConfigError::new(
                Rule::UtcOffsetOutOfRange,
                format!("{minutes} minutes in a utc offset"),
            ));
        }
        let secs = i32::from(hours).abs() * 3_600 + i32::from(minutes) * 60;
        Self::new(if hours < 0 { -secs } else { secs })
    }

    /// The offset in seconds east of UTC.
    ///
    /// ```
    /// use tollgate_core::WindowClock;
    /// assert_eq!(WindowClock::UTC.utc_offset_secs(), 0);
    /// ```
    pub const fn utc_offset_secs(self) -> i32 {
        self.utc_offset_secs
    }

    /// The Unix time (seconds) at which the `window` containing `now_unix` started (0 if that is
    /// before the epoch).
    ///
    /// ```
    /// use tollgate_core::{Window, WindowClock};
    /// let la = WindowClock::from_hours_minutes(-8, 0)?;
    /// // 2023-01-01T05:00:00Z is still 31 December, 21:00, at −08:00.
    /// assert_eq!(la.window_start(Window::Month, 1_672_549_200), 1_669_881_600); // 2022-12-01T08:00Z
    /// # Ok::<(), tollgate_core::ConfigError>(())
    /// ```
    pub fn window_start(self, window: Window, now_unix: u64) -> u64 {
        to_unix(self.local_start(window, self.local(now_unix)) - i128::from(self.utc_offset_secs))
    }

    /// The Unix time (seconds) at which the `window` containing `now_unix` ends and the next one
    /// starts: always after `now_unix` (unless saturated at `u64::MAX`).
    ///
    /// ```
    /// use tollgate_core::{Window, WindowClock};
    /// // 2024-02-29T12:00:00Z in UTC: the month resets on 1 March.
    /// let now = 1_709_208_000;
    /// assert_eq!(WindowClock::UTC.next_reset(Window::Month, now), 1_709_251_200);
    /// assert_eq!(WindowClock::UTC.next_reset(Window::Hour, now), now + 3_600);
    /// ```
    pub fn next_reset(self, window: Window, now_unix: u64) -> u64 {
        let start = self.local_start(window, self.local(now_unix));
        let next = match window {
            Window::Hour => start + i128::from(HOUR),
            Window::Day => start + i128::from(DAY),
            Window::Month => {
                let (y, m, _) = civil_from_days(div_floor(start, DAY));
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                i128::from(days_from_civil(y, m, 1)) * i128::from(DAY)
            }
        };
        to_unix(next - i128::from(self.utc_offset_secs))
    }

    /// Local seconds since 1970-01-01T00:00 local.
    fn local(self, now_unix: u64) -> i128 {
        i128::from(now_unix) + i128::from(self.utc_offset_secs)
    }

    /// The local second at which `window` containing local second `local` starts.
    fn local_start(self, window: Window, local: i128) -> i128 {
        match window {
            Window::Hour => div_floor(local, HOUR) * i128::from(HOUR),
            Window::Day => div_floor(local, DAY) * i128::from(DAY),
            Window::Month => {
                let (y, m, _) = civil_from_days(div_floor(local, DAY));
                i128::from(days_from_civil(y, m, 1)) * i128::from(DAY)
            }
        }
    }
}

impl TryFrom<i32> for WindowClock {
    type Error = ConfigError;
    fn try_from(secs: i32) -> Result<Self, ConfigError> {
        WindowClock::new(secs)
    }
}

impl From<WindowClock> for i32 {
    fn from(c: WindowClock) -> i32 {
        c.utc_offset_secs
    }
}

fn div_floor(a: i128, b: i64) -> i128 {
    a.div_euclid(i128::from(b))
}

fn to_unix(t: i128) -> u64 {
    u64::try_from(t.max(0)).unwrap_or(u64::MAX)
}

/// Howard Hinnant's `civil_from_days` ("chrono-Compatible Low-Level Date Algorithms"): the
/// proleptic Gregorian `(year, month 1..=12, day 1..=31)` of `z` days since 1970-01-01.
/// Exact for every `z` this module produces (|z| < 2^50, far inside `i64`).
fn civil_from_days(z: i128) -> (i64, u32, u32) {
    // |z| ≤ (2^64 + 2^31) / 86_400 < 2^50: the narrowing below cannot fail.
    let z = i64::try_from(z).unwrap_or(if z < 0 { i64::MIN / 2 } else { i64::MAX / 2 }) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Howard Hinnant's `days_from_civil`: days since 1970-01-01 of the proleptic Gregorian date
/// `y-m-d`.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 }; // [0, 11]
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trips_known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        // 2100 is not a leap year.
        assert_eq!(
            civil_from_days(i128::from(days_from_civil(2100, 2, 28)) + 1),
            (2100, 3, 1)
        );
        for z in -800_000..800_000 {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(i128::from(days_from_civil(y, m, d)), z);
        }
    }

    #[test]
    fn extremes_saturate_without_panicking() {
        for off in [
            WindowClock::MIN_OFFSET_SECS,
            0,
            WindowClock::MAX_OFFSET_SECS,
        ] {
            let c = WindowClock::new(off).unwrap();
            for w in [Window::Hour, Window::Day, Window::Month] {
                for t in [0, 1, u64::MAX - 1, u64::MAX] {
                    assert!(c.window_start(w, t) <= t);
                    let r = c.next_reset(w, t);
                    assert!(r > t || r == u64::MAX);
                }
            }
        }
    }
}
