//! [`RedisStore`]: the [`Store`] whose buckets live in Redis.

use crate::fallback::{Health, Local, Route};
use crate::script::{never_fits, sync_bucket, Bucket, Keys, Scripts};
use crate::{Error, FailMode, RedisStoreBuilder};
use redis::aio::ConnectionManager;
use redis::{FromRedisValue, RedisWrite, Script, ToRedisArgs};
use smallvec::SmallVec;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::time::Instant;
use tollgate::store::{
    Acquire, Decision, MemoryReservation, ScopeState, Settlement, Store, StoreError,
};
use tollgate::{ScopeKey, ScopeRef};
use tollgate_core::{Cost, Dimension, Nanos};

/// Writes kept for a retry while Redis is away, at most; the oldest go first when more fail.
const MAX_KEPT: usize = 100_000;

/// A [`Store`] on Redis: every process (and host) built on the same Redis, prefix and hash tag
/// shares the same buckets, concurrency counts and cooldowns.
///
/// * **One round trip per admission**: one Lua script checks every bucket, cooldown and
///   concurrency cap of every scope of the call against the server's clock (`TIME`), and either
///   charges them all or returns the wait.
/// * **Settling** (reconcile and release) is sent in the background and is idempotent: each
///   admission has a reservation id, and a second settle of it changes nothing. A settle that
///   fails because Redis is away is kept and retried until the reservation TTL has passed.
/// * **Reclaim**: concurrency slots not given back within the
///   [TTL](RedisStoreBuilder::reservation_ttl) (the process died, or the admission reply was
///   lost) no longer count; the estimate stays charged.
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
        }
    }
}

/// One script argument.
#[derive(Clone, Debug)]
enum Arg {
    Str(String),
    Int(i64),
}

impl ToRedisArgs for Arg {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        match self {
            Arg::Str(s) => s.write_redis_args(out),
            Arg::Int(i) => i.write_redis_args(out),
        }
    }
}

impl From<u64> for Arg {
    fn from(v: u64) -> Self {
        Arg::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

/// A write sent in the background (settle, cooldown, header sync).
#[derive(Debug)]
struct Op {
    kind: OpKind,
    keys: Arc<[String]>,
    args: Vec<Arg>,
    /// After this the write is given up (the reservation's slots were reclaimed, the cooldown is
    /// over, the reported remainder is stale).
    give_up: Instant,
}

#[derive(Clone, Copy, Debug)]
enum OpKind {
    Settle,
    CoolDown,
    Sync,
}

/// What an admission in a [`RedisStore`] holds until it is settled.
#[derive(Debug)]
pub struct RedisReservation {
    held: Held,
}

#[derive(Debug)]
enum Held {
    Redis {
        id: String,
        keys: Arc<[String]>,
        scopes: Vec<ScopeRef>,
        charged: Cost,
        /// The server's time of the admission, µs since the Unix epoch.
        at: u64,
    },
    /// Admitted by the local limiter while Redis was away.
    Local(MemoryReservation),
}

impl RedisReservation {
    /// When Redis admitted the call, by the server's clock (µs since the Unix epoch); `None` for a
    /// call admitted by the local limiter while Redis was away.
    pub fn admitted_at(&self) -> Option<u64> {
        match self.held {
            Held::Redis { at, .. } => Some(at),
            Held::Local(_) => None,
        }
    }
}

/// The future of [`RedisStore`]'s `acquire`: ready at once for a call that never fits or while
/// Redis is known to be away, otherwise one script round trip.
pub struct AcquireFuture {
    inner: Pin<Box<dyn Future<Output = Result<Decision<RedisReservation>, StoreError>> + Send>>,
}

impl AcquireFuture {
    fn ready(out: Result<Decision<RedisReservation>, StoreError>) -> Self {
        AcquireFuture {
            inner: Box::pin(std::future::ready(out)),
        }
    }
}

impl fmt::Debug for AcquireFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcquireFuture").finish_non_exhaustive()
    }
}

