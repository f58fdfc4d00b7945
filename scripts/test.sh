#!/usr/bin/env bash
# The whole test suite of tollgate: formatting, lints, every test (doc tests included) and the docs.
# `.ci/run` calls exactly this script; the README names it.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (-D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test --workspace (unit, integration, property and doc tests)"
cargo test --workspace --locked
echo "== cargo doc (-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
