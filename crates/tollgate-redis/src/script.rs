//! The Lua scripts and the arguments this process computes for them.
//!
//! Everything that depends only on the limits and the cost (the time a charge takes to refill, the
//! backlog a bucket may have before a call, a refund) is computed here in exact integer arithmetic
//! (`u128`) and passed to Redis in whole microseconds; the scripts only compare and add them to the
//! server's clock. So the scripts need no division and Lua's doubles stay exact.

use redis::Script;
use tollgate::ScopeRef;
use tollgate_core::{Cost, Dimension, Gcra, NeverFits};

/// The largest span passed to a script, in µs (about 31 years): keeps every sum with the server's
/// time (about 1.8 × 10^15 µs since the epoch) below 2^53, where Lua's doubles stop being exact.
const MAX_US: u64 = 1_000_000_000_000_000;

/// The scripts, each with the shared prelude.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) acquire: Script,
    pub(crate) settle: Script,
    pub(crate) cool_down: Script,
    pub(crate) sync: Script,
    pub(crate) state: Script,
    pub(crate) touch: Script,
    pub(crate) ledger_reserve: Script,
    pub(crate) ledger_settle: Script,
    pub(crate) rate_cut: Script,
}

/// A script of `src/lua/` with the shared prelude (and more files before it).
macro_rules! script {
    ($($file:literal),+) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            $(include_str!(concat!("lua/", $file))),+
        ))
    };
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            acquire: script!("acquire.lua"),
            settle: script!("settle.lua"),
            cool_down: script!("cool_down.lua"),
            sync: script!("sync.lua"),
            state: script!("state.lua"),
            touch: script!("touch.lua"),
            ledger_reserve: script!("ledger_common.lua", "ledger_reserve.lua"),
            ledger_settle: script!("ledger_common.lua", "ledger_settle.lua"),
            rate_cut: script!("rate_cut.lua"),
        }
    }
}

/// The names of a store's keys: `<prefix>:{<tag>}:...`. Every key of a store carries the same hash
/// tag, so Redis Cluster keeps them in one slot and one script may touch them all.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    /// `<prefix>:{<tag>}:`
    base: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str, tag: &str) -> Self {
        Keys {
            base: format!("{prefix}:{{{tag}}}:"),
        }
    }

    /// The marker of a settled reservation.
    pub(crate) fn settled(&self, id: &str) -> String {
        format!("{}d:{id}", self.base)
    }

    /// The state of a scope's buckets and cooldown.
    pub(crate) fn scope(&self, scope: &ScopeRef) -> String {
        format!("{}s:{}", self.base, scope.key)
    }

    /// The sorted set of a scope's calls in flight.
    pub(crate) fn in_flight(&self, scope: &ScopeRef) -> String {
        format!("{}f:{}", self.base, scope.key)
    }

    /// The latest cut of a scope's adaptive rate.
    pub(crate) fn rate_cut(&self, scope: &ScopeRef) -> String {
        format!("{}a:{}", self.base, scope.key)
    }

    /// `<prefix>:{<tag>}:<name>`: a key of the spend ledger.
    pub(crate) fn named(&self, name: &str) -> String {
        format!("{}{name}", self.base)
    }

    /// The counter that numbers the processes using the store.
    pub(crate) fn clients(&self) -> String {
        format!("{}clients", self.base)
    }
}

/// One bucket's terms in microseconds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    g: Gcra,
    /// Units per period × 1000 (the exact rate [`Gcra`] computes with).
    milli: u64,
}

impl Bucket {
    pub(crate) fn new(g: &Gcra) -> Self {
        Bucket {
            g: *g,
            milli: ((g.per_period() * 1000.0).round() as u64).clamp(1, MAX_US),
        }
    }

    /// The bucket's id in a scope's state: its dimension and period (`dimension × 10^15 + period
    /// in µs`), so that limits that change amount keep their state and limits of another period
    /// start afresh (as `CompiledScope::carry_over`). Below 2^53, so a Lua double holds it.
    pub(crate) fn id(&self) -> u64 {
        let dim = match self.g.dimension() {
            Dimension::Requests => 1,
            Dimension::InputTokens => 2,
            Dimension::OutputTokens => 3,
            Dimension::TotalTokens => 4,
        };
        dim * 1_000_000_000_000_000 + (self.g.period().as_u64() / 1_000).min(999_999_999_999_999)
    }

    pub(crate) fn rate(&self) -> u64 {
        self.milli
    }

    /// `n` units × period ÷ rate, in µs: `n·period_ns·1000 / milli` ns is `n·period_ns / milli` µs.
    fn span(&self, n: u64, round_up: bool) -> u64 {
        let period = self.g.period().as_u64();
        // Most products fit 64 bits: one division instead of a 128-bit one. Same result.
        if let Some(num) = n.checked_mul(period) {
            let us = if round_up {
                num.div_ceil(self.milli)
            } else {
                num / self.milli
            };
            return us.min(MAX_US);
        }
        let num = n as u128 * period as u128;
        let den = self.milli as u128;
        let us = if round_up {
            num.div_ceil(den)
        } else {
            num / den
        };
        u64::try_from(us).unwrap_or(u64::MAX).min(MAX_US)
    }

    /// The time `n` units take to refill, rounded up (charges make the limiter stricter, never
    /// laxer).
    pub(crate) fn charge_us(&self, n: u64) -> u64 {
        self.span(n, true)
    }

    /// The backlog a bucket may have before a call of `n` units: `(burst − n)` units, rounded down.
    pub(crate) fn room_us(&self, n: u64) -> u64 {
        self.span(self.g.burst().saturating_sub(n), false)
    }

