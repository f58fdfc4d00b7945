#!/usr/bin/env bash
# Runs the benchmarks of tollgate against its peers and writes results/bench/ratios.md: ns per call
# of each implementation, the ratio tollgate ÷ each peer, and the machine they were measured on.
#
#   scripts/bench.sh                 # every bench, ~2 minutes of measuring after the build
#   scripts/bench.sh overhead/1-task # only the benchmarks whose id matches (criterion's filter)
#
# Extra arguments go to criterion after the defaults (a filter, or e.g. `--measurement-time 10`).
# Not run in CI: CI only compiles the benches (`cargo clippy --all-targets`). Close other heavy work
# first; on a 2-core machine a concurrent build shows up in every figure.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
criterion_args=(--warm-up-time 1 --measurement-time 3 "$@")
command="scripts/bench.sh${*:+ $*} → cargo bench -p tollgate-benches -- ${criterion_args[*]}"

echo "== building the benches"
cargo bench -p tollgate-benches --no-run

# Results of benches that no longer exist would be read as current: start from an empty slate
# (unless a filter selects a few benches, whose neighbours' results stay).
if [ "$#" -eq 0 ]; then
    rm -rf "$target"/criterion/overhead_* "$target"/criterion/scopes_*
fi

loadavg="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
echo "== running the benches (load average before: $loadavg)"
cargo bench -p tollgate-benches -- "${criterion_args[@]}"

echo "== writing results/bench/ratios.md"
TOLLGATE_BENCH_COMMAND="$command" TOLLGATE_BENCH_LOADAVG="$loadavg" \
    cargo run -q -p tollgate-benches --bin ratios -- "$target/criterion" results/bench/ratios.md
