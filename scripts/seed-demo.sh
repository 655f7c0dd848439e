#!/usr/bin/env bash
# Seeds a demo seller (seller@marquee.demo / marquee-demo-pw), two demo buyers
# (buyer1@marquee.demo, buyer2@marquee.demo, same password) and an event with three
# sections of seats through the REST gateway; the seller enrols two-factor sign-in (its
# TOTP secret is kept in target/demo-seller-totp-secret). Safe to run twice.
set -euo pipefail
url=${1:-http://127.0.0.1:8080}
json_field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }

# The 6-digit TOTP code (RFC 6238: HMAC-SHA1, 30 s steps) of base32 secret $1, $2
# seconds from now.
totp() {
  python3 -c 'import base64, hashlib, hmac, struct, sys, time
s, offset = sys.argv[1], int(sys.argv[2])
key = base64.b32decode(s + "=" * (-len(s) % 8))
d = hmac.new(key, struct.pack(">Q", (int(time.time()) + offset) // 30), hashlib.sha1).digest()
i = d[-1] & 15
print("%06d" % ((struct.unpack(">I", d[i:i + 4])[0] & 0x7FFFFFFF) % 1000000))' "$1" "$2"
}
# Selling needs a session created with two-factor sign-in: the demo seller enrols a TOTP
# authenticator once and keeps its secret here (add it to an authenticator app to log in
# as the seller on the page).
secret_file=${DEMO_SELLER_TOTP_FILE:-target/demo-seller-totp-secret}

curl -s -o /dev/null -X POST "$url/v1/accounts" -H 'content-type: application/json' \
  -d '{"email":"seller@marquee.demo","password":"marquee-demo-pw","displayName":"Demo Seller","role":"SELLER"}'
token=$(curl -s -X POST "$url/v1/sessions" -H 'content-type: application/json' \
  -d '{"email":"seller@marquee.demo","password":"marquee-demo-pw"}' | json_field accessToken)
if [ -n "$token" ]; then
  # Not enrolled yet (the password alone logged in): enrol and confirm.
  secret=$(curl -s -X POST "$url/v1/me/two-factor" -H 'content-type: application/json' \
    -H "authorization: Bearer $token" -d '{}' | json_field secret)
  [ -n "$secret" ] || { echo "demo seller could not enrol two-factor sign-in" >&2; exit 1; }
  confirmed=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$url/v1/me/two-factor:confirm" \
    -H 'content-type: application/json' -H "authorization: Bearer $token" \
    -d "{\"code\":\"$(totp "$secret" 0)\"}")
  [ "$confirmed" = 200 ] || { echo "demo seller could not confirm two-factor sign-in: $confirmed" >&2; exit 1; }
  mkdir -p "$(dirname "$secret_file")"
  (umask 077 && echo "$secret" >"$secret_file")
elif [ -s "$secret_file" ]; then
  secret=$(cat "$secret_file")
else
  echo "demo seller signs in with two-factor and $secret_file is missing" >&2
  exit 1
fi
token=$(curl -s -X POST "$url/v1/sessions" -H 'content-type: application/json' \
  -d "{\"email\":\"seller@marquee.demo\",\"password\":\"marquee-demo-pw\",\"code\":\"$(totp "$secret" 30)\"}" \
  | json_field accessToken)
[ -n "$token" ] || { echo "demo seller could not log in with a two-factor code" >&2; exit 1; }
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
echo "demo seller: seller@marquee.demo / marquee-demo-pw, two-factor secret in $secret_file"
echo "demo event:  $event_id (240 seats)"
echo "demo buyers:  buyer1@marquee.demo, buyer2@marquee.demo / marquee-demo-pw"
echo "seat map:    $url/?event=$event_id  (open it twice, log in as each buyer)"
