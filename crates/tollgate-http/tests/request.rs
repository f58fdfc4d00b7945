//! read_request: checks, estimates and the include_usage rewrite, on bodies shaped like the
//! providers' own.

use proptest::prelude::*;
use serde_json::{json, Value};
use tollgate_http::{read_request, CallInfo, EstimateOptions, Provider, RequestError};

fn read(
    provider: Provider,
    body: &Value,
) -> Result<(CallInfo, Option<bytes::Bytes>), RequestError> {
    read_request(
        provider,
        body.to_string().as_bytes(),
        &EstimateOptions::default(),
    )
}

fn call(provider: Provider, body: &Value) -> CallInfo {
    read(provider, body).unwrap().0
}

fn err(provider: Provider, body: &[u8]) -> RequestError {
    read_request(provider, body, &EstimateOptions::default()).unwrap_err()
}

/// `ceil(chars / 3.5)`.
fn anthropic_chars(chars: usize) -> u64 {
    (chars as u64 * 2).div_ceil(7)
}

#[test]
fn anthropic_estimate_follows_the_documented_rule() {
    let schema = json!({"type":"object","properties":{"q":{"type":"string"}}});
    let body = json!({
        "model": "claude-sonnet-4-5", "max_tokens": 2048, "stream": true,
        "system": [{"type":"text","text":"You are terse."}],
        "messages": [
            {"role":"user","content":[
                {"type":"text","text":"What is in this image?"},
                {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}}]},
            {"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"lookup","input":{"q":"cat"}}]},
            {"role":"user","content":[
                {"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"a cat"}]},
                {"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0="}},
                {"type":"document","source":{"type":"text","media_type":"text/plain","data":"plain text"}}]}
        ],
        "tools": [{"name":"lookup","description":"Look a word up","input_schema":schema}]
    });
    let chars = "You are terse.".len()
        + "What is in this image?".len()
        + "lookup".len()
        + r#"{"q":"cat"}"#.len()
        + "a cat".len()
        + "plain text".len()
        + "lookup".len()
        + "Look a word up".len()
        + schema.to_string().len();
    let c = call(Provider::Anthropic, &body);
    assert_eq!(
        (c.provider, c.model.as_str(), c.stream),
        (Provider::Anthropic, "claude-sonnet-4-5", true)
    );
    assert_eq!(c.estimate.requests, 1);
    assert_eq!(c.estimate.output_tokens, 2048);
    // Reply 3, three messages 3 each, one image 1,600, one PDF 3,000, the text by 3.5.
    assert_eq!(
        c.estimate.input_tokens,
        3 + 9 + 1_600 + 3_000 + anthropic_chars(chars)
    );
}

#[test]
fn anthropic_string_system_and_content_and_options() {
    let body = json!({"model":"m","max_tokens":10,"system":"sys","messages":[{"role":"user","content":"héllo"}]});
    // 3 + 5 characters → 3 tokens; 3 for the message, 3 for the reply.
    assert_eq!(call(Provider::Anthropic, &body).estimate.input_tokens, 9);
    let body = json!({"model":"m","max_tokens":10,"messages":[{"role":"user","content":[{"type":"image","source":{}}]}]});
    let options = EstimateOptions {
        image_tokens: 100,
        ..EstimateOptions::default()
    };
    let (c, _) = read_request(Provider::Anthropic, body.to_string().as_bytes(), &options).unwrap();
    assert_eq!(c.estimate.input_tokens, 106);
}

