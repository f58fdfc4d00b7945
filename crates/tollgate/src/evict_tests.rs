//! Eviction of idle keys of patterns, through the real layer on tokio's paused clock: it never
//! changes an admission, and a key with a call in flight or in debt stays. Sweeps are made to run
//! after every few new keys (the layer's threshold is 1,024) so that small cases evict.

use crate::{Cost, Dimension, Limit, Limiter, ScopeKey, ScopeLimits, Scopes, ThrottleLayer};
use proptest::prelude::*;
use smallvec::smallvec;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

/// A call of agent `agent`: estimated at one request and `estimate` output tokens, it uses
/// `output` (more than the estimate: debt) and takes `latency_ms` at the provider.
#[derive(Clone, Debug)]
struct Req {
    id: u32,
    agent: u32,
    estimate: u64,
    output: u64,
    latency_ms: u64,
}

fn scopes(r: &Req) -> Scopes {
    smallvec![
        ScopeKey::GLOBAL,
        ScopeKey::from(format!("agent:{}", r.agent))
    ]
}

/// The calls in the order they reached the provider, with the virtual time since the start.
type Log = Arc<Mutex<Vec<(u32, Duration)>>>;

type Layered = ThrottleLayer<
    crate::Hooks<
        fn(&Req) -> Scopes,
        fn(&Req) -> Cost,
        fn(&u64) -> Option<Cost>,
        crate::SamePriority,
        crate::feedback::NoFeedback,
        crate::NoMeta,
    >,
>;

/// Global: 120 requests a minute (burst 10); each agent: 30 requests and 3,000 output tokens a
/// minute (bursts 2 and 1,000), two calls at once.
fn layer(idle: Duration) -> Layered {
    let rpm = |n, burst| Limit::per_minute(Dimension::Requests, n).with_burst(burst);
    ThrottleLayer::builder()
        .scope("global", ScopeLimits::new().limit(rpm(120, 10)))
        .scope(
            "agent:*",
            ScopeLimits::new()
                .limit(rpm(30, 2))
                .limit(Limit::per_minute(Dimension::OutputTokens, 3_000).with_burst(1_000))
                .concurrency(2),
        )
        .idle_eviction(idle)
        .extract_scopes(scopes as fn(&Req) -> Scopes)
        .estimate((|r: &Req| Cost::request().with_output_tokens(r.estimate)) as fn(&Req) -> Cost)
        .read_usage((|out: &u64| Some(Cost::request().with_output_tokens(*out))) as fn(&u64) -> _)
        .build()
        .expect("valid")
}

/// One call through a service of its own (so no service keeps its lane once it is done): the
/// provider logs it, sleeps its latency and reports its output.
async fn call(layer: &Layered, start: Instant, log: &Log, req: Req) -> Result<u32, String> {
    let log = log.clone();
    let provider = tower::service_fn(move |r: Req| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push((r.id, start.elapsed()));
            tokio::time::sleep(Duration::from_millis(r.latency_ms)).await;
            Ok::<_, Infallible>(r.output)
        }
    });
    let mut svc = layer.layer(provider);
    let id = req.id;
    let ready = svc.ready().await.map_err(|e| e.to_string())?;
    ready.call(req).await.map(|_| id).map_err(|e| e.to_string())
}

/// A layer that evicts keys idle for 1 s, sweeping after each new key.
fn sweeping_after_each_key() -> (Layered, Limiter) {
    let layer = layer(Duration::from_secs(1));
    let limiter = layer.limiter().clone();
    limiter.shared().registry.sweep_every(1);
    (layer, limiter)
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
}

/// Everything a run shows of its admissions: the provider's log and each call's outcome.
type Run = (Vec<(u32, Duration)>, Vec<Result<u32, String>>);

/// Makes every call at its time (ms since the start), with eviction after `idle` or none.
fn run(calls: &[(u64, Req)], idle: Option<Duration>) -> (Run, u64, Limiter) {
    paused_runtime().block_on(async {
        let layer = layer(idle.unwrap_or(Duration::from_secs(1)));
        let limiter = layer.limiter().clone();
        limiter
            .shared()
            .registry
            .sweep_every(if idle.is_some() { 2 } else { usize::MAX });
        let (start, log) = (Instant::now(), Log::default());
        let tasks: Vec<_> = calls
            .iter()
            .map(|(at, req)| {
                let (layer, log, req) = (layer.clone(), log.clone(), req.clone());
                let at = start + Duration::from_millis(*at);
                tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    call(&layer, start, &log, req).await
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.expect("no panic"));
        }
        let entries = log.lock().unwrap().clone();
        let evicted = limiter.shared().registry.evicted();
        ((entries, outcomes), evicted, limiter)
    })
}

