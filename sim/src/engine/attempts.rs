//! Each request's attempts at the provider: the provider's events grouped by the engine's
//! records, in linear time.

use super::drive::Record;
use tollgate_mock::MockEvent;

/// The events of each record, in arrival order.
#[derive(Debug)]
pub(super) struct Attempts<'a> {
    events: &'a [MockEvent],
    /// The events of record `i` are `events[order[start[i]..start[i + 1]]]`.
    start: Vec<usize>,
    order: Vec<usize>,
}

impl<'a> Attempts<'a> {
    /// Groups `events` by the record each one is an attempt of. A tag is `agent << 32 | n` for the
    /// agent's `n`-th request, so its record is the agent's `n`-th; an event of no record (there is
    /// none) is left out.
    pub(super) fn new(records: &[Record], events: &'a [MockEvent]) -> Self {
        let mut of_agent: Vec<Vec<usize>> = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let agent = (r.tag >> 32) as usize;
            if of_agent.len() <= agent {
                of_agent.resize_with(agent + 1, Vec::new);
            }
            of_agent[agent].push(i);
        }
        let owner: Vec<Option<usize>> = events
            .iter()
            .map(|e| {
                let agent = of_agent.get((e.tag >> 32) as usize)?;
                agent.get((e.tag & u64::from(u32::MAX)) as usize).copied()
            })
            .collect();
        let mut start = vec![0; records.len() + 1];
        for &i in owner.iter().flatten() {
            start[i + 1] += 1;
        }
        for i in 1..start.len() {
            start[i] += start[i - 1];
        }
        let mut next = start.clone();
        let mut order = vec![0; start[records.len()]];
        for (e, i) in owner.iter().enumerate() {
            if let Some(&i) = i.as_ref() {
                order[next[i]] = e;
                next[i] += 1;
            }
        }
        Attempts {
            events,
            start,
            order,
        }
    }

    /// The attempts of record `i`, in arrival order.
    pub(super) fn of(&self, i: usize) -> impl Iterator<Item = &'a MockEvent> + '_ {
        let events = self.events;
        self.order[self.start[i]..self.start[i + 1]]
            .iter()
            .map(move |&e| &events[e])
    }

    /// How many records had at least one attempt.
    pub(super) fn attempted(&self) -> usize {
        self.start.windows(2).filter(|w| w[1] > w[0]).count()
    }
}
