//! loom models of the wake protocol: the real [`Waiters`], [`Guard`] and [`Queue`] under every
//! interleaving of two or three threads (a bounded number of preemptions), with a model store (a
//! concurrency cap on an atomic) in place of the real one.
//!
//! A model call takes the steps a call takes in `limiter/wait.rs` (`admit_at_once`, then
//! `Waiting::poll_acquire`, which acts on a refusal handed over from `admit_at_once` as on its
//! own): skip the queue when it is empty, else join it and wait for its turn; read
//! [`Waiters::seen`]; ask the store; when refused, join the queue and [`Guard::block`], asking
//! again at once if that says so. A call that sleeps and is never woken parks its loom thread for good, which loom reports
//! as a deadlock: a lost wake-up fails the model.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p tollgate --lib --release -- wake::loom_models
//! ```

use super::{Blocked, Seen, Waiters};
use crate::queue::WaitState;
use crate::Priority;
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::sync::Arc;
use loom::thread;
use smallvec::smallvec;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A concurrency cap: `in_flight` calls against `cap`, both changed without a lock.
#[derive(Debug)]
struct Cap {
    in_flight: AtomicUsize,
    cap: AtomicUsize,
}

impl Cap {
    fn new(in_flight: usize, cap: usize) -> Self {
        Cap {
            in_flight: AtomicUsize::new(in_flight),
            cap: AtomicUsize::new(cap),
        }
    }

    /// Takes a place if one is free (what a store's admission does, without a lock).
    fn try_acquire(&self) -> bool {
        let mut n = self.in_flight.load(SeqCst);
        loop {
            if n >= self.cap.load(SeqCst) {
                return false;
            }
            match self.in_flight.compare_exchange(n, n + 1, SeqCst, SeqCst) {
                Ok(_) => return true,
                Err(now) => n = now,
            }
        }
    }
}

/// The shared state of a model: the waiting calls and the store.
#[derive(Debug)]
struct World {
    waiters: Waiters,
    store: Cap,
}

impl World {
    fn new(in_flight: usize, cap: usize) -> Arc<Self> {
        Arc::new(World {
            waiters: Waiters::new(&[]),
            store: Cap::new(in_flight, cap),
        })
    }

    /// A settle of an admitted call: the store first, then the give-back.
    fn settle(&self) {
        self.store.in_flight.fetch_sub(1, SeqCst);
        self.waiters.gave_back();
    }

    /// New limits: the store's first, then the give-back (as `Limiter::set_limits` does).
    fn set_cap(&self, cap: usize) {
        self.store.cap.store(cap, SeqCst);
        self.waiters.gave_back();
    }
}

/// A call, as a ticket drives it.
struct Call {
    world: Arc<World>,
    id: u64,
    enqueued: bool,
    seen: Seen,
    admitted: bool,
}

const P: Priority = Priority(0);

impl Call {
    fn new(world: &Arc<World>, id: u64) -> Self {
        Call {
            world: world.clone(),
            id,
            enqueued: false,
            seen: Seen::default(),
            admitted: false,
        }
    }

    fn admit(&mut self) -> Poll<()> {
        self.admitted = true;
        if std::mem::take(&mut self.enqueued) {
            self.world.waiters.lock().remove(P, self.id, true);
        }
        Poll::Ready(())
    }
}

impl Future for Call {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let world = self.world.clone();
        let w = &world.waiters;
        let id = self.id;
        // Its turn.
        if self.enqueued || !w.is_empty() {
            let mut q = w.lock();
            if !self.enqueued {
                q.push(P, id, smallvec![0]);
                self.enqueued = true;
            }
            if !q.eligible(id) {
                q.set_state(P, id, WaitState::Gated, Some(cx.waker()));
                return Poll::Pending;
            }
            q.set_state(P, id, WaitState::Ready, None);
        }
        // The store.
        self.seen = w.seen();
        if world.store.try_acquire() {
            return self.admit();
        }
        let mut q = w.lock();
        if !self.enqueued {
            q.push(P, id, smallvec![0]);
            self.enqueued = true;
        }
        match q.block(P, id, smallvec![0], None, cx.waker(), self.seen) {
            Blocked::Sleep => Poll::Pending,
            Blocked::AskAgain => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.admitted {
            // Admitted and dropped: its settle.
            self.world.settle();
        } else if self.enqueued {
            self.world.waiters.lock().remove(P, self.id, false);
        }
    }
}

/// Runs `model` over every interleaving, with at most `preemptions` preemptions each; returns
/// the executions explored.
fn check(preemptions: usize, model: impl Fn() + Sync + Send + 'static) -> usize {
    // Counted outside the model (a std atomic, not one of loom's).
    let executions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = executions.clone();
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemptions);
    builder.check(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        model();
    });
    let n = executions.load(std::sync::atomic::Ordering::Relaxed);
    println!("explored {n} executions");
    assert!(n > 1, "the model explored interleavings");
    n
}

/// One call waits for the only place, which another thread's settle gives back.
#[test]
fn one_waiter_one_settle() {
    check(3, || {
        let world = World::new(1, 1);
        let settler = {
            let world = world.clone();
            thread::spawn(move || world.settle())
        };
        // Admitted, then dropped at the end of `block_on`: settled.
        loom::future::block_on(Call::new(&world, 1));
        settler.join().unwrap();
        assert_eq!(world.store.in_flight.load(SeqCst), 0);
        assert!(world.waiters.is_empty());
    });
}

/// Two calls wait for the only place; one settle gives it back, and each admitted call settles
/// in turn, so both go.
#[test]
fn two_waiters_one_settle() {
    check(2, || {
        let world = World::new(1, 1);
        let other = {
            let world = world.clone();
            thread::spawn(move || loom::future::block_on(Call::new(&world, 2)))
        };
        let settler = {
            let world = world.clone();
            thread::spawn(move || world.settle())
        };
        loom::future::block_on(Call::new(&world, 1));
        other.join().unwrap();
        settler.join().unwrap();
        assert_eq!(world.store.in_flight.load(SeqCst), 0);
        assert!(world.waiters.is_empty());
    });
}

/// A waiting call gives up (its future is dropped after one poll) while the place comes back:
/// the other waiting call still goes, and nothing stays queued.
#[test]
fn a_drop_racing_a_settle() {
    check(2, || {
        let world = World::new(1, 1);
        let quitter = {
            let world = world.clone();
            thread::spawn(move || {
                let mut call = Box::pin(Call::new(&world, 1));
                let _ = call
                    .as_mut()
                    .poll(&mut Context::from_waker(std::task::Waker::noop()));
                // Dropped here: it leaves the queue, or settles if it was admitted.
            })
        };
        let settler = {
            let world = world.clone();
            thread::spawn(move || world.settle())
        };
        loom::future::block_on(Call::new(&world, 2));
        quitter.join().unwrap();
        settler.join().unwrap();
        assert_eq!(world.store.in_flight.load(SeqCst), 0);
        assert!(world.waiters.is_empty());
    });
}

/// The cap is raised while a call is being refused by the old one: it goes without any settle.
#[test]
fn a_limit_change_racing_a_refusal() {
    check(3, || {
        let world = World::new(1, 1);
        let changer = {
            let world = world.clone();
            thread::spawn(move || world.set_cap(2))
        };
        loom::future::block_on(Call::new(&world, 1));
        changer.join().unwrap();
        assert_eq!(
            world.store.in_flight.load(SeqCst),
            1,
            "the first call's place"
        );
    });
}
