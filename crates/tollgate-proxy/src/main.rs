//! `tollgate-proxy --config tollgate.toml`: runs the gateway until SIGTERM or ctrl-c. A bad
//! configuration exits with code 2 and a message naming the key; the listen address is printed
//! as the first line on stdout.

use clap::Parser;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use tollgate_proxy::{Config, Gateway};

/// A throttling gateway for the Anthropic and OpenAI APIs: point the SDK's base URL at it.
#[derive(Debug, Parser)]
#[command(name = "tollgate-proxy", version)]
struct Args {
    /// The configuration file: the throttle's TOML plus a [proxy] table.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse(); // exits 2 naming the flag on bad input
    let config = match Config::from_file(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tollgate-proxy: bad configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let level = tollgate_proxy::log_level(&config.proxy.log).unwrap_or(tracing::Level::INFO);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tollgate-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

async fn run(config: Config) -> ExitCode {
    let gateway = match Gateway::start(config).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("tollgate-proxy: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout();
    let _ = writeln!(out, "http://{}", gateway.local_addr());
    let _ = out.flush();
    tracing::info!(addr = %gateway.local_addr(), "listening");
    stop_signal().await;
    tracing::info!("shutting down: no new connections; calls in flight may finish");
    if gateway.shutdown().await {
        tracing::info!("every call finished");
    } else {
        tracing::warn!("the grace period ended with calls still in flight");
    }
    ExitCode::SUCCESS
}

/// SIGTERM or ctrl-c.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    biased;
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
