#!/usr/bin/env bash
# Installs the contract tools (proto/ci/requirements.txt: buf, grpcio-tools, grpcio,
# openapi-spec-validator) into .tools/contract-venv from PyPI. Does nothing when they
# are already installed at those versions; reinstalls when the requirements change.
# Needs python3 with venv and pip (installed from Debian's packages when missing).
# Prints the venv's path.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.tools/contract-venv
requirements=proto/ci/requirements.txt
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$requirements" | cut -d' ' -f1)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys' 2>/dev/null \
   && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "$PWD/$venv"
  exit 0
fi
if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "ensure-contract-tools: installing python3-venv from Debian's packages" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
fi

echo "ensure-contract-tools: installing $(grep -cE '^[A-Za-z]' "$requirements") packages into $venv" >&2
rm -rf "$venv"
mkdir -p .tools
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
for tool in buf openapi-spec-validator; do
  [ -x "$venv/bin/$tool" ] || { echo "ensure-contract-tools: $tool is missing from $venv/bin" >&2; exit 1; }
done
"$venv/bin/python" -c 'import grpc, grpc_tools' || { echo "ensure-contract-tools: grpcio-tools did not install" >&2; exit 1; }
echo "$want" >"$stamp"
echo "$PWD/$venv"
