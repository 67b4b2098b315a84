#!/usr/bin/env bash
# Recovery benchmark: how long the sandbox stack takes to heal.
#
# Starts the sandbox portal at AWS's pace (TIME_SCALE, default 1), deploys a
# stack whose target group checks every 5 s (timeout 4 s, healthy after 2,
# unhealthy after 3, as the infrastructure reference sets the thresholds),
# then, RUNS times (default 3), terminates one instance through the REST API
# and waits for the portal's own "recovered in" event on the timeline: the
# time from the terminate until the group has its desired number of healthy
# targets again, none of them the one that went. One fail-health run follows
# (health checks answer 503 until the instance is replaced), then a teardown.
# Everything runs on 127.0.0.1; the script prints numbers and asserts nothing.
#
#   bench/recovery.sh                     # ~3 minutes
#   RUNS=5 TIME_SCALE=0.5 bench/recovery.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

RUNS="${RUNS:-3}"
TIME_SCALE="${TIME_SCALE:-1}"
PORT="${PORT:-38419}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${CLOUDPULSE_BIN:-$TARGET/debug/cloudpulse}"
export CLOUDPULSE_MOTO_PYTHON="${CLOUDPULSE_MOTO_PYTHON:-$ROOT/.venv/bin/python}"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    echo "== building the portal and the instance service"
    cargo build -p cloudpulse-server --bin cloudpulse -p cloudpulse-instance
fi
[[ -x "$BIN" ]] || { echo "$BIN missing; run without SKIP_BUILD" >&2; exit 1; }
[[ -x "$CLOUDPULSE_MOTO_PYTHON" ]] || { echo "no moto virtualenv; run cargo xtask setup" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cloudpulse-recovery.XXXXXX")"
"$BIN" sandbox --bind "127.0.0.1:$PORT" --database "$WORK/recovery.db" \
    --time-scale "$TIME_SCALE" >"$WORK/portal.log" 2>&1 &
PORTAL_PID=$!
cleanup() {
    kill "$PORTAL_PID" 2>/dev/null || true
    wait "$PORTAL_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

python3 - "http://127.0.0.1:$PORT" "$RUNS" "$TIME_SCALE" <<'PY'
import json, sys, time, urllib.error, urllib.request

url, runs, scale = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        raise SystemExit(f"{method} {path}: {error.code} {error.read().decode()}")

def wait(what, check, limit=600, every=0.5):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")

def up():
    try:
        return call("GET", "/healthz")
    except Exception:
        return None

wait("the portal", up, limit=120)
started = time.monotonic()
accepted = call("POST", "/api/v1/deployments", {
    "name": "recovery-bench",
    "health_check": {"path": "/health", "interval": 5, "timeout": 4,
                     "healthy_threshold": 2, "unhealthy_threshold": 3},
})
deployment, job = accepted["deployment"]["id"], accepted["job"]["id"]
done = wait("the deploy", lambda: (j := call("GET", f"/api/v1/jobs/{job}"))["status"]
            in ("done", "failed", "cancelled") and j)
if done["status"] != "done":
    raise SystemExit(f"deploy {done['status']}")
print(f"time scale {scale}: deployed in {time.monotonic() - started:.1f} s")
base = f"/api/v1/deployments/{deployment}"

def recoveries():
    return [e["message"] for e in call("GET", f"{base}/events")["events"] if e["kind"] == "recovery"]

def in_service():
    return [i["id"] for i in call("GET", f"{base}/health")["group"]["instances"]
            if i["lifecycle"] == "InService" and i["target_state"] == "healthy"]

results = []
for n, action in enumerate(["terminate"] * runs + ["fail-health"]):
    before = len(recoveries())
    victim = wait("two healthy instances", lambda: (ids := in_service()) and len(ids) >= 2 and ids)[0]
    body = None if action == "terminate" else {"seconds": 3600}
    sent = time.monotonic()
    call("POST", f"{base}/instances/{victim}/{action}", body)
    message = wait("the recovery", lambda: (r := recoveries()) and len(r) > before and r[0], every=0.2)
    seconds = float(message.split("recovered in ")[1].split(" s")[0])
    results.append((action, seconds))
    print(f"run {n + 1} {action:11} {victim}: portal measured {seconds:5.1f} s "
          f"(script saw {time.monotonic() - sent:5.1f} s)")

terminates = sorted(s for a, s in results if a == "terminate")
print(f"terminate -> desired healthy at time scale {scale}, 5 s checks: "
      f"min {terminates[0]:.1f} s, median {terminates[len(terminates) // 2]:.1f} s, "
      f"max {terminates[-1]:.1f} s over {len(terminates)} runs")
teardown = call("POST", f"{base}/teardown")["job"]["id"]
done = wait("the teardown", lambda: (j := call("GET", f"/api/v1/jobs/{teardown}"))["status"]
            in ("done", "failed", "cancelled") and j)
print(f"teardown {done['status']}")
PY