    /// The signed change of a bucket when a call charged `charged` units really cost `actual`:
    /// a shortfall is charged (rounded up), an excess refunded (rounded down).
    pub(crate) fn delta_us(&self, charged: u64, actual: u64) -> i64 {
        if actual >= charged {
            self.span(actual - charged, true) as i64
        } else {
            -(self.span(charged - actual, false) as i64)
        }
    }

    /// The backlog that leaves `remaining` units available, or `None` when the bucket never holds
    /// more than that (then nothing is lowered).
    pub(crate) fn lowered_backlog_us(&self, remaining: u64) -> Option<u64> {
        let room = self.g.burst().checked_sub(remaining)?;
        Some(self.span(room, true))
    }
}

/// The first bucket, in scope order and then configured order, that `cost` can never fit.
pub(crate) fn never_fits(scopes: &[ScopeRef], cost: Cost) -> Option<NeverFits> {
    scopes.iter().enumerate().find_map(|(i, s)| {
        s.limits.gcras().iter().find_map(|g| {
            let n = cost.amount(g.dimension());
            (n > g.burst()).then_some(NeverFits {
                scope: i,
                dimension: g.dimension(),
                requested: n,
                capacity: g.burst(),
            })
        })
    })
}

/// The bucket `sync_remaining` lowers: the one of `dimension` with the shortest period.
pub(crate) fn sync_bucket(scope: &ScopeRef, dimension: Dimension) -> Option<Bucket> {
    scope
        .limits
        .gcras()
        .iter()
        .filter(|g| g.dimension() == dimension)
        .min_by_key(|g| g.period())
        .map(Bucket::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::Limit;

    fn bucket(limit: Limit) -> Bucket {
        Bucket::new(&limit.compile().unwrap())
    }

    #[test]
    fn spans_match_the_core_arithmetic_in_microseconds() {
        // 60 RPM: one request refills in exactly one second.
        let b = bucket(Limit::per_minute(Dimension::Requests, 60));
        assert_eq!(b.charge_us(1), 1_000_000);
        assert_eq!(b.room_us(1), 59_000_000);
        // 7 per minute: 8,571,428.57… µs a unit; charges round up, refunds down.
        let b = bucket(Limit::per_minute(Dimension::Requests, 7));
        assert_eq!(b.charge_us(1), 8_571_429);
        assert_eq!(b.delta_us(2, 1), -8_571_428);
        assert_eq!(b.delta_us(1, 3), 17_142_858);
        // Headroom: 10 × 0.25 = 2.5 a minute, 24 s a unit.
        let b = bucket(Limit::per_minute(Dimension::Requests, 10).with_headroom(0.25));
        assert_eq!(b.rate(), 2_500);
        assert_eq!(b.charge_us(1), 24_000_000);
        // The core charges in ns what we charge in µs, rounded up.
        let g = Limit::per_minute(Dimension::InputTokens, 80_000)
            .compile()
            .unwrap();
        let b = Bucket::new(&g);
        for n in [1, 7, 999, 80_000] {
            assert_eq!(b.charge_us(n), g.cost_ns(n).div_ceil(1_000));
        }
    }

    proptest::proptest! {
        /// The 64-bit fast path of a span is the exact 128-bit quotient, rounded as asked.
        #[test]
        fn spans_are_the_exact_quotient_rounded(
            n in 0u64..=u64::MAX,
            small in proptest::bool::ANY,
            per_minute in 1u64..=1_000_000_000_000,
        ) {
            // Small costs take the fast path; any cost at all, the 128-bit one.
            let n = if small { n % 10_000_000 } else { n };
            let b = bucket(Limit::per_minute(Dimension::InputTokens, per_minute));
            let (num, den) = (n as u128 * 60_000_000_000, b.rate() as u128);
            let exact = |q: u128| u64::try_from(q).unwrap_or(u64::MAX).min(MAX_US);
            proptest::prop_assert_eq!(b.charge_us(n), exact(num.div_ceil(den)));
            let burst = b.g.burst();
            let room = burst.saturating_sub(n) as u128 * 60_000_000_000;
            proptest::prop_assert_eq!(b.room_us(n), exact(room / den));
        }
    }

    #[test]
    fn spans_never_leave_the_exact_range_of_doubles() {
        let b = bucket(Limit::per_day(Dimension::TotalTokens, 1));
        assert_eq!(b.charge_us(u64::MAX), MAX_US);
        const { assert!(MAX_US + 4_000_000_000_000_000 < 1 << 53) };
    }

    #[test]
    fn lowering_leaves_what_the_provider_reported() {
        let b = bucket(Limit::per_minute(Dimension::Requests, 60));
        assert_eq!(b.lowered_backlog_us(10), Some(50_000_000));
        assert_eq!(b.lowered_backlog_us(60), Some(0));
        assert_eq!(b.lowered_backlog_us(61), None);
    }

    #[test]
    fn bucket_ids_tell_dimension_and_period_apart() {
        let id = |l: Limit| bucket(l).id();
        let rpm = id(Limit::per_minute(Dimension::Requests, 60));
        assert_eq!(rpm, 1_000_000_060_000_000);
        assert_eq!(rpm, id(Limit::per_minute(Dimension::Requests, 600)));
        assert_ne!(rpm, id(Limit::per_minute(Dimension::InputTokens, 60)));
        assert_ne!(rpm, id(Limit::per_day(Dimension::Requests, 60)));
        assert!(id(Limit::per_day(Dimension::TotalTokens, 1)) < 1 << 53);
    }

    #[test]
    fn keys_share_one_hash_tag() {
        let k = Keys::new("tollgate", "org-1");
        assert_eq!(k.settled("3@1.000002#7"), "tollgate:{org-1}:d:3@1.000002#7");
        assert_eq!(k.clients(), "tollgate:{org-1}:clients");
    }
}
