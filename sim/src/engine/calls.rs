//! The calls in flight, polled by the run's one future: each call when it was woken, in the
//! order of the wake-ups.
//!
//! The order is that of `futures_util`'s `FuturesUnordered`, which the run used before (a new call
//! is polled as if woken when it starts; a pass over the woken calls ends after polling each call
//! once, or when two calls woke themselves), so the runs are the same; but a call that ended
//! leaves its storage and, unless someone still holds it, its waker to the next call, so starting
//! a call neither allocates nor moves a future into a new allocation.

use futures_util::task::{waker_ref, ArcWake, AtomicWaker};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

/// Every call in flight: its future, and what the run keeps with it (`T`).
pub(super) struct Calls<F, T> {
    slots: Vec<Slot<F, T>>,
    /// Slots without a call.
    free: Vec<u32>,
    /// Calls in flight.
    len: usize,
    shared: Arc<Shared>,
}

/// Room for one call.
struct Slot<F, T> {
    /// The call's future; once the call ended, what is left of it (a future that returned holds
    /// nothing), until the next call of the slot writes over it.
    future: Pin<Box<F>>,
    with: Option<T>,
    /// Which call the slot holds: a wake-up queued for an earlier one is dropped.
    generation: u32,
    waker: Arc<CallWaker>,
}

/// The waker of the call in one slot.
struct CallWaker {
    slot: u32,
    generation: u32,
    /// Whether the call is queued to be polled (set for good once the call ended, so that late
    /// wake-ups are ignored).
    queued: AtomicBool,
    /// Whether the call was woken since it was last polled.
    woken: AtomicBool,
    shared: Arc<Shared>,
}

/// What the wakers of the calls share with the run.
#[derive(Default)]
struct Shared {
    /// `(slot, generation)` of the calls to poll, in the order they were woken.
    ready: Mutex<VecDeque<(u32, u32)>>,
    /// Some call was woken (or a pass ended early) since the run last looked.
    woken: AtomicBool,
    /// The run is polling the calls: a wake-up needs no more than a note in `woken`, since the
    /// run looks at it before it waits (waking it would send the runtime through its driver for
    /// nothing).
    polling: AtomicBool,
    /// The run's own waker.
    run: AtomicWaker,
}

impl ArcWake for CallWaker {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.woken.store(true, Relaxed);
        if !arc_self.queued.swap(true, Relaxed) {
            let shared = &arc_self.shared;
            shared
                .queue()
                .push_back((arc_self.slot, arc_self.generation));
            shared.woken.store(true, Relaxed);
            if !shared.polling.load(Relaxed) {
                shared.run.wake();
            }
        }
    }
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<(u32, u32)>> {
        self.ready.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<F: Future, T> Calls<F, T> {
    /// No calls.
    pub(super) fn new() -> Self {
        Calls {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            shared: Arc::default(),
        }
    }

    /// Starts polling the calls on behalf of the run polled with `run`.
    pub(super) fn begin(&self, run: &Waker) {
        self.shared.run.register(run);
        self.shared.polling.store(true, Relaxed);
    }

    /// Stops polling them: from now on a call's wake-up wakes the run.
    pub(super) fn end(&self) {
        self.shared.polling.store(false, Relaxed);
    }

    /// Whether a call was woken (or a pass ended early) since the last [`Calls::poll_next`].
    pub(super) fn woken(&self) -> bool {
        self.shared.woken.load(Relaxed)
    }

    /// Adds a call, to be polled as if it had just been woken; `with` comes back with its output.
    pub(super) fn push(&mut self, future: F, with: T) {
        let slot = match self.free.pop() {
            Some(i) => {
                let slot = &mut self.slots[i as usize];
                slot.future.set(future);
                slot.with = Some(with);
                slot
            }
            None => {
                let i = self.slots.len() as u32;
                self.slots.push(Slot {
                    future: Box::pin(future),
                    with: Some(with),
                    generation: 0,
                    waker: self.waker(i, 0),
                });
                &mut self.slots[i as usize]
            }
        };
        slot.waker.queued.store(true, Relaxed);
        let entry = (slot.waker.slot, slot.generation);
        self.shared.queue().push_back(entry);
        self.len += 1;
    }

    /// Polls the woken calls until one ends, and returns what was pushed with it and its output;
    /// `Ready(None)` when there are no calls and `Pending` when none is ready (with
    /// [`Calls::woken`] set if the pass ended early).
    pub(super) fn poll_next(&mut self) -> Poll<Option<(T, F::Output)>> {
        self.shared.woken.store(false, Relaxed);
        let len = self.len;
        let (mut polled, mut yielded) = (0, 0);
        loop {
            let next = self.shared.queue().pop_front();
            let Some((i, generation)) = next else {
                return if self.len == 0 {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                };
            };
            let slot = &mut self.slots[i as usize];
            if slot.generation != generation {
                continue; // queued before its call ended
            }
            slot.waker.queued.store(false, Relaxed);
            slot.waker.woken.store(false, Relaxed);
            let waker = waker_ref(&slot.waker);
            let poll = slot.future.as_mut().poll(&mut Context::from_waker(&waker));
            polled += 1;
            match poll {
                Poll::Pending => {
                    yielded += usize::from(slot.waker.woken.load(Relaxed));
                    if yielded >= 2 || polled == len {
                        self.shared.woken.store(true, Relaxed);
                        return Poll::Pending;
                    }
                }
                Poll::Ready(output) => {
                    let with = self.release(i);
                    return Poll::Ready(with.map(|with| (with, output)));
                }
            }
        }
    }

    /// Empties slot `i` for the next call, and returns what was pushed with the call that ended.
    fn release(&mut self, i: u32) -> Option<T> {
        let slot = &mut self.slots[i as usize];
        // The call's future returned: it is left as it is, for the next call to write over.
        let with = slot.with.take();
        slot.generation = slot.generation.wrapping_add(1);
        // Late wake-ups of the call that ended find it queued and do nothing.
        slot.waker.queued.store(true, Relaxed);
        match Arc::get_mut(&mut slot.waker) {
            Some(waker) => waker.generation = slot.generation,
            None => {
                let generation = slot.generation;
                self.slots[i as usize].waker = self.waker(i, generation);
            }
        }
        self.free.push(i);
        self.len -= 1;
        with
    }

    fn waker(&self, slot: u32, generation: u32) -> Arc<CallWaker> {
        Arc::new(CallWaker {
            slot,
            generation,
            queued: AtomicBool::new(false),
            woken: AtomicBool::new(false),
            shared: Arc::clone(&self.shared),
        })
    }
}

impl<F, T> std::fmt::Debug for Calls<F, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calls").field("len", &self.len).finish()
    }
}
