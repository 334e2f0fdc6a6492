#!/bin/sh
# The JSON encoding beside the binary one: the standard scenario's peak
# (closed loop, frames of BATCH) on fresh daemons, binary and JSON
# alternating ROUNDS times, so the ratio comes from one run on one machine.
# Usage: bench/encodings.sh [persons] [peak_s]   (defaults 60000, 20)
# Results: bench/results/<stamp>-encodings.txt (one line per run).
set -eu
cd "$(dirname "$0")/.."
persons="${1:-60000}"
peak_s="${2:-20}"
connections="${CONNECTIONS:-32}"
batch="${BATCH:-256}"
rounds="${ROUNDS:-2}"
. bench/common.sh

out="bench/results/$stamp-encodings.txt"
echo "persons $persons, peak ${peak_s} s, $connections connections, frames of $batch; $(nproc) cores, $(uname -sr)" | tee "$out"
round=1
while [ "$round" -le "$rounds" ]; do
    for encoding in binary json; do
        name="$encoding-$round"
        start_daemon "$name"
        flag=""
        [ "$encoding" = json ] && flag="--json"
        "$bin/voucher-load" --server "$address" --certs "$work/$name/certs" \
            --persons "$persons" --institutions 2000 --connections "$connections" --batch "$batch" \
            --duration-s "$peak_s" $flag --out "$work/$name.json" >"$work/$name.txt"
        kill "$daemon"; wait "$daemon" || true; daemon=""
        python3 - "$work/$name.json" "$name" <<'PY' | tee -a "$out"
import json, sys
r = json.load(open(sys.argv[1]))
lat = r["latency_ms"]
print(f'{sys.argv[2]:10} {r["operations_per_s"]:9.0f} ops/s  {r["redeems_per_s"]:8.0f} redeems/s  '
      f'p50 {lat.get("p50")} ms  p99 {lat.get("p99")} ms  unexpected {r["unexpected_answers"]}  '
      f'consistent {r["consistency"]["ok"]}')
PY
    done
    round=$((round + 1))
done
