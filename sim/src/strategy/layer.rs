//! tollgate's strategies: the real layer built for one run, with the scenario's limits, budget
//! and call log, and tollgate's retry policy outside it.

use super::{classifier, Answer, Call, StrategyKind, EPOCH_UNIX_SECS, SDK_HONOUR};
use crate::rng;
use crate::scenario::Scenario;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;
use tollgate::retry::RetryPolicy;
use tollgate::{BoxError, Cost, Dimension, Limit, Priority, ScopeLimits, ThrottleLayer};
use tollgate_core::{Backoff, RetryBudget};
use tollgate_mock::MockProvider;
use tower::{Service, ServiceBuilder};

/// The client of tollgate's strategies (`kind` is [`StrategyKind::Tollgate`] or
/// [`StrategyKind::TollgateAdaptive`]): the layer with the scenario's limits and budget, and its
/// retry policy outside it, against `provider`, for a run that started at `start`. Its type is
/// left unnamed, so that a call's future holds the whole stack's future without a box.
pub(crate) fn layer(
    kind: StrategyKind,
    scenario: &Scenario,
    provider: MockProvider,
    log: Option<tollgate::spend::CallLog>,
    start: Instant,
) -> Result<impl Service<Call, Response = Answer, Error = BoxError> + Clone, BoxError> {
    let p = &scenario.provider;
    let mut limits = ScopeLimits::new().limit(Limit::per_minute(Dimension::Requests, p.rpm));
    if p.itpm > 0 {
        limits = limits.limit(Limit::per_minute(Dimension::InputTokens, p.itpm));
    }
    if p.otpm > 0 {
        limits = limits.limit(Limit::per_minute(Dimension::OutputTokens, p.otpm));
    }
    let mut builder = ThrottleLayer::builder()
        .scope("global", limits)
        .headroom(scenario.headroom);
    if kind == StrategyKind::TollgateAdaptive {
        builder = builder.adaptive(0.1);
    }
    if let Some(budget) = &scenario.budget {
        builder = with_budget(builder, scenario, budget)?;
    }
    let attempts = log.as_ref().map(|_| Arc::default());
    if let Some(log) = log {
        builder = builder.call_log(log).wall_clock(EPOCH_UNIX_SECS * 1000);
    }
    // Calls belong to their agent's scope only when a budget counts per agent; recorded calls to
    // the scopes they had (and to the provider's, `global`, which the limits are on).
    let per_agent = scenario.budget.is_some();
    let traffic = scenario.traffic.clone();
    let throttle = builder
        .extract_scopes(move |c: &Call| {
            let mut scopes = tollgate::Scopes::new();
            scopes.push(tollgate::ScopeKey::GLOBAL);
            match traffic.as_ref().and_then(|t| t.scopes_of(c.agent)) {
                Some(recorded) => {
                    for key in recorded.iter().filter(|k| *k != "global") {
                        scopes.push(tollgate::ScopeKey::from(key.clone()));
                    }
                }
                None if per_agent => {
                    scopes.push(tollgate::ScopeKey::from(format!("agent:{}", c.agent)));
                }
                None => {}
            }
            scopes
        })
        .estimate(|c: &Call| {
            Cost::request()
                .with_input_tokens(c.req.input_tokens)
                .with_output_tokens(c.req.max_tokens)
        })
        .read_usage(|a: &Answer| {
            a.body().usage.map(|u| {
                Cost::request()
                    .with_input_tokens(u.input_tokens)
                    .with_output_tokens(u.output_tokens)
            })
        })
        .assign_priority(|c: &Call| Priority(c.priority))
        .classify(classifier(start))
        .call_meta(Attempts(attempts))
        .build()?;
    let retry = RetryPolicy::new(
        classifier(start),
        Backoff::sdk_default(),
        RetryBudget::default(),
        rng::stream(scenario.seed, rng::RETRY_JITTER, 0),
    )
    .honour_retry_after_up_to(SDK_HONOUR);
    Ok(ServiceBuilder::new()
        .layer(retry.into_layer())
        .layer(throttle)
        .map_request(|c: Call| c.req)
        .service(provider))
}

/// The call log's attempt numbers: each pass of a request through the layer is its next attempt
/// (the retry policy outside the layer sends the same request again). Counted only while a call
/// log is written.
#[derive(Clone, Debug)]
struct Attempts(Option<Arc<Mutex<std::collections::BTreeMap<u64, u32>>>>);

impl tollgate::CallMeta<Call> for Attempts {
    fn model<'r>(&self, _: &'r Call) -> Option<&'r str> {
        None
    }

    fn attempt(&self, call: &Call) -> u32 {
        let Some(seen) = &self.0 else { return 1 };
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        let n = seen.entry(call.req.tag).or_insert(0);
        *n += 1;
        *n
    }
}

/// The scenario's budget on a layer: its prices, per-agent and fleet caps, windows starting at
/// the simulation's fixed wall clock.
fn with_budget(
    builder: tollgate::ThrottleBuilder,
    scenario: &Scenario,
    spec: &crate::scenario::BudgetSpec,
) -> Result<tollgate::ThrottleBuilder, BoxError> {
    use tollgate::{Budget, Micros, Price, PriceTable, UnknownModel};
    let p = scenario.prices;
    let price = Price::from_dollars(
        p.input_per_mtok,
        p.output_per_mtok,
        p.input_per_mtok,
        p.input_per_mtok,
    )?;
    let window = match spec.window {
        crate::scenario::BudgetWindow::Hour => tollgate::Window::Hour,
        crate::scenario::BudgetWindow::Day => tollgate::Window::Day,
    };
    let cap = |usd: f64| -> Result<Budget, BoxError> {
        let micros = Micros::from_dollars_f64(usd).ok_or("a budget cap is not an amount")?;
        Ok(Budget::builder(micros, window).build()?)
    };
    let mut b = builder
        .prices(PriceTable::new(UnknownModel::Default(price)))
        .wall_clock(EPOCH_UNIX_SECS * 1000)
        .on_cap(match spec.on_cap {
            crate::scenario::CapMode::Refuse => tollgate::spend::OnCap::Refuse,
            crate::scenario::CapMode::Hold => tollgate::spend::OnCap::Hold,
        });
    if let Some(usd) = spec.agent_usd {
        b = b.budget("agent:*", cap(usd)?);
    }
    if let Some(usd) = spec.global_usd {
        b = b.budget("global", cap(usd)?);
    }
    Ok(b)
}
