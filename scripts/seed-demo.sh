#!/usr/bin/env bash
# Seeds a demo seller (seller@marquee.demo / marquee-demo-pw), two demo buyers
# (buyer1@marquee.demo, buyer2@marquee.demo, same password) and an event with three
# sections of seats through the REST gateway. Safe to run twice.
set -euo pipefail
url=${1:-http://127.0.0.1:8080}
json_field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }

curl -s -o /dev/null -X POST "$url/v1/accounts" -H 'content-type: application/json' \
  -d '{"email":"seller@marquee.demo","password":"marquee-demo-pw","displayName":"Demo Seller","role":"SELLER"}'
token=$(curl -s -X POST "$url/v1/sessions" -H 'content-type: application/json' \
  -d '{"email":"seller@marquee.demo","password":"marquee-demo-pw"}' | json_field accessToken)
[ -n "$token" ] || { echo "demo seller could not log in" >&2; exit 1; }
for buyer in buyer1 buyer2; do
  curl -s -o /dev/null -X POST "$url/v1/accounts" -H 'content-type: application/json' \
    -d "{\"email\":\"$buyer@marquee.demo\",\"password\":\"marquee-demo-pw\",\"displayName\":\"Demo ${buyer^}\",\"role\":\"BUYER\"}"
done

starts=$(date -u -d '+30 days' +%Y-%m-%dT%H:%M:%SZ)
sections=""
y=0
for spec in "VIP:60000:2" "R:40000:4" "S:20000:6"; do
  IFS=: read -r name price rows <<<"$spec"
  row_json=""
  for r in $(seq 1 "$rows"); do
    label=$(printf "\\x$(printf %x $((64 + r)))")
    seats=""
    for n in $(seq 1 20); do
      seats+="{\"number\":\"$n\",\"x\":$((n * 30)),\"y\":$y},"
    done
    row_json+="{\"label\":\"$label\",\"seats\":[${seats%,}]},"
    y=$((y + 30))
  done
  sections+="{\"name\":\"$name\",\"price\":{\"amountMinor\":\"$price\",\"currency\":\"KRW\"},\"rows\":[${row_json%,}]},"
  y=$((y + 30))
done
event=$(curl -s -X POST "$url/v1/events" -H 'content-type: application/json' -H "authorization: Bearer $token" \
  -d "{\"title\":\"Marquee Demo Night\",\"category\":\"CONCERT\",\"description\":\"A demo concert\",\"venue\":\"Olympic Hall, Seoul\",\"startsAt\":\"$starts\",\"sections\":[${sections%,}]}")
event_id=$(echo "$event" | json_field eventId)
[ -n "$event_id" ] || { echo "demo event was not created: $event" >&2; exit 1; }
echo "demo seller: seller@marquee.demo / marquee-demo-pw"
echo "demo event:  $event_id (240 seats)"
echo "demo buyers:  buyer1@marquee.demo, buyer2@marquee.demo / marquee-demo-pw"
echo "seat map:    $url/?event=$event_id  (open it twice, log in as each buyer)"
