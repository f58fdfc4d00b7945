//! The store's handle of a set of scopes (`Store::handle`, `acquire_with`, `settle_with`, as the
//! layer calls them), and the scripts sent by hash after the server forgot them.

use crate::server::Server;
use crate::support::{acquire, admitted, scope, settlement, store, wait_of};
use std::time::Duration;
use tollgate::store::{Acquire, Decision, Store};
use tollgate::{Cost, Dimension, Limit, ScopeLimits, ScopeRef};
use tollgate_core::Nanos;
use tollgate_redis::{RedisHandle, RedisReservation, RedisStore};

fn per_minute(n: u64) -> ScopeLimits {
    ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, n))
}

async fn acquire_with(
    store: &RedisStore,
    handle: &RedisHandle,
    scopes: &[ScopeRef],
) -> Decision<RedisReservation> {
    let call = Acquire {
        now: Nanos::ZERO,
        scopes,
        cost: Cost::request(),
    };
    store
        .acquire_with(handle, &call)
        .await
        .expect("redis answers")
}

/// Calls in flight in `scope`'s set, as Redis counts them.
async fn in_flight(server: &Server, scope: &str) -> i64 {
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("ZCARD")
        .arg(format!("tollgate:{{default}}:f:{scope}"))
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// A call with a handle charges, caps and settles the same keys as a call without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_with_a_handle_share_the_buckets_and_slots_of_calls_without() {
    let server = Server::start().await;
    let s = store(&server.url()).await;
    let sc = [
        scope(0, "global", per_minute(2).concurrency(1)),
        scope(1, "agent:1", per_minute(1_000)),
    ];
    let handle = s.handle(&sc, Nanos::ZERO);
    let r = admitted(acquire_with(&s, &handle, &sc).await);
    assert_eq!(in_flight(&server, "global").await, 1);
    // The slot taken with the handle refuses a call without one.
    match acquire(&s, &sc, Cost::request()).await {
        Decision::Wait { blocked, .. } => assert_eq!(blocked, 0b01),
        other => panic!("{other:?}"),
    }
    s.settle_with(&handle, r, settlement(Cost::request()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(in_flight(&server, "global").await, 0);
    // The second request of the minute, without the handle; the third, with it, waits.
    let r = admitted(acquire(&s, &sc, Cost::request()).await);
    s.settle_and_wait(r, settlement(Cost::request()))
        .await
        .unwrap();
    let wait = wait_of(&acquire_with(&s, &handle, &sc).await).unwrap();
    assert!(wait > Duration::from_secs(29), "{wait:?}");
}

/// A handle made before the limits changed (here: a concurrency cap added, which adds a key) or
/// for other scopes is not used: the call is charged in its own scopes at its own limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_of_older_limits_or_of_other_scopes_is_not_used() {
    let server = Server::start().await;
    let s = store(&server.url()).await;
    let old = [scope(0, "global", per_minute(1_000))];
    let handle = s.handle(&old, Nanos::ZERO);
    let mut capped = scope(0, "global", per_minute(1_000).concurrency(1));
    capped.generation = 2;
    let new = [capped];
    let _r = admitted(acquire_with(&s, &handle, &new).await);
    assert_eq!(in_flight(&server, "global").await, 1);
    match acquire_with(&s, &handle, &new).await {
        Decision::Wait { blocked, .. } => assert_eq!(blocked, 1),
        other => panic!("{other:?}"),
    }
    // The handle of `global`, with a call in `agent:1` (one request a minute).
    let other = [scope(1, "agent:1", per_minute(1))];
    admitted(acquire_with(&s, &handle, &other).await);
    assert!(wait_of(&acquire(&s, &other, Cost::request()).await).is_some());
}

/// A restarted or flushed server no longer knows the scripts: the store loads them again and the
/// call goes through (a fail-closed store would refuse it with an error otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_the_server_forgot_is_loaded_again() {
    let server = Server::start().await;
    let s = store(&server.url()).await;
    let sc = [scope(0, "global", per_minute(1_000).concurrency(4))];
    let r = admitted(acquire(&s, &sc, Cost::request()).await);
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut flush = redis::cmd("SCRIPT");
    flush.arg("FLUSH");
    let () = flush.query_async(&mut conn).await.unwrap();
    let r2 = admitted(acquire(&s, &sc, Cost::request()).await);
    assert!(r2.admitted_at().is_some() && !s.is_degraded());
    let () = flush.query_async(&mut conn).await.unwrap();
    for r in [r, r2] {
        let at = s.settle_and_wait(r, settlement(Cost::request())).await;
        assert!(matches!(at, Ok(Some(_))), "{at:?}");
    }
    assert_eq!(in_flight(&server, "global").await, 0);
}
