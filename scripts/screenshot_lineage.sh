#!/usr/bin/env bash
# Save a screenshot of the global asset lineage of the demo instance (after `make demo`):
#   scripts/screenshot_lineage.sh [OUT.png]          default docs/lineage.png
# Starts the Dagster webserver alone (no daemon: sensors and automation must not launch runs while we
# look) on 127.0.0.1 over the instance's storage, loads the page in headless Chromium (Debian package
# `chromium`), stops the webserver. The webserver gets a throw-away DAGSTER_HOME whose dagster.yaml
# points at the demo instance's storage and turns off the first-visit "Join the Dagster community"
# modal (`nux: enabled: false`, an instance setting), so nothing is written into the demo home.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-docs/lineage.png}
PORT=${PORT:-3311}
# the upstream lineage of the served model = the whole graph, every asset expanded (the global page collapses groups)
PAGE=${PAGE:-/assets/promoted_student?view=lineage&lineageScope=upstream&lineageDepth=12}
SRC_HOME=$(realpath "${SRC_DAGSTER_HOME:-${DAGSTER_HOME:-$PWD/.dagster_home}}")
[ -d "$SRC_HOME/history" ] || { echo "no Dagster instance at $SRC_HOME: run \`make demo\` first" >&2; exit 1; }
command -v chromium >/dev/null || { echo "needs Chromium: apt-get install chromium" >&2; exit 1; }
mkdir -p "$(dirname "$OUT")"
TMP=$(mktemp -d)
cat > "$TMP/dagster.yaml" <<YAML
telemetry: {enabled: false}
nux: {enabled: false}
storage:
  sqlite: {base_dir: "$SRC_HOME"}
local_artifact_storage:
  module: dagster._core.storage.root
  class: LocalArtifactStorage
  config: {base_dir: "$SRC_HOME"}
compute_logs:
  module: dagster._core.storage.local_compute_log_manager
  class: LocalComputeLogManager
  config: {base_dir: "$SRC_HOME/storage"}
YAML
# a process started from a non-interactive shell ignores SIGINT/SIGTERM: reset them so it can be stopped
DAGSTER_HOME=$TMP setsid .venv/bin/python -c 'import os, signal, sys
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP): signal.signal(s, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])' "$PWD/.venv/bin/dagster-webserver" -w workspace.yaml -h 127.0.0.1 -p "$PORT" \
  > .dagster-ui.log 2>&1 &
PID=$!
trap 'kill -TERM -- -$PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$TMP"' EXIT
for _ in $(seq 1 240); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/server_info" && break; sleep 0.5; done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/server_info" || { echo "UI did not start; see .dagster-ui.log" >&2; exit 1; }
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$TMP/chromium" --window-size=1600,1000 --force-device-scale-factor=2 \
  --virtual-time-budget=25000 --screenshot="$OUT" "http://127.0.0.1:$PORT$PAGE" 2>/dev/null
echo "lineage screenshot: $OUT ($(stat -c %s "$OUT") bytes)"
