//! [`RedisStore`]: the [`Store`] whose buckets live in Redis.

mod adaptive;
mod admit;
mod handle;
mod heartbeat;
mod ledger;
mod stats;
mod writer;

pub use admit::{AcquireFuture, RedisReservation};
pub use handle::RedisHandle;
pub use ledger::RedisLedger;

use admit::Held;
use handle::Prepared;
use heartbeat::Renewal;
use writer::{Op, OpKind};

use crate::fallback::{Health, Local, Route};
use crate::script::{never_fits, sync_bucket, Keys, Scripts};
use crate::{Error, FailMode, RedisStoreBuilder};
use redis::aio::ConnectionManager;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::time::Instant;
use tollgate::store::{Acquire, Decision, ScopeState, Settlement, Store};
use tollgate::{ScopeKey, ScopeRef};
use tollgate_core::{Dimension, Nanos};

/// A [`Store`] on Redis: every process (and host) built on the same Redis, prefix and hash tag
/// shares the same buckets, concurrency counts and cooldowns.
///
/// * **One round trip per admission**: one Lua script checks every bucket, cooldown and
///   concurrency cap of every scope of the call against the server's clock (`TIME`), and either
///   charges them all or returns the wait.
/// * **Settling** (reconcile and release) is sent in the background and is idempotent: each
///   admission has a reservation id, and a second settle of it changes nothing. A settle that
///   times out or whose connection breaks is sent again at once, up to 3 times (50, 100, 200 ms
///   apart); one that still fails is kept and retried for the settle window (the reservation
///   TTL, and at least 10 minutes).
/// * **Reclaim**: a running call's concurrency slots are refreshed every third of the
///   [TTL](RedisStoreBuilder::reservation_ttl); those of a process that died (or of an admission
///   whose reply was lost) no longer count one TTL after their last refresh.
/// * **When Redis is away**, the [`FailMode`] applies; see [`RedisStoreBuilder`].
///
/// Cloning is cheap and shares the connection.
///
/// ```no_run
/// use tollgate::{Dimension, Limit, ScopeLimits, ThrottleLayer};
/// use tollgate_redis::RedisStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379").hash_tag("org-1").build().await?;
/// let layer = ThrottleLayer::builder()
///     .scope("global", ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, 500)))
///     .build_with_store(store)?;
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("keys", &self.inner.keys)
            .field("client", &self.inner.client)
            .field("settings", &self.inner.settings)
            .field("redis_down", &self.inner.health.is_down())
            .finish_non_exhaustive()
    }
}

/// The checked settings.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) fail: FailMode,
    pub(crate) timeout: Duration,
    pub(crate) ttl: Duration,
    /// How long a spend reservation lives unsettled.
    pub(crate) spend_ttl: Duration,
    pub(crate) probe: Duration,
    pub(crate) poll: Duration,
}

pub(crate) struct Inner {
    conn: ConnectionManager,
    scripts: Scripts,
    keys: Keys,
    client: String,
    next: AtomicU64,
    settings: Settings,
    health: Health,
    local: Option<Local>,
    runtime: Handle,
    /// Writes that failed, to retry when Redis is back.
    kept: Mutex<VecDeque<Op>>,
    retrying: AtomicBool,
    /// The last state read of each scope, for [`Store::state`].
    states: Mutex<HashMap<ScopeKey, ScopeState>>,
    reading: Mutex<HashSet<ScopeKey>>,
    /// Reservations holding concurrency slots, with their sets of calls in flight (heartbeat).
    live: Mutex<HashMap<String, Vec<String>>>,
    beating: AtomicBool,
    /// Spend holds of this process not settled yet, renewed by their own heartbeat.
    holds: Mutex<BTreeMap<u64, Renewal>>,
    renewing: AtomicBool,
    /// The latest cut of each scope's adaptive rate known here, and when Redis was last read.
    cuts: Mutex<HashMap<ScopeKey, (Option<tollgate::store::RateCut>, Instant)>>,
}

