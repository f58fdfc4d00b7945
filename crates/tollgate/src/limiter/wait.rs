//! Admission. A call that can go at once is admitted when it is made ([`admit_at_once`]: one
//! clock read and the store's compare-and-swaps, nothing else). Any other call is [`Waiting`]: it
//! reserves its money (if the layer counts any), takes its turn in the queue, asks the store, and
//! sleeps until its capacity is due or it is woken (see [`crate::wake`]); admitted, it becomes an
//! [`Admitted`] call.
//!
//! # The wait rules, each written once
//! * **Deadline** ([`Place::deadline`]): a call that has waited its maximum wait is refused with
//!   the wait it was predicted.
//! * **Refusal over the maximum wait** ([`Place::over_max_wait`]): with
//!   [`refuse_over_max_wait`](crate::ThrottleBuilder::refuse_over_max_wait), a call whose
//!   predicted admission (its own, or the call's ahead of it) is past its deadline is refused at
//!   once.
//! * **Timer** ([`clock::sleep_until`]): a waiting call sleeps until the earlier of its capacity's
//!   due time and its deadline.

use super::lane::Lane;
use super::permit::Admitted;
use crate::bounds;
use crate::clock::{self, earliest};
use crate::queue::WaitState;
use crate::spend::Account;
use crate::store::{Acquire, Decision, StoreError};
use crate::wake::{Blocked, Guard, Seen};
use crate::{Cost, Priority, Store, ThrottleError};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tollgate_core::Nanos;

/// Admits a call of `cost` in `lane` now, if it can go at once: nothing queued, limits unchanged
/// since the lane was resolved, a store that decides in this process, and room in every bucket
/// and under every cap. Otherwise hands the lane back, with the store's refusal when it was asked
/// ([`Asked`]), and the call waits. Only for a call without an account (the money side waits in
/// [`Waiting`]).
#[inline]
pub(crate) fn admit_at_once<St: Store>(
    lane: Arc<Lane<St>>,
    cost: Cost,
) -> Result<Admitted<St>, Later<St>> {
    let shared = &lane.shared;
    if !shared.waiters.is_empty() || lane.scopes.is_empty() || !lane.is_current() {
        return Err((lane, None));
    }
    // Read before the store is asked (see `crate::wake`): the refusal goes on to the queue.
    let seen = shared.waiters.seen();
    let now = clock::now();
    let at = shared.clock.nanos(now);
    let acquire = Acquire {
        now: at,
        scopes: &lane.scopes,
        cost,
    };
    match shared.store.acquire_now(&lane.handle, &acquire) {
        Some(Ok(Decision::Admitted(reservation))) => {
            let place = lane.count_admitted(None);
            Ok(Admitted::new(
                lane,
                cost,
                at,
                place,
                Some(reservation),
                None,
            ))
        }
        Some(Ok(decision)) => {
            let asked = Asked {
                seen,
                at,
                now,
                decision,
            };
            Err((lane, Some(asked)))
        }
        _ => Err((lane, None)),
    }
}

/// A call that could not go at once: its lane back, with the store's refusal if it was asked.
pub(crate) type Later<St> = (Arc<Lane<St>>, Option<Asked<St>>);

/// A store's refusal of a call asked at once: the call's first poll acts on it as on an answer
/// that just came back, instead of asking again.
pub(crate) struct Asked<St: Store> {
    /// The give-backs seen before the store was asked.
    seen: Seen,
    /// When it was asked, in the layer's time and as an instant.
    at: Nanos,
    now: Instant,
    /// A wait or a call that never fits.
    decision: Decision<St::Reservation>,
}

/// A call waiting for admission. Dropped while it waits, it leaves the queue and lets the next
/// call go, and gives back the money it reserved.
pub(crate) struct Waiting<St: Store> {
    /// Who the call is; `None` once it was admitted or refused.
    call: Option<Call<St>>,
    /// Where it is in its wait.
    place: Place<St>,
}

/// What a call carries from its wait into its admission.
struct Call<St: Store> {
    /// Its scopes and the limiter.
    lane: Arc<Lane<St>>,
    priority: Priority,
    cost: Cost,
    account: Option<Box<Account>>,
}

