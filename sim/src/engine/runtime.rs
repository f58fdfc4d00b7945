//! The runtime a run goes on: tokio's current-thread runtime on the paused clock, with the run
//! polled from the runtime's unpark hook rather than as the future `block_on` waits for.
//!
//! Why: on the paused clock, tokio advances time when it parks with nothing to do, unless the
//! runtime was woken since its last park. Waking the future that `block_on` waits for (or a task)
//! counts as such a wake-up, so a run polled that way makes the runtime park twice for every
//! instant a timer fires at: once to advance the clock and fire the timers, and once more, for
//! nothing, after the run was polled. Here a timer that fires while the runtime parks wakes the run
//! with a waker that only takes a note, and the run is polled right after that park, from the
//! `on_thread_unpark` hook; the next park advances the clock again. A wake-up at any other moment
//! also wakes `block_on`'s future, which polls the run then. Either way the run is polled at the
//! same virtual instants, after the same wake-ups, as a future `block_on` waits for.
//!
//! It also counts how often the runtime parked: every park advances the virtual clock, so the count
//! is about the virtual instants a run visited, which cost tokio's timer and clock the same whatever
//! the run does at them (`benches/sim/sim.rs` measures that cost alone).

use futures_util::task::AtomicWaker;
use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

thread_local! {
    /// The run going on on this thread, if any.
    static RUN: RefCell<Option<Run>> = const { RefCell::new(None) };
}

/// A run, with what wakes it.
struct Run {
    /// `None` once it is done.
    future: Option<Pin<Box<dyn Future<Output = ()>>>>,
    waker: Waker,
    note: Arc<Note>,
}

/// What the run's waker does.
#[derive(Default)]
struct Note {
    /// The run was woken since it was last polled.
    woken: AtomicBool,
    /// Someone looks at `woken` before the runtime waits again (the runtime is parking, or the run
    /// is being polled): a wake-up needs no more than the note.
    quiet: AtomicBool,
    /// `block_on`'s waker.
    block_on: AtomicWaker,
    /// How often the runtime parked.
    parks: AtomicU64,
}

impl Wake for Note {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Relaxed);
        if !self.quiet.load(Relaxed) {
            self.block_on.wake();
        }
    }
}

/// What [`block_on`] gives back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished<T> {
    /// The future's output.
    pub output: T,
    /// How often the runtime parked. Each park moves the virtual clock forward, to the next timer
    /// or to the next slot of tokio's timer wheel that holds timers (a timer far ahead takes a
    /// park or two more), so this is at least the number of distinct virtual instants a timer
    /// fired at, and close to it when timers are near.
    pub parks: u64,
}

