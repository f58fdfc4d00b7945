//! Reading providers' answers: retry delays and rate-limit headers of Anthropic and OpenAI, and
//! [`HttpClassifier`] for `http::Response`s.

use super::{Classify, Feedback, Outcome, ProviderLimit};
use crate::Dimension;
use http::{HeaderMap, HeaderName};
use smallvec::SmallVec;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
const RETRY_AFTER: HeaderName = HeaderName::from_static("retry-after");

fn header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    // Callers pass constants: `HeaderName::from_static` runs at compile time there, and the
    // lookup hashes a name that is already parsed.
    ascii(name, headers.get(name)?)
}

/// A header's value, trimmed; `None` with a warning when it is not visible ASCII.
fn ascii<'a>(name: &HeaderName, value: &'a http::HeaderValue) -> Option<&'a str> {
    match value.to_str() {
        Ok(s) => Some(s.trim()),
        Err(_) => {
            tracing::warn!(
                header = name.as_str(),
                "ignoring a header that is not visible ASCII"
            );
            None
        }
    }
}

/// Seconds as a non-negative, finite decimal number, at most `max`.
fn seconds(s: &str, max: Duration) -> Option<Duration> {
    let v: f64 = s.parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| secs_at_most(v, max))
}

/// `secs` (finite, not negative) seconds, or `max` when that is shorter.
fn secs_at_most(secs: f64, max: Duration) -> Duration {
    if secs >= max.as_secs_f64() {
        max
    } else {
        // `abs`: `-0.0` is zero.
        Duration::from_secs_f64(secs.abs())
    }
}

/// The provider's retry delay: `retry-after-ms` (milliseconds) wins over `retry-after`, which is
/// seconds or an HTTP date (measured from `now`). A malformed value is ignored with a warning; a
/// date in the past is a delay of zero; a delay longer than
/// [`DEFAULT_MAX_PROVIDER_DELAY`](crate::DEFAULT_MAX_PROVIDER_DELAY) (24 h) is cut to it (an
/// [`HttpClassifier`] cuts to its [`max_delay`](HttpClassifier::max_delay)).
///
/// ```
/// use http::HeaderMap;
/// use std::time::{Duration, SystemTime};
/// use tollgate::feedback::retry_delay;
///
/// let mut h = HeaderMap::new();
/// h.insert("retry-after", "7".parse().unwrap());
/// assert_eq!(retry_delay(&h, SystemTime::UNIX_EPOCH), Some(Duration::from_secs(7)));
/// h.insert("retry-after-ms", "1500".parse().unwrap());
/// assert_eq!(retry_delay(&h, SystemTime::UNIX_EPOCH), Some(Duration::from_millis(1500)));
/// h.insert("retry-after-ms", "1e15".parse().unwrap());
/// assert_eq!(retry_delay(&h, SystemTime::UNIX_EPOCH), Some(Duration::from_secs(86_400)));
/// ```
pub fn retry_delay(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    delay_of(
        header(headers, &RETRY_AFTER_MS),
        header(headers, &RETRY_AFTER),
        now,
        crate::DEFAULT_MAX_PROVIDER_DELAY,
    )
}

/// The retry delay of the values of `retry-after-ms` and `retry-after`, as [`retry_delay`] reads
/// them, at most `max`.
fn delay_of(
    ms: Option<&str>,
    ra: Option<&str>,
    now: SystemTime,
    max: Duration,
) -> Option<Duration> {
    if let Some(ms) = ms {
        match ms.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => return Some(secs_at_most(v / 1000.0, max)),
            _ => tracing::warn!(value = ms, "ignoring a malformed retry-after-ms header"),
        }
    }
    let ra = ra?;
    if let Some(d) = seconds(ra, max) {
        return Some(d);
    }
    match httpdate::parse_http_date(ra) {
        Ok(at) => Some(at.duration_since(now).unwrap_or(Duration::ZERO).min(max)),
        Err(_) => {
            tracing::warn!(value = ra, "ignoring a malformed retry-after header");
            None
        }
    }
}

