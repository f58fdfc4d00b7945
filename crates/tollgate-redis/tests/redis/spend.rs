//! The spend ledger against a real server: caps shared by processes, alerts once, release, window
//! roll, and failing closed.

use crate::server::Server;
use crate::support::store;
use std::time::Duration;
use tollgate::ScopeKey;
use tollgate_core::{Budget, Micros};
use tollgate_redis::{FailMode, RedisStore, SpendDecision, SpendReservation};

fn daily(cap_cents: u64) -> Budget {
    Budget::daily(Micros::from_cents(cap_cents))
        .build()
        .unwrap()
}

fn team(budget: Budget) -> [(ScopeKey, Budget); 1] {
    [(ScopeKey::from("team:a"), budget)]
}

async fn reserved(s: &RedisStore, b: &[(ScopeKey, Budget)], cents: u64) -> SpendReservation {
    match s.reserve_spend(b, Micros::from_cents(cents)).await.unwrap() {
        SpendDecision::Reserved(r) => r,
        SpendDecision::Refused(why) => panic!("refused: {why:?}"),
    }
}

async fn refused(s: &RedisStore, b: &[(ScopeKey, Budget)], cents: u64) -> bool {
    matches!(
        s.reserve_spend(b, Micros::from_cents(cents)).await.unwrap(),
        SpendDecision::Refused(_)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_racing_for_one_cap_never_reserve_past_it() {
    let server = Server::start().await;
    let (a, b) = (store(&server.url()).await, store(&server.url()).await);
    let budget = team(daily(100));
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let (s, budget) = (
                if i % 2 == 0 { a.clone() } else { b.clone() },
                budget.clone(),
            );
            tokio::spawn(async move {
                match s
                    .reserve_spend(&budget, Micros::from_cents(7))
                    .await
                    .unwrap()
                {
                    SpendDecision::Reserved(r) => Some((s, r)),
                    SpendDecision::Refused(_) => None,
                }
            })
        })
        .collect();
    let mut held = Vec::new();
    for t in tasks {
        held.extend(t.await.unwrap());
    }
    assert_eq!(held.len(), 14); // ⌊100 / 7⌋
    for (s, r) in held {
        assert!(s
            .settle_spend(r, Micros::from_cents(5))
            .await
            .unwrap()
            .is_empty());
    }
    // 70 cents spent: 30 left.
    assert!(refused(&a, &budget, 31).await);
    let r = reserved(&b, &budget, 30).await;
    a.release_spend(r).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_threshold_alerts_once_whichever_process_crosses_it() {
    let server = Server::start().await;
    let (a, b) = (store(&server.url()).await, store(&server.url()).await);
    let budget = team(
        Budget::daily(Micros::from_dollars(1))
            .thresholds([50, 90].map(Micros::from_cents))
            .build()
            .unwrap(),
    );
    let r = reserved(&a, &budget, 40).await;
    assert!(a
        .settle_spend(r, Micros::from_cents(30))
        .await
        .unwrap()
        .is_empty());
    let r = reserved(&b, &budget, 40).await;
    let alerts = b.settle_spend(r, Micros::from_cents(30)).await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!((alerts[0].budget, alerts[0].threshold), (0, 0));
    assert_eq!(alerts[0].spent, Micros::from_cents(60));
    let r = reserved(&a, &budget, 40).await;
    let alerts = a.settle_spend(r, Micros::from_cents(35)).await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        (alerts[0].threshold, alerts[0].spent),
        (1, Micros::from_cents(95))
    );
    // Above every threshold: no alert again this window.
    let r = reserved(&b, &budget, 5).await;
    assert!(b
        .settle_spend(r, Micros::from_cents(5))
        .await
        .unwrap()
        .is_empty());
    assert!(refused(&a, &budget, 1).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_charged_to_two_budgets_is_refused_by_either_and_reserves_in_neither() {
    let server = Server::start().await;
    let s = store(&server.url()).await;
    let both = [
        (ScopeKey::from("global"), daily(1_000)),
        (ScopeKey::from("agent:7"), daily(50)),
    ];
    let r = reserved(&s, &both, 40).await;
    match s
        .reserve_spend(&both, Micros::from_cents(20))
        .await
        .unwrap()
    {
        SpendDecision::Refused(why) => {
            assert_eq!(why.budget, 1);
            assert_eq!(why.reserved, Micros::from_cents(40));
            assert!(!why.never_fits);
        }
        SpendDecision::Reserved(_) => panic!("the agent's budget is full"),
    }
    // The refused call reserved nothing in `global`: 960 cents are still free there.
    let global = [both[0].clone()];
    let g = reserved(&s, &global, 960).await;
    s.release_spend(g).await.unwrap();
    s.release_spend(r).await.unwrap();
    let r = reserved(&s, &both, 50).await;
    s.release_spend(r).await.unwrap();
    match s
        .reserve_spend(&both, Micros::from_cents(51))
        .await
        .unwrap()
    {
        SpendDecision::Refused(why) => assert!(why.never_fits),
        SpendDecision::Reserved(_) => panic!("above the cap"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_window_starts_from_nothing_spent() {
    let server = Server::start().await;
    let s = store(&server.url()).await;
    let budget = team(daily(100));
    let r = reserved(&s, &budget, 90).await;
    s.settle_spend(r, Micros::from_cents(90)).await.unwrap();
    assert!(refused(&s, &budget, 20).await);
    // Pretend the ledger was written in yesterday's window.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!(
        "tollgate:{{default}}:m:team:a:day:{}",
        budget[0].1.next_reset(0)
    );
    let w: u64 = redis::cmd("HGET")
        .arg(&key)
        .arg("w")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("w")
        .arg(w - 86_400)
        .query_async(&mut conn)
        .await
        .unwrap();
    let r = reserved(&s, &budget, 100).await;
    s.release_spend(r).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_fails_closed_even_when_rate_limits_fail_open() {
    let mut server = Server::start().await;
    let s = RedisStore::builder(server.url())
        .fail_mode(FailMode::Open { fraction: 1.0 })
        .timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let budget = team(daily(100));
    let r = reserved(&s, &budget, 10).await;
    server.stop();
    let start = tokio::time::Instant::now();
    assert!(s
        .reserve_spend(&budget, Micros::from_cents(1))
        .await
        .is_err());
    assert!(s.settle_spend(r, Micros::from_cents(1)).await.is_err());
    assert!(start.elapsed() < Duration::from_secs(1));
}
