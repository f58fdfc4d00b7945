//! The heartbeat of calls in flight: while a call that holds concurrency slots runs, its process
//! moves the slots' expiry forward every third of the reservation TTL, so a long call keeps its
//! slots and a process that dies loses them one TTL after its last beat.

use super::writer::Arg;
use super::Inner;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

/// Ids touched by one script run at the most.
const CHUNK: usize = 1_000;

/// Beats for one reservation until it is dropped (settled, or given up by its holder).
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

impl Inner {
    /// Beats for reservation `id`, which holds a slot in each of `flights`, until the returned
    /// [`Beat`] is dropped.
    pub(super) fn beat_for(self: &Arc<Self>, id: &str, flights: Vec<String>) -> Beat {
        if flights.is_empty() {
            return Beat {
                inner: Weak::new(),
                id: None,
            };
        }
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), flights);
        if !self.beating.swap(true, Ordering::AcqRel) {
            self.runtime.spawn(beat(Arc::downgrade(self)));
        }
        Beat {
            inner: Arc::downgrade(self),
            id: Some(id.to_owned()),
        }
    }

    /// One beat: every live reservation's slots, a script run per [`CHUNK`] ids.
    async fn touch_all(&self) {
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (id, flights) in self.live.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            for key in flights {
                by_key.entry(key.clone()).or_default().push(id.clone());
            }
        }
        let ttl = u64::try_from(self.settings.ttl.as_micros()).unwrap_or(u64::MAX);
        let (mut keys, mut args, mut ids) = (Vec::new(), vec![Arg::from(ttl)], 0);
        for (key, members) in by_key {
            for part in members.chunks(CHUNK) {
                keys.push(key.clone());
                args.push((part.len() as u64).into());
                args.extend(part.iter().cloned().map(Arg::Str));
                ids += part.len();
                if ids >= CHUNK {
                    self.touch(&keys, &args).await;
                    (keys, args, ids) = (Vec::new(), vec![Arg::from(ttl)], 0);
                }
            }
        }
        if ids > 0 {
            self.touch(&keys, &args).await;
        }
    }

    async fn touch(&self, keys: &[String], args: &[Arg]) {
        match self.invoke::<i64>(&self.scripts.touch, keys, args).await {
            Ok(_) => self.health.succeeded(),
            Err(e) => {
                tracing::debug!(error = %e, "the heartbeat of calls in flight failed");
                self.health.failed(&e, self.fails_open());
            }
        }
    }
}

/// Beats every third of the TTL until the store is dropped.
async fn beat(inner: Weak<Inner>) {
    let Some(period) = inner.upgrade().map(|i| i.settings.ttl / 3) else {
        return;
    };
    loop {
        tokio::time::sleep(period).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.touch_all().await;
    }
}
