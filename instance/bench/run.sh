#!/bin/bash
# Benchmark: cloudpulse-instance against the original Node app, side by side
# on 127.0.0.1, against the same moto and the same IMDSv2 emulator.
#
# Usage: instance/bench/run.sh [ORIGINAL_APP_DIR]
#   ORIGINAL_APP_DIR  the original's app/ folder, built (npm ci && npx tsc),
#                     outside this repository; its code is never committed.
# Env: RUST_BIN (default: the musl release build), DURATION (wrk -d, 5s),
#      CONNECTIONS (wrk -c, 50), PYTHON (moto's interpreter, .venv/bin/python).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
ORIG="${1:-/tmp/orig/app}"
RUST_BIN="${RUST_BIN:-$repo/target/x86_64-unknown-linux-musl/release/cloudpulse-instance}"
PYTHON="${PYTHON:-$repo/.venv/bin/python}"
DURATION="${DURATION:-5s}"
CONNECTIONS="${CONNECTIONS:-50}"
ASG=bench-asg

[ -x "$RUST_BIN" ] || { echo "no binary at $RUST_BIN" >&2; exit 1; }
[ -f "$ORIG/dist/index.js" ] || { echo "original not built at $ORIG" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk not installed" >&2; exit 1; }

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kib() { awk -v f="$2" '$1==f":" {print $2}' "/proc/$1/status"; }

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

work="$(mktemp -d)"
MOTO_PORT="$(free_port)"
IMDS_PORT="$(free_port)"
"$PYTHON" -m moto.server -H 127.0.0.1 -p "$MOTO_PORT" >"$work/moto.log" 2>&1 &
pids+=($!)
"$PYTHON" "$here/imds.py" "$IMDS_PORT" &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$MOTO_PORT/moto-api/" >/dev/null 2>&1 && break
  sleep 0.2
done

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT"
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
"$PYTHON" - <<PY
import boto3
asg = boto3.client("autoscaling", endpoint_url="$AWS_ENDPOINT_URL", region_name="us-east-1")
asg.create_launch_configuration(LaunchConfigurationName="bench-lc", ImageId="ami-12345678", InstanceType="t3.micro")
asg.create_auto_scaling_group(AutoScalingGroupName="$ASG", LaunchConfigurationName="bench-lc",
    MinSize=1, MaxSize=3, DesiredCapacity=2, AvailabilityZones=["us-east-1a"])
PY

results="$work/results.tsv"
printf 'service\tmetric\tvalue\n' >"$results"

# Starts "$@" with PORT=$port, records start-up time, idle RSS, then wrk per
# endpoint and peak RSS.
measure() {
  local name="$1"; shift
  local port; port="$(free_port)"
  local pid ms
  read -r pid ms < <(PORT="$port" "$PYTHON" "$here/start.py" "$work/$name.log" "$@") ||
    { echo "$name did not start:"; cat "$work/$name.log"; exit 1; }
  [ -n "$pid" ] || { echo "$name did not start:"; cat "$work/$name.log"; exit 1; }
  pids+=("$pid")
  printf '%s\tstartup_ms\t%s\n' "$name" "$ms" >>"$results"
  # Warm up every route once (identity, AWS cache), then let it settle.
  for path in /health /api/status /api/instances /; do
    curl -s -o /dev/null "http://127.0.0.1:$port$path"
  done
  sleep 2
  printf '%s\tidle_rss_mib\t%s\n' "$name" "$(( $(rss_kib "$pid" VmRSS) / 1024 ))" >>"$results"
  for path in /health /api/status /api/instances /; do
    wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$port$path" >"$work/wrk.txt" 2>&1 || true
    local rps p50 p99
    rps="$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")"
    p50="$(awk '$1=="50%" {print $2}' "$work/wrk.txt")"
    p99="$(awk '$1=="99%" {print $2}' "$work/wrk.txt")"
    errors="$(awk '/Non-2xx/ {print $5}' "$work/wrk.txt")"
    printf '%s\t%s rps\t%s\n%s\t%s p50\t%s\n%s\t%s p99\t%s\n%s\t%s non-2xx\t%s\n' \
      "$name" "$path" "$rps" "$name" "$path" "$p50" "$name" "$path" "$p99" "$name" "$path" "${errors:-0}" >>"$results"
  done
  printf '%s\tpeak_rss_mib\t%s\n' "$name" "$(( $(rss_kib "$pid" VmHWM) / 1024 ))" >>"$results"
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
}

measure original env ASG_NAME="$ASG" NODE_ENV=production IMDS_PORT="$IMDS_PORT" \
  LOG_FILE_PATH="$work/orig-log/app.log" \
  node --require "$here/imds-redirect.cjs" "$ORIG/dist/index.js"

measure rust env ASG_NAME="$ASG" HOST=127.0.0.1 CLOUDPULSE_ENV_FILE=/dev/null \
  AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$IMDS_PORT" RUST_LOG=warn \
  "$RUST_BIN"

# One table: metric | original | rust.
"$PYTHON" - "$results" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter="\t"))[1:]
table = {}
for service, metric, value in rows:
    table.setdefault(metric, {})[service] = value
print("| metric | original (Node) | cloudpulse-instance |")
print("|---|---|---|")
for metric, values in table.items():
    print(f"| {metric} | {values.get('original', '')} | {values.get('rust', '')} |")
PY
echo "raw results and logs: $work" >&2
