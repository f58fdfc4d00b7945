//! Writes sent in the background (settle, cooldown, header sync), kept and retried while Redis
//! is away, and the one way every script is run.

use super::Inner;
use crate::Error;
use redis::{ErrorKind, FromRedisValue, RedisWrite, Script, ServerErrorKind, ToRedisArgs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Writes kept for a retry while Redis is away, at most; the oldest go first when more fail.
const MAX_KEPT: usize = 100_000;

/// How many times a settle whose round trip failed for a transient cause (a timeout, a broken
/// connection: its reply may be all that was lost) is sent again at once, before it is kept for
/// the retries at the probe interval.
pub(crate) const SETTLE_RETRIES: u32 = 3;
/// The wait before the first of those retries; it doubles after each (50, 100, 200 ms).
pub(crate) const SETTLE_BACKOFF: Duration = Duration::from_millis(50);

/// One script argument.
#[derive(Clone, Debug)]
pub(super) enum Arg {
    Str(String),
    Int(i64),
    /// Numbers packed as little-endian doubles, as the scripts unpack them with `struct`.
    Doubles(Vec<u8>),
}

impl Arg {
    /// Packs `values` (each exact as a double: below 2^53 in magnitude).
    pub(super) fn doubles(values: impl IntoIterator<Item = f64>) -> Self {
        Arg::Doubles(values.into_iter().flat_map(f64::to_le_bytes).collect())
    }
}

impl ToRedisArgs for Arg {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        match self {
            Arg::Str(s) => s.write_redis_args(out),
            Arg::Int(i) => i.write_redis_args(out),
            Arg::Doubles(b) => b.write_redis_args(out),
        }
    }
}

impl From<u64> for Arg {
    fn from(v: u64) -> Self {
        Arg::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

/// `EVALSHA <script> <keys>` with room for `args` more arguments of `bytes` bytes in all: a command
/// written straight into one buffer (no list of encoded arguments first), to which the caller
/// adds the arguments.
pub(super) fn evalsha(script: &Script, keys: &[String], args: usize, bytes: usize) -> redis::Cmd {
    let key_bytes: usize = keys.iter().map(String::len).sum();
    let mut cmd = redis::Cmd::with_capacity(3 + keys.len() + args, 64 + key_bytes + bytes);
    cmd.arg("EVALSHA")
        .arg(script.get_hash())
        .arg(keys.len())
        .arg(keys);
    cmd
}

/// A write sent in the background (settle, cooldown, header sync).
#[derive(Debug)]
pub(super) struct Op {
    pub(super) kind: OpKind,
    pub(super) keys: Arc<[String]>,
    pub(super) args: Vec<Arg>,
    /// After this the write is given up (the reservation's slots were reclaimed, the cooldown is
    /// over, the reported remainder is stale).
    pub(super) give_up: Instant,
}

#[derive(Clone, Debug)]
pub(super) enum OpKind {
    Settle,
    CoolDown,
    Sync,
    /// A cut of an adaptive rate.
    RateCut,
    /// A spend ledger's settle or release, and what to do with Redis's answer.
    Ledger(Done),
}

/// What a background write does with Redis's answer once it is taken.
#[derive(Clone)]
pub(super) struct Done(pub(super) Arc<dyn Fn(redis::Value) + Send + Sync>);

impl std::fmt::Debug for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Done(..)")
    }
}

impl Inner {
    pub(super) fn script(&self, kind: &OpKind) -> &Script {
        match kind {
            OpKind::Settle => &self.scripts.settle,
            OpKind::CoolDown => &self.scripts.cool_down,
            OpKind::Sync => &self.scripts.sync,
            OpKind::RateCut => &self.scripts.rate_cut,
            OpKind::Ledger(_) => &self.scripts.ledger_settle,
        }
    }

    /// Runs `script` once, within the timeout.
    pub(super) async fn invoke<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[String],
        args: &[Arg],
    ) -> Result<T, Error> {
        let mut cmd = evalsha(script, keys, args.len(), 0);
        for a in args {
            cmd.arg(a);
        }
        self.run(script, &cmd).await
    }

    /// Sends `cmd`, an `EVALSHA` of `script` (see [`evalsha`]), within the timeout; loads the
    /// script first when Redis does not know it (a restarted or flushed server) and sends it again.
    pub(super) async fn run<T: FromRedisValue>(
        &self,
        script: &Script,
        cmd: &redis::Cmd,
    ) -> Result<T, Error> {
        let mut conn = self.conn.clone();
        let reply = async {
            match cmd.query_async(&mut conn).await {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    script.load_async(&mut conn).await?;
                    cmd.query_async(&mut conn).await
                }
                reply => reply,
            }
        };
        match tokio::time::timeout(self.settings.timeout, reply).await {
            Ok(Ok(v)) => Ok(v),
            // The connection's own response timeout is the same as ours.
            Ok(Err(e)) if e.is_timeout() => Err(Error::timeout(self.settings.timeout)),
            Ok(Err(e)) => Err(Error::redis(e)),
            Err(_) => Err(Error::timeout(self.settings.timeout)),
        }
    }

    /// Runs a settle (safe to repeat: the script keeps a marker per reservation) once, and again
    /// up to [`SETTLE_RETRIES`] times while it fails for a transient cause, after
    /// [`SETTLE_BACKOFF`], doubled at each retry. Its last error, if every attempt failed.
    pub(super) async fn invoke_settle<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[String],
        args: &[Arg],
    ) -> Result<T, Error> {
        let (mut left, mut backoff) = (SETTLE_RETRIES, SETTLE_BACKOFF);
        loop {
            match self.invoke(script, keys, args).await {
                Err(e) if left > 0 && e.is_transient() => {
                    tracing::debug!(error = %e, ?backoff, "a settle failed: sending it again");
                    tokio::time::sleep(backoff).await;
                    (left, backoff) = (left - 1, backoff * 2);
                }
                reply => return reply,
            }
        }
    }

    pub(super) fn fails_open(&self) -> bool {
        self.local.is_some()
    }

    /// Sends a write in the background; keeps it for a retry when Redis is away.
    pub(super) fn send(self: &Arc<Self>, op: Op) {
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

    /// Runs a background write (a settle with its quick retries); whether Redis took it.
    pub(super) async fn write(&self, op: &Op) -> bool {
        let script = self.script(&op.kind);
        let reply = match op.kind {
            OpKind::Settle | OpKind::Ledger(_) => {
                self.invoke_settle::<redis::Value>(script, &op.keys, &op.args)
                    .await
            }
            _ => self.invoke(script, &op.keys, &op.args).await,
        };
        match reply {
            Ok(v) => {
                self.health.succeeded();
                if let OpKind::Ledger(done) = &op.kind {
                    (done.0)(v);
                }
                true
            }
            Err(e) => {
                self.health.failed(&e, self.fails_open());
                false
            }
        }
    }

    pub(super) fn keep(self: &Arc<Self>, op: Op) {
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
    pub(super) async fn retry(self: Arc<Self>) {
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
}
