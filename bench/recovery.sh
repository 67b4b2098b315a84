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

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS="${RUNS:-3}"
TIME_SCALE="${TIME_SCALE:-1}"
PORT="${PORT:-38419}"
build_debug

make_work recovery
"$BIN" sandbox --bind "127.0.0.1:$PORT" --database "$WORK/recovery.db" \
    --time-scale "$TIME_SCALE" >"$WORK/portal.log" 2>&1 &
PORTAL_PID=$!

python3 - "http://127.0.0.1:$PORT" "$RUNS" "$TIME_SCALE" <<'PY'
import sys, time

from portal_api import Portal, wait

url, runs, scale = sys.argv[1], int(sys.argv[2]), sys.argv[3]
portal = Portal(url)

wait("the portal", portal.up, limit=120)
started = time.monotonic()
accepted = portal.call("POST", "/api/v1/deployments", {
    "name": "recovery-bench",
    "health_check": {"path": "/health", "interval": 5, "timeout": 4,
                     "healthy_threshold": 2, "unhealthy_threshold": 3},
})
deployment, job = accepted["deployment"]["id"], accepted["job"]["id"]
done = wait("the deploy", lambda: portal.finished(job), limit=600)
if done["status"] != "done":
    raise SystemExit(f"deploy {done['status']}")
print(f"time scale {scale}: deployed in {time.monotonic() - started:.1f} s")
base = f"/api/v1/deployments/{deployment}"

def recoveries():
    return [e["message"] for e in portal.call("GET", f"{base}/events")["events"] if e["kind"] == "recovery"]

def in_service():
    return [i["id"] for i in portal.call("GET", f"{base}/health")["group"]["instances"]
            if i["lifecycle"] == "InService" and i["target_state"] == "healthy"]

results = []
for n, action in enumerate(["terminate"] * runs + ["fail-health"]):
    before = len(recoveries())
    victim = wait("two healthy instances", lambda: (ids := in_service()) and len(ids) >= 2 and ids,
                  limit=600)[0]
    body = None if action == "terminate" else {"seconds": 3600}
    path = f"{base}/instances/{victim}/{action}"
    if action == "terminate":
        portal.call("POST", path, body)
    else:
        # Run Command reaches an instance once its SSM agent has registered
        # (a minute after boot at AWS's pace): ask until it has.
        wait("the victim's SSM agent", lambda: portal.attempt("POST", path, body),
             limit=600, every=1)
    sent = time.monotonic()
    message = wait("the recovery", lambda: (r := recoveries()) and len(r) > before and r[0],
                   limit=600, every=0.2)
    seconds = float(message.split("recovered in ")[1].split(" s")[0])
    results.append((action, seconds))
    print(f"run {n + 1} {action:11} {victim}: portal measured {seconds:5.1f} s "
          f"(script saw {time.monotonic() - sent:5.1f} s)")

terminates = sorted(s for a, s in results if a == "terminate")
print(f"terminate -> desired healthy at time scale {scale}, 5 s checks: "
      f"min {terminates[0]:.1f} s, median {terminates[len(terminates) // 2]:.1f} s, "
      f"max {terminates[-1]:.1f} s over {len(terminates)} runs")
teardown = portal.call("POST", f"{base}/teardown")["job"]["id"]
done = wait("the teardown", lambda: portal.finished(teardown), limit=600)
print(f"teardown {done['status']}")
PY
