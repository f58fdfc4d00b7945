//! The adaptive mode against what the provider really allows: it learns a shared key's real rate
//! from the answers, and from 429s alone where the answers say nothing, and it is never worse than
//! the layer without it.

use tollgate_sim::report::StrategyResult;
use tollgate_sim::scenario::{Scenario, BUILT_IN};
use tollgate_sim::simulate;
use tollgate_sim::strategy::StrategyKind;

fn results(name: &str, kinds: &[StrategyKind]) -> Vec<StrategyResult> {
    let s = Scenario::built_in(name).unwrap();
    simulate(&s, kinds, &[]).unwrap().results
}

/// On a key with 70 % of its stated capacity left for this client, the adaptive mode learns the
/// real rate from `remaining` and `reset`: at most 1 % of attempts 429 at 97 % utilization or
/// more, and no strategy at that utilization has fewer 429s.
#[test]
fn on_a_shared_key_the_adaptive_mode_has_the_fewest_429s_at_full_utilization() {
    let all = results("shared-key", &StrategyKind::ALL);
    let adaptive = all
        .iter()
        .find(|r| r.strategy == "tollgate-adaptive")
        .unwrap();
    assert!(adaptive.rate_limited_rate <= 0.01, "{adaptive:?}");
    assert!(adaptive.utilization >= 0.97, "{adaptive:?}");
    for r in all.iter().filter(|r| r.utilization >= 0.97) {
        assert!(
            adaptive.rate_limited_rate <= r.rate_limited_rate,
            "{} has fewer 429s: {} < {}",
            r.strategy,
            r.rate_limited_rate,
            adaptive.rate_limited_rate
        );
    }
}

/// Behind a provider that sends no rate-limit headers, 429s alone teach the adaptive mode the
/// real rate: at most 3 % of attempts 429 at 90 % utilization or more.
#[test]
fn without_rate_limit_headers_the_adaptive_mode_learns_from_429s_alone() {
    let scenario = Scenario::built_in("no-headers").unwrap();
    assert!(!scenario.provider.rate_limit_headers);
    let r = &results("no-headers", &[StrategyKind::TollgateAdaptive])[0];
    assert!(r.rate_limited_rate <= 0.03, "{r:?}");
    assert!(r.utilization >= 0.90, "{r:?}");
}

/// On every built-in scenario the adaptive mode has no more 429s than the layer without it, and
/// uses the provider at least as fully.
#[test]
fn the_adaptive_mode_is_never_worse_than_the_layer_without_it() {
    for (name, _) in BUILT_IN {
        let r = results(
            name,
            &[StrategyKind::Tollgate, StrategyKind::TollgateAdaptive],
        );
        let (plain, adaptive) = (&r[0], &r[1]);
        assert!(
            adaptive.rate_limited_rate <= plain.rate_limited_rate,
            "{name}: 429 rate {} > {}",
            adaptive.rate_limited_rate,
            plain.rate_limited_rate
        );
        assert!(
            adaptive.utilization >= plain.utilization,
            "{name}: utilization {} < {}",
            adaptive.utilization,
            plain.utilization
        );
    }
}
