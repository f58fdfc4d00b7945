//! The gateway's configuration: the throttle's TOML ([`ThrottleConfig`]) plus a `[proxy]` table,
//! read and checked at start-up ([`Config::from_toml`]).

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tollgate::ThrottleConfig;

/// The default longest request body: 32 MiB, the largest request Anthropic's Messages API takes.
pub const DEFAULT_MAX_BODY: usize = tollgate_http::DEFAULT_MAX_REQUEST_BODY;
/// The default grace period for calls in flight at shutdown: 30 s.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// The default longest wait for admission when the throttle table sets none: 60 s.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(60);

/// A configuration that cannot be used, naming the key at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    key: String,
    message: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The configuration key at fault (`proxy.upstream.openai`, `scopes.global`, ...).
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The whole configuration: the throttle's settings and the gateway's.
#[derive(Clone, Debug)]
pub struct Config {
    /// The throttle: limits per scope, `max_wait`, tiers, prices, budgets (the `call_log` key is
    /// taken out into [`Config::call_log`]).
    pub throttle: ThrottleConfig,
    /// The `[proxy]` table.
    pub proxy: ProxyConfig,
    /// The call log file (the throttle's top-level `call_log` key).
    pub call_log: Option<PathBuf>,
}

/// The `[proxy]` table. Defaults are given per field.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Address to listen on, e.g. `"127.0.0.1:8080"` (port 0 picks a free port). Required.
    pub listen: SocketAddr,
    /// Upstream base URL per provider. Required.
    pub upstream: Upstreams,
    /// How a call is mapped to scopes, in order, after `global` (default: none).
    #[serde(default)]
    pub scopes: Vec<ScopeSource>,
    /// The header holding the call's priority tier, 0 to 255 (default: none, every call at 0).
    #[serde(default)]
    pub priority_header: Option<String>,
    /// Largest request body in bytes; a larger one gets 413 (default 32 MiB).
    #[serde(default = "default_max_body")]
    pub max_body: usize,
    /// How long calls in flight may go on after SIGTERM or ctrl-c (default `"30s"`).
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Whose API key goes upstream (default: the client's own).
    #[serde(default)]
    pub keys: KeysConfig,
    /// Redis URL: when set, the limits live in Redis and every instance on it shares them.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// The Redis hash tag of this provider account (default `"tollgate-proxy"`): instances
    /// sharing one limit use the same tag.
    #[serde(default = "default_hash_tag")]
    pub redis_hash_tag: String,
    /// The gateway's own retries of upstream 429, 529 and 5xx answers.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Log level: `error`, `warn`, `info` (default), `debug` or `trace`.
    #[serde(default = "default_log")]
    pub log: String,
}

/// `[proxy.upstream]`: where calls go. A base URL is a scheme and host (and port), optionally a
/// path prefix; the request's path is appended to it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstreams {
    /// For `/v1/messages` and requests with an `anthropic-version` header, e.g.
    /// `"https://api.anthropic.com"`.
    pub anthropic: Option<String>,
    /// For `/v1/chat/completions`, `/v1/responses` and any other path, e.g.
    /// `"https://api.openai.com"`.
    pub openai: Option<String>,
}

/// One entry of `[[proxy.scopes]]`: exactly one of `header` (with `kind`), `api_key` or `fixed`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeSource {
    /// A request header whose value `v` puts the call in scope `kind:v`.
    #[serde(default)]
    pub header: Option<String>,
    /// The kind of a header's scope.
    #[serde(default)]
    pub kind: Option<String>,
    /// The caller's API key gives scope `<api_key>:<id>`: the key's name in proxy mode, else the
    /// first 16 hex digits of its SHA-256 (never the key itself).
    #[serde(default)]
    pub api_key: Option<String>,
    /// Every call is in this scope.
    #[serde(default)]
    pub fixed: Option<String>,
}

/// `[proxy.keys]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// `"passthrough"` (default): the client's key goes upstream. `"proxy"`: clients present a
    /// proxy key of `clients`, and the real key from the environment goes upstream.
    #[serde(default)]
    pub mode: KeyMode,
    /// The environment variable holding the real Anthropic key (proxy mode).
    #[serde(default)]
    pub anthropic_env: Option<String>,
    /// The environment variable holding the real OpenAI key (proxy mode).
    #[serde(default)]
    pub openai_env: Option<String>,
    /// The proxy keys clients may present (proxy mode).
    #[serde(default)]
    pub clients: Vec<ClientKey>,
}

/// Whose key goes upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyMode {
    /// The client's own key.
    #[default]
    Passthrough,
    /// The gateway's key; clients present proxy keys.
    Proxy,
}

/// A proxy key a client may present.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientKey {
    /// The client's name (used for its `api_key` scope and in logs).
    pub name: String,
    /// The key.
    pub key: String,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// `[proxy.retry]`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Retries of an upstream 429, 529 or 5xx before it is passed on: 1 to 10 (default 2).
    #[serde(default = "default_retries")]
    pub max_retries: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: default_retries(),
        }
    }
}