#[test]
fn anthropic_refusals_name_the_field() {
    let cases: [(&str, &str); 10] = [
        (
            r#"{"model":"m","messages":[]}"#,
            "max_tokens: Field required",
        ),
        (
            r#"{"model":"m","max_tokens":null,"messages":[]}"#,
            "max_tokens: Field required",
        ),
        (
            r#"{"model":"m","max_tokens":0,"messages":[]}"#,
            "max_tokens: Input should be greater than or equal to 1",
        ),
        (
            r#"{"model":"m","max_tokens":-5,"messages":[]}"#,
            "max_tokens: Input should be greater than or equal to 1",
        ),
        (
            r#"{"model":"m","max_tokens":"5","messages":[]}"#,
            "max_tokens: Input should be a valid integer",
        ),
        (
            r#"{"model":"m","max_tokens":5}"#,
            "messages: Field required",
        ),
        (
            r#"{"model":"m","max_tokens":5,"messages":"hi"}"#,
            "messages: Input should be a valid list",
        ),
        (
            r#"{"model":"m","max_tokens":5,"messages":[{},"x"]}"#,
            "messages.1: Input should be a valid dictionary",
        ),
        (r#"{"max_tokens":5,"messages":[]}"#, "model: Field required"),
        (
            r#"{"model":"m","max_tokens":5,"messages":[],"stream":"yes"}"#,
            "stream: Input should be a valid boolean",
        ),
    ];
    for (body, message) in cases {
        let e = err(Provider::Anthropic, body.as_bytes());
        assert_eq!(e.message(), message, "{body}");
        let json: Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(
            json,
            json!({"type":"error","error":{"type":"invalid_request_error","message":message}})
        );
    }
    let e = err(
        Provider::Anthropic,
        br#"{"model":"m","max_tokens":5,"messages":[],"system":3}"#,
    );
    assert_eq!(e.param(), Some("system"));
    assert_eq!(err(Provider::Anthropic, b"{not json").param(), None);
    assert_eq!(
        err(Provider::Anthropic, b"[1]").message(),
        "Input should be a valid dictionary"
    );
}

#[test]
fn openai_refusals_name_the_field() {
    let cases: [(Provider, &str, &str, Option<&str>); 8] = [
        (Provider::OpenAiChat, r#"{"model":"gpt-4o"}"#, "Missing required parameter: 'messages'.", Some("messages")),
        (Provider::OpenAiChat, r#"{"model":"gpt-4o","messages":{}}"#,
            "Invalid type for 'messages': expected an array, but got an object instead.", Some("messages")),
        (Provider::OpenAiChat, r#"{"model":"gpt-4o","messages":[],"max_tokens":0}"#,
            "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got 0 instead.", Some("max_tokens")),
        (Provider::OpenAiChat, r#"{"model":"gpt-4o","messages":[],"n":1.5}"#,
            "Invalid type for 'n': expected an integer, but got a decimal instead.", Some("n")),
        (Provider::OpenAiChat, r#"{"model":"gpt-4o","messages":[],"stream":true,"stream_options":"x"}"#,
            "Invalid type for 'stream_options': expected an object, but got a string instead.", Some("stream_options")),
        (Provider::OpenAiChat, r#"{"model":1,"messages":[]}"#,
            "Invalid type for 'model': expected a string, but got an integer instead.", Some("model")),
        (Provider::OpenAiResponses, r#"{"model":"gpt-4o"}"#, "Missing required parameter: 'input'.", Some("input")),
        (Provider::OpenAiResponses, r#"{"model":"gpt-4o","input":3}"#,
            "Invalid type for 'input': expected a string or an array, but got an integer instead.", Some("input")),
    ];
    for (provider, body, message, param) in cases {
        let e = err(provider, body.as_bytes());
        assert_eq!((e.message(), e.param()), (message, param), "{body}");
        let json: Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(
            json,
            json!({"error":{"message":message,"type":"invalid_request_error","param":param,"code":null}})
        );
    }
    let e = err(Provider::OpenAiChat, br#"{"model":"gpt-4o","messages":[],"stream":true,"stream_options":{"include_usage":"yes"}}"#);
    assert_eq!(e.param(), Some("stream_options.include_usage"));
    assert_eq!(
        err(
            Provider::OpenAiResponses,
            br#"{"model":"m","input":"x","instructions":[]}"#
        )
        .param(),
        Some("instructions")
    );
    assert!(err(Provider::OpenAiChat, b"")
        .message()
        .starts_with("We could not parse the JSON body"));
}

#[test]
fn chat_output_reserve() {
    let messages = json!([{"role":"user","content":"hi"}]);
    let output = |extra: Value| {
        let mut body = json!({"model":"gpt-4o","messages":messages});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        call(Provider::OpenAiChat, &body).estimate.output_tokens
    };
    assert_eq!(output(json!({})), 4_096);
    assert_eq!(output(json!({"max_tokens":50})), 50);
    assert_eq!(
        output(json!({"max_completion_tokens":100,"max_tokens":50})),
        100
    );
    assert_eq!(
        output(json!({"max_completion_tokens":null,"max_tokens":50})),
        50
    );
    // Every choice is billed.
    assert_eq!(output(json!({"max_completion_tokens":100,"n":3})), 300);
    let options = EstimateOptions {
        default_max_output: 7,
        ..EstimateOptions::default()
    };
    let body = json!({"model":"gpt-4o","messages":messages}).to_string();
    assert_eq!(
        read_request(Provider::OpenAiChat, body.as_bytes(), &options)
            .unwrap()
            .0
            .estimate
            .output_tokens,
        7
    );
}

#[test]
fn chat_input_by_characters_for_an_unknown_model() {
    let body = json!({"model":"my-model","messages":[{"role":"user","content":"hello world"}]});
    // "user" and "hello world": 15 characters / 4 → 4; 3 for the message, 3 for the reply.
    assert_eq!(call(Provider::OpenAiChat, &body).estimate.input_tokens, 10);
    let tools = json!({"model":"my-model","messages":[{"role":"assistant","content":null,
        "tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]}],
        "tools":[{"type":"function","function":{"name":"f","description":"does","parameters":{"type":"object"}}}]});
    // "assistant" 9, "f" + `{"a":1}` 8, "f" + "does" + `{"type":"object"}` 22 → 39 / 4 → 10.
    assert_eq!(call(Provider::OpenAiChat, &tools).estimate.input_tokens, 16);
}

#[test]
fn chat_images_by_detail() {
    let image = |detail: Value| {
        let body = json!({"model":"my-model","messages":[{"role":"user","content":[
            {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA","detail":detail}}]}]});
        call(Provider::OpenAiChat, &body).estimate.input_tokens
    };
    // 3 + 3 + "user" (1) + the image.
    assert_eq!(image(json!("low")), 7 + 85);
    assert_eq!(image(json!("high")), 7 + 1_600);
    assert_eq!(image(Value::Null), 7 + 1_600);
}

#[cfg(feature = "tiktoken")]
#[test]
fn chat_input_by_bpe_for_a_known_model() {
    for model in ["gpt-4o", "gpt-4-turbo"] {
        let body = json!({"model":model,"messages":[{"role":"user","content":"hello world"}]});
        // As OpenAI counts: 3 per message, "user" 1 token, "hello world" 2, 3 for the reply.
        assert_eq!(
            call(Provider::OpenAiChat, &body).estimate.input_tokens,
            9,
            "{model}"
        );
    }
}

#[test]
fn responses_estimate() {
    let body = json!({"model":"my-model","instructions":"Be brief.","input":"hello world","max_output_tokens":500});
    let c = call(Provider::OpenAiResponses, &body);
    // "Be brief." and "hello world": 20 characters / 4 → 5; one message 3, the reply 3.
    assert_eq!(
        (c.estimate.input_tokens, c.estimate.output_tokens),
        (11, 500)
    );
    let items = json!({"model":"my-model","stream":true,"input":[
        {"role":"user","content":[{"type":"input_text","text":"hello world"},{"type":"input_image","detail":"low","image_url":"https://x"}]},
        {"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},
        {"type":"function_call_output","call_id":"c1","output":"ok"},
        {"type":"input_file","file_id":"file_1"}]});
    let c = call(Provider::OpenAiResponses, &items);
    assert!(c.stream);
    assert_eq!(c.estimate.output_tokens, 4_096);
    // Message: 3 + "user" and "hello world" (15) ; call: "f" "{}" (3); output "ok" (2) → 20 / 4 = 5;
    // the low-detail image 85; the unknown item's strings "input_file" "file_1" (16) → joins the
    // characters: 36 / 4 = 9.
    assert_eq!(c.estimate.input_tokens, 3 + 3 + 85 + 9);
}

#[test]
fn streamed_chat_asks_for_usage() {
    let options = EstimateOptions::default();
    // Absent: inserted first, the rest of the bytes untouched.
    let body = b" \n{\"model\":\"gpt-4o\",\"stream\":true,\"messages\":[]}";
    let (_, rewritten) = read_request(Provider::OpenAiChat, body, &options).unwrap();
    assert_eq!(
        rewritten.unwrap(),
        &b" \n{\"stream_options\":{\"include_usage\":true},\"model\":\"gpt-4o\",\"stream\":true,\"messages\":[]}"[..]
    );
    // Present but false or null, or with other options: set, the others kept.
    for options_value in [json!({"include_usage":false,"x":1}), Value::Null, json!({})] {
        let body =
            json!({"model":"gpt-4o","stream":true,"messages":[],"stream_options":options_value});
        let rewritten = read(Provider::OpenAiChat, &body).unwrap().1.unwrap();
        let rewritten: Value = serde_json::from_slice(&rewritten).unwrap();
        let mut expected = body.clone();
        let mut wanted = options_value.as_object().cloned().unwrap_or_default();
        wanted.insert("include_usage".into(), Value::Bool(true));
        expected["stream_options"] = Value::Object(wanted);
        assert_eq!(rewritten, expected);
    }
    // Already asked, not streamed, or not chat: unchanged.
    let asked = json!({"model":"gpt-4o","stream":true,"messages":[],"stream_options":{"include_usage":true}});
    assert!(read(Provider::OpenAiChat, &asked).unwrap().1.is_none());
    assert!(read(
        Provider::OpenAiChat,
        &json!({"model":"gpt-4o","messages":[]})
    )
    .unwrap()
    .1
    .is_none());
    let responses = json!({"model":"gpt-4o","stream":true,"input":"x"});
    assert!(read(Provider::OpenAiResponses, &responses)
        .unwrap()
        .1
        .is_none());
}

// ===== proptests =====

const PROVIDERS: [Provider; 3] = [
    Provider::Anthropic,
    Provider::OpenAiChat,
    Provider::OpenAiResponses,
];

/// JSON values biased towards the field names and block types the estimate looks at.
fn json_value() -> impl Strategy<Value = Value> {
    let words = prop::sample::select(vec![
        "text",
        "image",
        "document",
        "tool_use",
        "tool_result",
        "thinking",
        "image_url",
        "input_text",
        "input_image",
        "input_file",
        "message",
        "function_call",
        "function_call_output",
        "reasoning",
        "low",
        "user",
        "content",
        "base64",
        "function",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        words.prop_map(Value::from),
    ];
    let keys = prop_oneof![
        prop::sample::select(vec![
            "type",
            "text",
            "content",
            "role",
            "name",
            "input",
            "source",
            "data",
            "tool_calls",
            "function",
            "arguments",
            "image_url",
            "detail",
            "output",
            "summary",
            "title",
            "input_schema",
            "parameters",
            "description",
            "thinking",
            "refusal",
        ])
        .prop_map(String::from),
        "[a-z]{1,4}",
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid body of `provider` with these messages (or input items) and tools.
fn body(provider: Provider, messages: &[Value], tools: &Value, model: &str) -> Value {
    match provider {
        Provider::Anthropic => {
            json!({"model":model,"max_tokens":100,"messages":messages,"tools":tools})
        }
        Provider::OpenAiChat => json!({"model":model,"messages":messages,"tools":tools}),
        Provider::OpenAiResponses => json!({"model":model,"input":messages,"tools":tools}),
    }
}

/// Messages as objects: a role and any content, or any object at all.
fn message() -> impl Strategy<Value = Value> {
    prop_oneof![
        json_value().prop_map(|content| json!({"role":"user","content":content})),
        json_value().prop_filter_map("an object", |v| v.is_object().then_some(v)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Any bytes: a result, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        for provider in PROVIDERS {
            let _ = read_request(provider, &bytes, &EstimateOptions::default());
        }
    }

    /// Any JSON value as the body, or in place of any field of a valid body: a result, never a
    /// panic.
    #[test]
    fn arbitrary_json_never_panics(
        value in json_value(),
        field in prop::sample::select(vec!["model", "messages", "input", "system", "tools", "instructions",
            "max_tokens", "max_completion_tokens", "max_output_tokens", "n", "stream", "stream_options"]),
    ) {
        for provider in PROVIDERS {
            let _ = read(provider, &value);
            let mut valid = body(provider, &[json!({"role":"user","content":"hi"})], &json!([]), "gpt-4o");
            valid["stream"] = Value::Bool(true);
            valid[field] = value.clone();
            let _ = read(provider, &valid);
        }
    }

    /// Adding a message never lowers the input estimate, for every provider and text rule.
    #[test]
    fn adding_a_message_never_lowers_the_estimate(
        messages in prop::collection::vec(message(), 0..5),
        extra in message(),
        tools in prop::collection::vec(json_value(), 0..2),
        model in prop::sample::select(vec!["gpt-4o", "gpt-4", "my-model", "claude-sonnet-4-5"]),
    ) {
        let tools = Value::Array(tools);
        for provider in PROVIDERS {
            let before = call(provider, &body(provider, &messages, &tools, model)).estimate;
            let mut more = messages.clone();
            more.push(extra.clone());
            let after = call(provider, &body(provider, &more, &tools, model)).estimate;
            prop_assert!(after.input_tokens >= before.input_tokens, "{provider:?}: {before:?} then {after:?}");
            prop_assert_eq!(after.output_tokens, before.output_tokens);
        }
    }
}
