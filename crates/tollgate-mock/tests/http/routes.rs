//! Each route's answers: shapes, errors, limits and headers, determinism and the stats.

use axum::body::Body;
use http::Request;
use serde_json::{json, Value};
use tollgate_mock::{MockProvider, OverloadConfig};

use crate::support::{block_on, post, provider, send, sse, ROUTES};

fn app(builder: tollgate_mock::MockProviderBuilder) -> axum::Router {
    tollgate_mock::http::router(provider(builder))
}

/// A valid body for `path` (5 bytes of text: 4 + 2 = 6 input tokens).
fn body(path: &str, extra: Value) -> String {
    let mut body = match path {
        "/v1/messages" => {
            json!({"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hello"}]})
        }
        "/v1/chat/completions" => {
            json!({"model": "m", "messages": [{"role": "user", "content": "hello"}]})
        }
        _ => json!({"model": "m", "input": "hello"}),
    };
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    body.to_string()
}

#[test]
fn unknown_paths_get_404_and_wrong_methods_405_with_error_json() {
    block_on(async {
        let app = app(MockProvider::builder());
        let answer = post(&app, "/v1/complete", "{}").await;
        assert_eq!(answer.status, 404);
        assert_eq!(answer.json()["error"]["type"], "not_found_error");
        let get = Request::get("/v1/messages").body(Body::empty()).unwrap();
        let answer = send(&app, get).await;
        assert_eq!(answer.status, 405);
        assert_eq!(answer.json()["type"], "error");
    });
}

#[test]
fn a_missing_key_gets_401_in_each_apis_format_and_no_key_is_echoed() {
    block_on(async {
        let app = app(MockProvider::builder());
        for path in ROUTES {
            let request = Request::post(path)
                .header("authorization", "Basic secret-key-123")
                .body(Body::from(body(path, json!({}))))
                .unwrap();
            let answer = send(&app, request).await;
            assert_eq!(answer.status, 401, "{path}");
            assert!(!answer.body.contains("secret-key-123"), "{}", answer.body);
            let json = answer.json();
            if path == "/v1/messages" {
                assert_eq!(json["error"]["type"], "authentication_error");
                assert!(answer.headers.contains_key("request-id"));
            } else {
                assert_eq!(json["error"]["code"], "invalid_api_key");
                assert!(answer.headers.contains_key("x-request-id"));
            }
        }
        // Anthropic's SDK may also send the key as a bearer token.
        let request = Request::post("/v1/messages")
            .header("authorization", "Bearer k")
            .body(Body::from(body("/v1/messages", json!({}))))
            .unwrap();
        assert_eq!(send(&app, request).await.status, 200);
    });
}

