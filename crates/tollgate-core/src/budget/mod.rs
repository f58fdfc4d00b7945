//! Money: what calls cost and how much a scope may spend per window.
//!
//! * [`Micros`]: money as whole micro-dollars, saturating, so totals never drift or wrap.
//! * [`Price`] / [`PriceTable`] / [`TokenUsage`]: a call's tokens → its cost, with a clear
//!   [`UnknownModel`] policy (refuse, or charge a default price) instead of a silent zero, and
//!   [`PriceTable::example`] (dated example prices of Anthropic and OpenAI models).
//! * [`Window`] / [`WindowClock`]: the hour, day or calendar month a wall time falls in, at a
//!   fixed UTC offset, and when it resets.
//! * [`Budget`] / [`BudgetState`]: a cap per window with alert thresholds; reserve an estimate
//!   before a call, settle the real cost after it ([`reserve_budgets`] and friends do it across
//!   all the scopes of a call, all or nothing). [`BudgetState`] states the exact guarantee.
//!
//! Time is wall-clock Unix seconds passed in by the caller; nothing here reads a clock.
//!
//! ```
//! use tollgate_core::{Budget, BudgetState, Micros, PriceTable, TokenUsage};
//!
//! let prices = PriceTable::example();
//! let budget = Budget::daily(Micros::from_dollars(100))
//!     .thresholds([20, 50, 100].map(Micros::from_dollars))
//!     .build()?;
//! let now = 1_767_225_600; // 2026-01-01T00:00:00Z
//! let mut spend = BudgetState::new(&budget, now);
//!
//! // Before the call: an upper bound of its cost (prompt size and max_tokens).
//! let estimate = prices.upper_bound("claude-sonnet-4-5", 20_000, 4_000).unwrap();
//! let held = spend.reserve(&budget, now, estimate).expect("within budget");
//! // After it: the real usage.
//! let usage = TokenUsage::new(2_000, 1_500).with_cache_read(18_000);
//! let cost = prices.cost_of("claude-sonnet-4-5-20250929", usage).unwrap();
//! let alerts = spend.settle(&budget, now + 30, held, cost);
//! assert!(alerts.is_empty());
//! assert_eq!(spend.spent.to_string(), "$0.033900"); // 2k × $3 + 1.5k × $15 + 18k × $0.30 per Mtok
//! # Ok::<(), tollgate_core::ConfigError>(())
//! ```

mod config;
mod events;
mod money;
mod multi;
mod price;
mod state;
mod table;
mod window;

pub use config::{Budget, BudgetBuilder};
pub use events::{Alert, BudgetExhausted};
pub use money::Micros;
pub use multi::{release_budgets, reserve_budgets, settle_budgets};
pub use price::{Price, TokenUsage};
pub use state::{BudgetState, Reservation};
pub use table::{PriceMatch, PriceTable, UnknownModel, UnknownModelError};
pub use window::{Window, WindowClock};
