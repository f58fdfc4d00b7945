//! Shared pieces of the layer's integration tests: a fake provider that records when each call
//! reached it, on tokio's paused clock.
#![allow(dead_code, unreachable_pub)]

use smallvec::smallvec;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tollgate::store::{Acquire, RateCut, ScopeState, Settlement};
use tollgate::{Cost, Dimension, Priority, ScopeKey, ScopeRef, Scopes};
use tollgate_core::Nanos;

/// One call as the tests send it.
#[derive(Clone, Debug)]
pub struct Call {
    pub id: u32,
    pub agent: u32,
    pub priority: u8,
    pub input: u64,
    pub max_output: u64,
    /// What the provider reports as output tokens.
    pub output: u64,
    /// How long the provider takes.
    pub latency: Duration,
    /// Whether the provider fails the call.
    pub fail: bool,
}

impl Call {
    pub fn new(id: u32) -> Self {
        Call {
            id,
            agent: 0,
            priority: 0,
            input: 0,
            max_output: 0,
            output: 0,
            latency: Duration::ZERO,
            fail: false,
        }
    }
    pub fn agent(mut self, a: u32) -> Self {
        self.agent = a;
        self
    }
    pub fn priority(mut self, p: u8) -> Self {
        self.priority = p;
        self
    }
    pub fn tokens(mut self, input: u64, max_output: u64, output: u64) -> Self {
        self.input = input;
        self.max_output = max_output;
        self.output = output;
        self
    }
    pub fn latency(mut self, l: Duration) -> Self {
        self.latency = l;
        self
    }
    pub fn failing(mut self) -> Self {
        self.fail = true;
        self
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub id: u32,
    pub input: u64,
    pub output: u64,
}

/// Calls in the order they reached the provider, with the virtual time since `start`.
#[derive(Clone, Debug, Default)]
pub struct Log(Arc<Mutex<Vec<(u32, Duration)>>>);

impl Log {
    pub fn ids(&self) -> Vec<u32> {
        self.0.lock().unwrap().iter().map(|(i, _)| *i).collect()
    }
    pub fn entries(&self) -> Vec<(u32, Duration)> {
        self.0.lock().unwrap().clone()
    }
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A provider that logs each call's arrival time, sleeps its latency and reports its usage.
pub fn provider(
    log: Log,
    start: Instant,
) -> impl tower::Service<Call, Response = Reply, Error = tollgate::BoxError, Future = impl Send> + Clone
{
    tower::service_fn(move |c: Call| {
        let log = log.clone();
        async move {
            log.0.lock().unwrap().push((c.id, start.elapsed()));
            tokio::time::sleep(c.latency).await;
            if c.fail {
                return Err::<Reply, tollgate::BoxError>("provider failed".into());
            }
            Ok(Reply {
                id: c.id,
                input: c.input,
                output: c.output,
            })
        }
    })
}

pub fn scopes(c: &Call) -> Scopes {
    smallvec![
        ScopeKey::GLOBAL,
        ScopeKey::from(format!("agent:{}", c.agent))
    ]
}

pub fn estimate(c: &Call) -> Cost {
    Cost::request()
        .with_input_tokens(c.input)
        .with_output_tokens(c.max_output)
}

pub fn usage(r: &Reply) -> Option<Cost> {
    Some(
        Cost::request()
            .with_input_tokens(r.input)
            .with_output_tokens(r.output),
    )
}

pub fn priority(c: &Call) -> Priority {
    Priority(c.priority)
}

pub fn never<T>(_: T) -> Infallible {
    unreachable!()
}

/// A boxed client, as the tests clone it per task.
pub type Client = tower::util::BoxCloneService<Call, Reply, tollgate::BoxError>;

/// A client: the layer built from `b` with the test hooks, around the logging provider.
pub fn client(
    b: tollgate::ThrottleBuilder,
    log: &Log,
    start: Instant,
) -> (tollgate::Limiter, Client) {
    client_with_store(b, tollgate::MemoryStore::new(), log, start)
}

/// [`client`] on the store `store`.
pub fn client_with_store<St: tollgate::Store>(
    b: tollgate::ThrottleBuilder,
    store: St,
    log: &Log,
    start: Instant,
) -> (tollgate::Limiter<St>, Client) {
    let layer = b
        .extract_scopes(scopes)
        .estimate(estimate)
        .read_usage(usage)
        .assign_priority(priority)
        .build_with_store(store)
        .expect("valid config");
    let limiter = layer.limiter().clone();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(provider(log.clone(), start));
    (limiter, Client::new(svc))
}

/// The in-memory store with what tests watch: the calls' requests for admission are counted, and
/// the adaptive rate's cuts are kept in a cell that several stores (processes) may share.
#[derive(Default)]
pub struct TestStore {
    pub inner: tollgate::MemoryStore,
    pub asks: AtomicUsize,
    pub cuts: Arc<Mutex<Option<RateCut>>>,
}

impl tollgate::Store for TestStore {
    type Reservation = <tollgate::MemoryStore as tollgate::Store>::Reservation;
    type Handle = ();
    type AcquireFuture = <tollgate::MemoryStore as tollgate::Store>::AcquireFuture;
    fn acquire(&self, call: &Acquire<'_>) -> Self::AcquireFuture {
        self.asks.fetch_add(1, Ordering::Relaxed);
        self.inner.acquire(call)
    }
    fn settle(&self, r: Self::Reservation, s: Settlement) {
        self.inner.settle(r, s)
    }
    fn state(&self, scope: &ScopeRef, now: Nanos) -> Option<ScopeState> {
        self.inner.state(scope, now)
    }
    fn cool_down(&self, scope: &ScopeRef, now: Nanos, until: Nanos) {
        self.inner.cool_down(scope, now, until)
    }
    fn sync_remaining(&self, scope: &ScopeRef, now: Nanos, d: Dimension, remaining: u64) {
        self.inner.sync_remaining(scope, now, d, remaining)
    }
    fn publish_rate_cut(&self, _: &ScopeRef, cut: RateCut) {
        *self.cuts.lock().unwrap() = Some(cut);
    }
    fn latest_rate_cut(&self, _: &ScopeRef) -> Option<RateCut> {
        *self.cuts.lock().unwrap()
    }
}

/// A writer shared with the test (for a call log).
#[derive(Clone, Default)]
pub struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buf {
    /// What was written.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// The call log's records written so far.
    #[cfg(feature = "call-log")]
    pub fn records(&self) -> Vec<tollgate::spend::CallRecord> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is a record"))
            .collect()
    }
}
