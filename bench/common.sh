# Sourced by bench/run.sh and bench/scale.sh (from the repository root):
# builds the release binaries, makes a work folder removed at exit (killing a
# daemon left running), the results folder and a UTC time stamp, and defines
# start_daemon.
# ROCKSDB_BUNDLED=1 measures the build with RocksDB compiled from source by
# the rocksdb crate (8.1.1, NDEBUG, Snappy, linked statically) instead of
# Debian's shared library, in its own target folder (target/bundled unless
# CARGO_TARGET_DIR is set). Its first build compiles RocksDB: about 26 minutes
# on 2 cores. See docs/performance.md.
# BIN=DIR measures binaries built beforehand (voucherd, voucher-load in DIR),
# e.g. a copy kept apart so a long run is not rebuilt under its feet; no build.
if [ -n "${BIN:-}" ]; then
    bin="$BIN"
elif [ "${ROCKSDB_BUNDLED:-0}" = 1 ]; then
    ./ops/install-deps.sh
    export ROCKSDB_COMPILE=1
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/bundled}"
    cargo build --release --workspace --bins --features rocksdb/snappy
    bin="${CARGO_TARGET_DIR:-target}/release"
else
    ./ops/install-deps.sh
    cargo build --release --workspace --bins
    bin="${CARGO_TARGET_DIR:-target}/release"
fi
# Write back what the build left dirty before measuring: a kernel flush of
# build artefacts during a run makes synced writes wait behind it.
sync
work="$(mktemp -d)"
daemon=""
# At exit: kills a daemon left running and removes the work folder, unless
# KEEP=1 (data folders with RocksDB's LOG, daemon logs): then prints its path.
cleanup() {
    if [ -n "$daemon" ]; then kill -9 "$daemon" 2>/dev/null || true; fi
    if [ "${KEEP:-0}" = 1 ]; then echo "work folder kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
mkdir -p bench/results
stamp="$(date -u +%Y-%m-%dT%H%M%SZ)"

# wait_line FILE PATTERN SKIP LOG: waits until FILE has a line matching
# PATTERN after its first SKIP lines (those of earlier starts); exits with
# LOG printed if the daemon ends first.
wait_line() {
    while ! tail -n +"$(($3 + 1))" "$1" | grep -q "$2"; do
        kill -0 "$daemon" 2>/dev/null || { cat "$4" >&2; exit 1; }
        sleep 0.05
    done
}

# start_daemon NAME: a daemon on $work/NAME (a new folder, or the one a
# previous start used), with $DAEMON_ARGS added to `serve`'s flags, on
# $LISTEN (default 127.0.0.1:0, a free port); sets $daemon, $address and
# $start_s (seconds from spawn until it listens; in replicated mode, until
# it leads).
start_daemon() {
    : >"$work/$1.out"
    touch "$work/$1.log"
    # `serve --certs DIR` makes no certificates of its own: make them once.
    [ -f "$work/$1/certs/ca.pem" ] || "$bin/voucherd" certs --out "$work/$1/certs" >/dev/null
    logged="$(wc -l <"$work/$1.log")"
    t0="$(date +%s.%N)"
    "$bin/voucherd" serve --listen "${LISTEN:-127.0.0.1:0}" --data "$work/$1/data" \
        --certs "$work/$1/certs" ${DAEMON_ARGS:-} >>"$work/$1.out" 2>>"$work/$1.log" &
    daemon=$!
    wait_line "$work/$1.out" "listening on" 0 "$work/$1.log"
    # Replicated mode (`DAEMON_ARGS=--replicate URLS`): a daemon listens as
    # a standby first and answers `not_leader` until it takes the lease.
    case " ${DAEMON_ARGS:-} " in
    *" --replicate "*) wait_line "$work/$1.log" "leading: serving writes" "$logged" "$work/$1.log" ;;
    esac
    start_s="$(awk "BEGIN { print $(date +%s.%N) - $t0 }")"
    address="$(sed -n 's/^voucherd: listening on //p' "$work/$1.out" | tail -1)"
}
