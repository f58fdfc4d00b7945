//! The seed's shared bucket that every waiting caller polls (`bucket-80`), simulated without the
//! polls that are refused.
//!
//! In the seed, a caller that finds the bucket empty sleeps `min(1/rate, 0.5 s)` and polls again.
//! On tokio's millisecond clock a caller refused at tick `a` polls again at `a + k·period`,
//! `period` being that sleep rounded up to whole milliseconds, as tokio rounds a timer. With `B`
//! callers waiting that is `B` polls a period, nearly all of them refused: simulated one by one,
//! they made a run quadratic in its backlog (a backlog that grows with time is `B ∝ t`).
//!
//! Here only the caller that polls first once the bucket holds a token again has a timer: the one
//! whose next poll comes first at or after the tick the bucket refills to one token. Everything
//! else gives what the polls give: at a tick, the callers whose polls fall on it poll first, in the
//! order they started waiting, and each takes a token while there is one; then the callers that
//! arrive at that tick poll once each, and those refused start waiting (their first poll again is a
//! period later). The bucket counts in whole nanoseconds of refill (one token is
//! `round(1e9 / rate)` of them), so that when it is looked at does not change what it holds.
//! [`tests`] checks each caller's tick against a model that makes every poll.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

const NANOS_PER_MS: u64 = 1_000_000;

/// A waiting caller: the tick it polls at modulo the period, then the order it started waiting in.
type Key = (u64, u64);

/// The bucket and the callers waiting on it.
pub(crate) struct Herd {
    start: Instant,
    state: Mutex<State>,
}

struct State {
    /// Refill nanoseconds one token costs.
    per_token: u64,
    /// Refill nanoseconds the bucket holds at most.
    capacity: u64,
    /// Refill nanoseconds held at `last`.
    credit: u64,
    /// Nanoseconds since the start, when `credit` was last brought up to date.
    last: u64,
    /// Milliseconds from one poll of a waiting caller to its next.
    period: u64,
    /// The callers waiting, with the waker each last left.
    waiting: BTreeMap<Key, Option<Waker>>,
    /// Callers given a token that have not seen it yet.
    granted: BTreeSet<Key>,
    /// The next caller to start waiting gets this number.
    next: u64,
    /// The waiting caller that polls next, and the tick it does.
    due: Option<(Key, u64)>,
}

impl Herd {
    /// A bucket of `capacity` tokens (full at `start`) that refills at `rate` tokens a second,
    /// polled by callers that sleep `min(1/rate, 0.5 s)` after a refusal.
    pub(crate) fn new(rate: f64, capacity: f64, start: Instant) -> Self {
        let per_token = ((1e9 / rate).round() as u64).max(1);
        let sleep = Duration::from_secs_f64((1.0 / rate).min(0.5));
        let capacity = (capacity * per_token as f64).round() as u64;
        Herd {
            start,
            state: Mutex::new(State {
                per_token,
                capacity,
                credit: capacity,
                last: 0,
                period: (sleep.as_nanos() as u64).div_ceil(NANOS_PER_MS).max(1),
                waiting: BTreeMap::new(),
                granted: BTreeSet::new(),
                next: 0,
                due: None,
            }),
        }
    }

