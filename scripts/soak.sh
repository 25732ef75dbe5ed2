#!/usr/bin/env bash
# The soak: the real daemon against the four simulators for <secs> seconds under a steady
# workload and rotating faults (429 storms, 5xx, slow, timed-out, truncated and oversized
# answers) with poison records, then a bounded wait for convergence and the checks
# (tests/e2e/soak.rs). Prints a summary; RSS flatness is asserted for runs of 15 min or more.
#
#   scripts/soak.sh 3600                      # the 1-hour campaign, release build
#   REVSYNC_SOAK_CSV=/tmp/soak.csv scripts/soak.sh 600
#   REVSYNC_SOAK_POISON=strict scripts/soak.sh 600   # also require inbound dead letters
#                                                     # and attempt caps (issue 25)
# Other knobs: REVSYNC_SOAK_SEED (replay), REVSYNC_SOAK_OVERSIZE_BYTES, SOAK_PROFILE=debug.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-${REVSYNC_SOAK_SECS:-600}}"
case "$secs" in
    ''|*[!0-9]*) echo "usage: $0 <seconds>" >&2; exit 2 ;;
esac
profile=(--release)
[ "${SOAK_PROFILE:-release}" = debug ] && profile=()

export REVSYNC_SOAK_SECS="$secs"
exec cargo test "${profile[@]}" --locked --test e2e soak -- --ignored --nocapture --exact soak::soak