/// Parses a duration as OpenAI's `x-ratelimit-reset-*` headers write it: numbers with units
/// `h`, `m`, `s`, `ms`, `us`/`µs`, `ns`, one after another (`1s`, `6m0s`, `120ms`, `1.5s`).
///
/// ```
/// use std::time::Duration;
/// use tollgate::feedback::parse_go_duration;
///
/// assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
/// assert_eq!(parse_go_duration("120ms"), Some(Duration::from_millis(120)));
/// assert_eq!(parse_go_duration("1h2m3.5s"), Some(Duration::from_secs_f64(3723.5)));
/// assert_eq!(parse_go_duration("soon"), None);
/// ```
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += value * scale;
    }
    (total.is_finite() && total <= 1e9).then(|| Duration::from_secs_f64(total))
}

/// The rate-limit headers of one answer, in both providers' families.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProviderHeaders;

impl ProviderHeaders {
    /// The limits reported in `headers`: Anthropic's
    /// `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}`
    /// (reset is an RFC 3339 time, measured from `now`) and OpenAI's
    /// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (reset is a duration). A limit
    /// whose `remaining` is missing or malformed is skipped with a warning; a reset longer than
    /// [`DEFAULT_MAX_PROVIDER_DELAY`](crate::DEFAULT_MAX_PROVIDER_DELAY) (24 h) is cut to it.
    ///
    /// ```
    /// use http::HeaderMap;
    /// use std::time::SystemTime;
    /// use tollgate::{Dimension, feedback::ProviderHeaders};
    ///
    /// let mut h = HeaderMap::new();
    /// h.insert("x-ratelimit-limit-requests", "60".parse().unwrap());
    /// h.insert("x-ratelimit-remaining-requests", "59".parse().unwrap());
    /// h.insert("x-ratelimit-reset-requests", "1s".parse().unwrap());
    /// let limits = ProviderHeaders::parse(&h, SystemTime::UNIX_EPOCH);
    /// assert_eq!((limits[0].dimension, limits[0].remaining), (Dimension::Requests, 59));
    /// ```
    pub fn parse(headers: &HeaderMap, now: SystemTime) -> SmallVec<[ProviderLimit; 4]> {
        Scan::of(headers).limits(now, crate::DEFAULT_MAX_PROVIDER_DELAY)
    }
}