impl Future for AcquireFuture {
    type Output = Result<Decision<RedisReservation>, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
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
    /// already settled, or was admitted by the local limiter (then it is settled
    /// there). For audits and tests; the layer uses the background [`Store::settle`].
    ///
    /// # Errors
    /// Redis failed or did not answer within the timeout; the settle is then kept and retried in
    /// the background, as [`Store::settle`] would.
    pub async fn settle_and_wait(
        &self,
        reservation: RedisReservation,
        settlement: Settlement,
    ) -> Result<Option<u64>, Error> {
        let Held::Redis {
            id,
            keys,
            scopes,
            charged,
            ..
        } = reservation.held
        else {
            if let (Held::Local(r), Some(local)) = (reservation.held, &self.inner.local) {
                local.settle(r, settlement);
            }
            return Ok(None);
        };
        let inner = &self.inner;
        let args = inner.settle_args(&id, &scopes, Some((charged, settlement.actual)));
        let keys = inner.settle_keys(&id, &keys);
        match inner
            .invoke::<Vec<i64>>(&inner.scripts.settle, &keys, &args)
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
                    give_up: Instant::now() + inner.settings.ttl,
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

impl Inner {
    fn script(&self, kind: OpKind) -> &Script {
        match kind {
            OpKind::Settle => &self.scripts.settle,
            OpKind::CoolDown => &self.scripts.cool_down,
            OpKind::Sync => &self.scripts.sync,
        }
    }

    /// Runs `script` once, within the timeout.
    async fn invoke<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[String],
        args: &[Arg],
    ) -> Result<T, Error> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        for a in args {
            inv.arg(a);
        }
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.settings.timeout, inv.invoke_async(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            // The connection's own response timeout is the same as ours.
            Ok(Err(e)) if e.is_timeout() => Err(Error::timeout(self.settings.timeout)),
            Ok(Err(e)) => Err(Error::redis(e)),
            Err(_) => Err(Error::timeout(self.settings.timeout)),
        }
    }

    fn fails_open(&self) -> bool {
        self.local.is_some()
    }

    /// The answer while Redis is away.
    fn away(
        &self,
        call: &Acquire<'_>,
        err: Error,
    ) -> Result<Decision<RedisReservation>, StoreError> {
        match &self.local {
            Some(local) => Ok(match local.acquire(call) {
                Decision::Admitted(r) => Decision::Admitted(RedisReservation {
                    held: Held::Local(r),
                }),
                Decision::Wait { wait, blocked } => Decision::Wait { wait, blocked },
                Decision::Never(n) => Decision::Never(n),
            }),
            None => Err(StoreError::new(err)),
        }
    }

    /// The keys of a call: each scope's state and set of calls in flight.
    fn call_keys(&self, scopes: &[ScopeRef]) -> Arc<[String]> {
        let mut keys = Vec::with_capacity(2 * scopes.len());
        for s in scopes {
            keys.push(self.keys.scope(s));
            keys.push(self.keys.in_flight(s));
        }
        keys.into()
    }

    /// The keys of settle.lua: the reservation's marker, then the call's keys.
    fn settle_keys(&self, id: &str, call: &[String]) -> Arc<[String]> {
        std::iter::once(self.keys.settled(id))
            .chain(call.iter().cloned())
            .collect()
    }

    fn acquire_args(&self, id: &str, scopes: &[ScopeRef], cost: Cost) -> Vec<Arg> {
        let mut args = Vec::with_capacity(3 + scopes.len() * 6);
        args.push(Arg::Str(id.to_owned()));
        args.push(
            u64::try_from(self.settings.ttl.as_micros())
                .unwrap_or(u64::MAX)
                .into(),
        );
        args.push((scopes.len() as u64).into());
        for s in scopes {
            args.push(s.limits.concurrency().unwrap_or(0).into());
            args.push((s.limits.gcras().len() as u64).into());
            for g in s.limits.gcras() {
                let b = Bucket::new(g);
                let n = cost.amount(g.dimension());
                args.push(Arg::Str(b.field()));
                args.push(b.rate().into());
                args.push(b.charge_us(n).into());
                args.push(b.room_us(n).into());
            }
        }
        args
    }

    /// The arguments of settle.lua; `None` for `cost` releases the reservation without
    /// reconciling (the admission's outcome is unknown).
    fn settle_args(&self, id: &str, scopes: &[ScopeRef], costs: Option<(Cost, Cost)>) -> Vec<Arg> {
        let mut args = Vec::with_capacity(3 + scopes.len() * 5);
        args.push(Arg::Str(id.to_owned()));
        // The marker outlives every retry of the settle (kept until the TTL has passed).
        let marker_ms = u64::try_from(self.settings.ttl.as_millis()).unwrap_or(u64::MAX);
        args.push(marker_ms.saturating_mul(2).max(1).into());
        args.push((scopes.len() as u64).into());
        for s in scopes {
            args.push(u64::from(s.limits.concurrency().is_some()).into());
            let Some((charged, actual)) = costs else {
                args.push(0u64.into());
                continue;
            };
            let changed: SmallVec<[(Bucket, i64); 4]> = s
                .limits
                .gcras()
                .iter()
                .map(|g| {
                    let b = Bucket::new(g);
                    let d = g.dimension();
                    (b, b.delta_us(charged.amount(d), actual.amount(d)))
                })
                .filter(|(_, delta)| *delta != 0)
                .collect();
            args.push((changed.len() as u64).into());
            for (b, delta) in changed {
                args.push(Arg::Str(b.field()));
                args.push(b.rate().into());
                args.push(Arg::Int(delta));
            }
        }
        args
    }

