#!/bin/sh
# The `requests` table under a steady load (issue 16): a daemon remembering
# request ids for RETENTION_S seconds (`request_retention_seconds`, a
# development setting), voucher-load's setup, then an open-loop run at RATE
# operations a second for DURATION_S seconds; every SAMPLE_S seconds the
# metrics endpoint's `voucherd_requests_remembered` (what the pruner's last
# sweep kept), `voucherd_requests_pruned_total`, the table's estimated keys
# and SST bytes, and the audit sequence. Under a steady load the remembered
# ids level off near RATE x RETENTION_S (plus at most one sweep's worth).
# Results: bench/results/<time>-requests-plateau.tsv (one row per sample),
# .txt (the run, the plateau against rate x retention) and the load's JSON.
# Usage: bench/requests-plateau.sh [RATE] [DURATION_S] [RETENTION_S]
# (defaults 1,500 ops/s, 180 s, 30 s). Persons: enough for the run (4
# operations each), PERSONS to override. METRICS_PORT (26090) on loopback.
set -eu
cd "$(dirname "$0")/.."
rate="${1:-1500}"
duration_s="${2:-180}"
retention_s="${3:-30}"
persons="${PERSONS:-$(( rate * duration_s / 4 + rate * duration_s / 40 ))}"
metrics_port="${METRICS_PORT:-26090}"
sample_s="${SAMPLE_S:-5}"
. bench/common.sh
base="bench/results/$stamp-requests-plateau"
config="$work/plateau.toml"
printf 'request_retention_seconds = %s\nmetrics = "127.0.0.1:%s"\n' "$retention_s" "$metrics_port" >"$config"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$base.txt"
echo "rate $rate ops/s for $duration_s s, retention $retention_s s, $persons persons, sample every $sample_s s" | tee -a "$base.txt"
DAEMON_ARGS="--config $config"
start_daemon plateau

# metric NAME: the value of an unlabelled sample in the last scrape.
metric() { awk -v name="$1" '$1 == name { print $2 }' "$work/scrape"; }
sampler() {
    t0="$(date +%s.%N)"
    printf 'elapsed_s\tremembered\tpruned_total\ttable_estimated_keys\ttable_sst_bytes\taudit_seq\n' >"$base.tsv"
    while :; do
        if curl -sf "http://127.0.0.1:$metrics_port/metrics" >"$work/scrape"; then
            printf '%.0f\t%s\t%s\t%s\t%s\t%s\n' "$(awk "BEGIN { print $(date +%s.%N) - $t0 }")" \
                "$(metric voucherd_requests_remembered)" "$(metric voucherd_requests_pruned_total)" \
                "$(metric voucherd_requests_table_estimated_keys)" \
                "$(metric voucherd_requests_table_sst_files_bytes)" "$(metric voucherd_audit_sequence)" >>"$base.tsv"
        fi
        sleep "$sample_s"
    done
}
sampler &
sampling=$!
"$bin/voucher-load" --server "$address" --certs "$work/plateau/certs" \
    --persons "$persons" --institutions 200 --connections 8 --batch 8 --rate "$rate" \
    --duration-s "$duration_s" --settle-s 0 --out "$base.json" >"$work/plateau.load.txt"
# Two retentions more with no load: the ids of the run's end are pruned too.
sleep $(( 2 * retention_s + 2 * sample_s ))
kill "$sampling"
kill "$daemon"
wait "$daemon" || true
daemon=""
python3 - "$base.tsv" "$base.json" "$rate" "$retention_s" <<'EOF' | tee -a "$base.txt"
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
report = json.load(open(sys.argv[2]))
rate, retention_s = int(sys.argv[3]), int(sys.argv[4])
print(f"setup {report['setup_s']:.1f} s, then {report['operations']:,} operations in "
      f"{report['peak_s']:.1f} s = {report['operations_per_s']:,.0f} ops/s "
      f"(p99 {report['latency_ms']['p99']:.1f} ms); consistent: {report['consistency']['ok']}")
for row in rows:
    print("  t={elapsed_s:>4} s  remembered {remembered:>9}  pruned {pruned_total:>9}  "
          "estimated keys {table_estimated_keys:>9}  SST {table_sst_bytes:>11} B  audit seq {audit_seq}".format(**row))
expected = report["operations_per_s"] * retention_s
print(f"achieved rate x retention = {expected:,.0f} ids")
EOF