/// The headers of one answer that the classifier reads, found in one pass over them (instead of
/// a hashed lookup per name); the first value of each wins.
#[derive(Default)]
struct Scan<'a> {
    /// Each rate-limit group's `[limit, remaining, reset]`.
    rate: [[Option<&'a str>; 3]; GROUPS.len()],
    retry_after_ms: Option<&'a str>,
    retry_after: Option<&'a str>,
    should_retry: Option<&'a str>,
    /// Whether the answer has a retry delay or a limit's `remaining`, readable or not: a 429 with
    /// either is a rate limit, not a spend cap.
    pushed_back: bool,
}

impl<'a> Scan<'a> {
    fn of(headers: &'a HeaderMap) -> Self {
        let mut scan = Scan::default();
        for (name, value) in headers {
            let slot = match name.as_str() {
                "retry-after-ms" => {
                    scan.pushed_back = true;
                    &mut scan.retry_after_ms
                }
                "retry-after" => {
                    scan.pushed_back = true;
                    &mut scan.retry_after
                }
                "x-should-retry" => &mut scan.should_retry,
                n => match rate_limit_header(n) {
                    Some((group, field)) => {
                        scan.pushed_back |= field == REMAINING;
                        &mut scan.rate[group][field]
                    }
                    None => continue,
                },
            };
            if slot.is_none() {
                *slot = ascii(name, value);
            }
        }
        scan
    }

    /// The rate limits reported, resets measured from `now` and at most `max`.
    fn limits(&self, now: SystemTime, max: Duration) -> SmallVec<[ProviderLimit; 4]> {
        let mut out = SmallVec::new();
        for (&(family, dimension), &[limit, remaining, reset]) in GROUPS.iter().zip(&self.rate) {
            // Anthropic writes a reset as the RFC 3339 time the bucket is full again; OpenAI as
            // the duration until then.
            let reset = reset.and_then(|r| {
                let d = match family {
                    Family::Anthropic => humantime::parse_rfc3339(r)
                        .ok()
                        .map(|at| at.duration_since(now).unwrap_or(Duration::ZERO)),
                    Family::OpenAi => parse_go_duration(r),
                };
                if d.is_none() {
                    tracing::warn!(%dimension, value = r, "ignoring a malformed reset");
                }
                d.map(|d| d.min(max))
            });
            push(&mut out, dimension, limit, remaining, reset);
        }
        out
    }
}

#[derive(Clone, Copy)]
enum Family {
    Anthropic,
    OpenAi,
}

/// The rate-limit groups, in the order their limits are reported.
const GROUPS: [(Family, Dimension); 6] = [
    (Family::Anthropic, Dimension::Requests),
    (Family::Anthropic, Dimension::TotalTokens),
    (Family::Anthropic, Dimension::InputTokens),
    (Family::Anthropic, Dimension::OutputTokens),
    (Family::OpenAi, Dimension::Requests),
    (Family::OpenAi, Dimension::TotalTokens),
];

/// The field of a limit's `remaining` header.
const REMAINING: usize = 1;

/// `(group, field)` of a rate-limit header name (field 0 limit, 1 remaining, 2 reset):
/// `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}` or
/// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`.
fn rate_limit_header(name: &str) -> Option<(usize, usize)> {
    let field = |f: &str| match f {
        "limit" => Some(0),
        "remaining" => Some(1),
        "reset" => Some(2),
        _ => None,
    };
    if let Some(rest) = name.strip_prefix("anthropic-ratelimit-") {
        let (dimension, f) = rest.rsplit_once('-')?;
        let group = match dimension {
            "requests" => 0,
            "tokens" => 1,
            "input-tokens" => 2,
            "output-tokens" => 3,
            _ => return None,
        };
        return Some((group, field(f)?));
    }
    let rest = name.strip_prefix("x-ratelimit-")?;
    let (f, dimension) = rest.split_once('-')?;
    let group = match dimension {
        "requests" => 4,
        "tokens" => 5,
        _ => return None,
    };
    Some((group, field(f)?))
}

fn push(
    out: &mut SmallVec<[ProviderLimit; 4]>,
    dimension: Dimension,
    limit: Option<&str>,
    remaining: Option<&str>,
    reset_in: Option<Duration>,
) {
    let Some(remaining) = remaining else { return };
    let Ok(remaining) = remaining.parse::<u64>() else {
        tracing::warn!(%dimension, value = remaining, "ignoring a malformed remaining header");
        return;
    };
    let limit = limit.and_then(|l| {
        let v = l.parse::<u64>().ok();
        if v.is_none() {
            tracing::warn!(%dimension, value = l, "ignoring a malformed limit header");
        }
        v
    });
    out.push(ProviderLimit {
        dimension,
        limit,
        remaining,
        reset_in,
    });
}

/// Classifies `http::Response`s with Anthropic's and OpenAI's semantics, so the layer works on
/// hyper- and reqwest-style clients as they are:
///
/// | answer | outcome |
/// |---|---|
/// | 2xx, 1xx, 3xx | [`Outcome::Success`] |
/// | 429 with a retry delay (`retry-after-ms`, `retry-after`) | [`Outcome::RateLimited`] |
/// | 429 without one, with a rate-limit header showing 0 remaining | [`Outcome::RateLimited`], delay = that limit's reset |
/// | 429 with a retry delay or a `remaining` header that cannot be read | [`Outcome::RateLimited`] without a delay: the layer's computed cooldown applies |
/// | 429 without any of these headers (Anthropic's spend cap) | [`Outcome::SpendCapReached`] |
/// | 529, 503 | [`Outcome::Overloaded`] |
/// | 408, 409, other 5xx, a transport error | [`Outcome::Transient`] |
/// | other 4xx | [`Outcome::Fatal`] |
///
/// `x-should-retry: true` turns a fatal answer transient, `x-should-retry: false` turns any
/// failure fatal (and a 429 into [`Outcome::SpendCapReached`]), as the official SDKs read it.
/// HTTP dates and RFC 3339 resets are measured from the classifier's wall clock: the system clock
/// by default, any other with [`with_clock`](Self::with_clock). Every delay and reset is at most
/// [`max_delay`](Self::max_delay) (24 h by default).
///
/// ```
/// use tollgate::feedback::{Classify, HttpClassifier, Outcome};
/// use std::time::Duration;
///
/// let res = http::Response::builder().status(429).header("retry-after", "7").body(()).unwrap();
/// let fb = HttpClassifier::new().classify(Ok::<_, &std::io::Error>(&res));
/// assert_eq!(fb.outcome, Outcome::RateLimited { retry_after: Some(Duration::from_secs(7)) });
/// ```
///
/// # Clone
///
/// A clone shares the original's clock (a custom clock is held in an `Arc`).
#[derive(Clone, Debug)]
pub struct HttpClassifier {
    now: Clock,
    max_delay: Duration,
}

/// The wall clock of a classifier.
#[derive(Clone)]
enum Clock {
    System,
    Custom(Arc<dyn Fn() -> SystemTime + Send + Sync>),
}

impl Clock {
    fn now(&self) -> SystemTime {
        match self {
            Clock::System => system_now(),
            Clock::Custom(now) => now(),
        }
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Clock::System => "System",
            Clock::Custom(_) => "Custom",
        })
    }
}

