//! The gateway's cost: throughput and added latency of `tollgate-proxy` in front of
//! `tollgate-mock`, against the same mock called directly, in one run, with limits far away.
//!
//! A load generator, not criterion: it needs whole processes and an open-loop arrival rate.
//! `scripts/bench.sh proxy` builds the release binaries and runs it; it writes
//! `results/bench/proxy.md`.
//!
//! * **Throughput**: 32 connections, each sending its next call when the last one answered;
//!   calls per second direct and through the gateway.
//! * **Latency at 1,000 calls a second**: one call started every millisecond (open loop: a slow
//!   answer does not delay the next start); p50 and p99 of each call's time, direct and through
//!   the gateway, and the differences.
//!
//! Each measurement alternates: 5 rounds of 1 s direct then 1 s through the gateway (after a
//! warm-up of each), pooled per side, so that a change in the machine's load during the run
//! touches both sides alike.
//!
//! Each call is a small non-streaming `POST /v1/chat/completions` (the gateway counts its input
//! with the model's BPE); the mock answers at once. The gateway logs at `warn` (no line per
//! call; metrics on). The generator, the mock and the gateway share the machine's cores, so the
//! figures are those of one machine at its load.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // wall time is what is measured

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BODY: &str = r#"{"model":"gpt-4o-mini","max_completion_tokens":16,"messages":[{"role":"user","content":"How many requests fit in a minute?"}]}"#;
const CONNECTIONS: usize = 32;
const WARM_UP: Duration = Duration::from_secs(1);
const ROUND: Duration = Duration::from_secs(1);
const ROUNDS: u32 = 5;
const RATE_PER_S: u64 = 1_000;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `bin` and reads the URL it prints first.
fn start(bin: &str, args: &[&str]) -> (Running, String) {
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {bin}: {e}"));
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the address line");
    (Running(child), line.trim().to_owned())
}

async fn call(client: &HttpClient, url: &str) -> bool {
    let req = http::Request::post(format!("{url}/v1/chat/completions"))
        .header("authorization", "Bearer sk-bench")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .expect("a request");
    match client.request(req).await {
        Ok(res) => {
            let ok = res.status().is_success();
            ok && res.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

fn client() -> HttpClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CONNECTIONS * 2)
        .build(http)
}

/// Calls answered by `CONNECTIONS` closed loops in `time` (after `warm_up`), and the failed calls.
async fn throughput(url: &str, warm_up: Duration, time: Duration) -> (u64, u64) {
    let client = client();
    let stop = Arc::new(AtomicBool::new(false));
    let counting = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_owned());
            let (stop, counting, done, failed) =
                (stop.clone(), counting.clone(), done.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let ok = call(&client, &url).await;
                    if counting.load(Ordering::Relaxed) {
                        let n = if ok { &done } else { &failed };
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(warm_up).await;
    counting.store(true, Ordering::Relaxed);
    tokio::time::sleep(time).await;
    counting.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed))
}

/// Each call's time at `RATE_PER_S` started calls a second for `time`, and the failed calls.
async fn latencies(url: &str, time: Duration) -> (Vec<Duration>, u64) {
    let client = client();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE_PER_S));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    // Warm the pool and the gateway's tokenizer.
    for _ in 0..CONNECTIONS {
        call(&client, url).await;
    }
    let n = (RATE_PER_S as f64 * time.as_secs_f64()) as u64;
    let mut tasks = Vec::with_capacity(n as usize);
    for _ in 0..n {
        tick.tick().await;
        let (client, url) = (client.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let ok = call(&client, &url).await;
            (start.elapsed(), ok)
        }));
    }
    let mut times = Vec::with_capacity(tasks.len());
    let mut failed = 0;
    for t in tasks {
        match t.await {
            Ok((d, true)) => times.push(d),
            _ => failed += 1,
        }
    }
    (times, failed)
}

/// Both sides measured in alternating rounds.
struct Figures {
    rps: [f64; 2],
    latencies: [Vec<Duration>; 2],
    failed: u64,
}

async fn measure(urls: [&str; 2]) -> Figures {
    let mut calls = [0u64; 2];
    let mut times = [Vec::new(), Vec::new()];
    let mut failed = 0;
    for url in urls {
        throughput(url, WARM_UP, Duration::ZERO).await;
        latencies_warm(url).await;
    }
    for _ in 0..ROUNDS {
        for (side, url) in urls.iter().enumerate() {
            let (done, bad) = throughput(url, Duration::from_millis(200), ROUND).await;
            calls[side] += done;
            failed += bad;
        }
    }
    for _ in 0..ROUNDS {
        for (side, url) in urls.iter().enumerate() {
            let (round, bad) = latencies(url, ROUND).await;
            times[side].extend(round);
            failed += bad;
        }
    }
    for t in &mut times {
        t.sort_unstable();
    }
    let secs = (ROUND * ROUNDS).as_secs_f64();
    Figures {
        rps: calls.map(|c| c as f64 / secs),
        latencies: times,
        failed,
    }
}

