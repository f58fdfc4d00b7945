//! `tollgate-proxy`: a throttling gateway for the Anthropic and OpenAI APIs. Agents change their
//! SDK's base URL to the gateway; every call then waits in tollgate's fair queue instead of
//! failing with 429, is settled against the usage its answer reports, and shares one cooldown
//! with every other call when the provider pushes back.
//!
//! The binary (`tollgate-proxy --config tollgate.toml`) reads a [`Config`]: the throttle's TOML
//! plus a `[proxy]` table, and runs a [`Gateway`] until SIGTERM or ctrl-c.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = tollgate_proxy::Config::from_file("tollgate.toml".as_ref())?;
//! let gateway = tollgate_proxy::Gateway::start(config).await?;
//! println!("listening on {}", gateway.local_addr());
//! tokio::signal::ctrl_c().await?;
//! gateway.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

mod config;
mod errors;
mod keys;
mod metrics;
mod observe;
mod scopes;
mod server;
mod upstream;

pub use config::{
    ClientKey, Config, ConfigError, KeyMode, KeysConfig, ProxyConfig, RetryConfig, ScopeSource,
    Upstreams, DEFAULT_MAX_BODY, DEFAULT_MAX_WAIT, DEFAULT_SHUTDOWN_GRACE,
};
pub use server::{Gateway, StartError};

/// The `tracing` level a `[proxy] log` value names, if any.
pub fn log_level(name: &str) -> Option<tracing::Level> {
    match name {
        "error" => Some(tracing::Level::ERROR),
        "warn" => Some(tracing::Level::WARN),
        "info" => Some(tracing::Level::INFO),
        "debug" => Some(tracing::Level::DEBUG),
        "trace" => Some(tracing::Level::TRACE),
        _ => None,
    }
}
