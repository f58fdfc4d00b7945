#!/usr/bin/env bash
# Regenerates results/sim/: every built-in scenario with every strategy (table, JSON, CSV time
# series, PNG and SVG plots, index.html), with a headroom sweep on each. Deterministic: same
# bytes every run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p tollgate-sim
rm -rf results/sim
for scenario in reference launch-spike shared-key max-tokens-skew priority runaway no-headers; do
    ./target/release/sim --scenario "$scenario" --sweep 0.7:1.0:0.1 --out "results/sim/$scenario"
done
# The example call log (the layer's log of the tollgate strategy on two minutes of `runaway`) and
# its replay against every strategy.
rm -f sim/replay/example-calls.jsonl
./target/release/sim --scenario runaway --duration 2m --strategy tollgate \
    --call-log sim/replay/example-calls.jsonl >/dev/null
./target/release/sim --replay sim/replay/example-calls.jsonl --rpm 20 --sweep 0.7:1.0:0.1 \
    --out results/sim/replay-example
