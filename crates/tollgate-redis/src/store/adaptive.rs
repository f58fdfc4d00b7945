//! The adaptive rate shared through Redis: [`Store::publish_rate_cut`] and
//! [`Store::latest_rate_cut`](tollgate::Store::latest_rate_cut). A cut is one small hash per
//! scope (`…:a:<scope>`: when, and the rate it cut from), kept if it is the latest; every process
//! reads it in the background at most once per probe interval and follows the same recovery curve.
//!
//! [`Store::publish_rate_cut`]: tollgate::Store::publish_rate_cut

use super::writer::{Op, OpKind};
use super::Inner;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tollgate::store::RateCut;
use tollgate::ScopeRef;

/// How long a recorded cut lives: the recovery after a cut takes seconds, so a cut this old has
/// no effect left.
pub(super) const CUT_TTL: Duration = Duration::from_secs(600);

impl Inner {
    /// Records `cut` in Redis in the background (and here at once).
    pub(super) fn publish_cut(self: &Arc<Self>, scope: &ScopeRef, cut: RateCut) {
        self.remember_cut(scope, cut);
        self.send(Op {
            kind: OpKind::RateCut,
            keys: vec![self.keys.rate_cut(scope)].into(),
            args: vec![
                cut.at_unix_ms.into(),
                super::writer::Arg::Str(cut.max_rate.to_string()),
                u64::try_from(CUT_TTL.as_millis())
                    .unwrap_or(u64::MAX)
                    .into(),
            ],
            give_up: Instant::now() + CUT_TTL,
        });
    }

    /// The latest cut known here; reads Redis again in the background when the last read is
    /// older than the probe interval.
    pub(super) fn latest_cut(self: &Arc<Self>, scope: &ScopeRef) -> Option<RateCut> {
        let (known, fresh) = {
            let cuts = self.cuts.lock().unwrap_or_else(|e| e.into_inner());
            match cuts.get(&scope.key) {
                Some(&(cut, read)) => (cut, read.elapsed() < self.settings.probe),
                None => (None, false),
            }
        };
        if !fresh && !self.health.is_down() {
            self.read_cut(scope);
        }
        known
    }

    fn remember_cut(&self, scope: &ScopeRef, cut: RateCut) {
        let mut cuts = self.cuts.lock().unwrap_or_else(|e| e.into_inner());
        let entry = cuts
            .entry(scope.key.clone())
            .or_insert((None, Instant::now()));
        if entry.0.is_none_or(|c| c.at_unix_ms < cut.at_unix_ms) {
            entry.0 = Some(cut);
        }
    }

    fn read_cut(self: &Arc<Self>, scope: &ScopeRef) {
        {
            let mut cuts = self.cuts.lock().unwrap_or_else(|e| e.into_inner());
            let entry = cuts
                .entry(scope.key.clone())
                .or_insert((None, Instant::now()));
            // One read at a time: the next may start a probe interval later.
            entry.1 = Instant::now();
        }
        let (inner, scope) = (self.clone(), scope.clone());
        self.runtime.spawn(async move {
            let key = inner.keys.rate_cut(&scope);
            let mut conn = inner.conn.clone();
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(&key).arg("at").arg("w");
            let read = cmd.query_async::<(Option<u64>, Option<f64>)>(&mut conn);
            if let Ok(Ok((Some(at_unix_ms), Some(max_rate)))) =
                tokio::time::timeout(inner.settings.timeout, read).await
            {
                inner.remember_cut(
                    &scope,
                    RateCut {
                        at_unix_ms,
                        max_rate,
                    },
                );
            }
        });
    }
}
