//! The HTTP stack around the throttle, on tokio's paused clock: `ReadRequestLayer` →
//! `ThrottleLayer` (with `HttpHooks`) → `UsageLayer` → an upstream that answers like a provider.
//! The call is settled when the answer's body ends, at the usage the body reported.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tollgate::{Cost, Dimension, Limit, Limiter, ScopeLimits, ThrottleLayer};
use tollgate_http::{
    charge, BodyTooLarge, HeaderRules, Provider, ReadRequestLayer, RequestError, SeenUsage,
    ThrottleBuilderExt, UsageBody, UsageLayer,
};
use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};

/// A response body of fixed chunks, one frame each.
#[derive(Debug, Default)]
struct Chunks(VecDeque<Bytes>);

impl Chunks {
    fn new(chunks: &[&str]) -> Self {
        Chunks(chunks.iter().map(|c| Bytes::from(c.to_string())).collect())
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(c))))
    }
    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

/// An Anthropic stream reporting `input` tokens at its start and `output` at its end, cut into
/// chunks that split events mid-line.
fn anthropic_stream(input: u64, output: u64) -> Vec<String> {
    let start = format!(
        "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-haiku-4-5\",\"content\":[],\"usage\":{{\"input_tokens\":{input},\"output_tokens\":1}}}}}}\n\n"
    );
    let delta = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n".to_owned();
    let end = format!(
        "event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\"}},\"usage\":{{\"output_tokens\":{output}}}}}\n\nevent: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
    );
    let all = start + &delta + &end;
    // Chunks of 37 bytes: events and lines are split anywhere.
    all.as_bytes()
        .chunks(37)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

const MESSAGE: &str = r#"{"model":"claude-haiku-4-5","max_tokens":500,"stream":true,"messages":[{"role":"user","content":"Say hi"}]}"#;

fn request(path: &str, body: &str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("x-agent-id", "7")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

/// A request body as the upstream got it, with its `content-length` header.
type Sent = (Bytes, Option<String>);

/// What the upstream saw.
#[derive(Clone, Default)]
struct Upstream {
    calls: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<Sent>>>,
}

/// The stack over an upstream answering `status` with `chunks` (SSE when 200).
fn stack(
    limits: ScopeLimits,
    status: StatusCode,
    chunks: Vec<String>,
) -> (
    Limiter,
    Upstream,
    impl Service<
            Request<Full<Bytes>>,
            Response = Response<UsageBody<Chunks>>,
            Error = BoxError,
            Future = impl Send,
        > + Clone,
) {
    let throttle = ThrottleLayer::builder()
        .http(HeaderRules::new().scope_header("x-agent-id", "agent"))
        .scope("global", limits)
        .scope("agent:*", ScopeLimits::new().concurrency(8))
        .build()
        .expect("valid limits");
    let limiter = throttle.limiter().clone();
    let seen = Upstream::default();
    let upstream = {
        let seen = seen.clone();
        service_fn(move |req: Request<Full<Bytes>>| {
            let seen = seen.clone();
            let chunks = chunks.clone();
            async move {
                seen.calls.fetch_add(1, Ordering::SeqCst);
                let length = req
                    .headers()
                    .get(http::header::CONTENT_LENGTH)
                    .map(|v| v.to_str().unwrap().to_owned());
                let body = req.into_body().collect().await.unwrap().to_bytes();
                seen.bodies.lock().unwrap().push((body, length));
                let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
                let res = Response::builder()
                    .status(status)
                    .header(
                        http::header::CONTENT_TYPE,
                        if status.is_success() {
                            "text/event-stream"
                        } else {
                            "application/json"
                        },
                    )
                    .body(Chunks::new(&refs))
                    .unwrap();
                Ok::<_, Infallible>(res)
            }
        })
    };
    let svc = ServiceBuilder::new()
        .layer(ReadRequestLayer::default().max_body(4_096))
        .layer(throttle)
        .layer(UsageLayer::new())
        .service(upstream);
    (limiter, seen, svc)
}

fn limits() -> ScopeLimits {
    ScopeLimits::new()
        .limit(Limit::per_minute(Dimension::InputTokens, 100_000))
        .limit(Limit::per_minute(Dimension::OutputTokens, 10_000))
        .concurrency(1)
}

/// (input available, output available, in flight) of `global`.
fn global(limiter: &Limiter) -> (f64, f64, u64) {
    let g = limiter.scope_stats("global").expect("the scope");
    (g.buckets[0].available, g.buckets[1].available, g.in_flight)
}

/// A stream read to its end settles the call at the usage it reported; until then the call
/// holds its estimate and its place under the cap.
#[tokio::test(start_paused = true)]
async fn a_stream_read_to_its_end_settles_at_its_usage() {
    let (limiter, upstream, svc) = stack(limits(), StatusCode::OK, anthropic_stream(42, 7));
    let res = svc
        .clone()
        .oneshot(request("/v1/messages", MESSAGE))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (input, output, in_flight) = global(&limiter);
    assert_eq!(
        (output, in_flight),
        (10_000.0 - 500.0, 1),
        "max_tokens reserved"
    );
    let estimated = 100_000.0 - input;
    assert!(estimated > 0.0);

    let text = res.into_body().collect().await.unwrap().to_bytes();
    assert!(
        text.starts_with(b"event: message_start"),
        "passed through unchanged"
    );
    assert_eq!(global(&limiter), (100_000.0 - 42.0, 10_000.0 - 7.0, 0));
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 1);
    // The agent's scope came from its header.
    assert!(limiter.scope_stats("agent:7").is_some());
}

/// A consumer that stops reading after the last byte (as a server writing a body of known
/// length does) without polling for the end still settles the call at its usage.
#[tokio::test(start_paused = true)]
async fn a_body_read_to_its_last_byte_settles_without_the_final_poll() {
    let (limiter, _, svc) = stack(limits(), StatusCode::OK, anthropic_stream(42, 7));
    let mut res = svc.oneshot(request("/v1/messages", MESSAGE)).await.unwrap();
    while !res.body().is_end_stream() {
        res.body_mut().frame().await.unwrap().unwrap();
    }
    assert_eq!(global(&limiter), (100_000.0 - 42.0, 10_000.0 - 7.0, 0));
    drop(res);
    assert_eq!(global(&limiter), (100_000.0 - 42.0, 10_000.0 - 7.0, 0));
}

/// A body dropped before its end (the client went away) settles at the input the stream
/// reported and the output reserved.
#[tokio::test(start_paused = true)]
async fn a_stream_dropped_early_keeps_the_output_reserved() {
    let (limiter, _, svc) = stack(limits(), StatusCode::OK, anthropic_stream(42, 7));
    let mut res = svc.oneshot(request("/v1/messages", MESSAGE)).await.unwrap();
    // Read until message_start has passed (its chunks), then go away.
    let mut read = Vec::new();
    while !String::from_utf8_lossy(&read).contains("\n\nevent: content_block_delta") {
        let frame = res.body_mut().frame().await.unwrap().unwrap();
        read.extend_from_slice(frame.data_ref().unwrap());
    }
    assert_eq!(res.body().seen().input_tokens, Some(42));
    drop(res);
    assert_eq!(global(&limiter), (100_000.0 - 42.0, 10_000.0 - 500.0, 0));
}

/// The concurrency slot is held until the body ends: a second call waits for it.
#[tokio::test(start_paused = true)]
async fn the_slot_is_held_until_the_body_ends() {
    let (limiter, upstream, svc) = stack(limits(), StatusCode::OK, anthropic_stream(42, 7));
    let first = svc
        .clone()
        .oneshot(request("/v1/messages", MESSAGE))
        .await
        .unwrap();
    let second = tokio::spawn(svc.clone().oneshot(request("/v1/messages", MESSAGE)));
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        upstream.calls.load(Ordering::SeqCst),
        1,
        "the second call waits"
    );
    assert_eq!(limiter.scope_stats("global").unwrap().queue_depth, 1);
    first.into_body().collect().await.unwrap();
    let second = second.await.unwrap().unwrap();
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 2);
    second.into_body().collect().await.unwrap();
    assert_eq!(global(&limiter).2, 0);
}

