//! What a run produces: per-strategy [`StrategyResult`]s, per-second [`Timeline`]s and
//! [`SweepPoint`]s, and their renderings as a table, JSON and CSV.

use crate::scenario::Scenario;
use serde::Serialize;
use std::fmt::Write as _;

/// The metrics of one strategy on one scenario. The README defines each precisely; the JSON names
/// are stable (scripts depend on them).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StrategyResult {
    /// The strategy's name.
    pub strategy: String,
    /// Attempts that reached the provider (first tries and retries).
    pub requests_sent: u64,
    /// Attempts the provider answered with success.
    pub requests_ok: u64,
    /// Attempts answered 429.
    pub rate_limited: u64,
    /// `rate_limited / requests_sent`.
    pub rate_limited_rate: f64,
    /// Attempts beyond the first of each request.
    pub retries: u64,
    /// Requests that ended without success (out of retries, refused, or unfinished at the end).
    pub gave_up: u64,
    /// Successful requests per minute of makespan.
    pub goodput_rpm: f64,
    /// Input plus output tokens of successful requests per minute of makespan.
    pub goodput_tpm: f64,
    /// Successful requests ÷ what the provider would have admitted while demand was waiting.
    pub utilization: f64,
    /// The fraction of the provider's capacity left unused while the client held calls back,
    /// counted per minute up to the calls held back (see the README).
    pub over_throttling: f64,
    /// Median time a request was held by the client.
    pub wait_p50_ms: f64,
    /// 99th percentile of the same.
    pub wait_p99_ms: f64,
    /// Longest.
    pub wait_max_ms: f64,
    /// From the start to the end of the last request.
    pub makespan_s: f64,
    /// The price of the tokens of successful requests.
    pub spend_usd: f64,
    /// The same per agent group, in the scenario's order (for priorities and runaway agents).
    pub groups: Vec<GroupResult>,
}

/// One agent group's share of a strategy's run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupResult {
    /// The group's position in the scenario (0-based).
    pub group: usize,
    /// The group's priority.
    pub priority: u8,
    /// Agents in the group.
    pub agents: u32,
    /// Calls the group's agents made.
    pub calls: u64,
    /// Calls that succeeded.
    pub requests_ok: u64,
    /// Calls that failed for good (refused, out of retries, cut at the end of the drain).
    pub gave_up: u64,
    /// Time a call was held back by the client (queue, pacing, backoff), 50th percentile.
    pub wait_p50_ms: f64,
    /// The same, 99th percentile.
    pub wait_p99_ms: f64,
    /// The price of the group's successful tokens.
    pub spend_usd: f64,
}

/// One second of one strategy's run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Slot {
    /// Seconds since the start.
    pub t: u64,
    /// Attempts that reached the provider in this second.
    pub sent: u64,
    /// Of those, answered with success.
    pub ok: u64,
    /// Of those, answered 429.
    pub rate_limited: u64,
    /// Of those, answered 529.
    pub overloaded: u64,
    /// Input plus output tokens of the successful ones.
    pub tokens_ok: u64,
    /// Requests held back by the client (created, not done, not at the provider), at the end of
    /// the second.
    pub queue_depth: u64,
}

/// A strategy's run second by second.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Timeline {
    /// The strategy's name.
    pub strategy: String,
    /// One slot per second, from 0 to the makespan.
    pub slots: Vec<Slot>,
}

/// One point of a headroom sweep.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SweepPoint {
    /// The strategy's name.
    pub strategy: String,
    /// The headroom fraction of the run.
    pub headroom: f64,
    /// Its over-throttling.
    pub over_throttling: f64,
    /// Its 429 rate.
    pub rate_limited_rate: f64,
    /// Its utilization.
    pub utilization: f64,
}

/// Everything one `sim` invocation produced.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The scenario.
    pub scenario: Scenario,
    /// One result per strategy, in the order they ran.
    pub results: Vec<StrategyResult>,
    /// One timeline per strategy.
    #[serde(skip)]
    pub timelines: Vec<Timeline>,
    /// The sweep, when one ran.
    #[serde(skip)]
    pub sweep: Vec<SweepPoint>,
    /// The provider's stated request limit per minute (the limit line of the plots).
    #[serde(skip)]
    pub limit_rpm: f64,
    /// The provider's real request capacity per minute for this client.
    #[serde(skip)]
    pub effective_rpm: f64,
}

