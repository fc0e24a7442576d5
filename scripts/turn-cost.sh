#!/usr/bin/env bash
# Instructions per stateless turn of the local server against the mock OpenAI
# upstream (`bench-upstream`, outside valgrind), counted by callgrind over N
# sequential turns on one keep-alive connection after 200 warm-up ones, with
# the access line on (RUST_LOG=info, as deployed) and off (RUST_LOG=warn, as
# the side-by-side bench runs). Counts, not timings: they do not depend on
# the machine's load (docs/benchmarks.md, "CPU in the request path").
#
#   scripts/turn-cost.sh [BINARY] [N]   default: the `server` profile with line
#                                       tables (so that callgrind_annotate can
#                                       name functions), 1000 turns
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${CTXGATE_CACHE:-$HOME/.cache/ctxgate}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
BIN="${1:-}"
N="${2:-1000}"
if [ -z "$BIN" ]; then
  cargo build --locked --profile prof --config 'profile.prof.inherits="server"' \
    --config 'profile.prof.strip="none"' --config 'profile.prof.debug="line-tables-only"' \
    -p ctxgate --bin ctxgate
  BIN="$CARGO_TARGET_DIR/prof/ctxgate"
fi
cargo build --locked -p ctxgate-tests --bin bench-upstream
UPSTREAM="$CARGO_TARGET_DIR/debug/bench-upstream"
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
OHA="$CACHE/tools/bin/oha"
[ -x "$OHA" ] || { echo "turn-cost: run scripts/bench.sh once first (it installs oha)" >&2; exit 1; }
BODY='{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"benchmark turn: the quick brown fox"}]}'

for LOG in info warn; do
  DIR=$(mktemp -d)
  "$UPSTREAM" 127.0.0.1:0 >"$DIR/upstream.txt" &
  UP=$!
  for _ in $(seq 1 100); do grep -q listening "$DIR/upstream.txt" && break; sleep 0.1; done
  UPADDR=$(awk '/listening on/ {print $3}' "$DIR/upstream.txt")
  PORT=$((20000 + RANDOM % 20000))
  export CTXGATE_STORE=embedded CTXGATE_DATA_DIR="$DIR/data" CTXGATE_LISTEN="127.0.0.1:$PORT" \
    RUST_LOG="$LOG" OPENAI_BASE_URL="http://$UPADDR/v1" OPENAI_API_KEY=sk-bench
  KEY=$("$BIN" keys create --tenant bench --name bench --scope chat | tail -1)
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$DIR/cg.out" \
    "$BIN" serve 2>"$DIR/valgrind.log" >/dev/null &
  PID=$!
  for _ in $(seq 1 300); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && break
    sleep 1
  done
  turns() {
    "$OHA" -n "$1" -c 1 --no-tui -m POST -H "authorization: Bearer $KEY" \
      -H "content-type: application/json" -d "$BODY" \
      "http://127.0.0.1:$PORT/v1/chat/completions" >"$DIR/oha.txt"
    grep -q "Success rate:.*100.00%" "$DIR/oha.txt" || { cat "$DIR/oha.txt"; exit 1; }
  }
  turns 200
  callgrind_control -i on "$PID" >/dev/null 2>&1
  turns "$N"
  callgrind_control -i off "$PID" >/dev/null 2>&1
  kill "$PID" "$UP"
  wait "$PID" "$UP" 2>/dev/null || true
  IR=$(grep -h "^summary:\|^totals:" "$DIR"/cg.out* | awk '{print $2}' | sort -n | tail -1)
  echo "RUST_LOG=$LOG: $N turns, $((IR / N)) instructions per turn (profile: $DIR/cg.out)"
done
