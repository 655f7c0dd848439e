"""A Python gRPC client of Marquee, with stubs generated from proto/ at run time.

Run by e2e/tests/grpc_python.rs (with the interpreter of scripts/ensure-contract-tools.sh's
venv: grpcio and grpcio-tools, nothing else) against booking-svc, pay-svc and realtime-svc
straight over gRPC, no gateway in between:

    BOOKING_ADDR=127.0.0.1:50051 PAY_ADDR=127.0.0.1:50052 REALTIME_ADDR=127.0.0.1:50053 \
        .tools/contract-venv/bin/python e2e/tests/grpc_python/client.py

It discovers the services through gRPC reflection, signs a seller and a buyer up and
logs them in (the token goes in `authorization: Bearer <token>` metadata, as the gateway
forwards it; the seller enrolls a TOTP authenticator and logs in again with a code it
computes with hmac/hashlib, as selling needs), creates an event as the seller, holds a seat, checks out with the wallet,
watches the booking until CONFIRMED and reads the wallet, and checks that a bad request
gets the right status code. Every wait is bounded. Exit 0 on success; 1 with the reason
on stderr otherwise. The last line of stdout is `RESULT {json}` (the buyer's token, the
event, seat and booking ids) for the Rust test to check the purchase over REST.
"""

import base64
import hashlib
import hmac
import importlib
import importlib.resources
import json
import os
import pathlib
import struct
import sys
import tempfile
import time
import uuid

import grpc
from google.protobuf import descriptor_pb2, timestamp_pb2
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[3]
PROTO = ROOT / "proto"
# Each RPC's deadline, and the bounds of the waits made of several RPCs.
RPC_TIMEOUT = 10.0
WALLET_OPEN_TIMEOUT = 10.0
CONFIRM_TIMEOUT = 20.0
PRICE = 30_000
WELCOME_CREDIT = 100_000
PASSWORD = "correct horse battery"

# The part of grpc/reflection/v1/reflection.proto this client uses (names and field
# numbers as in the protocol), compiled with the rest: the services serve reflection v1
# only, and grpcio-reflection's Python client speaks v1alpha (nor is it installed).
REFLECTION_PROTO = """
syntax = "proto3";
package grpc.reflection.v1;
service ServerReflection {
  rpc ServerReflectionInfo(stream ServerReflectionRequest)
      returns (stream ServerReflectionResponse);
}
message ServerReflectionRequest {
  string host = 1;
  oneof message_request {
    string file_by_filename = 3;
    string file_containing_symbol = 4;
    string list_services = 7;
  }
}
message ServerReflectionResponse {
  string valid_host = 1;
  ServerReflectionRequest original_request = 2;
  oneof message_response {
    FileDescriptorResponse file_descriptor_response = 4;
    ListServiceResponse list_services_response = 6;
    ErrorResponse error_response = 7;
  }
}
message FileDescriptorResponse { repeated bytes file_descriptor_proto = 1; }
message ListServiceResponse { repeated ServiceResponse service = 1; }
message ServiceResponse { string name = 1; }
message ErrorResponse { int32 error_code = 1; string error_message = 2; }
"""


class Failure(Exception):
    pass


def check(condition, reason):
    if not condition:
        raise Failure(reason)


def step(message):
    print(f"grpc_python: {message}", flush=True)


def generate_stubs(out):
    """protoc every marquee/**.proto and google/api/*.proto (plus the reflection subset)
    into `out`, with grpc_tools' own google/protobuf/*.proto as the well-known types."""
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    reflection = out / "proto_in"
    (reflection / "grpc_reflection_v1").mkdir(parents=True)
    (reflection / "grpc_reflection_v1" / "reflection.proto").write_text(REFLECTION_PROTO)
    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.glob("marquee/**/*.proto"))
    files += sorted(str(p.relative_to(PROTO)) for p in PROTO.glob("google/api/*.proto"))
    files.append("grpc_reflection_v1/reflection.proto")
    check(any(f.endswith("booking/v1/booking.proto") for f in files), f"no protos under {PROTO}")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO}",
        f"-I{well_known}",
        f"-I{reflection}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        *files,
    ]
    code = protoc.main(args)
    check(code == 0, f"protoc failed ({code}) generating stubs for {len(files)} files")
    sys.path.insert(0, str(out))
    importlib.invalidate_caches()
    step(f"generated stubs for {len(files)} proto files")