impl Report {
    /// `{"scenario": {...}, "results": [...]}`, pretty-printed.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            scenario: &'a Scenario,
            results: &'a [StrategyResult],
        }
        let out = Out {
            scenario: &self.scenario,
            results: &self.results,
        };
        serde_json::to_string_pretty(&out).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The comparison table as text.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "scenario {}: {} ({} agents, provider {} RPM, {:?}, seed {})",
            self.scenario.name,
            self.scenario.description,
            self.scenario.agent_count(),
            self.scenario.provider.rpm,
            self.scenario.duration,
            self.scenario.seed
        );
        let _ = writeln!(
            s,
            "{:<18} {:>6} {:>6} {:>6} {:>7} {:>7} {:>6} {:>8} {:>6} {:>7} {:>9} {:>9} {:>8} {:>8}",
            "strategy",
            "sent",
            "ok",
            "429",
            "429rate",
            "retries",
            "gaveup",
            "good/min",
            "util",
            "overthr",
            "wait_p50",
            "wait_p99",
            "makespan",
            "spend$"
        );
        for r in &self.results {
            let _ = writeln!(
                s,
                "{:<18} {:>6} {:>6} {:>6} {:>7.3} {:>7} {:>6} {:>8.1} {:>6.3} {:>7.3} {:>8.1}s {:>8.1}s {:>7.0}s {:>8.2}",
                r.strategy,
                r.requests_sent,
                r.requests_ok,
                r.rate_limited,
                r.rate_limited_rate,
                r.retries,
                r.gave_up,
                r.goodput_rpm,
                r.utilization,
                r.over_throttling,
                r.wait_p50_ms / 1000.0,
                r.wait_p99_ms / 1000.0,
                r.makespan_s,
                r.spend_usd
            );
        }
        if self.scenario.agents.len() > 1 {
            let _ = writeln!(s, "\nper agent group:");
            let _ = writeln!(
                s,
                "{:<18} {:>5} {:>4} {:>6} {:>6} {:>6} {:>6} {:>9} {:>9} {:>8}",
                "strategy",
                "group",
                "prio",
                "agents",
                "calls",
                "ok",
                "gaveup",
                "wait_p50",
                "wait_p99",
                "spend$"
            );
            for r in &self.results {
                for g in &r.groups {
                    let _ = writeln!(
                        s,
                        "{:<18} {:>5} {:>4} {:>6} {:>6} {:>6} {:>6} {:>8.1}s {:>8.1}s {:>8.2}",
                        r.strategy,
                        g.group,
                        g.priority,
                        g.agents,
                        g.calls,
                        g.requests_ok,
                        g.gave_up,
                        g.wait_p50_ms / 1000.0,
                        g.wait_p99_ms / 1000.0,
                        g.spend_usd
                    );
                }
            }
        }
        s
    }

    /// The results as CSV, one line per strategy.
    pub fn summary_csv(&self) -> String {
        let mut s = String::from(
            "strategy,requests_sent,requests_ok,rate_limited,rate_limited_rate,retries,gave_up,goodput_rpm,goodput_tpm,utilization,over_throttling,wait_p50_ms,wait_p99_ms,wait_max_ms,makespan_s,spend_usd\n",
        );
        for r in &self.results {
            let _ = writeln!(
                s,
                "{},{},{},{},{:.6},{},{},{:.3},{:.1},{:.6},{:.6},{:.1},{:.1},{:.1},{:.3},{:.4}",
                r.strategy,
                r.requests_sent,
                r.requests_ok,
                r.rate_limited,
                r.rate_limited_rate,
                r.retries,
                r.gave_up,
                r.goodput_rpm,
                r.goodput_tpm,
                r.utilization,
                r.over_throttling,
                r.wait_p50_ms,
                r.wait_p99_ms,
                r.wait_max_ms,
                r.makespan_s,
                r.spend_usd
            );
        }
        s
    }

    /// Every timeline as CSV, one line per strategy and second.
    pub fn timeline_csv(&self) -> String {
        let mut s =
            String::from("strategy,t,sent,ok,rate_limited,overloaded,tokens_ok,queue_depth\n");
        for tl in &self.timelines {
            for x in &tl.slots {
                let _ = writeln!(
                    s,
                    "{},{},{},{},{},{},{},{}",
                    tl.strategy,
                    x.t,
                    x.sent,
                    x.ok,
                    x.rate_limited,
                    x.overloaded,
                    x.tokens_ok,
                    x.queue_depth
                );
            }
        }
        s
    }

    /// The sweep as CSV.
    pub fn sweep_csv(&self) -> String {
        let mut s =
            String::from("strategy,headroom,over_throttling,rate_limited_rate,utilization\n");
        for p in &self.sweep {
            let _ = writeln!(
                s,
                "{},{:.3},{:.6},{:.6},{:.6}",
                p.strategy, p.headroom, p.over_throttling, p.rate_limited_rate, p.utilization
            );
        }
        s
    }
}
