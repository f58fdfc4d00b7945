//! A [`tollgate`] [`Store`](tollgate::Store) on Redis: processes and hosts that share a provider
//! key share one limit.
//!
//! Without it, every process keeps its own buckets, and `N` replicas admit `N` times the limit.
//! With it, every [`ThrottleLayer`](tollgate::ThrottleLayer) built on a [`RedisStore`] with the
//! same Redis, prefix and hash tag draws from the same buckets, concurrency counts and cooldowns.
//!
//! ```no_run
//! use tollgate::{Cost, Dimension, Limit, ScopeLimits, ThrottleLayer};
//! use tollgate_redis::{FailMode, RedisStore};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tollgate::BoxError> {
//! // The same lines in every process, on every host.
//! let store = RedisStore::builder("redis://127.0.0.1:6379")
//!     .hash_tag("openai-org-1") // one tag per provider key
//!     .fail_mode(FailMode::Open { fraction: 0.25 }) // 4 processes: a quarter each while Redis is away
//!     .build()
//!     .await?;
//! let throttle = ThrottleLayer::builder()
//!     .scope("global", ScopeLimits::new()
//!         .limit(Limit::per_minute(Dimension::Requests, 500))
//!         .limit(Limit::per_minute(Dimension::InputTokens, 200_000))
//!         .concurrency(32))
//!     .estimate(|prompt: &String| Cost::request().with_input_tokens(prompt.len() as u64 / 4))
//!     .build_with_store(store)?;
//! let provider = service_fn(|prompt: String| async move { Ok::<_, tollgate::BoxError>(prompt.len()) });
//! let client = ServiceBuilder::new().layer(throttle).service(provider);
//! let answer = client.oneshot("hello".to_string()).await?;
//! assert_eq!(answer, 5);
//! # Ok(())
//! # }
//! ```
//!
//! # What is shared, and how
//! * **Admission**: one Lua script per call, one round trip. It reads the server's clock
//!   (`TIME`, whole µs), so processes with skewed clocks agree, checks every bucket (requests,
//!   input, output and total tokens, over any period), the cooldown and the concurrency cap of
//!   every scope of the call, and either charges all of them or none and returns the wait. The
//!   arithmetic is tollgate-core's GCRA in integer microseconds: charges round up, refunds down,
//!   a call larger than a burst never fits (decided in the process, without a round trip).
//! * **Settling** after the response (refund or debt, release of the concurrency slot) runs in the
//!   background and is idempotent by reservation id (a marker key per settled id, kept twice the
//!   settle window). A settle that times out or whose connection breaks is sent again at once,
//!   up to 3 times, 50, 100 then 200 ms apart (its reply may be all that was lost). If Redis is
//!   still away it is kept and retried every [probe interval](RedisStoreBuilder::probe_interval)
//!   for the settle window: the [reservation TTL](RedisStoreBuilder::reservation_ttl), and at
//!   least 10 minutes.
//! * **Reclaim**: a concurrency slot is a member of the scope's set of calls in flight, scored
//!   with its expiry. While the call runs, its process moves the expiry forward every third of
//!   the [reservation TTL](RedisStoreBuilder::reservation_ttl) (default 30 s, so every 10 s;
//!   one round trip for all the slots of the store); a slot whose process died (or dropped its
//!   store), or whose admission reply was lost, no longer counts one TTL after its last
//!   refresh. A call whose settle never comes keeps its estimate charged, which errs on the safe
//!   side.
//! * **Cooldown and header sync** ([`Store::cool_down`](tollgate::Store::cool_down),
//!   [`Store::sync_remaining`](tollgate::Store::sync_remaining)) are written to Redis, so one
//!   process's 429 pauses every process. So are the adaptive mode's cuts of the rate
//!   ([`Store::publish_rate_cut`](tollgate::Store::publish_rate_cut), one small hash per scope,
//!   `…:a:<scope>`, the latest kept): every process reads the latest at most one probe interval
//!   after it and follows the same recovery curve. A report is applied as read (the default of
//!   [`Store::sync_reported_since`](tollgate::Store::sync_reported_since)): the requests other
//!   processes admitted since the reported call are not counted in this one, so applying it as
//!   of that call's admission could leave more than the provider holds.
//! * **Keys**: `<prefix>:{<hash tag>}:s:<scope>` (buckets and cooldown, one string),
//!   `…:f:<scope>` (calls in flight of a capped scope), `…:d:<reservation>` (settled markers),
//!   `…:clients`, and the spend ledger's `…:L:…` (see [`RedisLedger`]). The hash tag keeps every key of a store in one Redis Cluster slot. Every key
//!   expires when idle: a scope's state once its buckets are full again and its cooldown is over
//!   (plus one to two seconds: a busy key's expiry moves about once a second, not at every call),
//!   the rest after the reservation TTL or a day.
//!
//! # Spend caps across processes
//! A layer with budgets ([`prices`](tollgate::ThrottleBuilder::prices) and
//! [`budget`](tollgate::ThrottleBuilder::budget)) built on a [`RedisStore`] keeps its spend in the
//! same Redis: [`Store::ledger`](tollgate::Store::ledger) hands the layer a [`RedisLedger`]. Shared
//! are each budget's window spend, its reservations in flight and its fired alert thresholds. One
//! Lua script per call reserves the estimate in every budget of the call or refuses, with
//! tollgate-core's rule (`spent + reserved + estimate ≤ cap`), so with upper-bound estimates the
//! settled spend of a window never exceeds the cap across all processes, and each threshold fires
//! once per window in all. Settles and releases go in the background, idempotent by reservation id,
//! and retried like the store's settles: a retry whose first reply was lost gets the same answer,
//! with the same alerts, and charges nothing more. While a call holds a reservation its process
//! renews it every third of the [spend reservation TTL](RedisStoreBuilder::spend_reservation_ttl)
//! (default 10 minutes, so every 200 s); a reservation never settled (its process died) gives its
//! estimate back one TTL after its last renewal. Spend caps **fail closed**: while Redis is away or
//! slower than the timeout, calls with a budget are refused, whatever the [`FailMode`]. Windows are
//! computed from each process's wall clock (a clock `s` seconds off moves that process's window
//! boundary by `s`); rate limits keep using Redis's `TIME`.
//!
//! # Waiting and fairness
//! Within a process, the layer's queue is FIFO per priority tier, as with the in-memory store.
//! Across processes, each process's first waiting call asks again exactly when Redis said its
//! capacity is due (and a call refused by a concurrency cap every [poll
//! interval](RedisStoreBuilder::poll_interval)); whoever asks first then wins. Nothing over-admits,
//! but there is no queue across processes: under sustained overload a process is not guaranteed
//! its turn, though each retry has the same chance as any other process's.
//!
//! # When Redis is away
//! An admission that fails or takes longer than the [timeout](RedisStoreBuilder::timeout) takes
//! the [`FailMode`]: [`Open`](FailMode::Open) admits through a limiter in this process at a
//! fraction of every limit, [`Closed`](FailMode::Closed) refuses the call with an [`Error`]. The
//! store then stops asking Redis for the [probe interval](RedisStoreBuilder::probe_interval), asks
//! again with one call, and returns to the shared limits as soon as Redis answers. It logs both
//! transitions with `tracing` (`warn` on the way down, `info` on the way back). Nothing panics,
//! and no call waits for Redis longer than the timeout.
//!
//! # Statistics
//! [`Store::state`](tollgate::Store::state) cannot wait for Redis: it returns the state read by
//! the previous call and reads it again in the background.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

mod builder;
mod error;
mod fallback;
mod script;
mod store;

pub use builder::{FailMode, RedisStoreBuilder};
pub use error::Error;
pub use store::{AcquireFuture, RedisHandle, RedisLedger, RedisReservation, RedisStore};
