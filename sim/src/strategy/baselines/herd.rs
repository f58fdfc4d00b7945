//! A shared bucket that every waiting caller polls on its own (`bucket-80`'s and `aws-adaptive`'s
//! client buckets), simulated without the polls that cannot change anything.
//!
//! In those strategies a caller that finds the bucket short sleeps (the seed: `min(1/rate, 0.5 s)`;
//! the AWS SDKs: until the bucket should hold a token again) and polls again. With `B` callers
//! waiting that is `B` polls for every token, all but one refused: simulated one by one, they made
//! a run quadratic in its backlog (and a backlog that grows with time is `B ∝ t`).
//!
//! What a poll gives depends only on the bucket and the tick (tokio's clock moves in whole
//! milliseconds), so callers that poll at the same tick form a group: they poll in turn, each
//! takes a token while the bucket gives one, and once it refuses one of them it refuses the rest
//! alike and tells every one of them the same tick to poll again, so the rest of the group moves
//! there whole, without polling. A caller arriving polls once, after the group of its tick; if
//! refused, it joins the end of the group of the tick it was told. Only the first caller of the
//! first group has a timer. A run visits at most one group per millisecond, whatever its backlog;
//! [`tests`] checks each caller's tick against a model that makes every poll.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

const NANOS_PER_MS: u64 = 1_000_000;

/// A bucket as a waiting caller sees it.
pub(crate) trait Polled {
    /// One poll at `tick` (milliseconds since the start): `Ok` took a token; `Err(next)` was
    /// refused and polls again at tick `next`, after `tick`.
    fn poll(&mut self, tick: u64) -> Result<(), u64>;
}

/// The tick a timer set at `tick` for `wait` fires at: tokio rounds a deadline up to whole
/// milliseconds.
pub(crate) fn tick_after(tick: u64, wait: Duration) -> u64 {
    tick + (wait.as_nanos() as u64).div_ceil(NANOS_PER_MS).max(1)
}

/// A bucket and the callers waiting on it.
pub(crate) struct Herd<B> {
    start: Instant,
    state: Mutex<State<B>>,
}

struct State<B> {
    bucket: B,
    /// The waiting callers by the tick they poll at, in the order they poll in (with callers
    /// that stopped waiting among them, skipped when their group polls: a group moves whole).
    groups: BTreeMap<u64, VecDeque<u64>>,
    /// The waiting callers, with the waker each last left.
    waiting: BTreeMap<u64, Option<Waker>>,
    /// Callers given a token that have not seen it yet.
    granted: BTreeSet<u64>,
    /// The next caller to wait gets this number.
    next: u64,
}

impl<B: Polled> Herd<B> {
    /// `bucket`, polled by callers from `start` on.
    pub(crate) fn new(bucket: B, start: Instant) -> Self {
        Herd {
            start,
            state: Mutex::new(State {
                bucket,
                groups: BTreeMap::new(),
                waiting: BTreeMap::new(),
                granted: BTreeSet::new(),
                next: 0,
            }),
        }
    }

    /// Waits for a token and takes it.
    pub(crate) fn acquire(&self) -> Acquire<'_, B> {
        Acquire {
            herd: self,
            caller: None,
            sleep: None,
        }
    }

    /// The bucket, for what else changes it (the answers, in `aws-adaptive`).
    pub(crate) fn with_bucket<T>(&self, f: impl FnOnce(&mut B) -> T) -> T {
        f(&mut self.state().bucket)
    }
}

impl<B> Herd<B> {
    /// The tick of now: milliseconds since the start, rounded up (a timer fires no earlier).
    fn tick(&self) -> u64 {
        (self.start.elapsed().as_nanos() as u64).div_ceil(NANOS_PER_MS)
    }

