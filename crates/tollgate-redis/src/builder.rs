//! [`RedisStoreBuilder`]: the settings of a [`RedisStore`], checked once at build time.

use crate::store::{Inner, Settings};
use crate::{Error, RedisStore};
use redis::aio::ConnectionManagerConfig;
use std::time::Duration;

/// What the store does while Redis cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FailMode {
    /// Keep admitting calls through a limiter in this process whose rates, bursts and concurrency
    /// caps are `fraction` of the configured ones (at least one unit each). With `N` processes
    /// sharing the limit, `1/N` keeps the fleet within it while Redis is away. A call larger than
    /// `fraction` of a burst cannot be admitted meanwhile: it fails as never fitting.
    Open {
        /// The share of every limit each process keeps, in `(0, 1]`.
        fraction: f64,
    },
    /// Refuse calls with an [`Error`] (the layer turns it into a `ThrottleError` with
    /// `is_store()`).
    Closed,
}

impl Default for FailMode {
    /// `Open { fraction: 0.5 }`.
    fn default() -> Self {
        FailMode::Open { fraction: 0.5 }
    }
}

/// Builds a [`RedisStore`]: `RedisStore::builder(url)`, setters, then `build().await`.
///
/// Defaults: prefix `tollgate`, hash tag `default`, [`FailMode::Open`] at half the limits,
/// timeout 100 ms, reservation TTL 30 s, probe interval 1 s, poll interval 50 ms.
///
/// ```no_run
/// use std::time::Duration;
/// use tollgate_redis::{FailMode, RedisStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tollgate_redis::Error> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379")
///     .prefix("myapp")
///     .hash_tag("openai-org-1")
///     .fail_mode(FailMode::Open { fraction: 0.25 })
///     .timeout(Duration::from_millis(50))
///     .reservation_ttl(Duration::from_secs(300))
///     .build()
///     .await?;
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    tag: String,
    fail: FailMode,
    timeout: Duration,
    ttl: Duration,
    spend_ttl: Duration,
    probe: Duration,
    poll: Duration,
}

/// The longest duration a setting may have.
const MAX_DURATION: Duration = Duration::from_secs(30 * 86_400);

impl RedisStoreBuilder {
    pub(crate) fn new(url: impl Into<String>) -> Self {
        RedisStoreBuilder {
            url: url.into(),
            prefix: "tollgate".into(),
            tag: "default".into(),
            fail: FailMode::default(),
            timeout: Duration::from_millis(100),
            ttl: Duration::from_secs(30),
            spend_ttl: Duration::from_secs(600),
            probe: Duration::from_secs(1),
            poll: Duration::from_millis(50),
        }
    }

