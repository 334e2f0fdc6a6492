#!/bin/sh
# Scaling: the same closed-loop peak on a small and a large ledger, with the
# daemon's memory per voucher and its restart time on the large one.
# For each size (persons; each gets 4 vouchers), on a fresh daemon:
#  1. voucher-load: setup, then a PEAK_S-second closed-loop peak (JSON report);
#  2. the daemon's resident memory at start and after the run;
#  3. kill -9 at once after the peak, restart: seconds until it listens
#     (recovery after a crash, re-applying the audit records after the last
#     state checkpoint), then until its events index is built (D66);
#  4. SIGTERM, restart on the same data: seconds until it listens, and its
#     resident memory once the events index is built (the indexes alone,
#     without the run's transients).
# Results: bench/results/<time>-scale.txt (one block per size, then the
# throughput ratio large/small) and the two JSON reports.
# Usage: bench/scale.sh [SMALL_PERSONS] [LARGE_PERSONS]
# (defaults 25,000 and 2,500,000: 100 thousand and 10 million vouchers).
set -eu
cd "$(dirname "$0")/.."
small="${1:-25000}"
large="${2:-2500000}"
peak_s="${PEAK_S:-3}"
connections="${CONNECTIONS:-32}"
batch="${BATCH:-256}"
. bench/common.sh
results="bench/results/$stamp-scale.txt"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); peak ${peak_s} s, $connections connections, batch $batch" | tee "$results"

rss_kib() { ps -o rss= -p "$daemon" | tr -d ' '; }

# wait_events_index NAME: waits until the daemon started last logs its events
# index built (D66: on a thread of its own after a large start); sets
# $index_s, seconds from that spawn ($t0 of start_daemon).
wait_events_index() {
    while [ "$(grep -c 'events index built' "$work/$1.log")" -lt "$(grep -c 'ledger recovered' "$work/$1.log")" ]; do
        kill -0 "$daemon" 2>/dev/null || { cat "$work/$1.log" >&2; exit 1; }
        sleep 0.1
    done
    index_s="$(awk "BEGIN { print $(date +%s.%N) - $t0 }")"
}

# run PERSONS: the whole measurement for one size; appends to $results.
run() {
    name="p$1"
    vouchers=$(( $1 * 4 ))
    start_daemon "$name"
    rss_start="$(rss_kib)"
    "$bin/voucher-load" --server "$address" --certs "$work/$name/certs" \
        --persons "$1" --institutions 2000 --connections "$connections" --batch "$batch" \
        --duration-s "$peak_s" --settle-s "${SETTLE_S:-30}" --out "bench/results/$stamp-scale-$vouchers.json" \
        >"$work/$name.load.txt"
    rss_run="$(rss_kib)"
    kill -9 "$daemon"
    wait "$daemon" 2>/dev/null || true
    start_daemon "$name"
    crash_restart_s="$start_s"
    wait_events_index "$name"
    crash_index_s="$index_s"
    tail_line="$(grep 're-applied' "$work/$name.log" | tail -1 | sed 's/.*INFO //')"
    kill "$daemon"
    wait "$daemon" || true
    start_daemon "$name"
    restart_s="$start_s"
    wait_events_index "$name"
    rss_restarted="$(rss_kib)"
    kill "$daemon"
    wait "$daemon" || true
    daemon=""
    echo "vouchers $vouchers, after kill -9: ${tail_line:-no audit record to re-apply}" | tee -a "$results"
    python3 - "$vouchers" "$rss_start" "$rss_run" "$rss_restarted" "$restart_s" "$crash_restart_s" \
        "bench/results/$stamp-scale-$vouchers.json" "$crash_index_s" <<'EOF' | tee -a "$results"
import json, sys
vouchers, rss_start, rss_run, rss_restarted = (int(x) for x in sys.argv[1:5])
restart_s, crash_restart_s = float(sys.argv[5]), float(sys.argv[6])
report = json.load(open(sys.argv[7]))
latency = report["latency_ms"]
print(f"vouchers: {vouchers:,}")
print(f"  setup: {report['setup_s']:.1f} s")
print(f"  peak: {report['operations']:,} operations in {report['peak_s']:.2f} s = "
      f"{report['operations_per_s']:,.0f} ops/s, {report['redeems_per_s']:,.0f} redeems/s; "
      f"consistent: {report['consistency']['ok']}")
print(f"  latency per operation, ms: p50 {latency['p50']:.1f}, p99 {latency['p99']:.1f}, max {latency['max']:.1f}")
print(f"  resident memory: {rss_start / 1024:,.0f} MiB at start, {rss_run / 1024:,.0f} MiB after the run, "
      f"{rss_restarted / 1024:,.0f} MiB after a restart = {rss_restarted * 1024 / vouchers:,.0f} bytes per voucher")
print(f"  restart to listening: {restart_s:.1f} s after SIGTERM, {crash_restart_s:.1f} s after kill -9; "
      f"events index built {float(sys.argv[8]):.1f} s after the spawn (kill -9 restart)")
print(f"  redeems_per_s={report['redeems_per_s']:.0f}")
EOF
}

run "$small"
run "$large"
python3 - "$results" <<'EOF' | tee -a "$results"
import re, sys
rates = [float(x) for x in re.findall(r"redeems_per_s=(\d+)", open(sys.argv[1]).read())]
print(f"redeems per second, large / small: {rates[1] / rates[0]:.2f}")
EOF
