//! Several OS processes on one Redis: no window admits more than the limit allows, a process
//! killed while holding concurrency slots gives them back after the reservation TTL, and
//! processes sharing a spend cap settle no more than it and fire each alert once in all.
//!
//! The children are this test binary, re-run with `--ignored --exact child_process` and their
//! settings in `TOLLGATE_REDIS_CHILD_*` variables. Each builds the real layer
//! (`ThrottleLayer::builder()…build_with_store`) on a [`Recording`] store and hammers it with many
//! tasks; the log of admissions and settles, by the server's clock, goes to a file the parent
//! checks.

use crate::server::Server;
use crate::spend;
use crate::support::{acquire, admitted, scope, store, wait_of, Event, Recording};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::Instant;
use tollgate::{Cost, Dimension, Limit, ScopeLimits, ThrottleLayer};
use tollgate_redis::{FailMode, RedisStore};
use tower::{service_fn, ServiceExt};

const MODE: &str = "TOLLGATE_REDIS_CHILD_MODE";
const URL: &str = "TOLLGATE_REDIS_CHILD_URL";
const OUT: &str = "TOLLGATE_REDIS_CHILD_OUT";

const PROCESSES: usize = 3;
const TASKS: usize = 16;
const RUN: Duration = Duration::from_millis(1_500);

/// Requests: 200 a second, burst 10.
fn request_limits() -> ScopeLimits {
    ScopeLimits::new()
        .limit(Limit::new(Dimension::Requests, 200, Duration::from_secs(1)).with_burst(10))
}

/// Input tokens: 20,000 a second, burst 2,000. Each call reserves 500 and uses 100 to 500.
fn token_limits() -> ScopeLimits {
    ScopeLimits::new()
        .limit(Limit::new(Dimension::InputTokens, 20_000, Duration::from_secs(1)).with_burst(2_000))
}

const ESTIMATE: u64 = 500;

fn used(i: u64) -> u64 {
    100 * (1 + i % 5)
}

/// Concurrency 3, a 1 s reservation TTL.
fn held_limits() -> ScopeLimits {
    ScopeLimits::new().concurrency(3)
}

const HELD_TTL: Duration = Duration::from_secs(1);

/// What a child does, by `MODE`.
pub(crate) fn child_main() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    let url = std::env::var(URL).expect("the parent sets the URL");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        match mode.as_str() {
            "requests" => hammer(&url, request_limits()).await,
            "tokens" => hammer(&url, token_limits()).await,
            "hold" => hold(&url).await,
            "spend" => spend(&url).await,
            other => panic!("unknown child mode {other}"),
        }
    });
}

/// A child's store: fails closed, with a generous timeout.
async fn child_store(url: &str) -> RedisStore {
    RedisStore::builder(url)
        .fail_mode(FailMode::Closed)
        .timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("the parent's server answers")
}