/// Runs `future` to completion on a new current-thread runtime with time, on the paused clock,
/// the way the simulator runs a scenario: virtual time moves to the next timer whenever nothing
/// is left to do, and the future is polled once per instant something woke it.
///
/// The future may spawn tasks on the runtime (they are dropped with it when the future is done),
/// but must not block the thread.
///
/// # Errors
/// The runtime could not be built (the operating system refused a resource).
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use tollgate_sim::engine::block_on;
///
/// let finished = block_on(async {
///     let start = tokio::time::Instant::now();
///     tokio::time::sleep(Duration::from_secs(3600)).await; // an hour, at once
///     tokio::time::sleep(Duration::from_millis(1)).await;
///     start.elapsed()
/// })
/// .unwrap();
/// assert_eq!(finished.output, Duration::from_millis(3_600_001));
/// assert!(finished.parks >= 2); // at least one for each instant a timer fired at
/// ```
pub fn block_on<T: 'static>(
    future: impl Future<Output = T> + 'static,
) -> std::io::Result<Finished<T>> {
    let note = Arc::new(Note {
        woken: AtomicBool::new(true), // to be polled first
        ..Note::default()
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .on_thread_park({
            let note = Arc::clone(&note);
            move || {
                note.quiet.store(true, Relaxed);
                note.parks.fetch_add(1, Relaxed);
            }
        })
        .on_thread_unpark(poll_run)
        .build()?;
    let output = Rc::new(Cell::new(None));
    let run = Run {
        future: Some(Box::pin({
            let output = Rc::clone(&output);
            async move { output.set(Some(future.await)) }
        })),
        waker: Waker::from(Arc::clone(&note)),
        note: Arc::clone(&note),
    };
    // Dropped before the runtime (declared after it): a run that did not finish (a panic) lets go
    // of its timers while their driver is still there.
    let _installed = Installed::new(run);
    let output = rt.block_on(poll_fn(|cx| {
        note.block_on.register(cx.waker());
        poll_run();
        match output.take() {
            Some(output) => Poll::Ready(output),
            None => Poll::Pending,
        }
    }));
    Ok(Finished {
        output,
        parks: note.parks.load(Relaxed),
    })
}

/// Polls the run of this thread as long as it was woken since it was last polled; when it is done,
/// wakes `block_on`'s future, which returns its output.
fn poll_run() {
    RUN.with(|run| {
        let Ok(mut run) = run.try_borrow_mut() else {
            return; // not reached: the run does not park the runtime
        };
        let Some(run) = run.as_mut() else {
            return;
        };
        run.note.quiet.store(true, Relaxed);
        while run.note.woken.swap(false, Relaxed) {
            let Some(future) = run.future.as_mut() else {
                break;
            };
            if future
                .as_mut()
                .poll(&mut Context::from_waker(&run.waker))
                .is_ready()
            {
                run.future = None;
                run.note.block_on.wake();
                break;
            }
        }
        run.note.quiet.store(false, Relaxed);
    });
}

/// The run of this thread while it is alive.
struct Installed;

impl Installed {
    fn new(run: Run) -> Self {
        RUN.with(|slot| *slot.borrow_mut() = Some(run));
        Installed
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let run = RUN.with(|slot| slot.borrow_mut().take());
        drop(run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::{sleep, Instant};

    /// Timers at distinct and equal instants, a yield (woken outside any park), a spawned task
    /// that wakes the run when it ends, and a timer far ahead that must not be reached early:
    /// when the run saw each step, in virtual time.
    async fn script() -> Vec<Duration> {
        let start = Instant::now();
        let mut seen = Vec::new();
        let far = tokio::spawn(sleep(Duration::from_secs(60)));
        sleep(Duration::from_millis(1)).await;
        seen.push(start.elapsed());
        tokio::task::yield_now().await;
        seen.push(start.elapsed());
        let (a, b) = (
            sleep(Duration::from_millis(5)),
            sleep(Duration::from_millis(5)),
        );
        tokio::join!(a, b, sleep(Duration::from_micros(5_500)));
        seen.push(start.elapsed());
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            sleep(Duration::from_millis(3)).await;
            let _ = tx.send(());
        });
        let _ = rx.await;
        seen.push(start.elapsed());
        tokio::task::yield_now().await;
        sleep(Duration::ZERO).await;
        seen.push(start.elapsed());
        let _ = far.await;
        seen.push(start.elapsed());
        seen
    }

    #[test]
    fn a_run_sees_what_it_sees_as_block_on_s_future() {
        let expected = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(script());
        assert_eq!(block_on(script()).unwrap().output, expected);
        let ms = Duration::from_millis;
        assert_eq!(expected, [ms(1), ms(1), ms(7), ms(10), ms(10), ms(60_000)]);
    }

    #[test]
    fn the_runtime_parks_once_for_each_near_instant_a_timer_fires_at() {
        let ms = Duration::from_millis;
        let parks = |instants: u64| {
            block_on(async move {
                for _ in 0..instants {
                    // Two timers at the same instant: one park.
                    tokio::join!(sleep(ms(2)), sleep(ms(2)));
                }
            })
            .unwrap()
            .parks
        };
        assert_eq!(parks(0), 0);
        assert_eq!(parks(1), 1);
        assert_eq!(parks(25), 25);
    }

    #[test]
    fn a_panicking_run_leaves_no_run_behind() {
        let panicked = std::panic::catch_unwind(|| {
            block_on(async {
                sleep(Duration::from_millis(1)).await;
                panic!("the run panics");
            })
        });
        assert!(panicked.is_err());
        assert!(RUN.with(|run| run.borrow().is_none()));
        // The thread runs again.
        assert_eq!(block_on(async { 7 }).unwrap().output, 7);
    }
}