def env_addr(name):
    addr = os.environ.get(name, "")
    check(addr, f"{name} is not set (host:port of the service's gRPC listener)")
    return addr


def channel(addr):
    ch = grpc.insecure_channel(addr)
    try:
        grpc.channel_ready_future(ch).result(timeout=RPC_TIMEOUT)
    except grpc.FutureTimeoutError:
        raise Failure(f"no gRPC server at {addr} within {RPC_TIMEOUT} s") from None
    return ch


def bearer(token):
    return (("authorization", f"Bearer {token}"),)


def code_of(call, *args, **kwargs):
    """The status code of a call expected to fail."""
    try:
        call(*args, timeout=RPC_TIMEOUT, **kwargs)
    except grpc.RpcError as error:
        return error.code(), error.details()
    raise Failure(f"{call} succeeded; expected it to fail")


def reflect(reflection_pb2, reflection_pb2_grpc, ch, addr, expected):
    """Lists the services over reflection (what `grpcurl list` does) and describes the
    first expected one (what `grpcurl describe` does)."""
    stub = reflection_pb2_grpc.ServerReflectionStub(ch)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=expected[0]),
    ]
    answers = list(stub.ServerReflectionInfo(iter(requests), timeout=RPC_TIMEOUT))
    check(len(answers) == 2, f"reflection at {addr}: {len(answers)} answers to 2 requests")
    listed, described = answers
    check(listed.HasField("list_services_response"), f"reflection list at {addr}: {listed}")
    names = sorted(s.name for s in listed.list_services_response.service)
    for service in expected:
        check(service in names, f"reflection at {addr} does not list {service}: {names}")
    check(
        described.HasField("file_descriptor_response"),
        f"reflection describe {expected[0]} at {addr}: {described}",
    )
    package, _, name = expected[0].rpartition(".")
    methods = []
    for raw in described.file_descriptor_response.file_descriptor_proto:
        file = descriptor_pb2.FileDescriptorProto.FromString(raw)
        if file.package == package:
            for service in file.service:
                if service.name == name:
                    methods = [m.name for m in service.method]
    check(methods, f"reflection at {addr}: no descriptor of {expected[0]}")
    step(f"reflection at {addr}: {', '.join(names)}; {expected[0]}: {', '.join(methods)}")
    return methods


def sign_up_and_log_in(accounts, booking_pb2, role, name):
    email = f"{name.lower()}-{uuid.uuid4().hex}@example.com"
    account = accounts.SignUp(
        booking_pb2.SignUpRequest(email=email, password=PASSWORD, display_name=name, role=role),
        timeout=RPC_TIMEOUT,
    )
    check(account.account_id and account.role == role, f"sign-up of {email}: {account}")
    session = accounts.LogIn(
        booking_pb2.LogInRequest(email=email, password=PASSWORD), timeout=RPC_TIMEOUT
    )
    check(session.access_token, f"log-in of {email}: no token")
    check(session.account.account_id == account.account_id, f"log-in of {email}: {session}")
    step(f"signed up and logged in {booking_pb2.Role.Name(role)} {account.account_id}")
    token = session.access_token
    if role == booking_pb2.SELLER:
        token = two_factor(accounts, booking_pb2, email, token)
    return account.account_id, token


