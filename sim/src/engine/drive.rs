//! The run itself: each request sent when its agent makes it, every call in flight polled by one
//! future (no task and no timer per request beyond what the client and the provider use), on the
//! paused clock; one record per request.

use super::agents::{Agents, Launch};
use crate::scenario::Scenario;
use crate::strategy::{CallRng, Client};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::task::AtomicWaker;
use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::time::Instant;

/// One request as the engine saw it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Record {
    pub(super) tag: u64,
    pub(super) created: Duration,
    pub(super) done: Option<Duration>,
    pub(super) ok: bool,
}

/// A request that ended: which, whose, and whether it succeeded.
struct Ended {
    record: usize,
    agent: u32,
    rng: CallRng,
    ok: bool,
}

/// The waker of the calls in flight. A call woken while the run is being polled (by another call,
/// or by itself) is only noted, and the run polls the calls again at once: waking the run would
/// send the runtime through its driver for nothing.
#[derive(Debug, Default)]
struct Nudge {
    woken: AtomicBool,
    polling: AtomicBool,
    run: AtomicWaker,
}

impl Wake for Nudge {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Relaxed);
        if !self.polling.load(Relaxed) {
            self.run.wake();
        }
    }
}

async fn send(client: &Client, launch: Launch, record: usize) -> Ended {
    let Launch { call, mut rng } = launch;
    let ok = client.send(call, &mut rng).await;
    Ended {
        record,
        agent: call.agent,
        rng,
        ok,
    }
}

/// Runs the agents of `scenario` through `client` from `start` until every request ended or the
/// drain is over (requests still in flight then are dropped and stay without an end), and returns
/// the requests in the order they were made.
pub(super) async fn drive(scenario: &Scenario, client: &Client, start: Instant) -> Vec<Record> {
    let mut agents = Agents::new(scenario);
    let mut records = Vec::new();
    let mut in_flight = FuturesUnordered::new();
    let end = scenario.duration + scenario.drain;
    // Wakes the run at the next request due, or at the end.
    let mut timer = std::pin::pin!(tokio::time::sleep_until(start + end));
    // Everything due up to here is due now: the timer fired for it.
    let mut fired = Duration::ZERO;
    let nudge = Arc::new(Nudge::default());
    let calls_waker = Waker::from(Arc::clone(&nudge));
    poll_fn(|cx| {
        // The paused clock stands still while the run is polled.
        let now = start.elapsed();
        nudge.run.register(cx.waker());
        nudge.polling.store(true, Relaxed);
        let poll = loop {
            let due = now.max(fired);
            if due >= end {
                break Poll::Ready(());
            }
            while let Some(launch) = agents.pop_due(due, now) {
                records.push(Record {
                    tag: launch.call.req.tag,
                    created: now,
                    done: None,
                    ok: false,
                });
                in_flight.push(send(client, launch, records.len() - 1));
            }
            nudge.woken.store(false, Relaxed);
            match in_flight.poll_next_unpin(&mut Context::from_waker(&calls_waker)) {
                Poll::Ready(Some(ended)) => {
                    let r = &mut records[ended.record];
                    r.done = Some(now);
                    r.ok = ended.ok;
                    agents.ended(ended.agent, ended.rng, now);
                    continue;
                }
                Poll::Ready(None) if agents.next_due().is_none() => break Poll::Ready(()),
                _ if nudge.woken.load(Relaxed) => continue,
                _ => {}
            }
            let wake = start + agents.next_due().unwrap_or(end);
            if timer.deadline() != wake {
                timer.as_mut().reset(wake);
            }
            if timer.as_mut().poll(cx).is_pending() {
                break Poll::Pending;
            }
            fired = wake - start;
        };
        nudge.polling.store(false, Relaxed);
        poll
    })
    .await;
    records
}
