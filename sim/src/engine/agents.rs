//! The agents' request processes: which agent sends its next request, and when.
//!
//! Closed agents send, wait for the answer, think, and send again; open agents (constant or
//! Poisson arrivals) send on their own clock whether earlier requests finished or not; the agents
//! of recorded traffic send each call when it came, with its sizes and priority. Every agent
//! draws from its own stream, and every request of an open agent from its own (see
//! [`crate::rng`]), so adding an agent does not change the others' draws.

use crate::rng::{self, unit, CallRng};
use crate::scenario::{Arrival, Scenario};
use crate::strategy::Call;
use std::cmp::Reverse;
use std::collections::binary_heap::{BinaryHeap, PeekMut};
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
    /// order, each packed in one integer (see [`Due`]).
    next: BinaryHeap<Reverse<Due>>,
}

/// When an agent sends next and which agent: its nanoseconds since the start above the agent's
/// index, so that one integer comparison orders by time and then by agent. (Nanoseconds are kept
/// in 64 bits: 584 years, far beyond the end of any run, where a time beyond is held.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Due(u128);

impl Due {
    fn new(at: Duration, agent: u32) -> Self {
        let nanos = u64::try_from(at.as_nanos()).unwrap_or(u64::MAX);
        Due((u128::from(nanos) << 32) | u128::from(agent))
    }

    /// The last key at `at`: every key at or before `at` is at most this one.
    fn last_at(at: Duration) -> Self {
        Due::new(at, u32::MAX)
    }

    fn at(self) -> Duration {
        Duration::from_nanos((self.0 >> 32) as u64)
    }

    fn agent(self) -> u32 {
        self.0 as u32
    }
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
                    rng: Some(CallRng::new(scenario.seed, rng::AGENT, index.into())),
                    seq: 0,
                    at: Duration::ZERO,
                });
                let first = match g.arrival {
                    Arrival::Closed => Some(Duration::ZERO),
                    Arrival::Constant | Arrival::Poisson => agents.arrive_next(index),
                };
                if let Some(at) = first {
                    agents.next.push(Reverse(Due::new(at, index)));
                }
            }
        }
        agents
    }

    /// When the next request is due, if any agent has one to come.
    pub(super) fn next_due(&self) -> Option<Duration> {
        self.next.peek().map(|Reverse(due)| due.at())
    }

    /// The next request due at or before `due` when the clock reads `now`, if any. A closed agent
    /// whose turn comes after the scenario's duration stops instead.
    pub(super) fn pop_due(&mut self, due: Duration, now: Duration) -> Option<Launch> {
        let last = Due::last_at(due);
        while let Some(mut top) = self.next.peek_mut() {
            let Reverse(next) = *top;
            if next > last {
                return None;
            }
            let index = next.agent();
            let scenario = self.scenario;
            let agent = &mut self.agents[index as usize];
            let group = &scenario.agents[agent.group];
            let recorded = scenario
                .traffic
                .as_ref()
                .and_then(|t| t.call_of(agent.group, agent.seq));
            let (priority, req) = match recorded {
                Some(c) => (
                    c.priority,
                    MockRequest::new(c.input_tokens, c.max_tokens, c.output_tokens),
                ),
                None => (
                    group.priority,
                    MockRequest::new(
                        group.input_tokens,
                        group.max_tokens,
                        self.output_tokens[agent.group],
                    ),
                ),
            };
            let call = Call {
                agent: index,
                priority,
                req: req.with_tag((u64::from(index) << 32) | agent.seq),
            };
            if group.arrival == Arrival::Closed {
                PeekMut::pop(top);
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
            let rng = CallRng::new(scenario.seed, rng::REQUEST, call.req.tag);
            // The agent's next arrival takes the place of this one in the schedule (one sift
            // instead of a pop and a push).
            match Self::arrival_after(scenario, agent) {
                Some(at) => *top = Reverse(Due::new(at, index)),
                None => {
                    PeekMut::pop(top);
                }
            }
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
            self.next.push(Reverse(Due::new(now + think, agent)));
        }
    }

    /// The first arrival of open agent `index`, unless it falls after the scenario's duration.
    fn arrive_next(&mut self, index: u32) -> Option<Duration> {
        Self::arrival_after(self.scenario, &mut self.agents[index as usize])
    }

    /// Draws when open agent `a` sends next and returns it, unless it falls after the scenario's
    /// duration.
    fn arrival_after(scenario: &Scenario, a: &mut Agent) -> Option<Duration> {
        if let Some(traffic) = &scenario.traffic {
            // Recorded traffic: the agent's next call, when it came (one agent per group).
            return traffic.call_of(a.group, a.seq).map(|c| c.at);
        }
        let group = &scenario.agents[a.group];
        let rng = a.rng.as_mut().map(CallRng::get)?;
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
        (a.at < scenario.duration).then_some(a.at)
    }
}
