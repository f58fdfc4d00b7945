//! The Redis store against a real `redis-server` (each test starts its own on a free port and
//! kills it at the end) on the real clock.
//!
//! * `store`: the admission script, settle, cooldown, header sync, keys, from one or two processes'
//!   stores.
//! * `processes`: several OS processes (this binary re-run as a child, see [`child_process`])
//!   hammering one limit or one spend cap; a process killed while holding slots.
//! * `faults`: Redis frozen or killed mid-run, and bad URLs.
//! * `handle`: calls with the store's handle of their scopes (as the layer makes them) share the
//!   keys of calls without one; a handle of older limits is not used; scripts the server forgot
//!   are loaded again.
//! * `lost_reply`: spend settles whose replies are lost (a proxy closes the connection after the
//!   server carried them out): retried, their alerts fire once and their cost counts once.
//! * `renewal`: reservations held longer than their TTL are renewed; those of a store dropped
//!   without settling them expire one TTL later.
//! * `spend`: spend caps in Redis (`RedisLedger`): layers sharing one budget, alerts once in all,
//!   idempotent settles, reclaim after the TTL, fail closed, and the same decisions as
//!   tollgate-core's `BudgetState` over a random sequence.

mod faults;
mod handle;
mod lost_reply;
mod processes;
mod proxy;
mod renewal;
mod server;
mod spend;
mod store;
mod support;

/// The entry point of the child processes that `processes` spawns: this test binary re-run with
/// `--ignored --exact child_process` and the child's settings in the environment. Ignored in a
/// normal run.
#[test]
#[ignore = "run by the multi-process tests in a child process"]
fn child_process() {
    processes::child_main();
}
