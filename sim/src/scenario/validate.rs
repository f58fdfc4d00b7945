//! The rules of a scenario: every field within its range and its bound ([`crate::bounds`]), and
//! the requests of a run within [`MAX_REQUESTS`], all checked before anything is built.

use super::{Arrival, Scenario, ScenarioError};
use crate::bounds::{
    real, span, whole, Grouped, Interval, MAX_AGENTS, MAX_BUDGET_USD, MAX_DURATION, MAX_LATENCY,
    MAX_LATENCY_PER_TOKEN, MAX_PRICE_PER_MTOK, MAX_RATE_PER_MIN, MAX_REQUESTS, MAX_RPM, MAX_SPIKES,
    MAX_SPIKE_MULTIPLIER, MAX_TOKENS_PER_REQUEST, MAX_TPM, MIN_RATE_PER_MIN, MIN_SPIKE_MULTIPLIER,
    MIN_THINK_TIME, WHY_AGENTS, WHY_DURATION, WHY_LATENCY, WHY_MONEY, WHY_RATE, WHY_REQUESTS,
    WHY_RPM, WHY_SPIKE, WHY_THINK, WHY_TOKENS, WHY_TPM,
};
use std::time::Duration;

const POSITIVE: Duration = Duration::from_nanos(1);
const FRACTION: Interval = Interval::closed(0.0, 1.0);

impl Scenario {
    /// Checks every rule; nothing is built or run.
    ///
    /// # Errors
    /// The first rule broken, naming the field (`provider.rpm`, `agents[0].think_time`,
    /// `spikes[1].multiplier`, …) and its range or bound (see [`crate::bounds`]): a zero or
    /// negative rate, limit or duration, a fraction outside its range, a value beyond its bound,
    /// no agents, a headroom or hidden share that leaves less than one unit of a limit, or more
    /// requests expected than [`MAX_REQUESTS`].
    pub fn validate(&self) -> Result<(), ScenarioError> {
        self.check()
            .map_err(|m| ScenarioError(format!("scenario `{}`: {m}", self.name)))
    }

    /// About how many requests the agents make in one run: each open agent its rate over the
    /// duration, each closed agent one per think time (at most: a call also takes its latency),
    /// both raised by the spikes. Retries come on top; they are a few per request at most.
    pub fn requests_estimate(&self) -> f64 {
        let boosted = self.boosted_seconds();
        self.agents
            .iter()
            .map(|g| {
                let per_agent = match g.arrival {
                    Arrival::Closed => boosted / g.think_time.as_secs_f64() + 1.0,
                    Arrival::Constant | Arrival::Poisson => g.rate_per_min / 60.0 * boosted,
                };
                f64::from(g.count) * per_agent
            })
            .sum()
    }

    /// The headroom `h` leaves at least one unit of every limit the layer is given.
    ///
    /// # Errors
    /// The message naming `name` and the limit that `h` leaves less than one unit of.
    pub fn check_headroom(&self, name: &str, h: f64) -> Result<(), String> {
        real(name, h, Interval::above(0.0, 1.0), "")?;
        let p = &self.provider;
        for (limit, amount) in [
            ("provider.rpm", p.rpm),
            ("provider.itpm", p.itpm),
            ("provider.otpm", p.otpm),
        ] {
            if amount > 0 && (amount as f64 * h) < 1.0 {
                return Err(format!(
                    "{name} {h} leaves less than one unit of {limit} = {amount} per minute"
                ));
            }
        }
        Ok(())
    }

    /// The duration in seconds, each instant weighted by the spike multiplier then.
    fn boosted_seconds(&self) -> f64 {
        let end = self.duration;
        let mut cuts = vec![Duration::ZERO, end];
        for s in &self.spikes {
            cuts.extend(
                [s.at, s.at.saturating_add(s.length)]
                    .into_iter()
                    .filter(|&t| t < end),
            );
        }
        cuts.sort_unstable();
        cuts.dedup();
        cuts.windows(2)
            .map(|w| self.multiplier(w[0]) * (w[1] - w[0]).as_secs_f64())
            .sum()
    }

