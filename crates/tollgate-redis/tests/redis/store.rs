//! The store's decisions, one call at a time, against a real server.

use crate::server::Server;
use crate::support::{acquire, admitted, scope, settlement, store, wait_of};
use std::time::Duration;
use tollgate::store::{Decision, Store};
use tollgate::{Cost, Dimension, Limit, ScopeLimits};
use tollgate_core::Nanos;

fn per(dim: Dimension, n: u64, period: Duration) -> ScopeLimits {
    ScopeLimits::new().limit(Limit::new(dim, n, period))
}

fn tokens(n: u64) -> Cost {
    Cost::request().with_input_tokens(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_script_admits_in_every_scope_or_in_none() {
    let server = Server::start().await;
    let s = store(&server.url()).await;
    let minute = Duration::from_secs(60);
    let team = scope(0, "team", per(Dimension::Requests, 2, minute));
    let agent = scope(1, "agent", per(Dimension::Requests, 1, minute));
    let both = [team.clone(), agent.clone()];
    admitted(acquire(&s, &both, Cost::request()).await);
    // The agent is empty: refused for a minute, and the team is not charged.
    match acquire(&s, &both, Cost::request()).await {
        Decision::Wait { wait, blocked } => {
            let wait = wait.unwrap();
            assert!(wait > Duration::from_secs(59) && wait <= minute, "{wait:?}");
            assert_eq!(blocked, 0b10);
        }
        other => panic!("{other:?}"),
    }
    admitted(acquire(&s, std::slice::from_ref(&team), Cost::request()).await);
    let w = wait_of(&acquire(&s, &[team], Cost::request()).await).unwrap();
    assert!(w > Duration::from_secs(29), "{w:?}"); // one request refills in 30 s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wait_is_when_capacity_is_due_by_the_servers_clock() {
    let server = Server::start().await;
    let s = store(&server.url()).await;
    // 20 a second, burst 1: one call every 50 ms. The layer's `now` passed in is garbage.
    let limits = ScopeLimits::new()
        .limit(Limit::new(Dimension::Requests, 20, Duration::from_secs(1)).with_burst(1));
    let sc = [scope(0, "global", limits)];
    admitted(acquire(&s, &sc, Cost::request()).await);
    let wait = wait_of(&acquire(&s, &sc, Cost::request()).await).unwrap();
    assert!(
        wait > Duration::from_millis(30) && wait <= Duration::from_millis(50),
        "{wait:?}"
    );
    tokio::time::sleep(wait).await;
    admitted(acquire(&s, &sc, Cost::request()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_never_fits_is_refused_without_asking_redis() {
    let mut server = Server::start().await;
    let s = store(&server.url()).await;
    server.stop();
    let limits = per(Dimension::InputTokens, 100, Duration::from_secs(60));
    let sc = [scope(0, "global", limits)];
    match acquire(&s, &sc, tokens(101)).await {
        Decision::Never(n) => assert_eq!((n.requested, n.capacity), (101, 100)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settling_refunds_what_the_estimate_overcharged() {
    let server = Server::start().await;
    let s = store(&server.url()).await;
    let sc = [scope(
        0,
        "global",
        per(Dimension::InputTokens, 1_000, Duration::from_secs(600)),
    )];
    let r = admitted(acquire(&s, &sc, tokens(1_000)).await);
    assert!(r.admitted_at().is_some());
    assert!(wait_of(&acquire(&s, &sc, tokens(500)).await).is_some());
    // 100 used: 900 go back, once.
    let at = s.settle_and_wait(r, settlement(tokens(100))).await.unwrap();
    assert!(at.is_some());
    let r = admitted(acquire(&s, &sc, tokens(900)).await);
    assert!(wait_of(&acquire(&s, &sc, tokens(1)).await).is_some());
    // A settle that charges more than the estimate leaves debt: 1,000 more used than reserved.
    s.settle_and_wait(r, settlement(tokens(1_900)))
        .await
        .unwrap();
    let wait = wait_of(&acquire(&s, &sc, tokens(1)).await).unwrap();
    // 1,001 units owed at 1,000 per 600 s: the call waits about 600 s.
    assert!(wait > Duration::from_secs(599), "{wait:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooldown_set_by_one_process_pauses_the_others() {
    let server = Server::start().await;
    let (a, b) = (store(&server.url()).await, store(&server.url()).await);
    assert_ne!(a.client_id(), b.client_id());
    let sc = scope(
        0,
        "provider",
        per(Dimension::Requests, 1_000, Duration::from_secs(60)),
    );
    a.cool_down(
        &sc,
        Nanos::from_secs(5),
        Nanos::from_secs(5) + Nanos::from_millis(800),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let wait = wait_of(&acquire(&b, std::slice::from_ref(&sc), Cost::request()).await).unwrap();
    assert!(
        wait > Duration::from_millis(400) && wait <= Duration::from_millis(700),
        "{wait:?}"
    );
    // A shorter cooldown later does not shorten it.
    a.cool_down(&sc, Nanos::ZERO, Nanos::from_millis(1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(wait_of(&acquire(&b, std::slice::from_ref(&sc), Cost::request()).await).is_some());
    tokio::time::sleep(Duration::from_millis(700)).await;
    admitted(acquire(&b, &[sc], Cost::request()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_sync_lowers_a_bucket_and_never_raises_it() {
    let server = Server::start().await;
    let (a, b) = (store(&server.url()).await, store(&server.url()).await);
    let sc = scope(
        0,
        "provider",
        per(Dimension::Requests, 60, Duration::from_secs(60)),
    );
    a.sync_remaining(&sc, Nanos::ZERO, Dimension::Requests, 2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Raising is ignored.
    a.sync_remaining(&sc, Nanos::ZERO, Dimension::Requests, 50);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let one = std::slice::from_ref(&sc);
    admitted(acquire(&b, one, Cost::request()).await);
    admitted(acquire(&b, one, Cost::request()).await);
    let wait = wait_of(&acquire(&b, one, Cost::request()).await).unwrap();
    assert!(wait > Duration::from_millis(500), "{wait:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_caps_are_shared_and_given_back_by_a_settle() {
    let server = Server::start().await;
    let (a, b) = (store(&server.url()).await, store(&server.url()).await);
    let sc = [scope(0, "global", ScopeLimits::new().concurrency(2))];
    let r1 = admitted(acquire(&a, &sc, Cost::request()).await);
    let _r2 = admitted(acquire(&a, &sc, Cost::request()).await);
    match acquire(&b, &sc, Cost::request()).await {
        // Refused by the cap: ask again after the poll interval (another process may release).
        Decision::Wait { wait, blocked } => {
            assert_eq!(wait, Some(Duration::from_millis(50)));
            assert_eq!(blocked, 1);
        }
        other => panic!("{other:?}"),
    }
    a.settle(r1, settlement(Cost::request()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    admitted(acquire(&b, &sc, Cost::request()).await);
    assert!(wait_of(&acquire(&b, &sc, Cost::request()).await).is_some());
}

/// Only the scopes with a cap have a set of calls in flight (the script's keys are every scope's
/// state, then the sets of the capped ones): each is counted, reported and given back in its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_in_some_scopes_of_a_call_are_counted_and_given_back_in_theirs() {
    let server = Server::start().await;
    let s = store(&server.url()).await;
    let sc = [
        scope(
            0,
            "global",
            per(Dimension::Requests, 1_000, Duration::from_secs(60)),
        ),
        scope(1, "team:1", ScopeLimits::new().concurrency(1)),
        scope(
            2,
            "agent:1",
            per(Dimension::InputTokens, 10_000, Duration::from_secs(60)).concurrency(2),
        ),
    ];
    let r = admitted(acquire(&s, &sc, tokens(10)).await);
    match acquire(&s, &sc, tokens(10)).await {
        Decision::Wait { blocked, .. } => assert_eq!(blocked, 0b010),
        other => panic!("{other:?}"),
    }
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut counts = Vec::new();
    for k in ["global", "team:1", "agent:1"] {
        let n: i64 = redis::cmd("ZCARD")
            .arg(format!("tollgate:{{default}}:f:{k}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        counts.push(n);
    }
    assert_eq!(counts, [0, 1, 1]);
    s.settle_and_wait(r, settlement(tokens(10))).await.unwrap();
    let _r = admitted(acquire(&s, &sc, tokens(10)).await);
    // The agent's cap of 2 holds one call: the team's cap of 1 is what refuses again.
    match acquire(&s, &sc, tokens(10)).await {
        Decision::Wait { blocked, .. } => assert_eq!(blocked, 0b010),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_limits_keep_what_the_bucket_owes() {
    let server = Server::start().await;
    let s = store(&server.url()).await;
    let minute = Duration::from_secs(60);
    let old = [scope(0, "global", per(Dimension::InputTokens, 600, minute))];
    admitted(acquire(&s, &old, tokens(300)).await);
    // Twice the rate: the 300 tokens owed are still owed, 900 of 1,200 are free.
    let mut new = scope(0, "global", per(Dimension::InputTokens, 1_200, minute));
    new.generation = 2;
    let new = [new];
    admitted(acquire(&s, &new, tokens(900)).await);
    let wait = wait_of(&acquire(&s, &new, tokens(10)).await).unwrap();
    assert!(
        wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
        "{wait:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_carries_the_hash_tag_and_expires_when_idle() {
    let server = Server::start().await;
    let s = tollgate_redis::RedisStore::builder(server.url())
        .prefix("app")
        .hash_tag("org-7")
        .reservation_ttl(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    let limits = per(Dimension::Requests, 100, Duration::from_secs(1)).concurrency(5);
    let sc = [
        scope(0, "global", limits),
        scope(1, "agent:1", ScopeLimits::new()),
    ];
    let r = admitted(acquire(&s, &sc, Cost::request()).await);
    s.cool_down(&sc[1], Nanos::ZERO, Nanos::from_secs(2));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    assert_eq!(
        keys,
        [
            "app:{org-7}:clients",
            "app:{org-7}:f:global",
            "app:{org-7}:s:agent:1",
            "app:{org-7}:s:global",
        ]
    );
    for k in &keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0, "{k} never expires");
    }
    // The bucket is full again 10 ms after the call: its key goes a second later.
    s.settle_and_wait(r, settlement(Cost::request()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let exists: bool = redis::cmd("EXISTS")
        .arg("app:{org-7}:s:global")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!exists);
}

/// A busy scope's key keeps its expiry (`SET … KEEPTTL`) until its state needs a later one, so its
/// expiry moves about once a second rather than at every call, and the key still lives until its
/// bucket is full again plus a second, and goes within two. A scope without a concurrency cap has
/// no set of calls in flight, and a scope without limits no key at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_key_moves_its_expiry_rarely_and_still_expires_when_idle() {
    let server = Server::start().await;
    let s = store(&server.url()).await;
    // 10 a second: each call owes 100 ms; ten calls empty the bucket for a second.
    let sc = [
        scope(
            0,
            "global",
            per(Dimension::Requests, 10, Duration::from_secs(1)),
        ),
        scope(1, "agent:2", ScopeLimits::new()),
    ];
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = "tollgate:{default}:s:global";
    let start = tokio::time::Instant::now();
    let mut ttls = Vec::new();
    for _ in 0..10 {
        admitted(acquire(&s, &sc, Cost::request()).await);
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        ttls.push(ttl);
    }
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "too slow to test"
    );
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    assert_eq!(keys, ["tollgate:{default}:clients", key]);
    // Created a second after its bucket is full again (100 ms after the first call; whole ms, rounded up).
    assert!(ttls[0] > 1_000 && ttls[0] <= 1_101, "{ttls:?}");
    // The second call needed a later expiry and got two seconds after its bucket is full (2.2 s);
    // the next eight, up to 1 s after the first, fit in it and kept it.
    let rises = ttls.windows(2).filter(|w| w[1] > w[0]).count();
    assert_eq!(rises, 1, "{ttls:?}");
    assert!(ttls[1] > 2_000 && ttls[1] <= 2_201, "{ttls:?}");
    let exists = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("EXISTS")
                .arg(key)
                .query_async::<bool>(&mut conn)
                .await
                .unwrap()
        }
    };
    // The bucket is full again 1 s after the first call: the key lives a second more.
    tokio::time::sleep_until(start + Duration::from_millis(1_900)).await;
    assert!(exists(&mut conn).await, "gone before its second of slack");
    tokio::time::sleep_until(start + Duration::from_millis(3_200)).await;
    assert!(!exists(&mut conn).await, "still there two seconds after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_show_the_shared_state_one_read_late() {
    let server = Server::start().await;
    let (a, b) = (store(&server.url()).await, store(&server.url()).await);
    let limits = per(Dimension::InputTokens, 1_000, Duration::from_secs(3_600)).concurrency(4);
    let sc = [scope(0, "global", limits)];
    let _r = admitted(acquire(&a, &sc, tokens(400)).await);
    // The first look starts a read in the background (it may already have answered).
    let _ = b.state(&sc[0], Nanos::ZERO);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let state = b
        .state(&sc[0], Nanos::ZERO)
        .expect("read in the background");
    assert_eq!(state.in_flight, 1);
    assert!((state.available[0] - 600.0).abs() < 1.0, "{state:?}");
}

/// The settle script's own contract, called directly: a second settle of the same reservation id
/// (a retry whose first attempt did reach Redis) changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_settle_changes_nothing() {
    let server = Server::start().await;
    let s = store(&server.url()).await;
    let hour = Duration::from_secs(3_600);
    let sc = [scope(0, "global", per(Dimension::InputTokens, 3_600, hour))];
    // 3,600 tokens an hour: one token refills in 1 s. Take them all.
    let _r = admitted(acquire(&s, &sc, tokens(3_600)).await);
    let settle = redis::Script::new(concat!(
        include_str!("../../src/lua/common.lua"),
        include_str!("../../src/lua/settle.lua")
    ));
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // Refund 100 tokens (100 s) under reservation id `x`, twice. The keys: the marker, the scope's
    // state (no slot, so no set of calls in flight). The numbers, packed as little-endian doubles:
    // one scope; no slot, one bucket (input tokens per hour: id 2 × 10^15 + the period in µs), its
    // rate (units per period × 1000) and the change in µs.
    let packed: Vec<u8> = [
        1.0,
        0.0,
        1.0,
        2_000_003_600_000_000.0,
        3_600_000.0,
        -100_000_000.0,
    ]
    .into_iter()
    .flat_map(f64::to_le_bytes)
    .collect();
    let mut answers = Vec::new();
    for _ in 0..2 {
        let (settled, _now): (i64, i64) = settle
            .key("tollgate:{default}:d:x")
            .key("tollgate:{default}:s:global")
            .arg("x")
            .arg(60_000)
            .arg(&packed[..])
            .invoke_async(&mut conn)
            .await
            .unwrap();
        answers.push(settled);
    }
    assert_eq!(answers, [1, 0]);
    // 100 tokens came back, not 200.
    admitted(acquire(&s, &sc, tokens(100)).await);
    let wait = wait_of(&acquire(&s, &sc, tokens(1)).await).unwrap();
    assert!(wait > Duration::from_millis(900), "{wait:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_runs_longer_than_the_ttl_keeps_its_slot() {
    let server = Server::start().await;
    let a = tollgate_redis::RedisStore::builder(server.url())
        .reservation_ttl(Duration::from_millis(600))
        .build()
        .await
        .unwrap();
    let b = store(&server.url()).await;
    let sc = [scope(0, "global", ScopeLimits::new().concurrency(1))];
    let r = admitted(acquire(&a, &sc, Cost::request()).await);
    // Four TTLs later the call still runs: its process has kept the slot alive.
    tokio::time::sleep(Duration::from_millis(2_400)).await;
    assert!(wait_of(&acquire(&b, &sc, Cost::request()).await).is_some());
    a.settle_and_wait(r, settlement(Cost::request()))
        .await
        .unwrap();
    admitted(acquire(&b, &sc, Cost::request()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_dropped_without_a_settle_gives_its_slot_back_after_the_ttl() {
    let server = Server::start().await;
    let ttl = Duration::from_millis(500);
    let a = tollgate_redis::RedisStore::builder(server.url())
        .reservation_ttl(ttl)
        .build()
        .await
        .unwrap();
    let sc = [scope(0, "global", ScopeLimits::new().concurrency(1))];
    drop(admitted(acquire(&a, &sc, Cost::request()).await));
    assert!(wait_of(&acquire(&a, &sc, Cost::request()).await).is_some());
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    admitted(acquire(&a, &sc, Cost::request()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_of_the_adaptive_rate_reaches_every_store_and_only_the_latest_is_kept() {
    use tollgate::store::RateCut;
    let server = Server::start().await;
    let a = store(&server.url()).await;
    let b = store(&server.url()).await;
    let s = scope(
        0,
        "global",
        per(Dimension::Requests, 600, Duration::from_secs(60)),
    );
    // Nothing published yet (and B starts reading in the background).
    assert_eq!(b.latest_rate_cut(&s), None);
    let latest = RateCut {
        at_unix_ms: 1_767_225_602_000,
        max_rate: 10.0,
    };
    let older = RateCut {
        at_unix_ms: 1_767_225_601_000,
        max_rate: 3.0,
    };
    a.publish_rate_cut(&s, latest);
    a.publish_rate_cut(&s, older);
    assert_eq!(a.latest_rate_cut(&s), Some(latest), "known here at once");
    // B reads Redis again at most once a probe interval (1 s): it sees the latest cut within
    // about that, never the older one.
    let start = tokio::time::Instant::now();
    loop {
        match b.latest_rate_cut(&s) {
            Some(cut) => {
                assert_eq!(cut, latest);
                break;
            }
            None => assert!(
                start.elapsed() < Duration::from_secs(3),
                "B never saw the cut"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The record expires when idle.
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg("tollgate:{default}:a:global")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 600_000, "{ttl}");
}
