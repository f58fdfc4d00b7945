//! End to end on real sockets: hyper-util's HTTP client inside a `ServiceBuilder` with the
//! throttle and the adapters, against the mock provider served over HTTP. Twenty streamed calls
//! (Anthropic Messages, OpenAI Chat Completions and Responses) at once against an output-token
//! limit that lets four be reserved at a time: the throttle
//! queues the rest, no call gets a 429, and the tokens the layer settled equal the mock's own
//! counts exactly (the mock counts with its own rule, so every call is reconciled).

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;
use tollgate::spend::{CallLog, CallRecord};
use tollgate::{Dimension, Limit, ScopeLimits, ThrottleLayer};
use tollgate_http::{HeaderRules, ReadRequestLayer, ThrottleBuilderExt, UsageLayer};
use tollgate_mock::MockProvider;
use tower::{ServiceBuilder, ServiceExt};

/// Requests and output tokens per minute of the mock, and the layer's copy of them. A call
/// reserves its `max_tokens` (400) and uses at most 64 (the mock's longest answer), so four
/// calls fit at once under the layer's 90 % headroom, and twenty fit in the minute only through
/// the refunds.
///
/// The headroom is not decoration: the layer charges a call when it admits it, the provider when
/// the request arrives. While the provider's bucket is full, the time between the two refills
/// nothing there but refills the layer's bucket, so a layer at 100 % of the limit runs ahead of
/// the provider by that lag times the rate (about 20 tokens here in a debug build) and its next
/// full-size call can be refused.
const RPM: u64 = 600;
const OTPM: u64 = 2_000;
const MAX_TOKENS: u64 = 400;

