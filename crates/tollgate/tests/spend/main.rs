//! Money through the layer on tokio's paused clock: caps, windows at a UTC offset, hold and
//! refuse, manual pause, alerts, the call log and a restart that remembers the day's spend.

#[path = "../support/mod.rs"]
mod support;

use proptest::prelude::*;
use std::io::Write;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use support::*;
use tokio::time::Instant;
use tollgate::spend::{BudgetAlert, CallLog, OnCap, Replay};
use tollgate::{
    Budget, Micros, Price, PriceTable, ThrottleBuilder, ThrottleError, ThrottleLayer, UnknownModel,
    WindowClock,
};
use tower::ServiceExt;

/// 2026-01-01T10:00:00Z, in Unix seconds.
const START: u64 = 1_767_261_600;
/// The next day boundary at UTC−8 after `START`: 2026-01-02T08:00:00Z, 22 h later.
const RESET: u64 = 1_767_340_800;

/// 1 µ$ per input token, 2 µ$ per output token.
fn prices() -> PriceTable {
    PriceTable::new(UnknownModel::Default(Price::from_micros(
        1_000_000, 2_000_000, 0, 0,
    )))
}

fn daily(cap_micros: u64, thresholds: &[u64]) -> Budget {
    Budget::daily(Micros::new(cap_micros))
        .clock(WindowClock::from_hours_minutes(-8, 0).unwrap())
        .thresholds(thresholds.iter().map(|&t| Micros::new(t)))
        .build()
        .unwrap()
}

fn money(b: ThrottleBuilder) -> ThrottleBuilder {
    b.prices(prices()).wall_clock(START * 1000)
}

/// A call estimated at 100 + 2·200 = 500 µ$ that really costs `100 + 2·output`.
fn call(id: u32, agent: u32, output: u64) -> Call {
    Call::new(id).agent(agent).tokens(100, 200, output)
}

fn err(e: tollgate::BoxError) -> ThrottleError {
    *e.downcast::<ThrottleError>().expect("a ThrottleError")
}

fn spawn(svc: &Client, c: Call) -> tokio::task::JoinHandle<Result<Reply, tollgate::BoxError>> {
    let svc = svc.clone();
    tokio::spawn(async move { svc.oneshot(c).await })
}

async fn run_tasks() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn refuse_mode_returns_the_typed_error_with_the_reset_time() {
    let log = Log::default();
    let (limiter, svc) = client(
        money(ThrottleLayer::builder()).budget("global", daily(1_000, &[])),
        &log,
        Instant::now(),
    );
    svc.clone().oneshot(call(1, 0, 200)).await.unwrap();
    svc.clone().oneshot(call(2, 0, 200)).await.unwrap();
    let e = err(svc.clone().oneshot(call(3, 0, 200)).await.unwrap_err());
    let exhausted = e.budget_exhausted().expect("a budget error");
    assert_eq!(e.scope().unwrap().as_str(), "global");
    assert_eq!(exhausted.spent(), Micros::new(1_000));
    assert_eq!(exhausted.cap(), Micros::new(1_000));
    assert_eq!(exhausted.resets_at(), RESET);
    assert!(!exhausted.never_fits());
    assert_eq!(
        log.ids(),
        [1, 2],
        "the refused call never reached the provider"
    );
    let spend = limiter.spend("global").unwrap();
    assert_eq!(
        (spend.spent, spend.reserved, spend.resets_at),
        (Micros::new(1_000), Micros::ZERO, RESET)
    );
}

#[tokio::test(start_paused = true)]
async fn the_window_resets_at_the_configured_utc_offset() {
    let log = Log::default();
    let (limiter, svc) = client(
        money(ThrottleLayer::builder()).budget("global", daily(500, &[])),
        &log,
        Instant::now(),
    );
    svc.clone().oneshot(call(1, 0, 200)).await.unwrap();
    // One second before 08:00 UTC (midnight at UTC−8): still the same day.
    tokio::time::advance(Duration::from_secs(RESET - START - 1)).await;
    let e = err(svc.clone().oneshot(call(2, 0, 200)).await.unwrap_err());
    assert_eq!(e.budget_exhausted().unwrap().resets_at(), RESET);
    tokio::time::advance(Duration::from_secs(1)).await;
    svc.clone().oneshot(call(3, 0, 50)).await.unwrap();
    let spend = limiter.spend("global").unwrap();
    assert_eq!(
        spend.spent,
        Micros::new(200),
        "the new day holds only call 3"
    );
    assert_eq!(spend.resets_at, RESET + 86_400);
}

