# The two commands of the README: `make run` and `make test`.
.PHONY: run test deps bench

deps:
	@./ops/install-deps.sh

# The daemon on embedded defaults: the 2021 rules on this year's campaign,
# data in ./voucherd-data, development certificates in ./certs (created if missing),
# Prometheus metrics at http://127.0.0.1:9464/metrics.
run: deps
	cargo run --release --bin voucherd -- serve --metrics 127.0.0.1:9464

# Formatting, lints, and every test (unit, integration, doc).
test: deps
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo test --all-targets
