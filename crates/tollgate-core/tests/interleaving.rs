//! `admit_atomic` when another call is admitted between its check and its charge: a forced,
//! repeatable interleaving (the racing proptests reach it only by chance). A scope whose
//! [`ScopeCell::parts`] admits another call on its own the moment the charge reaches it makes the
//! compare-and-swap of its bucket fail after the scopes before it were charged: those charges must
//! be taken back before the call is checked again, and the result must be what the two calls
//! admitted one after the other leave.

use std::cell::Cell;
use tollgate_core::{
    admit, admit_atomic, Admission, AtomicScopeState, CompiledScope, Cost, Dimension, Limit, Nanos,
    ScopeCell, ScopeLimits, ScopeState,
};

/// A scope that, at its `at`-th `parts` (the charge pass of the call under test), lets `other`
/// be admitted in it first.
struct Interfering<'a> {
    limits: &'a CompiledScope,
    state: &'a AtomicScopeState,
    seen: Cell<u32>,
    at: u32,
    other: Cost,
    now: Nanos,
}

impl ScopeCell for Interfering<'_> {
    fn parts(&self) -> (&CompiledScope, &AtomicScopeState) {
        let n = self.seen.get() + 1;
        self.seen.set(n);
        if n == self.at {
            let alone = [(self.limits, self.state)];
            assert_eq!(
                admit_atomic(self.now, self.other, &alone),
                Ok(Admission::Admitted)
            );
        }
        (self.limits, self.state)
    }
}

impl ScopeCell for Plain<'_> {
    fn parts(&self) -> (&CompiledScope, &AtomicScopeState) {
        (self.0, self.1)
    }
}

/// A scope that does nothing else.
struct Plain<'a>(&'a CompiledScope, &'a AtomicScopeState);

/// Either kind, so that one call can name both.
enum Either<'a> {
    Plain(Plain<'a>),
    Interfering(Interfering<'a>),
}

impl ScopeCell for Either<'_> {
    fn parts(&self) -> (&CompiledScope, &AtomicScopeState) {
        match self {
            Either::Plain(p) => p.parts(),
            Either::Interfering(i) => i.parts(),
        }
    }
}

/// A new scope's state in atomics.
fn fresh(limits: &CompiledScope) -> AtomicScopeState {
    AtomicScopeState::new(&limits.new_state())
}

/// A call's two scopes: `a` plain, `b` admitting `other` at its `at`-th `parts`.
fn interleaved<'a>(
    a: (&'a CompiledScope, &'a AtomicScopeState),
    b: (&'a CompiledScope, &'a AtomicScopeState),
    at: u32,
    other: Cost,
    now: Nanos,
) -> [Either<'a>; 2] {
    [
        Either::Plain(Plain(a.0, a.1)),
        Either::Interfering(Interfering {
            limits: b.0,
            state: b.1,
            seen: Cell::new(0),
            at,
            other,
            now,
        }),
    ]
}

fn limits() -> CompiledScope {
    ScopeLimits::new()
        .limit(Limit::per_minute(Dimension::Requests, 100))
        .limit(Limit::per_minute(Dimension::InputTokens, 10_000))
        .concurrency(8)
        .compile()
        .expect("valid limits")
}

#[test]
fn a_charge_overtaken_in_a_later_scope_is_taken_back_and_made_again() {
    let (a, b) = (limits(), limits());
    let now = Nanos::from_secs(1);
    let call = Cost::request().with_input_tokens(1_000);
    let other = Cost::request().with_input_tokens(2_500);
    // The reference: `other` admitted in scope b, then the call in a and b.
    let (mut ref_a, mut ref_b) = (a.new_state(), b.new_state());
    assert_eq!(
        admit(now, other, &mut [(&b, &mut ref_b)]),
        Admission::Admitted
    );
    assert_eq!(
        admit(now, call, &mut [(&a, &mut ref_a), (&b, &mut ref_b)]),
        Admission::Admitted
    );
    // The same, interleaved: b's second `parts` comes in the charge pass, after a was charged.
    let (state_a, state_b) = (fresh(&a), fresh(&b));
    let scopes = interleaved((&a, &state_a), (&b, &state_b), 2, other, now);
    assert_eq!(admit_atomic(now, call, &scopes), Ok(Admission::Admitted));
    let loaded: Vec<Option<ScopeState>> = vec![state_a.load(), state_b.load()];
    assert_eq!(loaded, vec![Some(ref_a), Some(ref_b)]);
    if let Either::Interfering(b) = &scopes[1] {
        assert!(
            b.seen.get() > 3,
            "the call was checked again after the overtaking"
        );
    }
}

#[test]
fn a_slot_taken_in_between_leaves_nothing_charged() {
    let capped = |n| {
        ScopeLimits::new()
            .limit(Limit::per_minute(Dimension::Requests, 100))
            .concurrency(n)
            .compile()
            .expect("valid limits")
    };
    let (a, b) = (capped(8), capped(1));
    let now = Nanos::from_secs(1);
    let call = Cost::request();
    // The reference: `other` takes b's only slot; the call then waits for it, charged nothing.
    let (ref_a, mut ref_b) = (a.new_state(), b.new_state());
    assert_eq!(
        admit(now, call, &mut [(&b, &mut ref_b)]),
        Admission::Admitted
    );
    // Interleaved: b's third `parts` comes when the counts are taken, after every bucket was
    // charged and a's count was taken.
    let (state_a, state_b) = (fresh(&a), fresh(&b));
    let scopes = interleaved((&a, &state_a), (&b, &state_b), 3, call, now);
    assert_eq!(
        admit_atomic(now, call, &scopes),
        Ok(Admission::Wait {
            wait: None,
            blocked: 0b10
        })
    );
    // What was charged and taken back leaves a bucket as full as before (its time may move up
    // to `now`, which reads the same).
    assert_eq!(
        (seen(&a, &state_a, now), seen(&b, &state_b, now)),
        (seen_ref(&a, &ref_a, now), seen_ref(&b, &ref_b, now))
    );
}

/// What a call would find in a scope at `now`: each bucket's units and the calls in flight.
fn seen(limits: &CompiledScope, state: &AtomicScopeState, now: Nanos) -> (Vec<f64>, u64) {
    seen_ref(limits, &state.load().expect("live"), now)
}

fn seen_ref(limits: &CompiledScope, state: &ScopeState, now: Nanos) -> (Vec<f64>, u64) {
    (limits.available(state, now), state.in_flight)
}
