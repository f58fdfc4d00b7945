//! The tower layer on tokio's paused clock: ordering, fairness, cancellation, limits, clones.

#[path = "../support/mod.rs"]
mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;
use support::*;
use tokio::time::Instant;
use tollgate::{BoxError, Dimension, Limit, Priority, ScopeLimits, ThrottleError, ThrottleLayer};
use tower::{Service, ServiceExt};

const MS: Duration = Duration::from_millis(1);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn rpm(n: u64, burst: u64) -> ScopeLimits {
    ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, n).with_burst(burst))
}

fn spawn(svc: &Client, call: Call) -> tokio::task::JoinHandle<Result<Reply, BoxError>> {
    let svc = svc.clone();
    tokio::spawn(async move { svc.oneshot(call).await })
}

/// Lets every spawned task run until it waits (no virtual time passes).
async fn settle_tasks() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

fn throttle_error(e: &BoxError) -> &ThrottleError {
    e.downcast_ref::<ThrottleError>()
        .unwrap_or_else(|| panic!("not a ThrottleError: {e}"))
}

fn close(actual: Duration, expected: Duration) -> bool {
    actual.abs_diff(expected) <= 2 * MS
}

#[tokio::test(start_paused = true)]
async fn fifo_within_a_tier_at_the_rate() {
    let (start, log) = (Instant::now(), Log::default());
    let (limiter, svc) = client(
        ThrottleLayer::builder().scope("global", rpm(60, 1)),
        &log,
        start,
    );
    let tasks: Vec<_> = (0..10).map(|i| spawn(&svc, Call::new(i))).collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(log.ids(), (0..10).collect::<Vec<_>>());
    for (i, (_, at)) in log.entries().into_iter().enumerate() {
        assert!(close(at, secs(i as f64)), "call {i} at {at:?}");
    }
    let g = limiter.scope_stats("global").unwrap();
    assert_eq!((g.admitted, g.refused, g.queue_depth), (10, 0, 0));
    assert!(close(g.wait_max, secs(9.0)), "{:?}", g.wait_max);
    assert!(close(g.wait_p50, secs(5.0)), "{:?}", g.wait_p50);
}

