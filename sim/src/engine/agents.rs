//! The agents' request processes: which agent sends its next request, and when.
//!
//! Closed agents send, wait for the answer, think, and send again; open agents (constant or
//! Poisson arrivals) send on their own clock whether earlier requests finished or not. Every agent
//! draws from its own ChaCha stream, so adding an agent does not change the others' draws.

use crate::scenario::{Arrival, Scenario};
use crate::strategy::{unit, Call, CallRng};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;
use tollgate_mock::MockRequest;

/// A request to send now, with the random generator its strategy draws from.
#[derive(Debug)]
pub(super) struct Launch {
    pub(super) call: Call,
    pub(super) rng: CallRng,
}

/// One agent.
#[derive(Debug)]
struct Agent {
    /// Its group in the scenario.
    group: usize,
    /// Its generator: an open agent draws its arrivals from it, a closed agent lends it to its
    /// call in flight.
    rng: Option<CallRng>,
    /// Requests made so far.
    seq: u64,
    /// Open arrivals: when its latest request arrived, since the start.
    at: Duration,
}

/// Every agent and when each one sends next, in virtual time since the start of the run.
#[derive(Debug)]
pub(super) struct Agents<'a> {
    scenario: &'a Scenario,
    /// Per group: the output tokens of each of its requests.
    output_tokens: Vec<u64>,
    agents: Vec<Agent>,
    /// `(when, agent)` of every agent with a request to come, earliest first, ties in agent
    /// order.
    next: BinaryHeap<Reverse<(Duration, u32)>>,
}

impl<'a> Agents<'a> {
    /// The agents of `scenario`, numbered group after group, none of them started.
    pub(super) fn new(scenario: &'a Scenario) -> Self {
        let count = scenario.agent_count() as usize;
        let mut agents = Agents {
            scenario,
            output_tokens: scenario
                .agents
                .iter()
                .map(|g| (g.max_tokens as f64 * g.output_fraction).round() as u64)
                .collect(),
            agents: Vec::with_capacity(count),
            next: BinaryHeap::with_capacity(count),
        };
        for (group, g) in scenario.agents.iter().enumerate() {
            for _ in 0..g.count {
                let index = agents.agents.len() as u32;
                agents.agents.push(Agent {
                    group,
                    rng: Some(CallRng::new(scenario.seed, index)),
                    seq: 0,
                    at: Duration::ZERO,
                });
                match g.arrival {
                    Arrival::Closed => agents.next.push(Reverse((Duration::ZERO, index))),
                    Arrival::Constant | Arrival::Poisson => agents.arrive_next(index),
                }
            }
        }
        agents
    }

    /// When the next request is due, if any agent has one to come.
    pub(super) fn next_due(&self) -> Option<Duration> {
        self.next.peek().map(|Reverse((at, _))| *at)
    }

    /// The next request due at or before `due` when the clock reads `now`, if any. A closed agent
    /// whose turn comes after the scenario's duration stops instead.
    pub(super) fn pop_due(&mut self, due: Duration, now: Duration) -> Option<Launch> {
        while let Some(&Reverse((at, index))) = self.next.peek() {
            if at > due {
                return None;
            }
            self.next.pop();
            let scenario = self.scenario;
            let agent = &mut self.agents[index as usize];
            let group = &scenario.agents[agent.group];
            let call = Call {
                agent: index,
                priority: group.priority,
                req: MockRequest::new(
                    group.input_tokens,
                    group.max_tokens,
                    self.output_tokens[agent.group],
                )
                .with_tag((u64::from(index) << 32) | agent.seq),
            };
            if group.arrival == Arrival::Closed {
                if now >= scenario.duration {
                    continue;
                }
                let Some(rng) = agent.rng.take() else {
                    continue; // not reached: a closed agent is due only with its generator back
                };
                agent.seq += 1;
                return Some(Launch { call, rng });
            }
            agent.seq += 1;
            let rng = CallRng::new(scenario.seed ^ call.req.tag, index);
            self.arrive_next(index);
            return Some(Launch { call, rng });
        }
        None
    }

    /// A request of `agent` ended at `now`: a closed agent takes its generator back and thinks
    /// (less during a spike) before its next one.
    pub(super) fn ended(&mut self, agent: u32, rng: CallRng, now: Duration) {
        let scenario = self.scenario;
        let a = &mut self.agents[agent as usize];
        let group = &scenario.agents[a.group];
        if group.arrival == Arrival::Closed {
            a.rng = Some(rng);
            let think = group.think_time.div_f64(scenario.multiplier(now));
            self.next.push(Reverse((now + think, agent)));
        }
    }

    /// Schedules the next arrival of an open agent, unless it falls after the scenario's
    /// duration.
    fn arrive_next(&mut self, index: u32) {
        let scenario = self.scenario;
        let a = &mut self.agents[index as usize];
        let group = &scenario.agents[a.group];
        let Some(rng) = a.rng.as_mut().map(CallRng::get) else {
            return;
        };
        let rate = group.rate_per_min / 60.0 * scenario.multiplier(a.at);
        let gap = if group.arrival == Arrival::Constant {
            1.0 / rate
        } else {
            -(1.0 - unit(rng)).ln() / rate
        };
        // The first constant arrival of each agent is spread over one gap, so agents do not all
        // start in lock-step.
        a.at += if a.seq == 0 && group.arrival == Arrival::Constant {
            Duration::from_secs_f64(gap * unit(rng))
        } else {
            Duration::from_secs_f64(gap)
        };
        if a.at < scenario.duration {
            self.next.push(Reverse((a.at, index)));
        }
    }
}
