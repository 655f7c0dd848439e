//! Card payments through the payment provider (PSP): the `payments` columns a charge
//! that may outlive its transaction needs (the PSP order id, the idempotency keys
//! stored before the first confirm and the first cancel, the resolver's schedule),
//! the REFUNDING and VOIDING states, and `card_ledger_entries`, the card money the PSP
//! captured and gave back. Existing (wallet) rows stay valid: every new column is
//! nullable or has a default.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20260301_000001_card_payments"
    }
}

const UP: &str = r#"
ALTER TABLE payments
    -- The PSP's order id (the booking id) and the buyer's card token (never a number).
    ADD COLUMN psp_order_id            TEXT,
    ADD COLUMN card_token              TEXT,
    -- Sent with every confirm of this payment, stored before the first one, so a
    -- retry can never charge twice.
    ADD COLUMN psp_confirm_key         TEXT CONSTRAINT payments_psp_confirm_key_key UNIQUE,
    -- Sent with every cancel, stored before the first one.
    ADD COLUMN psp_cancel_key          TEXT CONSTRAINT payments_psp_cancel_key_key UNIQUE,
    ADD COLUMN psp_payment_key         TEXT,
    ADD COLUMN approved_at             TIMESTAMPTZ,
    -- Confirm calls sent, and whether the last one went unanswered (may be in flight).
    ADD COLUMN psp_confirms            INTEGER NOT NULL DEFAULT 0
        CONSTRAINT payments_psp_confirms_check CHECK (psp_confirms >= 0),
    ADD COLUMN psp_confirm_unanswered  BOOLEAN NOT NULL DEFAULT false,
    -- Resolver steps that left the payment unresolved (its backoff).
    ADD COLUMN psp_tries               INTEGER NOT NULL DEFAULT 0
        CONSTRAINT payments_psp_tries_check CHECK (psp_tries >= 0),
    -- When the resolver works on it next; NULL when there is nothing left to do.
    ADD COLUMN next_attempt_at         TIMESTAMPTZ,
    ADD COLUMN last_error              TEXT,
    -- A refund arrived while the charge was undecided: refund it once captured.
    ADD COLUMN refund_wanted           BOOLEAN NOT NULL DEFAULT false;

ALTER TABLE payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payments ADD CONSTRAINT payments_status_check
    CHECK (status IN ('PENDING', 'CAPTURED', 'FAILED', 'REFUNDING', 'REFUNDED', 'VOIDING'));
-- VOIDING: the PSP charged a wrong amount; the payment failed and is being cancelled.
ALTER TABLE payments DROP CONSTRAINT payments_failure_reason_iff_failed_check;
ALTER TABLE payments ADD CONSTRAINT payments_failure_reason_iff_failed_check
    CHECK ((status IN ('FAILED', 'VOIDING')) = (failure_reason IS NOT NULL));
ALTER TABLE payments ADD CONSTRAINT payments_card_fields_check
    CHECK (method <> 'CARD' OR (psp_order_id IS NOT NULL AND psp_confirm_key IS NOT NULL
                                AND card_token IS NOT NULL));
ALTER TABLE payments ADD CONSTRAINT payments_cancel_key_check
    CHECK (status NOT IN ('REFUNDING', 'VOIDING')
           OR (psp_cancel_key IS NOT NULL AND psp_payment_key IS NOT NULL));

-- What the resolver looks for: the payments with PSP work due.
CREATE INDEX payments_next_attempt_at_idx ON payments (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;

-- Card money: what the PSP captured and gave back, one capture and one refund per
-- payment at most. captured - refunded here equals the PSP's net.
CREATE TABLE card_ledger_entries (
    seq             BIGSERIAL CONSTRAINT card_ledger_entries_pkey PRIMARY KEY,
    payment_id      UUID NOT NULL CONSTRAINT card_ledger_entries_payment_id_fkey
                        REFERENCES payments (payment_id),
    booking_id      UUID NOT NULL,
    kind            TEXT NOT NULL CONSTRAINT card_ledger_entries_kind_check
                        CHECK (kind IN ('CAPTURE', 'REFUND')),
    amount_minor    BIGINT NOT NULL CONSTRAINT card_ledger_entries_amount_minor_check
                        CHECK (amount_minor > 0),
    currency        TEXT NOT NULL,
    psp_payment_key TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT card_ledger_entries_one_kind_per_payment_key UNIQUE (payment_id, kind)
);
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }
}
