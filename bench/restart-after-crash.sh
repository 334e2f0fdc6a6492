#!/bin/sh
# Restart time after kill -9 right after a 20 s closed-loop peak (a tail of
# audit records to re-apply), at PERSONS x 4 vouchers (default 250,000: 1
# million). Run from the repository root; prints the seconds to listening.
set -eu
persons="${1:-250000}"
. bench/common.sh
start_daemon crash
"$bin/voucher-load" --server "$address" --certs "$work/crash/certs" \
    --persons "$persons" --institutions 2000 --connections 32 --batch 256 \
    --duration-s 20 --settle-s 0 --out "$work/load.json" | grep -E "redeems/s|operations in|setup" || true
kill -9 "$daemon"; wait "$daemon" 2>/dev/null || true
start_daemon crash
echo "restart after kill -9 right after the peak: ${start_s} s to listening"
grep -h "audit records after" "$work/crash.out" "$work/crash.log" | tail -1 | cut -c1-300 || true
kill -9 "$daemon"; wait "$daemon" 2>/dev/null || true
start_daemon crash
echo "restart after a second kill -9 (idle): ${start_s} s"
kill "$daemon"; wait "$daemon" || true; daemon=""
