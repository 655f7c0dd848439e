//! The baseline: `psp_payments`, `psp_idempotency` and `psp_faults`, every constraint
//! named explicitly.

use sea_orm_migration::prelude::*;

/// Creates the sandbox's tables.
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20260601_000001_psp_ledger"
    }
}

/// The schema. DDL is kept as SQL: the constraint names are explicit and reviewable
/// here.
const CREATE: &str = r#"
-- Every charge attempt the sandbox recorded, one per order: a confirm with another
-- idempotency key for the same order can never make a second charge.
CREATE TABLE psp_payments (
    payment_key     TEXT CONSTRAINT psp_payments_pkey PRIMARY KEY,
    order_id        TEXT NOT NULL CONSTRAINT psp_payments_order_id_key UNIQUE,
    -- The Idempotency-Key of the confirm that made it (its answer is filled in when an
    -- undecided payment is decided).
    confirm_key     TEXT NOT NULL,
    status          TEXT NOT NULL CONSTRAINT psp_payments_status_check
                        CHECK (status IN ('IN_PROGRESS', 'DONE', 'ABORTED', 'CANCELED')),
    total_amount    BIGINT NOT NULL CONSTRAINT psp_payments_total_amount_check
                        CHECK (total_amount > 0),
    currency        TEXT NOT NULL,
    card_token      TEXT NOT NULL,
    failure_code    TEXT,
    failure_message TEXT,
    approved_at     TIMESTAMPTZ,
    canceled_at     TIMESTAMPTZ,
    cancel_reason   TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT psp_payments_failure_iff_aborted_check
        CHECK ((status = 'ABORTED') = (failure_code IS NOT NULL AND failure_message IS NOT NULL)),
    CONSTRAINT psp_payments_approved_iff_charged_check
        CHECK ((status IN ('DONE', 'CANCELED')) = (approved_at IS NOT NULL)),
    CONSTRAINT psp_payments_canceled_iff_canceled_check
        CHECK ((status = 'CANCELED') = (canceled_at IS NOT NULL AND cancel_reason IS NOT NULL))
);

-- The first answer to each idempotency key, replayed byte for byte. No answer yet
-- (both NULL): the first attempt is undecided, and the key answers 409
-- ALREADY_PROCESSING_REQUEST until an inquiry decides it.
CREATE TABLE psp_idempotency (
    scope           TEXT NOT NULL CONSTRAINT psp_idempotency_scope_check
                        CHECK (scope IN ('confirm', 'cancel')),
    idempotency_key TEXT NOT NULL,
    -- sha256 of the first request (path and body), to log a key reused for another one.
    fingerprint     TEXT NOT NULL,
    response_status INTEGER,
    response_body   TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT psp_idempotency_pkey PRIMARY KEY (scope, idempotency_key),
    CONSTRAINT psp_idempotency_response_check
        CHECK ((response_status IS NULL) = (response_body IS NULL))
);

-- Faults already injected once (`tok_5xx_once`): the next confirm of the order passes.
CREATE TABLE psp_faults (
    order_id   TEXT NOT NULL,
    card_token TEXT NOT NULL,
    failed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT psp_faults_pkey PRIMARY KEY (order_id, card_token)
);
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(CREATE).await?;
        Ok(())
    }
}
