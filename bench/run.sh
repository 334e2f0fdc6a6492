#!/bin/sh
# The standard scenario, then the maximum sustainable rate, each on a daemon
# with a fresh data folder, with the engine limit re-measured in the same run
# for the ratio.
#  1. voucher-load closed loop: PERSONS persons × 4 vouchers, PEAK_S seconds of
#     peak. Results: bench/results/<time>.json, .txt and .svg (the plot of
#     throughput and latency per second).
#  2. voucher-load --find-max: a ladder of open-loop steps of STEP_S seconds
#     from FIND_MAX_START ops/s (×1.25 each, at most FIND_MAX_STEPS), then a
#     step of HALF_STEP_S seconds (30) at half the maximum (its p99 is issue
#     #4's latency target), on FIND_MAX_PERSONS persons (voucher-load refuses
#     to start when they are too few for every step). Results:
#     bench/results/<time>-find-max.json, .txt and .svg.
# Both wait SETTLE_S seconds (30) between setup and peak, so that RocksDB's
# flushes and compactions of the setup are not part of the peak. Step 1 sends
# frames of BATCH (256) operations; step 2 frames of FIND_MAX_BATCH (8), as
# its p99 is a per-operation latency target.
# Usage: bench/run.sh [PERSONS] [PEAK_S]; STANDARD=0 skips step 1, FIND_MAX=0
# step 2, KEEP=1 keeps the work folder (RocksDB's LOG, daemon logs).
set -eu
cd "$(dirname "$0")/.."
persons="${1:-250000}"      # 250,000 persons × 4 = 1 million vouchers
peak_s="${2:-60}"
connections="${CONNECTIONS:-32}"
batch="${BATCH:-256}"
find_max_batch="${FIND_MAX_BATCH:-8}"   # small frames: the latency target is per operation
settle_s="${SETTLE_S:-30}"
standard="${STANDARD:-1}"
find_max="${FIND_MAX:-1}"
find_max_persons="${FIND_MAX_PERSONS:-1400000}"
find_max_start="${FIND_MAX_START:-2000}"
find_max_steps="${FIND_MAX_STEPS:-20}"
step_s="${STEP_S:-5}"
half_step_s="${HALF_STEP_S:-30}"
. bench/common.sh

# stop_daemon RESULTS: appends the machine and the daemon's memory, then stops it.
stop_daemon() {
    {
        echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr)"
        echo "daemon resident memory after the run: $(ps -o rss= -p "$daemon") KiB"
    } | tee -a "$1"
    kill "$daemon"
    wait "$daemon" || true
    daemon=""
}

if [ "$standard" != 0 ]; then
    start_daemon standard
    "$bin/voucher-load" --server "$address" --certs "$work/standard/certs" \
        --persons "$persons" --institutions 2000 --connections "$connections" --batch "$batch" \
        --duration-s "$peak_s" --settle-s "$settle_s" --engine-limit-dir "$work/limit" \
        --out "bench/results/$stamp.json" --plot "bench/results/$stamp.svg" \
        | tee "bench/results/$stamp.txt"
    stop_daemon "bench/results/$stamp.txt"
fi

if [ "$find_max" != 0 ]; then
    start_daemon find-max
    "$bin/voucher-load" --server "$address" --certs "$work/find-max/certs" \
        --persons "$find_max_persons" --institutions 2000 --connections "$connections" \
        --batch "$find_max_batch" --settle-s "$settle_s" --find-max --find-max-start "$find_max_start" \
        --find-max-steps "$find_max_steps" --step-s "$step_s" \
        --half-step-s "$half_step_s" --engine-limit-dir "$work/limit" \
        --out "bench/results/$stamp-find-max.json" --plot "bench/results/$stamp-find-max.svg" \
        | tee "bench/results/$stamp-find-max.txt"
    stop_daemon "bench/results/$stamp-find-max.txt"
fi
