//! What scopes and priority tiers cost: the call of `overhead.rs` charged to three scopes
//! (`global`, `team:*`, `agent:*`, each with an RPM and an input-TPM limit) with two priority tiers,
//! against the same call charged to `global` alone, in one criterion group.
//!
//! Both variants send the same request: an agent's prompt that carries its team and agent keys
//! (made once per agent, as an agent would hold them) and its priority. Calls rotate over 64
//! agents in 4 teams; odd agents are critical, even ones background with a reserved share of 0.25.
//! The limits are far above any rate a bench reaches, so nothing waits: this measures the
//! bookkeeping of three scopes (resolving three keys, charging and reconciling six buckets) and of
//! the tiers on the path that does not queue. Workloads: see `support.rs`.

mod support;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use smallvec::smallvec;
use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::Arc;
use std::time::Duration;
use support::{Caller, Svc, Workload};
use tollgate::{
    Cost, Dimension, Limit, Limiter, Priority, ScopeKey, ScopeLimits, Scopes, ThrottleLayer,
};
use tower::{service_fn, ServiceBuilder};

const AGENTS: u64 = 64;
const TEAMS: u64 = 4;

/// An agent's call.
#[derive(Clone, Debug)]
struct Prompt {
    input_tokens: u64,
    team: ScopeKey,
    agent: ScopeKey,
    priority: Priority,
}

#[derive(Clone, Copy, Debug)]
struct Reply {
    input_tokens: u64,
}

fn provider(p: Prompt) -> Ready<Result<Reply, Infallible>> {
    ready(Ok(Reply {
        input_tokens: p.input_tokens,
    }))
}

/// The keys of every agent and its team, made once.
#[derive(Clone, Debug)]
struct Fleet {
    agents: Arc<[(ScopeKey, ScopeKey)]>,
}

impl Fleet {
    fn new() -> Self {
        let agents = (0..AGENTS)
            .map(|a| {
                (
                    ScopeKey::from(format!("team:{}", a % TEAMS)),
                    ScopeKey::from(format!("agent:{a}")),
                )
            })
            .collect();
        Fleet { agents }
    }

    /// Call `i`: agent `i mod 64`.
    fn prompt(&self, i: u64) -> Prompt {
        let a = i % AGENTS;
        let (team, agent) = &self.agents[a as usize];
        Prompt {
            input_tokens: 10,
            team: team.clone(),
            agent: agent.clone(),
            priority: Priority((a % 2) as u8),
        }
    }
}

/// An RPM and an input-TPM limit, both far above any rate a bench reaches.
fn limits() -> ScopeLimits {
    ScopeLimits::new()
        .limit(Limit::per_minute(Dimension::Requests, 1_000_000_000_000))
        .limit(Limit::per_minute(
            Dimension::InputTokens,
            10_000_000_000_000,
        ))
}

fn estimate(p: &Prompt) -> Cost {
    Cost::request().with_input_tokens(p.input_tokens)
}

fn usage(r: &Reply) -> Option<Cost> {
    Some(Cost::request().with_input_tokens(r.input_tokens))
}

/// The call charged to `global` only.
fn one_scope(fleet: &Fleet) -> (Limiter, impl Caller + Clone) {
    let layer = ThrottleLayer::builder()
        .scope("global", limits())
        .estimate(estimate)
        .read_usage(usage)
        .build()
        .expect("valid limits");
    let limiter = layer.limiter().clone();
    let fleet = fleet.clone();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(provider));
    let caller = Svc {
        svc,
        make_req: move |i| fleet.prompt(i),
    };
    (limiter, caller)
}

/// The call charged to `global`, its team and its agent, in one of two priority tiers.
fn three_scopes(fleet: &Fleet) -> (Limiter, impl Caller + Clone) {
    let layer = ThrottleLayer::builder()
        .scope("global", limits())
        .scope("team:*", limits())
        .scope("agent:*", limits())
        .tier(Priority::BACKGROUND, 0.25)
        .extract_scopes(|p: &Prompt| -> Scopes {
            smallvec![ScopeKey::GLOBAL, p.team.clone(), p.agent.clone()]
        })
        .assign_priority(|p: &Prompt| p.priority)
        .estimate(estimate)
        .read_usage(usage)
        .build()
        .expect("valid limits");
    let limiter = layer.limiter().clone();
    let fleet = fleet.clone();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(provider));
    let caller = Svc {
        svc,
        make_req: move |i| fleet.prompt(i),
    };
    (limiter, caller)
}

/// No call was refused or queued in any scope. The limiter records the time between a call's first
/// poll and its admission as its wait even when the call never queued (the store's own latency,
/// well under a microsecond, more when the OS deschedules the thread in between), so "never
/// waited" is checked as "the median wait is under a millisecond". The limits rule out real waits
/// anyway: a call moves a bucket forward by at most a few nanoseconds of its 60-second burst.
fn assert_never_waited(limiter: &Limiter) {
    for s in limiter.stats() {
        assert!(
            s.refused == 0 && s.queue_depth == 0 && s.wait_p50 < Duration::from_millis(1),
            "a call waited or was refused: {s:?}"
        );
    }
}

fn scopes(c: &mut Criterion) {
    let fleet = Fleet::new();
    for workload in Workload::ALL {
        let rt = workload.runtime();
        let mut group = c.benchmark_group(format!("scopes/{}", workload.name()));
        group.throughput(Throughput::Elements(1));

        let (limiter, three) = three_scopes(&fleet);
        workload.bench(&mut group, &rt, "tollgate-3-scopes-2-tiers", || {
            three.clone()
        });
        assert_never_waited(&limiter);
        let ran = limiter.stats().iter().any(|s| s.admitted > 0);
        if ran && !support::counting() {
            // Every team and agent got its own buckets from the patterns (unless a filter left
            // this bench out).
            assert_eq!(limiter.stats().len(), (1 + TEAMS + AGENTS) as usize);
        }

        let (limiter, one) = one_scope(&fleet);
        workload.bench(&mut group, &rt, "tollgate-1-scope", || one.clone());
        assert_never_waited(&limiter);

        group.finish();
    }
}

criterion_group!(benches, scopes);
criterion_main!(benches);