    /// Waits for a token and takes it.
    pub(crate) fn acquire(&self) -> Acquire<'_> {
        Acquire {
            herd: self,
            key: None,
            sleep: None,
        }
    }

    /// The tick of now: milliseconds since the start, rounded up (a timer fires no earlier).
    fn tick(&self) -> u64 {
        (self.start.elapsed().as_nanos() as u64).div_ceil(NANOS_PER_MS)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// One poll at `tick`: takes a token if the bucket holds one.
    fn take(&mut self, tick: u64) -> bool {
        let now = tick * NANOS_PER_MS;
        if now > self.last {
            self.credit = (self.credit + (now - self.last)).min(self.capacity);
            self.last = now;
        }
        if self.credit >= self.per_token {
            self.credit -= self.per_token;
            true
        } else {
            false
        }
    }

    /// Makes the polls due up to `tick`, in order, and then finds who polls next.
    fn poll_due(&mut self, tick: u64) {
        while let Some((key, at)) = self.due {
            if at > tick {
                break;
            }
            if self.take(tick) {
                if let Some(Some(waker)) = self.waiting.remove(&key) {
                    waker.wake();
                }
                self.granted.insert(key);
            }
            // Refused: it polls again a period later, and so does every caller polling at this
            // tick after it (the bucket stays short until the next tick).
            self.choose(tick);
        }
    }

    /// Finds the waiting caller that polls first at or after `tick` once the bucket holds a token,
    /// and wakes it if it was not the one due before, so that it sets its timer.
    fn choose(&mut self, tick: u64) {
        let before = self.due.map(|(key, _)| key);
        self.due = None;
        if let Some(&first) = self.waiting.keys().next() {
            let short = self.per_token.saturating_sub(self.credit);
            let refilled = (self.last + short).div_ceil(NANOS_PER_MS).max(tick);
            let phase = refilled % self.period;
            let key = self
                .waiting
                .range((phase, 0)..)
                .next()
                .map_or(first, |(key, _)| *key);
            let at = refilled + (key.0 + self.period - phase) % self.period;
            self.due = Some((key, at));
            if before != Some(key) {
                if let Some(Some(waker)) = self.waiting.get(&key) {
                    waker.wake_by_ref();
                }
            }
        }
    }
}