    /// The start of every key (default `tollgate`). Without `{` or `}`.
    ///
    /// ```
    /// let b = tollgate_redis::RedisStore::builder("redis://127.0.0.1").prefix("staging:tollgate");
    /// # let _ = b;
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The Redis Cluster hash tag every key of the store carries (default `default`), so that one
    /// script can touch all the scopes of a call. Use one tag per provider key (or organisation):
    /// the processes that share that key share its limits. Without `{` or `}`.
    ///
    /// ```
    /// let b = tollgate_redis::RedisStore::builder("redis://127.0.0.1").hash_tag("anthropic-key-2");
    /// # let _ = b;
    /// ```
    pub fn hash_tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = tag.into();
        self
    }

    /// What happens to calls while Redis cannot be reached (default: [`FailMode::Open`] at half
    /// the limits).
    ///
    /// ```
    /// use tollgate_redis::{FailMode, RedisStore};
    /// let b = RedisStore::builder("redis://127.0.0.1").fail_mode(FailMode::Closed);
    /// # let _ = b;
    /// ```
    pub fn fail_mode(mut self, mode: FailMode) -> Self {
        self.fail = mode;
        self
    }

    /// The longest an admission waits for Redis (default 100 ms), also the connection timeout and
    /// the timeout of the first connection at build time. After it the fail mode applies.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = tollgate_redis::RedisStore::builder("redis://127.0.0.1").timeout(Duration::from_millis(20));
    /// # let _ = b;
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long concurrency slots outlive the process that holds them (default 30 s). While a
    /// call runs, its process refreshes its slots every third of the TTL, so calls may run as
    /// long as they like; a process that dies (or an admission whose reply was lost) gives its
    /// slots back at most one TTL after its last refresh. A call whose settle never comes keeps
    /// its estimate charged. Shorter gives slots back sooner; it must stay well above the time a
    /// refresh can be late (a busy runtime, a Redis failover).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = tollgate_redis::RedisStore::builder("redis://127.0.0.1").reservation_ttl(Duration::from_secs(120));
    /// # let _ = b;
    /// ```
    pub fn reservation_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long a spend reservation ([`RedisLedger`](crate::RedisLedger)) outlives the process
    /// that holds it (default 10 minutes). While its call waits and runs, the process renews it
    /// every third of the TTL (all of its reservations in one round trip), so calls may wait and
    /// run as long as they like; a process that dies (or drops its store, or whose reservation
    /// reply was lost) frees the money at most one TTL after its last renewal. Shorter frees it
    /// sooner; it must stay well above the time a renewal can be late (a busy runtime, a Redis
    /// failover): a reservation not renewed in time is given back while its call still runs
    /// (its real cost still counts when it settles, but its estimate was free for others, so the
    /// cap may be passed by that call's cost).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = tollgate_redis::RedisStore::builder("redis://127.0.0.1").spend_reservation_ttl(Duration::from_secs(1800));
    /// # let _ = b;
    /// ```
    pub fn spend_reservation_ttl(mut self, ttl: Duration) -> Self {
        self.spend_ttl = ttl;
        self
    }

    /// After Redis failed, how long calls take the fail mode without asking Redis before one call
    /// probes it again (default 1 s). Settles that failed (after their quick retries, see
    /// [`RedisLedger`](crate::RedisLedger)) are retried at this interval too.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = tollgate_redis::RedisStore::builder("redis://127.0.0.1").probe_interval(Duration::from_millis(200));
    /// # let _ = b;
    /// ```
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.probe = interval;
        self
    }

    /// How often a call refused by a concurrency cap asks again (default 50 ms): a slot may be
    /// given back by another process, which this one is not told of.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = tollgate_redis::RedisStore::builder("redis://127.0.0.1").poll_interval(Duration::from_millis(10));
    /// # let _ = b;
    /// ```
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll = interval;
        self
    }

    /// Checks the settings, connects, and registers this process with the store.
    ///
    /// # Errors
    /// * [`Error::is_invalid_config`]: an empty prefix or hash tag, or one with `{` or `}`; a
    ///   fraction outside `(0, 1]`; a zero timeout, TTL, probe or poll interval.
    /// * [`Error::is_invalid_url`]: the URL cannot be parsed.
    /// * [`Error::is_unreachable`]: no Redis answered within the timeout.
    pub async fn build(self) -> Result<RedisStore, Error> {
        self.validate()?;
        let client =
            redis::Client::open(self.url.as_str()).map_err(|e| Error::invalid_url(&self.url, e))?;
        // One plain connection first: a refused or unknown address is reported as such instead
        // of as the timeout of the manager's reconnect loop.
        let mut probe =
            match tokio::time::timeout(self.timeout, client.get_multiplexed_async_connection())
                .await
            {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Err(Error::unreachable(&self.url, Some(e), self.timeout)),
                Err(_) => return Err(Error::unreachable(&self.url, None, self.timeout)),
            };
        let keys = crate::script::Keys::new(&self.prefix, &self.tag);
        // This process's name in reservation ids: a counter, unique while it lives (it expires a
        // day after the last process registered), and the server's time, unique after that.
        let register = redis::Script::new(
            "local n = redis.call('INCR', KEYS[1]) redis.call('EXPIRE', KEYS[1], 86400) \
             local t = redis.call('TIME') return {n, tonumber(t[1]), tonumber(t[2])}",
        );
        let client_id: String = match tokio::time::timeout(
            self.timeout,
            register
                .key(keys.clients())
                .invoke_async::<(u64, u64, u64)>(&mut probe),
        )
        .await
        {
            Ok(Ok((n, secs, micros))) => format!("{n}@{secs}.{micros:06}"),
            Ok(Err(e)) => return Err(Error::unreachable(&self.url, Some(e), self.timeout)),
            Err(_) => return Err(Error::unreachable(&self.url, None, self.timeout)),
        };
        drop(probe);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(self.probe.max(Duration::from_millis(50)));
        let conn = match tokio::time::timeout(
            self.timeout,
            redis::aio::ConnectionManager::new_with_config(client, config),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(Error::unreachable(&self.url, Some(e), self.timeout)),
            Err(_) => return Err(Error::unreachable(&self.url, None, self.timeout)),
        };
        tracing::debug!(client = client_id, prefix = %self.prefix, tag = %self.tag, "redis store connected");
        let settings = Settings {
            fail: self.fail,
            timeout: self.timeout,
            ttl: self.ttl,
            spend_ttl: self.spend_ttl,
            probe: self.probe,
            poll: self.poll,
        };
        Ok(RedisStore::from_inner(Inner::new(
            conn, keys, client_id, settings,
        )))
    }

    fn validate(&self) -> Result<(), Error> {
        for (what, v) in [("prefix", &self.prefix), ("hash tag", &self.tag)] {
            if v.is_empty() || v.contains(['{', '}']) {
                return Err(Error::invalid_config(format!(
                    "the {what} must be non-empty and without `{{` or `}}`, got `{v}`"
                )));
            }
        }
        if let FailMode::Open { fraction } = self.fail {
            if !(fraction.is_finite() && fraction > 0.0 && fraction <= 1.0) {
                return Err(Error::invalid_config(format!(
                    "the fail-open fraction must be in (0, 1], got {fraction}"
                )));
            }
        }
        for (what, d) in [
            ("timeout", self.timeout),
            ("reservation TTL", self.ttl),
            ("spend reservation TTL", self.spend_ttl),
            ("probe interval", self.probe),
            ("poll interval", self.poll),
        ] {
            if d.is_zero() {
                return Err(Error::invalid_config(format!(
                    "the {what} must not be zero"
                )));
            }
            // Times are added to clocks and sent to Redis in milliseconds: keep them sane.
            if d > MAX_DURATION {
                return Err(Error::invalid_config(format!(
                    "the {what} must be at most 30 days, got {d:?}"
                )));
            }
        }
        if self.ttl.min(self.spend_ttl) < Duration::from_millis(1) {
            return Err(Error::invalid_config(
                "a reservation TTL must be at least 1 ms",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(b: RedisStoreBuilder) -> Result<(), Error> {
        b.validate()
    }

    #[test]
    fn every_rule_is_checked_before_connecting() {
        let b = || RedisStoreBuilder::new("redis://127.0.0.1:1");
        assert!(check(b()).is_ok());
        assert!(check(b().prefix("")).unwrap_err().is_invalid_config());
        assert!(check(b().hash_tag("a}b")).unwrap_err().is_invalid_config());
        assert!(check(b().prefix("x{y")).unwrap_err().is_invalid_config());
        for fraction in [0.0, -1.0, 1.5, f64::NAN] {
            let e = check(b().fail_mode(FailMode::Open { fraction })).unwrap_err();
            assert!(e.is_invalid_config(), "{fraction}");
        }
        assert!(check(b().fail_mode(FailMode::Open { fraction: 1.0 })).is_ok());
        assert!(check(b().timeout(Duration::ZERO))
            .unwrap_err()
            .is_invalid_config());
        assert!(check(b().spend_reservation_ttl(Duration::from_secs(u64::MAX))).is_err());
        assert!(check(b().reservation_ttl(Duration::from_secs(31 * 86_400))).is_err());
        assert!(check(b().timeout(Duration::MAX)).is_err());
        assert!(check(b().reservation_ttl(Duration::from_micros(10)))
            .unwrap_err()
            .is_invalid_config());
        assert!(check(b().probe_interval(Duration::ZERO))
            .unwrap_err()
            .is_invalid_config());
        assert!(check(b().poll_interval(Duration::ZERO))
            .unwrap_err()
            .is_invalid_config());
    }
}