prop_compose! {
    fn timed_call(agents: u32)(
        at in 0u64..=40_000,
        agent in 0..agents,
        estimate in 0u64..=400,
        output in 0u64..=1_200,
        latency_ms in prop_oneof![Just(0u64), 0u64..=3_000],
    ) -> (u64, Req) {
        (at, Req { id: 0, agent, estimate, output, latency_ms })
    }
}

fn calls() -> impl Strategy<Value = Vec<(u64, Req)>> {
    prop::collection::vec(timed_call(12), 1..=60).prop_map(|mut calls| {
        for (i, (_, r)) in calls.iter_mut().enumerate() {
            r.id = i as u32;
        }
        calls
    })
}

/// Eviction never changes an admission: the same calls at the same times reach the provider at
/// the same instants, with the same outcomes, whether idle keys are evicted (after 1 s, a sweep
/// after every two new keys) or never. The cases evict, or this would prove nothing.
#[test]
fn eviction_changes_no_admission() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let evicted = std::cell::Cell::new(0);
    runner
        .run(&calls(), |calls| {
            let (kept, none, _) = run(&calls, None);
            let (evicting, n, _) = run(&calls, Some(Duration::from_secs(1)));
            prop_assert_eq!(none, 0);
            evicted.set(evicted.get() + n);
            prop_assert_eq!(kept, evicting);
            Ok(())
        })
        .unwrap();
    assert!(evicted.get() >= 64, "only {} keys evicted", evicted.get());
}

/// A key with a call in flight, or in debt (its call used more than its estimate), is not
/// evicted while that lasts, however many sweeps run; once its call is done and its debt paid
/// off and the idle time has passed, it is, with its stats and its store cell. Exact keys stay.
#[test]
fn keys_in_flight_or_in_debt_stay() {
    paused_runtime().block_on(async {
        let (layer, limiter) = sweeping_after_each_key();
        let (start, log) = (Instant::now(), Log::default());
        let req = |id, agent, output, latency_ms| Req {
            id,
            agent,
            estimate: 100,
            output,
            latency_ms,
        };
        // Agent 0: in flight for 60 s. Agent 1: done at once, 900 tokens over its estimate, which
        // its bucket (3,000 a minute) pays off in 18 s (plus the 100 estimated: 20 s).
        let flight = tokio::spawn({
            let (layer, log) = (layer.clone(), log.clone());
            async move { call(&layer, start, &log, req(0, 0, 100, 60_000)).await }
        });
        tokio::task::yield_now().await;
        call(&layer, start, &log, req(1, 1, 1_000, 0))
            .await
            .expect("admitted");
        let present = |agent: u32| limiter.scope_stats(&format!("agent:{agent}")).is_some();
        // New keys every second for 50 s: a sweep after each.
        for i in 0..50 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            call(&layer, start, &log, req(100 + i, 100 + i, 0, 0))
                .await
                .expect("admitted");
            assert!(present(0), "agent 0 evicted with a call in flight at {i} s");
            if i < 20 {
                assert!(present(1), "agent 1 evicted in debt at {i} s");
            }
        }
        assert!(!present(1), "agent 1 paid off its debt 30 s ago");
        flight.await.expect("no panic").expect("admitted");
        for i in 0..3 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            call(&layer, start, &log, req(200 + i, 200 + i, 0, 0))
                .await
                .expect("admitted");
        }
        assert!(!present(0), "agent 0 is idle since its call ended");
        assert!(limiter.scope_stats("global").is_some());
        // Only the last few agents and `global` are left, in the registry and in the store.
        let kept = limiter.stats().len();
        assert!(kept <= 5, "{kept} scopes kept");
        assert_eq!(limiter.store().kept(), kept);
    });
}

/// A call that waits (here for `global`) holds its agent's key though the agent's buckets are
/// full and nothing of it is in flight: evicted, the key would come back as a second bucket
/// beside the one the waiting call is charged to.
#[test]
fn keys_of_waiting_calls_stay() {
    paused_runtime().block_on(async {
        let (layer, limiter) = sweeping_after_each_key();
        let one_a_minute = Limit::per_minute(Dimension::Requests, 1).with_burst(1);
        limiter
            .set_limits("global", ScopeLimits::new().limit(one_a_minute))
            .expect("valid");
        let (start, log) = (Instant::now(), Log::default());
        let req = |id: u32| Req {
            id,
            agent: id,
            estimate: 0,
            output: 0,
            latency_ms: 0,
        };
        call(&layer, start, &log, req(1)).await.expect("admitted");
        // Agent 2 waits a minute for `global`; other agents come every second (and wait too).
        let mut waiting = Vec::new();
        for id in 2..40 {
            let (layer, log) = (layer.clone(), log.clone());
            waiting.push(tokio::spawn(async move {
                call(&layer, start, &log, req(id)).await
            }));
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert!(
                limiter.scope_stats("agent:2").is_some(),
                "agent 2 evicted while its call waits ({id} s)"
            );
        }
        assert_eq!(log.lock().unwrap().len(), 1, "global admits one a minute");
        drop(waiting);
    });
}
