#!/bin/sh
# Restart time and memory of a kept data folder, two builds alternated:
# ROUNDS times (default 5) each of OLD then NEW, on the same folder: spawn
# `voucherd serve`, seconds and CPU seconds (user + system) until it
# listens, resident memory then and once its events index is built (D66),
# then stop it with STOP (TERM, the default, or KILL: the next start reads
# a folder left by kill -9). Prints one line per start and, at the end,
# each build's median and the ratio NEW / OLD of the medians. The daemon's
# log lines about its start (parts read back, records re-applied) follow
# each start's line.
# Usage: bench/restart-compare.sh FOLDER OLD_BIN_DIR NEW_BIN_DIR
# FOLDER holds data/ and certs/ (e.g. KEEP=1 bench/restart-after-crash.sh's
# crash/); the bin dirs hold a release `voucherd` each.
set -eu
folder="$1"
old="$2"
new="$3"
rounds="${ROUNDS:-5}"
stop="${STOP:-TERM}"
listen="${LISTEN:-127.0.0.1:27180}"
log="$(mktemp)"
out="$(mktemp)"
daemon=""
cleanup() {
    if [ -n "$daemon" ]; then kill -9 "$daemon" 2>/dev/null || true; fi
    rm -f "$log" "$out"
}
trap cleanup EXIT
ticks="$(getconf CLK_TCK)"
results=""

# start BIN_DIR NAME: one start, stop and line of results.
start() {
    : >"$log"
    : >"$out"
    t0="$(date +%s.%N)"
    "$1/voucherd" serve --listen "$listen" --data "$folder/data" --certs "$folder/certs" \
        >"$out" 2>"$log" &
    daemon=$!
    while ! grep -q "listening on" "$out"; do
        kill -0 "$daemon" 2>/dev/null || { cat "$log" >&2; exit 1; }
        sleep 0.02
    done
    listen_s="$(awk "BEGIN { print $(date +%s.%N) - $t0 }")"
    cpu_s="$(awk -v t="$ticks" '{ print ($14 + $15) / t }' "/proc/$daemon/stat")"
    rss_listening="$(ps -o rss= -p "$daemon" | tr -d ' ')"
    while ! grep -q "events index built" "$log"; do
        kill -0 "$daemon" 2>/dev/null || { cat "$log" >&2; exit 1; }
        sleep 0.05
    done
    index_s="$(awk "BEGIN { print $(date +%s.%N) - $t0 }")"
    rss_index="$(ps -o rss= -p "$daemon" | tr -d ' ')"
    kill -"$stop" "$daemon"
    wait "$daemon" 2>/dev/null || true
    daemon=""
    echo "$2 listening_s=$listen_s cpu_s=$cpu_s rss_listening_kib=$rss_listening index_s=$index_s rss_index_kib=$rss_index"
    # The daemon's own account of its start, when it gives one.
    grep -h "state tables read back\|re-applied" "$log" | sed 's/^.*INFO /  /' | cut -c1-220 || true
    results="$results
$2 $listen_s $cpu_s $rss_listening $rss_index"
}

round=0
while [ "$round" -lt "$rounds" ]; do
    start "$old" old
    start "$new" new
    round=$((round + 1))
done
echo "$results" | python3 -c '
import statistics, sys
rows = [line.split() for line in sys.stdin if line.strip()]
median = {}
for build in ("old", "new"):
    mine = [[float(x) for x in row[1:]] for row in rows if row[0] == build]
    median[build] = [statistics.median(column) for column in zip(*mine)]
    listen, cpu, rss_l, rss_i = median[build]
    print(f"{build} median of {len(mine)}: {listen:.2f} s to listening, {cpu:.2f} s CPU, "
          f"{rss_l / 1024:.0f} MiB listening, {rss_i / 1024:.0f} MiB with the events index")
o, n = median["old"], median["new"]
print(f"new / old: {n[0] / o[0]:.2f} (time to listening), {n[1] / o[1]:.2f} (CPU), "
      f"{n[2] / o[2]:.2f} (memory listening), {n[3] / o[3]:.2f} (memory with the events index)")
'
