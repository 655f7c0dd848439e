-- One wallet per account. The balance never goes negative.
CREATE TABLE wallets (
    account_id    UUID PRIMARY KEY,
    currency      TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    balance_minor BIGINT NOT NULL CHECK (balance_minor >= 0),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One payment per booking. The idempotency key (the booking id) is written before
-- the charge; a PENDING row is only ever visible while its charge is in flight.
CREATE TABLE payments (
    payment_id      UUID PRIMARY KEY,
    booking_id      UUID NOT NULL UNIQUE,
    account_id      UUID NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('PENDING', 'CAPTURED', 'FAILED', 'REFUNDED')),
    amount_minor    BIGINT NOT NULL,
    currency        TEXT NOT NULL,
    method          TEXT NOT NULL,
    failure_reason  TEXT,
    idempotency_key TEXT NOT NULL UNIQUE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    refunded_at     TIMESTAMPTZ,
    CHECK ((status = 'FAILED') = (failure_reason IS NOT NULL))
);

CREATE INDEX payments_account ON payments (account_id, created_at DESC);

-- Every balance change, append-only.
CREATE TABLE ledger_entries (
    seq                 BIGSERIAL PRIMARY KEY,
    entry_id            UUID NOT NULL UNIQUE,
    account_id          UUID NOT NULL REFERENCES wallets (account_id),
    kind                TEXT NOT NULL CHECK (kind IN ('WELCOME_CREDIT', 'PAYMENT', 'REFUND')),
    amount_minor        BIGINT NOT NULL,
    currency            TEXT NOT NULL,
    balance_after_minor BIGINT NOT NULL CHECK (balance_after_minor >= 0),
    booking_id          UUID,
    payment_id          UUID REFERENCES payments (payment_id),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX ledger_entries_account ON ledger_entries (account_id, seq DESC);
-- At most one welcome credit per account, one debit and one refund per payment.
CREATE UNIQUE INDEX ledger_entries_one_welcome ON ledger_entries (account_id) WHERE kind = 'WELCOME_CREDIT';
CREATE UNIQUE INDEX ledger_entries_one_per_payment ON ledger_entries (payment_id, kind) WHERE payment_id IS NOT NULL;
