#!/usr/bin/env bash
# Remakes docs/dashboard.png: a default search on digits, then optuna-dashboard on loopback
# photographed by headless Chromium (apt-get install chromium).  Usage: bash docs/screenshot.sh [PAGE]
# PAGE is the dashboard path after the study id, e.g. "" (history), "analytics", "trials".
set -euo pipefail
page="${1:-}"
out="$(cd "$(dirname "$0")" && pwd)/dashboard${page:+-$page}.png"
work="$(mktemp -d)"; server=""
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
resnas search --storage sqlite:///resnas.db | tail -n 3
port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
resnas dashboard --storage sqlite:///resnas.db --port "$port" >/dev/null 2>&1 &
server=$!
until curl -sf "http://127.0.0.1:$port/api/studies" >/dev/null; do sleep 0.5; done
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1440,1000 \
  --virtual-time-budget=15000 --screenshot="$out" "http://127.0.0.1:$port/dashboard/studies/1${page:+/$page}"
echo "wrote $out"