impl Inner {
    /// Must be called inside a tokio runtime (the builder's `build` is async).
    pub(crate) fn new(
        conn: ConnectionManager,
        keys: Keys,
        client: String,
        settings: Settings,
    ) -> Self {
        Inner {
            conn,
            scripts: Scripts::new(),
            keys,
            client,
            next: AtomicU64::new(0),
            health: Health::new(settings.probe),
            local: match settings.fail {
                FailMode::Open { fraction } => Some(Local::new(fraction)),
                FailMode::Closed => None,
            },
            settings,
            runtime: Handle::current(),
            kept: Mutex::default(),
            retrying: AtomicBool::new(false),
            states: Mutex::default(),
            reading: Mutex::default(),
            live: Mutex::default(),
            beating: AtomicBool::new(false),
            holds: Mutex::default(),
            renewing: AtomicBool::new(false),
            cuts: Mutex::default(),
        }
    }
}

impl Inner {
    /// How long a settle is retried while Redis is away: the reservation TTL, and at least 10
    /// minutes (after it the estimate stays charged). The settled marker lives twice as long.
    fn settle_window(&self) -> Duration {
        self.settings.ttl.max(Duration::from_secs(600))
    }
}

// ===== impl RedisStore =====

impl RedisStore {
    /// A builder for a store on the Redis at `url` (`redis://[user:password@]host[:port][/db]`,
    /// or `rediss://` with TLS where the `redis` crate is built with it).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tollgate_redis::Error> {
    /// let store = tollgate_redis::RedisStore::builder("redis://127.0.0.1:6379").build().await?;
    /// # let _ = store;
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder::new(url)
    }

    pub(crate) fn from_inner(inner: Inner) -> Self {
        RedisStore {
            inner: Arc::new(inner),
        }
    }

    /// Whether Redis failed lately and the [`FailMode`] applies (until a probe succeeds).
    pub fn is_degraded(&self) -> bool {
        self.inner.health.is_down()
    }

    /// The name this store got from Redis when it was built (unique among the stores of one
    /// prefix and hash tag): a counter, `@`, and the server's time. Reservation ids start with it.
    pub fn client_id(&self) -> &str {
        &self.inner.client
    }

    /// Settles a reservation as [`Store::settle`] does, but waits for Redis and returns the
    /// server's time of the settle (µs since the Unix epoch), or `None` when the reservation was
    /// already settled (also by an attempt of this settle whose reply was lost), or was admitted
    /// by the local limiter (then it is settled there). For audits and tests; the layer uses the
    /// background [`Store::settle`].
    ///
    /// # Errors
    /// Redis failed or did not answer within the timeout at every attempt (one and up to 3 quick
    /// retries); the settle is then kept and retried in the background, as [`Store::settle`]
    /// would.
    pub async fn settle_and_wait(
        &self,
        reservation: RedisReservation,
        settlement: Settlement,
    ) -> Result<Option<u64>, Error> {
        let Held::Redis {
            id, call, charged, ..
        } = reservation.held
        else {
            if let (Held::Local(r), Some(local)) = (reservation.held, &self.inner.local) {
                local.settle(r, settlement);
            }
            return Ok(None);
        };
        let inner = &self.inner;
        let args = inner.settle_args(&id, &call.scopes, Some((charged, settlement.actual)));
        let keys = inner.settle_keys(&id, &call.keys);
        match inner
            .invoke_settle::<Vec<i64>>(&inner.scripts.settle, &keys, &args)
            .await
        {
            Ok(reply) => {
                inner.health.succeeded();
                match reply[..] {
                    [1, at] => Ok(Some(u64::try_from(at).unwrap_or(0))),
                    [0, _] => Ok(None),
                    _ => Err(Error::reply(format!("settle returned {reply:?}"))),
                }
            }
            Err(e) => {
                inner.health.failed(&e, inner.fails_open());
                inner.keep(Op {
                    kind: OpKind::Settle,
                    keys,
                    args,
                    give_up: Instant::now() + inner.settle_window(),
                });
                Err(e)
            }
        }
    }

    /// Settles and writes that failed and wait to be retried.
    pub fn pending_writes(&self) -> usize {
        self.inner
            .kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

impl RedisStore {
    /// Admits `call`, whose scopes and keys `prepared` gives, unless it never fits or Redis is
    /// known to be away.
    fn admit(&self, call: &Acquire<'_>, prepared: impl FnOnce() -> Arc<Prepared>) -> AcquireFuture {
        if let Some(n) = never_fits(call.scopes, call.cost) {
            return AcquireFuture::ready(Ok(Decision::Never(n)));
        }
        let inner = &self.inner;
        match inner.health.route() {
            Route::Away => AcquireFuture::ready(inner.away(call, Error::unavailable())),
            Route::Redis => AcquireFuture {
                inner: Box::pin(
                    inner
                        .clone()
                        .acquire_remote(call.now, prepared(), call.cost),
                ),
            },
        }
    }
}

impl Store for RedisStore {
    type Reservation = RedisReservation;
    type Handle = RedisHandle;
    type AcquireFuture = AcquireFuture;

    fn acquire(&self, call: &Acquire<'_>) -> AcquireFuture {
        self.admit(call, || {
            Arc::new(Prepared::new(&self.inner.keys, call.scopes))
        })
    }

    /// Names the keys of `scopes` once, for every call in them.
    fn handle(&self, scopes: &[ScopeRef], _now: Nanos) -> RedisHandle {
        RedisHandle::new(&self.inner.keys, scopes)
    }

    fn acquire_with(&self, handle: &RedisHandle, call: &Acquire<'_>) -> AcquireFuture {
        self.admit(call, || handle.prepared(&self.inner.keys, call.scopes))
    }

    fn settle(&self, reservation: RedisReservation, settlement: Settlement) {
        match reservation.held {
            Held::Local(r) => {
                if let Some(local) = &self.inner.local {
                    local.settle(r, settlement);
                }
            }
            Held::Redis {
                id, call, charged, ..
            } => {
                let args =
                    self.inner
                        .settle_args(&id, &call.scopes, Some((charged, settlement.actual)));
                self.inner.send(Op {
                    kind: OpKind::Settle,
                    keys: self.inner.settle_keys(&id, &call.keys),
                    args,
                    give_up: Instant::now() + self.inner.settle_window(),
                });
            }
        }
    }

    fn state(&self, scope: &ScopeRef, now: Nanos) -> Option<ScopeState> {
        if self.inner.health.is_down() {
            if let Some(local) = &self.inner.local {
                return local.state(scope, now);
            }
        }
        self.inner.read_state(scope);
        self.inner
            .states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&scope.key)
            .cloned()
    }

    fn cool_down(&self, scope: &ScopeRef, now: Nanos, until: Nanos) {
        if let Some(local) = &self.inner.local {
            local.cool_down(scope, now, until);
        }
        let delay = (until - now).as_duration();
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        if us == 0 {
            return;
        }
        self.inner.send(Op {
            kind: OpKind::CoolDown,
            keys: vec![self.inner.keys.scope(scope)].into(),
            args: vec![us.min(1 << 50).into()],
            give_up: Instant::now() + delay,
        });
    }

    fn sync_remaining(&self, scope: &ScopeRef, now: Nanos, dimension: Dimension, remaining: u64) {
        if let Some(local) = &self.inner.local {
            local.sync_remaining(scope, now, dimension, remaining);
        }
        let Some(bucket) = sync_bucket(scope, dimension) else {
            return;
        };
        let Some(backlog) = bucket.lowered_backlog_us(remaining) else {
            return;
        };
        self.inner.send(Op {
            kind: OpKind::Sync,
            keys: vec![self.inner.keys.scope(scope)].into(),
            args: vec![bucket.id().into(), bucket.rate().into(), backlog.into()],
            give_up: Instant::now() + 2 * self.inner.settings.probe,
        });
    }

    /// Shares the cut with every process on this Redis (in the background).
    fn publish_rate_cut(&self, scope: &ScopeRef, cut: tollgate::store::RateCut) {
        self.inner.publish_cut(scope, cut);
    }

    /// The latest cut any process published, as last read (at most a probe interval old while
    /// Redis answers).
    fn latest_rate_cut(&self, scope: &ScopeRef) -> Option<tollgate::store::RateCut> {
        self.inner.latest_cut(scope)
    }

    /// A [`RedisLedger`] on this store, so that spend caps hold across processes too.
    fn ledger(&self) -> Option<Arc<dyn tollgate::spend::Ledger>> {
        Some(Arc::new(RedisLedger::new(self)))
    }
}
