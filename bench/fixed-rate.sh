#!/bin/sh
# One open-loop run at a fixed rate on a fresh daemon, for comparing builds
# at the same load (e.g. the ladder's half step, without the ladder):
# PERSONS persons set up, SETTLE_S (20) s of settling, then RATE ops/s for
# DURATION_S seconds in frames of BATCH (8) over CONNECTIONS (32). Prints
# voucher-load's summary. Alternate two builds with BIN, e.g.
#   for i in 1 2 3; do BIN=old bench/fixed-rate.sh; BIN=new bench/fixed-rate.sh; done
# Usage: bench/fixed-rate.sh [RATE] [DURATION_S] [PERSONS]
set -eu
cd "$(dirname "$0")/.."
rate="${1:-11642}"
duration_s="${2:-30}"
persons="${3:-150000}"
. bench/common.sh

start_daemon fixed-rate
"$bin/voucher-load" --server "$address" --certs "$work/fixed-rate/certs" \
    --persons "$persons" --institutions 2000 --connections "${CONNECTIONS:-32}" \
    --batch "${BATCH:-8}" --rate "$rate" --duration-s "$duration_s" \
    --settle-s "${SETTLE_S:-20}" >"$work/load.txt"
grep -E "^(peak|latency|frames left|consistency)" "$work/load.txt"
echo "build: $bin; machine: $(nproc) cores, $(uname -sr)"