impl Default for HttpClassifier {
    fn default() -> Self {
        HttpClassifier::new()
    }
}

#[allow(clippy::disallowed_methods)]
fn system_now() -> SystemTime {
    // Wall time is meant here: HTTP dates and RFC 3339 resets are wall-clock times.
    SystemTime::now()
}

impl HttpClassifier {
    /// A classifier on the system clock.
    pub fn new() -> Self {
        HttpClassifier {
            now: Clock::System,
            max_delay: crate::DEFAULT_MAX_PROVIDER_DELAY,
        }
    }

    /// A classifier whose wall clock is `now`, called once per answer classified: a function or a
    /// closure, for tests and simulations whose time is not the system's.
    ///
    /// ```
    /// use tollgate::feedback::{HttpClassifier, Outcome};
    /// use std::time::{Duration, SystemTime};
    ///
    /// // A clock that stands at 2026-01-01T00:00:00Z.
    /// let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    /// let c = HttpClassifier::with_clock(move || start);
    /// let mut h = http::HeaderMap::new();
    /// h.insert("retry-after", "Thu, 01 Jan 2026 00:00:30 GMT".parse().unwrap());
    /// let fb = c.classify_parts(http::StatusCode::TOO_MANY_REQUESTS, &h);
    /// assert_eq!(fb.outcome, Outcome::RateLimited { retry_after: Some(Duration::from_secs(30)) });
    /// ```
    pub fn with_clock(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        HttpClassifier {
            now: Clock::Custom(Arc::new(now)),
            max_delay: crate::DEFAULT_MAX_PROVIDER_DELAY,
        }
    }

    /// The longest retry delay or reset the classifier reports (default
    /// [`DEFAULT_MAX_PROVIDER_DELAY`](crate::DEFAULT_MAX_PROVIDER_DELAY), 24 h); a longer one is
    /// cut to it. The layer cuts every delay to its own
    /// [`max_provider_delay`](crate::ThrottleBuilder::max_provider_delay) as well; this one
    /// matters to whoever reads the outcomes directly, such as a
    /// [`RetryPolicy`](crate::retry::RetryPolicy). Zero reports every delay as zero.
    ///
    /// ```
    /// use tollgate::feedback::{HttpClassifier, Outcome};
    /// use std::time::Duration;
    ///
    /// let c = HttpClassifier::new().max_delay(Duration::from_secs(600));
    /// let mut h = http::HeaderMap::new();
    /// h.insert("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT".parse().unwrap());
    /// let fb = c.classify_parts(http::StatusCode::TOO_MANY_REQUESTS, &h);
    /// assert_eq!(fb.outcome, Outcome::RateLimited { retry_after: Some(Duration::from_secs(600)) });
    /// ```
    #[must_use]
    pub fn max_delay(mut self, max: Duration) -> Self {
        self.max_delay = max;
        self
    }

