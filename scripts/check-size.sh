#!/usr/bin/env bash
# The size budget of the shipping build: every Lambda function binary, built with the
# release profile (fat LTO, stripped), at most 10,000,000 bytes on x86_64 (issue 19:
# "10 MB", read as decimal megabytes). Prints a table; fails when one is over.
#
# Not part of scripts/test.sh: seven fat-LTO links take about half an hour on two
# cores. tests/tests/lambda_binaries.rs applies the same budget when it is run on
# these binaries (CTXGATE_LAMBDA_PROFILE=release scripts/test.sh, or cargo-lambda's
# output).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${CTXGATE_CACHE:-$HOME/.cache/ctxgate}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
BUDGET=10000000

# One cargo run: the function crates select the same library features, so each
# binary is what cargo-lambda builds for it alone.
FUNCTIONS=()
for dir in functions/*/; do
  FUNCTIONS+=(-p "ctxgate-$(basename "$dir")")
done
cargo build --release --locked "${FUNCTIONS[@]}"

over=0
echo "| function | stripped size (B) |"
echo "|---|---|"
for dir in functions/*/; do
  bin="$CARGO_TARGET_DIR/release/ctxgate-$(basename "$dir")"
  size=$(stat -c %s "$bin")
  echo "| $(basename "$dir") | $size |"
  if [ "$size" -gt "$BUDGET" ]; then over=1; fi
done
if [ "$over" = 1 ]; then
  echo "over the budget of $BUDGET bytes" >&2
  exit 1
fi
