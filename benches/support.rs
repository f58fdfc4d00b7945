//! What both benches share: the two workloads, and [`Caller`], one way to make a call through each
//! implementation so that every peer is driven by the same loop.
//!
//! # Workloads
//! * **1 task**: one task on a current-thread runtime makes every call, one after the other.
//! * **64 tasks**: a 2-worker multi-thread runtime; each sample's `iters` calls are split across 64
//!   spawned tasks, each with its own clone of the service (or its own stack where the peer cannot
//!   be cloned). The whole batch is timed, spawning and joining included, so the figure is
//!   aggregate inverse throughput (wall time ÷ calls), not latency. Nothing ever waits, so a task
//!   runs its share without yielding (except where a peer's tokio primitive spends the coop
//!   budget): at most two calls run at once, one per worker, which is all the contention two cores
//!   can show.
//!
//! Counting mode (see [`Workload::bench`]) makes a fixed number of calls of one benchmark on one
//! task without criterion, for an instruction count that the machine's load does not move.
//!
//! Time is measured with `tokio::time::Instant`, which reads the real clock outside tests (the
//! benches never pause it): the same clock tollgate reads.
#![allow(dead_code)]

use criterion::measurement::WallTime;
use criterion::BenchmarkGroup;
use std::fmt::Debug;
use std::future::Future;
use std::hint::black_box;
use std::time::Duration;
use tokio::runtime::{Builder, Runtime};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

/// Set to `name:calls` to make `calls` calls of the benchmark `name` on one task, after 1,000 calls
/// of warm-up, without criterion (`scripts/bench.sh` runs it under callgrind to count instructions
/// per call).
pub(crate) const COUNT_ENV: &str = "TOLLGATE_BENCH_CALLS";

/// The tasks of the contended workload.
pub(crate) const TASKS: usize = 64;

/// One way of making call number `i` through an implementation, start to finish.
pub(crate) trait Caller: Send + 'static {
    /// Makes call `i` and waits for its answer.
    fn call(&mut self, i: u64) -> impl Future<Output = ()> + Send;
}

/// A `tower::Service` driven as users drive one: `ready().await`, then `call(req).await`.
/// `make_req` builds the request of call `i`.
#[derive(Clone, Debug)]
pub(crate) struct Svc<S, M> {
    pub(crate) svc: S,
    pub(crate) make_req: M,
}

impl<S, M, Req> Caller for Svc<S, M>
where
    S: Service<Req> + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: Debug,
    M: FnMut(u64) -> Req + Send + 'static,
    Req: Send,
{
    fn call(&mut self, i: u64) -> impl Future<Output = ()> + Send {
        let req = (self.make_req)(i);
        async move {
            let svc = self.svc.ready().await.expect("the service is ready");
            black_box(svc.call(req).await.expect("the call succeeds"));
        }
    }
}

/// The two workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Workload {
    /// One task, current-thread runtime.
    OneTask,
    /// [`TASKS`] tasks on a 2-worker multi-thread runtime.
    Tasks,
}

impl Workload {
    pub(crate) const ALL: [Workload; 2] = [Workload::OneTask, Workload::Tasks];

    /// The suffix of the criterion group.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::OneTask => "1-task",
            Workload::Tasks => "64-tasks",
        }
    }

    /// A runtime for this workload, with the time driver (tower's `RateLimit` arms a `Sleep`).
    pub(crate) fn runtime(self) -> Runtime {
        match self {
            Workload::OneTask => Builder::new_current_thread().enable_time().build(),
            Workload::Tasks => Builder::new_multi_thread()
                .worker_threads(2)
                .enable_time()
                .build(),
        }
        .expect("a tokio runtime")
    }

    /// Benchmarks `name` in `group`: `make` gives each task its caller (a clone of the service,
    /// or a new stack where a peer cannot be cloned). It runs inside the runtime, before the clock
    /// starts.
    ///
    /// In counting mode ([`COUNT_ENV`] set to `name:calls`) it makes `calls` calls of `name` on one
    /// task instead, without criterion, and skips every other benchmark.
    pub(crate) fn bench<C: Caller>(
        self,
        group: &mut BenchmarkGroup<'_, WallTime>,
        rt: &Runtime,
        name: &str,
        mut make: impl FnMut() -> C,
    ) {
        if let Some(count) = std::env::var_os(COUNT_ENV) {
            let count = count.to_string_lossy();
            let (only, calls) = count
                .rsplit_once(':')
                .and_then(|(n, c)| Some((n, c.parse::<u64>().ok()?)))
                .unwrap_or_else(|| panic!("{COUNT_ENV} is `name:calls`, got `{count}`"));
            if self == Workload::OneTask && only == name {
                let mut caller = rt.block_on(async {
                    let mut caller = make();
                    // Warm up: lazily built state (clock calibration, buckets) is not counted.
                    for i in 0..1_000 {
                        caller.call(i).await;
                    }
                    caller
                });
                counted_calls(rt, &mut caller, calls);
            }
            return;
        }
        match self {
            Workload::OneTask => group.bench_function(name, |b| {
                b.to_async(rt).iter_custom(|iters| {
                    let mut caller = make();
                    async move {
                        let start = Instant::now();
                        for i in 0..iters {
                            caller.call(i).await;
                        }
                        start.elapsed()
                    }
                })
            }),
            Workload::Tasks => group.bench_function(name, |b| {
                b.to_async(rt).iter_custom(|iters| {
                    let callers: Vec<C> = (0..TASKS).map(|_| make()).collect();
                    async move { spread(callers, iters).await }
                })
            }),
        };
    }
}

/// Whether the benches run in counting mode (see [`Workload::bench`]).
pub(crate) fn counting() -> bool {
    std::env::var_os(COUNT_ENV).is_some()
}

/// Makes `calls` calls on one task. Callgrind counts the instructions of this function only
/// (`--toggle-collect=*counted_calls*`).
#[inline(never)]
fn counted_calls<C: Caller>(rt: &Runtime, caller: &mut C, calls: u64) {
    rt.block_on(async {
        for i in 0..calls {
            caller.call(1_000 + i).await;
        }
    });
}

/// Splits `iters` calls across one spawned task per caller; the wall time of the whole batch.
async fn spread<C: Caller>(callers: Vec<C>, iters: u64) -> Duration {
    let n = callers.len() as u64;
    let start = Instant::now();
    let tasks: Vec<_> = callers
        .into_iter()
        .enumerate()
        .map(|(k, mut caller)| {
            let k = k as u64;
            let share = iters / n + u64::from(k < iters % n);
            tokio::spawn(async move {
                for i in 0..share {
                    caller.call(k + i * n).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a bench task panicked");
    }
    start.elapsed()
}
