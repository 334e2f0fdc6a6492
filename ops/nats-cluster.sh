#!/bin/sh
# A three-node JetStream cluster on loopback for tests and for trying
# replicated mode (docs/replication.md): `start DIR [PORT]` writes one config
# and store per node under DIR (clients on PORT, PORT+1, PORT+2; routes on
# PORT+10..12; default PORT 4222), starts the nodes and waits until JetStream
# has a metadata leader; `stop DIR` stops the nodes it started (their pids
# are in DIR/n*.pid). nats-server is ./.venv's (ops/install-deps.sh) or PATH's.
# NATS_MAX_FILE_STORE (default 1GB, enough for the tests) is each node's
# JetStream file limit: about 0.5 KB a change on the stream, so a 1-million-
# voucher standard scenario needs about 2GB.
set -eu

usage() { echo "usage: $0 start DIR [PORT] | stop DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
command="$1"; dir="$2"; port="${3:-4222}"
top="$(cd "$(dirname "$0")/.." && pwd)"
server="$top/.venv/bin/nats-server"
[ -x "$server" ] || server="$(command -v nats-server || true)"

case "$command" in
start)
    [ -n "$server" ] || { echo "nats-server is missing: run ops/install-deps.sh" >&2; exit 1; }
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    routes="nats-route://127.0.0.1:$((port + 10)), nats-route://127.0.0.1:$((port + 11)), nats-route://127.0.0.1:$((port + 12))"
    for n in 1 2 3; do
        mkdir -p "$dir/n$n"
        cat > "$dir/n$n.conf" <<CONF
server_name: n$n
listen: 127.0.0.1:$((port + n - 1))
jetstream {
  store_dir: "$dir/n$n"
  sync_interval: always
  max_file_store: ${NATS_MAX_FILE_STORE:-1GB}
  max_memory_store: 64MB
}
cluster {
  name: voucherd-test-$port
  listen: 127.0.0.1:$((port + 9 + n))
  routes: [ $routes ]
}
CONF
        "$server" -c "$dir/n$n.conf" >"$dir/n$n.log" 2>&1 &
        echo $! > "$dir/n$n.pid"
    done
    # Bounded wait: 30 s for a JetStream metadata leader.
    tries=0
    until grep -q "JetStream cluster new metadata leader\|Self is new JetStream cluster metadata leader" \
            "$dir"/n1.log "$dir"/n2.log "$dir"/n3.log 2>/dev/null; do
        tries=$((tries + 1))
        if [ "$tries" -gt 300 ]; then
            echo "no JetStream metadata leader after 30 s; logs in $dir" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "nats://127.0.0.1:$port,nats://127.0.0.1:$((port + 1)),nats://127.0.0.1:$((port + 2))"
    ;;
stop)
    for n in 1 2 3; do
        if [ -f "$dir/n$n.pid" ]; then
            kill "$(cat "$dir/n$n.pid")" 2>/dev/null || true
            rm -f "$dir/n$n.pid"
        fi
    done
    ;;
*)
    usage
    ;;
esac
