#!/usr/bin/env bash
# The idle demo (docs/BENCHMARKS.md, "idle demo"): start `revsync demo`, wait for it to
# converge, then measure CPU ticks of the process and sample /status once a minute while
# nothing changes. Prints the CPU share of one core at the end.
#
#   cargo build --release && scripts/idle.sh target/release/revsync /tmp/idle 300
set -euo pipefail
bin="${1:?usage: $0 BIN OUTDIR [idle_secs]}"
out="${2:?usage: $0 BIN OUTDIR [idle_secs]}"
idle="${3:-300}"
mkdir -p "$out"
"$bin" demo >"$out/stdout" 2>"$out/stderr" &
pid=$!
trap 'kill -INT $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
    grep -q '^serving' "$out/stdout" && break
    sleep 1
done
base=$(grep -o 'http://127.0.0.1:[0-9]*' "$out/stdout" | head -1)
sleep 20 # let the last echoes settle
ticks() { awk '{print $14+$15}' "/proc/$pid/stat"; }
c0=$(ticks)
curl -s "$base/status" >"$out/status_0.json"
for m in 1 2 3 4 5; do
    sleep $((idle / 5))
    curl -s "$base/status" >"$out/status_$m.json"
done
c1=$(ticks)
hz=$(getconf CLK_TCK)
awk -v a="$c0" -v b="$c1" -v hz="$hz" -v s="$idle" \
    'BEGIN { printf "idle %ds: %d ticks = %.1f%% of one core\n", s, b - a, 100 * (b - a) / hz / s }' | tee "$out/summary"
