//! Builder validation: every bad value is a typed error, never a panic.

use std::time::Duration;

use tollgate_mock::{MockProvider, OverloadConfig};

#[test]
fn bad_values_are_rejected_with_the_field_named() {
    let b = MockProvider::builder;
    let overload = |probability| OverloadConfig {
        threshold_in_flight: 1,
        probability,
    };
    let jitter = |j| (Duration::ZERO, Duration::ZERO, j);
    let cases = [
        (b().rpm(0).build(), "rpm"),
        (b().input_tpm(0).build(), "input_tpm"),
        (b().output_tpm(0).build(), "output_tpm"),
        (b().hidden_share(f64::NAN).build(), "hidden_share"),
        (b().hidden_share(1.0).build(), "hidden_share"),
        (b().hidden_share(-0.1).build(), "hidden_share"),
        (b().hidden_share(f64::INFINITY).build(), "hidden_share"),
        (b().rpm(1).hidden_share(0.6).build(), "rpm"),
        (b().overload(overload(1.5)).build(), "overload.probability"),
        (
            b().overload(overload(f64::NAN)).build(),
            "overload.probability",
        ),
        (
            b().overload(overload(-0.0001)).build(),
            "overload.probability",
        ),
        {
            let (base, per, j) = jitter(1.01);
            (b().latency(base, per, j).build(), "jitter_fraction")
        },
        {
            let (base, per, j) = jitter(f64::NEG_INFINITY);
            (b().latency(base, per, j).build(), "jitter_fraction")
        },
    ];
    for (i, (result, field)) in cases.into_iter().enumerate() {
        let err = result.expect_err(&format!("case {i} should fail"));
        assert_eq!(err.field(), field, "case {i}: {err}");
        assert!(
            err.to_string().starts_with("invalid mock config: "),
            "{err}"
        );
    }
}

#[test]
fn messages_say_what_is_wrong() {
    let err = MockProvider::builder().rpm(0).build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid mock config: `rpm` must be greater than zero"
    );
    let err = MockProvider::builder()
        .rpm(1)
        .hidden_share(0.6)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid mock config: hidden share 0.6 leaves no capacity of `rpm` (limit 1)"
    );
    let err: Box<dyn std::error::Error> = Box::new(err);
    assert!(err.source().is_none());
}

#[test]
fn edge_values_are_accepted() {
    let ok = MockProvider::builder()
        .rpm(u64::MAX)
        .input_tpm(1)
        .output_tpm(1)
        .hidden_share(0.0)
        .overload(OverloadConfig {
            threshold_in_flight: 0,
            probability: 1.0,
        })
        .latency(Duration::MAX, Duration::MAX, 1.0)
        .build();
    assert!(ok.is_ok());
}
