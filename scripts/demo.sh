#!/usr/bin/env bash
# The main job on a bundled example: a stand-in Drone serves
# examples/queue.json, the tool publishes it to a local CloudWatch emulator,
# and the stored metrics are read back and printed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_tools
ensure_venv
step "cargo build"
cargo build --locked --quiet --bin drone-queue-cloudwatch --example read_back
start_emulator

step "stand-in Drone serving examples/queue.json"
# The example's stages were queued long ago; move them to the last few
# minutes, so that OldestQueuedSeconds shows a wait one would see live.
python3 - <<'PY'
import json, time
stages = json.load(open("examples/queue.json"))
shift = int(time.time()) - 300 - max(s["created"] for s in stages)
for s in stages:
    for key in ("created", "updated", "started"):
        if s.get(key):
            s[key] += shift
json.dump(stages, open(".tmp/demo-queue.json", "w"))
json.dump([{"fixture": "demo-queue.json"}], open(".tmp/demo-script.json", "w"))
PY
drone_out=.tmp/demo-drone.out
python3 tests/standin/drone.py --port 0 --token demo-token-0123456789 --script .tmp/demo-script.json >"$drone_out" &
DRONE_PID=$!
trap 'kill $DRONE_PID 2>/dev/null || true; stop_emulator' EXIT
for _ in $(seq 1 100); do
  port=$(sed -n 's/^LISTENING //p' "$drone_out")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "${port:-}" ] || { echo "the stand-in Drone did not start" >&2; exit 1; }

export DRONE_SERVER="http://127.0.0.1:$port" DRONE_TOKEN=demo-token-0123456789
export CLOUDWATCH_METRICS_NAMESPACE="Demo/$(date +%s)"
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=us-east-1
export AWS_ENDPOINT_URL="$EMULATOR_URL" AWS_EC2_METADATA_DISABLED=true

step "drone-queue-cloudwatch --dry-run"
target/debug/drone-queue-cloudwatch --dry-run

step "drone-queue-cloudwatch (publishes to the emulator)"
target/debug/drone-queue-cloudwatch

step "read back from the emulator"
target/debug/examples/read_back "$EMULATOR_URL" "$CLOUDWATCH_METRICS_NAMESPACE"
