//! Stress on tokio's multi-threaded runtime: many tasks race for one concurrency slot or for a
//! token bucket that every call refunds in full. Whatever frees capacity must reach a call that
//! waits for it, so the run never stalls.
//!
//! A stall is detected, never a speed asserted: a watcher fails the run when no call has finished
//! for [`STALL`] while no call is in flight (calls are waiting and nothing could be holding them
//! up). Real clock: the paused clock needs a current-thread runtime.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tollgate::{Cost, Dimension, Limit, ScopeLimits, ThrottleLayer};
use tower::{service_fn, Layer, Service, ServiceExt};

/// How long nothing may finish while nothing is in flight. A waiting call with free capacity goes
/// within microseconds; the refunded bucket's stale wait (what a missed refund costs) is a minute.
const STALL: Duration = Duration::from_secs(5);

/// Calls per run: 64 × 800, so that 64 or 4 tasks share them evenly. Each test makes two runs.
const CALLS: u64 = 51_200;

/// Progress seen by the watcher.
#[derive(Default)]
struct Progress {
    finished: AtomicU64,
    in_flight: AtomicUsize,
}

/// The inner service of a run.
type Inner = tower::util::BoxCloneSyncService<u64, u64, Infallible>;

/// Runs [`CALLS`] calls through a new layer from `make`, from 64 tasks on 2 workers and then
/// from 4 tasks on 4 workers: every call finishes, and the scope ends with every call admitted
/// and none in flight. Fails on a stall.
fn assert_never_stalls<H>(make: impl Fn() -> ThrottleLayer<H>)
where
    ThrottleLayer<H>: Layer<Inner> + Send + 'static,
    <ThrottleLayer<H> as Layer<Inner>>::Service:
        Service<u64, Response = u64> + Clone + Send + 'static,
    <<ThrottleLayer<H> as Layer<Inner>>::Service as Service<u64>>::Error: std::fmt::Debug + Send,
    <<ThrottleLayer<H> as Layer<Inner>>::Service as Service<u64>>::Future: Send,
{
    for (workers, tasks) in [(2, 64), (4, 4)] {
        let layer = make();
        let limiter = layer.limiter().clone();
        let finished = run(layer, workers, tasks, CALLS).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(finished, CALLS);
        let global = limiter.scope_stats("global").expect("the scope");
        assert_eq!((global.admitted, global.in_flight), (CALLS, 0));
    }
}

/// Runs `calls` calls from `tasks` tasks on `workers` workers through `layer` over a service
/// that answers at once or after one or two yields; returns the calls that finished, or the
/// stall the watcher saw.
fn run<L>(layer: L, workers: usize, tasks: u64, calls: u64) -> Result<u64, String>
where
    L: Layer<Inner> + Send + 'static,
    L::Service: Service<u64, Response = u64> + Clone + Send + 'static,
    <L::Service as Service<u64>>::Error: std::fmt::Debug + Send,
    <L::Service as Service<u64>>::Future: Send,
{
    let progress = Arc::new(Progress::default());
    let p = progress.clone();
    let inner = Inner::new(service_fn(move |n: u64| {
        let p = p.clone();
        async move {
            p.in_flight.fetch_add(1, Ordering::SeqCst);
            for _ in 0..n % 3 {
                tokio::task::yield_now().await;
            }
            p.in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, Infallible>(n)
        }
    }));
    let svc = layer.layer(inner);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_time()
        .build()
        .expect("a runtime");
    assert_eq!(calls % tasks, 0, "the tasks share the calls evenly");
    let per_task = calls / tasks;
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let mut svc = svc.clone();
            let p = progress.clone();
            rt.spawn(async move {
                for i in 0..per_task {
                    let n = t * per_task + i;
                    let answer = svc.ready().await.expect("ready").call(n).await;
                    assert_eq!(answer.expect("admitted"), n);
                    p.finished.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let total = per_task * tasks;
    // The watcher: the test's thread, sampling.
    let mut seen = 0;
    let mut since = Instant::now();
    let outcome = loop {
        let finished = progress.finished.load(Ordering::SeqCst);
        if finished == total {
            break Ok(finished);
        }
        if handles.iter().any(|h| h.is_finished()) && finished < total {
            // A task ended early: it panicked (its join error is reported below).
            let done = handles.iter().filter(|h| h.is_finished()).count() as u64;
            if done * per_task > finished {
                break Err("a task panicked".to_owned());
            }
        }
        if finished != seen || progress.in_flight.load(Ordering::SeqCst) != 0 {
            seen = finished;
            since = Instant::now();
        } else if since.elapsed() >= STALL {
            break Err(format!(
                "stall: {finished} of {total} calls finished, none for {STALL:?}, none in flight"
            ));
        }
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
    };
    if outcome.is_ok() {
        for h in handles {
            rt.block_on(h).expect("a task");
        }
    }
    // Stuck tasks (after a stall) are dropped with the runtime.
    rt.shutdown_background();
    outcome
}

/// One scope capped at one call in flight, no rate limit, no timer: a call refused by the cap is
/// woken only by the settle of the call that holds the slot.
#[test]
fn a_concurrency_cap_of_one_never_stalls() {
    assert_never_stalls(|| {
        ThrottleLayer::builder()
            .scope("global", ScopeLimits::new().concurrency(1))
            .build()
            .expect("valid limits")
    });
}

/// One input-token bucket exactly one call's estimate big, refilling over a minute, and every
/// call refunded to zero by its usage: the bucket is full whenever no call is in flight, so a
/// call refused by it must be woken by the refund, not sleep the minute the refusal named.
#[test]
fn a_bucket_refunded_in_full_never_stalls() {
    assert_never_stalls(|| {
        ThrottleLayer::builder()
            .scope(
                "global",
                ScopeLimits::new().limit(
                    Limit::per_minute(Dimension::InputTokens, 1_000)
                        .with_burst(1_000)
                        .with_headroom(1.0),
                ),
            )
            .estimate(|_: &u64| Cost::request().with_input_tokens(1_000))
            .read_usage(|_: &u64| Some(Cost::request()))
            .build()
            .expect("valid limits")
    });
}
