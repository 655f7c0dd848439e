#!/usr/bin/env bash
# Type-checks the reference seat-map page against the API (issue 13):
#   1. gateway/static/api.d.ts is up to date: the gateway's OpenAPI document (written by
#      gateway/tests/openapi_spec.rs when OPENAPI_OUT is set, no service needed) goes
#      through openapi-typescript again and must give the committed file byte for byte;
#   2. `tsc -p gateway/static/tsconfig.json`: app.js (// @ts-check, JSDoc types from
#      api.d.ts) has no type error.
# openapi-typescript and TypeScript are pinned in gateway/static/types/package-lock.json
# and installed there by `npm ci` when node_modules is missing or older than the lock;
# node and npm come from scripts/ensure-browser.sh when missing.
# Usage: scripts/check-frontend-types.sh [--write]. --write regenerates api.d.ts instead
# of comparing. FRONTEND_TYPES_FILE=<file> compares that file instead of api.d.ts.
# Runs both steps even after a failure, prints each finding, ends with
# "check-frontend-types: N passed, N failed" and exits non-zero if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
root=$(pwd)
static=gateway/static
tools=$static/types
committed=${FRONTEND_TYPES_FILE:-$static/api.d.ts}
regenerate="scripts/check-frontend-types.sh --write"

fail_setup() {
  echo "check-frontend-types: $*" >&2
  echo "check-frontend-types: 0 passed, 1 failed"
  exit 1
}

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  scripts/ensure-browser.sh || fail_setup "cannot install node and npm (scripts/ensure-browser.sh)"
fi
stamp=$tools/node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ "$tools/package-lock.json" -nt "$stamp" ]; then
  echo "check-frontend-types: npm ci in $tools" >&2
  (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error >&2) || fail_setup "npm ci in $tools failed"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log=$tmp/log

# The document, as the gateway serves it at /openapi.json.
if ! OPENAPI_OUT="$tmp/openapi.json" cargo test -q -p marquee-gateway --test openapi_spec \
  write_the_document_to_openapi_out -- --exact >"$log" 2>&1 || [ ! -s "$tmp/openapi.json" ]; then
  cat "$log" >&2
  fail_setup "cannot write the OpenAPI document (gateway/tests/openapi_spec.rs)"
fi
if ! "$tools/node_modules/.bin/openapi-typescript" "$tmp/openapi.json" -o "$tmp/api.d.ts" >"$log" 2>&1; then
  cat "$log" >&2
  fail_setup "openapi-typescript failed"
fi

if [ "${1:-}" = "--write" ]; then
  cp "$tmp/api.d.ts" "$static/api.d.ts"
  echo "check-frontend-types: wrote $static/api.d.ts"
fi

passed=0
failed=0
step() { # name command...
  local name=$1
  shift
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    echo "ok   $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name"
    sed 's/^/     /' "$log"
  fi
}

fresh() {
  if [ ! -f "$committed" ]; then
    echo "$committed is missing: generate it with $regenerate"
    return 1
  fi
  if ! diff -u --label "$committed (committed)" --label "generated from the OpenAPI document" \
    "$committed" "$tmp/api.d.ts" | head -n 60; then # (pipefail: diff's status counts)
    echo "$committed is stale: regenerate it with $regenerate (and fix what tsc then reports)"
    return 1
  fi
}
step "$committed matches the OpenAPI document (openapi-typescript)" fresh
step "tsc -p $static/tsconfig.json (app.js against api.d.ts)" \
  "$root/$tools/node_modules/.bin/tsc" -p "$static/tsconfig.json" --pretty false

echo "check-frontend-types: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
