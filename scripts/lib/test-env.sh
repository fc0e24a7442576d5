# Sourced by scripts/test.sh and scripts/check-arm64.sh: the Python test venv and
# the DynamoDB + Secrets Manager emulator. Expects CACHE to be set and the
# repository root as the working directory.

VENV="$CACHE/venv"

# The emulator and the client SDKs, pinned in one file; reinstalled when it changes.
ensure_test_venv() {
  if ! "$VENV/bin/python" -c "import moto, openai, pytest" 2>/dev/null \
     || ! cmp -s tests/python/requirements.txt "$VENV/.requirements"; then
    echo "== installing test dependencies into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
    cp tests/python/requirements.txt "$VENV/.requirements"
  fi
}

# The emulator on a free loopback port, stopped when the calling script exits;
# requests are serialised so that writes are atomic as in DynamoDB (see
# moto_serial.py). Exports what the tests read to reach it.
start_emulator() {
  local port log
  port="$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  log="$(mktemp)"
  "$VENV/bin/python" tests/python/moto_serial.py 127.0.0.1 "$port" >"$log" 2>&1 &
  MOTO_PID=$!
  MOTO_LOG="$log"
  trap 'kill "$MOTO_PID" 2>/dev/null || true; rm -f "$MOTO_LOG"' EXIT
  for _ in $(seq 1 300); do
    if "$VENV/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then
      break
    fi
    if ! kill -0 "$MOTO_PID" 2>/dev/null; then
      echo "moto_server exited:"; cat "$log"; exit 1
    fi
    sleep 0.1
  done
  export CTXGATE_TEST_AWS_ENDPOINT="http://127.0.0.1:$port"
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
  echo "== emulator on $CTXGATE_TEST_AWS_ENDPOINT"
}
