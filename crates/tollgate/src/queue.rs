//! The fair queue of calls that cannot go yet.
//!
//! # Policy
//! * **Service order.** Tiers are served by precedence (below); within a tier, first come first
//!   served.
//! * **Per scope, in order.** A waiting call may try the store only when no call ahead of it in
//!   service order holds one of its scopes. A call ahead *holds* all its scopes while it is its
//!   turn (it is trying), only the scopes that refused it while it sleeps until its capacity is
//!   due, and none while it is itself held up by a call further ahead. So a large call at the head
//!   of a scope is never passed by small calls on that scope, while calls that need none of the
//!   refusing scopes (another agent's) go on.
//! * **Tier precedence** is strict priority unless tiers reserve a share: a smooth weighted round
//!   robin over calls admitted from the queue. Each tier with waiting calls has weight equal to its
//!   reserved share; the highest-priority waiting tier also gets whatever the waiting tiers leave
//!   unreserved. At each admission from the queue, every waiting tier's credit grows by its weight
//!   and the admitted call's tier pays 1; tiers go in order of credit + weight (higher priority
//!   first on ties). With no reserved shares this is strict priority; with a background share of
//!   0.2, background calls get at least one in five admissions while both tiers wait. A tier's
//!   credit resets when its queue empties.

use crate::registry::ScopeId;
use crate::Priority;
use smallvec::SmallVec;
use std::collections::VecDeque;
use std::task::Waker;
use tokio::time::Instant;

/// Where a waiting call stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WaitState {
    /// Not its turn: a call ahead holds one of its scopes.
    Gated,
    /// Its turn: it may try the store.
    Ready,
    /// The store refused it on `scopes`; capacity is due at `until` (`None`: after a release).
    Blocked {
        scopes: SmallVec<[ScopeId; 4]>,
        until: Option<Instant>,
    },
}

#[derive(Debug)]
struct Entry {
    id: u64,
    scopes: SmallVec<[ScopeId; 4]>,
    state: WaitState,
    waker: Option<Waker>,
    /// Removed from the middle of its tier: kept in place (shifting the entries behind it would
    /// cost a move of each) until it reaches an end of the tier. Holds nothing, found by no id.
    gone: bool,
}

#[derive(Debug)]
struct Tier {
    priority: Priority,
    share: f64,
    credit: f64,
    /// In arrival (id) order, with the entries removed from the middle still in place.
    entries: VecDeque<Entry>,
    /// The entries not gone.
    live: usize,
}

/// The queue: one FIFO per priority tier.
#[derive(Debug)]
pub(crate) struct Queue {
    /// Sorted by priority, highest first.
    tiers: Vec<Tier>,
    len: usize,
    /// Scopes every queued call has (a subset: it may miss some after removals). Once a walk
    /// holds one of them, no later call can be free, so the walk stops: with every call in
    /// `global`, finding the calls whose turn has come costs O(1), not O(queue).
    common: SmallVec<[ScopeId; 4]>,
    /// The calls in state `Blocked` (usually one per refusing scope), so that waking them when
    /// capacity comes back does not walk the whole queue.
    blocked: Vec<(Priority, u64)>,
}

