//! The router: one handler for the three APIs, the stats, and the fallbacks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use serde_json::Value;
use tower_service::Service;

use super::answer::{self, Reply};
use super::api::{anthropic_error, Api, Failure};
use super::counters::{stats_json, RouteCounters};
use super::parse::{parse, Call};
use super::words;
use crate::{MockErrorKind, MockProvider, MockRequest};

/// The largest request body read (Anthropic's documented limit); larger ones get 413.
pub(crate) const MAX_BODY: usize = 32 * 1024 * 1024;

/// What every handler shares.
#[derive(Debug)]
struct Front {
    provider: MockProvider,
    next_id: AtomicU64,
    counters: Mutex<[RouteCounters; 3]>,
}

impl Front {
    fn counters(&self) -> MutexGuard<'_, [RouteCounters; 3]> {
        // A few counters: consistent across a panic elsewhere.
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, api: Api, update: impl FnOnce(&mut RouteCounters)) {
        update(&mut self.counters()[api as usize]);
    }
}

/// The router of the HTTP front over `provider`; see the [module docs](super).
pub fn router(provider: MockProvider) -> Router {
    let front = Arc::new(Front {
        provider,
        next_id: AtomicU64::new(1),
        counters: Mutex::new([RouteCounters::default(); 3]),
    });
    let mut router = Router::new();
    for api in Api::ALL {
        let handler = move |State(front): State<Arc<Front>>, headers: HeaderMap, body: Body| {
            handle(api, front, headers, body)
        };
        router = router.route(api.path(), post(handler));
    }
    router
        .route("/mock/stats", get(stats))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(front)
}

async fn handle(api: Api, front: Arc<Front>, headers: HeaderMap, body: Body) -> Response<Body> {
    let n = front.next_id.fetch_add(1, Ordering::Relaxed);
    let request_id = format!("req_mock_{n:016x}");
    front.count(api, |c| c.requests += 1);
    if !api.authorized(&headers) {
        front.count(api, |c| c.unauthorized += 1);
        return failed(api, &Failure::Unauthorized, &request_id, HeaderMap::new());
    }
    let bytes = match to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => {
            front.count(api, |c| c.invalid += 1);
            return failed(api, &Failure::BodyTooLarge, &request_id, HeaderMap::new());
        }
    };
    let call = match parse(api, &bytes) {
        Ok(call) => call,
        Err(invalid) => {
            front.count(api, |c| c.invalid += 1);
            let failure = Failure::Invalid {
                message: invalid.message,
                param: invalid.param,
            };
            return failed(api, &failure, &request_id, HeaderMap::new());
        }
    };
    let mut words = words::draw(front.provider.seed(), &bytes);
    let wanted = words.len() as u64;
    let request =
        MockRequest::new(call.input_tokens, call.max_tokens.unwrap_or(wanted), wanted).with_tag(n);
    let answer = match front.provider.clone().call(request).await {
        Ok(answer) => answer,
        Err(never) => match never {},
    };
    let (parts, reply) = answer.into_parts();
    let mut limit_headers = parts.headers;
    let foreign = api.foreign_headers();
    let names: Vec<_> = limit_headers
        .keys()
        .filter(|name| name.as_str().starts_with(foreign))
        .cloned()
        .collect();
    for name in names {
        limit_headers.remove(name);
    }
    match (reply.usage, reply.error) {
        (Some(usage), _) => {
            front.count(api, |c| {
                c.admitted += 1;
                c.input_tokens += usage.input_tokens;
                c.output_tokens += usage.output_tokens;
            });
            words.truncate(usize::try_from(usage.output_tokens).unwrap_or(usize::MAX));
            let reply = Reply {
                id: answer_id(api, n),
                model: call.model.clone(),
                created: front.provider.unix_now(),
                capped: usage.output_tokens < wanted,
                words,
                input: usage.input_tokens,
            };
            succeeded(api, &call, &reply, &request_id, limit_headers)
        }
        (None, error) => {
            let failure = match error {
                Some(MockErrorKind::RateLimited(d)) => Failure::RateLimited(d),
                Some(MockErrorKind::RequestTooLarge(d)) => Failure::TooLarge(d),
                Some(MockErrorKind::Overloaded) | None => Failure::Overloaded,
            };
            front.count(api, |c| match failure {
                Failure::RateLimited(_) => c.rate_limited += 1,
                Failure::Overloaded => c.overloaded += 1,
                _ => c.invalid += 1,
            });
            failed(api, &failure, &request_id, limit_headers)
        }
    }
}

fn answer_id(api: Api, n: u64) -> String {
    let prefix = match api {
        Api::Anthropic => "msg_mock",
        Api::Chat => "chatcmpl-mock",
        Api::Responses => "resp_mock",
    };
    format!("{prefix}{n:016x}")
}

fn succeeded(
    api: Api,
    call: &Call,
    reply: &Reply,
    request_id: &str,
    headers: HeaderMap,
) -> Response<Body> {
    let (content_type, body) = if call.stream {
        let sse = answer::stream(api, reply, call.include_usage);
        ("text/event-stream; charset=utf-8", Body::from(sse))
    } else {
        let json = answer::json(api, reply);
        ("application/json", Body::from(json.to_string()))
    };
    let mut response = respond(api, StatusCode::OK, body, request_id, headers);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if call.stream {
        let no_cache = HeaderValue::from_static("no-cache");
        response.headers_mut().insert(CACHE_CONTROL, no_cache);
    }
    response
}

fn failed(api: Api, failure: &Failure, request_id: &str, headers: HeaderMap) -> Response<Body> {
    let (status, json) = api.error(failure, request_id);
    json_response(api, status, &json, request_id, headers)
}

fn json_response(
    api: Api,
    status: StatusCode,
    json: &Value,
    request_id: &str,
    headers: HeaderMap,
) -> Response<Body> {
    let body = Body::from(json.to_string());
    let mut response = respond(api, status, body, request_id, headers);
    let json_type = HeaderValue::from_static("application/json");
    response.headers_mut().insert(CONTENT_TYPE, json_type);
    response
}

/// A response with `headers` and the request id under the API's header name.
fn respond(
    api: Api,
    status: StatusCode,
    body: Body,
    request_id: &str,
    headers: HeaderMap,
) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    let id_header = match api {
        Api::Anthropic => "request-id",
        Api::Chat | Api::Responses => "x-request-id",
    };
    if let (false, Ok(value)) = (request_id.is_empty(), HeaderValue::from_str(request_id)) {
        response.headers_mut().insert(id_header, value);
    }
    response
}

async fn stats(State(front): State<Arc<Front>>) -> Response<Body> {
    let routes = *front.counters();
    let json = stats_json(&routes, &front.provider.stats());
    json_response(Api::Anthropic, StatusCode::OK, &json, "", HeaderMap::new())
}

async fn not_found() -> Response<Body> {
    let json = anthropic_error("not_found_error", "no such route", "");
    json_response(
        Api::Anthropic,
        StatusCode::NOT_FOUND,
        &json,
        "",
        HeaderMap::new(),
    )
}

async fn method_not_allowed() -> Response<Body> {
    let json = anthropic_error("invalid_request_error", "method not allowed", "");
    let status = StatusCode::METHOD_NOT_ALLOWED;
    json_response(Api::Anthropic, status, &json, "", HeaderMap::new())
}
