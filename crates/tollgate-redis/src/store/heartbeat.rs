//! The heartbeat of reservations held: while a call holds concurrency slots, or a spend hold,
//! its process moves their expiry forward every third of their TTL, in one round trip for all of
//! them (a script run per [`CHUNK`] members). A long call keeps what it holds; a process that
//! dies (or drops its store) stops renewing, and its reservations expire one TTL after the last
//! renewal.

use super::writer::Arg;
use super::Inner;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Members touched by one script run at the most.
const CHUNK: usize = 1_000;

/// Beats for one reservation's slots until it is dropped (settled, or given up by its holder).
#[derive(Debug)]
pub(super) struct Beat {
    inner: Weak<Inner>,
    /// `None` for a reservation without concurrency slots.
    id: Option<String>,
}

impl Drop for Beat {
    fn drop(&mut self) {
        if let (Some(id), Some(inner)) = (&self.id, self.inner.upgrade()) {
            inner
                .live
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id);
        }
    }
}

/// A spend hold being renewed: its member in each budget's set of reservations, and each
/// budget's hash and set.
#[derive(Debug)]
pub(super) struct Renewal {
    member: String,
    keys: Vec<String>,
}

/// What a heartbeat task renews.
#[derive(Clone, Copy, Debug)]
enum Renewed {
    /// Concurrency slots, every third of the reservation TTL.
    Slots,
    /// Spend holds, every third of the spend reservation TTL.
    Holds,
}

impl Inner {
    /// Beats for reservation `id`, which holds a slot in each of `flights`, until the returned
    /// [`Beat`] is dropped.
    pub(super) fn beat_for(self: &Arc<Self>, id: &str, flights: &[String]) -> Beat {
        if flights.is_empty() {
            return Beat {
                inner: Weak::new(),
                id: None,
            };
        }
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), flights.to_vec());
        if !self.beating.swap(true, Ordering::AcqRel) {
            self.runtime
                .spawn(beat(Arc::downgrade(self), Renewed::Slots));
        }
        Beat {
            inner: Arc::downgrade(self),
            id: Some(id.to_owned()),
        }
    }

    /// Renews spend hold `id` (`member` in the sets of reservations of its budgets, whose hash
    /// and set are `keys`) until [`forget_hold`](Self::forget_hold).
    pub(super) fn renew_hold(self: &Arc<Self>, id: u64, member: String, keys: &[String]) {
        let keys = keys.to_vec();
        self.holds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Renewal { member, keys });
        if !self.renewing.swap(true, Ordering::AcqRel) {
            self.runtime
                .spawn(beat(Arc::downgrade(self), Renewed::Holds));
        }
    }

    /// Stops renewing spend hold `id` (it is settled or released).
    pub(super) fn forget_hold(&self, id: u64) {
        self.holds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Every live reservation's slots, by set of calls in flight.
    fn slots(&self) -> BTreeMap<String, Vec<String>> {
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (id, flights) in self.live.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            for key in flights {
                by_key.entry(key.clone()).or_default().push(id.clone());
            }
        }
        by_key
    }

    /// Every spend hold of this process: its id in the set of live reservations, its member in
    /// each budget's set, and each budget's hash (kept, no member).
    fn holds(&self) -> BTreeMap<String, Vec<String>> {
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let holds = self.holds.lock().unwrap_or_else(|e| e.into_inner());
        if holds.is_empty() {
            return by_key;
        }
        by_key.insert(
            self.keys.named("L:live"),
            holds.keys().map(u64::to_string).collect(),
        );
        for r in holds.values() {
            for pair in r.keys.chunks_exact(2) {
                by_key.entry(pair[0].clone()).or_default();
                by_key
                    .entry(pair[1].clone())
                    .or_default()
                    .push(r.member.clone());
            }
        }
        by_key
    }

    /// One beat: moves the members of `by_key` to expire `ttl` from now.
    async fn touch_all(&self, ttl: Duration, by_key: BTreeMap<String, Vec<String>>) {
        let ttl = u64::try_from(ttl.as_micros()).unwrap_or(u64::MAX);
        let (mut keys, mut args, mut n) = (Vec::new(), vec![Arg::from(ttl)], 0);
        for (key, members) in by_key {
            // A key without members is only kept (one entry, no member).
            let parts: Vec<&[String]> = if members.is_empty() {
                vec![&[]]
            } else {
                members.chunks(CHUNK).collect()
            };
            for part in parts {
                keys.push(key.clone());
                args.push((part.len() as u64).into());
                args.extend(part.iter().cloned().map(Arg::Str));
                n += part.len().max(1);
                if n >= CHUNK {
                    self.touch(&keys, &args).await;
                    (keys, args, n) = (Vec::new(), vec![Arg::from(ttl)], 0);
                }
            }
        }
        if n > 0 {
            self.touch(&keys, &args).await;
        }
    }

    async fn touch(&self, keys: &[String], args: &[Arg]) {
        match self.invoke::<i64>(&self.scripts.touch, keys, args).await {
            Ok(_) => self.health.succeeded(),
            Err(e) => {
                tracing::debug!(error = %e, "the heartbeat of reservations held failed");
                self.health.failed(&e, self.fails_open());
            }
        }
    }
}

/// Beats every third of the TTL of what it renews, until the store is dropped.
async fn beat(inner: Weak<Inner>, what: Renewed) {
    let Some(ttl) = inner.upgrade().map(|i| match what {
        Renewed::Slots => i.settings.ttl,
        Renewed::Holds => i.settings.spend_ttl,
    }) else {
        return;
    };
    loop {
        tokio::time::sleep(ttl / 3).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let by_key = match what {
            Renewed::Slots => inner.slots(),
            Renewed::Holds => inner.holds(),
        };
        inner.touch_all(ttl, by_key).await;
    }
}
