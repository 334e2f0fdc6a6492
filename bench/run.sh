#!/bin/sh
# The standard scenario: the engine limit, then a daemon on a fresh data folder
# driven by voucher-load (PERSONS persons × 4 vouchers, PEAK_S seconds of peak),
# with the engine limit re-measured in the same run for the ratio.
# Results: bench/results/<date>.json and .txt. Usage: bench/run.sh [PERSONS] [PEAK_S]
set -eu
cd "$(dirname "$0")/.."
persons="${1:-250000}"      # 250,000 persons × 4 = 1 million vouchers
peak_s="${2:-60}"
connections="${CONNECTIONS:-32}"
batch="${BATCH:-256}"
./ops/install-deps.sh
cargo build --release --bins
work="$(mktemp -d)"
trap 'kill "$daemon" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p bench/results
stamp="$(date -u +%Y-%m-%dT%H%M%SZ)"
./target/release/voucherd serve --listen 127.0.0.1:0 --data "$work/data" --certs "$work/certs" \
    >"$work/daemon.out" 2>"$work/daemon.log" &
daemon=$!
while ! grep -q "listening on" "$work/daemon.out"; do sleep 0.2; done
address="$(sed -n 's/^voucherd: listening on //p' "$work/daemon.out")"
./target/release/voucher-load --server "$address" --certs "$work/certs" \
    --persons "$persons" --institutions 2000 --connections "$connections" --batch "$batch" \
    --duration-s "$peak_s" --engine-limit-dir "$work/limit" \
    --out "bench/results/$stamp.json" | tee "bench/results/$stamp.txt"
{
    echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr)"
    echo "daemon resident memory after the run: $(ps -o rss= -p "$daemon") KiB"
} | tee -a "bench/results/$stamp.txt"
