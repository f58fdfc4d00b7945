//! Deferred settlement: an answer whose usage comes later carries the call's `Permit`, and the
//! call keeps its charge and its concurrency slot until the permit is settled or dropped.

#[path = "../support/mod.rs"]
mod support;

use std::convert::Infallible;
use support::Buf;
use tollgate::spend::CallLog;
use tollgate::{Cost, Dimension, Limit, OnFailure, Permit, ReadUsage, ScopeLimits, ThrottleLayer};
use tower::{service_fn, Layer, ServiceExt};

/// An answer whose usage is known when its (imaginary) stream ends.
#[derive(Debug, Default)]
struct Streamed {
    permit: Option<Permit>,
}

/// Defers every answer.
#[derive(Clone, Copy, Debug)]
struct Later;

impl ReadUsage<Streamed> for Later {
    fn usage(&self, _: &Streamed) -> Option<Cost> {
        None
    }
    fn defers(&self, _: &Streamed) -> bool {
        true
    }
    fn defer(&self, res: &mut Streamed, permit: Permit) {
        res.permit = Some(permit);
    }
}

/// One call in flight at a time, 10,000 output tokens a minute, each call reserving 1,000.
macro_rules! layer {
    ($on_failure:expr) => {
        ThrottleLayer::builder()
            .scope(
                "global",
                ScopeLimits::new()
                    .limit(Limit::per_minute(Dimension::OutputTokens, 10_000))
                    .concurrency(1),
            )
            .estimate(|_: &()| Cost::request().with_output_tokens(1_000))
            .read_usage(Later)
            .on_failure($on_failure)
            .build()
            .expect("valid limits")
    };
}

fn output_available(layer: &ThrottleLayer<impl Clone>) -> f64 {
    let g = layer.limiter().scope_stats("global").expect("the scope");
    g.buckets[0].available
}

/// The slot is held while the permit lives: a second call waits for the settle, then goes; the
/// settle refunds what the answer did not use.
#[tokio::test(start_paused = true)]
async fn the_slot_is_held_until_the_permit_is_settled() {
    let layer = layer!(OnFailure::RefundOutput);
    let svc = layer.layer(service_fn(|()| async {
        Ok::<_, Infallible>(Streamed::default())
    }));
    let mut first = svc.clone().oneshot(()).await.expect("admitted");
    let permit = first.permit.take().expect("the answer carries the permit");
    assert_eq!(permit.estimate().output_tokens, 1_000);
    assert_eq!(output_available(&layer), 9_000.0);

    let second = tokio::spawn(svc.clone().oneshot(()));
    // The second call runs until it waits; no time passes.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        !second.is_finished(),
        "the first call still holds the only slot"
    );
    let g = layer.limiter().scope_stats("global").unwrap();
    assert_eq!((g.in_flight, g.queue_depth), (1, 1));

    permit.settle(Some(Cost::request().with_output_tokens(100)), None);
    let mut second = second.await.unwrap().expect("admitted after the settle");
    // 900 came back; the second call holds 1,000.
    assert_eq!(output_available(&layer), 8_900.0);
    second
        .permit
        .take()
        .unwrap()
        .settle(Some(Cost::request()), None);
    assert_eq!(layer.limiter().scope_stats("global").unwrap().in_flight, 0);
}

/// A permit dropped before its usage came (the client went away) settles by the failure rule:
/// with `RefundOutput`, the reserved output tokens come back and the slot is freed.
#[tokio::test(start_paused = true)]
async fn a_dropped_permit_settles_by_the_failure_rule() {
    for (rule, expected) in [
        (OnFailure::RefundOutput, 10_000.0),
        (OnFailure::Keep, 9_000.0),
    ] {
        let layer = layer!(rule);
        let svc = layer.layer(service_fn(|()| async {
            Ok::<_, Infallible>(Streamed::default())
        }));
        let answer = svc.oneshot(()).await.expect("admitted");
        assert_eq!(layer.limiter().scope_stats("global").unwrap().in_flight, 1);
        drop(answer);
        let g = layer.limiter().scope_stats("global").unwrap();
        assert_eq!(g.in_flight, 0, "{rule:?}");
        assert_eq!(g.buckets[0].available, expected, "{rule:?}");
    }
}

/// The deferred settle reaches the money side: the call log gets the reported usage.
#[tokio::test(start_paused = true)]
async fn a_deferred_settle_is_logged_with_its_usage() {
    let buf = Buf::default();
    let calls = CallLog::to_writer(buf.clone());
    let layer = ThrottleLayer::builder()
        .scope("global", ScopeLimits::new().concurrency(4))
        .estimate(|_: &()| {
            Cost::request()
                .with_input_tokens(50)
                .with_output_tokens(1_000)
        })
        .read_usage(Later)
        .call_log(calls.clone())
        .build()
        .expect("valid limits");
    let svc = layer.layer(service_fn(|()| async {
        Ok::<_, Infallible>(Streamed::default())
    }));
    let mut answer = svc.oneshot(()).await.unwrap();
    calls.flush();
    assert!(buf.text().is_empty(), "nothing is logged before the settle");
    let permit = answer.permit.take().unwrap();
    assert!(permit.wants_tokens());
    permit.settle(
        Some(Cost::request().with_input_tokens(40).with_output_tokens(7)),
        None,
    );
    calls.flush();
    let records = buf.records();
    assert_eq!(records.len(), 1);
    let actual = records[0].actual.as_ref().expect("usage reported");
    assert_eq!((actual.input_tokens, actual.output_tokens), (40, 7));
    assert_eq!(records[0].outcome, "ok");
}
