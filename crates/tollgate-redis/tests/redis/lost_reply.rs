//! Spend settles whose replies are lost (the proxy closes the connection after the server carried
//! the settle out): retried with the same token, they return the outcome of the settle that was
//! applied, so its alerts fire once and its cost is counted once.

use crate::proxy::Proxy;
use crate::server::Server;
use crate::spend::{read, reserve, START};
use crate::support::{install_capture, logs};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tollgate::spend::{Alerts, BudgetRef, LedgerHold};
use tollgate::{Budget, Micros, ScopeKey};
use tollgate_redis::{FailMode, RedisLedger, RedisStore};

/// Thresholds every 1,000 µ$ up to 5,000; the cap far above.
fn budget() -> Budget {
    Budget::daily(Micros::new(1_000_000))
        .thresholds([1, 2, 3, 4, 5].map(|k| Micros::new(k * 1_000)))
        .build()
        .unwrap()
}

async fn store(url: &str) -> RedisStore {
    RedisStore::builder(url)
        .fail_mode(FailMode::Closed)
        .timeout(Duration::from_secs(1))
        .probe_interval(Duration::from_millis(200))
        .spend_reservation_ttl(Duration::from_secs(60))
        .build()
        .await
        .unwrap()
}

/// What the marker key of hold `id` looks like on the wire (the settle script's second key).
fn marker(id: u64) -> String {
    format!(":L:d:{id}\r\n")
}

/// The alert lines logged for `scope`.
fn alerts_logged(scope: &str) -> Vec<String> {
    let tag = format!("spend alert: scope `{scope}`");
    logs().into_iter().filter(|l| l.contains(&tag)).collect()
}

/// Settle `k` (k = 0..=4) loses its first `k` replies, and crosses the threshold `(k + 1)` × 1,000.
/// Up to three losses, `settle_and_wait` retries by itself and returns the threshold; after four
/// it fails, the settle is kept, and its background retry fires the alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settle_whose_reply_is_lost_is_retried_and_alerts_once() {
    install_capture();
    let server = Server::start().await;
    let proxy = Proxy::start(server.port()).await;
    let s = store(&proxy.url()).await;
    let ledger = RedisLedger::new(&s);
    let (key, b) = (ScopeKey::from("lost-reply"), budget());
    let budgets = [BudgetRef {
        scope: &key,
        budget: &b,
    }];
    for k in 0..5u64 {
        let hold = reserve(&ledger, &budgets, START, 1_500).await.unwrap();
        proxy.lose_replies(&marker(hold.id()), k as usize);
        let now = Micros::new(1_000);
        let settled = ledger
            .settle_and_wait(hold, &budgets, START, now, &Alerts::default())
            .await;
        if k < 4 {
            let fired = settled.expect("retried").expect("applied once");
            let crossed: Vec<_> = fired.iter().map(|(i, a)| (*i, a.threshold)).collect();
            assert_eq!(crossed, [(0, Micros::new((k + 1) * 1_000))], "{k} lost");
        } else {
            let err = settled.expect_err("four lost replies: more than the retries");
            assert!(err.to_string().starts_with("redis failed"), "{err}");
        }
    }
    // The kept settle goes again after the probe interval, and fires its alert then.
    let start = Instant::now();
    while s.pending_writes() > 0 || alerts_logged("lost-reply").len() < 5 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            alerts_logged("lost-reply")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Every loss happened, and each threshold fired exactly once.
    assert_eq!(proxy.lost(), 1 + 2 + 3 + 4);
    let fired = alerts_logged("lost-reply");
    for k in 1..=5 {
        let at = format!("crossed the {} threshold", Micros::new(k * 1_000));
        assert_eq!(
            fired.iter().filter(|l| l.contains(&at)).count(),
            1,
            "{at}: {fired:?}"
        );
    }
    assert_eq!(fired.len(), 5, "{fired:?}");
    // Each cost counted once: 5 × 1,000, and nothing left reserved.
    let direct = RedisLedger::new(&store(&server.url()).await);
    let stats = read(&direct, budgets[0]).await;
    assert_eq!(
        (stats.spent, stats.reserved),
        (Micros::new(5_000), Micros::ZERO)
    );
}

/// One hold of the property: its estimate, its real cost, how many replies of its settle are
/// lost, and how many more settles of the same hold follow.
#[derive(Clone, Debug)]
struct Step {
    estimate: u64,
    actual: u64,
    lost: usize,
    again: usize,
}

fn step() -> impl Strategy<Value = Step> {
    (1..3_000u64, 0..=100u64, 0..=2usize, 0..=3usize).prop_map(|(estimate, pct, lost, again)| {
        Step {
            estimate,
            actual: estimate * pct / 100,
            lost,
            again,
        }
    })
}

/// For any sequence of holds, each settled once with lost replies retried and then settled again
/// and again: the spend is the sum of the real costs, nothing stays reserved, and the alerts
/// returned are each threshold the sum reaches, once, in order.
#[test]
fn settling_one_hold_again_and_again_charges_it_once() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (server, proxy, ledger, direct) = rt.block_on(async {
        let server = Server::start().await;
        let proxy = Proxy::start(server.port()).await;
        let ledger = RedisLedger::new(&store(&proxy.url()).await);
        let direct = RedisLedger::new(&store(&server.url()).await);
        (server, proxy, ledger, direct)
    });
    let case = AtomicU32::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 16,
        failure_persistence: None,
        ..Config::default()
    });
    let steps = proptest::collection::vec(step(), 1..5);
    runner
        .run(&steps, |steps| {
            let n = case.fetch_add(1, Ordering::Relaxed);
            let key = ScopeKey::from(format!("case-{n}"));
            rt.block_on(run_case(&proxy, &ledger, &direct, &key, &steps));
            Ok(())
        })
        .unwrap();
    drop(server);
}

async fn run_case(
    proxy: &Proxy,
    ledger: &RedisLedger,
    direct: &RedisLedger,
    key: &ScopeKey,
    steps: &[Step],
) {
    let b = budget();
    let budgets = [BudgetRef {
        scope: key,
        budget: &b,
    }];
    let (mut total, mut fired) = (0u64, Vec::new());
    for s in steps {
        let hold = reserve(ledger, &budgets, START, s.estimate).await.unwrap();
        let id = hold.id();
        proxy.lose_replies(&marker(id), s.lost);
        let actual = Micros::new(s.actual);
        let alerts = Alerts::default();
        let first = ledger
            .settle_and_wait(hold, &budgets, START, actual, &alerts)
            .await
            .expect("retried")
            .expect("applied");
        fired.extend(first.into_iter().map(|(_, a)| a.threshold.as_u64()));
        total += s.actual;
        for _ in 0..s.again {
            let again = LedgerHold::new(id, Micros::new(s.estimate));
            let repeat = ledger
                .settle_and_wait(again, &budgets, START, actual, &alerts)
                .await
                .expect("redis answers");
            assert_eq!(repeat, None, "a second settle of hold {id}");
        }
    }
    let stats = read(direct, budgets[0]).await;
    assert_eq!(
        (stats.spent, stats.reserved),
        (Micros::new(total), Micros::ZERO),
        "{steps:?}"
    );
    let expected: Vec<u64> = (1..=5).map(|k| k * 1_000).filter(|&t| t <= total).collect();
    assert_eq!(fired, expected, "{steps:?}");
}
