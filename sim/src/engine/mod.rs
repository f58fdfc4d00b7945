//! The engine: one scenario, one strategy, on a paused current-thread tokio runtime, against a
//! fresh mock provider; then the metrics from what the provider saw.

mod agents;
mod attempts;
mod calls;
mod drive;
mod measure;
mod runtime;
mod throttling;

pub use runtime::{block_on, Finished};

use crate::report::{StrategyResult, Timeline};
use crate::rng;
use crate::scenario::{ProviderAlgorithm, Scenario};
use crate::strategy::{self, Client, StrategyKind, EPOCH_UNIX_SECS};
use std::future::poll_fn;
use tokio::time::Instant;
use tollgate::BoxError;
use tollgate_mock::{Algorithm, Dimension, MockProvider, OverloadConfig};
use tower::Service;

/// What one run produced.
#[derive(Debug)]
pub struct Run {
    /// The metrics.
    pub result: StrategyResult,
    /// Second by second.
    pub timeline: Timeline,
    /// How often the runtime parked, about the distinct virtual instants the run visited (see
    /// [`Finished::parks`]). Not part of any output; it tells what the run cost tokio's timer.
    pub parks: u64,
}

/// Runs `scenario` with `kind` and returns its metrics and timeline.
///
/// # Errors
/// A scenario the mock provider or the strategy cannot be built for.
pub fn run(scenario: &Scenario, kind: StrategyKind) -> Result<Run, BoxError> {
    let scenario = scenario.clone();
    let finished = block_on(async move { run_async(&scenario, kind).await })?;
    finished.output.map(|run| Run {
        parks: finished.parks,
        ..run
    })
}

/// The mock provider of `scenario`; with `resets`, its answers carry the `limit` and `reset`
/// headers beside `remaining` (only the adaptive mode reads them: they change no other
/// strategy's outcome, and formatting them costs a fifth of a simulated call).
pub(crate) fn provider(scenario: &Scenario, resets: bool) -> Result<MockProvider, BoxError> {
    let p = &scenario.provider;
    let mut b = MockProvider::builder().rpm(p.rpm);
    // A token limit of 0 means none: the provider neither limits nor reports that dimension.
    b = match p.itpm {
        0 => b.unlimited(Dimension::InputTokens),
        itpm => b.input_tpm(itpm),
    };
    b = match p.otpm {
        0 => b.unlimited(Dimension::OutputTokens),
        otpm => b.output_tpm(otpm),
    };
    b = b
        .algorithm(match p.algorithm {
            ProviderAlgorithm::TokenBucket => Algorithm::TokenBucket,
            ProviderAlgorithm::FixedWindow => Algorithm::FixedWindow,
        })
        .hidden_share(p.hidden_share)
        .latency(p.latency, p.latency_per_token, p.latency_jitter)
        .seed(rng::seed(scenario.seed, rng::PROVIDER, 0))
        .epoch_unix_secs(EPOCH_UNIX_SECS)
        // Every strategy reads an answer's status and `retry-after`; tollgate's header sync reads
        // the `remaining` headers, and its adaptive mode the `reset` headers beside them. The
        // OpenAI family repeats Anthropic's requests and input tokens and changes no outcome;
        // formatting and parsing it was a quarter of the instructions of a simulated call.
        .anthropic_headers(p.rate_limit_headers)
        .openai_headers(false)
        .limit_and_reset_headers(resets)
        .event_log(true);
    if p.overload_in_flight > 0 {
        b = b.overload(OverloadConfig {
            threshold_in_flight: p.overload_in_flight,
            probability: p.overload_probability,
        });
    }
    Ok(b.build()?)
}

async fn run_async(scenario: &Scenario, kind: StrategyKind) -> Result<Run, BoxError> {
    let start = Instant::now();
    let provider = provider(scenario, kind == StrategyKind::TollgateAdaptive)?;
    // The tollgate strategies' call log, when asked for.
    let log = match &scenario.call_log {
        Some(path) if kind.is_tollgate() => Some(
            tollgate::spend::CallLog::append_to_file(path)
                .map_err(|e| format!("{}: {e}", path.display()))?,
        ),
        _ => None,
    };
    // One future polls every call: tokio's budget of operations per task poll would make it
    // yield again and again (a strategy's herd of waiters polls thousands of timers at once).
    let records = match kind {
        k if k.is_tollgate() => {
            // One instance for every call, as a client that keeps its service (no clone of the
            // stack per call): a call makes it ready and calls it in the same poll, so no other
            // call comes between, and the borrow ends before the call's future is awaited.
            let svc = strategy::layer(kind, scenario, provider.clone(), log.clone(), start)?;
            let svc = std::cell::RefCell::new(svc);
            let send = |call, rng| {
                let (svc, provider) = (&svc, &provider);
                async move {
                    let answer = match poll_fn(|cx| svc.borrow_mut().poll_ready(cx)).await {
                        Ok(()) => {
                            let answer = svc.borrow_mut().call(call);
                            answer.await
                        }
                        Err(e) => Err(e),
                    };
                    let ok = match answer {
                        Ok(answer) => {
                            let ok = answer.status().is_success();
                            provider.recycle(answer);
                            ok
                        }
                        Err(_) => false,
                    };
                    (ok, rng)
                }
            };
            tokio::task::unconstrained(drive::drive(scenario, start, send)).await
        }
        _ => {
            let client = Client::new(kind, scenario, provider.clone(), start)?;
            let send = |call, mut rng| {
                let client = &client;
                async move {
                    let ok = client.send(call, &mut rng).await;
                    (ok, rng)
                }
            };
            tokio::task::unconstrained(drive::drive(scenario, start, send)).await
        }
    };
    if let Some(log) = &log {
        log.flush();
    }
    let events = provider.events();
    let stats = provider.stats();
    Ok(measure::measure(
        scenario,
        kind,
        &records,
        &events,
        &stats,
        start.elapsed(),
    ))
}
