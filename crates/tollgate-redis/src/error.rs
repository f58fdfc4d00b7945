//! [`Error`]: why the Redis store could not be built, or could not answer.

use std::fmt;
use std::time::Duration;

/// An error of the Redis store.
///
/// At build time ([`RedisStoreBuilder::build`](crate::RedisStoreBuilder::build)): a malformed URL,
/// a server that cannot be reached, or an invalid setting. While running, with
/// [`FailMode::Closed`](crate::FailMode::Closed): Redis failed, timed out or is known to be away.
/// The layer wraps a running error in [`tollgate::ThrottleError`] (`is_store()`); find this one
/// through [`std::error::Error::source`]:
///
/// ```
/// # use tollgate::ThrottleError;
/// use std::error::Error as _;
///
/// fn redis_cause(err: &ThrottleError) -> Option<&tollgate_redis::Error> {
///     err.source()?.source()?.downcast_ref()
/// }
/// # let _ = redis_cause;
/// ```
#[derive(Debug)]
pub struct Error {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    InvalidUrl {
        url: String,
        source: redis::RedisError,
    },
    Unreachable {
        url: String,
        source: Option<redis::RedisError>,
        timeout: Duration,
    },
    InvalidConfig(String),
    Timeout(Duration),
    Redis(redis::RedisError),
    Unavailable,
    Reply(String),
}

impl Error {
    pub(crate) fn invalid_url(url: &str, source: redis::RedisError) -> Self {
        Error {
            kind: Kind::InvalidUrl {
                url: redact(url),
                source,
            },
        }
    }

    pub(crate) fn unreachable(
        url: &str,
        source: Option<redis::RedisError>,
        timeout: Duration,
    ) -> Self {
        Error {
            kind: Kind::Unreachable {
                url: redact(url),
                source,
                timeout,
            },
        }
    }

    pub(crate) fn invalid_config(msg: impl Into<String>) -> Self {
        Error {
            kind: Kind::InvalidConfig(msg.into()),
        }
    }

    pub(crate) fn timeout(after: Duration) -> Self {
        Error {
            kind: Kind::Timeout(after),
        }
    }

    pub(crate) fn redis(e: redis::RedisError) -> Self {
        Error {
            kind: Kind::Redis(e),
        }
    }

    pub(crate) fn unavailable() -> Self {
        Error {
            kind: Kind::Unavailable,
        }
    }

    pub(crate) fn reply(msg: impl Into<String>) -> Self {
        Error {
            kind: Kind::Reply(msg.into()),
        }
    }

    /// The URL could not be parsed (found at build time).
    pub fn is_invalid_url(&self) -> bool {
        matches!(self.kind, Kind::InvalidUrl { .. })
    }

    /// The server did not answer at build time (refused, unknown host, or no answer within the
    /// timeout).
    pub fn is_unreachable(&self) -> bool {
        matches!(self.kind, Kind::Unreachable { .. })
    }

    /// A setting of the builder is out of range (found at build time).
    pub fn is_invalid_config(&self) -> bool {
        matches!(self.kind, Kind::InvalidConfig(_))
    }

    /// Redis did not answer within the store's timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout(_))
    }

    /// A failure that may pass on its own: no reply within the timeout, or the connection broke
    /// (dropped, refused, an I/O error). A write that is safe to repeat is retried after one.
    pub(crate) fn is_transient(&self) -> bool {
        match &self.kind {
            Kind::Timeout(_) => true,
            Kind::Redis(e) => {
                e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()
                    || e.is_unrecoverable_error()
            }
            _ => false,
        }
    }

    /// Redis is known to be away and the store fails closed: the call was refused without asking
    /// it (it is asked again after the probe interval).
    pub fn is_unavailable(&self) -> bool {
        matches!(self.kind, Kind::Unavailable)
    }
}

/// The URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::InvalidUrl { url, source } => {
                write!(f, "`{url}` is not a redis URL: {source}")
            }
            Kind::Unreachable {
                url,
                source: Some(source),
                ..
            } => write!(f, "redis at `{url}` is unreachable: {source}"),
            Kind::Unreachable {
                url,
                source: None,
                timeout,
            } => write!(f, "redis at `{url}` did not answer within {timeout:?}"),
            Kind::InvalidConfig(msg) => write!(f, "invalid redis store setting: {msg}"),
            Kind::Timeout(after) => write!(f, "redis did not answer within {after:?}"),
            Kind::Redis(e) => write!(f, "redis failed: {e}"),
            Kind::Unavailable => write!(
                f,
                "redis is unreachable and the store fails closed (it is probed again shortly)"
            ),
            Kind::Reply(msg) => write!(f, "unexpected reply from a redis script: {msg}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::InvalidUrl { source, .. } => Some(source),
            Kind::Unreachable {
                source: Some(source),
                ..
            } => Some(source),
            Kind::Redis(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_an_error_message() {
        assert_eq!(
            redact("redis://user:secret@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact("redis://:pw@h"), "redis://:***@h");
    }
}
