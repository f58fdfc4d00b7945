//! Helpers shared by the provider tests: starting calls, reading headers, parsing the two reset
//! formats independently of the crate's own formatting code.

use std::time::Duration;

use http::Response;
use tollgate_mock::{MockProvider, MockReply, MockRequest, ResponseFuture};
use tower::{Service, ServiceExt};

/// Starts a call: admission is decided here, at the current virtual time.
pub(crate) fn start(provider: &MockProvider, req: MockRequest) -> ResponseFuture {
    provider.clone().call(req)
}

/// Makes a call and waits for the answer.
pub(crate) async fn call(provider: &MockProvider, req: MockRequest) -> Response<MockReply> {
    match provider.clone().oneshot(req).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// A header as text; panics with the header's name when it is missing.
pub(crate) fn header<'a>(response: &'a Response<MockReply>, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .unwrap()
}

pub(crate) fn header_u64(response: &Response<MockReply>, name: &str) -> u64 {
    header(response, name).parse().unwrap()
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff]Z` into time since the Unix epoch.
pub(crate) fn parse_rfc3339(s: &str) -> Duration {
    let (date, time) = s.split_once('T').expect("a 'T'");
    let time = time.strip_suffix('Z').expect("UTC 'Z'");
    let mut ymd = date.split('-').map(|p| p.parse::<i64>().unwrap());
    let (y, m, d) = (
        ymd.next().unwrap(),
        ymd.next().unwrap(),
        ymd.next().unwrap(),
    );
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut hms = hms.split(':').map(|p| p.parse::<u64>().unwrap());
    let (hh, mm, ss) = (
        hms.next().unwrap(),
        hms.next().unwrap(),
        hms.next().unwrap(),
    );
    let nanos = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse::<u32>().unwrap()
    };
    let days = days_from_civil(y, m, d);
    let secs = u64::try_from(days).unwrap() * 86_400 + hh * 3600 + mm * 60 + ss;
    Duration::new(secs, nanos)
}

/// Days since 1970-01-01 of a Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses a Go-style duration as OpenAI sends it: `120ms`, `1s`, `1.5s`, `6m0s`, `1h2m3.004s`.
pub(crate) fn parse_go_duration(s: &str) -> Duration {
    if let Some(ms) = s.strip_suffix("ms") {
        return Duration::from_millis(ms.parse().unwrap());
    }
    let mut total = Duration::ZERO;
    let mut number = String::new();
    for c in s.chars() {
        match c {
            'h' => total += Duration::from_secs(3600 * number.parse::<u64>().unwrap()),
            'm' => total += Duration::from_secs(60 * number.parse::<u64>().unwrap()),
            's' => {
                let (whole, frac) = number.split_once('.').unwrap_or((&number, ""));
                let nanos = format!("{frac:0<9}").parse::<u32>().unwrap();
                total += Duration::new(whole.parse().unwrap(), nanos);
            }
            _ => {
                number.push(c);
                continue;
            }
        }
        number.clear();
    }
    assert!(number.is_empty(), "trailing number in {s:?}");
    total
}
