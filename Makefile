# Marquee: `make run` starts the system, `make test` runs every check, `make bench`
# measures every scenario against issue 15's targets. PostgreSQL, Redis and RabbitMQ
# are installed/started by scripts/ensure-services.sh when missing.

.PHONY: run test bench bench-peers services fmt lint k8s chaos fuzz

## Build and start the sandbox payment provider, the services and the gateway; `make run DEMO=1` also seeds demo data.
run:
	DEMO=$(DEMO) scripts/run.sh

## fmt, clippy and every test against the real local services (and, for the seat-map
## page, headless chromium: scripts/ensure-browser.sh installs it when missing).
test: services
	scripts/ensure-browser.sh
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	scripts/check-k8s.sh
	scripts/check-proto.sh
	scripts/check-frontend-types.sh
	cargo test --workspace
	cargo build --bins -p booking-svc -p pay-svc -p psp-sandbox -p marquee-chaos
	target/debug/marquee-chaos --reduced

## Every benchmark scenario (scripts/bench.sh): a bounded flash sale through the gateway
## (BENCH_SEATS, BENCH_BUYERS, BENCH_CONCURRENCY), first a hold storm (buyers only hold,
## BENCH_STORM_SEATS), then the full purchase through the saga; then search, SSE fan-out,
## waiting room and auction. Ends with one table of every scenario, its target and its
## figure (target/bench-results.jsonl); fails if a benchmark failed.
bench: services
	scripts/bench.sh

## Marquee's hold storm and purchase, then pretix's cart holds and orders on loopback
## (../shared/peers/pretix/bench.sh; TOTAL, CONC), side by side with the ratios.
bench-peers: services
	scripts/bench-peers.sh

## The chaos suite at full counts (issue 10): the saga with booking-svc, pay-svc and
## psp-sandbox as processes it kills, RabbitMQ connections closed, Redis flushed,
## triple delivery, the PSP's seed outcomes, a poison message; prints one table.
chaos: services
	cargo build --release --bins -p booking-svc -p pay-svc -p psp-sandbox -p marquee-chaos
	target/release/marquee-chaos

## schemathesis against the running system's /openapi.json (e2e/tests/fuzz.rs) with
## more examples per operation than `make test` (FUZZ_MAX_EXAMPLES, FUZZ_SEED); prints
## its summary figures.
fuzz: services
	FUZZ_MAX_EXAMPLES=$${FUZZ_MAX_EXAMPLES:-200} FUZZ_SEED=$${FUZZ_SEED:-13} \
		cargo test -p marquee-e2e --test fuzz -- --nocapture 2>&1 \
		| tee target/fuzz.log | grep -E '^(== |API Operations|  Selected|  Tested|Failures|  ❌|Warnings|  ⚠|Test cases|  [0-9]+ generated|Seed|=+ .* in [0-9.]+s =+|test result)'; \
		grep -q '^test result: ok' target/fuzz.log

services:
	scripts/ensure-services.sh

## The Kubernetes manifests and the Dockerfile: kustomize builds, schemas, checkov, hadolint.
k8s:
	scripts/check-k8s.sh

fmt:
	cargo fmt --all

lint:
	cargo clippy --workspace --all-targets -- -D warnings
