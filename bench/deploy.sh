#!/usr/bin/env bash
# Deploy benchmark: one sandbox deploy and teardown at AWS's pace, through
# the real portal, with the sandbox's phases next to the AWS figures it
# models and the portal's own overhead.
#
# Starts `cloudpulse sandbox` at TIME_SCALE (default 1, AWS's pace: NAT
# gateway pending 90 s, load balancer provisioning 90 s, instance boot 30 s,
# health checks every 30 s, healthy after 2; on teardown NAT deleting 60 s,
# load balancer interfaces lingering 120 s), deploys the default stack (two
# zones, one NAT gateway per zone, two instances) through the REST API and
# tears it down. While it runs it watches the group and its targets through
# the sandbox gateway (with boto3 from the moto virtualenv), so it can tell
# when each instance finished booting and when its target became healthy.
#
# The portal's overhead is the wall time minus the longest chain of waits
# the sandbox models for AWS:
#   deploy:   max(NAT pending + boot + the health checks' own wait,
#              load balancer provisioning)
#   teardown: max(interfaces lingering, NAT deleting, deregistration delay)
# (the health checks' wait, from boot to healthy, is measured: it is AWS's
# check rounds, not the portal). Goal: at most 10 s each. Everything runs on
# 127.0.0.1; the script prints numbers and asserts nothing.
#
#   bench/deploy.sh                    # about 6 minutes
#   TIME_SCALE=0.2 bench/deploy.sh     # the same chain, five times faster
#   SKIP_BUILD=1 bench/deploy.sh
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TIME_SCALE="${TIME_SCALE:-1}"
PORT="${PORT:-38421}"
build_debug

make_work deploy
CLOUDPULSE_LOG="${CLOUDPULSE_LOG:-info}" "$BIN" sandbox --bind "127.0.0.1:$PORT" \
    --database "$WORK/deploy.db" --time-scale "$TIME_SCALE" >"$WORK/portal.log" 2>&1 &
PORTAL_PID=$!

echo "== $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg); time scale $TIME_SCALE"
"$CLOUDPULSE_MOTO_PYTHON" - "http://127.0.0.1:$PORT" "$TIME_SCALE" "$WORK/portal.log" <<'PY'
import datetime, json, re, sys, threading, time

import boto3
from portal_api import Portal, wait

url, scale, log = sys.argv[1], float(sys.argv[2]), sys.argv[3]
portal = Portal(url)

# The figures the sandbox models (AWS seconds, docs/sandbox.md) and AWS's
# own, as those tables give them.
MODEL = {"nat": 90, "alb": 90, "boot": 30, "nat_deleting": 60, "linger": 120,
         "interval": 30, "healthy_threshold": 2, "deregistration": 30}
AWS = {"nat": "60-220 s", "alb": "60-300 s", "boot": "25-40 s",
       "healthy": "2 checks 30 s apart", "nat_deleting": "about 60 s",
       "linger": "minutes"}

def gateway():
    with open(log) as f:
        for line in f:
            if "latency gateway is up" in line:
                found = re.search(r"endpoint.{0,16}?(http://127\.0\.0\.1:\d+)", line)
                if found:
                    return found.group(1)
    return None

wait("the portal", portal.up, limit=180)
endpoint = wait("the gateway's address in the log", gateway, limit=30)
# The sandbox enforces IAM: watch as its own service identity, which may
# read everything (SERVICE_KEY in portal/sandbox/src/iam.rs).
aws = dict(endpoint_url=endpoint, region_name="us-east-1",
           aws_access_key_id="AKIACLOUDPULSESBXAWS",
           aws_secret_access_key="cloudpulse-sandbox-aws-secret-not-for-aws")
asg, elb = boto3.client("autoscaling", **aws), boto3.client("elbv2", **aws)

def at(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

# Watch the group: when each instance is InService (booted) and its target
# healthy, on the wall clock.
seen = {"in_service": {}, "healthy": {}}
watching = threading.Event()
def watch():
    while not watching.is_set():
        try:
            for group in asg.describe_auto_scaling_groups()["AutoScalingGroups"]:
                for i in group["Instances"]:
                    if i["LifecycleState"] == "InService":
                        seen["in_service"].setdefault(i["InstanceId"], time.time())
                for arn in group.get("TargetGroupARNs", []):
                    for t in elb.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]:
                        if t["TargetHealth"]["State"] == "healthy":
                            seen["healthy"].setdefault(t["Target"]["Id"], time.time())
        except Exception as error:
            # Said once: a watcher that cannot see leaves its phases blank.
            if not seen.get("error"):
                seen["error"] = str(error)
                print(f"  (the watcher cannot read the group: {error})", flush=True)
        time.sleep(0.5)
