#!/usr/bin/env bash
# `make bench-peers`: Marquee's hold storm and full purchase (the first two scenarios of
# `make bench`, scripts/bench.sh), then pretix's cart holds and orders on loopback in the
# same invocation (../shared/peers/pretix/bench.sh: a private PostgreSQL, Redis and
# gunicorn, 0 oversold checked), pretix's figures recorded beside Marquee's in
# $BENCH_RESULTS (scenario "pretix"), then the table and Marquee ÷ pretix side by side.
#
# Usage: scripts/bench-peers.sh
#   Marquee's sizes: BENCH_STORM_SEATS, BENCH_SEATS, BENCH_BUYERS, BENCH_CONCURRENCY, ...
#   pretix's: TOTAL (2000 requests per mode), CONC (64), ... (see the peer script's
#   header). A small try: BENCH_STORM_SEATS=2000 BENCH_SEATS=500 BENCH_BUYERS=1000
#   TOTAL=200 CONC=16 scripts/bench-peers.sh
#   PRETIX_BENCH overrides the peer script's path. Its first run installs pretix into a
#   venv in /tmp, which takes a while; later runs reuse it.
# pretix's raw output is kept in target/bench-pretix.log beside the results. Exits 1 if
# any of the three failed (the tables still show what was recorded).
set -uo pipefail

results="${BENCH_RESULTS:-}"
cd "$(dirname "$0")/.."
root="$PWD"
if [ -z "$results" ]; then
  results="$root/target/bench-results.jsonl"
elif [ "${results#/}" = "$results" ]; then
  results="$OLDPWD/$results"
fi
export BENCH_RESULTS="$results"
pretix_bench="${PRETIX_BENCH:-$root/../shared/peers/pretix/bench.sh}"
pretix_log="$(dirname "$BENCH_RESULTS")/bench-pretix.log"

mkdir -p "$(dirname "$BENCH_RESULTS")"
: >"$BENCH_RESULTS"
interrupted=0
trap 'interrupted=1' INT TERM
failed=()

for s in hold-storm purchase; do
  [ "$interrupted" = 0 ] || break
  scripts/bench.sh --no-table --append "$s"
  rc=$?
  if [ "$rc" != 0 ]; then
    case "$s" in hold-storm) failed+=("hold storm=$rc") ;; *) failed+=("$s=$rc") ;; esac
  fi
done

if [ "$interrupted" = 0 ]; then
  if [ -x "$pretix_bench" ] || [ -f "$pretix_bench" ]; then
    echo "== bench: pretix ($pretix_bench) ==" >&2
    # The peer script logs to stderr and prints its figures on stdout: keep those.
    bash "$pretix_bench" | tee "$pretix_log"
    rc=${PIPESTATUS[0]}
    [ "$rc" = 0 ] || failed+=("pretix=$rc")
    python3 scripts/bench-report.py pretix <"$pretix_log" \
      || [ "$rc" != 0 ] || failed+=("pretix=no figures")
  else
    echo "bench-peers.sh: no peer script at $pretix_bench" >&2
    failed+=("pretix=missing")
  fi
fi

join() { local IFS=,; echo "$*"; }
python3 scripts/bench-report.py table --peers --expect "hold storm,purchase,pretix" \
  --failed "$(join "${failed[@]}")" || echo "bench-peers.sh: could not print the tables" >&2
[ ${#failed[@]} = 0 ]
