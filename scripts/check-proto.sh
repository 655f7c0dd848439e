#!/usr/bin/env bash
# Checks the contracts in proto/ with buf (bufbuild's CLI from its PyPI distribution,
# pinned in proto/ci/requirements.txt and installed by scripts/ensure-contract-tools.sh):
#   1. lint: `buf lint` with proto/buf.yaml (STANDARD rules; each exception is
#      justified there);
#   2. breaking: `buf breaking` of the working tree's proto/ against proto/ at the last
#      commit of main, with proto/buf.yaml's rules (WIRE_JSON: wire and proto3 JSON
#      compatibility, plus no removed RPC or service): a removed field, a renamed RPC or
#      enum value... fails. In a checkout whose proto/ changes are not
#      committed yet that is main's HEAD; without a local `main` branch, origin/main;
#      failing both, HEAD (a fresh clone of main then compares main with itself).
#      PROTO_AGAINST=<commit-ish> compares against another commit.
# Usage: scripts/check-proto.sh [CHECKOUT]. CHECKOUT (default: this one) is the git
# checkout whose proto/ is checked; the tools always come from this one's .tools/.
# Needs no network once the tools are installed (no BSR: google/api is vendored,
# google/protobuf is built into buf); buf's cache goes to .tools/buf-cache.
# Runs both steps even after a failure, prints each finding, ends with
# "check-proto: N passed, N failed" and exits non-zero if any step failed.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
checkout=$(cd "${1:-$here}" && pwd) || { echo "check-proto: no such directory: $1" >&2; exit 2; }

if ! venv=$("$here/scripts/ensure-contract-tools.sh"); then
  echo "check-proto: cannot install the tools (scripts/ensure-contract-tools.sh)" >&2
  echo "check-proto: 0 passed, 1 failed"
  exit 1
fi
buf=$venv/bin/buf
export BUF_CACHE_DIR="$here/.tools/buf-cache"
# Git settings from the caller's environment (a hook's GIT_DIR...) must not redirect
# the git calls below or buf's own clone of the repository.
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_COMMON_DIR GIT_OBJECT_DIRECTORY

cd "$checkout" || exit 2
if [ ! -f proto/buf.yaml ]; then
  echo "check-proto: $checkout/proto/buf.yaml is missing" >&2
  echo "check-proto: 0 passed, 1 failed"
  exit 1
fi

passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
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

step "buf lint proto (STANDARD, exceptions in proto/buf.yaml)" "$buf" lint proto

# The commit to compare with, and the repository's git directory (the common one, so
# that a linked worktree works too).
against_name=""
if [ -n "${PROTO_AGAINST:-}" ]; then
  against_name=$PROTO_AGAINST
else
  for candidate in main origin/main HEAD; do
    if git rev-parse --quiet --verify "$candidate^{commit}" >/dev/null 2>&1; then
      against_name=$candidate
      break
    fi
  done
fi
if [ -z "$against_name" ] || ! against=$(git rev-parse --quiet --verify "$against_name^{commit}" 2>/dev/null); then
  failed=$((failed + 1))
  echo "FAIL buf breaking: no commit to compare with (${against_name:-not a git checkout with commits})"
else
  git_dir=$(git rev-parse --path-format=absolute --git-common-dir)
  if ! git cat-file -e "$against:proto" 2>/dev/null; then
    # Nothing to break: proto/ does not exist at that commit.
    passed=$((passed + 1))
    echo "ok   buf breaking proto against $against_name (${against:0:12}): it has no proto/"
  else
    step "buf breaking proto (WIRE_JSON + no removed RPC/service) against $against_name (${against:0:12})" \
      "$buf" breaking proto --against "$git_dir#ref=$against,subdir=proto"
  fi
fi

echo "check-proto: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