def totp_code(secret, at):
    """The 6-digit TOTP code (RFC 6238: HMAC-SHA1, 30 s steps) of `secret` (base32) at
    Unix time `at`, with the standard library alone."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", int(at) // 30), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def two_factor(accounts, booking_pb2, email, token):
    """Enrolls and confirms a TOTP authenticator for the account of `token` and logs in
    with a code: a session with the second factor, which selling RPCs need. The log-in
    uses the next step's code (the confirmation used the current step's; each step is
    accepted once, and one step of skew either way)."""
    enrolled = accounts.EnrollTwoFactor(
        booking_pb2.EnrollTwoFactorRequest(), metadata=bearer(token), timeout=RPC_TIMEOUT
    )
    check(
        enrolled.otpauth_uri.startswith("otpauth://totp/Marquee:")
        and f"secret={enrolled.secret}" in enrolled.otpauth_uri,
        f"enrolment: {enrolled.otpauth_uri}",
    )
    now = time.time()
    confirmed = accounts.ConfirmTwoFactor(
        booking_pb2.ConfirmTwoFactorRequest(code=totp_code(enrolled.secret, now)),
        metadata=bearer(token),
        timeout=RPC_TIMEOUT,
    )
    check(len(confirmed.recovery_codes) == 10, f"confirmation: {len(confirmed.recovery_codes)} codes")
    try:
        accounts.LogIn(booking_pb2.LogInRequest(email=email, password=PASSWORD), timeout=RPC_TIMEOUT)
        raise Failure("a password-only log-in passed after two-factor enrolment")
    except grpc.RpcError as error:
        check(
            error.code() == grpc.StatusCode.UNAUTHENTICATED,
            f"password-only log-in: {error.code()} {error.details()}",
        )
    session = accounts.LogIn(
        booking_pb2.LogInRequest(
            email=email, password=PASSWORD, code=totp_code(enrolled.secret, now + 30)
        ),
        timeout=RPC_TIMEOUT,
    )
    check(session.two_factor, f"log-in with a code of {email}: no second factor")
    step("enrolled a TOTP authenticator and logged in with a code")
    return session.access_token


def open_wallet(wallets, pay_pb2, token):
    """pay-svc opens the wallet when it consumes the sign-up's account.opened: until then
    GetWallet is NOT_FOUND."""
    deadline = time.monotonic() + WALLET_OPEN_TIMEOUT
    while True:
        try:
            return wallets.GetWallet(
                pay_pb2.GetWalletRequest(), metadata=bearer(token), timeout=RPC_TIMEOUT
            )
        except grpc.RpcError as error:
            check(
                error.code() == grpc.StatusCode.NOT_FOUND,
                f"GetWallet: {error.code()} {error.details()}",
            )
            check(
                time.monotonic() < deadline,
                f"the buyer's wallet did not open within {WALLET_OPEN_TIMEOUT} s",
            )
            time.sleep(0.05)


def run():
    booking_addr = env_addr("BOOKING_ADDR")
    pay_addr = env_addr("PAY_ADDR")
    realtime_addr = env_addr("REALTIME_ADDR")

    with tempfile.TemporaryDirectory(prefix="marquee-stubs-") as out:
        generate_stubs(pathlib.Path(out))
        from marquee.booking.v1 import booking_pb2, booking_pb2_grpc
        from marquee.pay.v1 import pay_pb2, pay_pb2_grpc
        from marquee.realtime.v1 import realtime_pb2, realtime_pb2_grpc
        from marquee.type.v1 import money_pb2
        from grpc_reflection_v1 import reflection_pb2, reflection_pb2_grpc

    booking_ch = channel(booking_addr)
    pay_ch = channel(pay_addr)
    realtime_ch = channel(realtime_addr)

    # Discovery, as `grpcurl -plaintext <addr> list` and `describe` do it.
    reflection = (reflection_pb2, reflection_pb2_grpc)
    methods = reflect(
        *reflection,
        booking_ch,
        booking_addr,
        [
            "marquee.booking.v1.BookingService",
            "marquee.booking.v1.AccountService",
            "marquee.booking.v1.CatalogService",
        ],
    )
    check("CreateHold" in methods and "CreateBooking" in methods, f"BookingService: {methods}")
    reflect(*reflection, pay_ch, pay_addr, ["marquee.pay.v1.WalletService"])
    reflect(*reflection, realtime_ch, realtime_addr, ["marquee.realtime.v1.RealtimeService"])

    accounts = booking_pb2_grpc.AccountServiceStub(booking_ch)
    catalog = booking_pb2_grpc.CatalogServiceStub(booking_ch)
    bookings = booking_pb2_grpc.BookingServiceStub(booking_ch)
    wallets = pay_pb2_grpc.WalletServiceStub(pay_ch)
    realtime = realtime_pb2_grpc.RealtimeServiceStub(realtime_ch)

    _, seller = sign_up_and_log_in(accounts, booking_pb2, booking_pb2.SELLER, "Sela")
    buyer_id, buyer = sign_up_and_log_in(accounts, booking_pb2, booking_pb2.BUYER, "Pyra")

    starts_at = timestamp_pb2.Timestamp()
    starts_at.FromSeconds(int(time.time()) + 30 * 86400)
    krw = money_pb2.Money(amount_minor=PRICE, currency="KRW")
    event = catalog.CreateEvent(
        booking_pb2.CreateEventRequest(
            title="Python over gRPC",
            category="CONCERT",
            description="made by e2e/tests/grpc_python/client.py",
            venue="Olympic Hall",
            starts_at=starts_at,
            max_seats_per_buyer=4,
            sections=[
                booking_pb2.SectionInput(
                    name="R",
                    price=krw,
                    rows=[
                        booking_pb2.RowInput(
                            label="A",
                            seats=[
                                booking_pb2.SeatInput(number=str(n + 1), x=n * 10.0, y=0.0)
                                for n in range(4)
                            ],
                        )
                    ],
                )
            ],
        ),
        metadata=bearer(seller),
        timeout=RPC_TIMEOUT,
    )
    check(event.event_id and event.seat_count == 4, f"CreateEvent: {event}")
    step(f"created event {event.event_id} with {event.seat_count} seats")

    seats = catalog.ListSeats(
        booking_pb2.ListSeatsRequest(event_id=event.event_id), timeout=RPC_TIMEOUT
    ).seats
    check(len(seats) == 4, f"ListSeats: {len(seats)} seats")
    check(all(s.status == booking_pb2.AVAILABLE for s in seats), f"ListSeats: {seats}")
    seat = seats[0]
    check(seat.price == krw, f"seat price: {seat.price}")

    wallet = open_wallet(wallets, pay_pb2, buyer)
    check(wallet.account_id == buyer_id, f"GetWallet: {wallet.account_id} != {buyer_id}")
    check(wallet.balance.amount_minor == WELCOME_CREDIT, f"new wallet: {wallet.balance}")
    step(f"the buyer's wallet opened with {wallet.balance.amount_minor} {wallet.balance.currency}")

    # Errors come back as the right status codes, not UNKNOWN or INTERNAL.
    code, details = code_of(
        bookings.CreateHold,
        booking_pb2.CreateHoldRequest(event_id=event.event_id, seat_ids=[str(uuid.uuid4())]),
        metadata=bearer(buyer),
    )
    check(code == grpc.StatusCode.INVALID_ARGUMENT, f"hold of an unknown seat: {code} {details}")
    code, details = code_of(
        bookings.CreateHold,
        booking_pb2.CreateHoldRequest(event_id=str(uuid.uuid4()), seat_ids=[seat.seat_id]),
        metadata=bearer(buyer),
    )
    check(code == grpc.StatusCode.NOT_FOUND, f"hold at an unknown event: {code} {details}")
    code, details = code_of(
        bookings.CreateHold,
        booking_pb2.CreateHoldRequest(event_id=event.event_id, seat_ids=[seat.seat_id]),
    )
    check(code == grpc.StatusCode.UNAUTHENTICATED, f"hold without a token: {code} {details}")
    step("unknown seat: INVALID_ARGUMENT; unknown event: NOT_FOUND; no token: UNAUTHENTICATED")

    hold_request = booking_pb2.CreateHoldRequest(
        event_id=event.event_id, seat_ids=[seat.seat_id], idempotency_key=f"hold-{uuid.uuid4()}"
    )
    hold = bookings.CreateHold(hold_request, metadata=bearer(buyer), timeout=RPC_TIMEOUT)
    check(list(hold.seat_ids) == [seat.seat_id], f"CreateHold: {hold}")
    check(hold.total == krw, f"hold total: {hold.total}")
    again = bookings.CreateHold(hold_request, metadata=bearer(buyer), timeout=RPC_TIMEOUT)
    check(again.hold_id == hold.hold_id, f"retried CreateHold: {again.hold_id} != {hold.hold_id}")
    step(f"held seat {seat.seat_id} as {hold.hold_id} (a retry with its key: the same hold)")

    checkout_key = (("idempotency-key", f"checkout-{uuid.uuid4()}"),)
    booking = bookings.CreateBooking(
        booking_pb2.CreateBookingRequest(hold_id=hold.hold_id, payment_method=booking_pb2.WALLET),
        metadata=bearer(buyer) + checkout_key,
        timeout=RPC_TIMEOUT,
    )
    check(booking.booking_id, f"CreateBooking: {booking}")
    check(booking.buyer_id == buyer_id, f"CreateBooking buyer: {booking.buyer_id}")
    check(booking.total == krw, f"booking total: {booking.total}")
    step(f"checked out as {booking.booking_id}: {booking_pb2.BookingStatus.Name(booking.status)}")

    statuses = []
    stream = realtime.WatchBooking(
        realtime_pb2.WatchBookingRequest(booking_id=booking.booking_id),
        metadata=bearer(buyer),
        timeout=CONFIRM_TIMEOUT,
    )
    try:
        for update in stream:
            status = booking_pb2.BookingStatus.Name(update.booking.status)
            statuses.append(status)
            check(
                update.booking.booking_id == booking.booking_id,
                f"WatchBooking sent another booking: {update.booking.booking_id}",
            )
            if update.booking.status == booking_pb2.CONFIRMED:
                break
            check(
                update.booking.status == booking_pb2.PENDING_PAYMENT,
                f"booking went {status}: {update.booking.cancel_reason}",
            )
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise Failure(
                f"booking not CONFIRMED within {CONFIRM_TIMEOUT} s (watched: {statuses})"
            ) from None
        raise
    finally:
        stream.cancel()
    check(statuses and statuses[-1] == "CONFIRMED", f"WatchBooking ended at {statuses}")
    step(f"WatchBooking: {' -> '.join(statuses)}")

    wallet = wallets.GetWallet(
        pay_pb2.GetWalletRequest(), metadata=bearer(buyer), timeout=RPC_TIMEOUT
    )
    balance = WELCOME_CREDIT - PRICE
    check(
        wallet.balance.amount_minor == balance and wallet.balance.currency == "KRW",
        f"wallet after the purchase: {wallet.balance} (expected {balance} KRW)",
    )
    kinds = [pay_pb2.EntryKind.Name(e.kind) for e in wallet.entries]
    check(kinds == ["PAYMENT", "WELCOME_CREDIT"], f"ledger: {kinds}")
    payment = wallet.entries[0]
    check(payment.booking_id == booking.booking_id, f"payment entry: {payment}")
    check(payment.amount.amount_minor == -PRICE, f"payment amount: {payment.amount}")
    step(f"wallet: {wallet.balance.amount_minor} KRW; ledger {kinds}")

    seats = catalog.ListSeats(
        booking_pb2.ListSeatsRequest(event_id=event.event_id), timeout=RPC_TIMEOUT
    ).seats
    sold = [s.seat_id for s in seats if s.status == booking_pb2.SOLD]
    check(sold == [seat.seat_id], f"sold seats: {sold}")

    for ch in (booking_ch, pay_ch, realtime_ch):
        ch.close()
    result = {
        "buyerToken": buyer,
        "buyerId": buyer_id,
        "eventId": event.event_id,
        "seatId": seat.seat_id,
        "bookingId": booking.booking_id,
        "balance": wallet.balance.amount_minor,
    }
    print(f"RESULT {json.dumps(result)}", flush=True)


def main():
    try:
        run()
    except Failure as failure:
        print(f"grpc_python: FAILED: {failure}", file=sys.stderr, flush=True)
        return 1
    except grpc.RpcError as error:
        print(
            f"grpc_python: FAILED: RPC error {error.code()}: {error.details()}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
