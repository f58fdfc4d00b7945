//! `tollgate-mock`: the mock provider as an HTTP server (Anthropic Messages, OpenAI Chat
//! Completions, OpenAI Responses). Prints the address it bound as its first line on stdout, then
//! serves until killed. Bad flags exit 2 naming the flag.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tollgate_mock::{Dimension, MockProvider, OverloadConfig};

/// A mock LLM provider over HTTP, with its own rate limits, for running agents and SDKs offline.
///
/// Routes: POST /v1/messages (Anthropic), POST /v1/chat/completions and POST /v1/responses
/// (OpenAI; point the SDK's base_url at ADDRESS/v1), GET /mock/stats (ground-truth counters).
#[derive(Debug, Parser)]
#[command(name = "tollgate-mock", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port (printed on the first line of stdout).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    listen: SocketAddr,
    /// Requests per minute.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    rpm: u64,
    /// Input tokens per minute (default: unlimited).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    itpm: Option<u64>,
    /// Output tokens per minute (default: unlimited).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    otpm: Option<u64>,
    /// Base latency of an admitted call, e.g. 800ms (±10 % seeded jitter).
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// Latency added per output token, e.g. 10ms.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    latency_per_token: Duration,
    /// Seed of the answers' text and of the latency and overload draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Calls in flight at or above which a new call may get 529 / 503.
    #[arg(long, value_name = "N", requires = "overload_probability")]
    overload_in_flight: Option<u64>,
    /// Chance in [0, 1] that such a call gets 529 / 503.
    #[arg(long, value_name = "P", value_parser = probability, requires = "overload_in_flight")]
    overload_probability: Option<f64>,
    /// Send no rate-limit headers (a 429 still says `retry-after`).
    #[arg(long)]
    no_rate_limit_headers: bool,
}

fn probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("`{s}` is not a number in [0, 1]")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse(); // exits 2 naming the flag on bad input
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tollgate-mock: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let mut builder = MockProvider::builder()
        .rpm(args.rpm)
        .latency(args.latency, args.latency_per_token, 0.1)
        .seed(args.seed)
        .epoch_unix_secs(unix_now())
        .rate_limit_headers(!args.no_rate_limit_headers);
    builder = match args.itpm {
        Some(n) => builder.input_tpm(n),
        None => builder.unlimited(Dimension::InputTokens),
    };
    builder = match args.otpm {
        Some(n) => builder.output_tpm(n),
        None => builder.unlimited(Dimension::OutputTokens),
    };
    if let (Some(threshold_in_flight), Some(probability)) =
        (args.overload_in_flight, args.overload_probability)
    {
        builder = builder.overload(OverloadConfig {
            threshold_in_flight,
            probability,
        });
    }
    let provider = match builder.build() {
        Ok(provider) => provider,
        Err(e) => {
            eprintln!("tollgate-mock: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "tollgate-mock: cannot listen on --listen {}: {e}",
                args.listen
            );
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("tollgate-mock: cannot read the bound address: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    if writeln!(stdout, "http://{addr}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    match tollgate_mock::http::serve(listener, provider).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate-mock: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Wall time, for the `created` fields and the RFC 3339 reset headers: the server means it.
#[allow(clippy::disallowed_methods)]
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