/// Many tasks calling through the layer for [`RUN`]; writes the log to `OUT`.
async fn hammer(url: &str, limits: ScopeLimits) {
    let store = child_store(url).await;
    let recording = Recording::new(store);
    let layer = ThrottleLayer::builder()
        .scope("global", limits)
        .estimate(|_: &u64| Cost::request().with_input_tokens(ESTIMATE))
        .read_usage(|used: &u64| Some(Cost::request().with_input_tokens(*used)))
        .build_with_store(recording.clone())
        .unwrap();
    let provider = service_fn(|i: u64| async move { Ok::<_, Infallible>(used(i)) });
    let svc = tower::ServiceBuilder::new().layer(layer).service(provider);
    let end = Instant::now() + RUN;
    let tasks: Vec<_> = (0..TASKS as u64)
        .map(|t| {
            let svc = svc.clone();
            tokio::spawn(async move {
                let mut i = t;
                while Instant::now() < end {
                    svc.clone().oneshot(i).await.expect("no call fails");
                    i += TASKS as u64;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    recording.drained().await;
    let mut out = String::new();
    for e in recording.log.lock().unwrap().iter() {
        match e {
            Event::Admitted { at, cost } => writeln!(out, "a {at} {}", cost.input_tokens),
            Event::Settled { at, refund } => writeln!(out, "s {at} {refund}"),
        }
        .unwrap();
    }
    std::fs::write(std::env::var(OUT).unwrap(), out).unwrap();
}

/// Takes every slot of a concurrency cap, says so on stdout with the first admission's time, and
/// waits to be killed.
async fn hold(url: &str) {
    let store = RedisStore::builder(url)
        .fail_mode(FailMode::Closed)
        .reservation_ttl(HELD_TTL)
        .build()
        .await
        .unwrap();
    let sc = [scope(0, "global", held_limits())];
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(admitted(acquire(&store, &sc, Cost::request()).await));
    }
    let first = held.iter().filter_map(|r| r.admitted_at()).min().unwrap();
    println!("held {first}");
    tokio::time::sleep(Duration::from_secs(60)).await;
    drop(held);
}

/// Calls through the real layer with one daily budget on `global` until its cap refuses it;
/// writes what this process settled and the alerts it fired (`<µ$> <alerts by threshold>...`).
async fn spend(url: &str) {
    let store = child_store(url).await;
    let alerts = Arc::new(Mutex::new([0u32; 3]));
    let settled = Arc::new(AtomicU64::new(0));
    let svc = spend::client(store, alerts.clone(), settled.clone());
    let end = Instant::now() + Duration::from_millis(800);
    let seed = 1_000 * u64::from(std::process::id() % 1_000);
    assert!(
        spend::hammer(svc, 6, seed, end).await.is_some(),
        "the cap refused nothing"
    );
    // Settles, and their alerts, are sent in the background.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let alerts = *alerts.lock().unwrap();
    let line = format!(
        "{} {} {} {}",
        settled.load(Ordering::Acquire),
        alerts[0],
        alerts[1],
        alerts[2]
    );
    std::fs::write(std::env::var(OUT).unwrap(), line).unwrap();
}

fn child(mode: &str, url: &str, out: Option<&std::path::Path>) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--ignored",
        "--exact",
        "child_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(MODE, mode)
    .env(URL, url)
    .kill_on_drop(true);
    if let Some(out) = out {
        cmd.env(OUT, out);
    }
    cmd
}

/// Runs [`PROCESSES`] hammering children on one server and returns their logs.
async fn run_children(mode: &str) -> Vec<Vec<(char, u64, u64)>> {
    let server = Server::start().await;
    run_children_on(&server, mode)
        .await
        .iter()
        .map(|log| {
            log.lines()
                .map(|l| {
                    let mut f = l.split(' ');
                    let kind = f.next().unwrap().chars().next().unwrap();
                    let at = f.next().unwrap().parse().unwrap();
                    let n = f.next().unwrap().parse().unwrap();
                    (kind, at, n)
                })
                .collect()
        })
        .collect()
}

/// Runs [`PROCESSES`] children of `mode` on `server` and returns what each wrote.
async fn run_children_on(server: &Server, mode: &str) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!(
        "tollgate-redis-{}-{mode}-{}",
        std::process::id(),
        server.port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let outs: Vec<_> = (0..PROCESSES)
        .map(|i| dir.join(format!("{i}.log")))
        .collect();
    let mut children: Vec<_> = outs
        .iter()
        .map(|o| {
            child(mode, &server.url(), Some(o))
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in &mut children {
        let status = tokio::time::timeout(Duration::from_secs(30), c.wait())
            .await
            .expect("a child finishes")
            .unwrap();
        assert!(status.success(), "a child failed: {status}");
    }
    let logs = outs
        .iter()
        .map(|o| std::fs::read_to_string(o).unwrap())
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    logs
}

/// Units admitted count up, units refunded down.
fn signed(e: &(char, u64, u64)) -> i64 {
    if e.0 == 'a' {
        e.2 as i64
    } else {
        -(e.2 as i64)
    }
}

/// The most units any window of `window_us` starting at an admission saw admitted, minus those
/// refunded inside it: `events` are `('a', at, units)` and `('s', at, refund)`.
fn busiest_window(events: &[(char, u64, u64)], window_us: u64) -> i64 {
    let mut sorted = events.to_vec();
    sorted.sort_by_key(|e| e.1);
    let mut best = i64::MIN;
    for (i, start) in sorted.iter().enumerate().filter(|(_, e)| e.0 == 'a') {
        let net: i64 = sorted[i..]
            .iter()
            .take_while(|e| e.1 <= start.1 + window_us)
            .map(signed)
            .sum();
        best = best.max(net);
    }
    best
}

fn check_windows(logs: &[Vec<(char, u64, u64)>], rate_per_s: f64, burst: u64) {
    for (i, log) in logs.iter().enumerate() {
        assert!(
            log.iter().any(|e| e.0 == 'a'),
            "process {i} was never admitted"
        );
    }
    let all: Vec<_> = logs.concat();
    let first = all.iter().map(|e| e.1).min().unwrap();
    let last = all.iter().map(|e| e.1).max().unwrap();
    for window_ms in [20u64, 100, 500, 1_000] {
        let busiest = busiest_window(&all, window_ms * 1_000);
        let allowed = rate_per_s * window_ms as f64 / 1_000.0 + burst as f64;
        assert!(
            busiest as f64 <= allowed + 1e-6,
            "{busiest} units in a {window_ms} ms window, at most {allowed} allowed"
        );
    }
    // The processes kept the limit busy: at least half of what it allowed over the run.
    let net: i64 = all.iter().map(signed).sum();
    let span_s = (last - first) as f64 / 1e6;
    assert!(
        net as f64 >= 0.5 * rate_per_s * span_s,
        "only {net} units in {span_s} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_a_request_limit_never_exceed_it_in_any_window() {
    let logs = run_children("requests").await;
    // Requests are never refunded; count each admission as one.
    let logs: Vec<Vec<_>> = logs
        .into_iter()
        .map(|l| {
            l.into_iter()
                .filter(|e| e.0 == 'a')
                .map(|e| ('a', e.1, 1))
                .collect()
        })
        .collect();
    check_windows(&logs, 200.0, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_a_token_limit_with_reconcile_never_exceed_it_in_any_window() {
    let logs = run_children("tokens").await;
    // Every call was settled, and refunds were made (the estimate overcharges 0 to 400).
    for l in &logs {
        let admitted = l.iter().filter(|e| e.0 == 'a').count();
        let settled = l.iter().filter(|e| e.0 == 's').count();
        assert_eq!(admitted, settled);
        assert!(l.iter().any(|e| e.0 == 's' && e.2 > 0));
    }
    check_windows(&logs, 20_000.0, 2_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_of_a_killed_process_come_back_after_the_ttl() {
    let server = Server::start().await;
    let mut holder = child("hold", &server.url(), None)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    let held_at: u64 = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the child holds its slots")
            .unwrap()
            .expect("the child prints `held`");
        // libtest prints `test child_process ... ` on the same line.
        if let Some((_, at)) = line.split_once("held ") {
            break at.trim().parse().unwrap();
        }
    };
    let s = store(&server.url()).await;
    let sc = [scope(0, "global", held_limits())];
    assert!(wait_of(&acquire(&s, &sc, Cost::request()).await).is_some());
    holder.kill().await.unwrap();
    let killed = Instant::now();
    let r = loop {
        if let tollgate::store::Decision::Admitted(r) = acquire(&s, &sc, Cost::request()).await {
            break r;
        }
        assert!(
            killed.elapsed() < HELD_TTL + Duration::from_secs(2),
            "the slots never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Not before the TTL of the child's first reservation had passed.
    let at = r.admitted_at().unwrap();
    assert!(
        at >= held_at + HELD_TTL.as_micros() as u64,
        "{at} < {held_at} + TTL"
    );
    // All three came back.
    admitted(acquire(&s, &sc, Cost::request()).await);
    admitted(acquire(&s, &sc, Cost::request()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_a_spend_cap_never_settle_more_than_it_and_alert_once() {
    let server = Server::start().await;
    let outs = run_children_on(&server, "spend").await;
    let (mut settled, mut alerts) = (0, [0u32; 3]);
    for out in &outs {
        let f: Vec<u64> = out.split(' ').map(|n| n.parse().unwrap()).collect();
        settled += f[0];
        for (a, n) in alerts.iter_mut().zip(&f[1..]) {
            *a += *n as u32;
        }
    }
    assert!(settled <= spend::CAP, "{settled} µ$ settled: {outs:?}");
    assert!(
        settled > spend::CAP - spend::ESTIMATE,
        "{settled} µ$ settled"
    );
    assert_eq!(alerts, [1, 1, 1], "{outs:?}");
    // Redis counted each process's settles once.
    let ledger = tollgate_redis::RedisLedger::new(&store(&server.url()).await);
    let (key, b) = (tollgate::ScopeKey::GLOBAL, spend::budget());
    let b = tollgate::spend::BudgetRef {
        scope: &key,
        budget: &b,
    };
    let stats = spend::read(&ledger, b).await;
    assert_eq!(stats.spent, tollgate::Micros::new(settled));
    assert_eq!(stats.reserved, tollgate::Micros::ZERO);
    eprintln!("settled {settled} µ$ by the processes: {outs:?}");
}
