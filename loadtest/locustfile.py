"""The waiting-room scenario for Locust, against a running Marquee (`make run`).

The same scenario as `make bench`'s waiting-room benchmark, for teams that load-test
with Locust: each simulated user is one buyer arriving at a flash sale's queue. It
signs up and logs in, joins the queue (`POST /v1/events/{id}/queue`), then follows
its ticket (`GET /v1/queue/{ticketId}`, once a second, as the reference page does
when its live stream is unavailable) until it is admitted, and stops.

At the start of the test one seller signs up, enrolls a TOTP authenticator and logs in
with a code (selling needs two-factor sign-in), creates an event and opens its waiting
room now at `WR_ADMIT_PER_SEC` buyers a second (or set `WR_EVENT_ID` to queue for an
event whose room you opened yourself).

    pip install locust
    RATE_LIMITS=false make run      # sign-ups from one address would hit the limits
    locust -f loadtest/locustfile.py --host http://127.0.0.1:8080 \
        --headless --users 2000 --spawn-rate 200 --run-time 60s

Every user signs up, so `make run`'s argon2 cost bounds the arrival rate Locust can
reach; `make bench` inserts its buyers in bulk instead and reaches far higher rates.
Custom entries in Locust's table: `queue: admitted` (time from join to admission) and
`queue: order` (a failure when a later joiner was given an earlier place than an
earlier one whose answer had already arrived: it must never happen).
"""

import base64
import bisect
import hashlib
import hmac
import os
import struct
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

from locust import HttpUser, between, events, task
from locust.exception import StopUser

PASSWORD = "correct horse battery"
ADMIT_PER_SEC = int(os.environ.get("WR_ADMIT_PER_SEC", "200"))
POLL_SECONDS = 1.0

_event = {"id": os.environ.get("WR_EVENT_ID")}
# The largest ticket number answered so far, and when: a join sent after that moment
# must get a larger number (first come, first served after the opening).
_order_lock = threading.Lock()
_answered_at = []  # when each join was answered, in answer order
_prefix_max = []  # the largest number among the joins answered up to each of those


def _account(client, role, with_email=False):
    email = f"locust-{role.lower()}-{uuid.uuid4().hex}@example.com"
    body = {"email": email, "password": PASSWORD, "displayName": "Locust", "role": role}
    with client.post("/v1/accounts", json=body, name="sign up", catch_response=True) as r:
        if r.status_code != 201:
            r.failure(f"sign-up: {r.status_code} {r.text}")
            raise StopUser()
    with client.post(
        "/v1/sessions",
        json={"email": email, "password": PASSWORD},
        name="log in",
        catch_response=True,
    ) as r:
        if r.status_code != 201:
            r.failure(f"log-in: {r.status_code} {r.text}")
            raise StopUser()
        token = r.json()["accessToken"]
        return (email, token) if with_email else token


def _totp(secret, at):
    """The 6-digit TOTP code (RFC 6238: HMAC-SHA1, 30 s steps) of `secret` (base32) at
    Unix time `at`."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", int(at) // 30), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def _seller(client):
    """A seller that can sell: selling needs a session created with two-factor sign-in,
    so it enrolls a TOTP authenticator, confirms it with the current step's code and
    logs in again with the next step's (each step is accepted once)."""
    email, token = _account(client, "SELLER", with_email=True)
    headers = {"authorization": f"Bearer {token}"}
    with client.post(
        "/v1/me/two-factor", headers=headers, json={}, name="two-factor enrol", catch_response=True
    ) as r:
        if r.status_code != 201:
            r.failure(f"two-factor enrolment: {r.status_code} {r.text}")
            raise StopUser()
        secret = r.json()["secret"]
    now = time.time()
    with client.post(
        "/v1/me/two-factor:confirm",
        headers=headers,
        json={"code": _totp(secret, now)},
        name="two-factor confirm",
        catch_response=True,
    ) as r:
        if r.status_code != 200:
            r.failure(f"two-factor confirmation: {r.status_code} {r.text}")
            raise StopUser()
    with client.post(
        "/v1/sessions",
        json={"email": email, "password": PASSWORD, "code": _totp(secret, now + 30)},
        name="log in with a code",
        catch_response=True,
    ) as r:
        if r.status_code != 201:
            r.failure(f"log-in with a code: {r.status_code} {r.text}")
            raise StopUser()
        return r.json()["accessToken"]


@events.test_start.add_listener
def create_event(environment, **_kwargs):
    """One seller, one event on sale now, its waiting room open now."""
    if _event["id"]:
        return
    from locust.clients import HttpSession

    client = HttpSession(
        base_url=environment.host, request_event=environment.events.request, user=None
    )
    seller = _seller(client)
    headers = {"authorization": f"Bearer {seller}"}
    starts = (datetime.now(timezone.utc) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = [
        {
            "label": chr(ord("A") + r),
            "seats": [{"number": str(n + 1), "x": n * 10.0, "y": r * 10.0} for n in range(20)],
        }
        for r in range(10)
    ]
    event = client.post(
        "/v1/events",
        headers=headers,
        name="create event",
        json={
            "title": "Locust Flash Sale",
            "category": "CONCERT",
            "venue": "Loopback Hall",
            "startsAt": starts,
            "sections": [
                {"name": "R", "price": {"amountMinor": "10000", "currency": "KRW"}, "rows": rows}
            ],
        },
    ).json()
    _event["id"] = event["eventId"]
    client.put(
        f"/v1/events/{_event['id']}/waiting-room",
        headers=headers,
        name="open waiting room",
        json={"waitingRoom": {"admitPerSecond": ADMIT_PER_SEC, "admissionSeconds": 600}},
    )


class Buyer(HttpUser):
    """One arrival: join the queue, wait for admission, stop."""

    wait_time = between(0, 0)

    def on_start(self):
        self.token = _account(self.client, "BUYER")
        self.headers = {"authorization": f"Bearer {self.token}"}

    @task
    def queue_until_admitted(self):
        event_id = _event["id"]
        sent = time.monotonic()
        with self.client.post(
            f"/v1/events/{event_id}/queue",
            headers=self.headers,
            json={},
            name="join queue",
            catch_response=True,
        ) as r:
            if r.status_code != 201:
                r.failure(f"{r.status_code} {r.text}")
                raise StopUser()
            ticket = r.json()
        answered = time.monotonic()
        number = int(ticket.get("number", "0"))
        with _order_lock:
            before = bisect.bisect_left(_answered_at, sent)
            earlier = _prefix_max[before - 1] if before else 0
            _answered_at.append(answered)
            _prefix_max.append(max(number, _prefix_max[-1] if _prefix_max else 0))
        if number and earlier >= number:
            events.request.fire(
                request_type="check",
                name="queue: order",
                response_time=0,
                response_length=0,
                exception=AssertionError(f"ticket {number} after {earlier}"),
            )
        joined = time.monotonic()
        while ticket.get("state") != "ADMITTED":
            if ticket.get("state") in ("EXPIRED", "USED"):
                raise StopUser()
            time.sleep(POLL_SECONDS)
            r = self.client.get(
                f"/v1/queue/{ticket['ticketId']}", headers=self.headers, name="ticket"
            )
            if r.status_code != 200:
                continue
            ticket = r.json()
        events.request.fire(
            request_type="queue",
            name="queue: admitted",
            response_time=(time.monotonic() - joined) * 1000,
            response_length=0,
            exception=None if ticket.get("admissionToken") else AssertionError("no token"),
        )
        raise StopUser()