#[tokio::test(start_paused = true)]
async fn higher_tier_goes_first() {
    let (start, log) = (Instant::now(), Log::default());
    let (_, svc) = client(
        ThrottleLayer::builder().scope("global", rpm(60, 1)),
        &log,
        start,
    );
    let mut tasks = vec![spawn(&svc, Call::new(0))];
    settle_tasks().await;
    for i in 1..=3 {
        tasks.push(spawn(&svc, Call::new(i)));
    }
    settle_tasks().await;
    for i in 4..=5 {
        tasks.push(spawn(&svc, Call::new(i).priority(1)));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(log.ids(), vec![0, 4, 5, 1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn reserved_share_follows_the_documented_round_robin() {
    let (start, log) = (Instant::now(), Log::default());
    let b = ThrottleLayer::builder()
        .scope("global", rpm(60, 1))
        .tier(Priority(0), 0.25);
    let (_, svc) = client(b, &log, start);
    let mut tasks = vec![spawn(&svc, Call::new(0).priority(1))];
    settle_tasks().await;
    for i in 1..=8 {
        tasks.push(spawn(&svc, Call::new(i).priority(1)));
    }
    for i in 101..=104 {
        tasks.push(spawn(&svc, Call::new(i).priority(0)));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // Weights 0.75 / 0.25: critical, critical, background, critical, repeating; then the rest.
    assert_eq!(
        log.ids(),
        vec![0, 1, 2, 101, 3, 4, 5, 102, 6, 7, 8, 103, 104]
    );
}

#[tokio::test(start_paused = true)]
async fn strict_priority_without_shares_starves_nothing_of_its_own_tier() {
    // Without shares the background tier waits until the critical tier is empty.
    let (start, log) = (Instant::now(), Log::default());
    let (_, svc) = client(
        ThrottleLayer::builder().scope("global", rpm(60, 1)),
        &log,
        start,
    );
    let mut tasks = vec![spawn(&svc, Call::new(0).priority(1))];
    settle_tasks().await;
    tasks.push(spawn(&svc, Call::new(100)));
    for i in 1..=4 {
        tasks.push(spawn(&svc, Call::new(i).priority(1)));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(log.ids(), vec![0, 1, 2, 3, 4, 100]);
}

#[tokio::test(start_paused = true)]
async fn a_large_call_is_not_starved_by_small_ones() {
    let (start, log) = (Instant::now(), Log::default());
    // 600 input tokens a minute: 10 a second.
    let b = ThrottleLayer::builder().scope(
        "global",
        ScopeLimits::new().limit(Limit::per_minute(Dimension::InputTokens, 600)),
    );
    let (_, svc) = client(b, &log, start);
    let mut tasks = vec![spawn(&svc, Call::new(0).tokens(100, 0, 0))];
    settle_tasks().await;
    // 500 left; the large call needs 600: 10 s.
    tasks.push(spawn(&svc, Call::new(1).tokens(600, 0, 0)));
    settle_tasks().await;
    // Small calls keep arriving; each would fit at once if it could pass.
    for i in 0..20 {
        tokio::time::sleep(secs(0.5)).await;
        tasks.push(spawn(&svc, Call::new(100 + i).tokens(10, 0, 0)));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let entries = log.entries();
    assert_eq!(entries[1].0, 1, "the large call is second: {entries:?}");
    assert!(close(entries[1].1, secs(10.0)), "{entries:?}");
    assert!(entries[2..].iter().all(|(_, at)| *at >= entries[1].1));
}

#[tokio::test(start_paused = true)]
async fn other_scopes_are_not_held_up_by_a_waiting_agent() {
    let (start, log) = (Instant::now(), Log::default());
    let b = ThrottleLayer::builder()
        .scope("global", rpm(600, 10))
        .scope("agent:*", rpm(60, 1));
    let (limiter, svc) = client(b, &log, start);
    let mut tasks = Vec::new();
    for i in 0..3 {
        tasks.push(spawn(&svc, Call::new(i).agent(1)));
    }
    settle_tasks().await;
    tasks.push(spawn(&svc, Call::new(10).agent(2)));
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let e = log.entries();
    assert_eq!(
        e.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![0, 10, 1, 2]
    );
    assert!(close(e[1].1, Duration::ZERO) && close(e[2].1, secs(1.0)) && close(e[3].1, secs(2.0)));
    // Every call was charged once to global, and the patterns made one bucket per agent.
    assert_eq!(limiter.scope_stats("global").unwrap().admitted, 4);
    assert_eq!(limiter.scope_stats("agent:1").unwrap().admitted, 3);
    assert_eq!(limiter.scope_stats("agent:2").unwrap().admitted, 1);
}

#[tokio::test(start_paused = true)]
async fn a_refused_scope_charges_no_other_scope() {
    let (start, log) = (Instant::now(), Log::default());
    let b = ThrottleLayer::builder()
        .scope("global", rpm(60, 5))
        .scope("agent:*", rpm(60, 1));
    let (limiter, svc) = client(b, &log, start);
    let _first = spawn(&svc, Call::new(0).agent(1));
    let _second = spawn(&svc, Call::new(1).agent(1));
    settle_tasks().await;
    // The second call waits for its agent; global was charged only for the first.
    let g = limiter.scope_stats("global").unwrap();
    assert!((g.buckets[0].available - 4.0).abs() < 1e-6, "{g:?}");
    assert_eq!(g.queue_depth, 1);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiting_call_leaves_the_queue() {
    let (start, log) = (Instant::now(), Log::default());
    let (limiter, svc) = client(
        ThrottleLayer::builder().scope("global", rpm(60, 1)),
        &log,
        start,
    );
    let first = spawn(&svc, Call::new(0));
    settle_tasks().await;
    let doomed = spawn(&svc, Call::new(1));
    settle_tasks().await;
    let third = spawn(&svc, Call::new(2));
    settle_tasks().await;
    tokio::time::sleep(secs(0.5)).await;
    doomed.abort();
    assert!(doomed.await.unwrap_err().is_cancelled());
    first.await.unwrap().unwrap();
    third.await.unwrap().unwrap();
    // The third call takes the dropped call's turn at 1 s, not 2 s.
    let e = log.entries();
    assert_eq!(e.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 2]);
    assert!(close(e[1].1, secs(1.0)), "{e:?}");
    let g = limiter.scope_stats("global").unwrap();
    assert_eq!((g.queue_depth, g.admitted), (0, 2));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_in_flight_gives_back_its_slot_and_output_reservation() {
    let (start, log) = (Instant::now(), Log::default());
    let b = ThrottleLayer::builder().scope(
        "global",
        ScopeLimits::new()
            .limit(Limit::per_minute(Dimension::InputTokens, 1_000))
            .limit(Limit::per_minute(Dimension::OutputTokens, 1_000))
            .concurrency(1),
    );
    let (limiter, svc) = client(b, &log, start);
    let slow = spawn(
        &svc,
        Call::new(0).tokens(500, 1_000, 900).latency(secs(30.0)),
    );
    settle_tasks().await;
    let g = limiter.scope_stats("global").unwrap();
    assert_eq!(g.in_flight, 1);
    assert!(g.buckets[1].available.abs() < 1e-6, "{g:?}");
    // The next call waits for the concurrency slot.
    let next = spawn(&svc, Call::new(1).tokens(10, 10, 10));
    tokio::time::sleep(secs(1.0)).await;
    assert_eq!(log.ids(), vec![0]);
    slow.abort();
    let _ = slow.await;
    next.await.unwrap().unwrap();
    assert!(close(log.entries()[1].1, secs(1.0)), "{:?}", log.entries());
    // The output reservation of the dropped call went back at once; its input stays charged
    // (OnFailure::RefundOutput) and refills within a minute.
    let g = limiter.scope_stats("global").unwrap();
    assert_eq!(g.in_flight, 0);
    assert!(g.buckets[1].available > 990.0 - 1e-6, "{g:?}");
    tokio::time::sleep(secs(60.0)).await;
    let g = limiter.scope_stats("global").unwrap();
    for b in &g.buckets {
        assert!((b.available - b.capacity as f64).abs() < 1e-6, "{g:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn concurrency_cap_holds_calls_until_a_release() {
    let (start, log) = (Instant::now(), Log::default());
    let b = ThrottleLayer::builder().scope("global", ScopeLimits::new().concurrency(2));
    let (_, svc) = client(b, &log, start);
    let tasks: Vec<_> = (0..5)
        .map(|i| spawn(&svc, Call::new(i).latency(secs(5.0))))
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let at: Vec<Duration> = log.entries().into_iter().map(|(_, t)| t).collect();
    let expect = [0.0, 0.0, 5.0, 5.0, 10.0];
    for (a, e) in at.iter().zip(expect) {
        assert!(close(*a, secs(e)), "{at:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn max_wait_ends_a_call_with_the_predicted_wait() {
    let (start, log) = (Instant::now(), Log::default());
    let b = ThrottleLayer::builder()
        .scope("global", rpm(60, 1))
        .max_wait(secs(2.5));
    let (limiter, svc) = client(b, &log, start);
    let tasks: Vec<_> = (0..4).map(|i| spawn(&svc, Call::new(i))).collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert!(results[..3].iter().all(Result::is_ok));
    let err = results[3].as_ref().unwrap_err();
    let e = throttle_error(err);
    assert!(e.is_max_wait(), "{e}");
    assert!(close(e.waited().unwrap(), secs(2.5)), "{e}");
    assert!(e.to_string().contains("maximum"), "{e}");
    assert_eq!(log.ids(), vec![0, 1, 2]);
    assert_eq!(limiter.scope_stats("global").unwrap().refused, 1);
}

#[tokio::test(start_paused = true)]
async fn refuse_over_max_wait_fails_at_once() {
    let (start, log) = (Instant::now(), Log::default());
    let b = ThrottleLayer::builder()
        .scope("global", rpm(60, 1))
        .max_wait(secs(0.5))
        .refuse_over_max_wait(true);
    let (_, svc) = client(b, &log, start);
    svc.clone().oneshot(Call::new(0)).await.unwrap();
    let err = svc.clone().oneshot(Call::new(1)).await.unwrap_err();
    let e = throttle_error(&err);
    assert!(e.is_max_wait());
    assert_eq!(e.waited(), Some(Duration::ZERO));
    assert_eq!(e.predicted_wait(), Some(secs(1.0)));
    assert_eq!(start.elapsed(), Duration::ZERO, "no time passed");
}

#[tokio::test(start_paused = true)]
async fn a_call_that_can_never_fit_fails_at_once() {
    let (start, log) = (Instant::now(), Log::default());
    let b = ThrottleLayer::builder().scope(
        "global",
        ScopeLimits::new().limit(Limit::per_minute(Dimension::InputTokens, 1_000)),
    );
    let (limiter, svc) = client(b, &log, start);
    let err = svc
        .oneshot(Call::new(0).tokens(1_001, 0, 0))
        .await
        .unwrap_err();
    let e = throttle_error(&err);
    assert!(e.is_never_fits());
    assert_eq!(e.scope().unwrap().as_str(), "global");
    assert_eq!(
        e.requested_vs_capacity(),
        Some((Dimension::InputTokens, 1_001, 1_000))
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(log.len(), 0);
    let g = limiter.scope_stats("global").unwrap();
    assert_eq!((g.refused, g.buckets[0].available), (1, 1_000.0));
}

#[tokio::test(start_paused = true)]
async fn usage_refunds_the_overestimate_and_charges_debt() {
    let (start, log) = (Instant::now(), Log::default());
    let b = ThrottleLayer::builder().scope(
        "global",
        ScopeLimits::new().limit(Limit::per_minute(Dimension::OutputTokens, 1_000)),
    );
    let (limiter, svc) = client(b, &log, start);
    // Reserve 800, use 100: 700 back.
    svc.clone()
        .oneshot(Call::new(0).tokens(0, 800, 100))
        .await
        .unwrap();
    let avail = limiter.scope_stats("global").unwrap().buckets[0].available;
    assert!((avail - 900.0).abs() < 1e-6, "{avail}");
    // Reserve 900, use 2,900: 2,000 of debt beyond an empty bucket.
    svc.clone()
        .oneshot(Call::new(1).tokens(0, 900, 2_900))
        .await
        .unwrap();
    let avail = limiter.scope_stats("global").unwrap().buckets[0].available;
    assert!((avail + 2_000.0).abs() < 1e-6, "{avail}");
    // The next call of 1 token waits until 2,001 tokens have refilled: 2,001 × 60 ms.
    svc.clone()
        .oneshot(Call::new(2).tokens(0, 1, 1))
        .await
        .unwrap();
    let e = log.entries();
    assert!(close(e[2].1, secs(120.06)), "{e:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_call_follows_the_failure_rule() {
    let (start, log) = (Instant::now(), Log::default());
    let b = ThrottleLayer::builder().scope(
        "global",
        ScopeLimits::new()
            .limit(Limit::per_minute(Dimension::InputTokens, 1_000))
            .limit(Limit::per_minute(Dimension::OutputTokens, 1_000)),
    );
    let (limiter, svc) = client(b, &log, start);
    let err = svc
        .oneshot(Call::new(0).tokens(300, 500, 0).failing())
        .await
        .unwrap_err();
    assert!(
        err.downcast_ref::<ThrottleError>().is_none(),
        "the provider's error passes through"
    );
    let g = limiter.scope_stats("global").unwrap();
    assert!(
        (g.buckets[0].available - 700.0).abs() < 1e-6,
        "input kept: {g:?}"
    );
    assert!(
        (g.buckets[1].available - 1_000.0).abs() < 1e-6,
        "output refunded: {g:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn many_clones_share_one_limit() {
    let (start, log) = (Instant::now(), Log::default());
    let (limiter, svc) = client(
        ThrottleLayer::builder().scope("global", rpm(10, 10)),
        &log,
        start,
    );
    // Fifty clones, as a server makes one per connection, each sending one call at once.
    let clones: Vec<Client> = (0..50).map(|_| svc.clone()).collect();
    let tasks: Vec<_> = clones
        .iter()
        .enumerate()
        .map(|(i, c)| spawn(c, Call::new(i as u32)))
        .collect();
    tokio::time::sleep(secs(1.0)).await;
    assert_eq!(log.len(), 10, "the burst, and not one more");
    tokio::time::sleep(secs(59.5)).await;
    // Then one every 6 s: 10 more in the next minute (at 6, 12, ..., 60 s).
    assert_eq!(log.len(), 20);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(limiter.scope_stats("global").unwrap().admitted, 50);
}

#[tokio::test(start_paused = true)]
async fn limits_changed_at_run_time_take_effect_for_waiting_calls() {
    let (start, log) = (Instant::now(), Log::default());
    let (limiter, svc) = client(
        ThrottleLayer::builder().scope("global", rpm(60, 1)),
        &log,
        start,
    );
    let tasks: Vec<_> = (0..5).map(|i| spawn(&svc, Call::new(i))).collect();
    tokio::time::sleep(secs(0.5)).await;
    assert_eq!(log.len(), 1);
    limiter.set_limits("global", rpm(600, 1)).unwrap();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let e = log.entries();
    // What call 0 owed carries over (0.5 of a request), then one every 100 ms.
    assert!(close(e[1].1, secs(0.55)), "{e:?}");
    assert!(close(e[4].1, secs(0.85)), "{e:?}");
    let g = limiter.scope_stats("global").unwrap();
    assert_eq!(g.buckets[0].capacity, 1);
}

#[tokio::test(start_paused = true)]
async fn pressure_and_queue_depth_show_in_stats() {
    let (start, log) = (Instant::now(), Log::default());
    let (limiter, svc) = client(
        ThrottleLayer::builder().scope("global", rpm(60, 10)),
        &log,
        start,
    );
    assert_eq!(
        limiter.scope_stats("global").unwrap().pressure,
        tollgate::Pressure::Low
    );
    let tasks: Vec<_> = (0..5).map(|i| spawn(&svc, Call::new(i))).collect();
    settle_tasks().await;
    assert_eq!(
        limiter.scope_stats("global").unwrap().pressure,
        tollgate::Pressure::Medium
    );
    let more: Vec<_> = (5..12).map(|i| spawn(&svc, Call::new(i))).collect();
    settle_tasks().await;
    let g = limiter.scope_stats("global").unwrap();
    assert_eq!((g.pressure, g.queue_depth), (tollgate::Pressure::High, 2));
    for t in tasks.into_iter().chain(more) {
        t.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn poll_ready_delegates_to_the_inner_service() {
    let (start, log) = (Instant::now(), Log::default());
    let (_, mut svc) = client(
        ThrottleLayer::builder().scope("global", rpm(60, 1)),
        &log,
        start,
    );
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    let reply = svc.call(Call::new(7)).await.unwrap();
    assert_eq!(reply.id, 7);
}

// Regression: the admission used to read the clock twice in one poll, so on the real clock every
// call that went straight through was recorded as having waited (a few hundred nanoseconds).
#[tokio::test]
async fn a_call_that_never_queued_records_no_wait() {
    let (start, log) = (Instant::now(), Log::default());
    let (limiter, svc) = client(
        ThrottleLayer::builder().scope("global", rpm(6_000, 100)),
        &log,
        start,
    );
    for i in 0..50 {
        svc.clone().oneshot(Call::new(i)).await.unwrap();
    }
    let g = limiter.scope_stats("global").unwrap();
    assert_eq!(g.admitted, 50);
    assert_eq!(
        (g.wait_p50, g.wait_p99, g.wait_max),
        (Duration::ZERO, Duration::ZERO, Duration::ZERO)
    );
}

// A service keeps the scopes of its last call for the next call with the same keys, in itself and
// in a slot its clones share: a call with other keys, and a change of limits, must not be served
// from either.
#[tokio::test(start_paused = true)]
async fn one_service_keeps_keys_and_limit_changes_apart() {
    // The same service instance for every call, as a client that keeps one does.
    keys_and_limit_changes(|svc, c| svc.call(c)).await;
}

#[tokio::test(start_paused = true)]
async fn clones_of_a_service_keep_keys_and_limit_changes_apart() {
    // A clone for every call, as `oneshot` users, tower's `Retry` and routers do.
    keys_and_limit_changes(|svc, c| svc.clone().oneshot(c)).await;
}

async fn keys_and_limit_changes<F>(send: impl Fn(&mut Client, Call) -> F)
where
    F: std::future::Future<Output = Result<Reply, BoxError>>,
{
    let (start, log) = (Instant::now(), Log::default());
    let (limiter, mut svc) = client(
        ThrottleLayer::builder()
            .scope("global", rpm(6_000, 100))
            .scope("agent:1", rpm(60, 1)),
        &log,
        start,
    );
    let mut call = |c: Call| send(&mut svc, c);
    call(Call::new(0).agent(1)).await.unwrap();
    // Agent 2 is unlimited; agent 1 has spent its burst of one and waits a second.
    call(Call::new(1).agent(2)).await.unwrap();
    call(Call::new(2).agent(1)).await.unwrap();
    let e = log.entries();
    assert_eq!(e[1].1, Duration::ZERO, "agent 2 is not agent 1: {e:?}");
    assert!(
        close(e[2].1, secs(1.0)),
        "agent 1 waits for its own limit: {e:?}"
    );
    // Ten a second from now on: the next call of agent 1 waits 0.1 s, not 1 s.
    limiter.set_limits("agent:1", rpm(600, 1)).unwrap();
    call(Call::new(3).agent(1)).await.unwrap();
    let e = log.entries();
    assert!(close(e[3].1, secs(1.1)), "the new limits apply: {e:?}");
    // Agent 2 has no scope of its own; then it gets one, with a burst of one.
    call(Call::new(4).agent(2)).await.unwrap();
    limiter.set_limits("agent:2", rpm(60, 1)).unwrap();
    call(Call::new(5).agent(2)).await.unwrap();
    call(Call::new(6).agent(2)).await.unwrap();
    let e = log.entries();
    assert!(
        close(e[6].1 - e[5].1, secs(1.0)),
        "agent 2 is limited now: {e:?}"
    );
    assert_eq!(limiter.scope_stats("agent:1").unwrap().admitted, 3);
    assert_eq!(limiter.scope_stats("agent:2").unwrap().admitted, 2);
    assert_eq!(limiter.scope_stats("global").unwrap().admitted, 7);
}

/// A call that settles without giving anything back to a bucket (its usage is its estimate in
/// every limited dimension, and no scope caps the calls in flight) does not wake a call that a
/// bucket refused: that call asks the store again only when its capacity is due.
#[tokio::test(start_paused = true)]
async fn a_settle_that_gives_nothing_back_wakes_no_refused_call() {
    let (start, log) = (Instant::now(), Log::default());
    // 6 requests a minute (one every 10 s), a burst of 2; output tokens are not limited.
    let b = ThrottleLayer::builder().scope("global", rpm(6, 2));
    let (limiter, svc) = client_with_store(b, TestStore::default(), &log, start);
    let asks = || limiter.store().asks.load(Ordering::Relaxed);
    // Two calls take the burst and answer at 5 s, using less output than they reserved (which
    // nothing counts); the third is refused until 10 s.
    let held: Vec<_> = (0..2)
        .map(|i| spawn(&svc, Call::new(i).tokens(0, 100, 10).latency(secs(5.0))))
        .collect();
    settle_tasks().await;
    let third = spawn(&svc, Call::new(2));
    settle_tasks().await;
    assert_eq!(asks(), 3);
    tokio::time::sleep_until(start + secs(9.0)).await;
    for t in held {
        t.await.unwrap().unwrap();
    }
    assert_eq!(asks(), 3, "the settles at 5 s woke the refused call");
    third.await.unwrap().unwrap();
    assert_eq!(asks(), 4);
    assert!(close(log.entries()[2].1, secs(10.0)), "{:?}", log.entries());
}

/// A call that settles with a refund to a bucket wakes a call that bucket refused: it goes at once.
#[tokio::test(start_paused = true)]
async fn a_refund_wakes_the_calls_its_bucket_refused() {
    let (start, log) = (Instant::now(), Log::default());
    // 600 output tokens a minute (10 a second).
    let limits = ScopeLimits::new().limit(Limit::per_minute(Dimension::OutputTokens, 600));
    let b = ThrottleLayer::builder().scope("global", limits);
    let (_, svc) = client_with_store(b, TestStore::default(), &log, start);
    // A call reserves all 600 tokens and gives 400 back at 5 s; the next, refused until its 400
    // tokens refill (40 s), goes at 5 s.
    let big = spawn(&svc, Call::new(0).tokens(0, 600, 200).latency(secs(5.0)));
    settle_tasks().await;
    let next = spawn(&svc, Call::new(1).tokens(0, 400, 400));
    settle_tasks().await;
    big.await.unwrap().unwrap();
    next.await.unwrap().unwrap();
    let e = log.entries();
    assert!(close(e[1].1, secs(5.0)), "{e:?}");
}

/// A cap set while calls are in flight counts them; when one of them ends (admitted before there
/// was any cap), a call the new cap refused goes at once.
#[tokio::test(start_paused = true)]
async fn a_call_admitted_before_a_cap_was_set_wakes_the_calls_it_holds_up() {
    let (start, log) = (Instant::now(), Log::default());
    let b = ThrottleLayer::builder()
        .scope("global", rpm(600, 10))
        .max_wait(secs(60.0));
    let (limiter, svc) = client(b, &log, start);
    let first = spawn(&svc, Call::new(0).latency(secs(5.0)));
    settle_tasks().await;
    limiter
        .set_limits("global", rpm(600, 10).concurrency(1))
        .expect("valid limits");
    let second = spawn(&svc, Call::new(1));
    settle_tasks().await;
    assert_eq!(log.len(), 1, "the cap counts the call in flight");
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    let e = log.entries();
    assert!(close(e[1].1, secs(5.0)), "{e:?}");
}

/// A call that can go at once is admitted when it is made: its slot is held before its future is
/// polled, and dropping that future unpolled settles it by the failure rule (the request stays
/// charged, the slot comes back), as a call dropped in flight. A call made while the slot is
/// taken is admitted only from its first poll.
#[tokio::test(start_paused = true)]
async fn a_call_admitted_at_once_holds_its_slot_until_its_future_is_dropped() {
    let layer = ThrottleLayer::builder()
        .scope("global", rpm(600, 10).concurrency(1))
        .build()
        .expect("valid limits");
    let limiter = layer.limiter().clone();
    let mut svc = tower::Layer::layer(
        &layer,
        tower::service_fn(|()| async { Ok::<_, std::convert::Infallible>(()) }),
    );
    let first = svc.ready().await.expect("ready").call(());
    let global = || limiter.scope_stats("global").expect("the scope");
    assert_eq!((global().in_flight, global().admitted), (1, 1));
    let second = svc.ready().await.expect("ready").call(());
    assert_eq!(
        (global().in_flight, global().admitted),
        (1, 1),
        "the cap holds it"
    );
    drop(first);
    assert_eq!(global().in_flight, 0, "the dropped call gave its slot back");
    let requests = global().buckets[0].available;
    assert!(
        (requests - 9.0).abs() < 0.01,
        "the dropped call keeps its request: {requests}"
    );
    second.await.expect("admitted at its first poll");
    assert_eq!((global().in_flight, global().admitted), (0, 2));
    let requests = global().buckets[0].available;
    assert!(
        (requests - 8.0).abs() < 0.01,
        "two requests charged: {requests}"
    );
}