    /// Classifies status and headers.
    pub fn classify_parts(&self, status: http::StatusCode, headers: &HeaderMap) -> Feedback {
        let now = self.now.now();
        let scan = Scan::of(headers);
        let limits = scan.limits(now, self.max_delay);
        let delay = delay_of(scan.retry_after_ms, scan.retry_after, now, self.max_delay);
        let should_retry = match scan.should_retry {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => None,
        };
        let code = status.as_u16();
        let outcome = match code {
            _ if !is_failure(status) => Outcome::Success,
            429 if should_retry == Some(false) => Outcome::SpendCapReached,
            429 => match delay.or_else(|| exhausted_reset(&limits)) {
                Some(d) => Outcome::RateLimited {
                    retry_after: Some(d),
                },
                // Anthropic's spend cap names neither a delay nor a limit. An answer that does,
                // however unreadably, is a rate limit whose delay is not known.
                None if !scan.pushed_back => Outcome::SpendCapReached,
                None => Outcome::RateLimited { retry_after: None },
            },
            _ if should_retry == Some(false) => Outcome::Fatal,
            529 | 503 => Outcome::Overloaded { retry_after: delay },
            408 | 409 | 500..=599 => Outcome::Transient { retry_after: delay },
            _ if should_retry == Some(true) => Outcome::Transient { retry_after: delay },
            _ => Outcome::Fatal,
        };
        Feedback { outcome, limits }
    }
}

/// The longest reset among the limits that report nothing remaining.
fn exhausted_reset(limits: &[ProviderLimit]) -> Option<Duration> {
    limits
        .iter()
        .filter(|l| l.remaining == 0)
        .filter_map(|l| l.reset_in)
        .max()
}

impl<B, E> Classify<http::Response<B>, E> for HttpClassifier {
    fn classify(&self, result: Result<&http::Response<B>, &E>) -> Feedback {
        match result {
            Ok(res) => self.classify_parts(res.status(), res.headers()),
            Err(_) => Feedback::outcome(Outcome::Transient { retry_after: None }),
        }
    }

    fn outcome(&self, result: Result<&http::Response<B>, &E>) -> Outcome {
        match result {
            // A success whatever its headers say: they are not read.
            Ok(res) if !is_failure(res.status()) => Outcome::Success,
            _ => self.classify(result).outcome,
        }
    }
}

/// Whether a status is a failure (4xx or 5xx).
fn is_failure(status: http::StatusCode) -> bool {
    status.is_client_error() || status.is_server_error()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A classifier reads its clock on every answer, and its clones read the same clock.
    #[test]
    fn a_closure_clock_is_read_on_every_answer_by_every_clone() {
        let secs = Arc::new(AtomicU64::new(1_767_225_600));
        let clock = {
            let secs = Arc::clone(&secs);
            move || SystemTime::UNIX_EPOCH + Duration::from_secs(secs.load(Ordering::Relaxed))
        };
        let c = HttpClassifier::with_clock(clock);
        let clone = c.clone();
        let mut h = HeaderMap::new();
        // 2026-01-01T00:01:00Z.
        h.insert(
            RETRY_AFTER,
            "Thu, 01 Jan 2026 00:01:00 GMT".parse().unwrap(),
        );
        let delay = |c: &HttpClassifier| match c
            .classify_parts(http::StatusCode::TOO_MANY_REQUESTS, &h)
            .outcome
        {
            Outcome::RateLimited { retry_after } => retry_after,
            other => panic!("{other:?}"),
        };
        assert_eq!(delay(&c), Some(Duration::from_secs(60)));
        secs.fetch_add(45, Ordering::Relaxed);
        assert_eq!(delay(&c), Some(Duration::from_secs(15)));
        assert_eq!(delay(&clone), Some(Duration::from_secs(15)));
        secs.fetch_add(60, Ordering::Relaxed);
        assert_eq!(delay(&clone), Some(Duration::ZERO));
        assert_eq!(format!("{c:?}"), format!("{:?}", clone));
    }
}
