//! The fast path allocates nothing: once a service has made its lane (the resolved scopes of a
//! set of keys) and the store its buckets, a call that does not wait takes no heap memory, however
//! many scopes and tiers it goes through and whether its charge is reconciled up or down.
//!
//! The test binary counts the allocations of each thread with its own global allocator; the calls
//! run on a current-thread runtime on the test's own thread, so the counts are theirs alone.

use smallvec::smallvec;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::{ready, Ready};
use tollgate::{
    Cost, Dimension, Limit, Limiter, Priority, ScopeKey, ScopeLimits, Scopes, ThrottleLayer,
};
use tower::util::ServiceFn;
use tower::{service_fn, Layer, Service, ServiceExt};

/// The system allocator, counting the allocations and reallocations of each thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: a thread being torn down has no counter any more; its allocations are not ours.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded as the caller gave it.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded as the caller gave it.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded as the caller gave it.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as the caller gave it.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The allocations this thread makes while `f` runs.
fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

/// An agent's call: its keys, priority, the input tokens and the most output tokens it may use.
#[derive(Clone, Debug)]
struct Prompt {
    team: ScopeKey,
    agent: ScopeKey,
    priority: Priority,
    input: u64,
    max_output: u64,
}

/// What the provider used.
#[derive(Clone, Copy, Debug)]
struct Reply {
    input: u64,
    output: u64,
}

/// The provider: ready at once, uses a third of the output tokens it was allowed.
fn provider(p: Prompt) -> Ready<Result<Reply, Infallible>> {
    ready(Ok(Reply {
        input: p.input,
        output: p.max_output / 3,
    }))
}

/// Limits no test reaches: requests, input and output tokens a minute, and optionally a cap on the
/// calls in flight.
fn limits(concurrency: Option<u32>) -> ScopeLimits {
    let limits = ScopeLimits::new()
        .limit(Limit::per_minute(Dimension::Requests, 1_000_000_000))
        .limit(Limit::per_minute(Dimension::InputTokens, 1_000_000_000_000))
        .limit(Limit::per_minute(
            Dimension::OutputTokens,
            1_000_000_000_000,
        ));
    match concurrency {
        Some(max) => limits.concurrency(max),
        None => limits,
    }
}

/// The prompts of 8 agents in 2 teams, odd agents background; made once, as agents hold them.
fn fleet() -> Vec<Prompt> {
    (0..8)
        .map(|a| Prompt {
            team: ScopeKey::from(format!("team:{}", a % 2)),
            agent: ScopeKey::from(format!("agent:{a}")),
            priority: Priority((a % 2) as u8),
            input: 100 + a,
            max_output: 300,
        })
        .collect()
}

/// The provider as a service's function.
type Provider = fn(Prompt) -> Ready<Result<Reply, Infallible>>;

/// Sends `calls` calls through `layer` over the provider one after the other, rotating over the
/// fleet, each awaited to its answer, on a current-thread runtime on this thread; returns the
/// allocations of the last `calls - warm_up` of them.
fn allocations_of<L>(layer: L, calls: usize, warm_up: usize) -> u64
where
    L: Layer<ServiceFn<Provider>>,
    L::Service: Service<Prompt, Response = Reply>,
    <L::Service as Service<Prompt>>::Error: std::fmt::Debug,
{
    let mut svc = layer.layer(service_fn(provider as Provider));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let fleet = fleet();
    let mut send = |i: usize| {
        rt.block_on(async {
            let p = fleet[i % fleet.len()].clone();
            let reply = svc
                .ready()
                .await
                .expect("ready")
                .call(p)
                .await
                .expect("admitted");
            assert_eq!(reply.output, 100);
        })
    };
    for i in 0..warm_up {
        send(i);
    }
    allocations_in(|| (warm_up..calls).for_each(&mut send))
}

fn estimate(p: &Prompt) -> Cost {
    Cost::request()
        .with_input_tokens(p.input)
        .with_output_tokens(p.max_output)
}

fn usage(r: &Reply) -> Option<Cost> {
    Some(
        Cost::request()
            .with_input_tokens(r.input)
            .with_output_tokens(r.output),
    )
}

/// Every call went straight through: admitted once each, none refused or queued.
fn assert_straight_through(limiter: &Limiter, calls: u64) {
    let global = limiter.scope_stats("global").expect("the global scope");
    assert_eq!(global.admitted, calls, "{global:?}");
    assert_eq!((global.refused, global.queue_depth), (0, 0), "{global:?}");
}

#[test]
fn a_call_in_one_scope_allocates_nothing() {
    let layer = ThrottleLayer::builder()
        .scope("global", limits(None))
        .estimate(estimate)
        .read_usage(usage)
        .build()
        .expect("valid limits");
    let limiter = layer.limiter().clone();
    assert_eq!(allocations_of(layer, 1_000, 100), 0);
    assert_straight_through(&limiter, 1_000);
}

#[test]
fn a_call_in_three_scopes_two_tiers_and_a_concurrency_cap_allocates_nothing() {
    let layer = ThrottleLayer::builder()
        .scope("global", limits(Some(64)))
        .scope("team:*", limits(None))
        .scope("agent:*", limits(Some(4)))
        .tier(Priority::BACKGROUND, 0.25)
        .extract_scopes(|p: &Prompt| -> Scopes {
            smallvec![ScopeKey::GLOBAL, p.team.clone(), p.agent.clone()]
        })
        .assign_priority(|p: &Prompt| p.priority)
        .estimate(estimate)
        .read_usage(usage)
        .build()
        .expect("valid limits");
    let limiter = layer.limiter().clone();
    // The warm-up visits every agent: each lane and each agent's and team's buckets exist after it.
    assert_eq!(allocations_of(layer, 1_000, 100), 0);
    assert_straight_through(&limiter, 1_000);
    assert_eq!(limiter.stats().len(), 1 + 2 + 8);
}

/// The counter sees what the layer allocates: the first calls of a fleet make lanes and buckets.
#[test]
fn the_counter_sees_the_first_calls_allocate() {
    let layer = ThrottleLayer::builder()
        .scope("global", limits(None))
        .scope("agent:*", limits(None))
        .extract_scopes(|p: &Prompt| -> Scopes { smallvec![ScopeKey::GLOBAL, p.agent.clone()] })
        .estimate(estimate)
        .read_usage(usage)
        .build()
        .expect("valid limits");
    assert!(allocations_of(layer, 8, 0) >= 8);
}