    fn state(&self) -> MutexGuard<'_, State<B>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<B> State<B> {
    /// The caller that polls next, and its tick (callers that stopped waiting at the head of the
    /// first group are dropped from it on the way).
    fn due(&mut self) -> Option<(u64, u64)> {
        while let Some(mut first) = self.groups.first_entry() {
            let group = first.get_mut();
            while group.front().is_some_and(|c| !self.waiting.contains_key(c)) {
                group.pop_front();
            }
            match group.front() {
                Some(caller) => return Some((*caller, *first.key())),
                None => {
                    first.remove();
                }
            }
        }
        None
    }

    /// `callers` poll at `tick`, after the callers of that tick so far.
    fn wait_at(&mut self, mut callers: VecDeque<u64>, tick: u64) {
        match self.groups.get_mut(&tick) {
            None => {
                self.groups.insert(tick, callers);
            }
            // The shorter one moves.
            Some(there) if there.len() >= callers.len() => there.append(&mut callers),
            Some(there) => {
                while let Some(caller) = there.pop_back() {
                    callers.push_front(caller);
                }
                *there = callers;
            }
        }
    }

    /// Wakes the caller due next if it is not the one due `before`, so that it sets its timer.
    fn wake_due(&mut self, before: Option<(u64, u64)>) {
        match self.due() {
            Some(due) if Some(due) != before => {
                if let Some(Some(waker)) = self.waiting.get(&due.0) {
                    waker.wake_by_ref();
                }
            }
            _ => {}
        }
    }
}

impl<B: Polled> State<B> {
    /// Makes the polls due up to `tick`, group by group.
    fn poll_due(&mut self, tick: u64) {
        let before = self.due();
        while let Some(entry) = self.groups.first_entry() {
            if *entry.key() > tick {
                break;
            }
            let mut group = entry.remove();
            while let Some(caller) = group.pop_front() {
                if !self.waiting.contains_key(&caller) {
                    continue; // stopped waiting
                }
                match self.bucket.poll(tick) {
                    Ok(()) => {
                        if let Some(Some(waker)) = self.waiting.remove(&caller) {
                            waker.wake();
                        }
                        self.granted.insert(caller);
                    }
                    Err(next) => {
                        // The rest of the group would be refused alike and told the same tick.
                        group.push_front(caller);
                        self.wait_at(group, next.max(tick + 1));
                        break;
                    }
                }
            }
        }
        self.wake_due(before);
    }
}

/// The future of [`Herd::acquire`].
pub(crate) struct Acquire<'a, B> {
    herd: &'a Herd<B>,
    /// Its number, once it waits.
    caller: Option<u64>,
    /// Its timer, once it was the caller due next.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B: Polled> Future for Acquire<'_, B> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            let tick = this.herd.tick();
            let mut s = this.herd.state();
            s.poll_due(tick);
            let Some(caller) = this.caller else {
                // Its first poll, on arrival: after the group of this tick.
                let Err(next) = s.bucket.poll(tick) else {
                    return Poll::Ready(());
                };
                let (caller, before) = (s.next, s.due());
                s.next += 1;
                s.waiting.insert(caller, Some(cx.waker().clone()));
                s.wait_at(VecDeque::from([caller]), next.max(tick + 1));
                this.caller = Some(caller);
                s.wake_due(before);
                continue;
            };
            if s.granted.remove(&caller) {
                this.caller = None;
                return Poll::Ready(());
            }
            let Some(waker) = s.waiting.get_mut(&caller) else {
                unreachable!("a caller neither granted nor waiting");
            };
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
            let Some((_, at)) = s.due().filter(|(due, _)| *due == caller) else {
                return Poll::Pending;
            };
            drop(s);
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

impl<B> Drop for Acquire<'_, B> {
    fn drop(&mut self) {
        let Some(caller) = self.caller else {
            return;
        };
        let mut s = self.herd.state();
        // A token given to a caller that never saw it stays taken: only a run's end drops one.
        if s.granted.remove(&caller) {
            return;
        }
        let before = s.due();
        s.waiting.remove(&caller); // its place in its group is skipped
        s.wake_due(before);
    }
}