/// Where a call is in its wait.
struct Place<St: Store> {
    /// Its place in arrival order, taken when it first needs one (see [`Place::id`]); zero
    /// before.
    id: u64,
    /// Set at the first poll.
    arrived: Option<Instant>,
    enqueued: bool,
    /// The give-backs seen before the last request to the store (see [`crate::wake`]).
    seen: Seen,
    /// The answer of a store in another process, while it comes.
    pending: Option<Box<St::AcquireFuture>>,
    /// The store's answer when the call was made, not acted on yet.
    decided: Option<Decision<St::Reservation>>,
    /// Allocated only once the call has to wait.
    sleep: Option<Pin<Box<Sleep>>>,
    /// The layer's time of the last request to the store (zero before the first).
    asked_at: Nanos,
}

/// What to do after the queue was consulted.
enum Turn {
    /// Try the store now.
    Go,
    /// Wait to be woken when the call's turn comes.
    Wait,
}

impl<St: Store> Waiting<St> {
    /// A call in `lane` with the estimate `cost`; `asked` is the store's refusal if it was asked
    /// already.
    pub(crate) fn new(
        lane: Arc<Lane<St>>,
        cost: Cost,
        priority: Priority,
        account: Option<Box<Account>>,
        asked: Option<Asked<St>>,
    ) -> Self {
        let (arrived, seen, asked_at, decided) = match asked {
            Some(a) => (Some(a.now), a.seen, a.at, Some(a.decision)),
            None => (None, Seen::default(), Nanos::ZERO, None),
        };
        Waiting {
            call: Some(Call {
                lane,
                priority,
                cost,
                account,
            }),
            place: Place {
                id: 0,
                arrived,
                enqueued: false,
                seen,
                pending: None,
                decided,
                sleep: None,
                asked_at,
            },
        }
    }

    /// Drives the call to admission.
    pub(crate) fn poll_acquire(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Admitted<St>, ThrottleError>> {
        let Some(call) = &mut self.call else {
            return Poll::Ready(Err(ThrottleError::polled_after_completion()));
        };
        // One clock read per poll: a decision made in this poll is made at this time.
        let now = clock::now();
        let step = self.place.step(call, cx, now);
        Poll::Ready(match ready!(step) {
            Ok(reservation) => match self.call.take() {
                Some(call) => Ok(self.place.admit(call, now, reservation)),
                None => Err(ThrottleError::polled_after_completion()),
            },
            Err(e) => Err(self.refuse(e)),
        })
    }

    /// The call is refused with `err`: it leaves the queue, is counted, gives back its money and
    /// is logged.
    fn refuse(&mut self, err: ThrottleError) -> ThrottleError {
        let Some(mut call) = self.call.take() else {
            return err;
        };
        let p = &mut self.place;
        p.leave(&call, false);
        for c in &call.lane.counters {
            c.refused();
        }
        let shared = &call.lane.shared;
        if let (Some(account), Some(spend)) = (&mut call.account, &shared.spend) {
            account.refuse(spend, &shared.clock, p.id, p.arrived, &err);
        }
        err
    }
}

impl<St: Store> Drop for Waiting<St> {
    fn drop(&mut self) {
        if let Some(call) = &mut self.call {
            self.place.leave(call, false);
            if let (Some(account), Some(spend)) = (&mut call.account, &call.lane.shared.spend) {
                account.give_back(spend, self.place.id);
            }
        }
    }
}

impl<St: Store> Place<St> {
    /// The call is admitted at `now`: it leaves the queue, is counted, and holds `reservation`.
    #[inline]
    fn admit(
        &mut self,
        mut call: Call<St>,
        now: Instant,
        reservation: Option<St::Reservation>,
    ) -> Admitted<St> {
        // Only a call that queued has waited (a call that went straight through has not, whatever
        // the clock says between two reads).
        let waited = self.arrived.filter(|_| self.enqueued).map(|a| now - a);
        self.leave(&call, true);
        let place = call.lane.count_admitted(waited);
        if let Some(a) = &mut call.account {
            a.admitted(now, self.arrived.map_or(Duration::ZERO, |a| now - a));
        }
        let at = if self.asked_at > Nanos::ZERO {
            self.asked_at
        } else {
            call.lane.shared.clock.nanos(now)
        };
        Admitted::new(call.lane, call.cost, at, place, reservation, call.account)
    }

