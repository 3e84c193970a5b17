#!/usr/bin/env bash
# Measures the daemon (release build) against the stand-in Drone, on
# 127.0.0.1:
#  1. delay from a stage appearing in the queue to the metric being visible
#     at the Prometheus endpoint, with POLL_INTERVAL=1s (SAMPLES samples);
#  2. CPU time and memory of a daemon left running for MEASURE_SECONDS
#     (default 300) at POLL_INTERVAL=15s and at 1s, each scraped every 15 s,
#     from /proc/PID/stat and /proc/PID/status.
# Usage: ./scripts/measure-daemon.sh   (SAMPLES=40 MEASURE_SECONDS=300 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

SAMPLES=${SAMPLES:-40}
MEASURE_SECONDS=${MEASURE_SECONDS:-300}
TOKEN=measure-token-0123456789

ensure_tools
step "cargo build --release"
cargo build --release --locked --quiet --bin drone-queue-cloudwatch
target_dir=$(cargo metadata --no-deps --format-version 1 --offline |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
BIN=$target_dir/release/drone-queue-cloudwatch

mkdir -p .tmp/measure
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

# Starts a stand-in Drone serving $1 (a script file); sets DRONE_PORT.
start_drone() {
  local out=.tmp/measure/drone-$RANDOM.out
  python3 tests/standin/drone.py --port 0 --token "$TOKEN" --script "$1" >"$out" &
  PIDS+=($!)
  DRONE_PORT=
  for _ in $(seq 1 100); do
    DRONE_PORT=$(sed -n 's/^LISTENING //p' "$out")
    [ -n "$DRONE_PORT" ] && return 0
    sleep 0.1
  done
  echo "the stand-in Drone did not start" >&2
  exit 1
}

# Starts the daemon polling the stand-in at $1 every $2; sets DAEMON_PID and
# METRICS_URL.
start_daemon() {
  local log=.tmp/measure/daemon-$RANDOM.log
  DRONE_SERVER="http://127.0.0.1:$1" DRONE_TOKEN=$TOKEN POLL_INTERVAL=$2 \
    METRICS_SINKS=prometheus PROMETHEUS_LISTEN=127.0.0.1:0 RUST_LOG=warn,drone_queue_cloudwatch=warn,drone_queue_cloudwatch::daemon=info \
    "$BIN" 2>"$log" >/dev/null &
  DAEMON_PID=$!
  PIDS+=("$DAEMON_PID")
  METRICS_URL=
  for _ in $(seq 1 100); do
    METRICS_URL=$(grep -o 'http://127.0.0.1:[0-9]*/metrics' "$log" | head -1 || true)
    [ -n "$METRICS_URL" ] && return 0
    sleep 0.1
  done
  cat "$log" >&2
  exit 1
}

echo '[{"body": "[]"}]' >.tmp/measure/empty.json
start_drone .tmp/measure/empty.json
LATENCY_DRONE=$DRONE_PORT
start_daemon "$LATENCY_DRONE" 1s

step "1. queue-to-endpoint delay, POLL_INTERVAL=1s, $SAMPLES samples"
python3 - "$LATENCY_DRONE" "$METRICS_URL" "$SAMPLES" <<'PY'
import json, random, statistics, sys, time, urllib.request

drone, metrics, samples = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])

def put_queue(n):
    now = int(time.time())
    stages = [{"id": i + 1, "repo_id": 1, "name": f"s{i}", "status": "pending", "created": now,
               "updated": now, "labels": {"class": "probe"}} for i in range(n)]
    body = json.dumps([{"body": json.dumps(stages)}]).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{drone}/_standin/script", data=body, method="PUT")
    urllib.request.urlopen(req, timeout=5).read()

def shows(n):
    page = urllib.request.urlopen(metrics, timeout=5).read().decode()
    return f'drone_queued_builds{{group="class=probe",class="probe"}} {n}\n' in page

delays = []
for i in range(samples):
    n = i % 7 + 1  # a different count each time
    # Start at a random phase of the poll cadence.
    time.sleep(random.uniform(0.0, 1.0))
    put_queue(n)
    start = time.monotonic()
    while not shows(n):
        if time.monotonic() - start > 10:
            sys.exit(f"sample {i}: the endpoint did not show {n} stages within 10 s")
        time.sleep(0.002)
    delays.append(time.monotonic() - start)

delays.sort()
ms = lambda s: f"{s * 1000:.0f} ms"
print(f"samples {len(delays)}: median {ms(statistics.median(delays))}, "
      f"p90 {ms(delays[int(len(delays) * 0.9) - 1])}, max {ms(delays[-1])}, "
      f"min {ms(delays[0])}, mean {ms(statistics.mean(delays))}")
PY

step "2. CPU and memory over $MEASURE_SECONDS s (two-group queue, scraped every 15 s)"
echo "[{\"fixture\": \"$PWD/tests/fixtures/drone/drone_02_two_groups_standard_gpu.json\"}]" >.tmp/measure/two.json
start_drone .tmp/measure/two.json
start_daemon "$DRONE_PORT" 15s
SLOW_PID=$DAEMON_PID SLOW_URL=$METRICS_URL
start_daemon "$DRONE_PORT" 1s
FAST_PID=$DAEMON_PID FAST_URL=$METRICS_URL
python3 - "$MEASURE_SECONDS" "$SLOW_PID" "$SLOW_URL" "$FAST_PID" "$FAST_URL" <<'PY'
import os, sys, time, urllib.request

seconds = float(sys.argv[1])
daemons = [("POLL_INTERVAL=15s", int(sys.argv[2]), sys.argv[3]),
           ("POLL_INTERVAL=1s", int(sys.argv[4]), sys.argv[5])]
tick = os.sysconf("SC_CLK_TCK")

def cpu(pid):
    # utime and stime: fields 14 and 15, after the parenthesised command name.
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick

def memory(pid):
    status = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status"))
    return {k: int(status[k].split()[0]) for k in ("VmRSS", "VmHWM")}

time.sleep(2)  # past start-up and the first polls
start = {pid: cpu(pid) for _, pid, _ in daemons}
began = time.monotonic()
while time.monotonic() - began < seconds:
    for _, _, url in daemons:
        urllib.request.urlopen(url, timeout=5).read()
    time.sleep(15)
elapsed = time.monotonic() - began
for name, pid, _ in daemons:
    used = cpu(pid) - start[pid]
    mem = memory(pid)
    print(f"{name}: CPU {used:.2f} s in {elapsed:.0f} s ({100 * used / elapsed:.3f} % of a core), "
          f"RSS {mem['VmRSS'] / 1024:.1f} MiB now, peak {mem['VmHWM'] / 1024:.1f} MiB")
PY