/// An answer with an error status carries no permit: it is settled when its head arrives, by the
/// failure rule (the output reserved comes back, the input estimate stays).
#[tokio::test(start_paused = true)]
async fn an_error_answer_is_settled_at_its_head() {
    let error = r#"{"type":"error","error":{"type":"invalid_request_error","message":"no"}}"#;
    let (limiter, _, svc) = stack(limits(), StatusCode::BAD_REQUEST, vec![error.to_owned()]);
    let res = svc.oneshot(request("/v1/messages", MESSAGE)).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(!res.body().reads_usage());
    let (input, output, in_flight) = global(&limiter);
    assert_eq!((output, in_flight), (10_000.0, 0));
    assert!(input < 100_000.0, "the input estimate stays charged");
}

/// A body the provider would refuse ends the call before the throttle and the network, with the
/// provider's own error; so does a body over the limit.
#[tokio::test(start_paused = true)]
async fn bad_requests_never_reach_the_upstream() {
    let (limiter, upstream, svc) = stack(limits(), StatusCode::OK, anthropic_stream(1, 1));
    let err = svc
        .clone()
        .oneshot(request("/v1/messages", "{not json"))
        .await
        .unwrap_err();
    let err = err.downcast_ref::<RequestError>().expect("a RequestError");
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = serde_json::from_slice(&err.body()).unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let big = format!(
        r#"{{"model":"m","max_tokens":5,"messages":[],"x":"{}"}}"#,
        "a".repeat(5_000)
    );
    let err = svc
        .oneshot(request("/v1/messages", &big))
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<BodyTooLarge>(),
        Some(&BodyTooLarge { limit: 4_096 })
    );
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 0);
    assert_eq!(limiter.scope_stats("global").map(|g| g.admitted), Some(0));
}

