//! [`ScopeCounters`]: what the layer counts of each scope as it works (admissions, refusals, the
//! queue's depth, recent waits), read by [`stats`](crate::Limiter::stats).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How many recent queue waits each scope keeps for its percentiles.
const WAIT_SAMPLES: usize = 1024;

/// Counters of one scope, updated without a lock except when a call had to wait.
#[derive(Debug, Default)]
pub(crate) struct ScopeCounters {
    admitted: AtomicU64,
    refused: AtomicU64,
    queued: AtomicU64,
    waits: Mutex<VecDeque<Duration>>,
}

impl ScopeCounters {
    /// Counts a call admitted (after `waited` in the queue, if it queued); returns the calls
    /// admitted so far, this one included: the call's place in the scope's admissions.
    #[inline]
    pub(crate) fn admitted(&self, waited: Option<Duration>) -> u64 {
        let n = self.admitted.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(w) = waited {
            self.waited(w);
        }
        n
    }

    /// The calls admitted so far.
    pub(crate) fn admitted_so_far(&self) -> u64 {
        self.admitted.load(Ordering::Relaxed)
    }

    /// Keeps the wait of a call that queued, among the latest [`WAIT_SAMPLES`].
    fn waited(&self, w: Duration) {
        let mut waits = self.waits.lock().unwrap_or_else(|e| e.into_inner());
        if waits.len() == WAIT_SAMPLES {
            waits.pop_front();
        }
        waits.push_back(w);
    }

    /// The calls admitted and refused so far: it changes whenever the scope is used.
    pub(crate) fn calls(&self) -> u64 {
        self.admitted.load(Ordering::Relaxed) + self.refused.load(Ordering::Relaxed)
    }

    pub(crate) fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn enqueued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dequeued(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> (u64, u64, u64, Vec<Duration>) {
        let waits = self.waits.lock().unwrap_or_else(|e| e.into_inner());
        (
            self.admitted.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.queued.load(Ordering::Relaxed),
            waits.iter().copied().collect(),
        )
    }
}
