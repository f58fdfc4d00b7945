//! Helpers of the Redis tests: scopes as the layer hands them to a store, a store that records
//! the server's time of every admission and settle, and a `tracing` subscriber that keeps messages.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tollgate::store::{Acquire, Decision, ScopeState, Settlement, Store, StoreError};
use tollgate::{Cost, Dimension, ScopeLimits, ScopeRef};
use tollgate_core::Nanos;
use tollgate_redis::{FailMode, RedisReservation, RedisStore};

/// A scope as the layer passes it to a store.
pub(crate) fn scope(id: u32, key: &'static str, limits: ScopeLimits) -> ScopeRef {
    ScopeRef {
        id,
        key: key.into(),
        generation: 1,
        limits: Arc::new(limits.compile().expect("valid limits")),
    }
}

/// A store that fails closed with a generous timeout: a test that sees an error sees a bug.
pub(crate) async fn store(url: &str) -> RedisStore {
    RedisStore::builder(url)
        .fail_mode(FailMode::Closed)
        .timeout(Duration::from_secs(1))
        .build()
        .await
        .expect("the test server answers")
}

/// One admission attempt through the `Store` trait. `now` is deliberately garbage: the store
/// must use the server's clock.
pub(crate) async fn acquire(
    store: &RedisStore,
    scopes: &[ScopeRef],
    cost: Cost,
) -> Decision<RedisReservation> {
    let call = Acquire {
        now: Nanos::new(12_345),
        scopes,
        cost,
    };
    store.acquire(&call).await.expect("redis answers")
}

/// `Some(wait)` for a refusal, `None` when admitted (the reservation is settled at once).
pub(crate) fn wait_of(d: &Decision<RedisReservation>) -> Option<Duration> {
    match d {
        Decision::Wait { wait, .. } => Some(wait.expect("the redis store always says when")),
        Decision::Admitted(_) => None,
        Decision::Never(n) => panic!("never fits: {n:?}"),
    }
}

pub(crate) fn admitted(d: Decision<RedisReservation>) -> RedisReservation {
    match d {
        Decision::Admitted(r) => r,
        other => panic!("expected an admission, got {other:?}"),
    }
}

pub(crate) fn settlement(actual: Cost) -> Settlement {
    Settlement {
        now: Nanos::ZERO,
        actual,
    }
}

/// What a [`Recording`] store saw, by the server's clock (µs since the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// An admission of `cost` at `at`.
    Admitted { at: u64, cost: Cost },
    /// A settle at `at` that gave back `refund` input tokens.
    Settled { at: u64, refund: u64 },
}

/// A [`RedisStore`] that logs every admission and settle with the server's time, for the window
/// checks of the multi-process tests. Settles are awaited in a spawned task so their server time
/// is known; [`Recording::drained`] waits for them.
#[derive(Clone, Debug)]
pub(crate) struct Recording {
    pub(crate) store: RedisStore,
    pub(crate) log: Arc<Mutex<Vec<Event>>>,
    settling: Arc<AtomicUsize>,
}

impl Recording {
    pub(crate) fn new(store: RedisStore) -> Self {
        Recording {
            store,
            log: Arc::default(),
            settling: Arc::default(),
        }
    }

    /// Waits until every settle has been answered.
    pub(crate) async fn drained(&self) {
        while self.settling.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

type Pending =
    Pin<Box<dyn Future<Output = Result<Decision<(RedisReservation, Cost)>, StoreError>> + Send>>;

impl Store for Recording {
    type Reservation = (RedisReservation, Cost);
    type Handle = ();
    type AcquireFuture = Pending;

    fn acquire(&self, call: &Acquire<'_>) -> Pending {
        let fut = self.store.acquire(call);
        let (log, cost) = (self.log.clone(), call.cost);
        Box::pin(async move {
            Ok(match fut.await? {
                Decision::Admitted(r) => {
                    let at = r.admitted_at().expect("admitted by redis");
                    log.lock().unwrap().push(Event::Admitted { at, cost });
                    Decision::Admitted((r, cost))
                }
                Decision::Wait { wait, blocked } => Decision::Wait { wait, blocked },
                Decision::Never(n) => Decision::Never(n),
            })
        })
    }

    fn settle(&self, (r, charged): (RedisReservation, Cost), s: Settlement) {
        let (store, log, settling) = (self.store.clone(), self.log.clone(), self.settling.clone());
        settling.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(async move {
            let at = store.settle_and_wait(r, s).await;
            let refund = charged.input_tokens.saturating_sub(s.actual.input_tokens);
            match at {
                Ok(Some(at)) => log.lock().unwrap().push(Event::Settled { at, refund }),
                other => panic!("a settle was not applied: {other:?}"),
            }
            settling.fetch_sub(1, Ordering::AcqRel);
        });
    }

    fn state(&self, scope: &ScopeRef, now: Nanos) -> Option<ScopeState> {
        self.store.state(scope, now)
    }

    fn cool_down(&self, scope: &ScopeRef, now: Nanos, until: Nanos) {
        self.store.cool_down(scope, now, until);
    }

    fn sync_remaining(&self, scope: &ScopeRef, now: Nanos, d: Dimension, remaining: u64) {
        self.store.sync_remaining(scope, now, d, remaining);
    }
}

// ===== tracing =====

/// Every `tracing` message of this test binary, as `LEVEL message`.
pub(crate) fn logs() -> Vec<String> {
    install_capture();
    LOGS.lock().unwrap().clone()
}

static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Installs the capturing subscriber once for the whole binary (events come from tokio's worker
/// threads, so a thread-local default would miss them).
pub(crate) fn install_capture() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing::subscriber::set_global_default(Capture);
    });
}

struct Capture;

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut m = Message(String::new());
        event.record(&mut m);
        let line = format!("{} {}", event.metadata().level(), m.0);
        LOGS.lock().unwrap().push(line);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
