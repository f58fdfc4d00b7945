//! Spend caps in Redis ([`RedisLedger`]): several layers, each on its own `RedisStore`, sharing
//! one budget; alerts once across them; idempotent settles; reclaim after the TTL; fail closed.

use crate::server::Server;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tollgate::spend::{Alerts, BudgetRef, Ledger, LedgerHold, OnCap, Refused, Reserve};
use tollgate::BoxError;
use tollgate::{
    Budget, BudgetExhausted, Cost, Dimension, Limit, Micros, Price, PriceTable, ScopeKey,
    ScopeLimits, ThrottleError, ThrottleLayer, UnknownModel,
};
use tollgate_redis::{FailMode, RedisLedger, RedisStore};
use tower::{service_fn, ServiceExt};

/// 2026-01-01T10:00:00Z: every layer's wall clock, so that no test crosses a day boundary.
pub(crate) const START: u64 = 1_767_261_600;
/// 100 input tokens at 1 µ$ and up to 200 output tokens at 2 µ$.
pub(crate) const ESTIMATE: u64 = 500;
pub(crate) const CAP: u64 = 10_000;
pub(crate) const THRESHOLDS: [u64; 3] = [2_000, 5_000, 8_000];

/// 1 µ$ per input token, 2 µ$ per output token.
fn prices() -> PriceTable {
    PriceTable::new(UnknownModel::Default(Price::from_micros(
        1_000_000, 2_000_000, 0, 0,
    )))
}

pub(crate) fn budget() -> Budget {
    Budget::daily(Micros::new(CAP))
        .thresholds(THRESHOLDS.map(Micros::new))
        .build()
        .unwrap()
}

/// The real cost of call `i`: 100 input tokens and `i % 201` output tokens, at most the estimate.
pub(crate) fn cost_of(i: u64) -> u64 {
    100 + 2 * (i % 201)
}

/// A client of the real layer on `store` with one daily budget on `global`; the alerts it fires
/// are counted by threshold index in `alerts`, and the real cost of its calls added to `spent`.
pub(crate) type Client = tower::util::BoxCloneService<u64, u64, BoxError>;

pub(crate) fn client(
    store: RedisStore,
    alerts: Arc<Mutex<[u32; 3]>>,
    spent: Arc<AtomicU64>,
) -> Client {
    let layer = ThrottleLayer::builder()
        .scope(
            "global",
            ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, 1_000_000)),
        )
        .prices(prices())
        .budget("global", budget())
        .on_cap(OnCap::Refuse)
        .wall_clock(START * 1000)
        .on_alert(move |a| alerts.lock().unwrap()[a.alert.index] += 1)
        .estimate(|_: &u64| {
            Cost::request()
                .with_input_tokens(100)
                .with_output_tokens(200)
        })
        .read_usage(|out: &u64| {
            Some(
                Cost::request()
                    .with_input_tokens(100)
                    .with_output_tokens(*out),
            )
        })
        .build_with_store(store)
        .unwrap();
    let provider = service_fn(move |i: u64| {
        let spent = spent.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            spent.fetch_add(cost_of(i), Ordering::AcqRel);
            Ok::<_, Infallible>(i % 201)
        }
    });
    Client::new(tower::ServiceBuilder::new().layer(layer).service(provider))
}

pub(crate) fn throttle_error(e: BoxError) -> ThrottleError {
    *e.downcast::<ThrottleError>().expect("a ThrottleError")
}

/// Calls through `svc` from `tasks` tasks until `end`; the first budget refusal seen, if any.
pub(crate) async fn hammer(
    svc: Client,
    tasks: u64,
    first: u64,
    end: Instant,
) -> Option<(ScopeKey, BudgetExhausted)> {
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let svc = svc.clone();
            tokio::spawn(async move {
                let mut refused = None;
                let mut i = first + t;
                while Instant::now() < end {
                    match svc.clone().oneshot(i).await {
                        Ok(_) => {}
                        Err(e) => {
                            let e = throttle_error(e);
                            let exhausted = *e.budget_exhausted().expect("only the cap refuses");
                            refused.get_or_insert((e.scope().unwrap().clone(), exhausted));
                            tokio::time::sleep(Duration::from_millis(3)).await;
                        }
                    }
                    i += tasks;
                }
                refused
            })
        })
        .collect();
    let mut refused = None;
    for h in handles {
        let r = h.await.unwrap();
        refused = refused.or(r);
    }
    refused
}

