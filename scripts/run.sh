#!/usr/bin/env bash
# Builds and starts the sandbox payment provider (psp-sandbox), pay-svc, booking-svc,
# realtime-svc, search-svc and the gateway against the local PostgreSQL,
# Redis and RabbitMQ (databases and migrations are created by the services). With
# DEMO=1 it also seeds a seller, an event and its seats. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-services.sh
cargo build --bins

mkdir -p .run
# Development mode: without JWT_SECRET the services sign tokens with a built-in, public
# development secret instead of refusing to start.
export MARQUEE_DEV=${MARQUEE_DEV:-1}
export GATEWAY_ADDR=${GATEWAY_ADDR:-127.0.0.1:8080}
gateway_url="http://${GATEWAY_ADDR}"
pids=()
stop() {
  echo "stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait || true
}
trap stop EXIT INT TERM

# The sandbox payment provider stands in for the card PSP pay-svc calls; its key is
# the public sandbox default unless PSP_SECRET_KEY says otherwise.
psp_addr=${PSP_ADDR:-127.0.0.1:50060}
psp_url="http://${psp_addr}"
psp_key=${PSP_SECRET_KEY:-test_sk_marquee}
PSP_ADDR="$psp_addr" PSP_SECRET_KEY="$psp_key" \
  PSP_DATABASE_URL=${PSP_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/marquee_psp} \
  ./target/debug/psp-sandbox >".run/psp-sandbox.log" 2>&1 &
pids+=($!)

for svc in pay-svc booking-svc realtime-svc search-svc gateway; do
  if [ "$svc" = pay-svc ]; then
    PSP_URL="$psp_url" PSP_SECRET_KEY="$psp_key" ./target/debug/$svc >".run/$svc.log" 2>&1 &
  else
    ./target/debug/$svc >".run/$svc.log" 2>&1 &
  fi
  pids+=($!)
done

ready() {
  curl -fsS "$gateway_url/readyz" >/dev/null 2>&1 && curl -fsS "$psp_url/healthz" >/dev/null 2>&1
}
for _ in $(seq 60); do
  if ready; then break; fi
  sleep 0.5
done
if ! ready; then
  echo "marquee did not become ready; logs are in .run/" >&2
  tail -n 20 .run/*.log >&2
  exit 1
fi

if [ "${DEMO:-0}" != 0 ]; then
  scripts/seed-demo.sh "$gateway_url"
fi

echo
echo "Marquee is running: $gateway_url"
echo "  OpenAPI: $gateway_url/openapi.json   logs: .run/*.log   stop: Ctrl-C"
echo "  sandbox PSP: $psp_url (ledger: curl -u $psp_key: $psp_url/v1/ledger)"
wait
