#!/usr/bin/env bash
# Runs the whole test suite: Rust unit and integration tests against a local
# DynamoDB + Secrets Manager emulator (moto), then the official OpenAI Python
# SDK against the local server. Installs what is missing on first run.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${CTXGATE_CACHE:-$HOME/.cache/ctxgate}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
VENV="$CACHE/venv"
mkdir -p "$CACHE"

# Python side: the emulator and the client SDKs, pinned in one file.
if ! "$VENV/bin/python" -c "import moto, openai, pytest" 2>/dev/null \
   || ! cmp -s tests/python/requirements.txt "$VENV/.requirements"; then
  echo "== installing test dependencies into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
  cp tests/python/requirements.txt "$VENV/.requirements"
fi

# The deployment template, offline: cfn-lint (with the SAM translator), and SAM's
# own validator when the SAM CLI is installed (it runs the same two tools).
echo "== cfn-lint on infra/template.yaml"
"$VENV/bin/cfn-lint" infra/template.yaml
if command -v sam >/dev/null 2>&1; then
  echo "== sam validate --lint"
  SAM_CLI_TELEMETRY=0 sam validate --lint --region us-east-1 -t infra/template.yaml
fi

# The emulator, on a free loopback port, stopped on exit; requests are
# serialised so that writes are atomic as in DynamoDB (see moto_serial.py).
PORT="$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
MOTO_LOG="$(mktemp)"
"$VENV/bin/python" tests/python/moto_serial.py 127.0.0.1 "$PORT" >"$MOTO_LOG" 2>&1 &
MOTO_PID=$!
trap 'kill "$MOTO_PID" 2>/dev/null || true; rm -f "$MOTO_LOG"' EXIT
for _ in $(seq 1 300); do
  if "$VENV/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/moto-api/')" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$MOTO_PID" 2>/dev/null; then
    echo "moto_server exited:"; cat "$MOTO_LOG"; exit 1
  fi
  sleep 0.1
done
export CTXGATE_TEST_AWS_ENDPOINT="http://127.0.0.1:$PORT"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
echo "== emulator on $CTXGATE_TEST_AWS_ENDPOINT"

# The function binaries for tests/tests/lambda_binaries.rs, built as release is
# minus fat LTO (profile lambda-test in Cargo.toml), in one cargo run: these
# crates select the same library features, so nothing is unified into them.
# CTXGATE_LAMBDA_PROFILE=release tests the shipping build itself (slow: fat LTO).
PROFILE="${CTXGATE_LAMBDA_PROFILE:-lambda-test}"
echo "== function binaries (profile $PROFILE)"
FUNCTIONS=()
for dir in functions/*/; do
  FUNCTIONS+=(-p "ctxgate-$(basename "$dir")")
done
cargo build --locked --profile "$PROFILE" "${FUNCTIONS[@]}"
if [ "$PROFILE" = dev ]; then PROFILE_DIR=debug; else PROFILE_DIR="$PROFILE"; fi
export CTXGATE_LAMBDA_BIN_DIR="$CARGO_TARGET_DIR/$PROFILE_DIR"

echo "== cargo test"
cargo test --workspace --locked

echo "== OpenAI Python SDK against the local server"
cargo build --locked -p ctxgate --bin ctxgate
CTXGATE_BIN="$CARGO_TARGET_DIR/debug/ctxgate" "$VENV/bin/python" -m pytest -q tests/python
