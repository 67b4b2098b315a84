# Sourced by the benchmarks: the tree's root as the working folder, the
# debug build they run, and a work folder with the one portal they start,
# both gone when the script exits (however it exits).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# The scripts' python imports bench/portal_api.py.
export PYTHONPATH="$ROOT/bench${PYTHONPATH:+:$PYTHONPATH}"

# Exits saying so unless $1 is an executable file.
require_executable() {
    [[ -x "$1" ]] || { echo "$1 missing; run without SKIP_BUILD" >&2; exit 1; }
}

# Builds the portal and the instance service (unless SKIP_BUILD=1) and
# checks that the portal (BIN, default the debug build in CARGO_TARGET_DIR)
# and the moto virtualenv (CLOUDPULSE_MOTO_PYTHON) are there.
build_debug() {
    local target="${CARGO_TARGET_DIR:-$ROOT/target}"
    BIN="${CLOUDPULSE_BIN:-$target/debug/cloudpulse}"
    export CLOUDPULSE_MOTO_PYTHON="${CLOUDPULSE_MOTO_PYTHON:-$ROOT/.venv/bin/python}"
    if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
        echo "== building the portal and the instance service"
        cargo build -p cloudpulse-server --bin cloudpulse -p cloudpulse-instance
    fi
    require_executable "$BIN"
    [[ -x "$CLOUDPULSE_MOTO_PYTHON" ]] || { echo "no moto virtualenv; run cargo xtask setup" >&2; exit 1; }
}

# A fresh $WORK named after $1; the portal whose pid is in $PORTAL_PID is
# stopped and $WORK removed on exit.
make_work() {
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/cloudpulse-$1.XXXXXX")"
    PORTAL_PID=""
    trap cleanup EXIT
}

stop_portal() {
    if [[ -n "$PORTAL_PID" ]] && kill -0 "$PORTAL_PID" 2>/dev/null; then
        kill "$PORTAL_PID" 2>/dev/null || true
        wait "$PORTAL_PID" 2>/dev/null || true
    fi
    PORTAL_PID=""
}

cleanup() {
    stop_portal
    rm -rf "$WORK"
}
