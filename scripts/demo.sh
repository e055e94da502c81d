#!/usr/bin/env bash
# The main job: launch an event with the event-launch workflow on the embedded runtime.
#
#   bash scripts/demo.sh            # parallel announcements, a flaky step retried, completed
#   bash scripts/demo.sh rollback   # the same launch failing after the announcements,
#                                   # rolled back by its compensations
#
# It builds `eventflow`, starts examples/event_site.py (a small real HTTP server standing in
# for the event website and the community chat webhook) on a free port of 127.0.0.1, runs
# the workflow on the example input pointed at it, and stops the site. Data goes to
# .eventflow/ (EVENTFLOW_DATA_DIR to change); emails land in .eventflow/outbox/.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  "") example=examples/event-launch.input.json ;;
  rollback) example=examples/event-launch.rollback.input.json ;;
  *) echo "usage: bash scripts/demo.sh [rollback]" >&2; exit 2 ;;
esac

cache="${EVENTFLOW_CACHE:-$HOME/.cache/eventflow}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
cargo build --release --locked -q -p eventflow-cli
bin="$CARGO_TARGET_DIR/release/eventflow"

work=$(mktemp -d)
site_log="$work/site.log"
python3 examples/event_site.py >"$work/port" 2>"$site_log" &
site=$!
trap 'kill "$site" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do [ -s "$work/port" ] && break; sleep 0.1; done
port=$(head -n1 "$work/port")

python3 - "$example" "$port" >"$work/input.json" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
base = "http://127.0.0.1:%s" % sys.argv[2]
data["site"]["api_url"] = base + "/api"
data["announce"]["webhook_url"] = base + "/hooks/community-chat"
print(json.dumps(data))
PY

status=0
"$bin" run workflows/event-launch.json --input "$work/input.json" || status=$?
echo
echo "what the event site received:"
cat "$site_log"
echo
"$bin" outbox || true
echo
"$bin" metrics event-launch || true
exit "$status"