    /// One step of the wait at `now`: the store's reservation once admitted (`None` for a call
    /// with no limited scope), the error that ends the call, or `Pending`.
    fn step(
        &mut self,
        call: &mut Call<St>,
        cx: &mut Context<'_>,
        now: Instant,
    ) -> Poll<Result<Option<St::Reservation>, ThrottleError>> {
        if let Some(fut) = &mut self.pending {
            let decision = ready!(Pin::new(&mut **fut).poll(cx));
            self.pending = None;
            return self.on_decision(call, cx, now, decision);
        }
        if let Some(decision) = self.decided.take() {
            return self.on_decision(call, cx, now, Ok(decision));
        }
        self.arrived.get_or_insert(now);
        let deadline = self.deadline(call);
        if call.account.is_some() {
            let id = self.id(call);
            let shared = &call.lane.shared;
            if let (Some(account), Some(spend)) = (&mut call.account, &shared.spend) {
                ready!(account.reserve(spend, &shared.clock, id, deadline, cx, now))?;
            }
        }
        if deadline.is_some_and(|d| now >= d) {
            let predicted = match call
                .lane
                .shared
                .waiters
                .lock()
                .state(call.priority, self.id)
            {
                Some(WaitState::Blocked { until, .. }) => *until,
                _ => None,
            };
            return Poll::Ready(Err(self.max_wait_error(call, now, predicted)));
        }
        match self.turn(call, cx, now)? {
            Turn::Wait => {
                self.arm(cx, None, deadline);
                Poll::Pending
            }
            Turn::Go if call.lane.scopes.is_empty() => Poll::Ready(Ok(None)),
            Turn::Go => self.ask(call, cx, now),
        }
    }

    /// Asks the store for admission.
    fn ask(
        &mut self,
        call: &mut Call<St>,
        cx: &mut Context<'_>,
        now: Instant,
    ) -> Poll<Result<Option<St::Reservation>, ThrottleError>> {
        // Read before the lane's limits and the store, so that a give-back from now on is seen
        // if the store refuses.
        self.seen = call.lane.shared.waiters.seen();
        if !call.lane.is_current() {
            // Limits changed while the call waited.
            call.lane = Arc::new(call.lane.refreshed());
        }
        let lane = &call.lane;
        self.asked_at = lane.shared.clock.nanos(now);
        let acquire = Acquire {
            now: self.asked_at,
            scopes: &lane.scopes,
            cost: call.cost,
        };
        let mut fut = lane.shared.store.acquire_with(&lane.handle, &acquire);
        // A store in this process answers at once; only a remote one's future is kept (boxed, so
        // the call stays small).
        match Pin::new(&mut fut).poll(cx) {
            Poll::Ready(decision) => self.on_decision(call, cx, now, decision),
            Poll::Pending => {
                // Its place in arrival order is taken before the answer comes back.
                self.id(call);
                self.pending = Some(Box::new(fut));
                Poll::Pending
            }
        }
    }

    /// The call's id in arrival order, taken now if it has none. A call needs one only to wait
    /// (in the queue or held at a spend cap) and while a remote store decides, so a call admitted
    /// at once by a store in this process never takes one; a call that waits takes it when it
    /// first learns that it must, which for such a store is its first poll.
    fn id(&mut self, call: &Call<St>) -> u64 {
        if self.id == 0 {
            self.id = call.lane.shared.next_id();
        }
        self.id
    }

    /// When the call's maximum wait ends, if it has one (and has arrived).
    fn deadline(&self, call: &Call<St>) -> Option<Instant> {
        let max = call.lane.shared.settings.max_wait?;
        Some(bounds::after(self.arrived?, max))
    }

    /// Joins the back of its tier in the queue (once).
    fn enqueue(&mut self, call: &Call<St>, q: &mut Guard<'_>) {
        if !self.enqueued {
            let id = self.id(call);
            q.push(
                call.priority,
                id,
                call.lane.scopes.iter().map(|s| s.id).collect(),
            );
            self.enqueued = true;
            for c in &call.lane.counters {
                c.enqueued();
            }
        }
    }

    /// Leaves the queue, admitted or not, and lets the calls behind move up.
    #[inline]
    fn leave(&mut self, call: &Call<St>, admitted: bool) {
        if self.enqueued {
            self.leave_queue(call, admitted);
        }
    }

    /// The slow part of [`leave`](Place::leave), for a call in the queue.
    #[cold]
    fn leave_queue(&mut self, call: &Call<St>, admitted: bool) {
        self.enqueued = false;
        let waiters = &call.lane.shared.waiters;
        waiters.lock().remove(call.priority, self.id, admitted);
        for c in &call.lane.counters {
            c.dequeued();
        }
    }

    /// The error of a call refused for its maximum wait at `now`; `predicted` is when it would
    /// have been admitted, if known.
    fn max_wait_error(
        &self,
        call: &Call<St>,
        now: Instant,
        predicted: Option<Instant>,
    ) -> ThrottleError {
        let arrived = self.arrived.unwrap_or(now);
        ThrottleError::max_wait(
            call.lane.shared.settings.max_wait.unwrap_or_default(),
            now - arrived,
            predicted.map(|p| p.saturating_duration_since(now)),
        )
    }