/// The seed's bucket (`bucket-80`): a caller refused sleeps `min(1/rate, 0.5 s)`. It counts in
/// whole nanoseconds of refill (one token is `round(1e9 / rate)` of them), so that how often it is
/// looked at does not change what it holds.
pub(crate) struct SeedBucket {
    /// Refill nanoseconds one token costs.
    per_token: u64,
    /// Refill nanoseconds the bucket holds at most.
    capacity: u64,
    /// Refill nanoseconds held at `last`.
    credit: u64,
    /// Nanoseconds since the start, when `credit` was last brought up to date.
    last: u64,
    /// How long a refused caller sleeps.
    sleep: Duration,
}

impl SeedBucket {
    /// `capacity` tokens (full at the start), refilled at `rate` tokens a second.
    pub(crate) fn new(rate: f64, capacity: f64) -> Self {
        let per_token = ((1e9 / rate).round() as u64).max(1);
        let capacity = (capacity * per_token as f64).round() as u64;
        SeedBucket {
            per_token,
            capacity,
            credit: capacity,
            last: 0,
            sleep: Duration::from_secs_f64((1.0 / rate).min(0.5)),
        }
    }
}

impl Polled for SeedBucket {
    fn poll(&mut self, tick: u64) -> Result<(), u64> {
        let now = tick * NANOS_PER_MS;
        if now > self.last {
            self.credit = (self.credit + (now - self.last)).min(self.capacity);
            self.last = now;
        }
        if self.credit >= self.per_token {
            self.credit -= self.per_token;
            Ok(())
        } else {
            Err(tick_after(tick, self.sleep))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every poll, one by one: at each tick, the waiting callers whose poll falls on it (in the
    /// order they were last refused), then the callers arriving at it. Returns the tick each
    /// caller got its token at.
    fn every_poll(mut bucket: impl Polled, arrivals: &[u64]) -> Vec<u64> {
        let mut got = vec![None; arrivals.len()];
        // (next poll, refused in this order, caller)
        let mut waiting: Vec<(u64, u64, usize)> = Vec::new();
        let mut refusals = 0;
        let mut tick = 0;
        while got.iter().any(Option::is_none) {
            waiting.sort();
            let due = waiting.iter().take_while(|(at, _, _)| *at == tick).count();
            let polls = waiting
                .drain(..due)
                .map(|(_, _, caller)| caller)
                .collect::<Vec<_>>();
            let arriving = (0..arrivals.len()).filter(|c| arrivals[*c] == tick);
            for caller in polls.into_iter().chain(arriving) {
                match bucket.poll(tick) {
                    Ok(()) => got[caller] = Some(tick),
                    Err(next) => {
                        waiting.push((next, refusals, caller));
                        refusals += 1;
                    }
                }
            }
            tick += 1;
        }
        got.into_iter().map(Option::unwrap).collect()
    }

    /// The same callers through the herd on the paused clock, each arriving at its tick.
    fn through_herd<B: Polled + 'static>(bucket: B, arrivals: &[u64]) -> Vec<u64> {
        let arrivals = arrivals.to_vec();
        crate::engine::block_on(async move {
            let start = Instant::now();
            let herd = Herd::new(bucket, start);
            let herd = &herd;
            let callers = arrivals.iter().map(|&a| async move {
                tokio::time::sleep_until(start + Duration::from_millis(a)).await;
                herd.acquire().await;
                start.elapsed().as_millis() as u64
            });
            let got = futures_util::future::join_all(callers).await;
            let mut s = herd.state();
            assert!(s.waiting.is_empty() && s.due().is_none() && s.granted.is_empty());
            got
        })
        .unwrap()
        .output
    }

    /// A bucket whose waits vary with when it is polled, as `aws-adaptive`'s do (its rate moves):
    /// the refill rate swings with time, the bucket is brought up to date at every poll at the
    /// rate of that moment, and a refused caller sleeps until it should hold a token.
    #[derive(Clone)]
    struct Swinging {
        base: f64,
        tokens: f64,
        last: u64,
    }

    impl Polled for Swinging {
        fn poll(&mut self, tick: u64) -> Result<(), u64> {
            let rate = self.base * (1.5 + (tick as f64 / 700.0).sin()); // tokens a second
            self.tokens = (self.tokens + (tick - self.last) as f64 / 1000.0 * rate).min(2.0);
            self.last = tick;
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                Ok(())
            } else {
                Err(tick_after(
                    tick,
                    Duration::from_secs_f64((1.0 - self.tokens) / rate),
                ))
            }
        }
    }

    fn ticks(gaps: &[u64]) -> Vec<u64> {
        gaps.iter()
            .scan(0, |t, g| {
                *t += g;
                Some(*t)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every caller gets its token at the tick the seed's polls would give it, with one
        /// arrival at a tick (callers arriving at one tick arrive in tokio's order, which neither
        /// side knows).
        #[test]
        fn the_seed_s_callers_get_their_tokens_when_the_polls_would_give_them(
            rate in 2.0f64..400.0,
            capacity in 1.0f64..4.0,
            gaps in proptest::collection::vec(1u64..40, 1..120),
        ) {
            let arrivals = ticks(&gaps);
            prop_assert_eq!(
                through_herd(SeedBucket::new(rate, capacity), &arrivals),
                every_poll(SeedBucket::new(rate, capacity), &arrivals)
            );
        }

        /// The same with waits that change with the moment of the poll.
        #[test]
        fn callers_with_changing_waits_get_their_tokens_when_the_polls_would_give_them(
            base in 1.0f64..200.0,
            gaps in proptest::collection::vec(1u64..40, 1..120),
        ) {
            let arrivals = ticks(&gaps);
            let bucket = Swinging { base, tokens: 1.0, last: 0 };
            prop_assert_eq!(
                through_herd(bucket.clone(), &arrivals),
                every_poll(bucket, &arrivals)
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
        let expected = every_poll(SeedBucket::new(10.0, 1.0), &arrivals);
        assert_eq!(expected, [0, 101, 202, 302]);
        assert_eq!(
            through_herd(SeedBucket::new(10.0, 1.0), &arrivals),
            expected
        );
    }

    #[test]
    fn the_seed_s_bucket_holds_its_capacity_and_no_more() {
        // Two tokens at most, one every 100 ms: two callers go at once, the third at 102 (its
        // poll after the token of 100); after a long idle, two again at once and the third a
        // period later.
        let arrivals = [0, 1, 2, 1000, 1001, 1002];
        let expected = [0, 1, 102, 1000, 1001, 1102];
        assert_eq!(every_poll(SeedBucket::new(10.0, 2.0), &arrivals), expected);
        assert_eq!(
            through_herd(SeedBucket::new(10.0, 2.0), &arrivals),
            expected
        );
    }

    #[test]
    fn a_caller_dropped_while_it_waits_leaves_the_herd_and_the_next_one_goes() {
        let got = crate::engine::block_on(async {
            let start = Instant::now();
            let herd = Herd::new(SeedBucket::new(10.0, 1.0), start);
            herd.acquire().await; // the one token
            let mut dropped = Box::pin(herd.acquire());
            // It waits (it polls at 100) ...
            let mut cx = Context::from_waker(Waker::noop());
            assert!(dropped.as_mut().poll(&mut cx).is_pending());
            tokio::time::sleep(Duration::from_millis(50)).await;
            let next = herd.acquire();
            drop(dropped); // ... and is dropped before it polls again
            next.await;
            let mut s = herd.state();
            assert!(s.waiting.is_empty() && s.due().is_none());
            start.elapsed()
        })
        .unwrap()
        .output;
        // The caller arriving at 50 polls at 150 (its period after 50): the token of 100 is its.
        assert_eq!(got, Duration::from_millis(150));
    }
}
