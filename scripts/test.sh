#!/usr/bin/env bash
# The whole test suite of tollgate: formatting, lints, every test (doc tests included) and the docs.
# `.ci/run` calls exactly this script; the README names it.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Redis store's tests start their own redis-server (crates/tollgate-redis/tests): install the
# Debian package when it is missing (as root, or through sudo when that works without a password).
if ! command -v redis-server >/dev/null && [ -z "${TOLLGATE_REDIS_SERVER:-}" ]; then
    echo "== installing redis-server (for the tollgate-redis tests)"
    if [ "$(id -u)" -eq 0 ]; then
        { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; } || true
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        { sudo apt-get update -qq && sudo apt-get install -y -qq redis-server >/dev/null; } || true
    fi
    if ! command -v redis-server >/dev/null; then
        echo "redis-server is missing and could not be installed: install the Debian package" \
            "redis-server (or set TOLLGATE_REDIS_SERVER to a redis-server binary)" >&2
        exit 1
    fi
fi

# The SDK tests (crates/tollgate-mock/tests/sdk, and the gateway's fleet in
# crates/tollgate-proxy/tests/e2e, which also runs the tollgate-mock binary this build makes) run
# the official Python SDKs against the mock server: scripts/sdk-venv.sh makes their venv once
# (pip, from the package index) and is instant after. TOLLGATE_SKIP_SDK=1 skips them; without either, those tests fail on purpose.
if [ "${TOLLGATE_SKIP_SDK:-}" != 1 ]; then
    echo "== python venv with the pinned SDKs (scripts/sdk-venv.sh)"
    TOLLGATE_SDK_PYTHON="$(./scripts/sdk-venv.sh | tail -n 1)"
    export TOLLGATE_SDK_PYTHON
fi

# The mock's HTTP front (feature `http`) is checked, tested and documented with everything else.
FEATURES=(--features tollgate-mock/http)

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (-D warnings)"
cargo clippy --workspace --all-targets --locked "${FEATURES[@]}" -- -D warnings
echo "== cargo test --workspace (unit, integration, property, doc and SDK tests)"
cargo test --workspace --locked "${FEATURES[@]}"
echo "== the minimal layer: tollgate without its optional features (no TOML, HTTP feedback, call log)"
cargo clippy -p tollgate --no-default-features --all-targets --locked -- -D warnings
cargo test -p tollgate --no-default-features --lib --tests --locked
echo "== loom models of the wake protocol (crates/tollgate/src/wake; own target directory)"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
    cargo test -p tollgate --lib --release --locked -- wake::loom_models
echo "== cargo doc (-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked "${FEATURES[@]}"
