//! The admission path: the acquire script's arguments and answer, the reservation it hands out,
//! and the release of an admission whose answer was never read.

use super::handle::Prepared;
use super::heartbeat::Beat;
use super::writer::{evalsha, Arg, Op, OpKind};
use super::Inner;
use crate::script::Bucket;
use crate::Error;
use redis::RedisWrite;
use smallvec::SmallVec;
use std::fmt;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tollgate::store::{Acquire, Decision, MemoryReservation, StoreError};
use tollgate::ScopeRef;
use tollgate_core::{Cost, Nanos};

/// What an admission in a [`RedisStore`](crate::RedisStore) holds until it is settled.
#[derive(Debug)]
pub struct RedisReservation {
    pub(super) held: Held,
}

#[derive(Debug)]
pub(super) enum Held {
    Redis {
        id: String,
        /// The call's scopes and keys.
        call: Arc<Prepared>,
        charged: Cost,
        /// The server's time of the admission, µs since the Unix epoch.
        at: u64,
        /// Keeps the concurrency slots alive while the reservation is held.
        _beat: Beat,
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

/// The future of [`RedisStore`](crate::RedisStore)'s `acquire`: ready at once for a call that never fits or while
/// Redis is known to be away, otherwise one script round trip.
pub struct AcquireFuture {
    pub(super) inner:
        Pin<Box<dyn Future<Output = Result<Decision<RedisReservation>, StoreError>> + Send>>,
}

impl AcquireFuture {
    pub(super) fn ready(out: Result<Decision<RedisReservation>, StoreError>) -> Self {
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

impl Inner {
    /// The answer while Redis is away.
    pub(super) fn away(
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

    /// The keys of settle.lua: the reservation's marker, then the call's keys.
    pub(super) fn settle_keys(&self, id: &str, call: &[String]) -> Arc<[String]> {
        std::iter::once(self.keys.settled(id))
            .chain(call.iter().cloned())
            .collect()
    }

    /// The admission script's command: the call's keys, its reservation id, the reservation TTL
    /// in µs, and every number of the call packed in one argument of little-endian doubles (`n`,
    /// then per scope its concurrency cap (0: none), its number of buckets, and per bucket its id,
    /// rate, charge and room), written straight into the command.
    pub(super) fn acquire_cmd(&self, id: &str, call: &Prepared, cost: Cost) -> redis::Cmd {
        let ttl = u64::try_from(self.settings.ttl.as_micros()).unwrap_or(u64::MAX);
        let buckets: usize = call.scopes.iter().map(|s| s.limits.gcras().len()).sum();
        let packed = 8 * (1 + 2 * call.scopes.len() + 4 * buckets);
        let mut cmd = evalsha(&self.scripts.acquire, &call.keys, 3, id.len() + 20 + packed);
        cmd.arg(id).arg(Arg::from(ttl));
        let mut out = cmd.writer_for_next_arg();
        // Every number is below 2^53: exact as a double. (Writing to a `Vec` cannot fail.)
        let mut put = |v: u64| {
            let _ = out.write_all(&(v as f64).to_le_bytes());
        };
        put(call.scopes.len() as u64);
        for s in call.scopes.iter() {
            let gcras = s.limits.gcras();
            put(s.limits.concurrency().unwrap_or(0));
            put(gcras.len() as u64);
            for g in gcras {
                let b = Bucket::new(g);
                let n = cost.amount(g.dimension());
                for v in [b.id(), b.rate(), b.charge_us(n), b.room_us(n)] {
                    put(v);
                }
            }
        }
        drop(out);
        cmd
    }

    /// The arguments of settle.lua; `None` for `cost` releases the reservation without
    /// reconciling (the admission's outcome is unknown).
    pub(super) fn settle_args(
        &self,
        id: &str,
        scopes: &[ScopeRef],
        costs: Option<(Cost, Cost)>,
    ) -> Vec<Arg> {
        // The marker outlives every retry of the settle.
        let marker_ms = u64::try_from(self.settle_window().as_millis()).unwrap_or(u64::MAX);
        let mut packed = vec![scopes.len() as f64];
        for s in scopes {
            let changed: SmallVec<[(Bucket, i64); 4]> = match costs {
                None => SmallVec::new(),
                Some((charged, actual)) => s
                    .limits
                    .gcras()
                    .iter()
                    .map(|g| {
                        let b = Bucket::new(g);
                        let d = g.dimension();
                        (b, b.delta_us(charged.amount(d), actual.amount(d)))
                    })
                    .filter(|(_, delta)| *delta != 0)
                    .collect(),
            };
            packed.push(f64::from(u8::from(s.limits.concurrency().is_some())));
            packed.push(changed.len() as f64);
            for (b, delta) in &changed {
                packed.extend([b.id() as f64, b.rate() as f64, *delta as f64]);
            }
        }
        vec![
            Arg::Str(id.to_owned()),
            marker_ms.saturating_mul(2).max(1).into(),
            Arg::doubles(packed),
        ]
    }

    pub(super) async fn acquire_remote(
        self: Arc<Self>,
        now: Nanos,
        call: Arc<Prepared>,
        cost: Cost,
    ) -> Result<Decision<RedisReservation>, StoreError> {
        let id = format!(
            "{}.{}",
            self.client,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let cmd = self.acquire_cmd(&id, &call, cost);
        // Until the reply is read, the script may have admitted the call without anyone to settle
        // it (the future was dropped, the reply lost): then the reservation is released.
        let mut unsettled = Unsettled {
            inner: &self,
            id: &id,
            call: &call,
            armed: true,
        };
        let reply = self.run::<Vec<i64>>(&self.scripts.acquire, &cmd).await;
        match reply {
            Ok(reply) => {
                self.health.succeeded();
                unsettled.armed = false;
                drop(unsettled);
                let decision = self.decided(&reply, &call.scopes)?;
                Ok(match decision {
                    Some(wait) => wait,
                    None => {
                        let beat = self.beat_for(&id, call.flights());
                        Decision::Admitted(RedisReservation {
                            held: Held::Redis {
                                id,
                                call,
                                charged: cost,
                                at: reply.get(1).map_or(0, |&t| u64::try_from(t).unwrap_or(0)),
                                _beat: beat,
                            },
                        })
                    }
                })
            }
            Err(e) => {
                self.health.failed(&e, self.fails_open());
                drop(unsettled);
                let call = Acquire {
                    now,
                    scopes: &call.scopes,
                    cost,
                };
                self.away(&call, e)
            }
        }
    }

    /// `None` when admitted, else the wait.
    pub(super) fn decided(
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
}

/// Releases a reservation whose admission reply was never read.
struct Unsettled<'a> {
    inner: &'a Arc<Inner>,
    id: &'a str,
    call: &'a Prepared,
    armed: bool,
}

impl Drop for Unsettled<'_> {
    fn drop(&mut self) {
        if self.armed {
            let args = self.inner.settle_args(self.id, &self.call.scopes, None);
            self.inner.send(Op {
                kind: OpKind::Settle,
                keys: self.inner.settle_keys(self.id, &self.call.keys),
                args,
                give_up: Instant::now() + self.inner.settle_window(),
            });
        }
    }
}
