CREATE TABLE accounts (
    id            UUID PRIMARY KEY,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('BUYER', 'SELLER', 'ADMIN')),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX accounts_email ON accounts (lower(email));

CREATE TABLE events (
    id                  UUID PRIMARY KEY,
    seller_id           UUID NOT NULL REFERENCES accounts (id),
    title               TEXT NOT NULL,
    category            TEXT NOT NULL,
    description         TEXT NOT NULL,
    venue               TEXT NOT NULL,
    starts_at           TIMESTAMPTZ NOT NULL,
    sale_starts_at      TIMESTAMPTZ NOT NULL,
    sale_ends_at        TIMESTAMPTZ NOT NULL,
    max_seats_per_buyer INT NOT NULL CHECK (max_seats_per_buyer > 0),
    currency            TEXT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (sale_starts_at < sale_ends_at)
);
CREATE INDEX events_starts_at ON events (starts_at, id);

CREATE TABLE sections (
    id          UUID PRIMARY KEY,
    event_id    UUID NOT NULL REFERENCES events (id),
    name        TEXT NOT NULL,
    price_minor BIGINT NOT NULL CHECK (price_minor >= 0),
    position    INT NOT NULL,
    UNIQUE (event_id, name)
);

CREATE TABLE seats (
    id         UUID PRIMARY KEY,
    event_id   UUID NOT NULL REFERENCES events (id),
    section_id UUID NOT NULL REFERENCES sections (id),
    row_label  TEXT NOT NULL,
    number     TEXT NOT NULL,
    x          DOUBLE PRECISION NOT NULL,
    y          DOUBLE PRECISION NOT NULL,
    position   INT NOT NULL,
    UNIQUE (section_id, row_label, number)
);
CREATE INDEX seats_event ON seats (event_id, position);

CREATE TABLE bookings (
    id              UUID PRIMARY KEY,
    event_id        UUID NOT NULL REFERENCES events (id),
    buyer_id        UUID NOT NULL REFERENCES accounts (id),
    hold_id         UUID NOT NULL UNIQUE,
    status          TEXT NOT NULL CHECK (status IN ('PENDING_PAYMENT', 'CONFIRMED', 'CANCELLING', 'CANCELLED')),
    total_minor     BIGINT NOT NULL CHECK (total_minor >= 0),
    currency        TEXT NOT NULL,
    payment_method  TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    cancel_reason   TEXT NOT NULL DEFAULT '',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (buyer_id, idempotency_key)
);
CREATE INDEX bookings_buyer ON bookings (buyer_id, created_at DESC);

-- One row per seat of a booking. `active` is true while the booking holds or owns the
-- seat (PENDING_PAYMENT, CONFIRMED, CANCELLING); the partial unique index makes a second
-- active booking of a seat impossible, whatever Redis says.
CREATE TABLE booking_seats (
    booking_id  UUID NOT NULL REFERENCES bookings (id),
    seat_id     UUID NOT NULL REFERENCES seats (id),
    event_id    UUID NOT NULL REFERENCES events (id),
    price_minor BIGINT NOT NULL,
    active      BOOLEAN NOT NULL DEFAULT true,
    PRIMARY KEY (booking_id, seat_id)
);
CREATE UNIQUE INDEX booking_seats_one_active ON booking_seats (seat_id) WHERE active;
CREATE INDEX booking_seats_event ON booking_seats (event_id) WHERE active;
