//! The gateway end to end on real sockets: the `tollgate-mock` binary upstream, the
//! `tollgate-proxy` binary, and the official Python SDKs (the venv of `scripts/sdk-venv.sh`) or a
//! plain HTTP client in front. Real clock; nothing asserts how fast anything ran.

mod support;

#[path = "../../../tollgate-redis/tests/redis/server.rs"]
mod redis_server;

use support::{admissions, busiest, fleet, get, python, request, scratch, Mock, Proxy};

/// The mock: 60 requests and 3,400 input tokens a minute (each bucket holds a minute's worth),
/// 300 ms per answer.
const MOCK: [&str; 8] = [
    "--rpm",
    "60",
    "--itpm",
    "3400",
    "--latency",
    "300ms",
    "--seed",
    "1",
];
/// The gateway's limits: the mock's at 95 %. The fleet's 40 calls of 95 input tokens (3,800 by
/// the mock's count) offered within 5 s are more than the mock takes in 5 s (3,400 + 283), so
/// without the gateway some would get 429; through it they wait.
const LIMITS: &str = r#"
headroom = 0.95
max_wait = "60s"
[scopes.global]
requests_per_minute = 60
input_tokens_per_minute = 3400
"#;

/// The fleet's API key, passed through to the mock.
const FLEET_KEY: &str = "sk-fleet-SECRET-key";

fn config(mock: &Mock, extra: &str) -> String {
    format!(
        "{extra}\n{LIMITS}\n[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = {{ anthropic = \"{0}\", openai = \"{0}\" }}\n\
         [[proxy.scopes]]\nheader = \"x-agent-id\"\nkind = \"agent\"\n\
         [[proxy.scopes]]\napi_key = \"key\"\n",
        mock.url
    )
}

/// 20 SDK clients (half anthropic, half openai; streaming and not), `max_retries=0`, offering 8
/// calls a second (eight times the mock's 60 RPM) against a token limit that binds: every call
/// succeeds, none gets a 429, and the mock never had to refuse one (its buckets are its limits
/// in every window). The gateway's own admissions stay within its bucket in every 10 s window.
#[test]
fn a_fleet_of_sdk_clients_never_sees_a_429() {
    let Some(python) = python() else { return };
    let dir = scratch("fleet");
    let mock = Mock::start(&MOCK);
    let log = dir.join("calls.jsonl");
    let extra = format!("call_log = {:?}", log.display().to_string());
    let mut proxy = Proxy::start(&dir, &config(&mock, &extra), &[]);
    let report = fleet(&python, &[&proxy.url, "20", "2", "8", FLEET_KEY]);
    eprintln!("fleet: {report}");
    assert_eq!(report["calls"], 40, "{report}");
    assert_eq!(
        report["rate_limited"], 0,
        "a 429 reached a client: {report}"
    );
    assert_eq!(report["ok"], 40, "{report}");
    let stats = mock.stats();
    eprintln!("mock: {}", stats["provider"]);
    assert_eq!(stats["provider"]["rate_limited"], 0, "{stats}");
    assert_eq!(stats["provider"]["ok"], 40, "{stats}");

    let (_, metrics) = get(&proxy.url, "/metrics");
    assert!(metrics.contains("scope=\"agent:agent-7\""), "{metrics}");
    // Every call settled at the usage its answer reported: the mock's own count, below the
    // estimates the calls were admitted with.
    let counter = |name: &str| -> u64 {
        let prefix = format!("{name}{{scope=\"global\",dimension=\"input\"}} ");
        let line = metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()));
        line.and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    };
    let settled = counter("tollgate_proxy_tokens_settled_total");
    assert_eq!(settled, stats["provider"]["input_tokens_ok"], "{metrics}");
    assert!(
        counter("tollgate_proxy_tokens_estimated_total") > settled,
        "{metrics}"
    );
    proxy.terminate();
    assert!(proxy.wait(), "the gateway exits cleanly on SIGTERM");
    // The clients' own key passed through: only its hash names their scope.
    let written = [proxy.log(), metrics, std::fs::read_to_string(&log).unwrap()];
    assert!(
        written[2].contains("\"key:"),
        "no key scope in the call log"
    );
    for text in written {
        assert!(
            !text.contains(FLEET_KEY),
            "the client's key was written: {text}"
        );
    }
    let calls = admissions(&[&log]);
    assert_eq!(calls.len(), 40, "every call is in the flushed call log");
    // In any 10 s: at most the burst plus 10 s of the rate (0.95 × 60 requests and
    // 0.95 × 3,400 = 3,230 tokens, plus 0.95 a second and 53.8 tokens a second, as settled),
    // one call of slack for millisecond rounding.
    let (requests, tokens) = busiest(&calls, 10_000);
    eprintln!("busiest 10 s: {requests} calls (bound 66), {tokens} input tokens (bound 3768)");
    assert!(requests <= 57 + 10, "{requests} calls in 10 s");
    assert!(tokens <= 3_230 + 538 + 100, "{tokens} input tokens in 10 s");
}