    /// The refusal of a call whose admission is predicted at `due`, past its deadline, when the
    /// layer refuses such calls at once.
    fn over_max_wait(
        &self,
        call: &Call<St>,
        now: Instant,
        due: Option<Instant>,
    ) -> Result<(), ThrottleError> {
        let settings = &call.lane.shared.settings;
        if !settings.refuse_over_max_wait {
            return Ok(());
        }
        match (self.deadline(call), due) {
            (Some(deadline), Some(due)) if due > deadline => {
                Err(self.max_wait_error(call, now, Some(due)))
            }
            _ => Ok(()),
        }
    }

    /// Consults the queue: may this call try the store now?
    fn turn(
        &mut self,
        call: &Call<St>,
        cx: &Context<'_>,
        now: Instant,
    ) -> Result<Turn, ThrottleError> {
        let waiters = &call.lane.shared.waiters;
        if !self.enqueued && waiters.is_empty() {
            return Ok(Turn::Go);
        }
        let mut q = waiters.lock();
        self.enqueue(call, &mut q);
        // A call that sleeps until its capacity is due is polled when the time has come, or when
        // capacity came back early (a refund, a release, new limits): either way it tries again,
        // if it is its turn. Otherwise it waits to be woken when its turn comes.
        if q.eligible(self.id) {
            q.set_state(call.priority, self.id, WaitState::Ready, None);
            return Ok(Turn::Go);
        }
        q.set_state(call.priority, self.id, WaitState::Gated, Some(cx.waker()));
        // A call that slept blocked held its refusing scopes; gated, it holds none. The call now
        // ahead of it (tier precedence moves with every admission) may be gated too, and only a
        // change of the queue wakes a gated call: this is one.
        q.wake_eligible();
        if call.lane.shared.settings.refuse_over_max_wait {
            let due = q.due_ahead(self.id);
            drop(q);
            self.over_max_wait(call, now, due)?;
        }
        Ok(Turn::Wait)
    }

    /// Handles the store's decision; `Pending` when the call must wait.
    #[inline]
    fn on_decision(
        &mut self,
        call: &Call<St>,
        cx: &mut Context<'_>,
        now: Instant,
        decision: Result<Decision<St::Reservation>, StoreError>,
    ) -> Poll<Result<Option<St::Reservation>, ThrottleError>> {
        match decision {
            // The common case first.
            Ok(Decision::Admitted(reservation)) => Poll::Ready(Ok(Some(reservation))),
            Ok(Decision::Never(n)) => {
                let scope = call.lane.scopes[n.scope].key.clone();
                Poll::Ready(Err(ThrottleError::never_fits(
                    scope,
                    n.dimension,
                    n.requested,
                    n.capacity,
                )))
            }
            Ok(Decision::Wait { wait, blocked }) => self.blocked(call, cx, now, wait, blocked),
            Err(e) => Poll::Ready(Err(ThrottleError::store(e))),
        }
    }

    /// The store refused the call in the scopes of the bits of `blocked`; its capacity is due in
    /// `wait` (`None`: when a concurrency slot comes back).
    fn blocked(
        &mut self,
        call: &Call<St>,
        cx: &mut Context<'_>,
        now: Instant,
        wait: Option<Duration>,
        blocked: u64,
    ) -> Poll<Result<Option<St::Reservation>, ThrottleError>> {
        let until = wait.map(|w| bounds::after(now, w));
        self.over_max_wait(call, now, until)?;
        let scopes = (call.lane.scopes.iter().enumerate())
            .filter(|(i, _)| blocked & (1 << i) != 0)
            .map(|(_, s)| s.id)
            .collect();
        let mut q = call.lane.shared.waiters.lock();
        self.enqueue(call, &mut q);
        let blocked = q.block(call.priority, self.id, scopes, until, cx.waker(), self.seen);
        drop(q);
        if blocked == Blocked::AskAgain {
            // Capacity came back since the call asked: it asks again, at once.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.arm(cx, until, self.deadline(call));
        Poll::Pending
    }

    /// Sleeps until `until` or the deadline, whichever is first.
    fn arm(&mut self, cx: &mut Context<'_>, until: Option<Instant>, deadline: Option<Instant>) {
        if let Some(at) = earliest(until, deadline) {
            clock::sleep_until(&mut self.sleep, at, cx);
        }
    }
}