    fn check(&self) -> Result<(), String> {
        span(
            "duration",
            self.duration,
            POSITIVE,
            MAX_DURATION,
            WHY_DURATION,
        )?;
        span(
            "drain",
            self.drain,
            Duration::ZERO,
            MAX_DURATION,
            WHY_DURATION,
        )?;
        self.check_provider()?;
        self.check_headroom("headroom", self.headroom)?;
        self.check_agents()?;
        self.check_spikes()?;
        self.check_money()?;
        let requests = self.requests_estimate();
        if requests > MAX_REQUESTS as f64 {
            let about = if requests < 1e15 {
                Grouped(requests.round() as u64).to_string()
            } else {
                format!("{requests:.1e}")
            };
            return Err(format!(
                "the agents would make about {about} requests in one run (agents[].count × \
                 agents[].rate_per_min, or ÷ agents[].think_time when closed, over the duration \
                 with its spikes; --agents, --rpm, --duration, --spike); at most {} per run \
                 ({WHY_REQUESTS})",
                Grouped(MAX_REQUESTS)
            ));
        }
        Ok(())
    }

    fn check_provider(&self) -> Result<(), String> {
        let p = &self.provider;
        whole("provider.rpm", p.rpm, 1, MAX_RPM, WHY_RPM)?;
        whole("provider.itpm", p.itpm, 0, MAX_TPM, WHY_TPM)?;
        whole("provider.otpm", p.otpm, 0, MAX_TPM, WHY_TPM)?;
        let share = real(
            "provider.hidden_share",
            p.hidden_share,
            Interval::below(0.0, 1.0),
            "",
        )?;
        for (limit, amount) in [
            ("provider.rpm", p.rpm),
            ("provider.itpm", p.itpm),
            ("provider.otpm", p.otpm),
        ] {
            // As the mock provider rounds what the share leaves.
            if amount > 0 && ((1.0 - share) * amount as f64).round() < 1.0 {
                return Err(format!(
                    "provider.hidden_share {share} leaves nothing of {limit} = {amount}"
                ));
            }
        }
        span(
            "provider.latency",
            p.latency,
            Duration::ZERO,
            MAX_LATENCY,
            WHY_LATENCY,
        )?;
        span(
            "provider.latency_per_token",
            p.latency_per_token,
            Duration::ZERO,
            MAX_LATENCY_PER_TOKEN,
            WHY_LATENCY,
        )?;
        real("provider.latency_jitter", p.latency_jitter, FRACTION, "")?;
        real(
            "provider.overload_probability",
            p.overload_probability,
            FRACTION,
            "",
        )?;
        Ok(())
    }

    fn check_agents(&self) -> Result<(), String> {
        let total: u64 = self.agents.iter().map(|g| u64::from(g.count)).sum();
        whole(
            "agents[].count (all groups)",
            total,
            1,
            MAX_AGENTS,
            WHY_AGENTS,
        )?;
        for (i, g) in self.agents.iter().enumerate() {
            let field = |f: &str| format!("agents[{i}].{f}");
            let rates = match g.arrival {
                Arrival::Closed => Interval::closed(0.0, MAX_RATE_PER_MIN),
                Arrival::Constant | Arrival::Poisson => {
                    Interval::closed(MIN_RATE_PER_MIN, MAX_RATE_PER_MIN)
                }
            };
            real(&field("rate_per_min"), g.rate_per_min, rates, WHY_RATE)?;
            if g.arrival == Arrival::Closed && g.think_time < MIN_THINK_TIME {
                return Err(format!(
                    "{} must be at least 1ms for closed arrivals ({WHY_THINK}), got {}",
                    field("think_time"),
                    humantime::format_duration(g.think_time)
                ));
            }
            span(
                &field("think_time"),
                g.think_time,
                Duration::ZERO,
                MAX_DURATION,
                WHY_DURATION,
            )?;
            let tokens = MAX_TOKENS_PER_REQUEST;
            whole(
                &field("input_tokens"),
                g.input_tokens,
                0,
                tokens,
                WHY_TOKENS,
            )?;
            whole(&field("max_tokens"), g.max_tokens, 1, tokens, WHY_TOKENS)?;
            real(&field("output_fraction"), g.output_fraction, FRACTION, "")?;
        }
        Ok(())
    }