    async fn acquire_remote(
        self: Arc<Self>,
        now: Nanos,
        scopes: Vec<ScopeRef>,
        cost: Cost,
    ) -> Result<Decision<RedisReservation>, StoreError> {
        let id = format!(
            "{}.{}",
            self.client,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let keys = self.call_keys(&scopes);
        let args = self.acquire_args(&id, &scopes, cost);
        // Until the reply is read, the script may have admitted the call without anyone to settle
        // it (the future was dropped, the reply lost): then the reservation is released.
        let mut unsettled = Unsettled {
            inner: &self,
            id: &id,
            keys: &keys,
            scopes: &scopes,
            armed: true,
        };
        let reply = self
            .invoke::<Vec<i64>>(&self.scripts.acquire, &keys, &args)
            .await;
        match reply {
            Ok(reply) => {
                self.health.succeeded();
                unsettled.armed = false;
                drop(unsettled);
                let decision = self.decided(&reply, &scopes)?;
                Ok(match decision {
                    Some(wait) => wait,
                    None => Decision::Admitted(RedisReservation {
                        held: Held::Redis {
                            id,
                            keys,
                            scopes,
                            charged: cost,
                            at: reply.get(1).map_or(0, |&t| u64::try_from(t).unwrap_or(0)),
                        },
                    }),
                })
            }
            Err(e) => {
                self.health.failed(&e, self.fails_open());
                drop(unsettled);
                let call = Acquire {
                    now,
                    scopes: &scopes,
                    cost,
                };
                self.away(&call, e)
            }
        }
    }

    /// `None` when admitted, else the wait.
    fn decided(
        &self,
        reply: &[i64],
        scopes: &[ScopeRef],
    ) -> Result<Option<Decision<RedisReservation>>, StoreError> {
        match reply {
            [1, ..] => Ok(None),
            [0, wait, conc, blocked @ ..] => {
                let mut mask = 0u64;
                for &i in blocked {
                    if (0..scopes.len() as i64).contains(&i) {
                        mask |= 1 << (i % 64);
                    }
                }
                let mut wait = Duration::from_micros(u64::try_from(*wait).unwrap_or(0));
                if *conc == 1 {
                    // Another process may give the slot back: ask again after the poll interval.
                    wait = wait.max(self.settings.poll);
                }
                Ok(Some(Decision::Wait {
                    wait: Some(wait),
                    blocked: mask,
                }))
            }
            other => Err(StoreError::new(Error::reply(format!(
                "acquire returned {other:?}"
            )))),
        }
    }

    /// Sends a write in the background; keeps it for a retry when Redis is away.
    fn send(self: &Arc<Self>, op: Op) {
        if self.health.is_down() {
            self.keep(op);
            return;
        }
        let inner = self.clone();
        self.runtime.spawn(async move {
            if !inner.write(&op).await {
                inner.keep(op);
            }
        });
    }

    /// Runs a background write once; whether Redis took it.
    async fn write(&self, op: &Op) -> bool {
        match self
            .invoke::<redis::Value>(self.script(op.kind), &op.keys, &op.args)
            .await
        {
            Ok(_) => {
                self.health.succeeded();
                true
            }
            Err(e) => {
                self.health.failed(&e, self.fails_open());
                false
            }
        }
    }

    fn keep(self: &Arc<Self>, op: Op) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= MAX_KEPT {
            kept.pop_front();
            tracing::warn!(
                "more than {MAX_KEPT} redis writes wait for a retry: the oldest is dropped \
                 (its concurrency slots are reclaimed after the TTL)"
            );
        }
        kept.push_back(op);
        drop(kept);
        if !self.retrying.swap(true, Ordering::AcqRel) {
            self.runtime.spawn(self.clone().retry());
        }
    }

