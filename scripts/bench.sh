#!/usr/bin/env bash
# Benchmarks: release binary sizes, chat and mcp function cold starts against a local
# Lambda Runtime API, chat-turn latency, a stateless turn side by side with its mock
# upstream (added latency, CPU per request, one-core throughput, peak RSS, and the floor: the
# same load through a proxy that only forwards), streaming
# (OpenAI, Anthropic and Bedrock upstreams) and federated MCP call latency through the
# local server. Prints tables.
#
#   scripts/bench.sh           the full run (release builds; several minutes)
#   scripts/bench.sh --smoke   the side-by-side, streaming and streamed-events tables at
#                              tiny sizes against the debug build: fails when the bench
#                              breaks (a missing tool, a non-200, a crashed server, a
#                              stream cut short), never on speed
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${CTXGATE_CACHE:-$HOME/.cache/ctxgate}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"

SMOKE=0
case "${1:-}" in
  --smoke) SMOKE=1 ;;
  "") ;;
  *) echo "usage: scripts/bench.sh [--smoke]" >&2; exit 2 ;;
esac

# The load generator: oha, whose --latency-correction counts each request of a
# fixed-rate run from when it was due (no coordinated omission). Built from
# crates.io into the cache once, pinned.
OHA_VERSION=1.16.0
OHA="$CACHE/tools/bin/oha"
if ! "$OHA" --version 2>/dev/null | grep -q "$OHA_VERSION"; then
  echo "== installing oha $OHA_VERSION into $CACHE/tools"
  env -u CARGO_TARGET_DIR cargo install --quiet --locked \
    --root "$CACHE/tools" --version "$OHA_VERSION" oha
fi
export CTXGATE_OHA="$OHA"
command -v taskset >/dev/null || { echo "bench: taskset (util-linux) is missing" >&2; exit 1; }

if [ "$SMOKE" = 1 ]; then
  # The debug build the tests use; the bench harness in the dev profile too,
  # so that nothing is compiled twice.
  cargo build --locked -p ctxgate --bin ctxgate
  CTXGATE_RELEASE_DIR="$CARGO_TARGET_DIR/debug" \
    cargo bench --locked --profile dev -p ctxgate-tests --bench gateway -- smoke
  exit 0
fi

# Each function is built on its own, as cargo-lambda builds it, so its
# dependency features (and size) are exactly what ships.
for f in chat models mcp; do
  cargo build --release --locked -p "ctxgate-$f"
done
# The local server in its own profile (Cargo.toml: `server`, the release profile at
# opt-level 3), next to the function binaries in one directory for the bench.
cargo build --profile server --locked -p ctxgate --bin ctxgate
bins="$CARGO_TARGET_DIR/bench-bins"
mkdir -p "$bins"
for f in chat models mcp; do ln -sf "$CARGO_TARGET_DIR/release/ctxgate-$f" "$bins/ctxgate-$f"; done
ln -sf "$CARGO_TARGET_DIR/server/ctxgate" "$bins/ctxgate"
CTXGATE_RELEASE_DIR="$bins" cargo bench --locked -p ctxgate-tests --bench gateway