    fn check_spikes(&self) -> Result<(), String> {
        if self.spikes.len() > MAX_SPIKES {
            return Err(format!(
                "at most {MAX_SPIKES} spikes (each arrival multiplies every spike that covers \
                 it), got {}",
                self.spikes.len()
            ));
        }
        let multipliers = Interval::closed(MIN_SPIKE_MULTIPLIER, MAX_SPIKE_MULTIPLIER);
        for (i, s) in self.spikes.iter().enumerate() {
            let field = |f: &str| format!("spikes[{i}].{f}");
            span(
                &field("at"),
                s.at,
                Duration::ZERO,
                MAX_DURATION,
                WHY_DURATION,
            )?;
            span(
                &field("length"),
                s.length,
                Duration::ZERO,
                MAX_DURATION,
                WHY_DURATION,
            )?;
            real(&field("multiplier"), s.multiplier, multipliers, WHY_SPIKE)?;
        }
        Ok(())
    }

    fn check_money(&self) -> Result<(), String> {
        let prices = Interval::closed(0.0, MAX_PRICE_PER_MTOK);
        real(
            "prices.input_per_mtok",
            self.prices.input_per_mtok,
            prices,
            WHY_MONEY,
        )?;
        real(
            "prices.output_per_mtok",
            self.prices.output_per_mtok,
            prices,
            WHY_MONEY,
        )?;
        if let Some(b) = &self.budget {
            for (name, cap) in [("agent_usd", b.agent_usd), ("global_usd", b.global_usd)] {
                if let Some(cap) = cap {
                    let caps = Interval::above(0.0, MAX_BUDGET_USD);
                    real(&format!("budget.{name}"), cap, caps, WHY_MONEY)?;
                }
            }
            if b.agent_usd.is_none() && b.global_usd.is_none() {
                return Err("a [budget] needs agent_usd, global_usd or both".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Spike;

    fn spike(at: u64, multiplier: f64, length: u64) -> Spike {
        Spike {
            at: Duration::from_secs(at),
            multiplier,
            length: Duration::from_secs(length),
        }
    }

    #[test]
    fn the_estimate_is_the_rate_over_the_duration_raised_by_the_spikes() {
        // 5 agents × 15 a minute for 10 minutes, plus one minute at twice the rate.
        let reference = Scenario::built_in("reference").expect("built in");
        assert_eq!(reference.requests_estimate(), 75.0 * 11.0);
        // 4 open agents × 6 a minute for 30 minutes, and a closed one thinking 1 s.
        let runaway = Scenario::built_in("runaway").expect("built in");
        assert_eq!(runaway.requests_estimate(), 720.0 + 1_801.0);
        // Overlapping spikes multiply; what falls after the duration counts for nothing.
        let mut s = reference.clone();
        s.spikes = vec![
            spike(60, 2.0, 120),
            spike(120, 3.0, 60),
            spike(590, 10.0, 60),
        ];
        // Minutes: 1 at ×1, 1 at ×2, 1 at ×6, 6 5/6 at ×1, 1/6 at ×10.
        let minutes = 1.0 + 2.0 + 6.0 + 41.0 / 6.0 + 10.0 / 6.0;
        assert!((s.requests_estimate() - 75.0 * minutes).abs() < 1e-6);
    }
}
