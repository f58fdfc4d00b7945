//! Admissions per second from one process through the Redis store: every call charged to three
//! scopes (`global`, `team:*`, `agent:*`, each with an RPM and an input-TPM limit far above any
//! rate reached, so nothing waits), against a `redis-server` on loopback that the bench starts on
//! a free port (`redis-server` must be on `PATH`, or named by `TOLLGATE_REDIS_SERVER`).
//!
//! * `raw-script-3-scopes`: the ceiling: the store's admission script itself, `EVALSHA` with the
//!   keys and arguments `acquire-3-scopes` sends, from 64 tasks over one multiplexed redis-rs
//!   connection (which pipelines the concurrent requests), with no store and no layer.
//! * `acquire-3-scopes`: the store alone, `Store::acquire_with` (with the store's handle of the
//!   three scopes, made once, as the layer does) from 64 tasks on a 2-worker runtime over one
//!   multiplexed connection: one admission script per call, nothing settled (the reservations
//!   expire). Its target: 30,000 admissions a second, and at least 0.8× `raw-script-3-scopes`.
//! * `layer-3-scopes`: whole calls through `ThrottleLayer` on the store, 64 tasks: the admission
//!   plus the settle script the layer sends in the background after each call.
//!
//! Client and server share the machine's cores, as they would on one host. The figure is
//! aggregate inverse throughput (wall time ÷ calls).
//!
//! Run with `scripts/bench.sh redis` (or `cargo bench -p tollgate-benches --bench redis`).

#[path = "../crates/tollgate-redis/tests/redis/server.rs"]
mod server;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tollgate::store::{Acquire, Decision, Store};
use tollgate::{Cost, Dimension, Limit, ScopeKey, ScopeLimits, ScopeRef, Scopes, ThrottleLayer};
use tollgate_core::{Gcra, Nanos};
use tollgate_redis::RedisStore;
use tower::{service_fn, ServiceExt};

const TASKS: u64 = 64;

fn limits() -> ScopeLimits {
    ScopeLimits::new()
        .limit(Limit::per_minute(Dimension::Requests, 1_000_000_000))
        .limit(Limit::per_minute(Dimension::InputTokens, 1_000_000_000_000))
}

fn cost() -> Cost {
    Cost::request().with_input_tokens(1_000)
}

/// The store's admission script, as the store builds it (the shared prelude, then the script), so
/// that its SHA1 is the one the store loads.
const ACQUIRE_LUA: &str = concat!(
    include_str!("../crates/tollgate-redis/src/lua/common.lua"),
    include_str!("../crates/tollgate-redis/src/lua/acquire.lua"),
);

/// The reservation TTL of the bench's store, in µs (an argument of the script).
const TTL: Duration = Duration::from_secs(5);

/// The packed argument of the admission script for `cost` in scopes with `limits` (none capped):
/// the numbers the store computes for such a call (see `crates/tollgate-redis/src/script.rs`),
/// each a little-endian double.
fn packed(scopes: usize, limits: &[Gcra], cost: Cost) -> Vec<u8> {
    let mut v = vec![scopes as f64];
    for _ in 0..scopes {
        v.extend([0.0, limits.len() as f64]);
        for g in limits {
            let dim = match g.dimension() {
                Dimension::Requests => 1,
                Dimension::InputTokens => 2,
                Dimension::OutputTokens => 3,
                Dimension::TotalTokens => 4,
            };
            let period = g.period().as_u64() as u128;
            let milli = (g.per_period() * 1000.0).round() as u128;
            let n = cost.amount(g.dimension());
            let id = dim * 1_000_000_000_000_000 + g.period().as_u64() / 1_000;
            let charge = (n as u128 * period).div_ceil(milli);
            let room = (g.burst() - n) as u128 * period / milli;
            v.extend([id as f64, milli as f64, charge as f64, room as f64]);
        }
    }
    v.into_iter().flat_map(f64::to_le_bytes).collect()
}