#[tokio::test(start_paused = true)]
async fn hold_mode_resumes_at_the_reset_while_other_agents_go_on() {
    let log = Log::default();
    let start = Instant::now();
    let (limiter, svc) = client(
        money(ThrottleLayer::builder())
            .budget("agent:*", daily(1_000, &[]))
            .on_cap(OnCap::Hold),
        &log,
        start,
    );
    svc.clone().oneshot(call(1, 0, 200)).await.unwrap();
    svc.clone().oneshot(call(2, 0, 200)).await.unwrap();
    let held = spawn(&svc, call(3, 0, 200));
    run_tasks().await;
    // Agent 1 has its own budget and is not held up.
    svc.clone().oneshot(call(4, 1, 200)).await.unwrap();
    assert_eq!(limiter.spend("agent:1").unwrap().spent, Micros::new(500));
    tokio::time::advance(Duration::from_secs(RESET - START) - Duration::from_millis(1)).await;
    run_tasks().await;
    assert!(!held.is_finished(), "held until the window resets");
    tokio::time::advance(Duration::from_millis(1)).await;
    held.await.unwrap().unwrap();
    let arrivals = log.entries();
    assert_eq!(
        arrivals.last().unwrap(),
        &(3, Duration::from_secs(RESET - START))
    );
    // The held call is the first of the new day.
    assert_eq!(limiter.spend("agent:0").unwrap().spent, Micros::new(500));
    assert_eq!(limiter.spend("agent:1").unwrap().spent, Micros::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_held_call_goes_when_a_call_in_flight_settles_below_its_estimate() {
    let log = Log::default();
    let (_, svc) = client(
        money(ThrottleLayer::builder())
            .budget("global", daily(1_200, &[]))
            .on_cap(OnCap::Hold),
        &log,
        Instant::now(),
    );
    // Two calls in flight hold 1,000 µ$ of 1,200, so a third does not fit; the first really
    // costs 100 + 2·10 = 120, which leaves room for it.
    let a = spawn(&svc, call(1, 0, 10).latency(Duration::from_secs(1)));
    let b = spawn(&svc, call(2, 0, 200).latency(Duration::from_secs(5)));
    run_tasks().await;
    let c = spawn(&svc, call(3, 0, 200));
    run_tasks().await;
    assert_eq!(log.ids(), [1, 2]);
    a.await.unwrap().unwrap();
    c.await.unwrap().unwrap();
    assert_eq!(log.entries()[2], (3, Duration::from_secs(1)));
    b.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_call_estimated_above_the_cap_fails_at_once_even_in_hold_mode() {
    let log = Log::default();
    let (_, svc) = client(
        money(ThrottleLayer::builder())
            .budget("global", daily(400, &[]))
            .on_cap(OnCap::Hold),
        &log,
        Instant::now(),
    );
    let e = err(svc.oneshot(call(1, 0, 0)).await.unwrap_err());
    assert!(e.budget_exhausted().unwrap().never_fits());
    assert!(log.is_empty());
}

#[tokio::test(start_paused = true)]
async fn max_wait_bounds_a_hold() {
    let log = Log::default();
    let (limiter, svc) = client(
        money(ThrottleLayer::builder())
            .budget("global", daily(500, &[]))
            .on_cap(OnCap::Hold)
            .max_wait(Duration::from_secs(60)),
        &log,
        Instant::now(),
    );
    svc.clone().oneshot(call(1, 0, 200)).await.unwrap();
    let t = Instant::now();
    let e = err(svc.clone().oneshot(call(2, 0, 200)).await.unwrap_err());
    assert_eq!(t.elapsed(), Duration::from_secs(60));
    assert!(e.budget_exhausted().is_some());
    assert_eq!(limiter.spend("global").unwrap().reserved, Micros::ZERO);
}

#[tokio::test(start_paused = true)]
async fn manual_pause_refuses_or_holds_until_resume() {
    let log = Log::default();
    let (limiter, svc) = client(
        money(ThrottleLayer::builder()).on_cap(OnCap::Hold),
        &log,
        Instant::now(),
    );
    assert!(limiter.pause("agent:0"));
    assert!(limiter.is_paused("agent:0"));
    let held = spawn(&svc, call(1, 0, 0));
    svc.clone().oneshot(call(2, 1, 0)).await.unwrap();
    tokio::time::advance(Duration::from_secs(3600)).await;
    run_tasks().await;
    assert!(!held.is_finished());
    assert!(limiter.resume("agent:0"));
    assert!(!limiter.resume("agent:0"), "resuming twice changes nothing");
    held.await.unwrap().unwrap();
    assert_eq!(log.ids(), [2, 1]);

    let (limiter, svc) = client(money(ThrottleLayer::builder()), &log, Instant::now());
    limiter.pause("global");
    let e = err(svc.oneshot(call(3, 0, 0)).await.unwrap_err());
    assert!(e.is_paused());
    assert_eq!(e.scope().unwrap().as_str(), "global");
}

#[tokio::test(start_paused = true)]
async fn alerts_fire_once_per_threshold_per_window() {
    let (tx, rx) = mpsc::channel::<BudgetAlert>();
    let log = Log::default();
    let (_, svc) = client(
        money(ThrottleLayer::builder())
            .budget("global", daily(10_000, &[400, 900, 1_000]))
            .on_alert(move |a| tx.send(a.clone()).unwrap()),
        &log,
        Instant::now(),
    );
    for id in 0..4 {
        svc.clone().oneshot(call(id, 0, 200)).await.unwrap(); // 500 µ$ each
    }
    let fired: Vec<(u64, u64)> = rx
        .try_iter()
        .map(|a| (a.alert.threshold.as_u64(), a.alert.spent.as_u64()))
        .collect();
    assert_eq!(fired, [(400, 500), (900, 1_000), (1_000, 1_000)]);
    tokio::time::advance(Duration::from_secs(RESET - START)).await;
    svc.clone().oneshot(call(9, 0, 200)).await.unwrap();
    let again: Vec<u64> = rx.try_iter().map(|a| a.alert.threshold.as_u64()).collect();
    assert_eq!(again, [400], "a new window fires its thresholds again");
}

#[tokio::test(start_paused = true)]
async fn the_call_log_has_one_line_per_call() {
    let buf = Buf::default();
    let calls = CallLog::to_writer(buf.clone());
    let log = Log::default();
    let (limiter, svc) = client(
        money(ThrottleLayer::builder())
            .budget("agent:*", daily(600, &[]))
            .call_log(calls.clone()),
        &log,
        Instant::now(),
    );
    svc.clone()
        .oneshot(call(1, 0, 50).latency(Duration::from_millis(1_500)))
        .await
        .unwrap();
    svc.clone().oneshot(call(2, 0, 50)).await.unwrap_err();
    svc.clone()
        .oneshot(call(3, 1, 0).failing())
        .await
        .unwrap_err();
    drop((svc, limiter));
    calls.flush();
    let records = buf.records();
    assert_eq!(records.len(), 3);
    let ok = &records[0];
    assert_eq!(ok.scopes, ["global", "agent:0"]);
    assert_eq!(ok.outcome, "ok");
    assert_eq!(
        (ok.estimated.input_tokens, ok.estimated.output_tokens),
        (100, 200)
    );
    assert_eq!(ok.actual.unwrap().output_tokens, 50);
    assert_eq!((ok.estimated_cost_micros, ok.cost_micros), (500, 200));
    assert_eq!(ok.latency_ms, Some(1_500));
    assert_eq!(ok.unix_ms, START * 1000 + 1_500);
    assert_eq!(ok.time, "2026-01-01T10:00:01.500Z");
    assert_eq!(ok.attempt, 1);
    let refused = &records[1];
    assert_eq!(refused.outcome, "refused");
    assert_eq!(refused.cost_micros, 0);
    assert_eq!(refused.latency_ms, None);
    assert!(refused
        .refused_because
        .as_deref()
        .unwrap()
        .contains("scope `agent:0`"));
    let failed = &records[2];
    assert_eq!(failed.outcome, "error");
    // The failure rule refunds the output tokens: the prompt is still paid for.
    assert_eq!(failed.cost_micros, 100);
    assert_eq!(failed.actual, None);
}

#[tokio::test(start_paused = true)]
async fn the_log_never_holds_bodies_or_credentials() {
    let buf = Buf::default();
    let log = CallLog::to_writer(buf.clone());
    let layer = ThrottleLayer::builder()
        .prices(prices())
        .call_log(log.clone())
        .build()
        .unwrap();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(|_: http::Request<String>| async {
            Ok::<_, tollgate::BoxError>(http::Response::new(()))
        }));
    let req = http::Request::builder()
        .header("authorization", "Bearer sk-secret-token")
        .header("x-api-key", "sk-ant-secret-key")
        .body("a secret prompt".to_owned())
        .unwrap();
    svc.oneshot(req).await.unwrap();
    log.flush();
    let text = buf.text();
    assert_eq!(text.lines().count(), 1);
    for secret in [
        "sk-secret-token",
        "sk-ant-secret-key",
        "secret prompt",
        "authorization",
    ] {
        assert!(!text.contains(secret), "{secret} leaked into {text}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_unknown_model_is_refused_at_once_when_the_table_says_so() {
    struct Req(&'static str);
    let buf = Buf::default();
    let log = CallLog::to_writer(buf.clone());
    let layer = ThrottleLayer::builder()
        .prices(PriceTable::example())
        .model(|r: &Req| Some(r.0))
        .call_log(log.clone())
        .build()
        .unwrap();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(|_: Req| async {
            Ok::<_, tollgate::BoxError>(())
        }));
    svc.clone().oneshot(Req("claude-haiku-4-5")).await.unwrap();
    let e = err(svc.oneshot(Req("my-finetune")).await.unwrap_err());
    assert!(e.is_unknown_model());
    assert!(e.to_string().contains("my-finetune"));
    // Refused before it was priced, and still in the log.
    log.flush();
    let records = buf.records();
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].outcome, "refused");
    assert_eq!(records[1].model.as_deref(), Some("my-finetune"));
    assert!(records[1]
        .refused_because
        .as_deref()
        .unwrap()
        .contains("my-finetune"));
}

#[test]
fn budgets_without_prices_or_with_bad_keys_are_config_errors() {
    let e = ThrottleLayer::builder()
        .budget("global", daily(1, &[]))
        .build()
        .unwrap_err();
    assert_eq!(e.rule(), tollgate::Rule::BudgetWithoutPrices);
    let e = ThrottleLayer::builder()
        .prices(prices())
        .budget("agent:*:x", daily(1, &[]))
        .build()
        .unwrap_err();
    assert_eq!(e.rule(), tollgate::Rule::InvalidScopeKey);
}

#[tokio::test(start_paused = true)]
async fn dropped_calls_give_their_money_back() {
    let log = Log::default();
    let (limiter, svc) = client(
        money(ThrottleLayer::builder())
            .budget("global", daily(10_000, &[]))
            .scope(
                "global",
                tollgate::ScopeLimits::new().limit(
                    tollgate::Limit::per_minute(tollgate::Dimension::Requests, 1).with_burst(1),
                ),
            ),
        &log,
        Instant::now(),
    );
    let running = spawn(&svc, call(1, 0, 200).latency(Duration::from_secs(5)));
    let waiting = spawn(&svc, call(2, 0, 200));
    run_tasks().await;
    assert_eq!(
        limiter.spend("global").unwrap().reserved,
        Micros::new(1_000)
    );
    waiting.abort();
    running.abort();
    run_tasks().await;
    let spend = limiter.spend("global").unwrap();
    assert_eq!(spend.reserved, Micros::ZERO);
    // The call dropped in flight is charged by the failure rule: its prompt.
    assert_eq!(spend.spent, Micros::new(100));
}

#[tokio::test(start_paused = true)]
async fn a_restart_remembers_the_days_spend_and_skips_a_torn_line() {
    let dir = std::env::temp_dir().join(format!("tollgate-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("calls.jsonl");
    let _ = std::fs::remove_file(&path);
    let budget = || daily(1_500, &[400]);
    let (tx, rx) = mpsc::channel::<u64>();
    {
        let log = Log::default();
        let calls = CallLog::append_to_file(&path).unwrap();
        let (_, svc) = client(
            money(ThrottleLayer::builder())
                .budget("global", budget())
                .call_log(calls.clone()),
            &log,
            Instant::now(),
        );
        svc.clone().oneshot(call(1, 0, 200)).await.unwrap();
        svc.clone().oneshot(call(2, 0, 200)).await.unwrap();
        calls.flush();
    }
    // A crash in the middle of a write.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"time\":\"2026-01-01T1")
        .unwrap();

    // The process starts again an hour later, same day.
    let log = Log::default();
    let calls = CallLog::append_to_file(&path).unwrap();
    assert_eq!(calls.replay().unwrap().calls().len(), 2);
    assert_eq!(calls.replay().unwrap().skipped(), 1);
    let (limiter, svc) = client(
        ThrottleLayer::builder()
            .prices(prices())
            .wall_clock((START + 3600) * 1000)
            .budget("global", budget())
            .on_alert(move |a| tx.send(a.alert.threshold.as_u64()).unwrap())
            .call_log(calls.clone()),
        &log,
        Instant::now(),
    );
    assert_eq!(limiter.spend("global").unwrap().spent, Micros::new(1_000));
    svc.clone().oneshot(call(3, 0, 200)).await.unwrap();
    let e = err(svc.clone().oneshot(call(4, 0, 200)).await.unwrap_err());
    assert_eq!(e.budget_exhausted().unwrap().spent(), Micros::new(1_500));
    assert_eq!(
        rx.try_iter().count(),
        0,
        "the $400 alert fired before the restart"
    );
    calls.flush();
    // Nothing written before is lost; the new records start on lines of their own.
    let replay =
        Replay::from_reader(std::io::BufReader::new(std::fs::File::open(&path).unwrap())).unwrap();
    assert_eq!(replay.calls().len(), 3);
    assert_eq!(replay.skipped(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[derive(Clone, Debug)]
struct Planned {
    agent: u32,
    at_ms: u64,
    input: u64,
    max_output: u64,
    /// The real output as a share of `max_output` (estimates are upper bounds).
    share: f64,
    latency_ms: u64,
}

/// Calls over two and a half hourly windows, in bursts so that many are in flight together.
fn planned() -> impl Strategy<Value = Planned> {
    (
        0u32..3,
        0u64..3,
        0u64..5_000,
        0u64..400,
        0u64..400,
        0.0f64..=1.0,
        0u64..3_000,
    )
        .prop_map(
            |(agent, burst, at_ms, input, max_output, share, latency_ms)| Planned {
                agent,
                at_ms: burst * 3_300_000 + at_ms,
                input,
                max_output,
                share,
                latency_ms,
            },
        )
}

fn hourly(cap: u64, thresholds: &[u64]) -> Budget {
    Budget::hourly(Micros::new(cap))
        .thresholds(thresholds.iter().map(|&t| Micros::new(t)))
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// With upper-bound estimates, whatever the interleaving, the settled spend of every budget
    /// stays within its cap in every window, and every threshold fires exactly once in each
    /// window whose spend reached it.
    #[test]
    fn spend_never_exceeds_the_cap_and_alerts_fire_once_per_window(
        calls in prop::collection::vec(planned(), 1..40),
        cap in 500u64..20_000,
        agent_cap in 300u64..10_000,
        hold in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async move {
            let thresholds = [cap / 4, cap / 2, cap];
            let alerts = Arc::new(Mutex::new(Vec::<(String, u64, u64)>::new()));
            let sink = alerts.clone();
            let log = Log::default();
            let start = Instant::now();
            let (limiter, svc) = client(
                money(ThrottleLayer::builder())
                    .budget("global", hourly(cap, &thresholds))
                    .budget("agent:*", hourly(agent_cap, &[]))
                    .on_cap(if hold { OnCap::Hold } else { OnCap::Refuse })
                    .max_wait(Duration::from_secs(30))
                    .on_alert(move |a| {
                        sink.lock().unwrap().push((
                            a.scope.to_string(),
                            a.alert.window_start,
                            a.alert.threshold.as_u64(),
                        ))
                    }),
                &log,
                start,
            );
            // (agent, cost, the hour it settled in)
            let settled = Arc::new(Mutex::new(Vec::<(u32, u64, u64)>::new()));
            let mut tasks = Vec::new();
            for (i, p) in calls.iter().cloned().enumerate() {
                let svc = svc.clone();
                let settled = settled.clone();
                tasks.push(tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(p.at_ms)).await;
                    let output = (p.max_output as f64 * p.share) as u64;
                    let c = Call::new(i as u32)
                        .agent(p.agent)
                        .tokens(p.input, p.max_output, output)
                        .latency(Duration::from_millis(p.latency_ms));
                    if svc.oneshot(c).await.is_ok() {
                        let hour = START / 3_600 + start.elapsed().as_secs() / 3_600;
                        settled.lock().unwrap().push((p.agent, p.input + 2 * output, hour));
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let settled = settled.lock().unwrap().clone();
            let fired = alerts.lock().unwrap().clone();
            let mut hours: Vec<u64> = settled.iter().map(|s| s.2).collect();
            hours.sort_unstable();
            hours.dedup();
            for hour in hours {
                let in_hour = settled.iter().filter(|s| s.2 == hour);
                let total: u64 = in_hour.clone().map(|s| s.1).sum();
                assert!(total <= cap, "hour {hour}: spent {total} > cap {cap}");
                for agent in 0..3u32 {
                    let a: u64 = in_hour.clone().filter(|s| s.0 == agent).map(|s| s.1).sum();
                    assert!(a <= agent_cap, "agent {agent} spent {a} > {agent_cap}");
                }
                for t in thresholds {
                    let n = fired
                        .iter()
                        .filter(|(s, w, th)| s == "global" && *w == hour * 3_600 && *th == t)
                        .count();
                    assert_eq!(n, usize::from(total >= t), "hour {hour}, threshold {t}, spent {total}");
                }
            }
            assert_eq!(limiter.spend("global").unwrap().reserved, Micros::ZERO);
        });
    }
}

/// A ledger "in another process": answers after 10 ms, shared, and can fail.
struct RemoteLedger {
    inner: Arc<tollgate::spend::MemoryLedger>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl tollgate::spend::Ledger for RemoteLedger {
    fn reserve(
        &self,
        budgets: &[tollgate::spend::BudgetRef<'_>],
        now_unix: u64,
        estimate: Micros,
    ) -> tollgate::spend::Reserve {
        use tollgate::spend::{BudgetRef, Reserve};
        let owned: Vec<(tollgate::ScopeKey, Budget)> = budgets
            .iter()
            .map(|b| (b.scope.clone(), b.budget.clone()))
            .collect();
        let (inner, down) = (self.inner.clone(), self.down.clone());
        Reserve::Pending(Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(tollgate::store::StoreError::new("ledger unreachable"));
            }
            let refs: Vec<BudgetRef<'_>> = owned
                .iter()
                .map(|(scope, budget)| BudgetRef { scope, budget })
                .collect();
            match inner.reserve(&refs, now_unix, estimate) {
                Reserve::Done(r) => Ok(r),
                Reserve::Pending(_) => unreachable!("the memory ledger answers at once"),
            }
        }))
    }
    fn settle(
        &self,
        hold: tollgate::spend::LedgerHold,
        budgets: &[tollgate::spend::BudgetRef<'_>],
        now_unix: u64,
        actual: Micros,
        alerts: &tollgate::spend::Alerts,
    ) {
        self.inner.settle(hold, budgets, now_unix, actual, alerts)
    }
    fn release(
        &self,
        hold: tollgate::spend::LedgerHold,
        budgets: &[tollgate::spend::BudgetRef<'_>],
    ) {
        self.inner.release(hold, budgets)
    }
    fn spent(
        &self,
        b: tollgate::spend::BudgetRef<'_>,
        now_unix: u64,
    ) -> Option<tollgate::spend::SpendStats> {
        self.inner.spent(b, now_unix)
    }
    fn is_shared(&self) -> bool {
        true
    }
}

#[tokio::test(start_paused = true)]
async fn a_shared_ledger_reserves_remotely_fails_closed_and_is_rechecked_while_held() {
    use tollgate::spend::{BudgetRef, Ledger, Reserve};
    let inner = Arc::new(tollgate::spend::MemoryLedger::new());
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ledger = Arc::new(RemoteLedger {
        inner: inner.clone(),
        down: down.clone(),
    });
    let log = Log::default();
    let start = Instant::now();
    let (limiter, svc) = client(
        money(ThrottleLayer::builder())
            .budget("global", daily(1_000, &[]))
            .on_cap(OnCap::Hold)
            .ledger(ledger),
        &log,
        start,
    );
    // The reservation takes the ledger's round trip.
    svc.clone().oneshot(call(1, 0, 200)).await.unwrap();
    assert_eq!(log.entries()[0], (1, Duration::from_millis(10)));
    assert_eq!(limiter.spend("global").unwrap().spent, Micros::new(500));

    // Another process holds the rest of the cap; a call here is held ...
    let budget = daily(1_000, &[]);
    let key = tollgate::ScopeKey::GLOBAL;
    let other = [BudgetRef {
        scope: &key,
        budget: &budget,
    }];
    let Reserve::Done(Ok(theirs)) = inner.reserve(&other, START, Micros::new(500)) else {
        panic!("the other process's reservation fits");
    };
    let held = spawn(&svc, call(2, 0, 200));
    tokio::time::advance(Duration::from_secs(5)).await;
    run_tasks().await;
    assert!(!held.is_finished());
    // ... until the other process gives its money back, which wakes no one here: the held call
    // looks again within a second.
    let released_at = start.elapsed();
    inner.release(theirs, &other);
    held.await.unwrap().unwrap();
    let went = log.entries()[1].1;
    assert!(
        went > released_at && went <= released_at + Duration::from_millis(1_010),
        "{went:?}"
    );

    // Unreachable: the call is refused, spend caps fail closed.
    down.store(true, std::sync::atomic::Ordering::SeqCst);
    let e = err(svc.oneshot(call(3, 0, 0)).await.unwrap_err());
    assert!(e.is_store(), "{e}");
}

/// Held calls on a multi-threaded runtime, woken by settles on other threads: none may miss its
/// wake-up (a call refused while another settles). The timeout only detects a hang.
#[test]
fn held_calls_on_many_threads_all_go_when_money_comes_back() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let log = Log::default();
        let (limiter, svc) = client(
            money(ThrottleLayer::builder())
                // Room for two estimates at a time; every call really costs nothing.
                .budget("global", daily(1_000, &[]))
                .on_cap(OnCap::Hold),
            &log,
            Instant::now(),
        );
        let calls: Vec<_> = (0..400)
            .map(|i| {
                let svc = svc.clone();
                tokio::spawn(async move {
                    svc.oneshot(Call::new(i).tokens(0, 250, 0))
                        .await
                        .map(|_| ())
                })
            })
            .collect();
        let all = async {
            for c in calls {
                c.await.unwrap().unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .expect("every held call went");
        assert_eq!(log.len(), 400);
        assert_eq!(limiter.spend("global").unwrap().reserved, Micros::ZERO);
    });
}

#[tokio::test(start_paused = true)]
async fn answers_the_provider_turned_away_cost_no_money() {
    use tollgate::feedback::HttpClassifier;
    let statuses = Arc::new(Mutex::new(vec![500u16, 529, 429]));
    let s = statuses.clone();
    let layer = money(ThrottleLayer::builder())
        .budget("global", daily(100_000, &[]))
        // 1,000 input tokens and up to 500 output tokens: 1,000 + 2·500 = 2,000 µ$ estimated.
        .estimate(|_: &()| {
            tollgate::Cost::request()
                .with_input_tokens(1_000)
                .with_output_tokens(500)
        })
        .classify(HttpClassifier::new())
        .build()
        .unwrap();
    let limiter = layer.limiter().clone();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(move |_: ()| {
            let status = s.lock().unwrap().pop().unwrap();
            async move {
                let mut r = http::Response::new(());
                *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                Ok::<_, tollgate::BoxError>(r)
            }
        }));
    let spent = || limiter.spend("global").unwrap();
    // A 429 and a 529: turned away, billed nothing.
    svc.clone().oneshot(()).await.unwrap();
    svc.clone().oneshot(()).await.unwrap();
    assert_eq!(
        (spent().spent, spent().reserved),
        (Micros::ZERO, Micros::ZERO)
    );
    // A 500: the failure rule's tokens (the prompt, not the output).
    svc.clone().oneshot(()).await.unwrap();
    assert_eq!(spent().spent, Micros::new(1_000));
    assert!(statuses.lock().unwrap().is_empty());
}
