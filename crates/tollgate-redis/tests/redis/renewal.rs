//! Reservations held longer than their TTL: a concurrency slot and a spend hold of a live store
//! are renewed every third of their TTL, so a long call keeps them; once the store is dropped
//! (its process crashed) nothing renews them and they expire one TTL after the last renewal.

use crate::server::Server;
use crate::spend::{budget, reserve, CAP, START};
use crate::support::{acquire, admitted, scope, settlement, wait_of};
use std::time::Duration;
use tokio::time::Instant;
use tollgate::spend::{Alerts, BudgetRef, LedgerHold, Refused};
use tollgate::store::Decision;
use tollgate::{Cost, Micros, ScopeKey, ScopeLimits, ScopeRef};
use tollgate_redis::{FailMode, RedisLedger, RedisReservation, RedisStore};

/// Both TTLs of the stores of these tests: renewed every 333 ms.
const TTL: Duration = Duration::from_secs(1);

async fn short_lived(url: &str) -> (RedisStore, RedisLedger) {
    let store = RedisStore::builder(url)
        .fail_mode(FailMode::Closed)
        .timeout(Duration::from_secs(1))
        .reservation_ttl(TTL)
        .spend_reservation_ttl(TTL)
        .build()
        .await
        .unwrap();
    let ledger = RedisLedger::new(&store);
    (store, ledger)
}

fn capped() -> [ScopeRef; 1] {
    [scope(0, "global", ScopeLimits::new().concurrency(1))]
}

/// Another store is refused the slot (cap 1) and any money (the whole cap is held).
async fn assert_both_held(store: &RedisStore, ledger: &RedisLedger, budgets: &[BudgetRef<'_>]) {
    let d = acquire(store, &capped(), Cost::request()).await;
    assert!(wait_of(&d).is_some(), "the slot was taken over");
    let Refused { exhausted, .. } = reserve(ledger, budgets, START, 1)
        .await
        .expect_err("the hold was reclaimed");
    assert_eq!(exhausted.reserved(), Micros::new(CAP));
}

/// A server, a store `a` (with its ledger) holding the slot and the whole cap, and a store `b`.
async fn held(
    budgets: &[BudgetRef<'_>],
) -> (
    Server,
    (RedisStore, RedisLedger),
    (RedisStore, RedisLedger),
    RedisReservation,
    LedgerHold,
) {
    let server = Server::start().await;
    let (a, b) = (
        short_lived(&server.url()).await,
        short_lived(&server.url()).await,
    );
    let slot = admitted(acquire(&a.0, &capped(), Cost::request()).await);
    let hold = reserve(&a.1, budgets, START, CAP).await.unwrap();
    (server, a, b, slot, hold)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_held_longer_than_three_ttls_keeps_its_slot_and_its_hold() {
    let (key, bud) = (ScopeKey::GLOBAL, budget());
    let budgets = [BudgetRef {
        scope: &key,
        budget: &bud,
    }];
    let (_server, (a, la), (b, lb), slot, hold) = held(&budgets).await;
    let start = Instant::now();
    // Three and a half TTLs: the other store is refused both all along.
    while start.elapsed() < TTL * 7 / 2 {
        assert_both_held(&b, &lb, &budgets).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Settled: both are given back at once, and the renewal of neither brings it back.
    a.settle_and_wait(slot, settlement(Cost::request()))
        .await
        .unwrap();
    la.settle_and_wait(hold, &budgets, START, Micros::new(100), &Alerts::default())
        .await
        .unwrap();
    let _slot = admitted(acquire(&b, &capped(), Cost::request()).await);
    let _hold = reserve(&lb, &budgets, START, CAP - 100).await.unwrap();
    tokio::time::sleep(TTL / 2).await;
    let d = acquire(&a, &capped(), Cost::request()).await;
    assert!(wait_of(&d).is_some(), "b's slot is b's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_of_a_dropped_store_expire_one_ttl_after_its_last_renewal() {
    let (key, bud) = (ScopeKey::GLOBAL, budget());
    let budgets = [BudgetRef {
        scope: &key,
        budget: &bud,
    }];
    let (_server, (a, la), (b, lb), slot, hold) = held(&budgets).await;
    // Past their first TTL, renewed.
    tokio::time::sleep(TTL * 3 / 2).await;
    assert_both_held(&b, &lb, &budgets).await;
    // The process "crashes": its store goes, the reservations are never settled.
    drop((a, la));
    let dropped = Instant::now();
    let (mut slot_back, mut hold_back) = (None, None);
    while slot_back.is_none() || hold_back.is_none() {
        assert!(
            dropped.elapsed() < TTL + Duration::from_secs(1),
            "still held {:?} after the drop: slot back {slot_back:?}, hold back {hold_back:?}",
            dropped.elapsed()
        );
        if slot_back.is_none() {
            if let Decision::Admitted(r) = acquire(&b, &capped(), Cost::request()).await {
                slot_back = Some((dropped.elapsed(), r));
            }
        }
        if hold_back.is_none() {
            if let Ok(h) = reserve(&lb, &budgets, START, CAP).await {
                hold_back = Some((dropped.elapsed(), h));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "back {:?} (slot) and {:?} (hold) after the drop",
        slot_back.map(|s| s.0),
        hold_back.map(|h| h.0)
    );
    drop((slot, hold));
}