    /// Retries the kept writes in order, every probe interval, until none is left.
    async fn retry(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.settings.probe).await;
            loop {
                let next = {
                    let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
                    let now = Instant::now();
                    while kept.front().is_some_and(|op| op.give_up <= now) {
                        if let Some(op) = kept.pop_front() {
                            tracing::debug!(kind = ?op.kind, "a redis write is given up: it no longer matters");
                        }
                    }
                    kept.pop_front()
                };
                let Some(op) = next else {
                    self.retrying.store(false, Ordering::Release);
                    // A write kept between the last look and now would wait for nobody.
                    let empty = self
                        .kept
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .is_empty();
                    if empty || self.retrying.swap(true, Ordering::AcqRel) {
                        return;
                    }
                    continue;
                };
                if !self.write(&op).await {
                    self.kept
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push_front(op);
                    break;
                }
            }
        }
    }

    /// Reads `scope` from Redis in the background into the cache of [`Store::state`].
    fn read_state(self: &Arc<Self>, scope: &ScopeRef) {
        if !self
            .reading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(scope.key.clone())
        {
            return;
        }
        let inner = self.clone();
        let scope = scope.clone();
        self.runtime.spawn(async move {
            let buckets: Vec<Bucket> = scope.limits.gcras().iter().map(Bucket::new).collect();
            let keys = [inner.keys.scope(&scope), inner.keys.in_flight(&scope)];
            let args: Vec<Arg> = buckets.iter().map(|b| Arg::Str(b.field())).collect();
            let reply = inner
                .invoke::<Vec<i64>>(&inner.scripts.state, &keys, &args)
                .await;
            if let Ok(reply) = reply {
                if let Some(state) = state_of(&scope, &buckets, &reply) {
                    inner
                        .states
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(scope.key.clone(), state);
                }
            }
            inner
                .reading
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&scope.key);
        });
    }
}

/// A scope's state from state.lua's reply `{now, tat, rate, ..., in flight}`.
fn state_of(scope: &ScopeRef, buckets: &[Bucket], reply: &[i64]) -> Option<ScopeState> {
    let (&now, rest) = reply.split_first()?;
    let (&in_flight, pairs) = rest.split_last()?;
    if pairs.len() != 2 * buckets.len() {
        return None;
    }
    let available = scope
        .limits
        .gcras()
        .iter()
        .zip(buckets)
        .zip(pairs.chunks(2))
        .map(|((g, b), pair)| {
            let (tat, rate) = (pair[0], pair[1]);
            let mut backlog = (tat - now).max(0) as f64;
            if rate > 0 && rate as u64 != b.rate() {
                backlog *= rate as f64 / b.rate() as f64;
            }
            // A unit refills in period_ns / rate µs.
            let unit_us = g.period().as_u64() as f64 / b.rate() as f64;
            g.burst() as f64 - backlog / unit_us
        })
        .collect();
    Some(ScopeState {
        available,
        in_flight: u64::try_from(in_flight).unwrap_or(0),
    })
}

/// Releases a reservation whose admission reply was never read.
struct Unsettled<'a> {
    inner: &'a Arc<Inner>,
    id: &'a str,
    keys: &'a Arc<[String]>,
    scopes: &'a [ScopeRef],
    armed: bool,
}

impl Drop for Unsettled<'_> {
    fn drop(&mut self) {
        if self.armed {
            let args = self.inner.settle_args(self.id, self.scopes, None);
            self.inner.send(Op {
                kind: OpKind::Settle,
                keys: self.inner.settle_keys(self.id, self.keys),
                args,
                give_up: Instant::now() + self.inner.settings.ttl,
            });
        }
    }
}

impl Store for RedisStore {
    type Reservation = RedisReservation;
    type AcquireFuture = AcquireFuture;

    fn acquire(&self, call: &Acquire<'_>) -> AcquireFuture {
        if let Some(n) = never_fits(call.scopes, call.cost) {
            return AcquireFuture::ready(Ok(Decision::Never(n)));
        }
        let inner = &self.inner;
        match inner.health.route() {
            Route::Away => AcquireFuture::ready(inner.away(call, Error::unavailable())),
            Route::Redis => AcquireFuture {
                inner: Box::pin(inner.clone().acquire_remote(
                    call.now,
                    call.scopes.to_vec(),
                    call.cost,
                )),
            },
        }
    }

    fn settle(&self, reservation: RedisReservation, settlement: Settlement) {
        match reservation.held {
            Held::Local(r) => {
                if let Some(local) = &self.inner.local {
                    local.settle(r, settlement);
                }
            }
            Held::Redis {
                id,
                keys,
                scopes,
                charged,
                ..
            } => {
                let args = self
                    .inner
                    .settle_args(&id, &scopes, Some((charged, settlement.actual)));
                self.inner.send(Op {
                    kind: OpKind::Settle,
                    keys: self.inner.settle_keys(&id, &keys),
                    args,
                    give_up: Instant::now() + self.inner.settings.ttl,
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
            args: vec![
                Arg::Str(bucket.field()),
                bucket.rate().into(),
                backlog.into(),
            ],
            give_up: Instant::now() + 2 * self.inner.settings.probe,
        });
    }
}
