#!/usr/bin/env bash
# `make bench`: the benchmark scenarios of e2e/benches one after another, each appending
# its figures to $BENCH_RESULTS (default target/bench-results.jsonl, emptied first), then
# one table of every scenario against issue 15's targets (scripts/bench-report.py).
#
# Usage: scripts/bench.sh [--no-table] [--append] [SCENARIO ...]
#   SCENARIO: hold-storm purchase search sse waiting-room auction (default: all, in
#   this order). hold-storm is flash_sale with BENCH_HOLDS_ONLY=1 and
#   BENCH_SEATS=${BENCH_STORM_SEATS:-40000}; purchase is flash_sale with
#   BENCH_SEATS=${BENCH_SEATS:-20000}, enough for a 30 s window; every other BENCH_* variable reaches the
#   benchmarks as it is (see the top of each e2e/benches/*.rs).
#   --no-table: record only; --append: keep the figures already in the results file
#   (both for scripts/bench-peers.sh, which prints its own tables).
#
# BENCH_RUNS (3): rounds of every scenario, interleaved (all scenarios, then all again);
# the table shows each figure's median with the range. BENCH_SPLIT (1): the system under
# test in its own process pinned to its own cores and the load generator in another
# (e2e/src/split.rs; 0 runs both in one process, as before).
#
# A benchmark that fails (a broken invariant, a crash, a timeout) does not stop the ones
# after it: the table shows what was recorded, names the failed ones, and the script
# exits 1. Ctrl-C stops at once, after printing the table so far.
set -uo pipefail

results="${BENCH_RESULTS:-}"
cd "$(dirname "$0")/.."
root="$PWD"
if [ -z "$results" ]; then
  results="$root/target/bench-results.jsonl"
elif [ "${results#/}" = "$results" ]; then
  results="$OLDPWD/$results"   # relative to where the script was started
fi
export BENCH_RESULTS="$results"
export BENCH_SPLIT="${BENCH_SPLIT:-1}"
runs="${BENCH_RUNS:-3}"
case "$runs" in ''|*[!0-9]*|0) echo "bench.sh: BENCH_RUNS must be a positive number" >&2; exit 2 ;; esac
if [ "$BENCH_SPLIT" != 0 ] && ! command -v taskset >/dev/null; then
  echo "bench.sh: BENCH_SPLIT needs taskset (util-linux)" >&2; exit 2
fi
# The SSE scenario holds both ends of 10,000 connections in one process: raise the
# open-files limit as far as this shell may (as root, past the hard limit too).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

table=1 truncate=1
while [ $# -gt 0 ]; do
  case "$1" in
    --no-table) table=0 ;;
    --append) truncate=0 ;;
    --*) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
  shift
done
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(hold-storm purchase search sse waiting-room auction)

# scenario -> the name its figures carry in the results file
name_of() {
  case "$1" in
    hold-storm) echo "hold storm" ;;
    purchase) echo "purchase" ;;
    search) echo "search" ;;
    sse) echo "SSE" ;;
    waiting-room) echo "waiting room" ;;
    auction) echo "auction" ;;
    *) return 1 ;;
  esac
}
for s in "${scenarios[@]}"; do
  name_of "$s" >/dev/null || { echo "bench.sh: unknown scenario $s" >&2; exit 2; }
done

run() {
  case "$1" in
    hold-storm)
      BENCH_HOLDS_ONLY=1 BENCH_SEATS="${BENCH_STORM_SEATS:-40000}" \
        cargo bench -p marquee-e2e --bench flash_sale ;;
    purchase) BENCH_SEATS="${BENCH_SEATS:-20000}" cargo bench -p marquee-e2e --bench flash_sale ;;
    search) cargo bench -p marquee-e2e --bench search ;;
    sse) cargo bench -p marquee-e2e --bench sse_fanout ;;
    waiting-room) cargo bench -p marquee-e2e --bench waiting_room ;;
    auction) cargo bench -p marquee-e2e --bench auction ;;
  esac
}

mkdir -p "$(dirname "$BENCH_RESULTS")"
if [ "$truncate" = 1 ]; then : >"$BENCH_RESULTS"; fi
interrupted=0
trap 'interrupted=1' INT TERM
expect=() failed=()
for s in "${scenarios[@]}"; do expect+=("$(name_of "$s")"); done
for round in $(seq 1 "$runs"); do
  for s in "${scenarios[@]}"; do
    name="$(name_of "$s")"
    echo "== bench: $s (round $round of $runs) ==" >&2
    run "$s"
    rc=$?
    if [ "$rc" != 0 ]; then
      failed+=("$name=$rc")
      echo "== bench: $s FAILED (exit $rc) ==" >&2
    fi
    if [ "$interrupted" = 1 ]; then
      echo "== bench: interrupted, not running the rest ==" >&2
      break 2
    fi
  done
done

join() { local IFS=,; echo "$*"; }
if [ "$table" = 1 ]; then
  python3 scripts/bench-report.py table --expect "$(join "${expect[@]}")" \
    --failed "$(join "${failed[@]}")" || echo "bench.sh: could not print the table" >&2
fi
[ ${#failed[@]} = 0 ]
