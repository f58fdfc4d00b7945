//! Recorded traffic: the calls of a layer's call log ([`tollgate::spend::CallRecord`], format
//! version 1), as a scenario that replays them open-loop.
//!
//! Each first attempt (`attempt` 1; retries are each strategy's own) arrives when the log says it
//! reached the layer (`arrived_unix_ms`, or `unix_ms − latency_ms − wait_ms` in a line without
//! it), counted from the whole minute before the first call. It asks what it asked: the input
//! tokens it used (`actual` input plus cache reads and writes, or the estimate when it has no
//! usage), `max_tokens` = the estimated output tokens, and the model writes what it wrote
//! (`actual` output, or half of `max_tokens` when the log has no usage). Calls with the same
//! `scopes` are one agent; each call keeps its priority.

use crate::scenario::{AgentGroup, Arrival, Provider, Scenario, ScenarioError};
use std::sync::Arc;
use std::time::Duration;
use tollgate::spend::CallRecord;

/// One call of recorded traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrafficCall {
    /// When it arrives, since the start of the replay.
    pub at: Duration,
    /// Its agent: the index of its `scopes` among the distinct ones, in order of first arrival.
    pub agent: u32,
    /// Its priority tier.
    pub priority: u8,
    /// Input tokens.
    pub input_tokens: u64,
    /// `max_tokens`.
    pub max_tokens: u64,
    /// What the model writes.
    pub output_tokens: u64,
    /// The model it called, if the log names one (the mock answers every model alike).
    pub model: Option<String>,
}

/// The calls of a call log, in arrival order, and each agent's calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Traffic {
    calls: Vec<TrafficCall>,
    /// Each agent's `scopes`.
    agents: Vec<Vec<String>>,
    /// Per agent, the indices of its calls in arrival order.
    by_agent: Vec<Vec<u32>>,
}

