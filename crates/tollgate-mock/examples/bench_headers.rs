//! Wall-clock throughput of the mock provider on tokio's paused clock, headers included.
//!
//! 500 tasks share a budget of 200 000 calls; each calls the provider, waits out the latency of a
//! 200 and sleeps `retry-after-ms` after a 429. With the limits below most answers are 429s, so
//! the run mostly measures building an answer and its 17 headers, plus tokio's timer.
//!
//! ```text
//! cargo run --release --example bench_headers -p tollgate-mock [-- --no-headers]
//! ```

// The point is wall time: how long the paused clock takes to run through the calls.
#![allow(clippy::disallowed_types)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use tollgate_mock::{MockProvider, MockRequest};
use tower::ServiceExt;

const TASKS: u64 = 500;
const CALLS: u64 = 200_000;
const RUNS: usize = 5;

fn main() {
    let headers = !std::env::args().any(|a| a == "--no-headers");
    let mut rates = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a paused current-thread runtime");
        let wall = Instant::now();
        let (ok, limited) = rt.block_on(run(headers));
        let secs = wall.elapsed().as_secs_f64();
        rates.push(CALLS as f64 / secs);
        println!(
            "{CALLS} calls ({ok} × 200, {limited} × 429) in {secs:.3} s: {:.0} calls/s",
            CALLS as f64 / secs
        );
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "headers {}: median {:.0} calls/s, best {:.0}",
        if headers { "on" } else { "off" },
        rates[RUNS / 2],
        rates[RUNS - 1]
    );
}

async fn run(headers: bool) -> (u64, u64) {
    let provider = MockProvider::builder()
        .rpm(6_000)
        .input_tpm(2_000_000)
        .output_tpm(400_000)
        .latency(Duration::from_millis(500), Duration::from_millis(1), 0.1)
        .anthropic_headers(headers)
        .openai_headers(headers)
        .seed(1)
        .build()
        .expect("a valid configuration");
    let budget = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let (provider, budget) = (provider.clone(), Arc::clone(&budget));
        tasks.spawn(async move {
            while budget.fetch_add(1, Ordering::Relaxed) < CALLS {
                let req = MockRequest::new(1_000, 256, 100).with_tag(task);
                let Ok(response) = provider.clone().oneshot(req).await;
                if response.status() == StatusCode::TOO_MANY_REQUESTS {
                    let wait = match response.headers().get("retry-after-ms") {
                        Some(ms) => ms.to_str().ok().and_then(|ms| ms.parse().ok()),
                        None => None, // headers off: back off a fixed 10 ms
                    };
                    tokio::time::sleep(Duration::from_millis(wait.unwrap_or(10))).await;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let stats = provider.stats();
    (stats.ok, stats.rate_limited)
}