/// A second of calls at the open-loop rate, not counted.
async fn latencies_warm(url: &str) {
    latencies(url, WARM_UP).await;
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// CPU seconds (user + system) the process `pid` used so far, from `/proc` (Linux; clock ticks
/// of 1/100 s).
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// The body of `GET url`.
async fn get_text(url: &str) -> String {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let req = http::Request::get(url)
        .body(Full::new(Bytes::new()))
        .expect("a request");
    match client.request(req).await {
        Ok(res) => match res.into_body().collect().await {
            Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
            Err(_) => String::new(),
        },
        Err(_) => String::new(),
    }
}

/// Calls each process answered in all: the gateway's `ok` calls and the mock's admitted ones.
async fn served(mock: &str, proxy: &str) -> (f64, f64) {
    let metrics = get_text(&format!("{proxy}/metrics")).await;
    let proxied = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tollgate_proxy_calls_total{outcome=\"ok\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(f64::NAN);
    let stats = get_text(&format!("{mock}/mock/stats")).await;
    let mocked = serde_json::from_str::<serde_json::Value>(&stats)
        .ok()
        .and_then(|v| v["provider"]["ok"].as_f64())
        .unwrap_or(f64::NAN);
    (proxied, mocked)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn config(dir: &std::path::Path, mock: &str) -> std::path::PathBuf {
    let path = dir.join("tollgate-bench.toml");
    let text = format!(
        "max_wait = \"10s\"\n[scopes.global]\nrequests_per_minute = 100000000\n\
         input_tokens_per_minute = 10000000000\noutput_tokens_per_minute = 10000000000\n\
         [proxy]\nlisten = \"127.0.0.1:0\"\nlog = \"warn\"\nupstream = {{ openai = \"{mock}\" }}\n"
    );
    std::fs::write(&path, text).expect("write the gateway's config");
    path
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run this bench through `scripts/bench.sh proxy`")
    })
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that does not name this bench skips it.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !"proxy".contains(a.as_str()))
    {
        return;
    }
    let (mock_bin, proxy_bin) = (env("TOLLGATE_MOCK_BIN"), env("TOLLGATE_PROXY_BIN"));
    let out = env("TOLLGATE_BENCH_OUT");
    let (mock_child, mock) = start(
        &mock_bin,
        &["--listen", "127.0.0.1:0", "--rpm", "100000000"],
    );
    let mock_pid = mock_child.0.id();
    let dir = std::env::temp_dir().join(format!("tollgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let cfg = config(&dir, &mock);
    let (proxy_child, proxy) = start(
        &proxy_bin,
        &["--config", cfg.to_str().expect("a UTF-8 path")],
    );
    let proxy_pid = proxy_child.0.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let figures = rt.block_on(measure([&mock, &proxy]));
    let (proxied, mocked) = rt.block_on(served(&mock, &proxy));
    let per_call = |pid: u32, calls: f64| cpu_secs(pid).map_or(f64::NAN, |s| s / calls * 1e6);
    let (proxy_cpu, mock_cpu) = (per_call(proxy_pid, proxied), per_call(mock_pid, mocked));
    let [direct_rps, proxy_rps] = figures.rps;
    let [direct_lat, proxy_lat] = &figures.latencies;
    let failed = figures.failed;
    let (d50, d99) = (quantile(direct_lat, 0.5), quantile(direct_lat, 0.99));
    let (p50, p99) = (quantile(proxy_lat, 0.5), quantile(proxy_lat, 0.99));
    let added = |p: Duration, d: Duration| ms(p) - ms(d);
    let report = format!(
        "# tollgate-proxy: throughput and added latency\n\n\
         Generated by `{command}` (`benches/proxy.rs`); do not edit. The gateway in front of \
         `tollgate-mock` against the same mock called directly, in one run, limits far away; \
         release builds; the gateway logs at `warn` (no line per call; metrics on); each call a \
         small non-streaming chat completion; the generator, the mock and the gateway share the \
         machine's cores.\n\n\
         ## Machine\n\n| | |\n|---|---|\n| CPUs (`nproc`) | {cpus} |\n\
         | load average before the run | {load} |\n| commit | {commit} |\n\n\
         ## Throughput ({conns} connections, closed loop, {secs} s a side in {rounds} alternating rounds)\n\n\
         | | calls/s |\n|---|---:|\n| direct | {direct_rps:.0} |\n| through the gateway | {proxy_rps:.0} |\n\
         | **ratio** (gateway ÷ direct; target ≥ 0.7) | **{ratio:.2}** |\n\n\
         ## Latency at {rate} calls/s (open loop, {secs} s a side in {rounds} alternating rounds)\n\n\
         | | p50 ms | p99 ms |\n|---|---:|---:|\n| direct | {d50:.3} | {d99:.3} |\n\
         | through the gateway | {p50:.3} | {p99:.3} |\n\
         | **added** (target p99 ≤ 1 ms) | **{a50:.3}** | **{a99:.3}** |\n\n\
         ## CPU per call\n\n\
         | | µs of CPU per call answered (user + system, whole run) |\n|---|---:|\n\
         | the mock | {mock_cpu:.1} |\n| the gateway | {proxy_cpu:.1} |\n\n\
         The gateway serves each call as a server and sends it on as a client, so on a machine \
         whose cores are all busy its CPU per call, beside the mock's and the generator's, \
         bounds the throughput ratio.\n\n\
         Calls that failed: {failed}.\n",
        command = std::env::var("TOLLGATE_BENCH_COMMAND").unwrap_or_default(),
        cpus = std::thread::available_parallelism().map_or(0, |n| n.get()),
        load = std::env::var("TOLLGATE_BENCH_LOADAVG").unwrap_or_default(),
        commit = std::env::var("TOLLGATE_BENCH_COMMIT").unwrap_or_default(),
        conns = CONNECTIONS,
        secs = (ROUND * ROUNDS).as_secs(),
        rounds = ROUNDS,
        ratio = proxy_rps / direct_rps,
        rate = RATE_PER_S,
        d50 = ms(d50),
        d99 = ms(d99),
        p50 = ms(p50),
        p99 = ms(p99),
        a50 = added(p50, d50),
        a99 = added(p99, d99),
    );
    let mut file = std::fs::File::create(&out).unwrap_or_else(|e| panic!("write {out}: {e}"));
    file.write_all(report.as_bytes()).expect("write the report");
    print!("{report}");
    let _ = std::fs::remove_dir_all(&dir);
}
