#!/usr/bin/env bash
# The Python venv of the SDK tests (crates/tollgate-mock/tests/sdk): the official Anthropic and
# OpenAI SDKs, pinned, in target/sdk-venv. Idempotent: when the venv already holds these versions
# it returns at once, without the network. Prints the venv's python as its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

ANTHROPIC_VERSION=2.10.0
OPENAI_VERSION=3.51.0
VENV=target/sdk-venv
PY="$VENV/bin/python"
STAMP="$VENV/.tollgate-sdks"
WANT="anthropic==$ANTHROPIC_VERSION openai==$OPENAI_VERSION"

if [ -x "$PY" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ]; then
    echo "$PWD/$PY"
    exit 0
fi

PYTHON=${PYTHON:-python3}
if ! command -v "$PYTHON" >/dev/null; then
    echo "python3 is missing: install Python 3.9 or later (with its venv module)" >&2
    exit 1
fi
echo "== creating $VENV with $WANT" >&2
"$PYTHON" -m venv "$VENV" >&2
"$PY" -m pip install --quiet --disable-pip-version-check \
    "anthropic==$ANTHROPIC_VERSION" "openai==$OPENAI_VERSION" >&2
echo "$WANT" >"$STAMP"
echo "$PWD/$PY"
