#!/bin/sh
# Measurements on a kept large ledger (FOLDER with data/ and certs/, e.g. the
# p2500000 folder KEEP=1 bench/scale.sh leaves, or one whose setup was stopped):
# start (time to listen, events index, memory), a 3 s peak of a new 25,000-person
# setup on it, kill -9 at once and restart, SIGTERM and restart, then the same
# peak on a fresh 100,000-voucher ledger for the ratio. Usage: bench/large-ledger.sh FOLDER [OUT]
set -u
B="${BIN:-${CARGO_TARGET_DIR:-target}/release}"
F="$1"
OUT="${2:-$(mktemp -d)}"
mkdir -p $OUT
n=0
start() {
    n=$((n+1))
    : > $OUT/out$n
    t0=$(date +%s.%N)
    $B/voucherd serve --listen 127.0.0.1:26010 --data $F/data --certs $F/certs > $OUT/out$n 2> $OUT/log$n &
    pid=$!
    while ! grep -q "listening on" $OUT/out$n; do kill -0 $pid 2>/dev/null || { echo "daemon died"; tail $OUT/log$n; exit 1; }; sleep 0.05; done
    listen_s=$(awk "BEGIN { print $(date +%s.%N) - $t0 }")
    echo "start $n: listening after $listen_s s; rss $(ps -o rss= -p $pid) KiB"
    grep -h "re-applied\|ledger recovered" $OUT/log$n | sed 's/.*INFO //'
}
wait_index() {
    while ! grep -q "events index built" $OUT/log$n; do kill -0 $pid 2>/dev/null || exit 1; sleep 0.2; done
    echo "start $n: events index built $(awk "BEGIN { print $(date +%s.%N) - $t0 }") s after spawn; rss $(ps -o rss= -p $pid) KiB"
    grep -h "events index built" $OUT/log$n | sed 's/.*INFO //'
}
start
wait_index
$B/voucher-load --server 127.0.0.1:26010 --certs $F/certs --persons 25000 --institutions 2000 --connections 32 --batch 256 --duration-s 3 --settle-s 30 --seed 7 --out $OUT/peak-large.json > $OUT/peak-large.txt 2>&1
echo "peak on the large ledger: $(grep -h 'peak (' $OUT/peak-large.txt)"
echo "rss after the run $(ps -o rss= -p $pid) KiB"
kill -9 $pid; wait $pid 2>/dev/null
start
wait_index
kill $pid; wait $pid
start
wait_index
kill $pid; wait $pid
# The same peak on a fresh ledger of 100,000 vouchers, right after, for the ratio.
S=$OUT/small; rm -rf $S; mkdir -p $S
$B/voucherd certs --out $S/certs > /dev/null
$B/voucherd serve --listen 127.0.0.1:26011 --data $S/data --certs $S/certs > $S/out 2> $S/log &
spid=$!
while ! grep -q "listening on" $S/out; do sleep 0.05; done
$B/voucher-load --server 127.0.0.1:26011 --certs $S/certs --persons 25000 --institutions 2000 --connections 32 --batch 256 --duration-s 3 --settle-s 30 --seed 7 --out $OUT/peak-small.json > $OUT/peak-small.txt 2>&1
echo "peak on a fresh 100,000: $(grep -h 'peak (' $OUT/peak-small.txt)"
kill $spid; wait $spid
echo "done $(date)"
