#!/usr/bin/env bash
# What an idle daemon costs (issue 17): the four simulators, each its own process, seeded
# with the demo world; the daemon (release build) against them with config/demo/. Once it
# has converged and one more minute has passed (Zendesk's held-back minute), measures for
# <secs> seconds (default 300) the daemon's own CPU (the simulators' is not counted) and
# each connector's API requests per minute, from /status.
#
#   scripts/idle.sh          # 5 minutes
#   scripts/idle.sh 60
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-300}"
case "$secs" in
    ''|*[!0-9]*) echo "usage: $0 [seconds]" >&2; exit 2 ;;
esac
cargo build --release --locked --quiet
bin="${CARGO_TARGET_DIR:-$PWD/target}/release/revsync"
work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# A simulator's first line names its base URL; its second, for Salesforce, the token URL.
sim() {
    "$bin" sim "$1" >"$work/$1.log" 2>&1 &
    pids+=("$!")
    for _ in $(seq 1 100); do
        grep -q 'Ctrl-C to stop' "$work/$1.log" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "simulator $1 did not start:" >&2
    cat "$work/$1.log" >&2
    exit 1
}
for s in hubspot salesforce zendesk stripe; do sim "$s"; done
url() { head -1 "$work/$1.log" | grep -o 'http://[^ ]*'; }
export DEMO_HUBSPOT_URL DEMO_SALESFORCE_TOKEN_URL DEMO_ZENDESK_URL DEMO_STRIPE_URL
DEMO_HUBSPOT_URL="$(url hubspot)"
DEMO_ZENDESK_URL="$(url zendesk)"
DEMO_STRIPE_URL="$(url stripe)"
DEMO_SALESFORCE_TOKEN_URL="$(grep -o 'http://[^ ]*/token' "$work/salesforce.log")"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
REVSYNC_SERVER__LISTEN="127.0.0.1:$port" REVSYNC_STORE__PATH="$work/data" \
    "$bin" run --config config/demo --insecure-no-auth >"$work/daemon.log" 2>&1 &
daemon=$!
pids+=("$daemon")
status() { curl -sf "http://127.0.0.1:$port/status"; }

# Converged: every connector idle with nothing queued, twice 5 s apart.
started=$SECONDS
quiet=0
while [ "$quiet" -lt 2 ]; do
    if [ $((SECONDS - started)) -gt 600 ]; then
        echo "no convergence within 600 s" >&2
        tail -20 "$work/daemon.log" >&2
        exit 1
    fi
    sleep 5
    if status | python3 -c '
import json, sys
cs = json.load(sys.stdin)["connectors"]
sys.exit(0 if all(c["state"] == "idle" and c["outbox_depth"] == 0 for c in cs) else 1)
' 2>/dev/null; then quiet=$((quiet + 1)); else quiet=0; fi
done
echo "converged after $((SECONDS - started)) s; waiting 70 s for Zendesk's held-back minute"
sleep 70

ticks() { awk '{print $14 + $15}' "/proc/$daemon/stat"; }
status >"$work/before.json"
t0="$(ticks)"
sleep "$secs"
t1="$(ticks)"
status >"$work/after.json"
hz="$(getconf CLK_TCK)"
python3 - "$work/before.json" "$work/after.json" "$((t1 - t0))" "$hz" "$secs" <<'EOF'
import json, sys
before, after, ticks, hz, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
a = {c["id"]: c for c in json.load(open(before))["connectors"]}
b = {c["id"]: c for c in json.load(open(after))["connectors"]}
cpu = ticks / hz / secs * 100
print(f"idle daemon over {secs} s: CPU {cpu:.2f}% of one core ({ticks} ticks at {hz} Hz)")
for cid in sorted(b):
    req = b[cid]["api_requests"] - a[cid]["api_requests"]
    read = b[cid]["records_in"] - a[cid]["records_in"]
    objects = len(b[cid].get("objects") or [])
    print(f"  {cid:<11} {req * 60 / secs:6.1f} requests/min  records read {read}  objects {objects}")
print(f"summary: secs={secs} cpu_pct={cpu:.2f} " + " ".join(
    f"{cid}_req_per_min={(b[cid]['api_requests'] - a[cid]['api_requests']) * 60 / secs:.1f}" for cid in sorted(b)))
EOF