impl Queue {
    /// A queue with the reserved shares of configured tiers (validated by the builder).
    pub(crate) fn new(shares: &[(Priority, f64)]) -> Self {
        let mut q = Queue {
            tiers: Vec::new(),
            len: 0,
            common: SmallVec::new(),
            blocked: Vec::new(),
        };
        for &(p, share) in shares {
            let i = q.tier_index(p);
            q.tiers[i].share = share;
        }
        q
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn tier_index(&mut self, priority: Priority) -> usize {
        match self.tiers.binary_search_by(|t| priority.cmp(&t.priority)) {
            Ok(i) => i,
            Err(i) => {
                self.tiers.insert(
                    i,
                    Tier {
                        priority,
                        share: 0.0,
                        credit: 0.0,
                        entries: VecDeque::new(),
                        live: 0,
                    },
                );
                i
            }
        }
    }

    /// Ids grow with arrival, so each tier's FIFO is sorted by id.
    fn find(&self, priority: Priority, id: u64) -> Option<(usize, usize)> {
        let t = self
            .tiers
            .binary_search_by(|t| priority.cmp(&t.priority))
            .ok()?;
        let entries = &self.tiers[t].entries;
        // The call asked about is most often the head (the one whose turn it is), or the last
        // to join (a call that just found it must wait).
        if entries.front().is_some_and(|e| e.id == id && !e.gone) {
            return Some((t, 0));
        }
        if entries.back().is_some_and(|e| e.id == id && !e.gone) {
            return Some((t, entries.len() - 1));
        }
        let e = entries.binary_search_by_key(&id, |e| e.id).ok()?;
        (!entries[e].gone).then_some((t, e))
    }

    fn entry_mut(&mut self, priority: Priority, id: u64) -> Option<&mut Entry> {
        let (t, e) = self.find(priority, id)?;
        Some(&mut self.tiers[t].entries[e])
    }

    /// Adds a call to its tier in arrival (id) order, normally at the back, gated until
    /// [`Queue::eligible`] says otherwise. A call may join after a later one: with a store whose
    /// answer takes a round trip (Redis), calls join when the store refuses them, in the order the
    /// answers come back; sorting by id keeps them first come, first served and [`Queue::find`]
    /// correct.
    pub(crate) fn push(&mut self, priority: Priority, id: u64, scopes: SmallVec<[ScopeId; 4]>) {
        if self.len == 0 {
            self.common = scopes.clone();
        } else {
            self.common.retain(|s| scopes.contains(s));
        }
        let t = self.tier_index(priority);
        let tier = &mut self.tiers[t];
        // Calls mostly join in id order: at the back.
        let at = match tier.entries.back() {
            Some(last) if last.id > id => tier.entries.partition_point(|e| e.id < id),
            _ => tier.entries.len(),
        };
        tier.entries.insert(
            at,
            Entry {
                id,
                scopes,
                state: WaitState::Gated,
                waker: None,
                gone: false,
            },
        );
        tier.live += 1;
        self.len += 1;
    }

    /// Removes a call; `admitted` counts it for the tier shares. Returns whether it was queued.
    pub(crate) fn remove(&mut self, priority: Priority, id: u64, admitted: bool) -> bool {
        let Some((t, e)) = self.find(priority, id) else {
            return false;
        };
        if admitted {
            self.pay_credit(t);
        }
        if matches!(self.tiers[t].entries[e].state, WaitState::Blocked { .. }) {
            self.blocked.retain(|b| *b != (priority, id));
        }
        let tier = &mut self.tiers[t];
        tier.live -= 1;
        if tier.live == 0 {
            tier.entries.clear();
            tier.credit = 0.0;
        } else if e == 0 || e + 1 == tier.entries.len() {
            // At an end: out, with the gone entries it uncovers.
            if e == 0 {
                tier.entries.pop_front();
            } else {
                tier.entries.pop_back();
            }
            while tier.entries.front().is_some_and(|e| e.gone) {
                tier.entries.pop_front();
            }
            while tier.entries.back().is_some_and(|e| e.gone) {
                tier.entries.pop_back();
            }
        } else {
            // In the middle (a call that gave up waiting, or calls dropped in any order): marked
            // gone in place, so that removing n calls never costs n² moves.
            let entry = &mut tier.entries[e];
            entry.gone = true;
            entry.waker = None;
            entry.scopes = SmallVec::new();
            entry.state = WaitState::Gated;
        }
        self.len -= 1;
        if self.len == 0 {
            self.common.clear();
        }
        true
    }

    /// The weight of each tier with waiting calls (see the module docs).
    fn weights(&self) -> SmallVec<[(usize, f64); 8]> {
        let waiting = || self.tiers.iter().enumerate().filter(|(_, t)| t.live > 0);
        let reserved: f64 = waiting().map(|(_, t)| t.share).sum::<f64>().min(1.0);
        let mut first = true;
        waiting()
            .map(|(i, t)| {
                let w = t.share + if first { 1.0 - reserved } else { 0.0 };
                first = false;
                (i, w)
            })
            .collect()
    }

    fn pay_credit(&mut self, admitted_tier: usize) {
        for (i, w) in self.weights() {
            self.tiers[i].credit += w;
        }
        self.tiers[admitted_tier].credit -= 1.0;
    }

    /// Tier indices with waiting calls, in precedence order.
    fn precedence(&self) -> SmallVec<[usize; 8]> {
        let mut waiting = self.tiers.iter().enumerate().filter(|(_, t)| t.live > 0);
        if let (Some((only, _)), None) = (waiting.next(), waiting.next()) {
            // One tier waits (the common case): no weights to weigh.
            return smallvec::smallvec![only];
        }
        let mut w = self.weights();
        // Stable sort: equal keys keep priority order.
        w.sort_by(|(a, wa), (b, wb)| {
            let (ka, kb) = (self.tiers[*a].credit + wa, self.tiers[*b].credit + wb);
            kb.total_cmp(&ka)
        });
        w.into_iter().map(|(i, _)| i).collect()
    }

    /// Walks the queue in service order, telling `visit` for each call whether it may go now
    /// (`visit` returns `true` to stop). With `early`, the walk also stops once a scope common to
    /// every call is held: no call after that point is free.
    fn walk(&mut self, early: bool, mut visit: impl FnMut(&mut Entry, bool) -> bool) {
        let mut held: SmallVec<[ScopeId; 16]> = SmallVec::new();
        for t in self.precedence() {
            for e in self.tiers[t].entries.iter_mut().filter(|e| !e.gone) {
                let free = !e.scopes.iter().any(|s| held.contains(s));
                if visit(e, free) {
                    return;
                }
                // A call held up by a call ahead adds nothing: the scopes that hold it are held.
                let holds: &[ScopeId] = match &e.state {
                    WaitState::Blocked { scopes, .. } => scopes,
                    _ if free => &e.scopes,
                    _ => &[],
                };
                for s in holds {
                    if !held.contains(s) {
                        held.push(*s);
                    }
                }
                if early && self.common.iter().any(|s| held.contains(s)) {
                    return;
                }
            }
        }
    }

    /// Whether the call may try the store now (no call ahead holds one of its scopes).
    pub(crate) fn eligible(&mut self, id: u64) -> bool {
        let mut answer = false;
        self.walk(true, |e, free| {
            if e.id == id {
                answer = free;
                true
            } else {
                false
            }
        });
        answer
    }

    /// The latest time at which a call ahead that holds one of this call's scopes is due; a lower
    /// bound on when this call can go.
    pub(crate) fn due_ahead(&mut self, id: u64) -> Option<Instant> {
        let mut mine: SmallVec<[ScopeId; 4]> = SmallVec::new();
        for t in &self.tiers {
            if let Some(e) = t.entries.iter().find(|e| e.id == id && !e.gone) {
                mine = e.scopes.clone();
            }
        }
        let mut due: Option<Instant> = None;
        self.walk(false, |e, _| {
            if e.id == id {
                return true;
            }
            if let WaitState::Blocked {
                scopes,
                until: Some(u),
            } = &e.state
            {
                if scopes.iter().any(|s| mine.contains(s)) {
                    due = Some(due.map_or(*u, |d| d.max(*u)));
                }
            }
            false
        });
        due
    }

    pub(crate) fn state(&self, priority: Priority, id: u64) -> Option<&WaitState> {
        let (t, e) = self.find(priority, id)?;
        Some(&self.tiers[t].entries[e].state)
    }

    /// Sets a waiting call's state and, with `waker`, the waker to wake when it changes.
    pub(crate) fn set_state(
        &mut self,
        priority: Priority,
        id: u64,
        state: WaitState,
        waker: Option<&Waker>,
    ) {
        let Some(e) = self.entry_mut(priority, id) else {
            return;
        };
        if let Some(waker) = waker {
            match &e.waker {
                Some(w) if w.will_wake(waker) => {}
                _ => e.waker = Some(waker.clone()),
            }
        }
        let (was, is) = (
            matches!(e.state, WaitState::Blocked { .. }),
            matches!(state, WaitState::Blocked { .. }),
        );
        e.state = state;
        match (was, is) {
            (false, true) => self.blocked.push((priority, id)),
            (true, false) => self.blocked.retain(|b| *b != (priority, id)),
            _ => {}
        }
    }

    /// Wakes every gated call whose turn has come, marking it ready.
    pub(crate) fn wake_eligible(&mut self) {
        self.walk(true, |e, free| {
            if free && e.state == WaitState::Gated {
                e.state = WaitState::Ready;
                if let Some(w) = e.waker.take() {
                    w.wake();
                }
            }
            false
        });
    }

    /// Wakes every call that sleeps until capacity is due (capacity came back early).
    pub(crate) fn wake_blocked(&mut self) {
        for i in 0..self.blocked.len() {
            let (priority, id) = self.blocked[i];
            if let Some(w) = self.entry_mut(priority, id).and_then(|e| e.waker.take()) {
                w.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smallvec::smallvec;

    /// Regression: with a store that answers after a round trip, a call can join the queue after
    /// a later call. The tier used to stay in join order, `find` (a binary search by id) then
    /// missed calls, and every call behind them waited forever.
    #[test]
    fn calls_that_join_out_of_order_are_found_and_served_by_arrival() {
        let mut q = Queue::new(&[]);
        let p = Priority::default();
        for id in [3, 4, 2, 5] {
            q.push(p, id, smallvec![0]);
        }
        for id in [2, 3, 4, 5] {
            assert_eq!(q.state(p, id), Some(&WaitState::Gated), "call {id}");
        }
        assert!(q.eligible(2));
        assert!(!q.eligible(3));
        assert!(q.remove(p, 2, true));
        assert!(q.eligible(3));
        assert_eq!(q.len(), 3);
    }

    /// Calls removed from the middle of a tier stay in place, marked gone, until they reach an
    /// end: removing many waiting calls in any order moves no entry (it used to shift every
    /// entry behind each one, n² moves for n calls dropped in the wrong order). Gone calls are
    /// found by no id, hold no scope, and are never told to go.
    #[test]
    fn calls_removed_from_the_middle_are_skipped_until_they_reach_an_end() {
        let mut q = Queue::new(&[]);
        let p = Priority::default();
        for id in 1..=6 {
            q.push(p, id, smallvec![id as ScopeId]);
        }
        assert!(q.remove(p, 3, false));
        assert!(q.remove(p, 4, false));
        assert!(!q.remove(p, 3, false), "removed twice");
        assert_eq!(q.state(p, 4), None);
        assert_eq!(q.len(), 4);
        assert_eq!(q.tiers[0].entries.len(), 6, "nothing moved");
        // Every live call holds its own scope, so all are free; the gone ones are skipped.
        let mut free = Vec::new();
        q.walk(false, |e, f| {
            if f {
                free.push(e.id);
            }
            false
        });
        assert_eq!(free, [1, 2, 5, 6]);
        assert!(q.eligible(5));
        // The front leaves, then the next: the gone calls behind them go too.
        assert!(q.remove(p, 1, true));
        assert_eq!(q.tiers[0].entries.len(), 5);
        assert!(q.remove(p, 2, true));
        assert_eq!(q.tiers[0].entries.len(), 2);
        assert_eq!(q.state(p, 5), Some(&WaitState::Gated));
        // A gone call at the back goes when the back leaves.
        q.push(p, 7, smallvec![7]);
        q.push(p, 8, smallvec![8]);
        assert!(q.remove(p, 7, false));
        assert!(q.remove(p, 8, false));
        assert_eq!(q.tiers[0].entries.len(), 2);
        assert!(q.remove(p, 5, false));
        assert!(q.remove(p, 6, false));
        assert_eq!(q.len(), 0);
        assert!(q.tiers[0].entries.is_empty());
    }
}
