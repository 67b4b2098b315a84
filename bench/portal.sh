#!/usr/bin/env bash
# Portal page benchmark: latency and memory of the pages with a large history.
#
# The issue's target: with 10,000 deployments and 100,000 job steps, the
# deployments page and a deployment page at p99 under 50 ms (wrk on 127.0.0.1,
# 8 connections), portal RSS under 100 MB, and the hydrated bundle's wasm at
# most 400 KB gzip. This script prints numbers; it asserts nothing.
#
# For each database size (SIZES, default "0 1000 10000" deployments, ~10 steps
# each; 0 is the empty baseline) it seeds a fresh database with
# `cargo run --example seed`, starts the release portal on it (cloud pointed at
# a closed port, so nothing leaves the machine), and runs
# `wrk -t2 -c8 -d${DURATION} --latency` against:
#   /                          the deployments page (first page of 25)
#   /?status=live&page=40      a filtered page deep in the list
#   /api/v1/deployments/ID     one deployment as JSON (steps, jobs, resources)
#   /deployments/ID            the deployment page (skipped while it is 404)
# then reads the portal's VmRSS and VmHWM from /proc. wrk sends no
# Accept-Encoding, so responses are uncompressed.
#
#   bench/portal.sh                      # build, then ~3 minutes of runs
#   SIZES="0 10000" DURATION=5s bench/portal.sh
#   SKIP_BUILD=1 bench/portal.sh         # reuse target/release binaries
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SIZES="${SIZES:-0 1000 10000}"
DURATION="${DURATION:-10s}"
PORT="${PORT:-38417}"
BIN="${CLOUDPULSE_BIN:-$ROOT/target/release/cloudpulse}"
SEED="${CLOUDPULSE_SEED_BIN:-$ROOT/target/release/examples/seed}"
WASM="$ROOT/target/site/pkg/cloudpulse_bg.wasm"

command -v wrk >/dev/null || { echo "wrk is not installed" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is not installed" >&2; exit 1; }

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    echo "== building release binaries"
    cargo build --release -p cloudpulse-server --bin cloudpulse
    cargo build --release -p cloudpulse-engine --example seed
fi
require_executable "$BIN"
require_executable "$SEED"

make_work bench
trap 'exit 130' INT TERM

BASE="http://127.0.0.1:$PORT"

start_portal() { # $1 = database
    if curl -s -o /dev/null --max-time 1 "$BASE/healthz"; then
        echo "something already listens on 127.0.0.1:$PORT; set PORT=..." >&2
        exit 1
    fi
    # A closed port for the cloud: the portal serves without it.
    env -u CLOUDPULSE_TEST_FAULTS -u CLOUDPULSE_DATABASE -u CLOUDPULSE_BIND \
        -u CLOUDPULSE_TOKEN -u CLOUDPULSE_TOKEN_FILE -u CLOUDPULSE_SITE_ROOT \
        AWS_ENDPOINT_URL=http://127.0.0.1:9 \
        AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
        AWS_EC2_METADATA_DISABLED=true CLOUDPULSE_LOG=warn \
        "$BIN" serve --bind "127.0.0.1:$PORT" --database "$1" \
        >"$WORK/portal.log" 2>&1 &
    PORTAL_PID=$!
    for _ in $(seq 1 150); do
        if curl -sf -o /dev/null --max-time 1 "$BASE/healthz"; then
            return 0
        fi
        if ! kill -0 "$PORTAL_PID" 2>/dev/null; then
            echo "the portal exited during start-up:" >&2
            cat "$WORK/portal.log" >&2
            exit 1
        fi
        sleep 0.2
    done
    echo "the portal did not answer /healthz within 30 s" >&2
    cat "$WORK/portal.log" >&2
    exit 1
}

mem() { # VmRSS and VmHWM of the portal, in MB
    awk '/^VmRSS:/ {r=$2} /^VmHWM:/ {h=$2} END {printf "%.1f %.1f\n", r/1024, h/1024}' \
        "/proc/$PORTAL_PID/status"
}

to_ms() { # wrk's "1.23ms", "456.00us" or "1.02s" in milliseconds
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.2f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
        else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.0f", v * 60000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.2f", v * 1000 }
        else printf "?" }'
}

ROWS=()
row() { ROWS+=("$(printf '%-7s %-26s %6s %9s %9s %9s %8s %8s %s' "$@")"); }

bench_url() { # $1 = size label, $2 = label, $3 = path
    local size="$1" label="$2" path="$3" code bytes out p50 p99 rps errors
    read -r code bytes < <(curl -s -o /dev/null -w '%{http_code} %{size_download}\n' \
        --max-time 10 "$BASE$path")
    if [[ "$code" != 200 ]]; then
        if [[ "$code" == 404 && "$path" == /deployments/* ]]; then
            echo "   $path: 404, the deployment page is not there yet; skipped"
        else
            echo "   $path: HTTP $code; skipped"
        fi
        row "$size" "$label" "$code" - - - - - "skipped"
        return 0
    fi
    out="$(wrk -t2 -c8 -d"$DURATION" --latency "$BASE$path")"
    p50="$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")"
    p99="$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")"
    rps="$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")"
    errors="$(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' ' | paste -sd';' - || true)"
    read -r rss hwm < <(mem)
    echo "   $label: p50 ${p50} ms, p99 ${p99} ms, ${rps} req/s, ${bytes} B, RSS ${rss} MB (peak ${hwm}) ${errors}"
    row "$size" "$label" "$bytes" "$p50" "$p99" "$rps" "$rss" "$hwm" "$errors"
}

echo "== $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg); wrk -t2 -c8 -d$DURATION"
for size in $SIZES; do
    db="$WORK/bench-$size.db"
    echo "== $size deployments"
    seed_out="$("$SEED" --database "$db" --deployments "$size")"
    sed 's/^/   /' <<<"$seed_out"
    id="$(sed -n 's/^DEPLOYMENT_ID=\([^ ]*\).*/\1/p' <<<"$seed_out")"
    start_portal "$db"
    read -r rss hwm < <(mem)
    echo "   portal idle: RSS ${rss} MB"
    row "$size" "(idle after start)" - - - - "$rss" "$hwm" ""
    bench_url "$size" "/" "/"
    bench_url "$size" "/?status=live&page=40" "/?status=live&page=40"
    if [[ -n "$id" ]]; then
        bench_url "$size" "/api/v1/deployments/ID" "/api/v1/deployments/$id"
        bench_url "$size" "/deployments/ID" "/deployments/$id"
    else
        row "$size" "/api/v1/deployments/ID" - - - - - - "no deployments"
        row "$size" "/deployments/ID" - - - - - - "no deployments"
    fi
    stop_portal
done

echo
echo "== results (latency in ms, RSS in MB after each run; peak = VmHWM)"
printf '%-7s %-26s %6s %9s %9s %9s %8s %8s %s\n' \
    deploys url bytes p50 p99 req/s rss peak notes
printf '%s\n' "${ROWS[@]}"

echo
if [[ -f "$WASM" ]]; then
    raw=$(stat -c %s "$WASM")
    gz=$(gzip -9 -c "$WASM" | wc -c)
    echo "wasm bundle $WASM: $((raw / 1024)) KB raw, $((gz / 1024)) KB gzip -9 (target: at most 400 KB gzip)"
    echo "  built $(date -r "$WASM" '+%Y-%m-%d %H:%M'); rebuild with cargo xtask build to measure the current code"
else
    echo "wasm bundle: not built; run cargo xtask build"
fi