watcher = threading.Thread(target=watch, daemon=True)

def steps(job):
    out = {}
    for s in job["steps"]:
        if s.get("started_at") and s.get("finished_at"):
            out[s["key"]] = (at(s["started_at"]), at(s["finished_at"]), s.get("attempts"))
    return out

def span(found, *prefixes):
    keys = [k for k in found if any(k.startswith(p) for p in prefixes)]
    if not keys:
        return None
    return min(found[k][0] for k in keys), max(found[k][1] for k in keys)

watcher.start()
started = time.time()
accepted = portal.call("POST", "/api/v1/deployments", {"name": "deploy-bench"})
deployment, job = accepted["deployment"]["id"], accepted["job"]["id"]
done = wait("the deploy", lambda: portal.finished(job), limit=1800)
deploy_wall = time.time() - started
watching.set()
watcher.join()
if done["status"] != "done":
    raise SystemExit(f"deploy {done['status']}: {json.dumps(done)[:2000]}")
found = deploy_steps = steps(done)

nat = span(found, "nat_gateway:")
alb = span(found, "load_balancer")
group = span(found, "auto_scaling_group")
healthy_step = span(found, "wait_healthy")
booted = sorted(seen["in_service"].values())
healthy = sorted(seen["healthy"].values())
boot_s = (booted[-1] - group[1]) if booted and group else None
health_s = (healthy[-1] - booted[-1]) if booted and healthy else None

s = lambda x: scale * x
chain_deploy = max(s(MODEL["nat"]) + s(MODEL["boot"]) + (health_s or 0), s(MODEL["alb"]))
print()
print(f"deploy: {deploy_wall:.1f} s wall ({done['status']})")
print(f"  {'phase':34} {'sandbox':>9} {'modelled':>9}  AWS")
def row(name, measured, modelled, aws_text):
    m = "-" if measured is None else f"{measured:.1f} s"
    print(f"  {name:34} {m:>9} {modelled:>9}  {aws_text}")
row("NAT gateways pending (step)", nat and nat[1] - nat[0], f"{s(MODEL['nat']):.0f} s", AWS["nat"])
row("load balancer provisioning (step)", alb and alb[1] - alb[0], f"{s(MODEL['alb']):.0f} s", AWS["alb"])
row("boot (group made -> all InService)", boot_s, f"{s(MODEL['boot']):.0f} s", AWS["boot"])
row("healthy (InService -> all healthy)", health_s,
    f"{s(MODEL['interval']) * (MODEL['healthy_threshold'] - 1):.0f}-{s(MODEL['interval']) * MODEL['healthy_threshold']:.0f} s",
    AWS["healthy"])
row("wait_healthy step", healthy_step and healthy_step[1] - healthy_step[0], "-", "-")
print(f"  longest modelled chain {chain_deploy:.1f} s; portal overhead {deploy_wall - chain_deploy:.1f} s (goal <= 10 s)")

started = time.time()
teardown = portal.call("POST", f"/api/v1/deployments/{deployment}/teardown")["job"]["id"]
done = wait("the teardown", lambda: portal.finished(teardown), limit=1800)
teardown_wall = time.time() - started
found = steps(done)
chain_teardown = max(s(MODEL["linger"]), s(MODEL["nat_deleting"]), s(MODEL["deregistration"]))
print()
print(f"teardown: {teardown_wall:.1f} s wall ({done['status']})")
print(f"  {'phase':34} {'sandbox':>9} {'modelled':>9}  AWS")
nat = span(found, "undo:nat_gateway:")
lb = span(found, "undo:load_balancer")
groups = span(found, "undo:security_groups")
asg_undo = span(found, "undo:auto_scaling_group")
row("NAT gateways deleting (step)", nat and nat[1] - nat[0], f"{s(MODEL['nat_deleting']):.0f} s", AWS["nat_deleting"])
row("group deleted (step)", asg_undo and asg_undo[1] - asg_undo[0], "-", "-")
row("LB deleted -> security groups gone", lb and groups and groups[1] - lb[1],
    f"{s(MODEL['linger']):.0f} s", AWS["linger"])
print(f"  longest modelled chain {chain_teardown:.1f} s; portal overhead {teardown_wall - chain_teardown:.1f} s (goal <= 10 s)")
print()
for name, found in (("deploy", deploy_steps), ("teardown", found)):
    print(f"{name} steps of a second or more (seconds from the job's start, attempts):")
    t0 = min(v[0] for v in found.values()) if found else 0
    for key, (a, b, n) in sorted(found.items(), key=lambda kv: kv[1][0]):
        if b - a >= 1:
            print(f"  {key:28} {a - t0:7.1f} -{b - t0:7.1f}  x{n}")
PY
