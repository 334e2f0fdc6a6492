#!/bin/sh
# The daemon's own expiry (D41) on a large ledger, beside a steady load of
# writes: a daemon on FOLDER (its data/ and certs/, e.g. the 10-million
# ledger `KEEP=1 bench/scale.sh` leaves in its work folder as p2500000)
# started with its clock moved (D42) 10 s past the deadline of the
# campaign the ledger ran, so the daemon expires that year's unfinished
# vouchers in batches from its start while voucher-load sets up and runs
# an open-loop peak of RATE ops/s in the next year's campaign. Then, once
# the daemon logged the expiry done, the same load again (the same rate,
# new persons) for the comparison in the same run.
# Results: bench/results/<time>-expiry-scale.txt (the expiry's log line,
# both loads' latency and the seconds of the first whose p99 passed 20 ms),
# and the two JSON reports.
# Usage: bench/expiry-scale.sh FOLDER [RATE] [DURATION_S]
# (defaults 2,000 ops/s, 120 s). PERSONS: persons per load (default enough
# for the run, 4 operations each).
set -eu
cd "$(dirname "$0")/.."
folder="$(cd "$1" && pwd)"
rate="${2:-2000}"
duration_s="${3:-120}"
persons="${PERSONS:-$(( rate * duration_s / 4 + rate * duration_s / 40 ))}"
. bench/common.sh
base="bench/results/$stamp-expiry-scale"
# The deadline of the campaign the ledger ran: the default campaign's, the
# next 30 November 23:59:59 +08:00 (D40), as `voucherd serve` picked it.
deadline="$(python3 -c '
import datetime as d
tz = d.timezone(d.timedelta(hours=8))
now = d.datetime.now(tz)
end = d.datetime(now.year, 11, 30, 23, 59, 59, tzinfo=tz)
print(int((end if now <= end else end.replace(year=now.year + 1)).timestamp()))')"
VOUCHERD_INJECT_CLOCK_OFFSET_S=$(( deadline + 10 - $(date +%s) ))
export VOUCHERD_INJECT_CLOCK_OFFSET_S
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$base.txt"
echo "ledger $folder, clock moved by $VOUCHERD_INJECT_CLOCK_OFFSET_S s (10 s past the deadline); load $rate ops/s for $duration_s s, $persons persons" | tee -a "$base.txt"
# The next year's campaign: the embedded rules, opening right after the
# ledger's deadline (`opens` written out: a build before D42's fix refused
# to seal a default campaign following another).
python3 - "$deadline" ops/campaigns/2021.toml >"$work/next.toml" <<'EOF'
import datetime as d, re, sys
year = d.datetime.fromtimestamp(int(sys.argv[1]), d.timezone(d.timedelta(hours=8))).year + 1
text = open(sys.argv[2]).read()
text = re.sub(r"(?m)^year = .*$", f"year = {year}", text, count=1)
text = re.sub(r"(?m)^name = .*$", f'name = "{year} campaign, opening after the {year - 1} deadline"\nopens = "{year - 1}-12-01T00:00:00+08:00"', text, count=1)
text = re.sub(r"(?m)^deadline = .*$", f'deadline = "{year}-11-30T23:59:59+08:00"', text, count=1)
print(text, end="")
EOF
DAEMON_ARGS="--campaign $work/next.toml"
ln -s "$folder" "$work/big"
start_daemon big
echo "listening after $start_s s" | tee -a "$base.txt"
load() {
    "$bin/voucher-load" --server "$address" --certs "$work/big/certs" \
        --persons "$persons" --institutions 200 --connections 8 --batch 8 --rate "$rate" \
        --duration-s "$duration_s" --settle-s 0 --seed "$1" --out "$base-$2.json" >"$work/load-$2.txt" 2>&1 \
        || echo "voucher-load ($2) exited $?: see its report" | tee -a "$base.txt"
}
load 11 during
while ! grep -q "vouchers expired after the deadline" "$work/big.log"; do
    kill -0 "$daemon" 2>/dev/null || { cat "$work/big.log" >&2; exit 1; }
    grep -q "expiry stopped" "$work/big.log" && { grep "expiry stopped" "$work/big.log" >&2; exit 1; }
    sleep 1
done
grep "vouchers expired after the deadline" "$work/big.log" | sed 's/.*INFO //' | tee -a "$base.txt"
expired_at="$(date +%s.%N)"
load 12 after
kill "$daemon"
wait "$daemon" || true
daemon=""
python3 - "$base" "$t0" "$expired_at" <<'EOF' | tee -a "$base.txt"
import json, sys
base, t0, expired_at = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
print(f"expiry finished {expired_at - t0:.0f} s after the daemon's spawn")
for name in ("during", "after"):
    try:
        report = json.load(open(f"{base}-{name}.json"))
    except FileNotFoundError:
        print(f"{name}: no report")
        continue
    lat, late = report["latency_ms"], report["departed_late_ms"]
    slow = [s["second"] for s in report["per_second"] if s["latency_ms"] and s["latency_ms"]["p99"] > 20]
    worst = max((s["latency_ms"]["p99"] for s in report["per_second"] if s["latency_ms"]), default=0)
    print(f"{name}: setup {report['setup_s']:.1f} s; {report['operations']:,} operations in {report['peak_s']:.1f} s "
          f"= {report['operations_per_s']:,.0f} ops/s; latency from the due time p50 {lat['p50']:.1f} ms, "
          f"p99 {lat['p99']:.1f}, p99.9 {lat['p99.9']:.1f}, max {lat['max']:.1f}; worst second's p99 {worst:.1f} ms; "
          f"seconds with a p99 over 20 ms: {len(slow)} of {len(report['per_second'])}; "
          f"frames left late p99 {late['p99']:.1f} ms; unexpected answers {report['unexpected_answers']}; "
          f"consistent: {report['consistency']['ok']}")
EOF