impl Traffic {
    /// The first attempts of a call log's lines (JSON, one [`CallRecord`] per line; blank lines
    /// are skipped).
    ///
    /// # Errors
    /// A line that is not a call record, or of a newer format version, naming the line; a log
    /// without any first attempt.
    ///
    /// ```
    /// use tollgate_sim::traffic::Traffic;
    /// let log = r#"{"v":1,"arrived_unix_ms":1767225605000,"time":"2026-01-01T00:00:06.000Z","unix_ms":1767225606000,"scopes":["global"],"priority":0,"attempt":1,"model":null,"estimated":{"requests":1,"input_tokens":800,"output_tokens":512},"actual":{"input_tokens":800,"output_tokens":256,"cache_read":0,"cache_write":0},"estimated_cost_micros":0,"cost_micros":0,"cost_usd":0.0,"wait_ms":0,"latency_ms":1000,"outcome":"ok"}"#;
    /// let t = Traffic::from_jsonl(log)?;
    /// assert_eq!(t.calls()[0].at.as_secs(), 5); // from the minute before it
    /// assert_eq!(t.calls()[0].output_tokens, 256);
    /// # Ok::<(), tollgate_sim::scenario::ScenarioError>(())
    /// ```
    pub fn from_jsonl(text: &str) -> Result<Traffic, ScenarioError> {
        let mut read: Vec<(u64, usize, CallRecord)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let n = i + 1;
            let r: CallRecord = serde_json::from_str(line)
                .map_err(|e| ScenarioError(format!("call log line {n}: {e}")))?;
            if r.v > CallRecord::FORMAT_VERSION {
                return Err(ScenarioError(format!(
                    "call log line {n}: format version {} is newer than this simulator reads ({})",
                    r.v,
                    CallRecord::FORMAT_VERSION
                )));
            }
            if r.attempt != 1 {
                continue;
            }
            let arrived = r.arrived_unix_ms.unwrap_or_else(|| {
                r.unix_ms
                    .saturating_sub(r.latency_ms.unwrap_or(0))
                    .saturating_sub(r.wait_ms)
            });
            read.push((arrived, n, r));
        }
        // Arrival order; lines that arrived together in the order of the log.
        read.sort_by_key(|&(at, n, _)| (at, n));
        let first = read
            .first()
            .map(|&(at, _, _)| at)
            .ok_or_else(|| ScenarioError("call log: no first attempt to replay".into()))?;
        let base = first - first % 60_000;
        let mut traffic = Traffic {
            calls: Vec::with_capacity(read.len()),
            agents: Vec::new(),
            by_agent: Vec::new(),
        };
        for (at, _, r) in read {
            let agent = match traffic.agents.iter().position(|a| *a == r.scopes) {
                Some(a) => a,
                None => {
                    traffic.agents.push(r.scopes);
                    traffic.by_agent.push(Vec::new());
                    traffic.agents.len() - 1
                }
            };
            let max_tokens = r.estimated.output_tokens;
            let (input_tokens, output_tokens) = match r.actual {
                Some(a) => (
                    a.input_tokens + a.cache_read + a.cache_write,
                    a.output_tokens,
                ),
                None => (r.estimated.input_tokens, max_tokens / 2),
            };
            traffic.by_agent[agent].push(traffic.calls.len() as u32);
            traffic.calls.push(TrafficCall {
                at: Duration::from_millis(at - base),
                agent: agent as u32,
                priority: r.priority,
                input_tokens,
                max_tokens,
                output_tokens,
                model: r.model,
            });
        }
        Ok(traffic)
    }

    /// The calls, in arrival order.
    pub fn calls(&self) -> &[TrafficCall] {
        &self.calls
    }

    /// The scope keys of `agent`'s calls, as the log has them.
    pub fn scopes_of(&self, agent: u32) -> Option<&[String]> {
        self.agents.get(agent as usize).map(Vec::as_slice)
    }

    /// The `n`-th call of `agent`, if it has one.
    pub fn call_of(&self, agent: usize, n: u64) -> Option<&TrafficCall> {
        let i = *self.by_agent.get(agent)?.get(usize::try_from(n).ok()?)?;
        self.calls.get(i as usize)
    }

    /// A scenario that replays the traffic against `provider`: one agent group per agent (one
    /// agent each, open arrivals), requests until just after the last arrival.
    pub fn into_scenario(self, name: String, provider: Provider) -> Scenario {
        let last = self.calls.iter().map(|c| c.at).max().unwrap_or_default();
        let duration = last + Duration::from_millis(1);
        let minutes = duration.as_secs_f64() / 60.0;
        let agents = self
            .by_agent
            .iter()
            .map(|calls| {
                let first = &self.calls[calls[0] as usize];
                let n = calls.len() as u64;
                let mean = |f: fn(&TrafficCall) -> u64| {
                    calls
                        .iter()
                        .map(|&i| f(&self.calls[i as usize]))
                        .sum::<u64>()
                        / n
                };
                let max_tokens = mean(|c| c.max_tokens);
                AgentGroup {
                    count: 1,
                    priority: first.priority,
                    arrival: Arrival::Constant,
                    rate_per_min: n as f64 / minutes,
                    think_time: Duration::ZERO,
                    input_tokens: mean(|c| c.input_tokens),
                    max_tokens,
                    output_fraction: if max_tokens > 0 {
                        (mean(|c| c.output_tokens) as f64 / max_tokens as f64).min(1.0)
                    } else {
                        0.0
                    },
                }
            })
            .collect();
        let scopes: Vec<String> = self.agents.iter().map(|a| a.join(",")).collect();
        let description = format!(
            "{} calls of {} agents replayed from a call log (scopes: {})",
            self.calls.len(),
            self.agents.len(),
            scopes.join("; ")
        );
        Scenario {
            name,
            description,
            seed: 0,
            duration,
            drain: Duration::from_secs(600),
            provider,
            agents,
            spikes: Vec::new(),
            headroom: 1.0,
            prices: crate::scenario::Prices::default(),
            budget: None,
            traffic: Some(Arc::new(self)),
            call_log: None,
        }
    }
}
