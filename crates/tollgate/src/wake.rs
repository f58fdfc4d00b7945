//! The wake protocol: how a call the store refused learns that capacity came back.
//!
//! The store decides admissions without a lock, so a call can be refused while, on another
//! thread, the call ahead of it gives its capacity back (a settle frees a concurrency slot or
//! refunds tokens, new limits are set) before the refused call has registered as waiting. That
//! giver sees nobody to wake; the refused call must see instead that something came back.
//!
//! # Invariant
//! *Whatever gives capacity back either wakes the refused call or is seen by it before it
//! sleeps.* The giver changes the store, then bumps a counter of give-backs, then looks for
//! waiting calls (and wakes them under the queue's lock). The call reads the counter before it
//! asks the store ([`Waiters::seen`]), and after the refusal it registers as waiting under the
//! lock and reads the counter again ([`Guard::block`]): if it moved, it asks again instead of
//! sleeping. Each side writes its word (the counter; the queue's length), then a sequentially
//! consistent fence, then reads the other's word, so at least one of them sees the other. The budget side keeps its own counter of the same kind
//! (`spend::Spend::epoch`).
//!
//! A store in another process (Redis) learns of other processes' give-backs only by asking
//! again: its refusals on a concurrency cap name a poll interval as their wait.
//!
//! The models in `loom_models` (built with `RUSTFLAGS="--cfg loom"`) check the protocol over
//! every interleaving of a few threads.

#[cfg(loom)]
use loom::sync::{
    atomic::{fence, AtomicU64, AtomicUsize, Ordering::SeqCst},
    Mutex, MutexGuard,
};
#[cfg(not(loom))]
use std::sync::{
    atomic::{fence, AtomicU64, AtomicUsize, Ordering::SeqCst},
    Mutex, MutexGuard,
};

use crate::queue::{Queue, WaitState};
use crate::registry::ScopeId;
use crate::Priority;
use smallvec::SmallVec;
use std::task::Waker;
use tokio::time::Instant;

/// The calls that wait, and the count of give-backs they watch.
#[derive(Debug)]
pub(crate) struct Waiters {
    queue: Mutex<Queue>,
    /// `queue.len()`, readable without the lock: a call skips the queue when it is zero, and a
    /// give-back wakes nobody.
    queued: AtomicUsize,
    /// Give-backs so far (wrapping).
    given_back: AtomicU64,
}

/// What a call saw of the give-backs before it asked the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Seen(u64);

/// What a refused call does once registered as blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Blocked {
    /// Sleep until woken, or until its capacity is due.
    Sleep,
    /// Capacity came back since it asked: ask again now.
    AskAgain,
}

impl Waiters {
    /// No call waits; `tiers` are the reserved shares of the priority tiers.
    pub(crate) fn new(tiers: &[(Priority, f64)]) -> Self {
        Waiters {
            queue: Mutex::new(Queue::new(tiers)),
            queued: AtomicUsize::new(0),
            given_back: AtomicU64::new(0),
        }
    }

    /// Whether no call waits (read without the lock).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.queued.load(SeqCst) == 0
    }

    /// Read before a call asks the store; given to [`Guard::block`] if the store refuses.
    #[inline]
    pub(crate) fn seen(&self) -> Seen {
        Seen(self.given_back.load(SeqCst))
    }

    /// Tells the waiting calls that capacity came back (after the store was changed): every call
    /// blocked by the store is woken to ask again, and a call refused meanwhile asks again.
    #[inline]
    pub(crate) fn gave_back(&self) {
        self.given_back.fetch_add(1, SeqCst);
        fence(SeqCst);
        if self.queued.load(SeqCst) > 0 {
            self.lock().wake_blocked();
        }
    }

    /// The queue, locked.
    pub(crate) fn lock(&self) -> Guard<'_> {
        Guard {
            queue: self.queue.lock().unwrap_or_else(|e| e.into_inner()),
            waiters: self,
        }
    }
}

/// The locked queue. Joining and leaving go through it so that the count read without the lock
/// stays the queue's length.
#[derive(Debug)]
pub(crate) struct Guard<'a> {
    queue: MutexGuard<'a, Queue>,
    waiters: &'a Waiters,
}

impl Guard<'_> {
    /// Adds a call (see [`Queue::push`]).
    pub(crate) fn push(&mut self, priority: Priority, id: u64, scopes: SmallVec<[ScopeId; 4]>) {
        self.queue.push(priority, id, scopes);
        self.waiters.queued.store(self.queue.len(), SeqCst);
    }

    /// Removes a call (see [`Queue::remove`]) and wakes the calls whose turn it gives.
    pub(crate) fn remove(&mut self, priority: Priority, id: u64, admitted: bool) -> bool {
        let was = self.queue.remove(priority, id, admitted);
        self.waiters.queued.store(self.queue.len(), SeqCst);
        self.queue.wake_eligible();
        was
    }

    /// Registers a queued call the store refused on `scopes` as blocked until `until` (`None`:
    /// until a give-back), with `waker`, and lets the calls behind it that need none of those
    /// scopes go. `seen` is what the call read before it asked: if capacity came back since,
    /// it must ask again rather than sleep (see the module docs).
    pub(crate) fn block(
        &mut self,
        priority: Priority,
        id: u64,
        scopes: SmallVec<[ScopeId; 4]>,
        until: Option<Instant>,
        waker: &Waker,
        seen: Seen,
    ) -> Blocked {
        let state = WaitState::Blocked { scopes, until };
        self.queue.set_state(priority, id, state, Some(waker));
        self.queue.wake_eligible();
        // After the queue's length was written (the call joined before it asked, or in this
        // lock), before the counter is read again.
        fence(SeqCst);
        if self.waiters.seen() == seen {
            Blocked::Sleep
        } else {
            Blocked::AskAgain
        }
    }
}

impl std::ops::Deref for Guard<'_> {
    type Target = Queue;
    fn deref(&self) -> &Queue {
        &self.queue
    }
}

impl std::ops::DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut Queue {
        &mut self.queue
    }
}

#[cfg(all(test, loom))]
mod loom_models;