fn body(provider: &str, i: usize) -> String {
    let text = "word ".repeat(3 + i * 7);
    match provider {
        "anthropic" => format!(
            r#"{{"model":"claude-haiku-4-5","max_tokens":{MAX_TOKENS},"stream":true,"system":"Be brief.","messages":[{{"role":"user","content":"{text}"}}]}}"#
        ),
        "chat" => format!(
            r#"{{"model":"gpt-4o-mini","max_completion_tokens":{MAX_TOKENS},"stream":true,"messages":[{{"role":"system","content":"Be brief."}},{{"role":"user","content":"{text}"}}]}}"#
        ),
        _ => format!(
            r#"{{"model":"gpt-4.1-mini","max_output_tokens":{MAX_TOKENS},"stream":true,"instructions":"Be brief.","input":"{text}"}}"#
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_streams_queue_without_a_429_and_settle_the_mock_s_counts() {
    // The mock, on a free port.
    let provider = MockProvider::builder()
        .rpm(RPM)
        .input_tpm(100_000_000)
        .output_tpm(OTPM)
        .latency(Duration::from_millis(50), Duration::from_millis(1), 0.0)
        .seed(3)
        .build()
        .expect("valid mock");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tollgate_mock::http::serve(listener, provider));

    // The client: the adapters and the throttle around hyper-util's pooled client.
    let path = std::env::temp_dir().join(format!("tollgate-e2e-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let calls = CallLog::append_to_file(&path).expect("a call log");
    let throttle = ThrottleLayer::builder()
        .http(HeaderRules::new().scope_header("x-agent-id", "agent"))
        .scope(
            "global",
            ScopeLimits::new()
                .limit(Limit::per_minute(Dimension::Requests, RPM))
                .limit(Limit::per_minute(Dimension::OutputTokens, OTPM)),
        )
        .headroom(0.9)
        .call_log(calls.clone())
        .build()
        .expect("valid limits");
    let limiter = throttle.limiter().clone();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let svc = ServiceBuilder::new()
        .layer(ReadRequestLayer::default())
        .layer(throttle)
        .layer(UsageLayer::new())
        .service(client);

    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let svc = svc.clone();
            let (provider, path) = [
                ("anthropic", "/v1/messages"),
                ("chat", "/v1/chat/completions"),
                ("responses", "/v1/responses"),
            ][i % 3];
            let req = Request::post(format!("http://{addr}{path}"))
                .header("content-type", "application/json")
                .header("x-api-key", "test-key")
                .header("authorization", "Bearer test-key")
                .header("x-agent-id", format!("{}", i % 4))
                .body(Full::new(Bytes::from(body(provider, i))))
                .unwrap();
            tokio::spawn(async move {
                let res = svc.oneshot(req).await.expect("the call went through");
                let status = res.status();
                let text = res
                    .into_body()
                    .collect()
                    .await
                    .expect("the stream")
                    .to_bytes();
                (status, text)
            })
        })
        .collect();
    for t in tasks {
        let (status, text) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&text));
        assert!(text.starts_with(b"event: ") || text.starts_with(b"data: "));
    }

    // The mock's ground truth.
    let stats_url = format!("http://{addr}/mock/stats").parse().unwrap();
    let raw = Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>()
        .get(stats_url)
        .await
        .unwrap();
    let stats: serde_json::Value =
        serde_json::from_slice(&raw.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let routes = &stats["routes"];
    let (mut mock_in, mut mock_out, mut limited) = (0, 0, 0);
    for (path, calls) in [
        ("/v1/messages", 7),
        ("/v1/chat/completions", 7),
        ("/v1/responses", 6),
    ] {
        mock_in += routes[path]["input_tokens"].as_u64().unwrap();
        mock_out += routes[path]["output_tokens"].as_u64().unwrap();
        limited += routes[path]["rate_limited"].as_u64().unwrap();
        assert_eq!(routes[path]["admitted"], calls, "{path}");
    }
    assert_eq!(limited, 0, "no call got a 429");

    // What the layer settled, from its call log.
    calls.flush();
    let text = std::fs::read_to_string(&path).expect("the call log");
    std::fs::remove_file(&path).ok();
    let records: Vec<CallRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a record"))
        .collect();
    assert_eq!(records.len(), 20);
    let (mut settled_in, mut settled_out) = (0, 0);
    for r in &records {
        assert_eq!(r.outcome, "ok");
        let actual = r.actual.as_ref().expect("usage read from the stream");
        settled_in += actual.input_tokens;
        settled_out += actual.output_tokens;
    }
    assert_eq!((settled_in, settled_out), (mock_in, mock_out));

    // How far each input estimate was from the mock's count (its own rule, not the adapter's),
    // per adapter.
    let mut errors: Vec<f64> = Vec::new();
    for (model, calls) in [
        ("claude-haiku-4-5", 7),
        ("gpt-4o-mini", 7),
        ("gpt-4.1-mini", 6),
    ] {
        let of: Vec<f64> = records
            .iter()
            .filter(|r| r.model.as_deref() == Some(model))
            .map(|r| {
                let actual = r.actual.as_ref().unwrap().input_tokens as f64;
                (r.estimated.input_tokens as f64 - actual) / actual
            })
            .collect();
        assert_eq!(of.len(), calls, "{model}");
        let mean = of.iter().map(|e| e.abs()).sum::<f64>() / of.len() as f64;
        let worst = of.iter().fold(0.0f64, |w, e| w.max(e.abs()));
        println!(
            "{model}: input estimate vs the mock's count: mean {:.1} %, worst {:.1} %",
            mean * 100.0,
            worst * 100.0
        );
        errors.extend(of);
    }
    let worst = errors.iter().fold(0.0f64, |w, e| w.max(e.abs()));
    assert!(
        worst < 0.5,
        "every estimate within 50 % of the mock's count: {errors:?}"
    );

    // The output limit made calls wait, and every slot and charge came back.
    let global = limiter.scope_stats("global").unwrap();
    assert_eq!((global.admitted, global.in_flight), (20, 0));
    assert!(global.wait_max > Duration::ZERO, "calls queued");
}