/// Runs `iters` calls of `call` spread over [`TASKS`] tasks; the wall time of the batch.
async fn spread<F, Fut>(iters: u64, call: F) -> Duration
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|k| {
            let call = call.clone();
            let share = iters / TASKS + u64::from(k < iters % TASKS);
            tokio::spawn(async move {
                for i in 0..share {
                    call(k + i * TASKS).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a bench task panicked");
    }
    start.elapsed()
}

fn redis(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let server = rt.block_on(server::Server::start());
    let store = rt.block_on(async {
        RedisStore::builder(server.url())
            .timeout(Duration::from_secs(1))
            .reservation_ttl(TTL)
            .build()
            .await
            .expect("the bench's redis-server answers")
    });
    let compiled = Arc::new(limits().compile().expect("valid limits"));
    let scopes: Arc<[ScopeRef]> = ["global", "team:0", "agent:0"]
        .iter()
        .enumerate()
        .map(|(i, key)| ScopeRef {
            id: i as u32,
            key: ScopeKey::from(*key),
            generation: 1,
            limits: compiled.clone(),
        })
        .collect();

    let mut group = c.benchmark_group("redis/64-tasks");
    group.throughput(Throughput::Elements(1));

    // The ceiling: the same script, keys and arguments, straight through redis-rs.
    let conn = rt.block_on(async {
        let mut conn = redis::Client::open(server.url())
            .expect("a valid url")
            .get_multiplexed_async_connection()
            .await
            .expect("the bench's redis-server answers");
        let script = redis::Script::new(ACQUIRE_LUA);
        script
            .prepare_invoke()
            .load_async(&mut conn)
            .await
            .expect("the script loads");
        conn
    });
    let sha: Arc<str> = redis::Script::new(ACQUIRE_LUA).get_hash().into();
    let keys: Arc<[String]> = scopes
        .iter()
        .map(|s| format!("tollgate:{{default}}:s:{}", s.key))
        .collect();
    let args: Arc<[u8]> = packed(scopes.len(), compiled.gcras(), cost()).into();
    let ttl = TTL.as_micros() as u64;
    group.bench_function("raw-script-3-scopes", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (conn, sha, keys, args) = (conn.clone(), sha.clone(), keys.clone(), args.clone());
            spread(iters, move |i| {
                let (mut conn, sha, keys, args) =
                    (conn.clone(), sha.clone(), keys.clone(), args.clone());
                async move {
                    let reply: Vec<i64> = redis::cmd("EVALSHA")
                        .arg(&*sha)
                        .arg(keys.len())
                        .arg(&*keys)
                        .arg(format!("bench.{i}"))
                        .arg(ttl)
                        .arg(&*args)
                        .query_async(&mut conn)
                        .await
                        .expect("redis answers");
                    assert_eq!(reply.first(), Some(&1), "{reply:?}");
                }
            })
        })
    });

    // The store's handle of the three scopes, made once, as the layer makes one per set of scopes.
    let handle = Arc::new(store.handle(&scopes, Nanos::ZERO));
    group.bench_function("acquire-3-scopes", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (store, scopes, handle) = (store.clone(), scopes.clone(), handle.clone());
            spread(iters, move |_| {
                let (store, scopes, handle) = (store.clone(), scopes.clone(), handle.clone());
                async move {
                    let call = Acquire {
                        now: Nanos::ZERO,
                        scopes: &scopes,
                        cost: cost(),
                    };
                    let decision = store
                        .acquire_with(&handle, &call)
                        .await
                        .expect("redis answers");
                    assert!(matches!(decision, Decision::Admitted(_)), "{decision:?}");
                }
            })
        })
    });

    let layer = ThrottleLayer::builder()
        .scope("global", limits())
        .scope("team:*", limits())
        .scope("agent:*", limits())
        .extract_scopes(|i: &u64| -> Scopes {
            smallvec::smallvec![
                ScopeKey::from(format!("team:{}", i % 4)),
                ScopeKey::from(format!("agent:{}", i % 64)),
            ]
        })
        .always(["global"])
        .estimate(|_: &u64| cost())
        .build_with_store(store.clone())
        .expect("valid limits");
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|i: u64| async move { Ok::<_, Infallible>(i) }));
    group.bench_function("layer-3-scopes", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let svc = svc.clone();
            spread(iters, move |i| {
                let svc = svc.clone();
                async move {
                    svc.oneshot(i).await.expect("the call succeeds");
                }
            })
        })
    });
    group.finish();
    drop(server);
}

criterion_group!(benches, redis);
criterion_main!(benches);
