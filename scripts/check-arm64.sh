#!/usr/bin/env bash
# The shipping build, checked end to end without an AWS account:
#   1. `cargo lambda build --release --arm64` builds every function;
#   2. `sam validate --lint` and `sam build` work from infra/template.yaml, and SAM
#      packages exactly those binaries;
#   3. a size table of the stripped arm64 binaries;
#   4. tests/tests/lambda_binaries.rs runs those arm64 binaries under qemu-user
#      against the local Lambda Runtime API and the emulator.
# Not part of CI: fat-LTO arm64 builds take about 10 minutes on two cores.
# Installs what is missing: cargo-lambda and the SAM CLI (pip, pinned in
# infra/deploy-requirements.txt), the aarch64 Rust target, and Debian's
# qemu-user-static and libc6-arm64-cross.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${CTXGATE_CACHE:-$HOME/.cache/ctxgate}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
export SAM_CLI_TELEMETRY=0
mkdir -p "$CACHE"
# shellcheck source=scripts/lib/test-env.sh
. scripts/lib/test-env.sh

TOOLS="$CACHE/deploy-venv"
if ! cmp -s infra/deploy-requirements.txt "$TOOLS/.requirements"; then
  echo "== installing cargo-lambda and the SAM CLI into $TOOLS"
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install --quiet --disable-pip-version-check -r infra/deploy-requirements.txt
  cp infra/deploy-requirements.txt "$TOOLS/.requirements"
fi
export PATH="$TOOLS/bin:$PATH"

if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  rustup target add aarch64-unknown-linux-gnu
fi
SYSROOT=/usr/aarch64-linux-gnu
if ! command -v qemu-aarch64-static >/dev/null || [ ! -e "$SYSROOT/lib/ld-linux-aarch64.so.1" ]; then
  echo "== installing qemu-user-static and libc6-arm64-cross"
  apt-get install -y -qq qemu-user-static libc6-arm64-cross >/dev/null
fi

echo "== cargo lambda build --release --arm64"
cargo lambda build --release --arm64
LAMBDA_DIR="$CARGO_TARGET_DIR/lambda"

echo "== sam validate --lint; sam build"
sam validate --lint --region us-east-1 -t infra/template.yaml
SAM_DIR="$CACHE/sam-build"
sam build --beta-features -t infra/template.yaml --build-dir "$SAM_DIR"

echo "== release binaries (stripped, arm64)"
printf '| function | bytes | MB | packaged by sam build |\n|---|---|---|---|\n'
for dir in functions/*/; do
  name="$(basename "$dir")"
  bin="$LAMBDA_DIR/ctxgate-$name/bootstrap"
  logical="${name^}Function"
  header="$(readelf -h "$bin")" sections="$(readelf -S "$bin")"
  [[ $header == *AArch64* ]] || { echo "$bin: not an arm64 binary"; exit 1; }
  [[ $sections != *.symtab* ]] || { echo "$bin: not stripped"; exit 1; }
  cmp -s "$bin" "$SAM_DIR/$logical/bootstrap" || { echo "$logical: sam build packaged a different binary"; exit 1; }
  bytes="$(stat -c %s "$bin")"
  printf '| %s | %d | %.2f | %s |\n' "$name" "$bytes" "$(awk "BEGIN{print $bytes/1000000}")" "$logical/bootstrap"
done

ensure_test_venv
start_emulator
echo "== the arm64 binaries under the local Lambda Runtime API (qemu-user)"
CTXGATE_LAMBDA_BIN_DIR="$LAMBDA_DIR" \
CTXGATE_LAMBDA_RUNNER="qemu-aarch64-static -L $SYSROOT" \
  cargo test --locked -p ctxgate-tests --test lambda_binaries
