#!/usr/bin/env bash
# Run the README's start command (./app.sh) exactly as a user would, wait until the app answers
# on /_stcore/health and serves its page, then stop it. CI runs this on a fresh checkout first, so
# the runtime install path of scripts/setup.sh (no --dev) is what gets exercised.
#   scripts/check_start.sh [PORT]      (default 8765; install + start may take several minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${1:-8765}
LOG=$(mktemp -t app_start.XXXXXX.log)
setsid ./app.sh --server.port "$PORT" --server.address 127.0.0.1 >"$LOG" 2>&1 &
PID=$!
cleanup() { kill -TERM -- "-$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 900); do
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "check_start: ./app.sh exited before the app served:" >&2; tail -n 40 "$LOG" >&2; exit 1
  fi
  if [[ $(curl -fsS "http://127.0.0.1:$PORT/_stcore/health" 2>/dev/null) == ok ]]; then
    page=$(curl -fsS "http://127.0.0.1:$PORT/")
    if grep -qi "<title>streamlit</title>\|<div id=\"root\">" <<<"$page"; then
      echo "check_start: ./app.sh installed what was missing and serves the app on :$PORT"
      exit 0
    fi
    echo "check_start: /_stcore/health answered but / did not serve the app" >&2; exit 1
  fi
  sleep 1
done
echo "check_start: the app did not answer within 15 minutes:" >&2; tail -n 40 "$LOG" >&2; exit 1