#[test]
fn bad_bodies_get_400_invalid_request_error_naming_the_field() {
    block_on(async {
        let app = app(MockProvider::builder());
        let cases = [
            ("/v1/messages", "{\"model\":", None),
            (
                "/v1/messages",
                r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
                Some("max_tokens"),
            ),
            (
                "/v1/messages",
                r#"{"max_tokens":9,"messages":[{"role":"user","content":"x"}]}"#,
                Some("model"),
            ),
            (
                "/v1/messages",
                r#"{"model":"m","max_tokens":9}"#,
                Some("messages"),
            ),
            (
                "/v1/messages",
                r#"{"model":"m","max_tokens":9,"messages":"x"}"#,
                Some("messages"),
            ),
            ("/v1/chat/completions", r#"{"model":"m"}"#, Some("messages")),
            (
                "/v1/chat/completions",
                r#"{"model":7,"messages":[]}"#,
                Some("model"),
            ),
            (
                "/v1/chat/completions",
                r#"{"model":"m","messages":[{"role":"user"}],"max_tokens":0}"#,
                Some("max_tokens"),
            ),
            (
                "/v1/responses",
                r#"{"model":"m","input":"x","stream":"yes"}"#,
                Some("stream"),
            ),
            ("/v1/responses", "[]", None),
        ];
        for (path, bad, field) in cases {
            let answer = post(&app, path, bad).await;
            assert_eq!(answer.status, 400, "{path} {bad}: {}", answer.body);
            let json = answer.json();
            assert_eq!(json["error"]["type"], "invalid_request_error", "{json}");
            let message = json["error"]["message"].as_str().unwrap();
            if let Some(field) = field {
                assert!(message.contains(&format!("`{field}")), "{message}");
                if path != "/v1/messages" {
                    assert_eq!(json["error"]["param"], field);
                }
            }
        }
    });
}

#[test]
fn a_429_has_retry_after_the_apis_error_json_and_only_its_rate_limit_headers() {
    block_on(async {
        let app = app(MockProvider::builder().rpm(1).input_tpm(1_000));
        for path in ROUTES {
            let answer = post(&app, path, body(path, json!({}))).await;
            assert_eq!(
                answer.status,
                if path == ROUTES[0] { 200 } else { 429 },
                "{path}"
            );
        }
        for path in ROUTES {
            let answer = post(&app, path, body(path, json!({}))).await;
            assert_eq!(answer.status, 429, "{path}");
            let retry_after: u64 = answer.headers["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&retry_after), "{retry_after}");
            let names: Vec<&str> = answer.headers.keys().map(|n| n.as_str()).collect();
            let anthropic = names.iter().any(|n| n.starts_with("anthropic-ratelimit-"));
            let openai = names.iter().any(|n| n.starts_with("x-ratelimit-"));
            let json = answer.json();
            if path == "/v1/messages" {
                assert!(anthropic && !openai, "{names:?}");
                assert_eq!(
                    answer.headers["anthropic-ratelimit-requests-remaining"],
                    "0"
                );
                assert_eq!(json["type"], "error");
                assert_eq!(json["error"]["type"], "rate_limit_error");
            } else {
                assert!(openai && !anthropic, "{names:?}");
                assert_eq!(answer.headers["x-ratelimit-remaining-requests"], "0");
                assert_eq!(json["error"]["code"], "rate_limit_exceeded");
                assert_eq!(json["error"]["type"], "requests");
            }
        }
    });
}

#[test]
fn input_tokens_over_the_limit_get_a_tokens_429() {
    block_on(async {
        // 10 input tokens per minute; "hello" costs 6, so the second call waits for tokens.
        let app = app(MockProvider::builder().rpm(100).input_tpm(10));
        let path = "/v1/chat/completions";
        assert_eq!(post(&app, path, body(path, json!({}))).await.status, 200);
        let answer = post(&app, path, body(path, json!({}))).await;
        assert_eq!(answer.status, 429);
        assert_eq!(answer.json()["error"]["type"], "tokens");
    });
}

#[test]
fn overload_answers_529_on_anthropic_and_503_on_openai() {
    block_on(async {
        let overload = OverloadConfig {
            threshold_in_flight: 0,
            probability: 1.0,
        };
        let app = app(MockProvider::builder().overload(overload));
        for path in ROUTES {
            let answer = post(&app, path, body(path, json!({}))).await;
            let json = answer.json();
            if path == "/v1/messages" {
                assert_eq!(answer.status, 529);
                assert_eq!(json["error"]["type"], "overloaded_error");
            } else {
                assert_eq!(answer.status, 503);
                assert_eq!(json["error"]["type"], "server_error");
            }
        }
    });
}

fn names(events: &[(Option<String>, String)]) -> Vec<&str> {
    events
        .iter()
        .map(|(n, _)| n.as_deref().unwrap_or(""))
        .collect()
}

#[test]
fn streams_are_shaped_as_each_api_documents() {
    block_on(async {
        let app = app(MockProvider::builder().seed(3));
        let stream = json!({"stream": true, "max_tokens": 4, "max_output_tokens": 4});

        let answer = post(&app, ROUTES[0], body(ROUTES[0], stream.clone())).await;
        assert!(answer.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let events = sse(&answer.body);
        let delta = "content_block_delta";
        assert_eq!(
            names(&events),
            [
                "message_start",
                "content_block_start",
                "ping",
                delta,
                delta,
                delta,
                delta,
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let start: Value = serde_json::from_str(&events[0].1).unwrap();
        assert_eq!(start["message"]["usage"]["input_tokens"], 6);
        let end: Value = serde_json::from_str(&events[8].1).unwrap();
        assert_eq!(end["usage"]["output_tokens"], 4);
        assert_eq!(end["delta"]["stop_reason"], "max_tokens");

        let with_usage =
            json!({"stream": true, "max_tokens": 4, "stream_options": {"include_usage": true}});
        let answer = post(&app, ROUTES[1], body(ROUTES[1], with_usage)).await;
        let events = sse(&answer.body);
        assert_eq!(
            events.len(),
            1 + 4 + 1 + 1 + 1,
            "role, words, finish, usage, [DONE]"
        );
        assert_eq!(events.last().unwrap().1, "[DONE]");
        let usage: Value = serde_json::from_str(&events[events.len() - 2].1).unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["prompt_tokens"], 6);
        assert_eq!(usage["usage"]["completion_tokens"], 4);
        let finish: Value = serde_json::from_str(&events[events.len() - 3].1).unwrap();
        assert_eq!(finish["choices"][0]["finish_reason"], "length");
        assert!(finish["usage"].is_null());
        let answer = post(&app, ROUTES[1], body(ROUTES[1], stream.clone())).await;
        let events = sse(&answer.body);
        assert_eq!(
            events.len(),
            1 + 4 + 1 + 1,
            "no usage chunk without include_usage"
        );
        assert!(events.iter().all(|(_, d)| !d.contains("\"usage\"")));

        let answer = post(&app, ROUTES[2], body(ROUTES[2], stream)).await;
        let events = sse(&answer.body);
        let delta = "response.output_text.delta";
        assert_eq!(
            names(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                delta,
                delta,
                delta,
                delta,
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.incomplete"
            ]
        );
        let last: Value = serde_json::from_str(&events[11].1).unwrap();
        assert_eq!(last["sequence_number"], 11);
        assert_eq!(last["response"]["usage"]["output_tokens"], 4);
        assert_eq!(
            last["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );
    });
}

#[test]
fn the_same_seed_and_body_give_the_same_answer_and_stats_count_it() {
    block_on(async {
        let text = |seed: u64| async move {
            let app = app(MockProvider::builder().seed(seed));
            let answer = post(&app, ROUTES[0], body(ROUTES[0], json!({}))).await;
            let message = answer.json();
            let stats = send(
                &app,
                Request::get("/mock/stats").body(Body::empty()).unwrap(),
            )
            .await;
            (message, stats.json())
        };
        let (first, stats) = text(5).await;
        let (again, _) = text(5).await;
        let (other, _) = text(6).await;
        assert_eq!(first, again);
        assert_ne!(first["content"], other["content"]);
        let words = first["content"][0]["text"]
            .as_str()
            .unwrap()
            .split(' ')
            .count();
        assert_eq!(first["usage"]["output_tokens"], words);
        let route = &stats["routes"]["/v1/messages"];
        assert_eq!(route["admitted"], 1);
        assert_eq!(route["input_tokens"], 6);
        assert_eq!(route["output_tokens"], words);
        assert_eq!(stats["provider"]["output_tokens_ok"], words);
        assert_eq!(stats["routes"]["/v1/responses"]["requests"], 0);
    });
}

#[test]
fn content_blocks_and_system_prompts_count_by_the_mocks_rule() {
    block_on(async {
        let app = app(MockProvider::builder());
        let extra = json!({
            "system": [{"type": "text", "text": "abcdefgh"}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "abcd"}, {"type": "image"}]},
                {"role": "assistant", "content": "x"},
            ],
        });
        let answer = post(&app, ROUTES[0], body(ROUTES[0], extra)).await;
        // system 4 + 2; user 4 + ceil((4 + 16) / 4) = 9; assistant 4 + 1.
        assert_eq!(answer.json()["usage"]["input_tokens"], 6 + 9 + 5);
    });
}