/// The future of [`Herd::acquire`].
pub(crate) struct Acquire<'a> {
    herd: &'a Herd,
    /// Set while it waits.
    key: Option<Key>,
    /// Its timer, once it was the caller due next.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Future for Acquire<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            let tick = this.herd.tick();
            let mut s = this.herd.state();
            s.poll_due(tick);
            let Some(key) = this.key else {
                // The first poll, on arrival: after the callers polling at this tick.
                if s.take(tick) {
                    s.choose(tick); // a waiter may now wait longer
                    return Poll::Ready(());
                }
                let key = (tick % s.period, s.next);
                s.next += 1;
                s.waiting.insert(key, Some(cx.waker().clone()));
                this.key = Some(key);
                s.choose(tick);
                continue;
            };
            if s.granted.remove(&key) {
                this.key = None;
                return Poll::Ready(());
            }
            match s.waiting.get_mut(&key) {
                Some(Some(w)) if w.will_wake(cx.waker()) => {}
                Some(w) => *w = Some(cx.waker().clone()),
                None => unreachable!("a caller that waits and was not granted is in `waiting`"),
            }
            let Some((due, at)) = s.due.filter(|(due, _)| *due == key) else {
                return Poll::Pending;
            };
            drop(s);
            debug_assert_eq!(due, key);
            let deadline = this.herd.start + Duration::from_millis(at);
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        let Some(key) = self.key else {
            return;
        };
        let tick = self.herd.tick();
        let mut s = self.herd.state();
        s.poll_due(tick);
        if s.granted.remove(&key) {
            // Given a token it never saw: back to the bucket.
            s.credit = (s.credit + s.per_token).min(s.capacity);
        } else {
            s.waiting.remove(&key);
        }
        s.choose(tick);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The seed's polls, every one of them: at each tick, the waiting callers whose poll falls on
    /// it, in the order they started waiting, then the callers arriving at it; a refused caller
    /// polls again `period` ticks later. Returns the tick each caller got its token at.
    fn every_poll(rate: f64, capacity: f64, arrivals: &[u64]) -> Vec<u64> {
        let herd = Herd::new(rate, capacity, Instant::now());
        let mut s = herd.state();
        let mut got = vec![None; arrivals.len()];
        // (next poll, started waiting in this order, caller)
        let mut waiting: Vec<(u64, u64, usize)> = Vec::new();
        let mut order = 0;
        let mut tick = 0;
        while got.iter().any(Option::is_none) {
            waiting.sort();
            let mut still = Vec::new();
            for (at, n, caller) in waiting.drain(..) {
                if at == tick && s.take(tick) {
                    got[caller] = Some(tick);
                } else if at == tick {
                    still.push((at + s.period, n, caller));
                } else {
                    still.push((at, n, caller));
                }
            }
            waiting = still;
            for (caller, _) in arrivals.iter().enumerate().filter(|(_, a)| **a == tick) {
                if s.take(tick) {
                    got[caller] = Some(tick);
                } else {
                    waiting.push((tick + s.period, order, caller));
                    order += 1;
                }
            }
            tick += 1;
        }
        got.into_iter().map(Option::unwrap).collect()
    }

    /// The same callers through the herd on the paused clock, each arriving at its tick.
    fn through_herd(rate: f64, capacity: f64, arrivals: &[u64]) -> Vec<u64> {
        let arrivals = arrivals.to_vec();
        crate::engine::block_on(async move {
            let start = Instant::now();
            let herd = Herd::new(rate, capacity, start);
            let herd = &herd;
            let callers = arrivals.iter().map(|&a| async move {
                tokio::time::sleep_until(start + Duration::from_millis(a)).await;
                herd.acquire().await;
                start.elapsed().as_millis() as u64
            });
            let got = futures_util::future::join_all(callers).await;
            assert!(herd.state().waiting.is_empty());
            got
        })
        .unwrap()
        .output
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every caller gets its token at the tick the seed's polls would give it, with one
        /// arrival at a tick (callers arriving at one tick arrive in tokio's order, which neither
        /// side knows).
        #[test]
        fn each_caller_gets_its_token_when_the_polls_would_give_it(
            rate in 2.0f64..400.0,
            capacity in 1.0f64..4.0,
            gaps in proptest::collection::vec(1u64..40, 1..120),
        ) {
            let arrivals: Vec<u64> = gaps
                .iter()
                .scan(0, |t, g| {
                    *t += g;
                    Some(*t)
                })
                .collect();
            prop_assert_eq!(
                through_herd(rate, capacity, &arrivals),
                every_poll(rate, capacity, &arrivals)
            );
        }
    }

    #[test]
    fn callers_polling_at_one_tick_go_in_the_order_they_started_waiting() {
        // 10 tokens a second, one at most: a token every 100 ms, and a period of 100 ms. The
        // caller of 0 takes the token; 1 and 2 are refused and poll at 101 and 102; 1 takes the
        // token of 100 at 101; 2 is refused again at 102, and so is the caller of 102, which
        // polls at 202 too, after 2: 2 takes the token of 201 at 202, the other one 302.
        let arrivals = [0, 1, 2, 102];
        let expected = every_poll(10.0, 1.0, &arrivals);
        assert_eq!(expected, [0, 101, 202, 302]);
        assert_eq!(through_herd(10.0, 1.0, &arrivals), expected);
    }

    #[test]
    fn the_bucket_holds_its_capacity_and_no_more() {
        // Two tokens at most, one every 100 ms: two callers go at once, the third at 102 (its
        // poll after the token of 100); after a long idle, two again at once and the third a
        // period later.
        let arrivals = [0, 1, 2, 1000, 1001, 1002];
        let expected = [0, 1, 102, 1000, 1001, 1102];
        assert_eq!(every_poll(10.0, 2.0, &arrivals), expected);
        assert_eq!(through_herd(10.0, 2.0, &arrivals), expected);
    }

    #[test]
    fn a_caller_dropped_while_it_waits_leaves_the_herd_and_the_next_one_goes() {
        let got = crate::engine::block_on(async {
            let start = Instant::now();
            let herd = Herd::new(10.0, 1.0, start);
            herd.acquire().await; // the one token
            let mut dropped = Box::pin(herd.acquire());
            // It waits (due at 100 ms) ...
            let mut cx = Context::from_waker(Waker::noop());
            assert!(dropped.as_mut().poll(&mut cx).is_pending());
            tokio::time::sleep(Duration::from_millis(50)).await;
            let next = herd.acquire();
            drop(dropped); // ... and is dropped before its poll
            next.await;
            assert!(herd.state().waiting.is_empty());
            start.elapsed()
        })
        .unwrap()
        .output;
        // The caller arriving at 50 polls at 150 (its period after 50): the token of 100 is its.
        assert_eq!(got, Duration::from_millis(150));
    }
}
