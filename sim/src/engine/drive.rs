//! The run itself: each request sent when its agent makes it, every call in flight polled by one
//! future (no task and no timer per request beyond what the client and the provider use), on the
//! paused clock; one record per request.

use super::agents::{Agents, Launch};
use super::calls::Calls;
use crate::rng::CallRng;
use crate::scenario::Scenario;
use crate::strategy::Call;
use std::future::{poll_fn, Future};
use std::task::Poll;
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

/// Runs the agents of `scenario` from `start`, each request sent with `send` (which answers whether
/// it succeeded and gives the generator back), until every request ended or the drain is over
/// (requests still in flight then are dropped and stay without an end), and returns the requests
/// in the order they were made.
pub(super) async fn drive<S, F>(scenario: &Scenario, start: Instant, send: S) -> Vec<Record>
where
    S: Fn(Call, CallRng) -> F,
    F: Future<Output = (bool, CallRng)>,
{
    let mut agents = Agents::new(scenario);
    let mut records = Vec::new();
    let mut in_flight = Calls::new();
    let end = scenario.duration + scenario.drain;
    // Wakes the run at the next request due, or at the end.
    let mut timer = std::pin::pin!(tokio::time::sleep_until(start + end));
    // Everything due up to here is due now: the timer fired for it.
    let mut fired = Duration::ZERO;
    // The waker (data and vtable) the timer last answered `Pending` to, at its deadline.
    let mut asked = None;
    poll_fn(|cx| {
        // The paused clock stands still while the run is polled.
        let now = start.elapsed();
        in_flight.begin(cx.waker());
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
                let Launch { call, rng } = launch;
                in_flight.push(send(call, rng), (records.len() - 1, call.agent));
            }
            match in_flight.poll_next() {
                Poll::Ready(Some(((record, agent), (ok, rng)))) => {
                    let r = &mut records[record];
                    r.done = Some(now);
                    r.ok = ok;
                    agents.ended(agent, rng, now);
                    continue;
                }
                Poll::Ready(None) if agents.next_due().is_none() => break Poll::Ready(()),
                _ if in_flight.woken() => continue,
                _ => {}
            }
            let wake = start + agents.next_due().unwrap_or(end);
            if timer.deadline() != wake {
                timer.as_mut().reset(wake);
                asked = None;
            }
            // A timer that answered `Pending` to this waker wakes it when it fires: until then
            // there is no need to ask again.
            let waker = (cx.waker().data(), cx.waker().vtable());
            if asked == Some(waker) && !timer.is_elapsed() {
                break Poll::Pending;
            }
            if timer.as_mut().poll(cx).is_pending() {
                asked = Some(waker);
                break Poll::Pending;
            }
            asked = None;
            fired = wake - start;
        };
        in_flight.end();
        poll
    })
    .await;
    records
}
