#!/usr/bin/env bash
# Benchmarks: release binary sizes, chat and mcp function cold starts against a local
# Lambda Runtime API, chat-turn, streaming and federated MCP call latency through
# the local server. Prints tables.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ctxgate/target}"

# Each function is built on its own, as cargo-lambda builds it, so its
# dependency features (and size) are exactly what ships.
for f in chat models mcp; do
  cargo build --release --locked -p "ctxgate-$f"
done
cargo build --release --locked -p ctxgate --bin ctxgate
CTXGATE_RELEASE_DIR="$CARGO_TARGET_DIR/release" cargo bench --locked -p ctxgate-tests --bench gateway
