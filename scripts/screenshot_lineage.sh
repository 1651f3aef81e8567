#!/usr/bin/env bash
# Start the Dagster UI on loopback against the demo instance, save a screenshot of the global asset
# lineage with headless Chromium (Debian package `chromium`), stop the UI. Usage:
#   scripts/screenshot_lineage.sh [OUT.png]        (after `make demo`)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-artifacts/lineage.png}
PORT=${PORT:-3311}
export DAGSTER_HOME=${DAGSTER_HOME:-$PWD/.dagster_home}
command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
mkdir -p "$(dirname "$OUT")"
# a process started from a non-interactive shell ignores SIGINT/SIGTERM: reset them so it can be stopped
setsid .venv/bin/python -c 'import os, signal, sys
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP): signal.signal(s, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])' "$PWD/.venv/bin/dagster" dev -w workspace.yaml -h 127.0.0.1 -p "$PORT" \
  > .dagster-ui.log 2>&1 &
PID=$!
trap 'kill -INT -- -$PID 2>/dev/null || true; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/server_info" && break; sleep 0.5; done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/server_info" || { echo "UI did not start; see .dagster-ui.log" >&2; exit 1; }
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$(mktemp -d)" --window-size=1600,1000 \
  --virtual-time-budget=20000 --screenshot="$OUT" "http://127.0.0.1:$PORT/asset-groups" 2>/dev/null
echo "lineage screenshot: $OUT ($(stat -c %s "$OUT") bytes)"
