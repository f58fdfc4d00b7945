//! Memory stays flat when keys of a pattern come and go: a fleet of `agent:*` keys, each used
//! once, a thousand new ones a (virtual) second, through one service. Idle keys are evicted, so
//! the scopes the layer keeps (registry and store) and the bytes it holds stop growing once the
//! first keys have gone idle, whatever the number of keys seen.
//!
//! The test binary counts the bytes each thread holds on the heap with its own global allocator.
//! The calls run on a current-thread runtime on a paused clock, on the test's own thread, so the
//! count is theirs alone.
//!
//! `cargo test --test memory` runs 10⁵ keys; the 10⁶ figure is an ignored test,
//! `cargo test --test memory -- --ignored --nocapture`.

use smallvec::smallvec;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::ready;
use std::time::Duration;
use tollgate::{Dimension, Limit, ScopeKey, ScopeLimits, Scopes, ThrottleLayer};
use tower::{service_fn, Layer, Service, ServiceExt};

/// The system allocator, counting the bytes each thread holds (allocated less freed).
struct Counting;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
}

fn held(delta: isize) {
    // `try_with`: a thread being torn down has no counter any more.
    let _ = HELD.try_with(|n| n.set(n.get() + delta));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        held(layout.size() as isize);
        // SAFETY: forwarded as the caller gave it.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        held(layout.size() as isize);
        // SAFETY: forwarded as the caller gave it.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        held(new_size as isize - layout.size() as isize);
        // SAFETY: forwarded as the caller gave it.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        held(-(layout.size() as isize));
        // SAFETY: forwarded as the caller gave it.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What the layer keeps at one moment: scopes in the registry and in the store, bytes held.
#[derive(Clone, Copy, Debug)]
struct Kept {
    scopes: usize,
    cells: usize,
    bytes: isize,
}

/// Calls `keys` agents once each, one every millisecond of virtual time, through one service;
/// returns what is kept after each tenth of them.
fn fleet(keys: u32, idle: Duration) -> Vec<Kept> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let layer = ThrottleLayer::builder()
            .scope(
                "global",
                ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, 100_000)),
            )
            .scope(
                "agent:*",
                ScopeLimits::new()
                    .limit(Limit::per_minute(Dimension::Requests, 20))
                    .concurrency(2),
            )
            .idle_eviction(idle)
            .extract_scopes(|agent: &u32| -> Scopes {
                smallvec![ScopeKey::GLOBAL, ScopeKey::from(format!("agent:{agent}"))]
            })
            .build()
            .unwrap();
        let limiter = layer.limiter().clone();
        let mut svc = layer.layer(service_fn(|_: u32| ready(Ok::<_, Infallible>(()))));
        let mut kept = Vec::new();
        for agent in 0..keys {
            svc.ready().await.unwrap().call(agent).await.unwrap();
            tokio::time::advance(Duration::from_millis(1)).await;
            if (agent + 1) % (keys / 10) == 0 {
                kept.push(Kept {
                    scopes: limiter.stats().len(),
                    cells: limiter.store().kept(),
                    bytes: HELD.with(Cell::get),
                });
            }
        }
        kept
    })
}

/// Flat: the scopes kept stay under a bound that does not depend on the keys seen, and the bytes
/// held over the second half of the run rise no higher than half as much again as over the first
/// (they go up and down in steps as the lane cache and the tables fill and empty), while the keys
/// seen double. Returns the figures.
fn assert_flat(keys: u32) -> Vec<Kept> {
    let kept = fleet(keys, Duration::from_secs(1));
    for (i, k) in kept.iter().enumerate() {
        eprintln!(
            "{:>8} keys seen: {:>6} scopes, {:>6} cells, {:>10} bytes held",
            (i + 1) as u64 * u64::from(keys / 10),
            k.scopes,
            k.cells,
            k.bytes
        );
    }
    for k in &kept {
        // The bound: the lanes one service caches (4,096 + 1,024 key sets), the keys gone idle
        // since the sweep before last (sweeps every 1,024 new keys or a quarter of the keys kept;
        // a thousand new keys a second, idle after one), and `global`.
        assert!(k.scopes <= 12_000, "{k:?}");
        assert_eq!(k.cells, k.scopes, "the store keeps what the registry does");
    }
    let most = |ks: &[Kept]| ks.iter().map(|k| k.bytes).max().unwrap_or(0);
    let (first, second) = (most(&kept[..5]), most(&kept[5..]));
    assert!(
        second <= first + first / 2,
        "bytes held grew: {first} then {second}"
    );
    kept
}

#[test]
fn a_hundred_thousand_keys_keep_flat_memory() {
    assert_flat(100_000);
}

#[test]
#[ignore = "a million calls: about 20 s in a debug build"]
fn a_million_keys_keep_flat_memory() {
    assert_flat(1_000_000);
}

/// Without eviction (an idle time longer than the run), every key seen stays: what eviction saves.
#[test]
fn without_eviction_every_key_stays() {
    let kept = fleet(20_000, Duration::from_secs(86_400));
    eprintln!("without eviction, 20000 keys seen: {:?}", kept[9]);
    assert_eq!(kept[9].scopes, 20_001);
    assert_eq!(kept[9].cells, 20_001);
}