/// Two gateways on one Redis share one limit: the calls both admitted, read from their call
/// logs, stay within one bucket in every 5 s window (two separate limits would each admit their
/// own burst and rate, about twice as many), and the mock refuses none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_redis_keep_the_sum_under_the_limit() {
    let Some(python) = python() else { return };
    let redis = redis_server::Server::start().await;
    let mock = Mock::start(&["--rpm", "60", "--latency", "200ms", "--seed", "2"]);
    let dirs = [scratch("redis-a"), scratch("redis-b")];
    let logs: Vec<_> = dirs.iter().map(|d| d.join("calls.jsonl")).collect();
    let mut proxies: Vec<Proxy> = dirs
        .iter()
        .zip(&logs)
        .map(|(dir, log)| {
            let cfg = format!(
                "call_log = {:?}\nheadroom = 0.9\nmax_wait = \"60s\"\n[scopes.global]\n\
                 requests_per_minute = {{ limit = 60, burst = 6 }}\n\
                 [proxy]\nlisten = \"127.0.0.1:0\"\nredis_url = \"{}\"\n\
                 upstream = {{ anthropic = \"{2}\", openai = \"{2}\" }}\n",
                log.display().to_string(),
                redis.url(),
                mock.url
            );
            Proxy::start(dir, &cfg, &[])
        })
        .collect();
    let runs: Vec<_> = proxies
        .iter()
        .map(|p| {
            let (python, url) = (python.clone(), p.url.clone());
            std::thread::spawn(move || fleet(&python, &[&url, "4", "2", "4"]))
        })
        .collect();
    for run in runs {
        let report = run.join().expect("a fleet");
        eprintln!("fleet: {report}");
        assert_eq!(report["ok"], 8, "{report}");
    }
    let stats = mock.stats();
    eprintln!("mock: {}", stats["provider"]);
    assert_eq!(stats["provider"]["rate_limited"], 0, "{stats}");
    assert_eq!(stats["provider"]["ok"], 16, "{stats}");
    for p in &mut proxies {
        p.terminate();
        assert!(p.wait());
    }
    let calls = admissions(&logs.iter().map(|l| l.as_path()).collect::<Vec<_>>());
    assert_eq!(calls.len(), 16);
    // One bucket: 6 + 5 s × 0.9 a second = 10.5, one of slack for rounding.
    let (requests, _) = busiest(&calls, 5_000);
    eprintln!("both gateways, busiest 5 s: {requests} calls (bound 11)");
    assert!(requests <= 12, "{requests} calls in 5 s");
}

const ANTHROPIC_CALL: &str =
    r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
const ANTHROPIC_HEAD: &str = "POST /v1/messages HTTP/1.1\r\nx-api-key: sk-test";
const CHAT_STREAM: &str = r#"{"model":"gpt-4o-mini","max_completion_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

