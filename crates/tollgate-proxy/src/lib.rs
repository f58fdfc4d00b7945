//! `tollgate-proxy`: a throttling gateway for the Anthropic and OpenAI APIs. Agents change their
//! SDK's base URL to the gateway; every call then waits in tollgate's fair queue instead of
//! failing with 429, is settled against the usage its answer reports, and shares one cooldown
//! with every other call when the provider pushes back.
//!
//! The binary (`tollgate-proxy --config tollgate.toml`) reads a [`Config`]: the throttle's TOML
//! plus a `[proxy]` table, and runs a [`Gateway`] until SIGTERM or ctrl-c.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = tollgate_proxy::Config::from_toml(r#"
//!     max_wait = "30s"
//!     [scopes.global]
//!     requests_per_minute = 50
//!     [proxy]
//!     listen = "127.0.0.1:0"
//!     upstream = { anthropic = "https://api.anthropic.com" }
//! "#)?;
//! let gateway = tollgate_proxy::Gateway::start(config).await?;
//! assert_ne!(gateway.local_addr().port(), 0);
//! // A program waits for its stop signal here (the binary: SIGTERM or ctrl-c).
//! assert!(gateway.shutdown().await, "no call was in flight");
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
