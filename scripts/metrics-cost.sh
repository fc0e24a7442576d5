#!/usr/bin/env bash
# Instructions per stateless turn of the local server with request metrics on
# (CTXGATE_METRICS=prometheus) and off, counted by callgrind over N sequential
# `echo` turns after 200 warm-up ones (docs/benchmarks.md, "Request metrics").
# Counts, not timings: they do not depend on the machine's load. The second
# figure, the metrics code's own share (inclusive), needs symbols: the debug
# build, not the stripped release profile (which prints 0 there).
#
#   scripts/metrics-cost.sh [BINARY] [N]   default: the release ctxgate, 2000 turns
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${CTXGATE_CACHE:-$HOME/.cache/ctxgate}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
BIN="${1:-}"
N="${2:-2000}"
if [ -z "$BIN" ]; then
  cargo build --locked --release -p ctxgate --bin ctxgate
  BIN="$CARGO_TARGET_DIR/release/ctxgate"
fi
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
OHA="$CACHE/tools/bin/oha"
[ -x "$OHA" ] || { echo "metrics-cost: run scripts/bench.sh once first (it installs oha)" >&2; exit 1; }
BODY='{"model":"echo","messages":[{"role":"user","content":"hello there, how are you today?"}]}'

for MODE in prometheus off; do
  DIR=$(mktemp -d)
  PORT=$((20000 + RANDOM % 20000))
  export CTXGATE_STORE=embedded CTXGATE_DATA_DIR="$DIR/data" CTXGATE_LISTEN="127.0.0.1:$PORT" \
    CTXGATE_METRICS="$MODE" RUST_LOG=warn
  KEY=$("$BIN" keys create --tenant bench --name bench --scope chat | tail -1)
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$DIR/cg.out" \
    "$BIN" serve 2>"$DIR/valgrind.log" &
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
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  IR=$(grep -h "^summary:\|^totals:" "$DIR"/cg.out* | awk '{print $2}' | sort -n | tail -1)
  METRICS=$(callgrind_annotate --inclusive=yes --threshold=100 "$DIR/cg.out" 2>/dev/null \
    | grep -E "Metered::end \[|ctxgate::metrics::answered \[|ctxgate::metrics::Metrics::begin \[" \
    | awk '{gsub(",", "", $1); s += $1} END {print s + 0}')
  echo "CTXGATE_METRICS=$MODE: $N turns, $((IR / N)) instructions per turn, $((METRICS / N)) in the metrics code"
  rm -rf "$DIR"
done