/// In proxy mode a call without a listed proxy key gets 401 in the provider's format and nothing
/// reaches the upstream; a listed key gets through with the real key. Neither the real key nor
/// a proxy key appears in the gateway's log (at `debug`), its metrics or its call log.
#[test]
fn unknown_proxy_keys_get_401_and_no_key_is_ever_written() {
    let dir = scratch("keys");
    let mock = Mock::start(&["--rpm", "100"]);
    let log = dir.join("calls.jsonl");
    let extra = format!("call_log = {:?}", log.display().to_string());
    let cfg = format!(
        "{}[proxy.keys]\nmode = \"proxy\"\n\
         anthropic_env = \"REAL_ANTHROPIC\"\nopenai_env = \"REAL_OPENAI\"\n\
         clients = [{{ name = \"alice\", key = \"pk-alice-SECRET-1\" }}]\n",
        config(&mock, &extra).replace("[proxy]\n", "[proxy]\nlog = \"debug\"\n")
    );
    let env = [
        ("REAL_ANTHROPIC", "sk-ant-REAL-SECRET-2"),
        ("REAL_OPENAI", "sk-REAL-SECRET-3"),
    ];
    let mut proxy = Proxy::start(&dir, &cfg, &env);
    for key in [
        "x-api-key: pk-bob-SECRET-4",
        "x-api-key: pk-alice-SECRET-",
        "",
    ] {
        let head = format!("POST /v1/messages HTTP/1.1\r\n{key}")
            .trim()
            .to_owned();
        let (status, _, body) = request(&proxy.url, &head, ANTHROPIC_CALL);
        assert_eq!(status, 401, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"]["type"], "authentication_error");
    }
    let (status, _, body) = request(
        &proxy.url,
        "POST /v1/chat/completions HTTP/1.1\r\nAuthorization: Bearer pk-nobody",
        CHAT_STREAM,
    );
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"]["code"],
        "invalid_api_key"
    );
    let stats = mock.stats();
    for route in stats["routes"].as_object().unwrap().values() {
        assert_eq!(route["requests"], 0, "the upstream saw a call: {stats}");
    }
    let (status, _, body) = request(
        &proxy.url,
        "POST /v1/messages HTTP/1.1\r\nx-api-key: pk-alice-SECRET-1",
        ANTHROPIC_CALL,
    );
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = get(&proxy.url, "/metrics");
    assert!(metrics.contains("tollgate_proxy_calls_total{outcome=\"unauthorized\"} 4"));
    assert!(metrics.contains("scope=\"key:alice\""), "{metrics}");
    proxy.terminate();
    assert!(proxy.wait());
    let written = [proxy.log(), metrics, std::fs::read_to_string(&log).unwrap()];
    assert!(written[0].contains("call done"), "{}", written[0]);
    for text in written {
        assert!(!text.contains("SECRET"), "a key was written: {text}");
    }
}

/// A body over `max_body` gets 413 and malformed JSON the provider's own 400, neither reaching
/// the upstream; a call whose predicted wait passes `max_wait` gets a 429 in the provider's
/// format with `retry-after` in whole seconds.
#[test]
fn oversized_malformed_and_over_max_wait_calls_are_answered_by_the_gateway() {
    let dir = scratch("refusals");
    let mock = Mock::start(&["--rpm", "100"]);
    let cfg = format!(
        "refuse_over_max_wait = true\nmax_wait = \"2s\"\n[scopes.global]\n\
         requests_per_minute = {{ limit = 6, burst = 1 }}\n[proxy]\nlisten = \"127.0.0.1:0\"\n\
         max_body = 200\nupstream = {{ anthropic = \"{0}\", openai = \"{0}\" }}\n",
        mock.url
    );
    let proxy = Proxy::start(&dir, &cfg, &[]);
    let big = format!(
        r#"{{"model":"m","max_tokens":1,"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(300)
    );
    let (status, _, body) = request(&proxy.url, "POST /v1/messages HTTP/1.1", &big);
    assert_eq!(status, 413, "{body}");
    let (status, _, body) = request(
        &proxy.url,
        "POST /v1/chat/completions HTTP/1.1",
        "{\"model\":",
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"]["type"],
        "invalid_request_error"
    );
    assert_eq!(mock.stats()["provider"]["received"], 0);
    // One request of burst at 6 a minute: the second waits 10 s, more than max_wait.
    let (status, _, _) = request(&proxy.url, ANTHROPIC_HEAD, ANTHROPIC_CALL);
    assert_eq!(status, 200);
    let (status, head, body) = request(&proxy.url, ANTHROPIC_HEAD, ANTHROPIC_CALL);
    assert_eq!(status, 429, "{body}");
    let retry_after: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .expect("a retry-after header")
        .parse()
        .unwrap();
    assert!((9..=10).contains(&retry_after), "retry-after {retry_after}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"]["type"], "rate_limit_error");
    assert_eq!(mock.stats()["provider"]["received"], 1);
}

