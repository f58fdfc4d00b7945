//! Redis away mid-run (frozen, or killed and started again), and bad URLs at build time.

use crate::server::{free_port, Server};
use crate::support::{acquire, admitted, install_capture, logs, scope, settlement, wait_of};
use std::time::Duration;
use tokio::time::Instant;
use tollgate::store::{Acquire, Decision, Store};
use tollgate::{Cost, Dimension, Limit, ScopeLimits, ThrottleLayer};
use tollgate_core::Nanos;
use tollgate_redis::{FailMode, RedisStore};
use tower::{service_fn, ServiceExt};

const TIMEOUT: Duration = Duration::from_millis(200);
const PROBE: Duration = Duration::from_millis(200);

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what} did not happen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_fails_closed_within_the_timeout_and_no_settle_is_lost() {
    install_capture();
    let server = Server::start().await;
    let s = RedisStore::builder(server.url())
        .fail_mode(FailMode::Closed)
        .timeout(TIMEOUT)
        .probe_interval(PROBE)
        .reservation_ttl(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    let limits = ScopeLimits::new()
        .limit(Limit::new(
            Dimension::InputTokens,
            1_000,
            Duration::from_secs(3_600),
        ))
        .concurrency(2);
    let sc = [scope(0, "global", limits)];
    let tokens = |n| Cost::request().with_input_tokens(n);
    let a = admitted(acquire(&s, &sc, tokens(500)).await);
    let b = admitted(acquire(&s, &sc, tokens(500)).await);

    server.pause();
    // Both calls end while Redis is frozen: the settles (a refund of 400 each and the two slots)
    // time out and are kept.
    s.settle(a, settlement(tokens(100)));
    s.settle(b, settlement(tokens(100)));
    let call = Acquire {
        now: Nanos::ZERO,
        scopes: &sc,
        cost: tokens(1),
    };
    let start = Instant::now();
    let err = s.acquire(&call).await.expect_err("fails closed");
    assert!(
        start.elapsed() < TIMEOUT + Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    let cause: &tollgate_redis::Error = std::error::Error::source(&err)
        .and_then(|e| e.downcast_ref())
        .unwrap();
    assert!(cause.is_timeout(), "{cause}");
    assert!(s.is_degraded());
    // While the breaker is open, calls are refused at once without asking Redis.
    let start = Instant::now();
    let err = s.acquire(&call).await.expect_err("fails closed");
    assert!(start.elapsed() < Duration::from_millis(50));
    let cause: &tollgate_redis::Error = std::error::Error::source(&err)
        .and_then(|e| e.downcast_ref())
        .unwrap();
    assert!(cause.is_unavailable(), "{cause}");
    wait_until("a kept settle", || s.pending_writes() > 0).await;

    server.resume();
    let start = Instant::now();
    let r = loop {
        if let Ok(Decision::Admitted(r)) = s.acquire(&call).await {
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "redis never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    wait_until("the kept settles were retried", || s.pending_writes() == 0).await;
    assert!(!s.is_degraded());
    s.settle_and_wait(r, settlement(tokens(0))).await.unwrap();
    // Both slots and both refunds are back, each exactly once: 200 tokens used, 800 free. (A
    // settle that reached the frozen server and was retried as well must count once.)
    let _r1 = admitted(acquire(&s, &sc, tokens(400)).await);
    let _r2 = admitted(acquire(&s, &sc, tokens(400)).await);
    // The same bucket without the cap: empty now; a refund given twice would have left 200.
    let tokens_only = [scope(
        0,
        "global",
        ScopeLimits::new().limit(Limit::new(
            Dimension::InputTokens,
            1_000,
            Duration::from_secs(3_600),
        )),
    )];
    assert!(wait_of(&acquire(&s, &tokens_only, tokens(1)).await).is_some());
    assert_logged_down_and_back("WARN redis is unreachable: refusing calls");
}

/// `tracing` said Redis went away (`down`) and came back.
fn assert_logged_down_and_back(down: &str) {
    let logs = logs();
    assert!(logs.iter().any(|l| l.starts_with(down)), "{down}: {logs:?}");
    let back = "INFO redis is reachable again";
    assert!(logs.iter().any(|l| l.starts_with(back)), "{back}: {logs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_fails_open_to_the_local_share_and_the_store_reconnects() {
    install_capture();
    let mut server = Server::start().await;
    let store = RedisStore::builder(server.url())
        .fail_mode(FailMode::Open { fraction: 0.5 })
        .timeout(TIMEOUT)
        .probe_interval(PROBE)
        .build()
        .await
        .unwrap();
    // 100 a second with a burst of 10; the local share is 50 a second, burst 5.
    let layer = ThrottleLayer::builder()
        .scope(
            "global",
            ScopeLimits::new()
                .limit(Limit::new(Dimension::Requests, 100, Duration::from_secs(1)).with_burst(10)),
        )
        .build_with_store(store.clone())
        .unwrap();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|()| async {
            Ok::<_, std::convert::Infallible>(())
        }));
    let run = |d: Duration| {
        let svc = svc.clone();
        async move {
            let end = Instant::now() + d;
            let mut n = 0u64;
            while Instant::now() < end {
                svc.clone()
                    .oneshot(())
                    .await
                    .expect("fails open: every call goes");
                n += 1;
            }
            n
        }
    };
    assert!(run(Duration::from_millis(300)).await > 10);

    server.stop();
    let start = Instant::now();
    let down = run(Duration::from_secs(1)).await;
    let elapsed = start.elapsed();
    assert!(store.is_degraded());
    // Within the local share (50 a second plus a burst of 5, plus what Redis admitted before it
    // was noticed), and no call hung.
    assert!(
        (20..=50 + 5 + 10).contains(&down),
        "{down} calls while redis was away"
    );
    assert!(elapsed < Duration::from_millis(1_300), "{elapsed:?}");

    server.restart().await;
    let back = Instant::now();
    while store.is_degraded() {
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "the store did not reconnect"
        );
        run(Duration::from_millis(50)).await;
    }
    let up = run(Duration::from_secs(1)).await;
    assert!(up >= 80, "{up} calls a second after redis came back");
    assert_logged_down_and_back("WARN redis is unreachable: falling back to the local limiter");
}

#[tokio::test]
async fn a_malformed_url_is_a_clear_error() {
    let err = RedisStore::builder("http//not-redis")
        .build()
        .await
        .unwrap_err();
    assert!(err.is_invalid_url(), "{err}");
    assert!(
        err.to_string()
            .contains("`http//not-redis` is not a redis URL"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_redis_at_build_is_a_clear_error() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let start = Instant::now();
    let err = RedisStore::builder(&url)
        .timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("redis at `{url}` is unreachable")),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(1));
    // A password never shows.
    let err = RedisStore::builder(format!("redis://user:hunter2@127.0.0.1:{}", free_port()))
        .build()
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}