fn default_max_body() -> usize {
    DEFAULT_MAX_BODY
}
fn default_grace() -> Duration {
    DEFAULT_SHUTDOWN_GRACE
}
fn default_hash_tag() -> String {
    "tollgate-proxy".to_owned()
}
fn default_retries() -> u32 {
    2
}
fn default_log() -> String {
    "info".to_owned()
}

impl Config {
    /// Reads and checks the configuration file at `path`.
    ///
    /// # Errors
    /// As [`Config::from_toml`], and `--config` when the file cannot be read.
    pub fn from_file(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("--config", format!("{}: {e}", path.display())))?;
        Config::from_toml(&text)
    }

    /// Parses and checks a configuration.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key: TOML that does not parse, an unknown key or a value of
    /// the wrong type; a missing `[proxy]` table or `listen`; an upstream that is not an
    /// `http(s)://host` URL (or none at all); a scope entry with not exactly one source, or a
    /// `header` without `kind`; a `max_body` of 0; retries not in 1 to 10; an unknown log level; in
    /// proxy mode, no client keys, an empty or repeated key, or an environment variable that is
    /// not set. The throttle's own rules are checked when its layer is built.
    ///
    /// ```
    /// let config = tollgate_proxy::Config::from_toml(r#"
    ///     [scopes.global]
    ///     requests_per_minute = 50
    ///     [proxy]
    ///     listen = "127.0.0.1:0"
    ///     upstream = { openai = "https://api.openai.com" }
    /// "#).unwrap();
    /// assert_eq!(config.proxy.retry.max_retries, 2);
    ///
    /// let err = tollgate_proxy::Config::from_toml(r#"
    ///     [proxy]
    ///     listen = "127.0.0.1:0"
    ///     upstream = { openai = "api.openai.com" }
    /// "#).unwrap_err();
    /// assert_eq!(err.key(), "proxy.upstream.openai");
    /// ```
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::new("toml", e.to_string()))?;
        let proxy = table
            .remove("proxy")
            .ok_or_else(|| ConfigError::new("proxy", "the [proxy] table is missing"))?;
        let proxy: ProxyConfig = proxy
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::new("proxy", e.message().to_owned()))?;
        let mut throttle: ThrottleConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::new("throttle", e.message().to_owned()))?;
        let call_log = throttle.call_log.take();
        proxy.check()?;
        if throttle.max_wait.is_none() {
            throttle.max_wait = Some(DEFAULT_MAX_WAIT);
        }
        Ok(Config {
            throttle,
            proxy,
            call_log,
        })
    }
}

impl ProxyConfig {
    fn check(&self) -> Result<(), ConfigError> {
        let ups = [
            ("proxy.upstream.anthropic", &self.upstream.anthropic),
            ("proxy.upstream.openai", &self.upstream.openai),
        ];
        if ups.iter().all(|(_, u)| u.is_none()) {
            return Err(ConfigError::new(
                "proxy.upstream",
                "name at least one of anthropic, openai",
            ));
        }
        for (key, url) in ups {
            if let Some(url) = url {
                crate::upstream::Base::parse(url).map_err(|m| ConfigError::new(key, m))?;
            }
        }
        for (i, s) in self.scopes.iter().enumerate() {
            let key = format!("proxy.scopes[{i}]");
            let sources = [s.header.is_some(), s.api_key.is_some(), s.fixed.is_some()];
            if sources.iter().filter(|&&b| b).count() != 1 {
                return Err(ConfigError::new(
                    key,
                    "give exactly one of header (with kind), api_key or fixed",
                ));
            }
            if s.header.is_some() != s.kind.is_some() {
                return Err(ConfigError::new(key, "header and kind go together"));
            }
            let names = [&s.header, &s.kind, &s.api_key, &s.fixed];
            if names
                .iter()
                .any(|n| n.as_deref().is_some_and(str::is_empty))
            {
                return Err(ConfigError::new(key, "an empty name"));
            }
            if let Some(h) = &s.header {
                http::HeaderName::try_from(h.as_str())
                    .map_err(|_| ConfigError::new(key, format!("`{h}` is not a header name")))?;
            }
        }
        if let Some(h) = &self.priority_header {
            http::HeaderName::try_from(h.as_str()).map_err(|_| {
                ConfigError::new(
                    "proxy.priority_header",
                    format!("`{h}` is not a header name"),
                )
            })?;
        }
        if self.max_body == 0 {
            return Err(ConfigError::new(
                "proxy.max_body",
                "must be at least 1 byte",
            ));
        }
        if !(1..=10).contains(&self.retry.max_retries) {
            return Err(ConfigError::new(
                "proxy.retry.max_retries",
                format!(
                    "1 to 10 (the gateway's retries keep upstream 429s from the clients), got {}",
                    self.retry.max_retries
                ),
            ));
        }
        if crate::log_level(&self.log).is_none() {
            return Err(ConfigError::new(
                "proxy.log",
                format!("`{}`: use error, warn, info, debug or trace", self.log),
            ));
        }
        if let Some(url) = &self.redis_url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(ConfigError::new(
                    "proxy.redis_url",
                    "must start with redis:// or rediss://",
                ));
            }
        }
        self.keys.check(&self.upstream)
    }
}