/// A gateway configured above the provider's real limit meets upstream 429s: it retries them
/// after the provider's `retry-after` (the shared cooldown holds the other calls), and the
/// client never sees one.
#[test]
fn upstream_429s_are_retried_by_the_gateway_not_passed_on() {
    let dir = scratch("upstream429");
    let mock = Mock::start(&["--rpm", "60"]);
    let cfg = format!(
        "[scopes.global]\nrequests_per_minute = 100000\n[proxy]\nlisten = \"127.0.0.1:0\"\n\
         upstream = {{ anthropic = \"{}\" }}\n",
        mock.url
    );
    let proxy = Proxy::start(&dir, &cfg, &[]);
    // The mock's bucket holds 60 calls and refills one a second: the 61st and 62nd are refused.
    for i in 0..62 {
        let (status, _, body) = request(&proxy.url, ANTHROPIC_HEAD, ANTHROPIC_CALL);
        assert_eq!(status, 200, "call {i}: {body}");
    }
    let stats = mock.stats();
    let refused = stats["provider"]["rate_limited"].as_u64().unwrap_or(0);
    assert!(refused >= 1, "the mock refused nothing: {stats}");
    assert_eq!(stats["provider"]["ok"], 62, "{stats}");
    let (_, metrics) = get(&proxy.url, "/metrics");
    let line = format!("tollgate_proxy_upstream_rate_limited_total{{status=\"429\"}} {refused}");
    assert!(metrics.contains(&line), "{metrics}");
}

/// SIGTERM while a stream is in flight: the gateway takes no new connection, the stream ends
/// whole (`[DONE]`), and the gateway exits cleanly.
#[test]
fn sigterm_lets_a_stream_in_flight_finish() {
    let dir = scratch("sigterm");
    let mock = Mock::start(&[
        "--rpm",
        "100",
        "--latency",
        "1500ms",
        "--latency-per-token",
        "20ms",
    ]);
    let cfg = format!(
        "[scopes.global]\nrequests_per_minute = 100\n[proxy]\nlisten = \"127.0.0.1:0\"\n\
         shutdown_grace = \"30s\"\nupstream = {{ openai = \"{}\" }}\n",
        mock.url
    );
    let mut proxy = Proxy::start(&dir, &cfg, &[]);
    let url = proxy.url.clone();
    let stream = std::thread::spawn(move || {
        let head = "POST /v1/chat/completions HTTP/1.1\r\nAuthorization: Bearer sk-test";
        request(&url, head, CHAT_STREAM)
    });
    // Wait until the call is at the mock (it answers after 1.5 s), then stop the gateway.
    let mut polls = 0;
    while mock.stats()["provider"]["received"] == 0 {
        polls += 1;
        assert!(polls < 500, "the call never reached the mock");
        #[allow(clippy::disallowed_methods)] // a real process on the real clock
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    proxy.terminate();
    let (status, _, body) = stream.join().expect("the streaming call");
    assert_eq!(status, 200);
    assert!(
        body.trim_end().ends_with("data: [DONE]"),
        "the stream was cut: {body}"
    );
    assert!(proxy.wait(), "exit status");
    let addr = proxy.url.trim_start_matches("http://").to_owned();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting"
    );
    assert!(
        proxy.log().contains("every call finished"),
        "{}",
        proxy.log()
    );
}

/// A bad configuration exits with code 2 and names the key.
#[test]
fn a_bad_config_exits_2_naming_the_key() {
    let dir = scratch("badconfig");
    let path = dir.join("bad.toml");
    let cases = [
        (
            "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = { openai = \"ftp://x\" }\n",
            "proxy.upstream.openai",
        ),
        (
            "[scopes.global]\nrequests_per_minute = 0\n[proxy]\nlisten = \"127.0.0.1:0\"\n\
             upstream = { openai = \"http://127.0.0.1:9\" }\n",
            "global",
        ),
    ];
    for (config, key) in cases {
        std::fs::write(&path, config).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate-proxy"))
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{err}");
    }
}
