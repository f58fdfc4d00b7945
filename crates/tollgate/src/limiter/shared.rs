//! [`Shared`]: the state every clone of a layer shares, and the settings of waiting and of
//! provider feedback. Everything else in the limiter reads it; it reads nothing of theirs.

use crate::clock::Clock;
use crate::feedback::adaptive::Adaptive;
use crate::feedback::Cooldown;
use crate::registry::Registry;
use crate::spend::{MemoryLedger, Spend, SpendSettings};
use crate::wake::Waiters;
use crate::{Priority, ScopeKey};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::settle::OnFailure;

/// Settings of the waiting behaviour and of provider feedback. Every duration is at most
/// [`MAX_DURATION`](crate::MAX_DURATION) (the builder saturates them).
#[derive(Clone, Debug)]
pub(crate) struct WaitSettings {
    pub(crate) max_wait: Option<Duration>,
    pub(crate) refuse_over_max_wait: bool,
    pub(crate) on_failure: OnFailure,
    pub(crate) provider_scope: Option<ScopeKey>,
    pub(crate) cooldown: Cooldown,
    pub(crate) header_sync: bool,
    /// The longest delay a provider's answer (or [`Limiter::cool_down`](crate::Limiter::cool_down))
    /// may impose.
    pub(crate) max_provider_delay: Duration,
}

/// What every clone of a layer shares: the scope registry, the store, the queue of waiting calls,
/// the clock, the money side and the adaptive state.
#[derive(Debug)]
pub(crate) struct Shared<St> {
    pub(crate) store: St,
    pub(crate) registry: Registry,
    /// The queue of waiting calls and the wake protocol (see [`crate::wake`]).
    pub(crate) waiters: Waiters,
    pub(crate) clock: Clock,
    pub(crate) settings: WaitSettings,
    /// Rate-limited answers in a row, for the computed cooldown.
    pub(crate) consecutive_limited: AtomicU32,
    pub(crate) adaptive: Option<Mutex<Adaptive>>,
    /// Budgets, prices and the call log; `None` when none is configured (calls skip it).
    pub(crate) spend: Option<Spend>,
    next_id: AtomicU64,
}

impl<St> Shared<St> {
    /// The shared state of a new layer, whose wall clock reads `epoch_unix_ms` now.
    pub(crate) fn new(
        store: St,
        registry: Registry,
        tiers: &[(Priority, f64)],
        settings: WaitSettings,
        adaptive: Option<Adaptive>,
        spend: SpendSettings,
        epoch_unix_ms: u64,
    ) -> Self {
        let clock = Clock::start(epoch_unix_ms);
        let spend = spend.is_active().then(|| {
            let ledger = spend
                .ledger
                .clone()
                .unwrap_or_else(|| Arc::new(MemoryLedger::new()));
            Spend::new(spend, ledger, epoch_unix_ms / 1000)
        });
        Shared {
            store,
            registry,
            waiters: Waiters::new(tiers),
            clock,
            settings,
            consecutive_limited: AtomicU32::new(0),
            adaptive: adaptive.map(Mutex::new),
            spend,
            next_id: AtomicU64::new(0),
        }
    }

    /// A new call's place in arrival order (from 1).
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}