impl KeysConfig {
    fn check(&self, upstream: &Upstreams) -> Result<(), ConfigError> {
        if self.mode == KeyMode::Passthrough {
            return Ok(());
        }
        if self.clients.is_empty() {
            return Err(ConfigError::new(
                "proxy.keys.clients",
                "proxy mode needs at least one client key",
            ));
        }
        for (i, c) in self.clients.iter().enumerate() {
            if c.key.is_empty() || c.name.is_empty() {
                return Err(ConfigError::new(
                    format!("proxy.keys.clients[{i}]"),
                    "an empty name or key",
                ));
            }
            if self.clients[..i].iter().any(|o| o.key == c.key) {
                return Err(ConfigError::new(
                    format!("proxy.keys.clients[{i}]"),
                    format!("the key of `{}` is given twice", c.name),
                ));
            }
        }
        let envs = [
            (
                "proxy.keys.anthropic_env",
                &self.anthropic_env,
                &upstream.anthropic,
            ),
            ("proxy.keys.openai_env", &self.openai_env, &upstream.openai),
        ];
        for (key, env, up) in envs {
            match (env, up) {
                (Some(var), Some(_)) => match std::env::var(var) {
                    Ok(v) if !v.is_empty() => {}
                    _ => {
                        return Err(ConfigError::new(
                            key,
                            format!("the environment variable `{var}` is not set"),
                        ))
                    }
                },
                (None, Some(_)) => {
                    return Err(ConfigError::new(
                        key,
                        "proxy mode needs the variable holding this provider's key",
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
        max_wait = "5s"
        [scopes.global]
        requests_per_minute = 50
        [proxy]
        listen = "127.0.0.1:0"
        upstream = { anthropic = "https://api.anthropic.com", openai = "http://127.0.0.1:9/v1" }
    "#;

    fn err(extra: &str) -> ConfigError {
        Config::from_toml(&format!("{BASE}{extra}")).unwrap_err()
    }

    #[test]
    fn a_full_config_parses_with_defaults() {
        let c = Config::from_toml(BASE).unwrap();
        assert_eq!(c.proxy.max_body, DEFAULT_MAX_BODY);
        assert_eq!(c.proxy.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
        assert_eq!(c.proxy.keys.mode, KeyMode::Passthrough);
        assert_eq!(c.throttle.max_wait, Some(Duration::from_secs(5)));
        assert!(c.throttle.scopes.contains_key("global"));
    }

    #[test]
    fn each_bad_value_names_its_key() {
        assert_eq!(err("max_body = 0").key(), "proxy.max_body");
        assert_eq!(err("log = \"loud\"").key(), "proxy.log");
        assert_eq!(err("redis_url = \"http://x\"").key(), "proxy.redis_url");
        assert_eq!(
            err("[proxy.retry]\nmax_retries = 11").key(),
            "proxy.retry.max_retries"
        );
        assert_eq!(
            err("[[proxy.scopes]]\nheader = \"x-a\"").key(),
            "proxy.scopes[0]"
        );
        assert_eq!(
            err("[[proxy.scopes]]\nfixed = \"a\"\napi_key = \"k\"").key(),
            "proxy.scopes[0]"
        );
        assert_eq!(
            err("[proxy.keys]\nmode = \"proxy\"").key(),
            "proxy.keys.clients"
        );
        let e = err(
            "[proxy.keys]\nmode = \"proxy\"\nanthropic_env = \"TOLLGATE_TEST_UNSET_1\"\n\
             openai_env = \"TOLLGATE_TEST_UNSET_2\"\nclients = [{ name = \"a\", key = \"k\" }]",
        );
        assert_eq!(e.key(), "proxy.keys.anthropic_env");
        assert!(e.to_string().contains("TOLLGATE_TEST_UNSET_1"), "{e}");
    }

    #[test]
    fn unknown_keys_and_missing_tables_are_named() {
        assert_eq!(err("colour = 1").key(), "proxy");
        let e = Config::from_toml("[scopes.global]\nrequests_per_minute = 5").unwrap_err();
        assert_eq!(e.key(), "proxy");
        let e = Config::from_toml(&format!("bogus = 1\n{BASE}")).unwrap_err();
        assert_eq!(e.key(), "throttle");
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn a_client_key_never_shows_in_debug_output() {
        let c = Config::from_toml(&format!(
            "{BASE}[proxy.keys]\nclients = [{{ name = \"a\", key = \"sk-secret-42\" }}]"
        ))
        .unwrap();
        assert!(!format!("{c:?}").contains("sk-secret-42"));
    }
}
