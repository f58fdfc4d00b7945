#!/usr/bin/env bash
# Runs the benchmarks of tollgate against its peers and the simulator's speed, and writes
# results/bench/ratios.md: ns per call of each implementation, the ratio tollgate ÷ each peer,
# simulated calls per wall second, and the machine they were measured on.
#
#   scripts/bench.sh                 # every bench: ~2 minutes of measuring after the build, plus
#                                    # ~1 for the simulator (benches/sim/sim.rs: 12 whole runs, most
#                                    # of them a simulated hour of 500 agents)
#   scripts/bench.sh overhead/1-task # only the benchmarks whose id matches (criterion's filter)
#   scripts/bench.sh sim             # only the simulator
#   scripts/bench.sh proxy           # only the gateway (benches/proxy.rs → results/bench/proxy.md)
#   scripts/bench.sh redis           # only the Redis store (benches/redis.rs, ~10 s; starts its own
#                                    # redis-server; skipped with a note when none is installed)
#
# Extra arguments go to criterion after the defaults (a filter, or e.g. `--measurement-time 10`).
# The simulator bench sets its own sampling (10 samples of one run), so it only takes the filter
# and other arguments, and runs only without arguments or when one of them mentions `sim`.
# Not run in CI: CI only compiles the benches (`cargo clippy --all-targets`). Close other heavy work
# first; on a 2-core machine a concurrent build shows up in every figure.
set -euo pipefail
cd "$(dirname "$0")/.."

# `scripts/bench.sh proxy`: the gateway against the mock called directly (benches/proxy.rs, about
# 25 s after the build), written to results/bench/proxy.md.
if [ "${1:-}" = proxy ]; then
    # Absolute paths: cargo runs a bench in its package's directory.
    mkdir -p "${CARGO_TARGET_DIR:-target}"
    target="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)"
    echo "== building tollgate-mock and tollgate-proxy (release)"
    cargo build --release -p tollgate-mock --features http --bin tollgate-mock
    cargo build --release -p tollgate-proxy --bin tollgate-proxy
    loadavg="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
    commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!results' || echo ' + uncommitted changes')"
    echo "== running the gateway bench (load average before: $loadavg)"
    TOLLGATE_MOCK_BIN="$target/release/tollgate-mock" TOLLGATE_PROXY_BIN="$target/release/tollgate-proxy" \
        TOLLGATE_BENCH_OUT="$PWD/results/bench/proxy.md" TOLLGATE_BENCH_LOADAVG="$loadavg" \
        TOLLGATE_BENCH_COMMIT="$commit" \
        TOLLGATE_BENCH_COMMAND="scripts/bench.sh proxy → cargo bench -p tollgate-benches --bench proxy" \
        cargo bench -p tollgate-benches --bench proxy
    exit 0
fi

target="${CARGO_TARGET_DIR:-target}"
criterion_args=(--warm-up-time 1 --measurement-time 3 "$@")
run_sim=false
if [ "$#" -eq 0 ] || [[ " $* " == *sim* ]]; then
    run_sim=true
fi
run_redis=false
# `scripts/bench.sh redis`: the Redis bench alone (the other benches' own checks assume that
# they ran whole, which a filter matching none of their benchmarks breaks).
run_core=true
if [ "${1:-}" = redis ]; then
    run_core=false
fi
if [ "$#" -eq 0 ] || [[ " $* " == *redis* ]]; then
    if command -v redis-server >/dev/null; then
        run_redis=true
    else
        echo "redis-server is not installed: the Redis bench is skipped (apt-get install -y redis-server)" >&2
    fi
fi
command="scripts/bench.sh${*:+ $*} →"
if $run_core; then
    command+=" cargo bench -p tollgate-benches --bench overhead --bench scopes -- ${criterion_args[*]};"
fi
if $run_sim; then
    command+=" cargo bench -p tollgate-bench-sim --bench sim${*:+ -- $*};"
fi
if $run_redis; then
    command+=" cargo bench -p tollgate-benches --bench redis -- ${criterion_args[*]};"
fi
command="${command%;}"

echo "== building the benches"
executables="$(cargo bench -p tollgate-benches --no-run 2>&1 | tee /dev/stderr |
    sed -n 's/^ *Executable \([a-z]*\)\.rs (\(.*\))$/\1 \2/p')"

# Results of benches that no longer exist would be read as current: start from an empty slate
# (unless a filter selects a few benches, whose neighbours' results stay).
if [ "$#" -eq 0 ]; then
    rm -rf "$target"/criterion/overhead_* "$target"/criterion/scopes_* "$target"/criterion/sim \
        "$target"/criterion/redis_*
fi

loadavg="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
echo "== running the benches (load average before: $loadavg)"
if $run_core; then
    cargo bench -p tollgate-benches --bench overhead --bench scopes -- "${criterion_args[@]}"
fi
if $run_sim; then
    echo "== running the simulator bench (~1 minute)"
    cargo bench -p tollgate-bench-sim --bench sim -- "$@"
fi
if $run_redis; then
    echo "== running the Redis bench (~15 s)"
    cargo bench -p tollgate-benches --bench redis -- "${criterion_args[@]}"
fi

# Instructions per call, counted by callgrind on one task: 20,000 calls after 1,000 of warm-up,
# counting only the function that makes them. Unlike wall time, the machine's load does not move it.
counts="$target/criterion/instructions.tsv"
rm -f "$counts"
if [ "$#" -eq 0 ] && command -v valgrind >/dev/null; then
    echo "== counting instructions per call (callgrind)"
    calls=20000
    while read -r family exe; do
        # The simulator's figure is whole runs of seconds, not a call: nothing to count.
        if [ "$family" = sim ]; then continue; fi
        # The benchmarks of the family: those criterion just measured on one task.
        for dir in "$target/criterion/${family}_1-task"/*/; do
            name="$(basename "$dir")"
            if [ ! -d "$dir" ] || [ "$name" = report ]; then continue; fi
            refs="$(TOLLGATE_BENCH_CALLS="$name:$calls" valgrind --tool=callgrind \
                --toggle-collect='*counted_calls*' --callgrind-out-file=/dev/null "$exe" </dev/null 2>&1 |
                sed -n 's/.*Collected *: *//p' | tr -d ',' | sort -n | tail -1)"
            if [ -z "$refs" ]; then
                echo "could not count $family/$name under callgrind" >&2
                continue
            fi
            per_call=$((refs / calls))
            echo "$family/$name: $per_call instructions per call"
            printf '%s\t%s\t%s\n' "$family" "$name" "$per_call" >>"$counts"
        done
    done <<<"$executables"
fi

echo "== writing results/bench/ratios.md"
TOLLGATE_BENCH_COMMAND="$command" TOLLGATE_BENCH_LOADAVG="$loadavg" \
    cargo run -q -p tollgate-benches --bin ratios -- "$target/criterion" results/bench/ratios.md
