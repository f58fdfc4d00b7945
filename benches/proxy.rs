//! The gateway's cost: throughput and added latency of `tollgate-proxy` in front of
//! `tollgate-mock`, against the same mock called directly, in one run, with limits far away.
//!
//! A load generator, not criterion: it needs whole processes and an open-loop arrival rate.
//! `scripts/bench.sh proxy` builds the release binaries and runs it; it writes
//! `results/bench/proxy.md`.
//!
//! * **Throughput**: 32 connections, each sending its next call when the last one answered, for
//!   5 s (after 1 s of warm-up); calls per second direct and through the gateway.
//! * **Latency at 1,000 calls a second**: one call started every millisecond for 5 s (open loop:
//!   a slow answer does not delay the next start); p50 and p99 of each call's time, direct and
//!   through the gateway, and the differences.
//!
//! Each call is a small non-streaming `POST /v1/chat/completions` (the gateway counts its input
//! with the model's BPE); the mock answers at once. The generator, the mock and the gateway
//! share the machine's cores, so the figures are those of one machine at its load.
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
const MEASURE: Duration = Duration::from_secs(5);
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

/// Calls per second of `CONNECTIONS` closed loops, and the failed calls.
async fn throughput(url: &str) -> (f64, u64) {
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
    tokio::time::sleep(WARM_UP).await;
    counting.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(MEASURE).await;
    counting.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    (
        done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64(),
        failed.load(Ordering::Relaxed),
    )
}

/// Each call's time at `RATE_PER_S` started calls a second (sorted), and the failed calls.
async fn latencies(url: &str) -> (Vec<Duration>, u64) {
    let client = client();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE_PER_S));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    // Warm the pool and the gateway's tokenizer.
    for _ in 0..CONNECTIONS {
        call(&client, url).await;
    }
    let n = RATE_PER_S * MEASURE.as_secs();
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
    times.sort_unstable();
    (times, failed)
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
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
    let (_mock, mock) = start(
        &mock_bin,
        &["--listen", "127.0.0.1:0", "--rpm", "100000000"],
    );
    let dir = std::env::temp_dir().join(format!("tollgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let cfg = config(&dir, &mock);
    let (_proxy, proxy) = start(
        &proxy_bin,
        &["--config", cfg.to_str().expect("a UTF-8 path")],
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (direct_rps, direct_failed) = rt.block_on(throughput(&mock));
    let (proxy_rps, proxy_failed) = rt.block_on(throughput(&proxy));
    let (direct_lat, direct_lat_failed) = rt.block_on(latencies(&mock));
    let (proxy_lat, proxy_lat_failed) = rt.block_on(latencies(&proxy));
    let (d50, d99) = (quantile(&direct_lat, 0.5), quantile(&direct_lat, 0.99));
    let (p50, p99) = (quantile(&proxy_lat, 0.5), quantile(&proxy_lat, 0.99));
    let added = |p: Duration, d: Duration| ms(p) - ms(d);
    let failed = direct_failed + proxy_failed + direct_lat_failed + proxy_lat_failed;
    let report = format!(
        "# tollgate-proxy: throughput and added latency\n\n\
         Generated by `{command}` (`benches/proxy.rs`); do not edit. The gateway in front of \
         `tollgate-mock` against the same mock called directly, in one run, limits far away; \
         release builds; the generator, the mock and the gateway share the machine.\n\n\
         ## Machine\n\n| | |\n|---|---|\n| CPUs (`nproc`) | {cpus} |\n\
         | load average before the run | {load} |\n| commit | {commit} |\n\n\
         ## Throughput ({conns} connections, closed loop, {secs} s)\n\n\
         | | calls/s |\n|---|---:|\n| direct | {direct_rps:.0} |\n| through the gateway | {proxy_rps:.0} |\n\
         | **ratio** (gateway ÷ direct; target ≥ 0.7) | **{ratio:.2}** |\n\n\
         ## Latency at {rate} calls/s (open loop, {secs} s)\n\n\
         | | p50 ms | p99 ms |\n|---|---:|---:|\n| direct | {d50:.3} | {d99:.3} |\n\
         | through the gateway | {p50:.3} | {p99:.3} |\n\
         | **added** (target p99 ≤ 1 ms) | **{a50:.3}** | **{a99:.3}** |\n\n\
         Calls that failed: {failed}.\n",
        command = std::env::var("TOLLGATE_BENCH_COMMAND").unwrap_or_default(),
        cpus = std::thread::available_parallelism().map_or(0, |n| n.get()),
        load = std::env::var("TOLLGATE_BENCH_LOADAVG").unwrap_or_default(),
        commit = std::env::var("TOLLGATE_BENCH_COMMIT").unwrap_or_default(),
        conns = CONNECTIONS,
        secs = MEASURE.as_secs(),
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
