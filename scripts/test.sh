#!/usr/bin/env bash
# Runs the whole test suite: Rust unit and integration tests against a local
# DynamoDB + Secrets Manager emulator (moto), then the official OpenAI and
# Anthropic Python SDKs against the local server. Installs what is missing on first run.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${CTXGATE_CACHE:-$HOME/.cache/ctxgate}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
mkdir -p "$CACHE"
# shellcheck source=scripts/lib/test-env.sh
. scripts/lib/test-env.sh

ensure_test_venv
# The Python with the mcp SDK, for the example CRM server the Rust tests start (tests/src/crm.rs).
export CTXGATE_TEST_PYTHON="$VENV/bin/python"

# The deployment template, offline: cfn-lint (with the SAM translator), and SAM's
# own validator when the SAM CLI is installed (it runs the same two tools).
echo "== cfn-lint on infra/template.yaml"
"$VENV/bin/cfn-lint" infra/template.yaml
# Its Lambda Managed Instances variants (chat, or every function, on the capacity provider).
for scope in "" --all; do
  echo "== cfn-lint on the managed-instances variant $scope"
  "$VENV/bin/python" scripts/managed-instances-template.py $scope > infra/template.managed-instances.yaml
  "$VENV/bin/cfn-lint" infra/template.managed-instances.yaml
done
if command -v sam >/dev/null 2>&1; then
  echo "== sam validate --lint"
  SAM_CLI_TELEMETRY=0 sam validate --lint --region us-east-1 -t infra/template.yaml
fi

# The library's module graph: which module uses which, and no import cycle.
echo "== module dependencies"
"$VENV/bin/python" scripts/module-deps.py | tail -n 1

start_emulator

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
# The local server binary for tests/tests/usage_shutdown.rs and mcp_audit_shutdown.rs (SIGTERM mid-load).
cargo build --locked -p ctxgate --bin ctxgate
CTXGATE_BIN="$CARGO_TARGET_DIR/debug/ctxgate" cargo test --workspace --locked

echo "== the official OpenAI (and its Agents SDK), Anthropic and MCP Python SDKs against the local server"
cargo build --locked -p ctxgate --bin ctxgate
CTXGATE_BIN="$CARGO_TARGET_DIR/debug/ctxgate" "$VENV/bin/python" -m pytest -q tests/python

echo "== MCP conformance suite against the local server's /mcp"
CACHE="$CACHE" VENV="$VENV" CTXGATE_BIN="$CARGO_TARGET_DIR/debug/ctxgate" scripts/mcp-conformance.sh

# The benchmark's machinery at tiny sizes (issue 19): fails when the bench breaks
# (its load generator missing, a non-200, a crashed server), never on speed.
echo "== bench smoke"
scripts/bench.sh --smoke
