//! Which request each of the provider's events is an attempt of, in linear time.

use super::drive::Record;

/// The records of each agent, in the order the agent made them.
#[derive(Debug)]
pub(super) struct Attempts {
    /// The records of agent `a` are `by_agent[first[a]..first[a + 1]]`.
    first: Vec<usize>,
    by_agent: Vec<usize>,
}

impl Attempts {
    /// Indexes `records` by agent. A tag is `agent << 32 | n` for the agent's `n`-th request, so
    /// an attempt's record is its agent's `n`-th.
    pub(super) fn new(records: &[Record]) -> Self {
        let agents = records
            .iter()
            .map(|r| agent_of(r.tag) + 1)
            .max()
            .unwrap_or(0);
        let mut first = vec![0; agents + 1];
        for r in records {
            first[agent_of(r.tag) + 1] += 1;
        }
        for a in 1..first.len() {
            first[a] += first[a - 1];
        }
        let mut next = first.clone();
        let mut by_agent = vec![0; records.len()];
        for (i, r) in records.iter().enumerate() {
            let slot = &mut next[agent_of(r.tag)];
            by_agent[*slot] = i;
            *slot += 1;
        }
        Attempts { first, by_agent }
    }

    /// The record an attempt tagged `tag` belongs to; `None` for an attempt of no record (there
    /// is none).
    pub(super) fn record_of(&self, tag: u64) -> Option<usize> {
        let agent = agent_of(tag);
        let (from, to) = (*self.first.get(agent)?, *self.first.get(agent + 1)?);
        let n = usize::try_from(tag & u64::from(u32::MAX)).ok()?;
        (n < to - from).then(|| self.by_agent[from + n])
    }
}

/// The agent of a tag: its high half.
pub(super) fn agent_of(tag: u64) -> usize {
    (tag >> 32) as usize
}