/// A streamed OpenAI chat call is asked for its usage on the way: the upstream gets the
/// rewritten body with a matching content-length.
#[tokio::test(start_paused = true)]
async fn a_streamed_chat_call_is_asked_for_its_usage() {
    let chunks = vec![
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n".to_owned(),
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":2,\"total_tokens\":13}}\n\ndata: [DONE]\n\n".to_owned(),
    ];
    let (limiter, upstream, svc) = stack(limits(), StatusCode::OK, chunks);
    let body = r#"{"model":"gpt-4o-mini","stream":true,"max_tokens":50,"messages":[{"role":"user","content":"hi"}]}"#;
    let res = svc
        .oneshot(request("/v1/chat/completions", body))
        .await
        .unwrap();
    res.into_body().collect().await.unwrap();
    let (sent, length) = upstream.bodies.lock().unwrap()[0].clone();
    let sent: serde_json::Value = serde_json::from_slice(&sent).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let expected_len = upstream.bodies.lock().unwrap()[0].0.len().to_string();
    assert_eq!(length.as_deref(), Some(expected_len.as_str()));
    assert_eq!(global(&limiter), (100_000.0 - 11.0, 10_000.0 - 2.0, 0));
}

/// The buckets count input as each provider's limiter does; the price gets the cache apart.
#[test]
fn usage_is_charged_as_each_provider_counts_it() {
    let estimate = Cost::request()
        .with_input_tokens(1_000)
        .with_output_tokens(500);
    let seen = SeenUsage {
        input_tokens: Some(50),
        output_tokens: Some(7),
        cache_read: Some(30),
        cache_write: Some(20),
        complete: true,
    };
    let (cost, tokens) = charge(Provider::Anthropic, seen, estimate);
    assert_eq!((cost.input_tokens, cost.output_tokens), (70, 7));
    let t = tokens.unwrap();
    assert_eq!(
        (t.input, t.output, t.cache_read, t.cache_write),
        (50, 7, 30, 20)
    );

    let seen = SeenUsage {
        input_tokens: Some(100),
        output_tokens: Some(9),
        cache_read: Some(40),
        cache_write: None,
        complete: true,
    };
    let (cost, tokens) = charge(Provider::OpenAiChat, seen, estimate);
    assert_eq!((cost.input_tokens, cost.output_tokens), (100, 9));
    let t = tokens.unwrap();
    assert_eq!((t.input, t.cache_read), (60, 40));

    // Nothing reported: the estimate stays.
    let (cost, _) = charge(Provider::OpenAiResponses, SeenUsage::default(), estimate);
    assert_eq!((cost.input_tokens, cost.output_tokens), (1_000, 500));
}
