# The two commands of the README: `make run` and `make test`.
# `make soak` is the second tier: long soaks, ladders, crash trials.
.PHONY: run test soak deps bench

deps:
	@./ops/install-deps.sh

# The daemon on embedded defaults: the 2021 rules on this year's campaign,
# data in ./voucherd-data, development certificates in ./certs (created if missing),
# Prometheus metrics at http://127.0.0.1:9464/metrics.
run: deps
	cargo run --release --bin voucherd -- serve --metrics 127.0.0.1:9464

# Formatting, lints, and every fast test (unit, integration, doc): deterministic,
# fixed seeds (a failure prints the seed that replays it). What CI runs.
test: deps
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo build --workspace --all-targets
	cargo test --workspace --all-targets

# The second tier: the hostile soak, load ladders, crash trials and long model
# runs (each test marked `#[ignore = "soak: ..."]`). Run before resolving an
# issue that touches them.
soak:
	@./ops/install-deps.sh --soak
	cargo build --workspace --all-targets
	cargo test --workspace --test suite -- --ignored --test-threads 1
	VOUCHERD_SEED=time VOUCHERD_CRASH_TRIALS=20 VOUCHERD_SEEDS=16 VOUCHERD_OPERATIONS=30000 \
		cargo test --workspace --test suite -- crash_trials:: model:: replay:: --test-threads 1
	VOUCHERD_SEED=time VOUCHERD_ROUNDS=300 cargo test --workspace --test suite -- races::