pub(crate) async fn reserve(
    ledger: &RedisLedger,
    budgets: &[BudgetRef<'_>],
    now: u64,
    estimate: u64,
) -> Result<LedgerHold, Refused> {
    match ledger.reserve(budgets, now, Micros::new(estimate)) {
        Reserve::Done(r) => r,
        Reserve::Pending(f) => f.await.expect("redis answers"),
    }
}

/// The budget's numbers as Redis has them now: a reservation of nothing reads them.
pub(crate) async fn read(ledger: &RedisLedger, b: BudgetRef<'_>) -> tollgate::spend::SpendStats {
    read_at(ledger, b, START).await
}

/// Settles through the ledger and waits: the alerts, or `None` when the hold was not live.
async fn settle(
    ledger: &RedisLedger,
    hold: LedgerHold,
    budgets: &[BudgetRef<'_>],
    actual: u64,
) -> Option<Vec<(usize, tollgate::Alert)>> {
    settle_at(ledger, hold, budgets, START, Micros::new(actual)).await
}

async fn ledger_store(url: &str, ttl: Duration) -> RedisStore {
    RedisStore::builder(url)
        .fail_mode(FailMode::Closed)
        .timeout(Duration::from_secs(1))
        .spend_reservation_ttl(ttl)
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_sharing_a_budget_never_settle_more_than_the_cap_and_alert_once() {
    let server = Server::start().await;
    let alerts = Arc::new(Mutex::new([0u32; 3]));
    let spent = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..3 {
        let store = ledger_store(&server.url(), Duration::from_secs(60)).await;
        clients.push(client(store, alerts.clone(), spent.clone()));
    }
    let end = Instant::now() + Duration::from_millis(800);
    let runs: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(n, c)| {
            let c = c.clone();
            tokio::spawn(async move { hammer(c, 6, 1_000 * n as u64, end).await })
        })
        .collect();
    let mut refusals = Vec::new();
    for r in runs {
        refusals.push(r.await.unwrap().expect("every layer met the cap"));
    }
    // The settles and their alerts are sent in the background.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let settled = spent.load(Ordering::Acquire);
    assert!(settled <= CAP, "{settled} µ$ settled, cap {CAP}");
    // The cap was used up (no estimate fits any more), so the check above was not vacuous.
    assert!(settled > CAP - ESTIMATE, "only {settled} µ$ settled");
    // Redis counted every call's real cost once, and holds nothing any more.
    let other = RedisLedger::new(&ledger_store(&server.url(), Duration::from_secs(60)).await);
    let (key, b) = (ScopeKey::GLOBAL, budget());
    let stats = read(
        &other,
        BudgetRef {
            scope: &key,
            budget: &b,
        },
    )
    .await;
    assert_eq!(
        (stats.spent, stats.reserved),
        (Micros::new(settled), Micros::ZERO)
    );
    for (scope, e) in &refusals {
        assert_eq!(scope.as_str(), "global");
        assert_eq!(
            (e.cap(), e.estimate()),
            (Micros::new(CAP), Micros::new(ESTIMATE))
        );
        assert!(e.spent() <= Micros::new(CAP), "{e}");
        assert!(
            e.spent().as_u64() + e.reserved().as_u64() + ESTIMATE > CAP,
            "{e}"
        );
        assert_eq!(e.resets_at(), START - START % 86_400 + 86_400);
    }
    // Each threshold fired exactly once across the three layers.
    assert_eq!(*alerts.lock().unwrap(), [1, 1, 1]);
    eprintln!("settled {settled} µ$; refusals {refusals:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_settle_changes_nothing() {
    let server = Server::start().await;
    let store = ledger_store(&server.url(), Duration::from_secs(60)).await;
    let (ledger, other) = (RedisLedger::new(&store), RedisLedger::new(&store));
    let (key, b) = (ScopeKey::from("team:a"), budget());
    let budgets = [BudgetRef {
        scope: &key,
        budget: &b,
    }];
    let hold = reserve(&ledger, &budgets, START, 6_000).await.unwrap();
    let id = hold.id();
    let fired = settle(&ledger, hold, &budgets, 4_000)
        .await
        .expect("the reservation was live");
    let crossed: Vec<_> = fired.iter().map(|(i, a)| (*i, a.threshold)).collect();
    assert_eq!(crossed, [(0, Micros::new(2_000))]);
    // The same settle again, and a release of it: nothing changes, nothing fires.
    for _ in 0..2 {
        let again = LedgerHold::new(id, Micros::new(6_000));
        assert_eq!(settle(&ledger, again, &budgets, 4_000).await, None);
    }
    ledger.release(LedgerHold::new(id, Micros::new(6_000)), &budgets);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // 4,000 spent and nothing reserved: 6,000 fits exactly (it would not after a second
    // settle), and then not one µ$ more.
    let _h = reserve(&other, &budgets, START + 60, 6_000).await.unwrap();
    let refused = reserve(&other, &budgets, START + 60, 1).await.unwrap_err();
    assert_eq!(refused.index, 0);
    let e = refused.exhausted;
    assert_eq!(
        (e.spent(), e.reserved(), e.cap()),
        (Micros::new(4_000), Micros::new(6_000), Micros::new(CAP))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_never_settled_comes_back_after_the_ttl() {
    const TTL: Duration = Duration::from_secs(1);
    let server = Server::start().await;
    let store = ledger_store(&server.url(), TTL).await;
    let ledger = RedisLedger::new(&store);
    let (key, b) = (ScopeKey::GLOBAL, budget());
    let budgets = [BudgetRef {
        scope: &key,
        budget: &b,
    }];
    // A holder that never settles (its process died: its store, which renewed the hold, is
    // gone): the whole cap is held.
    let dying = RedisLedger::new(&ledger_store(&server.url(), TTL).await);
    let lost = reserve(&dying, &budgets, START, CAP).await.unwrap();
    let held_at = Instant::now();
    drop(dying);
    let refused = reserve(&ledger, &budgets, START, 1).await.unwrap_err();
    assert_eq!(refused.exhausted.reserved(), Micros::new(CAP));
    let back = loop {
        if let Ok(h) = reserve(&ledger, &budgets, START, CAP).await {
            break h;
        }
        assert!(
            held_at.elapsed() < TTL + Duration::from_secs(2),
            "never reclaimed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let waited = held_at.elapsed();
    assert!(waited >= TTL - Duration::from_millis(50), "{waited:?}");
    // The reclaimed call was still running: its settle, arriving late, counts its real cost (its
    // estimate came back at the reclaim), once.
    let lost_id = lost.id();
    settle(&ledger, lost, &budgets, 300).await.expect("counted");
    let again = tollgate::spend::LedgerHold::new(lost_id, Micros::new(CAP));
    assert_eq!(settle(&ledger, again, &budgets, 300).await, None, "once");
    settle(&ledger, back, &budgets, 100).await.expect("live");
    let stats = ledger.spent(budgets[0], START).unwrap();
    assert_eq!(
        (stats.spent, stats.reserved),
        (Micros::new(400), Micros::ZERO)
    );
    eprintln!("reclaimed after {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_caps_fail_closed_while_redis_is_away_even_when_limits_fail_open() {
    let mut server = Server::start().await;
    let store = RedisStore::builder(server.url())
        .fail_mode(FailMode::Open { fraction: 1.0 })
        .timeout(Duration::from_millis(200))
        .probe_interval(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let svc = client(store.clone(), Arc::default(), Arc::default());
    svc.clone().oneshot(1).await.expect("redis is up");

    server.stop();
    for i in 0..3 {
        let start = Instant::now();
        let e = throttle_error(svc.clone().oneshot(i).await.unwrap_err());
        assert!(e.is_store(), "{e}");
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "{:?}",
            start.elapsed()
        );
    }
    assert!(store.is_degraded());

    server.restart().await;
    let back = Instant::now();
    while svc.clone().oneshot(7).await.is_err() {
        assert!(back.elapsed() < Duration::from_secs(5), "never went again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!store.is_degraded());
}

/// A small deterministic generator (xorshift64) for the sequence below.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_makes_the_same_decisions_as_budget_state() {
    use tollgate_core::{release_budgets, reserve_budgets, settle_budgets, BudgetState};
    let server = Server::start().await;
    let ledger = RedisLedger::new(&ledger_store(&server.url(), Duration::from_secs(60)).await);
    let keys = [ScopeKey::GLOBAL, ScopeKey::from("agent:1")];
    let budgets = [
        budget(),
        Budget::hourly(Micros::new(3_000))
            .threshold(Micros::new(1_000))
            .build()
            .unwrap(),
    ];
    let refs: Vec<BudgetRef<'_>> = keys
        .iter()
        .zip(&budgets)
        .map(|(scope, budget)| BudgetRef { scope, budget })
        .collect();
    // tollgate-core's arithmetic, as MemoryLedger applies it.
    let mut model: Vec<BudgetState> = budgets.iter().map(|b| BudgetState::new(b, START)).collect();
    let mut held = Vec::new();
    let (mut rng, mut t) = (Rng(0x9e37_79b9_7f4a_7c15), START);
    let (mut refused, mut alerts) = (0, 0);
    for _ in 0..400 {
        // Up to 25 minutes between steps: hours roll often, days a few times.
        t += rng.below(1_500);
        let n = 1 + rng.below(2) as usize;
        match rng.below(10) {
            0..=4 => {
                let est = rng.below(2_500);
                let (m0, m1) = model.split_at_mut(1);
                let mut pairs = vec![(&budgets[0], &mut m0[0]), (&budgets[1], &mut m1[0])];
                pairs.truncate(n);
                let want = reserve_budgets(t, Micros::new(est), &mut pairs);
                let got = reserve(&ledger, &refs[..n], t, est).await;
                match (want, got) {
                    (Ok(r), Ok(hold)) => held.push((r, hold, n)),
                    (Err((index, exhausted)), Err(r)) => {
                        assert_eq!(r, Refused { index, exhausted }, "at {t}");
                        refused += 1;
                    }
                    (want, got) => panic!("at {t}: {want:?} but {got:?}"),
                }
            }
            5..=8 if !held.is_empty() => {
                let (r, hold, n) = held.swap_remove(rng.below(held.len() as u64) as usize);
                let (m0, m1) = model.split_at_mut(1);
                let mut pairs = vec![(&budgets[0], &mut m0[0]), (&budgets[1], &mut m1[0])];
                pairs.truncate(n);
                if rng.below(4) == 0 {
                    release_budgets(r, &mut pairs);
                    ledger.release(hold, &refs[..n]);
                    let want = model[0].reserved;
                    let start = Instant::now();
                    while read_at(&ledger, refs[0], t).await.reserved != want {
                        assert!(start.elapsed() < Duration::from_secs(2), "no release");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                } else {
                    // Some calls cost more than their estimate.
                    let actual = Micros::new(rng.below(r.estimate().as_u64() * 6 / 5 + 1));
                    let want = settle_budgets(t, r, actual, &mut pairs);
                    alerts += want.len();
                    let got = settle_at(&ledger, hold, &refs[..n], t, actual).await;
                    assert_eq!(got, Some(want), "at {t}");
                }
            }
            _ => {}
        }
        for (i, b) in refs.iter().enumerate() {
            let mut m = model[i];
            m.roll(b.budget, t);
            // Before its first reply the ledger knows nothing of a budget: then nothing happened.
            let got = ledger
                .spent(*b, t)
                .map(|g| (g.spent, g.reserved, g.resets_at));
            let fresh = (Micros::ZERO, Micros::ZERO);
            assert_eq!(
                got.unwrap_or((fresh.0, fresh.1, m.resets_at(b.budget))),
                (m.spent, m.reserved, m.resets_at(b.budget)),
                "budget {i} at {t}"
            );
        }
    }
    eprintln!(
        "{refused} refusals, {alerts} alerts over {} h",
        (t - START) / 3_600
    );
    assert!(
        refused > 10 && alerts > 10,
        "{refused} refusals, {alerts} alerts"
    );
}

async fn settle_at(
    ledger: &RedisLedger,
    hold: LedgerHold,
    budgets: &[BudgetRef<'_>],
    t: u64,
    actual: Micros,
) -> Option<Vec<(usize, tollgate::Alert)>> {
    ledger
        .settle_and_wait(hold, budgets, t, actual, &Alerts::default())
        .await
        .expect("redis answers")
}

/// The budget's numbers in Redis at `t`: a reservation of nothing reads them.
async fn read_at(ledger: &RedisLedger, b: BudgetRef<'_>, t: u64) -> tollgate::spend::SpendStats {
    if let Ok(hold) = reserve(ledger, &[b], t, 0).await {
        settle_at(ledger, hold, &[b], t, Micros::ZERO).await;
    }
    ledger.spent(b, t).expect("seen")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_whose_call_was_dropped_is_given_back() {
    let server = Server::start().await;
    let ledger = RedisLedger::new(&ledger_store(&server.url(), Duration::from_secs(60)).await);
    let (key, b) = (ScopeKey::GLOBAL, budget());
    let b = BudgetRef {
        scope: &key,
        budget: &b,
    };
    // The call is dropped before Redis answers: the reservation it made is released.
    drop(ledger.reserve(&[b], START, Micros::new(CAP)));
    // Watch Redis itself (a loaded machine may take a while): the reservation is made (it takes
    // id 1), then given back (no reservation is live).
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let id: Option<u64> = redis::cmd("GET")
            .arg("tollgate:{default}:L:id")
            .query_async(&mut conn)
            .await
            .unwrap();
        let live: u64 = redis::cmd("ZCARD")
            .arg("tollgate:{default}:L:live")
            .query_async(&mut conn)
            .await
            .unwrap();
        if id == Some(1) && live == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "id {id:?}, live {live}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The whole cap fits again, right after it.
    let hold = reserve(&ledger, &[b], START, CAP).await.unwrap();
    assert_eq!(hold.id(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_answered_but_never_taken_is_given_back() {
    let server = Server::start().await;
    let ledger = RedisLedger::new(&ledger_store(&server.url(), Duration::from_secs(60)).await);
    let (key, b) = (ScopeKey::GLOBAL, budget());
    let b = BudgetRef {
        scope: &key,
        budget: &b,
    };
    // Redis answers while the call still waits for it, and the call goes away (a timeout around
    // it) before it looks at the answer.
    let pending = ledger.reserve(&[b], START, Micros::new(CAP));
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(pending);
    let start = Instant::now();
    loop {
        if reserve(&ledger, &[b], START, CAP).await.is_ok() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "the answered hold leaked"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
