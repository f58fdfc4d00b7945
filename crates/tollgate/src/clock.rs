//! [`Clock`]: the layer's one clock. It owns the origin of the layer's time and every conversion
//! between tokio's [`Instant`], the layer's [`Nanos`] (what stores and the core count in) and wall
//! time in Unix milliseconds (what spend windows, the call log and shared rate cuts use).
//!
//! It reads only tokio's clock, so tokio's paused clock drives the layer in tests and in the
//! simulator; wall time is the layer's start in Unix milliseconds (read once, or set with
//! [`ThrottleBuilder::wall_clock`](crate::ThrottleBuilder::wall_clock)) plus tokio's time since.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tollgate_core::Nanos;

/// The farthest a wall-clock time read from outside (a budget window's reset in a shared ledger)
/// is taken to be: a year, so that a corrupt value delays, never panics.
const FAR: Duration = Duration::from_secs(365 * 86_400);

/// The origin of the layer's time and the wall clock at it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    origin: Instant,
    /// The Unix time (ms) at `origin`.
    epoch_unix_ms: u64,
}

/// tokio's clock now. Every read of the layer goes through here; tests count them on their
/// thread ([`reads`]).
#[inline]
pub(crate) fn now() -> Instant {
    #[cfg(test)]
    READS.with(|n| n.set(n.get() + 1));
    Instant::now()
}

#[cfg(test)]
thread_local! {
    static READS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The clock reads of the layer on this thread so far.
#[cfg(test)]
pub(crate) fn reads() -> u64 {
    READS.with(std::cell::Cell::get)
}

impl Clock {
    /// A clock whose origin is now, when the wall clock reads `epoch_unix_ms`.
    pub(crate) fn start(epoch_unix_ms: u64) -> Self {
        Clock {
            origin: now(),
            epoch_unix_ms,
        }
    }

    /// The layer's time at `t`.
    #[inline]
    pub(crate) fn nanos(&self, t: Instant) -> Nanos {
        Nanos::from(t.saturating_duration_since(self.origin))
    }

    /// The layer's time now.
    pub(crate) fn elapsed(&self) -> Nanos {
        self.nanos(now())
    }

    /// Wall-clock Unix milliseconds at `t`.
    pub(crate) fn unix_ms(&self, t: Instant) -> u64 {
        self.epoch_unix_ms
            .saturating_add(millis(t.saturating_duration_since(self.origin)))
    }

    /// Wall-clock Unix seconds at `t` (what budget windows count in).
    pub(crate) fn unix_secs(&self, t: Instant) -> u64 {
        self.unix_ms(t) / 1000
    }

    /// The instant at which the wall clock reads `unix_secs`: the origin for a time before it, at
    /// most a year ahead.
    pub(crate) fn at_unix_secs(&self, unix_secs: u64) -> Instant {
        let ms = unix_secs
            .saturating_mul(1000)
            .saturating_sub(self.epoch_unix_ms);
        self.origin
            .checked_add(Duration::from_millis(ms).min(FAR))
            .unwrap_or(self.origin)
    }

    /// The layer's time at the wall-clock time `unix_ms`; `None` before the origin.
    pub(crate) fn nanos_at_unix_ms(&self, unix_ms: u64) -> Option<Nanos> {
        let since = unix_ms.checked_sub(self.epoch_unix_ms)?;
        Some(Nanos::from(Duration::from_millis(since)))
    }
}

/// Whole milliseconds of `d`, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The earlier of two optional instants (`None` is "never").
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Arms the timer in `slot` for `at` (made on first use, reset when it changed) and registers
/// the task's waker with it; when `at` has passed already, wakes the task at once, so that its
/// caller, which returns `Pending`, is polled again.
pub(crate) fn sleep_until(slot: &mut Option<Pin<Box<Sleep>>>, at: Instant, cx: &mut Context<'_>) {
    let sleep = slot.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
    if sleep.deadline() != at {
        sleep.as_mut().reset(at);
    }
    if sleep.as_mut().poll(cx).is_ready() {
        cx.waker().wake_by_ref();
    }
}
