//! Any body to any route: a well-formed answer (200, 400, 429 or 529 / 503), never a panic.

use proptest::prelude::*;
use serde_json::{Map, Value};
use tollgate_mock::{MockProvider, OverloadConfig};

use crate::support::{assert_well_formed, block_on, post, provider, ROUTES};

/// Field names the routes read, so that arbitrary objects reach the deep checks too.
const KEYS: [&str; 16] = [
    "model",
    "messages",
    "max_tokens",
    "stream",
    "role",
    "content",
    "system",
    "input",
    "instructions",
    "max_output_tokens",
    "max_completion_tokens",
    "stream_options",
    "include_usage",
    "text",
    "type",
    "x",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (0u64..200).prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(&KEYS[..]), inner), 0..6).prop_map(
                |pairs| {
                    let map: Map<String, Value> =
                        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                    Value::Object(map)
                }
            ),
        ]
    })
}

/// A valid body of each kind with one field replaced by an arbitrary value.
fn mutated_body() -> impl Strategy<Value = Value> {
    let base = serde_json::json!({
        "model": "m",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hello"}],
        "input": "hello",
        "stream": false,
    });
    (prop::sample::select(&KEYS[..]), json_value()).prop_map(move |(key, value)| {
        let mut body = base.clone();
        body[key] = value;
        body
    })
}

fn loaded_provider() -> MockProvider {
    provider(
        MockProvider::builder()
            .rpm(40)
            .input_tpm(400)
            .output_tpm(400)
            .overload(OverloadConfig {
                threshold_in_flight: 0,
                probability: 0.2,
            }),
    )
}

fn check(route: usize, bodies: Vec<Vec<u8>>) {
    let path = ROUTES[route];
    block_on(async {
        let app = tollgate_mock::http::router(loaded_provider());
        for body in bodies {
            let answer = post(&app, path, body).await;
            assert_well_formed(path, &answer);
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_bytes_get_a_well_formed_answer(
        route in 0..3usize,
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..4),
    ) {
        check(route, bodies);
    }

    #[test]
    fn arbitrary_json_gets_a_well_formed_answer(
        route in 0..3usize,
        values in prop::collection::vec(json_value(), 1..4),
    ) {
        check(route, values.iter().map(|v| v.to_string().into_bytes()).collect());
    }

    #[test]
    fn valid_bodies_with_one_field_changed_get_a_well_formed_answer(
        route in 0..3usize,
        values in prop::collection::vec(mutated_body(), 1..8),
    ) {
        check(route, values.iter().map(|v| v.to_string().into_bytes()).collect());
    }
}
