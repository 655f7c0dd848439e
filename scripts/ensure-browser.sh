#!/usr/bin/env bash
# Makes sure the real-browser test (e2e/tests/browser.rs) can run on this machine:
# Debian's chromium at /usr/bin/chromium, a CJK font (fonts-noto-cjk: without one Hangul
# renders as empty boxes, and the test checks it does not), node and npm, and
# playwright-core installed from e2e/tests/browser/package-lock.json (no browser
# download). Idempotent: installs only what is missing.
set -euo pipefail

log() { echo "ensure-browser: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

cd "$(dirname "$0")/.."
dir=e2e/tests/browser

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
# Any font fontconfig knows for Korean will do; else Debian's Noto CJK (KR, JP, SC, TC).
[ -n "$(fc-list :lang=ko family 2>/dev/null)" ] || missing+=(fonts-noto-cjk)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# npm ci when node_modules is missing or older than the lock file it came from.
stamp=$dir/node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ "$dir/package-lock.json" -nt "$stamp" ]; then
  log "npm ci in $dir"
  (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
log "chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}'), Korean font $(fc-match -f '%{family[0]}' :lang=ko 2>/dev/null), node $(node --version), playwright-core ready"
